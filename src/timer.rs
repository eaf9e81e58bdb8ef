//! A hashed timer wheel: deadlines in, expired keys out. Pure: time is milliseconds since an
//! epoch the caller chooses.
//!
//! Time is cut into ticks of [`TICK_MS`]; a deadline lives in slot `tick(deadline) % SLOTS`.
//! Deadlines more than one rotation away share a slot with nearer ones and simply stay there
//! until a visit finds them due ("hashed" wheel: no cascading, no per-entry allocation).
//! There is no cancel: the worker packs a generation into each key and ignores stale ones,
//! which is cheaper than finding and removing an entry.

/// Width of one tick. Our timeouts are seconds long (header, idle, read, write, health), so
/// 10 ms of granularity costs nothing in precision while keeping one rotation of the wheel
/// at [`SLOTS`] × 10 ms ≈ 10 s, the span most timeouts fall within.
pub const TICK_MS: u64 = 10;

/// Number of slots in one rotation. A power of two so `% SLOTS` is a mask; 1024 slots of
/// 10 ms cover about ten seconds, so most deadlines are found in their own round.
pub const SLOTS: usize = 1024;

/// The tick a time falls in.
fn tick_of(ms: u64) -> u64 {
    ms / TICK_MS
}

/// The slot a tick maps to.
fn slot_of(tick: u64) -> usize {
    (tick % SLOTS as u64) as usize
}

/// A hashed timer wheel keyed by `u64` (the worker packs token and generation into it).
#[derive(Debug)]
pub struct TimerWheel {
    /// `SLOTS` buckets of `(deadline_ms, key)`. The vectors keep their capacity, so after
    /// warm-up inserting and expiring allocate nothing.
    slots: Box<[Vec<(u64, u64)>]>,
    /// The tick of the last `advance` (or of `new`). Invariant: every pending entry sits in
    /// the slot of `max(tick(deadline), current_tick)` at the time of its insert, and any entry
    /// whose deadline tick is before `current_tick` sits in `current_tick`'s slot — so walking
    /// from `current_tick` onwards finds every entry by the time it is due.
    current_tick: u64,
    /// Number of pending entries.
    len: usize,
    /// The earliest pending deadline, when known (`UNKNOWN` otherwise). Kept by `insert`, and
    /// dropped by an `advance` that reaches it: so `next_timeout`, asked before every poll,
    /// walks the wheel only after a deadline passed, not on every event loop turn.
    earliest: u64,
}

/// `TimerWheel::earliest` when it has to be found again.
const UNKNOWN: u64 = u64::MAX;

