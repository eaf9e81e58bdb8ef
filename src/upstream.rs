//! The upstreams' shared state: alive flags, requests in flight, health-check streaks and
//! history, one [`UpstreamState`] per address for the life of the process.
//!
//! The [`Registry`] hands out one state per address and keeps it: a reload that keeps an
//! address keeps its state (alive, in flight, counters), and per-worker structures (idle
//! connections, probes) are keyed by its [`id`](UpstreamState::id), not by a position in a
//! list. The request path holds plain `&'static` references: no reference count to touch per
//! request, no lock.
//!
//! A state no configuration lists any more is reused for a new address once nothing can
//! refer to it (see [`Registry::prepare`]): addresses may come and go for the life of the
//! process (a reload, a DNS change), with at most [`MAX_UPSTREAMS`] of them at once.

use crate::clock::Tick;
use crate::metrics::{Histogram, UpstreamShard};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

/// Most upstream addresses a process holds at once (a state freed by a reload is reused).
pub const MAX_UPSTREAMS: usize = 65_536;

/// Milliseconds since the process started (monotonic), never 0 once running: 0 means "never"
/// in the timestamps below.
pub fn mono_ms() -> u64 {
    tick_ms(Tick::now())
}

/// [`mono_ms`] of `t`.
pub fn tick_ms(t: Tick) -> u64 {
    t.ns() / 1_000_000 + 1
}

pub use crate::clock::unix_ms;

/// The shared, mutable state of one upstream address.
///
/// The fields every pick reads (alive, in flight, since when up) share the first cache line;
/// what only health checks and the status page touch is apart, so a check does not evict the
/// pick's line from other cores.
#[repr(align(64))]
#[derive(Debug)]
pub struct UpstreamState {
    /// Stable identity while the state is in use: index of per-worker structures (idle
    /// connections, probes).
    pub id: usize,
    /// Where it is and how it was written: fixed while any configuration lists it, replaced
    /// only when the state is reused for another address (nothing refers to it then, so the
    /// lock is never contended).
    identity: RwLock<Identity>,
    /// In the rotation. Written by health checks and failed connects, read by every pick.
    alive: AtomicBool,
    /// Requests in flight to it now, all workers together (least_conn, max_conns).
    in_flight: AtomicU32,
    /// When it last came up (`mono_ms`), 0 if it has been up since the start: slow start.
    up_since_ms: AtomicU64,
    /// The rest, on its own line.
    slow: Slow,
    /// Counters and the response-time histogram, one shard per worker (each written by its
    /// worker only, summed at a scrape).
    shards: Box<[UpstreamShard]>,
    /// Snapshots whose pools list it.
    users: AtomicUsize,
    /// The generation (plus one) from which every worker must have taken a snapshot before
    /// the state may be reused, set when the registry first finds it unused; 0: in use.
    unused_from: AtomicU64,
}

/// An upstream's address, and how the configuration wrote it.
#[derive(Debug, Clone)]
struct Identity {
    /// Where it is.
    addr: SocketAddr,
    /// The address as written, for logs.
    name: String,
    /// `addr` as text (`host:port`), formatted once: the access log writes it per request.
    addr_text: String,
}

impl Identity {
    fn new(addr: SocketAddr, name: &str) -> Identity {
        Identity {
            addr,
            name: name.to_string(),
            addr_text: addr.to_string(),
        }
    }
}

/// What health checks and counters write, off the pick's cache line.
#[repr(align(64))]
#[derive(Debug)]
struct Slow {
    /// Connects that were refused, unreachable or timed out.
    connect_failures: AtomicU64,
    /// When the alive flag last changed (`mono_ms`; 0: never since the start).
    changed_ms: AtomicU64,
    /// Consecutive health checks passed (written by the one prober).
    passes: AtomicU32,
    /// Consecutive health checks failed.
    fails: AtomicU32,
    /// Health checks passed and failed in all.
    checks_passed: AtomicU64,
    checks_failed: AtomicU64,
    /// The last check's outcome, for the status page (never read on the request path).
    last_check: Mutex<Option<LastCheck>>,
    /// The last transition, for the status page (written on transitions only).
    last_change: Mutex<Option<LastChange>>,
}

