//! A hashed timer wheel: deadlines in, expired keys out. Pure: time is milliseconds since an
//! epoch the caller chooses. STUB: interface only.

/// A hashed timer wheel keyed by `u64` (the worker packs token and generation into it).
#[derive(Debug)]
pub struct TimerWheel {
    _todo: (),
}

impl TimerWheel {
    pub fn new(now_ms: u64) -> Self {
        let _ = now_ms;
        todo!()
    }
    /// Schedule `key` to expire at `deadline_ms` (a deadline in the past expires on the next advance).
    pub fn insert(&mut self, deadline_ms: u64, key: u64) {
        let _ = (deadline_ms, key);
        todo!()
    }
    /// Move time forward to `now_ms`, appending every key whose deadline is `<= now_ms` to `expired`.
    pub fn advance(&mut self, now_ms: u64, expired: &mut Vec<u64>) {
        let _ = (now_ms, expired);
        todo!()
    }
    /// Milliseconds from `now_ms` until the earliest pending deadline (0 if one is due), or
    /// `None` when empty. May be early (never late): it is a poll timeout.
    pub fn next_timeout(&self, now_ms: u64) -> Option<u64> {
        let _ = now_ms;
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
