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
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
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
    /// What its health checks say (a [`Checked`] as a byte).
    checked: AtomicU8,
    /// Ejected by outlier detection until then (`mono_ms`); 0: not ejected.
    ejected_until_ms: AtomicU64,
    /// Ejections in a row (the n-th lasts n × `ejection`), forgotten once it stayed in for
    /// `max_ejection`.
    ejections_in_row: AtomicU32,
    /// When the last ejection ended (`mono_ms`).
    returned_ms: AtomicU64,
    /// Ejections so far, by reason: consecutive failures, consecutive 5xx.
    ejections: [AtomicU64; 2],
    /// Outlier detection's runs of failures and of 502/503/504 (taken only when one comes).
    runs: Mutex<Runs>,
    /// Serialises the changes of `alive` from its causes (checks, ejections), so that the
    /// flag always equals "checked up and not ejected".
    transition: Mutex<()>,
}

/// What an upstream's health checks say, one state: a new address from DNS awaiting its
/// first check is down by its checks too, and leaves that state on its first result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Checked {
    /// In, as far as the checks go (since the start, or `rise` passes).
    Up,
    /// Out by `fall` failures in a row (or a failed first check).
    Down,
    /// A new address from DNS, out until its first check passes.
    Awaiting,
}

/// Outlier detection's runs: of failures (ended by any response head), of 502/503/504 (ended
/// by any other head).
#[derive(Debug, Default, Clone, Copy)]
struct Runs {
    failures: Run,
    errors: Run,
}

/// Events in a row, and the count of what ends the run as it was at the last event.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    len: u32,
    mark: u64,
}

impl Run {
    /// One more event, with the count of what ends a run at `mark` now: the run goes on when
    /// nothing ended it since the last event, else starts over. Its length now.
    fn go_on(&mut self, mark: u64) -> u32 {
        if self.len != 0 && self.mark == mark {
            self.len = self.len.saturating_add(1);
        } else {
            *self = Run { len: 1, mark };
        }
        self.len
    }
}

/// Why outlier detection ejects an upstream (`goround_upstream_ejections_total`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    /// Connect errors, resets or timeouts before a response head.
    Failures,
    /// 502/503/504 responses in a row.
    Errors5xx,
}

impl Ejection {
    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Ejection::Failures => "failures",
            Ejection::Errors5xx => "5xx",
        }
    }
}

/// Upstreams ejected now, in the whole process: the return sweep runs only while some are.
pub static EJECTED: AtomicUsize = AtomicUsize::new(0);

/// What took an upstream out of the rotation or put it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedBy {
    /// Health checks (`rise` passes or `fall` failures in a row).
    HealthCheck,
    /// A live request (a refused or timed-out connect).
    Request,
    /// The end of an ejection (its time was up).
    Outlier,
    /// DNS: a new address, waiting for its first check.
    Discovery,
}

impl ChangedBy {
    /// As `/status` writes it.
    pub fn name(self) -> &'static str {
        match self {
            ChangedBy::HealthCheck => "health_check",
            ChangedBy::Request => "request",
            ChangedBy::Outlier => "outlier_detection",
            ChangedBy::Discovery => "dns",
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
                checked: AtomicU8::new(Checked::Up as u8),
                ejected_until_ms: AtomicU64::new(0),
                ejections_in_row: AtomicU32::new(0),
                returned_ms: AtomicU64::new(0),
                ejections: [AtomicU64::new(0), AtomicU64::new(0)],
                runs: Mutex::new(Runs::default()),
                transition: Mutex::new(()),
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
        *s.runs.lock().unwrap_or_else(|p| p.into_inner()) = Runs::default();
        if s.ejected_until_ms.swap(0, Ordering::Relaxed) != 0 {
            EJECTED.fetch_sub(1, Ordering::Relaxed);
        }
        for c in [
            &s.connect_failures,
            &s.changed_ms,
            &s.checks_passed,
            &s.checks_failed,
            &s.returned_ms,
            &s.ejections[0],
            &s.ejections[1],
        ] {
            c.store(0, Ordering::Relaxed);
        }
        s.passes.store(0, Ordering::Relaxed);
        s.fails.store(0, Ordering::Relaxed);
        s.ejections_in_row.store(0, Ordering::Relaxed);
        s.checked.store(Checked::Up as u8, Ordering::Relaxed);
        *s.last_check.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *s.last_change.lock().unwrap_or_else(|p| p.into_inner()) = None;
        for shard in self.shards.iter() {
            shard.reset();
        }
        self.unused_from.store(0, Ordering::Relaxed);
    }