/// What took an upstream out of the rotation or put it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    /// Health checks (`rise` passes or `fall` failures in a row).
    HealthCheck,
    /// A live request (a refused or timed-out connect).
    Request,
}

impl ChangedBy {
    /// As `/status` writes it.
    pub fn name(self) -> &'static str {
        match self {
            ChangedBy::HealthCheck => "health_check",
            ChangedBy::Request => "request",
        }
    }
}

/// The last time an upstream went down or came back, and why: what the status page says of
/// a down upstream, apart from what its last health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastChange {
    /// It came up (true) or went down.
    pub up: bool,
    /// What did it.
    pub by: ChangedBy,
    /// Why: `connection refused`, `health check: HTTP 200`, ...
    pub reason: String,
    /// When (Unix ms).
    pub unix_ms: u64,
}

/// The outcome of the last health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCheck {
    /// It passed.
    pub ok: bool,
    /// When it ended (Unix ms).
    pub unix_ms: u64,
    /// What was seen: `HTTP 200`, `connection refused`, `timed out`, ...
    pub detail: String,
}

impl UpstreamState {
    fn new(id: usize, addr: SocketAddr, name: &str, workers: usize) -> Self {
        UpstreamState {
            id,
            identity: RwLock::new(Identity::new(addr, name)),
            alive: AtomicBool::new(true),
            in_flight: AtomicU32::new(0),
            up_since_ms: AtomicU64::new(0),
            shards: (0..workers.max(1))
                .map(|_| UpstreamShard::default())
                .collect(),
            slow: Slow {
                connect_failures: AtomicU64::new(0),
                changed_ms: AtomicU64::new(0),
                passes: AtomicU32::new(0),
                fails: AtomicU32::new(0),
                checks_passed: AtomicU64::new(0),
                checks_failed: AtomicU64::new(0),
                last_check: Mutex::new(None),
                last_change: Mutex::new(None),
            },
            users: AtomicUsize::new(0),
            unused_from: AtomicU64::new(0),
        }
    }

    fn identity(&self) -> std::sync::RwLockReadGuard<'_, Identity> {
        self.identity.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Where it is.
    pub fn addr(&self) -> SocketAddr {
        self.identity().addr
    }

    /// The address as the configuration wrote it, for logs.
    pub fn name(&self) -> String {
        self.identity().name.clone()
    }

    /// Append `host:port` to `out` (the access log's upstream).
    pub fn push_addr_text(&self, out: &mut String) {
        out.push_str(&self.identity().addr_text);
    }

