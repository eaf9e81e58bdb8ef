//! The upstream set: addresses, alive flags, counters, and the round-robin pick over the
//! alive set. Shared by every worker (`Arc<Pool>`); the request path takes no lock.
//!
//! The configured [`Upstream`]s are plain data; the mutable per-upstream state (alive flag,
//! counters) lives beside them in the [`Pool`] as atomics, so a struct literal
//! `Upstream { name, addr }` stays the way to describe a backend.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// One backend as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The address as the user wrote it, for logs.
    pub name: String,
    /// The resolved address we connect to.
    pub addr: SocketAddr,
}

/// The shared, mutable state of one upstream; index-parallel to [`Pool`]'s upstreams.
#[derive(Debug)]
struct UpstreamState {
    /// In the rotation. Written by the health sweep and by failed connects, read by every pick.
    alive: AtomicBool,
    /// Requests sent (or about to be sent) to this upstream, for stats and tests.
    requests: AtomicU64,
    /// Connects that were refused, unreachable or timed out.
    connect_failures: AtomicU64,
}

impl UpstreamState {
    fn new() -> Self {
        UpstreamState {
            alive: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
        }
    }
}

/// The set of upstreams and the shared round-robin index.
#[derive(Debug)]
pub struct Pool {
    /// The backends, in the order they were configured (that order is the rotation order).
    upstreams: Box<[Upstream]>,
    /// Alive flag and counters of `upstreams[i]` at `states[i]`.
    states: Box<[UpstreamState]>,
    /// Ever-growing pick counter; the pick is this counter modulo the number of candidates.
    next: AtomicUsize,
}

/// Which upstreams one request has already tried (each is tried at most once per request).
///
/// A bitset: one session keeps one `Tried` and [`clear`](Tried::clear)s it per request, so the
/// words are allocated once (on the first insert beyond the current size) and then reused.
#[derive(Debug, Clone, Default)]
pub struct Tried {
    /// Bit `i % 64` of word `i / 64` is set when upstream `i` was tried.
    words: Vec<u64>,
}

impl Tried {
    /// Forget every upstream, keeping the allocated words.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }
    /// Record that upstream `idx` was tried. Grows the set only when `idx` is beyond its size.
    pub fn insert(&mut self, idx: usize) {
        let word = idx / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (idx % 64);
    }
    /// Whether upstream `idx` was tried.
    pub fn contains(&self, idx: usize) -> bool {
        self.words
            .get(idx / 64)
            .is_some_and(|w| w & (1 << (idx % 64)) != 0)
    }
}