impl TimerWheel {
    /// An empty wheel whose clock starts at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            current_tick: tick_of(now_ms),
            len: 0,
            earliest: UNKNOWN,
        }
    }
    /// Schedule `key` to expire at `deadline_ms` (a deadline in the past expires on the next advance).
    pub fn insert(&mut self, deadline_ms: u64, key: u64) {
        // A past tick's slot would not be visited again for a whole rotation: put it in the
        // current tick's slot, which the next advance visits first.
        let tick = tick_of(deadline_ms).max(self.current_tick);
        self.slots[slot_of(tick)].push((deadline_ms, key));
        self.len += 1;
        // With nothing pending before, the old value is stale or unknown: this is the earliest.
        if self.len == 1 || (self.earliest != UNKNOWN && deadline_ms < self.earliest) {
            self.earliest = deadline_ms;
        }
    }
    /// Move time forward to `now_ms`, appending every key whose deadline is `<= now_ms` to `expired`.
    ///
    /// Visits the slots of the ticks from the last advance's tick (again: entries later in that
    /// tick may have been left) up to `now_ms`'s tick, at most one full rotation. Keys come out
    /// in tick order, except after a jump of a whole rotation or more; within a tick, in no
    /// particular order. A `now_ms` earlier than the last advance moves nothing back.
    pub fn advance(&mut self, now_ms: u64, expired: &mut Vec<u64>) {
        let now_tick = tick_of(now_ms);
        let first = self.current_tick;
        let visits = now_tick
            .saturating_sub(first)
            .saturating_add(1)
            .min(SLOTS as u64);
        for tick in first..first + visits {
            self.expire_slot(slot_of(tick), now_ms, expired);
        }
        self.current_tick = self.current_tick.max(now_tick);
        if self.earliest <= now_ms {
            self.earliest = UNKNOWN;
        }
    }
    /// Remove the entries of one slot that are due at `now_ms`; later rounds stay.
    fn expire_slot(&mut self, slot: usize, now_ms: u64, expired: &mut Vec<u64>) {
        let entries = &mut self.slots[slot];
        let mut i = 0;
        while i < entries.len() {
            let (deadline, key) = entries[i];
            if deadline <= now_ms {
                expired.push(key);
                entries.swap_remove(i);
                self.len -= 1;
            } else {
                i += 1;
            }
        }
    }
    /// Milliseconds from `now_ms` until the earliest pending deadline (0 if one is due), or
    /// `None` when empty. May be early (never late): it is a poll timeout.
    ///
    /// Exact, in fact. Cost: nothing, unless the earliest deadline is unknown (an `advance`
    /// reached it); then a walk of the slots from the current tick until the first one holding
    /// an entry of its own round, looking at every entry of each slot passed (entries of later
    /// rounds included): usually a few slots. Only when nothing is due within one rotation
    /// does it look at every entry (`SLOTS` slots and `len` entries), which happens when the
    /// only timers left are far away, i.e. when the process is idle anyway.
    pub fn next_timeout(&mut self, now_ms: u64) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        if self.earliest == UNKNOWN {
            self.earliest = self.find_earliest().unwrap_or(UNKNOWN);
        }
        Some(self.earliest.saturating_sub(now_ms))
    }

    /// The earliest pending deadline, by walking the wheel.
    fn find_earliest(&self) -> Option<u64> {
        (0..SLOTS as u64)
            .find_map(|i| {
                let tick = self.current_tick + i;
                self.slots[slot_of(tick)]
                    .iter()
                    .map(|&(deadline, _)| deadline)
                    // The current slot also holds the entries inserted with a past deadline.
                    .filter(|&d| tick_of(d) == tick || (i == 0 && tick_of(d) < tick))
                    .min()
            })
            .or_else(|| self.slots.iter().flatten().map(|&(d, _)| d).min())
    }
    /// Number of pending entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when nothing is pending.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance(w: &mut TimerWheel, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        w.advance(now, &mut out);
        out
    }

    fn sorted(mut v: Vec<u64>) -> Vec<u64> {
        v.sort_unstable();
        v
    }

    #[test]
    fn empty_wheel() {
        let mut w = TimerWheel::new(1000);
        assert!(w.is_empty());
        assert_eq!(w.next_timeout(1000), None);
        assert_eq!(advance(&mut w, 50_000), Vec::<u64>::new());
    }

    #[test]
    fn expires_in_deadline_order_across_ticks() {
        let mut w = TimerWheel::new(0);
        w.insert(350, 3);
        w.insert(120, 1);
        w.insert(240, 2);
        w.insert(5000, 4);
        assert_eq!(w.len(), 4);
        assert_eq!(w.next_timeout(0), Some(120));
        assert_eq!(advance(&mut w, 119), Vec::<u64>::new());
        assert_eq!(w.next_timeout(119), Some(1));
        assert_eq!(advance(&mut w, 400), vec![1, 2, 3]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_timeout(400), Some(4600));
        assert_eq!(advance(&mut w, 5000), vec![4]);
        assert!(w.is_empty());
    }

    #[test]
    fn same_tick_entries_expire_at_their_own_deadlines() {
        let mut w = TimerWheel::new(0);
        w.insert(101, 1);
        w.insert(105, 2);
        w.insert(109, 3);
        w.insert(105, 4);
        assert_eq!(advance(&mut w, 100), Vec::<u64>::new());
        assert_eq!(w.next_timeout(100), Some(1));
        assert_eq!(sorted(advance(&mut w, 105)), vec![1, 2, 4]);
        assert_eq!(w.next_timeout(105), Some(4));
        assert_eq!(advance(&mut w, 109), vec![3]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_fire_on_next_advance() {
        let mut w = TimerWheel::new(10_000);
        w.insert(3, 1);
        w.insert(9_999, 2);
        w.insert(10_000, 3);
        assert_eq!(w.next_timeout(10_000), Some(0));
        assert_eq!(sorted(advance(&mut w, 10_000)), vec![1, 2, 3]);
        assert!(w.is_empty());
        // Also after the clock moved on.
        advance(&mut w, 20_000);
        w.insert(15_000, 4);
        assert_eq!(w.next_timeout(20_005), Some(0));
        assert_eq!(advance(&mut w, 20_001), vec![4]);
    }

    #[test]
    fn far_deadlines_wait_for_their_round() {
        let rotation = TICK_MS * SLOTS as u64;
        let mut w = TimerWheel::new(0);
        // Same slot as 50, one and three rotations later.
        w.insert(50, 1);
        w.insert(50 + rotation, 2);
        w.insert(50 + 3 * rotation, 3);
        assert_eq!(advance(&mut w, 50), vec![1]);
        assert_eq!(w.next_timeout(50), Some(rotation));
        let mut now = 50;
        let mut got = Vec::new();
        // Walk tick by tick-ish through four rotations: each fires exactly at its deadline.
        while now < 50 + 4 * rotation {
            now += 7;
            for key in advance(&mut w, now) {
                got.push((key, now));
            }
        }
        let fired_at = |k: u64| got.iter().find(|&&(key, _)| key == k).map(|&(_, t)| t);
        assert_eq!(got.len(), 2);
        let t2 = fired_at(2).unwrap();
        let t3 = fired_at(3).unwrap();
        assert!((50 + rotation..50 + rotation + 7).contains(&t2), "{t2}");
        assert!(
            (50 + 3 * rotation..50 + 3 * rotation + 7).contains(&t3),
            "{t3}"
        );
    }

    #[test]
    fn jump_over_many_rotations_at_once() {
        let rotation = TICK_MS * SLOTS as u64;
        let mut w = TimerWheel::new(0);
        // Spread over about 9.6 rotations.
        for k in 0..100u64 {
            w.insert(k * 997, k);
        }
        w.insert(20 * rotation, 1000);
        w.insert(20 * rotation + 1, 1001);
        let now = 99 * 997;
        let got = sorted(advance(&mut w, now));
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(w.len(), 2);
        assert_eq!(w.next_timeout(now), Some(20 * rotation - now));
        assert_eq!(advance(&mut w, 20 * rotation), vec![1000]);
        assert_eq!(advance(&mut w, 100 * rotation), vec![1001]);
        assert!(w.is_empty());
    }

    #[test]
    fn time_going_backwards_moves_nothing_back() {
        let mut w = TimerWheel::new(5000);
        w.insert(5100, 1);
        assert_eq!(advance(&mut w, 4000), Vec::<u64>::new());
        assert_eq!(advance(&mut w, 5100), vec![1]);
    }

    #[test]
    fn slots_keep_their_capacity() {
        let mut w = TimerWheel::new(0);
        for k in 0..64 {
            w.insert(30, k);
        }
        let cap = w.slots[slot_of(3)].capacity();
        assert_eq!(advance(&mut w, 30).len(), 64);
        assert_eq!(w.slots[slot_of(3)].capacity(), cap);
    }

    /// xorshift64: a tiny deterministic PRNG, enough to shake the wheel.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn randomized_each_key_once_never_early_never_late() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let rotation = TICK_MS * SLOTS as u64;
        for round in 0..20 {
            let start = rng.below(1 << 40);
            let mut w = TimerWheel::new(start);
            let mut now = start;
            // deadline per key; None once expired.
            let mut pending: Vec<Option<u64>> = Vec::new();
            let mut out = Vec::new();
            for _step in 0..400 {
                for _ in 0..rng.below(8) {
                    // Mostly near, sometimes past, sometimes rotations away.
                    let deadline = match rng.below(10) {
                        0 => now.saturating_sub(rng.below(3 * rotation)),
                        1 => now + rng.below(5 * rotation),
                        _ => now + rng.below(2000),
                    };
                    w.insert(deadline, pending.len() as u64);
                    pending.push(Some(deadline));
                }
                let earliest = pending.iter().flatten().min().copied();
                match (w.next_timeout(now), earliest) {
                    (None, None) => {}
                    (Some(t), Some(d)) => {
                        // Never late is the contract; this wheel is in fact exact.
                        assert!(
                            now + t <= d.max(now),
                            "late: round {round} now {now} t {t} d {d}"
                        );
                        assert_eq!(t, d.saturating_sub(now), "round {round} now {now}");
                    }
                    other => panic!("next_timeout vs pending mismatch: {other:?}"),
                }
                now += match rng.below(20) {
                    0 => rng.below(4 * rotation),
                    1 => 0,
                    _ => rng.below(300),
                };
                out.clear();
                w.advance(now, &mut out);
                for &key in &out {
                    let slot = &mut pending[key as usize];
                    let deadline = slot.take().expect("key returned twice");
                    assert!(
                        deadline <= now,
                        "early: key {key} deadline {deadline} now {now}"
                    );
                }
                for (key, d) in pending.iter().enumerate() {
                    if let Some(d) = d {
                        assert!(
                            *d > now,
                            "late: key {key} deadline {d} still pending at {now}"
                        );
                    }
                }
                assert_eq!(w.len(), pending.iter().flatten().count());
            }
        }
    }
}