    /// Some snapshot lists it now.
    pub fn is_listed(&self) -> bool {
        self.users.load(Ordering::Acquire) > 0
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

    fn transition(&self) -> std::sync::MutexGuard<'_, ()> {
        self.slow
            .transition
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Take it out of the rotation until checks bring it back (`fall` failures, or a test).
    /// Logs at info, records it for the status page and returns true on the up→down
    /// transition.
    pub fn mark_down(&self, pool: &str, reason: &str, by: ChangedBy) -> bool {
        let _t = self.transition();
        self.set_checked(Checked::Down);
        self.set_down(pool, reason, by)
    }

    /// The alive flag goes down (the caller holds the transition lock).
    fn set_down(&self, pool: &str, reason: &str, by: ChangedBy) -> bool {
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

    /// Put it back in the rotation: its checks passed (`rise`), which also ends an ejection
    /// early. Logs at info, records it for the status page and returns true on the down→up
    /// transition.
    pub fn mark_up(&self, pool: &str, reason: &str, by: ChangedBy) -> bool {
        let _t = self.transition();
        self.set_checked(Checked::Up);
        if self.slow.ejected_until_ms.swap(0, Ordering::Relaxed) != 0 {
            EJECTED.fetch_sub(1, Ordering::Relaxed);
            self.slow.returned_ms.store(mono_ms(), Ordering::Relaxed);
        }
        self.set_up(pool, reason, by)
    }

    /// The alive flag goes up (the caller holds the transition lock).
    fn set_up(&self, pool: &str, reason: &str, by: ChangedBy) -> bool {
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

    /// A new address from DNS: out of the rotation until its first health check passes.
    pub fn await_first_check(&self, pool: &str) {
        let _t = self.transition();
        self.set_checked(Checked::Awaiting);
        self.set_down(
            pool,
            "new address: waiting for its first health check",
            ChangedBy::Discovery,
        );
    }

    /// Eject it for `n × ejection` (at most `max_ejection`), n counting the ejections in a
    /// row. False when it is ejected already. The caller keeps the pool's share of ejected
    /// members under its `max_ejected_percent`.
    pub fn eject(
        &self,
        pool: &str,
        why: Ejection,
        detail: &str,
        spec: &crate::config::OutlierSpec,
    ) -> bool {
        let _t = self.transition();
        let s = &self.slow;
        if s.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let now = mono_ms();
        let max_ms = duration_ms(spec.max_ejection);
        let returned = s.returned_ms.load(Ordering::Relaxed);
        // Back for long enough since the last one: this is the first again.
        let n = if returned != 0 && now.saturating_sub(returned) >= max_ms {
            1
        } else {
            s.ejections_in_row.load(Ordering::Relaxed).saturating_add(1)
        };
        s.ejections_in_row.store(n, Ordering::Relaxed);
        let ms = duration_ms(spec.ejection)
            .saturating_mul(u64::from(n))
            .min(max_ms);
        s.ejected_until_ms.store(now + ms, Ordering::Relaxed);
        EJECTED.fetch_add(1, Ordering::Relaxed);
        s.ejections[why as usize].fetch_add(1, Ordering::Relaxed);
        *s.runs.lock().unwrap_or_else(|p| p.into_inner()) = Runs::default();
        let reason = format!(
            "{detail}, ejected for {}",
            crate::config::format_duration(std::time::Duration::from_millis(ms))
        );
        // Live requests found it: outlier detection is their judgement.
        if !self.set_down(pool, &reason, ChangedBy::Request) {
            // Already out by its checks: the ejection still counts, and is logged.
            let id = self.identity();
            log::info!("upstream {} ({}) in pool {pool} {reason}", id.name, id.addr);
        }
        true
    }

    /// End its ejection if its time is up (the return sweep). Returns true if it ended.
    pub fn end_ejection_if_due(&self, pool: &str, now_ms: u64) -> bool {
        let until = self.slow.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 || now_ms < until {
            return false;
        }
        let _t = self.transition();
        let s = &self.slow;
        if s.ejected_until_ms.load(Ordering::Relaxed) != until {
            return false;
        }
        s.ejected_until_ms.store(0, Ordering::Relaxed);
        s.returned_ms.store(now_ms, Ordering::Relaxed);
        EJECTED.fetch_sub(1, Ordering::Relaxed);
        if self.checked() != Checked::Up {
            let id = self.identity();
            log::info!(
                "upstream {} ({}) in pool {pool}: ejection over, still down by its health checks",
                id.name,
                id.addr
            );
        } else {
            self.set_up(pool, "ejection over", ChangedBy::Outlier);
        }
        true
    }

    /// Ejected now: until when (Unix ms).
    pub fn ejected_until_unix_ms(&self) -> Option<u64> {
        let until = self.slow.ejected_until_ms.load(Ordering::Relaxed);
        (until != 0).then(|| unix_ms() + until.saturating_sub(mono_ms()))
    }

    /// Ejected now.
    #[inline]
    pub fn is_ejected(&self) -> bool {
        self.slow.ejected_until_ms.load(Ordering::Relaxed) != 0
    }

    /// Ejections so far: (for failures, for 5xx).
    pub fn ejections(&self) -> (u64, u64) {
        (
            self.slow.ejections[0].load(Ordering::Relaxed),
            self.slow.ejections[1].load(Ordering::Relaxed),
        )
    }

    /// A live request failed before a response head (connect error, reset, timeout): the
    /// failures in a row now.
    ///
    /// "In a row" without a count on the request path: a run goes on while the upstream's
    /// response heads (which its shards count anyway) stay as many as at its last failure.
    pub fn count_failure(&self) -> u32 {
        let heads = self.heads();
        let mut runs = self.slow.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.failures.go_on(heads)
    }

    /// Worker `worker` received a 502, 503 or 504 head (already counted as a response):
    /// the 502/503/504 responses in a row now. The run goes on while the other heads stay as
    /// many as at its last one.
    pub fn count_gateway_error(&self, worker: usize) -> u32 {
        self.shard(worker).gateway_errors.add(1);
        let gateway: u64 = self.shards.iter().map(|s| s.gateway_errors.get()).sum();
        let others = self.heads().saturating_sub(gateway);
        let mut runs = self.slow.runs.lock().unwrap_or_else(|p| p.into_inner());
        runs.errors.go_on(others)
    }

    /// Final response heads received so far, all workers together.
    fn heads(&self) -> u64 {
        self.responses().iter().sum()
    }

    /// A new address from DNS whose first health check has not ended yet.
    pub fn is_awaiting_first_check(&self) -> bool {
        self.checked() == Checked::Awaiting
    }

    /// What its health checks say now.
    fn checked(&self) -> Checked {
        match self.slow.checked.load(Ordering::Relaxed) {
            x if x == Checked::Down as u8 => Checked::Down,
            x if x == Checked::Awaiting as u8 => Checked::Awaiting,
            _ => Checked::Up,
        }
    }

    fn set_checked(&self, c: Checked) {
        self.slow.checked.store(c as u8, Ordering::Relaxed);
    }

    /// Down by its health checks (or waiting for its first).
    pub fn is_check_down(&self) -> bool {
        self.checked() != Checked::Up
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

    /// Its alive flag, last recorded change and ejection's end (unix ms) read together under
    /// the transition lock: a transition stores the flag before its record, and a reading
    /// between the two would show a change whose record is the one before (which the status
    /// history would take for a flap between two readings).
    pub fn transition_view(&self) -> (bool, Option<LastChange>, Option<u64>) {
        let _t = self.transition();
        (
            self.is_alive(),
            self.last_change(),
            self.ejected_until_unix_ms(),
        )
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
            if self.checked() == Checked::Awaiting {
                // A new address joins on its first pass, whatever `rise` says.
                return self
                    .mark_up(
                        pool,
                        &format!("first health check: {detail}"),
                        ChangedBy::HealthCheck,
                    )
                    .then_some(true);
            }
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
            if self.checked() == Checked::Awaiting {
                // Its first check failed: down by its checks, back after `rise` passes.
                self.set_checked(Checked::Down);
            }
            let fails = s.fails.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            if self.checked() == Checked::Up && fails >= fall {
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

/// A duration in whole milliseconds (saturating).
fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
    /// Retries refused by the pool's retry budget.
    pub retries_refused: AtomicU64,
    /// 502, 503 and 504 answered by the proxy itself for requests routed to the pool (its
    /// upstreams failed, were all down, or its queue timed out).
    pub local_5xx: AtomicU64,
    /// The retry budget's counts (taken only by a retry, and by worker 0's sweep).
    pub budget: Mutex<RetryBudget>,
    /// Held while a member is judged for ejection: the count of ejected members and the
    /// ejection are one step, so two workers cannot both pass `max_ejected_percent`.
    pub ejecting: Mutex<()>,
}

/// What a pool's retry budget is counted from: the pool's requests sent so far, sampled once a
/// second (worker 0's sweep reads its members' counters: the request path counts nothing more),
/// and the retries made, per second.
#[derive(Debug, Default)]
pub struct RetryBudget {
    /// Requests the pool's members were sent while in it, since the start: it only grows,
    /// whatever members come and go.
    total: u64,
    /// Each member's request count (by state id) at the last look.
    seen: HashMap<usize, u64>,
    /// (second, requests sent by then), oldest first, for the last window and one more.
    samples: std::collections::VecDeque<(u64, u64)>,
    /// (second, retries made in it), oldest first.
    retries: std::collections::VecDeque<(u64, u64)>,
}

impl RetryBudget {
    /// Add what each member (state id, requests sent so far) was sent since the last look;
    /// the pool's total now. A member seen for the first time counts from now on, one that
    /// left keeps what it added.
    /// (Kept in place: a look once a second allocates nothing unless the members changed.)
    pub fn observe<I>(&mut self, members: I) -> u64
    where
        I: Iterator<Item = (usize, u64)> + Clone,
    {
        let mut count = 0;
        for (id, sent) in members.clone() {
            count += 1;
            let before = self.seen.entry(id).or_insert(sent);
            self.total += sent.saturating_sub(*before);
            *before = sent;
        }
        if self.seen.len() > count {
            // Members left: forget them (one that comes back counts from then on).
            self.seen
                .retain(|id, _| members.clone().any(|(member, _)| member == *id));
        }
        self.total
    }

    /// Record that `sent` requests had been sent by second `sec` (once a second is enough).
    pub fn sample(&mut self, sec: u64, sent: u64) {
        if self.samples.back().is_some_and(|&(s, _)| s == sec) {
            return;
        }
        self.samples.push_back((sec, sent));
        let window = crate::config::RETRY_BUDGET_WINDOW_S;
        while self.samples.len() > window as usize + 1 {
            self.samples.pop_front();
        }
    }

    /// A retry at second `sec`, with `sent` requests sent so far: allowed when the retries of
    /// the window stay within `percent` of its first tries, or within the floor of
    /// [`RETRY_BUDGET_FLOOR`](crate::config::RETRY_BUDGET_FLOOR) a second. Counted when
    /// allowed.
    pub fn take(&mut self, sec: u64, sent: u64, percent: u32) -> bool {
        let window = crate::config::RETRY_BUDGET_WINDOW_S;
        let from = sec.saturating_sub(window - 1);
        while self.retries.front().is_some_and(|&(s, _)| s < from) {
            self.retries.pop_front();
        }
        let retried: u64 = self.retries.iter().map(|&(_, n)| n).sum();
        // Sent since the window began (every request since the start when there is no sample
        // that old yet); retries that were sent are no first tries.
        let before = self
            .samples
            .iter()
            .rev()
            .find(|&&(s, _)| s < from)
            .map_or(0, |&(_, n)| n);
        let first = sent.saturating_sub(before).saturating_sub(retried);
        let floor = crate::config::RETRY_BUDGET_FLOOR * window;
        if retried >= (first * u64::from(percent) / 100).max(floor) {
            return false;
        }
        match self.retries.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => self.retries.push_back((sec, 1)),
        }
        true
    }
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
            retries_refused: AtomicU64::new(0),
            local_5xx: AtomicU64::new(0),
            budget: Mutex::new(RetryBudget::default()),
            ejecting: Mutex::new(()),
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
        self.get_fresh(addr, name).map(|(s, _)| s)
    }

    /// [`get`](Self::get), and whether the state is new (made or reused for `addr` now).
    pub fn get_fresh(
        &self,
        addr: SocketAddr,
        name: &str,
    ) -> Result<(&'static UpstreamState, bool), String> {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&id) = st.by_addr.get(&addr) {
            let s = st.all[id];
            // Listed again before it was freed: in use.
            s.unused_from.store(0, Ordering::Relaxed);
            return Ok((s, false));
        }
        if let Some(id) = st.free.pop() {
            let s = st.all[id];
            s.reuse(addr, name);
            st.by_addr.insert(addr, id);
            return Ok((s, true));
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
        Ok((state, true))
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
    #[inline(always)]
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
    fn the_retry_budget_total_only_grows_as_members_come_and_go() {
        let mut b = RetryBudget::default();
        assert_eq!(
            b.observe([(1, 100), (2, 50)].into_iter()),
            0,
            "counted from the first look"
        );
        assert_eq!(b.observe([(1, 130), (2, 60)].into_iter()), 40);
        assert_eq!(
            b.observe([(1, 135)].into_iter()),
            45,
            "2 left: what it added stays"
        );
        assert_eq!(
            b.observe([(1, 135), (2, 0)].into_iter()),
            45,
            "2 back, reset: from now on"
        );
        assert_eq!(b.observe([(1, 136), (2, 4)].into_iter()), 50);
    }

    #[test]
    fn the_retry_budget_is_a_share_of_the_window_with_a_floor() {
        let mut b = RetryBudget::default();
        // The floor: 30 retries in 10 s with no first try at all.
        assert_eq!((0..40).filter(|_| b.take(100, 0, 20)).count(), 30);
        let mut b = RetryBudget::default();
        b.sample(90, 5000);
        b.sample(91, 5000);
        // Nothing sent in the window (92..=101) yet: the floor.
        assert_eq!((0..40).filter(|_| b.take(101, 5000, 20)).count(), 30);
        // 1030 sent in it, 30 of them retries: 1000 first tries, 200 retries in all (each
        // retry allowed is sent too).
        let mut sent = 6030;
        for _ in 0..400 {
            if b.take(101, sent, 20) {
                sent += 1;
            }
        }
        assert_eq!(sent - 6030 + 30, 200);
        // Ten seconds on, nothing was sent in the window: the floor again.
        for s in 101..=111 {
            b.sample(s, sent);
        }
        assert_eq!((0..100).filter(|_| b.take(111, sent, 20)).count(), 30);
    }

    #[test]
    fn ejections_last_n_times_and_end_on_time_or_on_a_passing_check() {
        let spec = crate::config::OutlierSpec {
            consecutive_failures: 5,
            consecutive_5xx: 3,
            ejection: std::time::Duration::from_millis(100),
            max_ejection: std::time::Duration::from_millis(250),
            max_ejected_percent: 50,
        };
        let s = UpstreamState::detached(0, addr(1));
        let head = |code: u16| {
            s.shard(0).response(code, 10);
            if (502..=504).contains(&code) {
                s.count_gateway_error(0)
            } else {
                0
            }
        };
        assert_eq!((head(503), head(502)), (1, 2));
        assert_eq!(head(500), 0);
        assert_eq!(head(504), 1, "a 500 in between starts over");
        assert_eq!((s.count_failure(), s.count_failure()), (1, 2));
        assert_eq!(
            (head(200), s.count_failure()),
            (0, 1),
            "a head ends a run of failures"
        );
        assert!(s.eject("p", Ejection::Errors5xx, "3 x 5xx", &spec));
        let change = s.last_change().unwrap();
        assert_eq!(
            (change.by, change.reason.as_str()),
            (ChangedBy::Request, "3 x 5xx, ejected for 100ms")
        );
        assert!(!s.eject("p", Ejection::Errors5xx, "again", &spec), "once");
        assert!(!s.is_alive() && s.is_ejected());
        let until = s.slow.ejected_until_ms.load(Ordering::Relaxed);
        assert!(!s.end_ejection_if_due("p", until - 1));
        assert!(s.end_ejection_if_due("p", until));
        assert!(s.is_alive() && !s.is_ejected());
        // The second in a row lasts twice as long, the third is capped.
        assert!(s.eject("p", Ejection::Failures, "x", &spec));
        let second = s.slow.ejected_until_ms.load(Ordering::Relaxed) - mono_ms();
        assert!((150..=200).contains(&second), "{second}");
        assert!(s.end_ejection_if_due("p", u64::MAX - 1));
        assert!(s.eject("p", Ejection::Failures, "x", &spec));
        let third = s.slow.ejected_until_ms.load(Ordering::Relaxed) - mono_ms();
        assert!((200..=250).contains(&third), "{third}");
        assert_eq!(s.ejections(), (2, 1));
        // A passing check ends it early; a failing one keeps it out after its time.
        s.record_check("p", true, "HTTP 200", 1, 1);
        assert!(s.is_alive() && !s.is_ejected());
        assert!(s.eject("p", Ejection::Failures, "x", &spec));
        s.record_check("p", false, "refused", 1, 1);
        assert!(s.end_ejection_if_due("p", u64::MAX - 1));
        assert!(!s.is_alive(), "its checks keep it down");
        s.record_check("p", true, "HTTP 200", 1, 1);
        assert!(s.is_alive());
    }

    #[test]
    fn a_new_address_joins_on_its_first_passing_check() {
        let s = UpstreamState::detached(0, addr(1));
        s.await_first_check("p");
        assert!(!s.is_alive());
        assert_eq!(s.record_check("p", true, "connected", 3, 1), Some(true));
        assert!(s.is_alive(), "rise does not apply to the first check");
        let t = UpstreamState::detached(1, addr(2));
        t.await_first_check("p");
        assert_eq!(t.record_check("p", false, "refused", 2, 1), None);
        assert_eq!(t.record_check("p", true, "connected", 2, 1), None);
        assert_eq!(t.record_check("p", true, "connected", 2, 1), Some(true));
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