    /// Make this state the one of `addr`, as new: called by the registry when nothing refers
    /// to it any more.
    fn reuse(&self, addr: SocketAddr, name: &str) {
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = Identity::new(addr, name);
        self.alive.store(true, Ordering::Relaxed);
        self.up_since_ms.store(0, Ordering::Relaxed);
        let s = &self.slow;
        for c in [
            &s.connect_failures,
            &s.changed_ms,
            &s.checks_passed,
            &s.checks_failed,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        s.passes.store(0, Ordering::Relaxed);
        s.fails.store(0, Ordering::Relaxed);
        *s.last_check.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *s.last_change.lock().unwrap_or_else(|p| p.into_inner()) = None;
        for shard in self.shards.iter() {
            shard.reset();
        }
        self.unused_from.store(0, Ordering::Relaxed);
    }

    /// A snapshot that lists it was made (`+1`) or dropped (`-1`).
    pub(crate) fn listed(&self, by_one_more: bool) {
        if by_one_more {
            self.users.fetch_add(1, Ordering::AcqRel);
        } else {
            self.users.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// A state outside any registry (tests and benches).
    pub fn detached(id: usize, addr: SocketAddr) -> &'static UpstreamState {
        Box::leak(Box::new(UpstreamState::new(id, addr, &addr.to_string(), 1)))
    }

    /// In the rotation.
    #[inline]
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When it last came up (`mono_ms`), 0 if up since the start.
    #[inline]
    pub fn up_since_ms(&self) -> u64 {
        self.up_since_ms.load(Ordering::Relaxed)
    }

    /// Take it out of the rotation. Logs at info, records it for the status page and returns
    /// true on the up→down transition.
    pub fn mark_down(&self, pool: &str, reason: &str, by: ChangedBy) -> bool {
        let was_alive = self.alive.swap(false, Ordering::Relaxed);
        self.slow.passes.store(0, Ordering::Relaxed);
        if was_alive {
            let was = self.since_change();
            let id = self.identity();
            log::info!(
                "upstream {} ({}) in pool {pool} is down: {reason} (was up {was})",
                id.name,
                id.addr
            );
            self.record_change(false, by, reason);
        }
        was_alive
    }

    /// Put it back in the rotation. Logs at info, records it for the status page and returns
    /// true on the down→up transition.
    pub fn mark_up(&self, pool: &str, reason: &str, by: ChangedBy) -> bool {
        let was_alive = self.alive.swap(true, Ordering::Relaxed);
        if !was_alive {
            self.up_since_ms.store(mono_ms(), Ordering::Relaxed);
            let was = self.since_change();
            let id = self.identity();
            log::info!(
                "upstream {} ({}) in pool {pool} is up: {reason} (was down {was})",
                id.name,
                id.addr
            );
            self.record_change(true, by, reason);
        }
        !was_alive
    }

    fn record_change(&self, up: bool, by: ChangedBy, reason: &str) {
        if let Ok(mut last) = self.slow.last_change.lock() {
            *last = Some(LastChange {
                up,
                by,
                reason: reason.to_string(),
                unix_ms: unix_ms(),
            });
        }
    }

    /// The last transition, if any since the start.
    pub fn last_change(&self) -> Option<LastChange> {
        self.slow
            .last_change
            .lock()
            .map_or_else(|p| p.into_inner().clone(), |g| g.clone())
    }

    /// How long since the last change, for the transition's log line; resets the clock.
    fn since_change(&self) -> String {
        let now = mono_ms();
        let then = self.slow.changed_ms.swap(now, Ordering::Relaxed);
        let ms = now.saturating_sub(if then == 0 { 1 } else { then });
        let what = if then == 0 { " since the start" } else { "" };
        if ms < 10_000 {
            format!("{:.1}s{what}", ms as f64 / 1000.0)
        } else {
            format!("{}s{what}", ms / 1000)
        }
    }

    /// A request is assigned to it: in flight until the [`InFlight`] drops. (It counts as a
    /// request once it is sent: [`InFlight::sent`].)
    #[inline]
    pub fn begin_request(&'static self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            state: self,
            queue: None,
        }
    }

    /// [`begin_request`](Self::begin_request) below a cap of `max` requests in flight: `None`
    /// when it is reached. Checking and counting are one atomic step, so two workers that both
    /// saw a free slot cannot both take it. `queue`: the pool's queue of requests waiting for
    /// such a slot, which the slot is handed to when this request lets it go.
    #[inline]
    pub fn try_begin_request(
        &'static self,
        max: u32,
        queue: Option<&'static PoolShared>,
    ) -> Option<InFlight> {
        if max == u32::MAX {
            return Some(self.begin_request());
        }
        // SeqCst with the queue's counter: a request that queues and then looks again for a
        // slot, and one that frees a slot and then looks for a waiter, cannot both miss the
        // other (see `PoolShared::enqueue`).
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(InFlight { state: self, queue })
    }

    /// Worker `worker`'s counters of this upstream.
    #[inline]
    pub fn shard(&self, worker: usize) -> &UpstreamShard {
        &self.shards[worker.min(self.shards.len() - 1)]
    }

    /// Responses by class (1xx … 5xx), all workers together.
    pub fn responses(&self) -> [u64; 5] {
        let mut r = [0; 5];
        for s in self.shards.iter() {
            for (sum, c) in r.iter_mut().zip(&s.responses) {
                *sum += c.get();
            }
        }
        r
    }

    /// The response-time histogram, all workers together.
    pub fn histogram(&self) -> Histogram {
        let mut h = Histogram::default();
        for s in self.shards.iter() {
            h.add(s);
        }
        h
    }

    /// Count one failed connect (refused, unreachable, timed out).
    pub fn record_connect_failure(&self) {
        self.slow.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests counted so far, all workers together.
    pub fn requests(&self) -> u64 {
        self.shards.iter().map(|s| s.requests.get()).sum()
    }

    /// Failed connects counted so far.
    pub fn connect_failures(&self) -> u64 {
        self.slow.connect_failures.load(Ordering::Relaxed)
    }

    /// Health checks passed and failed so far.
    pub fn checks(&self) -> (u64, u64) {
        (
            self.slow.checks_passed.load(Ordering::Relaxed),
            self.slow.checks_failed.load(Ordering::Relaxed),
        )
    }

    /// The last health check, if any ran.
    pub fn last_check(&self) -> Option<LastCheck> {
        self.slow
            .last_check
            .lock()
            .map_or_else(|p| p.into_inner().clone(), |g| g.clone())
    }

    /// Record a health check's outcome and apply `rise`/`fall`: the upstream comes back after
    /// `rise` consecutive passes and leaves after `fall` consecutive failures. Called by the
    /// one prober only. Returns the transition made, if any.
    pub fn record_check(
        &self,
        pool: &str,
        ok: bool,
        detail: &str,
        rise: u32,
        fall: u32,
    ) -> Option<bool> {
        let s = &self.slow;
        if let Ok(mut last) = s.last_check.lock() {
            *last = Some(LastCheck {
                ok,
                unix_ms: unix_ms(),
                detail: detail.to_string(),
            });
        }
        if ok {
            s.checks_passed.fetch_add(1, Ordering::Relaxed);
            s.fails.store(0, Ordering::Relaxed);
            let passes = s.passes.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if !self.is_alive() && passes >= rise {
                let why = if rise > 1 {
                    format!("health check: {detail} ({passes} passes in a row)")
                } else {
                    format!("health check: {detail}")
                };
                return self
                    .mark_up(pool, &why, ChangedBy::HealthCheck)
                    .then_some(true);
            }
        } else {
            s.checks_failed.fetch_add(1, Ordering::Relaxed);
            s.passes.store(0, Ordering::Relaxed);
            let fails = s.fails.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if self.is_alive() && fails >= fall {
                let why = if fall > 1 {
                    format!("health check: {detail} ({fails} failures in a row)")
                } else {
                    format!("health check: {detail}")
                };
                return self
                    .mark_down(pool, &why, ChangedBy::HealthCheck)
                    .then_some(false);
            }
        }
        None
    }
}

/// A request in flight to an upstream; dropping it ends the request's count and, in a pool
/// with `max_conns`, hands the slot to the pool's next waiter, in that order and in one place:
/// no path that lets a request go can forget the hand-over, or make it before the slot is free.
#[derive(Debug)]
pub struct InFlight {
    state: &'static UpstreamState,
    /// The queue of the capped pool the slot was taken in.
    queue: Option<&'static PoolShared>,
}

impl InFlight {
    /// The upstream.
    #[inline]
    pub fn upstream(&self) -> &'static UpstreamState {
        self.state
    }

    /// The request goes out on a connection to the upstream (connected, or taken from the
    /// idle pool) from worker `worker`: counted. A connect that fails is no request.
    #[inline]
    pub fn sent(&self, worker: usize) {
        self.state.shard(worker).requests.add(1);
    }
}

impl Drop for InFlight {
    #[inline]
    fn drop(&mut self) {
        match self.queue {
            None => {
                self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            Some(queue) => {
                self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
                queue.slot_freed();
            }
        }
    }
}

/// What the workers share about one pool, by name, for the life of the process (a reload that
/// keeps the name keeps it): the counters that are not per upstream, and the queue of requests
/// waiting for a `max_conns` slot.
#[derive(Debug)]
pub struct PoolShared {
    /// The pool's name.
    pub name: String,
    /// Requests refused by a client rate limit.
    pub rate_limited: AtomicU64,
    /// Requests that waited their `queue_timeout` for a slot and got 503.
    pub queue_timeouts: AtomicU64,
    /// Requests waiting for a slot now.
    pub queued: AtomicUsize,
    /// Who waits, in order of arrival: (worker, session key, ticket).
    pub waiters: Mutex<std::collections::VecDeque<Waiter>>,
}

/// Most requests one pool's queue holds; beyond, a request gets 503 at once.
pub const MAX_QUEUE: usize = 4096;

impl PoolShared {
    /// Queue `w` (at the front when it had waited already and lost its slot to another
    /// request: the order of arrival holds). False when the queue is full.
    ///
    /// The caller must look for a free slot once more after this: a slot freed between its
    /// first look and the enqueue found nobody to wake. (The counter is stored SeqCst and the
    /// releaser decrements its upstream's count SeqCst before it loads the counter, so one of
    /// the two sees the other.)
    pub fn enqueue(&self, w: Waiter, front: bool) -> bool {
        let mut q = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_QUEUE {
            return false;
        }
        if front {
            q.push_front(w);
        } else {
            q.push_back(w);
        }
        self.queued.store(q.len(), Ordering::SeqCst);
        true
    }