impl Pool {
    /// All upstreams start alive; the first health sweep corrects that within one interval.
    pub fn new(upstreams: Vec<Upstream>) -> Self {
        let states = upstreams.iter().map(|_| UpstreamState::new()).collect();
        Pool {
            upstreams: upstreams.into_boxed_slice(),
            states,
            next: AtomicUsize::new(0),
        }
    }
    /// How many upstreams are configured (alive or not).
    pub fn len(&self) -> usize {
        self.upstreams.len()
    }
    /// True when no upstream is configured.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The configured upstream at `idx`. Panics when `idx >= len()`, which is a caller bug:
    /// indices only ever come from [`pick`](Pool::pick) or `0..len()`.
    pub fn get(&self, idx: usize) -> &Upstream {
        &self.upstreams[idx]
    }
    /// All configured upstreams, in rotation order.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }
    /// Whether `idx` is in the rotation (false for an index out of range).
    pub fn is_alive(&self, idx: usize) -> bool {
        self.states
            .get(idx)
            .is_some_and(|s| s.alive.load(Ordering::Relaxed))
    }
    /// How many upstreams are in the rotation now.
    pub fn alive_count(&self) -> usize {
        self.states
            .iter()
            .filter(|s| s.alive.load(Ordering::Relaxed))
            .count()
    }
    /// The next upstream, round robin over the alive ones not in `tried`; `None` when there is none.
    ///
    /// The k-th candidate (in index order) for `k = counter % candidates`: with A, B, C alive the
    /// picks go A, B, C, A, …; with B down they go A, C, A, C, … — skipping a dead upstream does
    /// not hand its share to its successor, as "the next alive after the counter" would.
    /// No lock, no allocation: one `fetch_add` and two passes over the alive flags.
    pub fn pick(&self, tried: &Tried) -> Option<usize> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.len() <= 64 {
            // The common case in one pass: the candidates as bits of one word.
            let mut candidates = 0u64;
            for (i, s) in self.states.iter().enumerate() {
                if s.alive.load(Ordering::Relaxed) {
                    candidates |= 1 << i;
                }
            }
            candidates &= !tried.words.first().copied().unwrap_or(0);
            let count = candidates.count_ones() as usize;
            if count == 0 {
                return None;
            }
            // Clear the k lowest candidates; the lowest left is the k-th.
            for _ in 0..n % count {
                candidates &= candidates - 1;
            }
            return Some(candidates.trailing_zeros() as usize);
        }
        let is_candidate = |i: usize| !tried.contains(i) && self.is_alive(i);
        let count = (0..self.len()).filter(|&i| is_candidate(i)).count();
        if count == 0 {
            return None;
        }
        let k = n % count;
        // A flag may flip between the two passes; then the k-th candidate may be missing, and
        // the last candidate seen is as good an answer as any (it was alive a moment ago).
        let mut last = None;
        for (seen, i) in (0..self.len()).filter(|&i| is_candidate(i)).enumerate() {
            if seen == k {
                return Some(i);
            }
            last = Some(i);
        }
        last
    }
    /// Take `idx` out of the rotation. Logs at info and returns true on the up→down transition.
    pub fn mark_down(&self, idx: usize, reason: &str) -> bool {
        let was_alive = self.states[idx].alive.swap(false, Ordering::Relaxed);
        if was_alive {
            let up = &self.upstreams[idx];
            log::info!("upstream {} ({}) is down: {}", up.name, up.addr, reason);
        }
        was_alive
    }
    /// Put `idx` back in the rotation. Logs at info and returns true on the down→up transition.
    pub fn mark_up(&self, idx: usize, reason: &str) -> bool {
        let was_alive = self.states[idx].alive.swap(true, Ordering::Relaxed);
        if !was_alive {
            let up = &self.upstreams[idx];
            log::info!("upstream {} ({}) is up: {}", up.name, up.addr, reason);
        }
        !was_alive
    }
    /// Count one request sent to `idx`.
    pub fn record_request(&self, idx: usize) {
        self.states[idx].requests.fetch_add(1, Ordering::Relaxed);
    }
    /// Count one failed connect (refused, unreachable, timed out) to `idx`.
    pub fn record_connect_failure(&self, idx: usize) {
        self.states[idx]
            .connect_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    /// Requests counted for `idx` so far.
    pub fn requests(&self, idx: usize) -> u64 {
        self.states[idx].requests.load(Ordering::Relaxed)
    }
    /// Failed connects counted for `idx` so far.
    pub fn connect_failures(&self, idx: usize) -> u64 {
        self.states[idx].connect_failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pool(n: usize) -> Pool {
        Pool::new(
            (0..n)
                .map(|i| Upstream {
                    name: format!("u{i}"),
                    addr: SocketAddr::from(([127, 0, 0, 1], 8081 + i as u16)),
                })
                .collect(),
        )
    }

    fn picks(p: &Pool, tried: &Tried, n: usize) -> Vec<Option<usize>> {
        (0..n).map(|_| p.pick(tried)).collect()
    }

    #[test]
    fn all_alive_round_robin_starts_at_index_zero() {
        let p = pool(3);
        let got = picks(&p, &Tried::default(), 7);
        let want = [0, 1, 2, 0, 1, 2, 0].map(Some);
        assert_eq!(got, want);
    }

    #[test]
    fn one_down_gives_no_double_share() {
        let p = pool(3);
        assert!(p.mark_down(1, "test"));
        let got = picks(&p, &Tried::default(), 6);
        assert_eq!(got, [0, 2, 0, 2, 0, 2].map(Some));
    }

    #[test]
    fn down_then_up_transitions() {
        let p = pool(3);
        assert_eq!(p.alive_count(), 3);
        assert!(p.mark_down(2, "connect refused"));
        assert!(
            !p.mark_down(2, "connect refused"),
            "already down: no transition"
        );
        assert!(!p.is_alive(2));
        assert_eq!(p.alive_count(), 2);
        assert_eq!(picks(&p, &Tried::default(), 4), [0, 1, 0, 1].map(Some));
        assert!(p.mark_up(2, "probe ok"));
        assert!(!p.mark_up(2, "probe ok"), "already up: no transition");
        assert!(p.is_alive(2));
        assert_eq!(p.alive_count(), 3);
        // The counter is at 4 now: 4 % 3 = 1.
        assert_eq!(picks(&p, &Tried::default(), 3), [1, 2, 0].map(Some));
    }

    #[test]
    fn all_down_is_none() {
        let p = pool(2);
        p.mark_down(0, "x");
        p.mark_down(1, "x");
        assert_eq!(p.pick(&Tried::default()), None);
        assert_eq!(p.alive_count(), 0);
        assert!(Pool::new(Vec::new()).pick(&Tried::default()).is_none());
        assert!(Pool::new(Vec::new()).is_empty());
    }

    #[test]
    fn tried_upstreams_are_excluded() {
        let p = pool(3);
        let mut tried = Tried::default();
        tried.insert(0);
        assert_eq!(picks(&p, &tried, 4), [1, 2, 1, 2].map(Some));
        tried.insert(2);
        assert_eq!(picks(&p, &tried, 2), [1, 1].map(Some));
        tried.insert(1);
        assert_eq!(p.pick(&tried), None);
        tried.clear();
        assert!(!tried.contains(0) && !tried.contains(1) && !tried.contains(2));
        assert!(p.pick(&tried).is_some());
    }

    #[test]
    fn tried_and_down_combine() {
        let p = pool(4);
        p.mark_down(1, "x");
        let mut tried = Tried::default();
        tried.insert(3);
        assert_eq!(picks(&p, &tried, 4), [0, 2, 0, 2].map(Some));
    }

    #[test]
    fn tried_bitset_grows_and_clears_without_shrinking() {
        let mut t = Tried::default();
        assert!(!t.contains(0));
        assert!(!t.contains(1000));
        t.insert(130);
        assert_eq!(t.words.len(), 3);
        assert!(t.contains(130));
        assert!(!t.contains(129) && !t.contains(131) && !t.contains(2));
        t.insert(0);
        t.insert(63);
        t.insert(64);
        assert!(t.contains(0) && t.contains(63) && t.contains(64));
        let cap = t.words.capacity();
        t.clear();
        assert_eq!(t.words.len(), 3);
        assert_eq!(t.words.capacity(), cap);
        assert!(!t.contains(0) && !t.contains(63) && !t.contains(64) && !t.contains(130));
    }

    #[test]
    fn the_one_word_pick_and_the_general_pick_agree() {
        // Up to 64 upstreams take the one-word path, more the two passes: the same rotation
        // either way, with some down and some tried.
        for n in [1, 5, 63, 64, 65, 130] {
            let p = pool(n);
            let mut tried = Tried::default();
            for i in (0..n).step_by(3) {
                p.mark_down(i, "x");
            }
            for i in (1..n).step_by(7) {
                tried.insert(i);
            }
            let want: Vec<usize> = (0..n)
                .filter(|&i| p.is_alive(i) && !tried.contains(i))
                .collect();
            for round in 0..3 * n {
                let got = p.pick(&tried);
                let expect = (!want.is_empty()).then(|| want[round % want.len()]);
                assert_eq!(got, expect, "{n} upstreams, pick {round}");
            }
        }
    }

    #[test]
    fn fairness_with_one_down_is_exact() {
        let p = pool(3);
        p.mark_down(1, "x");
        let mut counts = [0usize; 3];
        let tried = Tried::default();
        for _ in 0..3000 {
            if let Some(i) = p.pick(&tried) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [1500, 0, 1500]);
    }

    #[test]
    fn concurrent_picks_share_exactly() {
        let p = Arc::new(pool(3));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    let tried = Tried::default();
                    let mut counts = [0usize; 3];
                    for _ in 0..10_000 {
                        if let Some(i) = p.pick(&tried) {
                            counts[i] += 1;
                        }
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0usize; 3];
        for t in threads {
            let counts = t.join().unwrap();
            for (sum, c) in total.iter_mut().zip(counts) {
                *sum += c;
            }
        }
        // fetch_add hands out 0..40000 exactly once each: 40000 = 3 * 13333 + 1, and the one
        // extra value (39999 % 3 = 0) lands on index 0.
        assert_eq!(total, [13334, 13333, 13333]);
    }

    #[test]
    fn counters() {
        let p = pool(2);
        p.record_request(1);
        p.record_request(1);
        p.record_connect_failure(0);
        assert_eq!((p.requests(0), p.requests(1)), (0, 2));
        assert_eq!((p.connect_failures(0), p.connect_failures(1)), (1, 0));
    }

    #[test]
    fn accessors() {
        let p = pool(2);
        assert_eq!(p.len(), 2);
        assert_eq!(p.get(1).name, "u1");
        assert_eq!(p.get(1).addr, SocketAddr::from(([127, 0, 0, 1], 8082)));
        assert_eq!(p.upstreams().len(), 2);
        assert!(!p.is_alive(5));
    }
}
