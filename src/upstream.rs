//! The upstream set: addresses, alive flags, counters, and the round-robin pick over the
//! alive set. Shared by every worker (`Arc<Pool>`); the request path takes no lock.
//! STUB: interface only.

use std::net::SocketAddr;

/// One backend as configured.
#[derive(Debug)]
pub struct Upstream {
    /// The address as the user wrote it, for logs.
    pub name: String,
    /// The resolved address we connect to.
    pub addr: SocketAddr,
}

/// The set of upstreams and the shared round-robin index.
#[derive(Debug)]
pub struct Pool {
    _todo: (),
}

/// Which upstreams one request has already tried (each is tried at most once per request).
#[derive(Debug, Clone, Default)]
pub struct Tried {
    _todo: (),
}

impl Tried {
    pub fn clear(&mut self) {
        todo!()
    }
    pub fn insert(&mut self, idx: usize) {
        let _ = idx;
        todo!()
    }
    pub fn contains(&self, idx: usize) -> bool {
        let _ = idx;
        todo!()
    }
}

impl Pool {
    /// All upstreams start alive; the first health sweep corrects that within one interval.
    pub fn new(upstreams: Vec<Upstream>) -> Self {
        let _ = upstreams;
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn get(&self, idx: usize) -> &Upstream {
        let _ = idx;
        todo!()
    }
    pub fn is_alive(&self, idx: usize) -> bool {
        let _ = idx;
        todo!()
    }
    /// The next upstream, round robin over the alive ones not in `tried`; `None` when there is none.
    pub fn pick(&self, tried: &Tried) -> Option<usize> {
        let _ = tried;
        todo!()
    }
    /// Take `idx` out of the rotation. Logs at info and returns true on the up→down transition.
    pub fn mark_down(&self, idx: usize, reason: &str) -> bool {
        let _ = (idx, reason);
        todo!()
    }
    /// Put `idx` back in the rotation. Logs at info and returns true on the down→up transition.
    pub fn mark_up(&self, idx: usize, reason: &str) -> bool {
        let _ = (idx, reason);
        todo!()
    }
}