    /// Take `w` out of the queue (it timed out, took a slot itself, or its client left).
    /// False when it was not there any more: a freed slot already woke it, and a waiter that
    /// will not use that slot must pass the wake-up on ([`slot_freed`](Self::slot_freed)).
    pub fn cancel(&self, w: Waiter) -> bool {
        let mut q = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let before = q.len();
        q.retain(|x| *x != w);
        self.queued.store(q.len(), Ordering::SeqCst);
        q.len() < before
    }

    /// A slot of this pool is free: wake the first waiter, if any (one load when nobody
    /// waits).
    #[inline]
    pub fn slot_freed(&self) {
        if self.queued.load(Ordering::SeqCst) == 0 {
            return;
        }
        let first = {
            let mut q = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            let w = q.pop_front();
            self.queued.store(q.len(), Ordering::Relaxed);
            w
        };
        if let (Some(w), Some(mail)) = (first, MAILBOXES.get()) {
            mail.post(w);
        }
    }
}

/// (session key, ticket) of queued requests to wake.
pub type WakeUps = Vec<(usize, u64)>;

/// Where workers leave each other the wake-ups of queued requests.
#[derive(Debug)]
pub struct Mailboxes {
    /// Per worker, (session key, ticket) to wake.
    boxes: Box<[Mutex<WakeUps>]>,
    /// Per worker, something is in its box (checked every loop turn without the lock).
    pending: Box<[AtomicBool]>,
    /// Per worker, its poll's waker.
    wakers: std::sync::Arc<Vec<mio::Waker>>,
}

/// The process's mailboxes (installed once the workers exist).
static MAILBOXES: OnceLock<Mailboxes> = OnceLock::new();

/// Install the mailboxes of the workers whose wakers these are.
pub fn install_mailboxes(wakers: std::sync::Arc<Vec<mio::Waker>>) {
    let n = wakers.len();
    let _ = MAILBOXES.set(Mailboxes {
        boxes: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
        pending: (0..n).map(|_| AtomicBool::new(false)).collect(),
        wakers,
    });
}

impl Mailboxes {
    fn post(&self, w: Waiter) {
        let Some(b) = self.boxes.get(w.worker) else {
            return;
        };
        b.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((w.key, w.ticket));
        self.pending[w.worker].store(true, Ordering::Release);
        if let Some(waker) = self.wakers.get(w.worker) {
            let _ = waker.wake();
        }
    }
}

/// Worker `worker`'s wake-ups since the last call, appended to `out`.
#[inline]
pub fn take_mail(worker: usize, out: &mut Vec<(usize, u64)>) {
    let Some(m) = MAILBOXES.get() else {
        return;
    };
    if !m.pending[worker].swap(false, Ordering::Acquire) {
        return;
    }
    out.append(&mut m.boxes[worker].lock().unwrap_or_else(|p| p.into_inner()));
}

/// A request waiting in a pool's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    /// The worker whose session waits.
    pub worker: usize,
    /// The session's slab key.
    pub key: usize,
    /// Which wait of that session (a stale wake-up is told apart by it).
    pub ticket: u64,
}

/// Every upstream state and pool state, by address and by name. Touched when a configuration
/// is loaded, never on the request path.
#[derive(Debug, Default)]
pub struct Registry {
    /// The states, by id, and by address.
    inner: Mutex<States>,
    /// Pool states by name.
    pools: Mutex<Vec<&'static PoolShared>>,
    /// Workers of the process: the number of counter shards per upstream.
    workers: usize,
    /// The generation of the snapshot last published.
    published: AtomicU64,
    /// The generation of the snapshot each worker took last (and closed, then, its idle
    /// connections and checks of upstreams that snapshot does not list).
    taken: Box<[AtomicU64]>,
}

/// The registry's table of states.
#[derive(Debug, Default)]
struct States {
    /// By id.
    all: Vec<&'static UpstreamState>,
    /// Id by address, for the states in use or not yet reused.
    by_addr: HashMap<SocketAddr, usize>,
    /// Ids of states free for another address.
    free: Vec<usize>,
}

impl Registry {
    /// A registry for a process with `workers` workers.
    pub fn new(workers: usize) -> Registry {
        Registry {
            workers,
            taken: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            ..Registry::default()
        }
    }

    /// The shared state of pool `name` (made on first use).
    pub fn pool(&self, name: &str) -> &'static PoolShared {
        let mut all = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = all.iter().find(|p| p.name == name) {
            return p;
        }
        let p: &'static PoolShared = Box::leak(Box::new(PoolShared {
            name: name.to_string(),
            rate_limited: AtomicU64::new(0),
            queue_timeouts: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            waiters: Mutex::new(std::collections::VecDeque::new()),
        }));
        all.push(p);
        p
    }

    /// Generation `generation` was published (see [`prepare`](Self::prepare)).
    pub fn published(&self, generation: u64) {
        self.published.fetch_max(generation, Ordering::AcqRel);
    }

    /// Worker `worker` took the snapshot of `generation`, and let go of everything an older
    /// one listed that this one does not (idle connections, health checks).
    pub fn taken(&self, worker: usize, generation: u64) {
        if let Some(t) = self.taken.get(worker) {
            t.store(generation, Ordering::Release);
        }
    }

    /// Before a snapshot is built: free the states nothing can refer to any more, for the
    /// addresses the new configuration brings.
    ///
    /// A state no snapshot lists and no request uses is marked with the next generation; it is
    /// freed once every worker has taken a snapshot of that generation or later. By then each
    /// worker has closed its idle connections to it and dropped its checks (they go when a
    /// worker takes a snapshot that does not list it), and no session can use it again (a
    /// session only moves on to newer snapshots).
    pub fn prepare(&self) {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let next = self.published.load(Ordering::Acquire) + 1;
        let all_took = self
            .taken
            .iter()
            .map(|t| t.load(Ordering::Acquire))
            .min()
            .unwrap_or(0);
        let States { all, by_addr, free } = &mut *st;
        for s in all.iter() {
            let unused = s.users.load(Ordering::Acquire) == 0 && s.in_flight() == 0;
            let mark = s.unused_from.load(Ordering::Relaxed);
            if mark == u64::MAX {
                continue;
            }
            if !unused {
                // In use again: the wait starts over the next time it is unused.
                if mark != 0 {
                    s.unused_from.store(0, Ordering::Relaxed);
                }
                continue;
            }
            if mark == 0 {
                s.unused_from.store(next, Ordering::Relaxed);
            } else if all_took >= mark {
                by_addr.remove(&s.addr());
                s.unused_from.store(u64::MAX, Ordering::Relaxed);
                free.push(s.id);
            }
        }
    }

    /// The state for `addr` (made, or a freed one reused, on first use; named `name`), or an
    /// error when [`MAX_UPSTREAMS`] are in use.
    pub fn get(&self, addr: SocketAddr, name: &str) -> Result<&'static UpstreamState, String> {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = st.by_addr.get(&addr) {
            let s = st.all[id];
            // Listed again before it was freed: in use.
            s.unused_from.store(0, Ordering::Relaxed);
            return Ok(s);
        }
        if let Some(id) = st.free.pop() {
            let s = st.all[id];
            s.reuse(addr, name);
            st.by_addr.insert(addr, id);
            return Ok(s);
        }
        if st.all.len() >= MAX_UPSTREAMS {
            return Err(format!(
                "more than {MAX_UPSTREAMS} upstream addresses in use at once"
            ));
        }
        let id = st.all.len();
        let state: &'static UpstreamState =
            Box::leak(Box::new(UpstreamState::new(id, addr, name, self.workers)));
        st.all.push(state);
        st.by_addr.insert(addr, id);
        Ok(state)
    }

    /// Every state made so far, by id (those freed for reuse too).
    pub fn all(&self) -> Vec<&'static UpstreamState> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .all
            .clone()
    }
}

/// Which members of a pool one request has already tried (each is tried at most once).
///
/// A bitset kept in every session: the first 64 members' bits inline (no allocation, and a
/// few bytes of the idle connection's footprint), the rest, for the rare pool beyond 64, in
/// words allocated on the first insert there and reused after [`clear`](Tried::clear).
#[derive(Debug, Clone, Default)]
pub struct Tried {
    /// Bit `i` is set when member `i` (< 64) was tried.
    first: u64,
    /// Bit `i % 64` of word `i / 64 - 1` for members from 64 on (a boxed slice: two words
    /// where a Vec takes three).
    rest: Box<[u64]>,
    /// How many were tried.
    count: u32,
}

impl Tried {
    /// Forget every member, keeping the allocated words.
    #[inline]
    pub fn clear(&mut self) {
        self.first = 0;
        self.rest.iter_mut().for_each(|w| *w = 0);
        self.count = 0;
    }
    /// Record that member `idx` was tried. Grows the set only when `idx` is beyond its size.
    pub fn insert(&mut self, idx: usize) {
        let bit = 1u64 << (idx % 64);
        let word = match idx / 64 {
            0 => &mut self.first,
            n => {
                if n > self.rest.len() {
                    let mut grown = std::mem::take(&mut self.rest).into_vec();
                    grown.resize(n, 0);
                    self.rest = grown.into_boxed_slice();
                }
                &mut self.rest[n - 1]
            }
        };
        if *word & bit == 0 {
            *word |= bit;
            self.count += 1;
        }
    }
    /// Whether member `idx` was tried.
    #[inline]
    pub fn contains(&self, idx: usize) -> bool {
        let bit = 1u64 << (idx % 64);
        match idx / 64 {
            0 => self.first & bit != 0,
            n => self.rest.get(n - 1).is_some_and(|w| w & bit != 0),
        }
    }
    /// The first 64 members' bits.
    #[inline]
    pub fn first_word(&self) -> u64 {
        self.first
    }
    /// How many members were tried.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    /// None was tried.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn tried_counts_each_member_once_on_both_sides_of_64() {
        let mut t = Tried::default();
        for idx in [0, 63, 64, 200, 63, 200] {
            t.insert(idx);
        }
        assert_eq!(t.len(), 4);
        assert!([0, 63, 64, 200].iter().all(|&i| t.contains(i)));
        assert!(![1, 65, 199, 201, 1000].iter().any(|&i| t.contains(i)));
        assert_eq!(t.first_word(), 1 | 1 << 63);
        t.clear();
        assert!(t.is_empty() && !t.contains(0) && !t.contains(200));
        t.insert(130);
        assert_eq!((t.len(), t.first_word()), (1, 0));
    }

    #[test]
    fn one_state_per_address_for_good() {
        let r = Registry::new(1);
        let a = r.get(addr(1), "a:1").unwrap();
        let b = r.get(addr(2), "b:2").unwrap();
        let a2 = r.get(addr(1), "other name").unwrap();
        assert!(std::ptr::eq(a, a2));
        assert_eq!((a.id, b.id), (0, 1));
        assert_eq!(a2.name(), "a:1");
        assert_eq!(r.all().len(), 2);
    }

    #[test]
    fn a_state_no_snapshot_lists_is_reused_once_every_worker_moved_on() {
        let r = Registry::new(2);
        let a = r.get(addr(1), "a").unwrap();
        a.listed(true);
        a.mark_down("p", "x", ChangedBy::Request);
        // Generation 1 drops it.
        a.listed(false);
        r.published(1);
        r.prepare();
        // Not before both workers took a snapshot from generation 2 on.
        r.taken(0, 2);
        r.prepare();
        assert_eq!(
            r.get(addr(2), "b").unwrap().id,
            1,
            "a fresh state, `a` not yet free"
        );
        r.taken(1, 2);
        r.prepare();
        let c = r.get(addr(3), "c").unwrap();
        c.listed(true);
        assert!(std::ptr::eq(a, c), "a's state, reused");
        assert_eq!(
            (c.addr(), c.name(), c.is_alive()),
            (addr(3), "c".to_string(), true)
        );
        assert!(c.last_change().is_none(), "as new");
        // A state in use, or with a request in flight, is never freed.
        let b = r.get(addr(2), "b").unwrap();
        let held = b.begin_request();
        r.published(5);
        r.taken(0, 9);
        r.taken(1, 9);
        r.prepare();
        r.prepare();
        assert_eq!(r.get(addr(4), "d").unwrap().id, 2);
        drop(held);
        // An address listed again before it was freed keeps its state.
        assert!(std::ptr::eq(r.get(addr(2), "b").unwrap(), b));
    }

    #[test]
    fn in_flight_counts_follow_the_guards() {
        let s = UpstreamState::detached(0, addr(1));
        let g1 = s.begin_request();
        let g2 = s.begin_request();
        assert_eq!((s.in_flight(), s.requests()), (2, 0));
        g1.sent(0);
        drop(g1);
        assert_eq!(s.in_flight(), 1);
        assert!(std::ptr::eq(g2.upstream(), s));
        drop(g2);
        assert_eq!(
            (s.in_flight(), s.requests()),
            (0, 1),
            "only what was sent is a request"
        );
    }

    #[test]
    fn a_capped_begin_never_takes_more_than_the_cap() {
        let s = UpstreamState::detached(0, addr(1));
        let most = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let most = &most;
                scope.spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(g) = s.try_begin_request(2, None) {
                            most.fetch_max(s.in_flight(), Ordering::Relaxed);
                            drop(g);
                        }
                    }
                });
            }
        });
        assert!(most.load(Ordering::Relaxed) <= 2);
        let (a, b) = (s.try_begin_request(2, None), s.try_begin_request(2, None));
        assert!(a.is_some() && b.is_some());
        assert!(s.try_begin_request(2, None).is_none(), "the cap is reached");
        drop(a);
        assert!(s.try_begin_request(2, None).is_some());
        assert!(s.try_begin_request(u32::MAX, None).is_some(), "uncapped");
    }

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let s = UpstreamState::detached(0, addr(1));
        // fall = 2: one failure is not enough, a pass in between resets the streak.
        assert_eq!(s.record_check("p", false, "HTTP 500", 2, 2), None);
        assert_eq!(s.record_check("p", true, "HTTP 200", 2, 2), None);
        assert_eq!(s.record_check("p", false, "HTTP 500", 2, 2), None);
        assert!(s.is_alive());
        assert_eq!(s.record_check("p", false, "timed out", 2, 2), Some(false));
        assert!(!s.is_alive());
        assert_eq!(s.record_check("p", false, "timed out", 2, 2), None);
        // rise = 2.
        assert_eq!(s.record_check("p", true, "HTTP 200", 2, 2), None);
        assert!(!s.is_alive());
        assert_eq!(s.record_check("p", true, "HTTP 200", 2, 2), Some(true));
        assert!(s.is_alive());
        assert!(s.up_since_ms() > 0, "slow start counts from here");
        assert_eq!(s.checks(), (3, 4));
        let last = s.last_check().unwrap();
        assert!(last.ok && last.detail == "HTTP 200" && last.unix_ms > 0);
        // A failed connect on live traffic takes it out at once, and resets the passes.
        assert!(s.mark_down("p", "connection refused", ChangedBy::Request));
        let change = s.last_change().unwrap();
        assert!(
            !change.up && change.by == ChangedBy::Request && change.reason == "connection refused"
        );
        assert_eq!(s.record_check("p", true, "HTTP 200", 2, 2), None);
        assert_eq!(s.record_check("p", true, "HTTP 200", 2, 2), Some(true));
    }

    #[test]
    fn tried_bitset_grows_and_clears_without_shrinking() {
        let mut t = Tried::default();
        assert!(!t.contains(0) && !t.contains(1000) && t.is_empty());
        t.insert(130);
        t.insert(130);
        assert_eq!((t.rest.len(), t.len()), (2, 1));
        assert!(t.contains(130) && !t.contains(129));
        t.insert(0);
        t.insert(63);
        assert_eq!(t.first_word(), 1 | (1 << 63));
        let words = t.rest.as_ptr();
        t.clear();
        assert_eq!((t.rest.len(), t.rest.as_ptr(), t.len()), (2, words, 0));
        assert!(!t.contains(130));
    }
}
