//! One worker: a mio `Poll`, its own listener, a `Slab` of sessions and a timer wheel.
//!
//! The worker dispatches: readiness goes to the session that owns the token, expired timers go
//! to whoever set them. It never decides HTTP; sessions do. Workers share the configuration
//! snapshot (swapped whole by a reload), the upstreams' atomics and the shutdown flag.

use crate::balance::Local;
use crate::buffer::BufPool;
use crate::clock::{Tick, WallClock};
use crate::connpool::{ConnPool, Owner};
use crate::health::{Prober, StartTimer};
use crate::net::{
    is_local_shortage, probe_token, LISTENER, PROBE_BASE, RELAY_TOKENS, TCP_LISTENERS,
    TLS_LISTENER, UPSTREAM_TOKENS, WAKER,
};
use crate::session::{Ctx, Drive, ExchangePool, Session};
use crate::snapshot::Snapshot;
use crate::splice::PipePool;
use crate::state::Shared;
use crate::tcp::Relay;
use crate::timer::TimerWheel;
use log::{debug, error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod timer_key;

use timer_key::*;

/// Readiness events taken from the OS per poll.
const EVENTS_CAPACITY: usize = 1024;
/// Free buffers a worker keeps for reuse (each `buffer::BUF_SIZE` bytes by default): enough for
/// 512 busy connections to cycle without the allocator zeroing fresh buffers per request (at
/// most 128 MiB kept after a burst).
const FREE_BUFFERS: usize = 2048;
/// Most pipes a worker lends for splice(2) at once (two descriptors each; a connection may hold
/// one per direction); spans beyond that use the copy path.
const MAX_PIPES: usize = 64;
/// Least time between two "connection limit reached" warnings.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);
/// How long accepting pauses after EMFILE/ENFILE before trying again (also resumed earlier
/// whenever a connection closes).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How long access-log lines may wait in a worker's batch before they go to the writer thread
/// (nginx's `access_log ... buffer=` holds lines until its buffer is full or `flush=` passes).
const LOG_HOLD: Duration = Duration::from_millis(100);
/// How often expired idle upstream connections are closed.
const IDLE_SWEEP_EVERY: Duration = Duration::from_millis(250);

/// A session in the slab, with its timer bookkeeping.
struct Entry {
    session: Session,
    /// Generation of the session's live wheel entry; older entries are stale and ignored.
    timer_gen: u32,
    /// The deadline the live wheel entry is set for, if any.
    armed: Option<Tick>,
    /// Already in the list of sessions to drive after this batch of events.
    dirty: bool,
}

/// A TCP relay in the slab, with its timer bookkeeping (as [`Entry`]).
struct RelayEntry {
    relay: Relay,
    timer_gen: u32,
    armed: Option<Tick>,
    dirty: bool,
}

/// One event loop.
pub struct Worker {
    /// Index of this worker, for logs; worker 0 also runs the health checks.
    id: usize,
    poll: Poll,
    /// None once shutdown has closed it.
    listener: Option<TcpListener>,
    /// The listener may have connections queued (edge-triggered: cleared only by WouldBlock).
    accept_ready: bool,
    /// The HTTPS listener, when `[tls]` is on (None once shutdown has closed it).
    tls_listener: Option<TcpListener>,
    /// The HTTPS listener may have connections queued.
    tls_accept_ready: bool,
    /// Accepting is paused (EMFILE/ENFILE) until a connection closes or the retry timer fires.
    accept_paused: bool,
    sessions: Slab<Entry>,
    /// The `[[tcp]]` listeners, in the configuration's order (None once shutdown closed them).
    tcp_listeners: Vec<Option<TcpListener>>,
    /// Which of them may have connections queued.
    tcp_ready: Vec<bool>,
    /// TCP relays (their keys carry `RELAY_KEY` in the timers).
    relays: Slab<RelayEntry>,
    /// Relays to drive after the current batch of events.
    relay_dirty: Vec<usize>,
    /// Access-log lines of the current turn.
    log_batch: crate::access_log::LogBatch,
    wheel: TimerWheel,
    /// The wheel's time origin.
    epoch: Tick,
    /// Now, as of this loop iteration.
    now: Tick,
    /// The wall clock, read again at every idle sweep.
    wall: WallClock,
    /// Since when the access-log batch has held lines not handed to the writer.
    log_held_since: Option<Tick>,
    /// The configuration in force for new requests.
    snap: Arc<Snapshot>,
    /// Its generation in `shared`.
    generation: u64,
    shared: Arc<Shared>,
    /// Health checks (worker 0 only).
    prober: Option<Prober>,
    /// The second the pools' retry budgets were last sampled (the prober's worker only).
    budget_sampled: u64,
    /// This worker's balancing state (smooth weighted round robin), per pool.
    balance: Local,
    /// The first health checks were reported done (worker 0).
    checks_reported: bool,
    /// Sessions to drive after the current batch of events.
    dirty: Vec<usize>,
    /// When a graceful stop began (None: serving).
    stopping_since: Option<Tick>,
    /// This worker's share of `--max-connections`: at the limit accepting pauses.
    max_sessions: usize,
    /// Accepting is paused at `max_sessions`.
    at_limit: bool,
    /// When the limit was last logged.
    last_limit_log: Option<Tick>,
    /// The current pause at the limit was logged: its end is logged too.
    limit_warned: bool,
    /// Pauses at the limit since the last warning that were not logged.
    limit_pauses_unlogged: u64,
    /// Reused scratch for rewritten heads and transcoded chunks.
    scratch: Vec<u8>,
    /// Free connection buffers, reused across connections.
    bufs: BufPool,
    /// Upstream socket ids and idle keep-alive connections.
    conns: ConnPool,
    /// Spare exchange records.
    exchanges: ExchangePool,
    /// Pipes for splice(2).
    pipes: PipePool,
    /// Reused list of expired timer keys.
    expired: Vec<u64>,
    /// Sessions a drive pass found closed, removed after it (kept to reuse its storage).
    closed: Vec<usize>,
    /// Reused list of wake-ups from the mailbox (queued requests whose slot freed).
    mail: Vec<(usize, u64)>,
}

impl Worker {
    /// A worker for `listener`. Returns it with a waker the signal thread can use.
    pub fn new(
        id: usize,
        listener: std::net::TcpListener,
        tls_listener: Option<std::net::TcpListener>,
        tcp: Vec<std::net::TcpListener>,
        shared: Arc<Shared>,
    ) -> io::Result<(Worker, Waker)> {
        let (snap, generation) = shared.current();
        let cfg = &snap.cfg;
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let tls_listener = match tls_listener {
            Some(l) => {
                let mut l = TcpListener::from_std(l);
                poll.registry()
                    .register(&mut l, TLS_LISTENER, Interest::READABLE)?;
                Some(l)
            }
            None => None,
        };
        let mut tcp_listeners = Vec::with_capacity(tcp.len());
        for (i, l) in tcp.into_iter().enumerate() {
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(TCP_LISTENERS + i), Interest::READABLE)?;
            tcp_listeners.push(Some(l));
        }
        let now = Tick::now();
        let prober = (id == 0).then(Prober::default);
        let workers = cfg.workers.max(1);
        let max_sessions = cfg
            .max_connections
            .unwrap_or(usize::MAX)
            .div_ceil(workers)
            .clamp(1, MAX_SESSIONS);
        let cfg_splice = cfg.splice_min > 0 || cfg.splice_min_response > 0;
        // This worker's share of the idle budget, for all upstreams together.
        let idle = cfg.upstream_idle.unwrap_or(0).div_ceil(workers);
        let conns = ConnPool::new(idle, cfg.upstream_max_requests);
        let pipes = PipePool::new(if cfg_splice { MAX_PIPES } else { 0 });
        let mut balance = Local::default();
        balance.fit(&snap.pools);
        let mut w = Worker {
            id,
            poll,
            listener: Some(listener),
            accept_ready: true,
            tls_accept_ready: tls_listener.is_some(),
            tls_listener,
            accept_paused: false,
            sessions: Slab::with_capacity(1024),
            tcp_ready: vec![true; tcp_listeners.len()],
            tcp_listeners,
            relays: Slab::new(),
            relay_dirty: Vec::new(),
            log_batch: Default::default(),
            wheel: TimerWheel::new(0),
            epoch: now,
            now,
            wall: WallClock::read(),
            log_held_since: None,
            snap,
            generation,
            shared,
            prober,
            budget_sampled: 0,
            balance,
            checks_reported: false,
            dirty: Vec::with_capacity(EVENTS_CAPACITY),
            stopping_since: None,
            max_sessions,
            at_limit: false,
            last_limit_log: None,
            limit_warned: false,
            limit_pauses_unlogged: 0,
            scratch: Vec::with_capacity(64 * 1024),
            bufs: BufPool::new(FREE_BUFFERS),
            conns,
            exchanges: ExchangePool::default(),
            pipes,
            expired: Vec::new(),
            closed: Vec::new(),
            mail: Vec::new(),
        };
        // Always armed, pooling or not: the sweep also reads the wall clock again, which the
        // access log's times follow (a clock step shows within a sweep).
        let at = w.at_ms(now + IDLE_SWEEP_EVERY);
        w.wheel
            .insert(at, TimerKey::Worker(WORKER_IDLE_SWEEP).pack());
        // First checks right away: a backend that is down at start leaves the rotation within
        // the health timeout instead of a whole interval.
        w.configure_checks();
        Ok((w, waker))
    }

    fn now_ms(&self) -> u64 {
        self.now.millis_ceil_since(self.epoch)
    }

    fn at_ms(&self, t: Tick) -> u64 {
        t.millis_ceil_since(self.epoch)
    }

    /// Run until shutdown completes.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let timeout = if self.dirty.is_empty() && self.relay_dirty.is_empty() {
                let timer = self.wheel.next_timeout(self.now_ms());
                // Log lines held back wake the loop when their time is up.
                let log = self
                    .log_held_since
                    .map(|since| (since + LOG_HOLD).millis_ceil_since(self.now));
                timer
                    .into_iter()
                    .chain(log)
                    .min()
                    .map(Duration::from_millis)
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            self.now = Tick::now();
            for ev in events.iter() {
                // By range, the most frequent first (client sockets, then upstream ones): the
                // ranges are ordered as `net` lays them out.
                let t = ev.token().0;
                if t < RELAY_TOKENS {
                    if let Some(entry) = self.sessions.get_mut(t) {
                        entry.session.on_client_event(ev);
                        if !entry.dirty {
                            entry.dirty = true;
                            self.dirty.push(t);
                        }
                    }
                } else if t < UPSTREAM_TOKENS {
                    let key = (t - RELAY_TOKENS) / 2;
                    if let Some(entry) = self.relays.get_mut(key) {
                        entry.relay.on_event((t - RELAY_TOKENS) % 2 == 1, ev);
                        if !entry.dirty {
                            entry.dirty = true;
                            self.relay_dirty.push(key);
                        }
                    }
                } else if t < PROBE_BASE {
                    let id = t - UPSTREAM_TOKENS;
                    match self.conns.owner(id) {
                        Some(Owner::Session(key)) => {
                            if let Some(entry) = self.sessions.get_mut(key) {
                                entry.session.on_upstream_event(id, ev);
                                if !entry.dirty {
                                    entry.dirty = true;
                                    self.dirty.push(key);
                                }
                            }
                        }
                        Some(Owner::Idle(..)) => {
                            self.conns.on_idle_event(id, ev, self.poll.registry());
                        }
                        None => {}
                    }
                } else if t < TCP_LISTENERS {
                    if let Some(p) = &mut self.prober {
                        p.on_event(t - PROBE_BASE, self.poll.registry());
                    }
                } else {
                    match Token(t) {
                        LISTENER => self.accept_ready = true,
                        TLS_LISTENER => self.tls_accept_ready = true,
                        WAKER => {}
                        _ => {
                            if let Some(r) = self.tcp_ready.get_mut(t - TCP_LISTENERS) {
                                *r = true;
                            }
                        }
                    }
                }
            }
            crate::upstream::take_mail(self.id, &mut self.mail);
            for (key, ticket) in self.mail.drain(..) {
                if let Some(entry) = self.sessions.get_mut(key) {
                    entry.session.wake(ticket);
                    if !entry.dirty {
                        entry.dirty = true;
                        self.dirty.push(key);
                    }
                }
            }
            if self.shared.generation.load(Ordering::Relaxed) != self.generation {
                self.take_snapshot();
            }
            if self.stopping_since.is_none() && self.shared.shutdown.load(Ordering::Acquire) {
                self.begin_shutdown();
            }
            self.accept();
            self.drive_dirty();
            self.fire_timers();
            self.flush_log(false);
            if let Some(p) = &self.prober {
                if !self.checks_reported && p.all_judged() {
                    self.checks_reported = true;
                    self.shared.checks_done.store(true, Ordering::Release);
                }
            }
            if self.stopping_since.is_some() && self.sessions.is_empty() && self.relays.is_empty() {
                self.flush_log(true);
                debug!("worker {} done", self.id);
                return Ok(());
            }
        }
    }

    /// Hand the access-log lines to the writer once they have waited `LOG_HOLD` (or now, with
    /// `all`): one hand-over (a channel send, a fresh buffer, a wake-up of the writer thread)
    /// per `LOG_HOLD` under load instead of one per turn of the loop. (A batch that reaches
    /// `access_log::BATCH_BYTES` goes at once.)
    fn flush_log(&mut self, all: bool) {
        let Some(logger) = &self.shared.logger else {
            return;
        };
        if self.log_batch.is_empty() {
            self.log_held_since = None;
        } else {
            let since = *self.log_held_since.get_or_insert(self.now);
            if all || self.now >= since + LOG_HOLD {
                logger.flush(&mut self.log_batch);
                self.log_held_since = None;
            }
        }
        let dropped = self.log_batch.take_dropped();
        if dropped > 0 {
            self.shared.stats[self.id].access_log_dropped.add(dropped);
        }
    }

    /// Accept what the listeners have queued.
    fn accept(&mut self) {
        self.accept_from(false);
        if self.tls_listener.is_some() {
            self.accept_from(true);
        }
        for i in 0..self.tcp_ready.len() {
            if self.tcp_ready[i] {
                self.accept_tcp(i);
            }
        }
    }

    /// Sessions and relays together are at this worker's share of `max_connections`.
    fn at_capacity(&self) -> bool {
        self.sessions.len() + self.relays.len() >= self.max_sessions
    }

    /// Accept what TCP listener `i` has queued: each connection becomes a relay.
    fn accept_tcp(&mut self, i: usize) {
        loop {
            if self.accept_paused || self.at_capacity() {
                return;
            }
            let Some(Some(listener)) = self.tcp_listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => {
                    let cfg = &self.snap.cfg;
                    let proxied = cfg.tcp.get(i).is_some_and(|t| t.proxy_protocol);
                    // Only the layer-4 tier may connect when it vouches for its clients: the
                    // others are closed at once (and logged, as every TCP connection is).
                    let untrusted = proxied
                        && !cfg.proxy_protocol_from.is_empty()
                        && !cfg
                            .proxy_protocol_from
                            .iter()
                            .any(|c| c.contains(addr.ip()));
                    let entry = self.relays.vacant_entry();
                    let key = entry.key();
                    let Some(mut relay) = Relay::new(
                        stream,
                        addr,
                        key,
                        i,
                        &self.snap,
                        self.poll.registry(),
                        self.now,
                    ) else {
                        continue;
                    };
                    if untrusted {
                        debug!("{addr}: not in proxy_protocol_from: refused");
                        relay.refuse();
                    }
                    if let Some(c) = self.shared.stats[self.id].tcp.get(i) {
                        c.accepted.add(1);
                        c.open.add(1);
                    }
                    entry.insert(RelayEntry {
                        relay,
                        timer_gen: 0,
                        armed: None,
                        dirty: true,
                    });
                    self.relay_dirty.push(key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.tcp_ready[i] = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_local_shortage(&e) => {
                    warn!("worker {}: accept paused: {e}", self.id);
                    self.accept_paused = true;
                    let at = self.now_ms() + ACCEPT_RETRY.as_millis() as u64;
                    self.wheel
                        .insert(at, TimerKey::Worker(WORKER_ACCEPT).pack());
                    return;
                }
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    /// Accept what the plain listener (or, with `tls`, the HTTPS one) has queued.
    fn accept_from(&mut self, tls: bool) {
        loop {
            let ready = if tls {
                self.tls_accept_ready
            } else {
                self.accept_ready
            };
            if !ready || self.accept_paused {
                return;
            }
            let listener = if tls {
                &self.tls_listener
            } else {
                &self.listener
            };
            let Some(listener) = listener else {
                return;
            };
            if self.at_capacity() {
                // Stop accepting without touching epoll: the readiness stays remembered in
                // accept_ready and is acted on when a connection closes.
                if !self.at_limit {
                    self.at_limit = true;
                    // Once per pause episode; an episode ends only below the limit, so a
                    // worker hovering at the limit logs once per LIMIT_LOG_EVERY at most.
                    if self
                        .last_limit_log
                        .is_none_or(|t| self.now >= t + LIMIT_LOG_EVERY)
                    {
                        self.last_limit_log = Some(self.now);
                        self.limit_warned = true;
                        let quiet = std::mem::take(&mut self.limit_pauses_unlogged);
                        warn!(
                            "worker {}: {} connections open, the limit: accepting paused{}",
                            self.id,
                            self.max_sessions,
                            if quiet > 0 {
                                format!(" ({quiet} brief pauses not logged since the last one)")
                            } else {
                                String::new()
                            }
                        );
                    } else {
                        self.limit_pauses_unlogged += 1;
                    }
                }
                return;
            }
            if self.at_limit {
                self.at_limit = false;
                // One line answers one warning: a worker hovering at the limit pauses and
                // resumes thousands of times a minute, and must not log each.
                if std::mem::take(&mut self.limit_warned) {
                    info!(
                        "worker {}: below the connection limit, accepting again",
                        self.id
                    );
                }
            }
            match listener.accept() {
                Ok((stream, addr)) => {
                    // Not registered yet: driven right away, the session reads the request
                    // that is usually there already, and registers the socket only once it
                    // has to wait for the client (see `Session::new`).
                    let entry = self.sessions.vacant_entry();
                    let key = entry.key();
                    let cfg = &self.snap.cfg;
                    if cfg.proxy_protocol
                        && !cfg.proxy_protocol_from.is_empty()
                        && !cfg
                            .proxy_protocol_from
                            .iter()
                            .any(|c| c.contains(addr.ip()))
                    {
                        // Only the layer-4 tier may connect when it vouches for its clients.
                        debug!("{addr}: not in proxy_protocol_from: refused");
                        drop(stream);
                        continue;
                    }
                    let tls_config = if tls {
                        match &self.snap.tls_server {
                            Some(c) => Some(Arc::clone(c)),
                            None => continue,
                        }
                    } else {
                        None
                    };
                    let Some(session) =
                        Session::new(stream, addr, key, &self.snap, self.now, tls_config)
                    else {
                        continue;
                    };
                    let stats = &self.shared.stats[self.id];
                    stats.accepted.add(1);
                    stats.open.add(1);
                    entry.insert(Entry {
                        session,
                        timer_gen: 0,
                        armed: None,
                        dirty: true,
                    });
                    // Its timer is armed after that first drive.
                    self.dirty.push(key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if tls {
                        self.tls_accept_ready = false;
                    } else {
                        self.accept_ready = false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_local_shortage(&e) => {
                    // Out of file descriptors or memory: stop accepting (interest stays, the
                    // readiness is remembered in accept_ready) instead of spinning on the error.
                    warn!("worker {}: accept paused: {e}", self.id);
                    self.accept_paused = true;
                    let at = self.now_ms() + ACCEPT_RETRY.as_millis() as u64;
                    self.wheel
                        .insert(at, TimerKey::Worker(WORKER_ACCEPT).pack());
                }
                // ECONNABORTED and the like concern one connection only.
                Err(e) => debug!("accept: {e}"),
            }
        }
    }

    fn ctx(&mut self) -> (Ctx<'_>, &mut Slab<Entry>) {
        Self::split_ctx(
            &self.poll,
            &self.snap,
            &mut self.balance,
            self.id,
            &self.shared,
            &mut self.log_batch,
            self.now,
            self.wall,
            &mut self.scratch,
            self.stopping_since,
            &mut self.bufs,
            &mut self.conns,
            &mut self.exchanges,
            &mut self.pipes,
            &mut self.sessions,
        )
    }

    /// A session context from the worker's fields, each borrowed on its own, so that the
    /// caller may keep using the others (the timer wheel, the dirty list) meanwhile.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn split_ctx<'a>(
        poll: &'a Poll,
        snap: &'a Arc<Snapshot>,
        balance: &'a mut Local,
        id: usize,
        shared: &'a Shared,
        log_batch: &'a mut crate::access_log::LogBatch,
        now: Tick,
        wall: WallClock,
        scratch: &'a mut Vec<u8>,
        stopping_since: Option<Tick>,
        bufs: &'a mut BufPool,
        conns: &'a mut ConnPool,
        exchanges: &'a mut ExchangePool,
        pipes: &'a mut PipePool,
        sessions: &'a mut Slab<Entry>,
    ) -> (Ctx<'a>, &'a mut Slab<Entry>) {
        (
            Ctx {
                registry: poll.registry(),
                snap,
                cfg: &snap.cfg,
                balance,
                worker: id,
                stats: &shared.stats[id],
                logger: shared.logger.as_ref(),
                log_batch,
                now,
                wall,
                scratch,
                shutting_down: stopping_since.is_some(),
                stopping_since,
                bufs,
                conns,
                exchanges,
                pipes,
            },
            sessions,
        )
    }

    fn drive_dirty(&mut self) {
        // Sessions re-queued by their budget go to the back of this same list: bound the pass
        // to the sessions present at its start so one busy session cannot hold the loop.
        let n = self.dirty.len();
        let mut again = Vec::new();
        let mut closed = std::mem::take(&mut self.closed);
        {
            // One context for the whole pass (building it per session cost ~60 instructions
            // per request); closed sessions are removed after the pass.
            let epoch = self.epoch;
            let (mut ctx, sessions) = Self::split_ctx(
                &self.poll,
                &self.snap,
                &mut self.balance,
                self.id,
                &self.shared,
                &mut self.log_batch,
                self.now,
                self.wall,
                &mut self.scratch,
                self.stopping_since,
                &mut self.bufs,
                &mut self.conns,
                &mut self.exchanges,
                &mut self.pipes,
                &mut self.sessions,
            );
            for &key in &self.dirty[..n] {
                let Some(entry) = sessions.get_mut(key) else {
                    continue;
                };
                entry.dirty = false;
                match entry.session.drive(&mut ctx) {
                    Drive::Closed => closed.push(key),
                    Drive::Again => {
                        again.push(key);
                        arm_entry(
                            entry,
                            key,
                            ctx.cfg,
                            ctx.stopping_since,
                            &mut self.wheel,
                            epoch,
                        );
                    }
                    Drive::Idle => arm_entry(
                        entry,
                        key,
                        ctx.cfg,
                        ctx.stopping_since,
                        &mut self.wheel,
                        epoch,
                    ),
                }
            }
        }
        for key in closed.drain(..) {
            self.remove(key);
        }
        self.closed = closed;
        self.dirty.drain(..n);
        for key in again {
            self.mark_dirty(key);
        }
        if !self.relay_dirty.is_empty() {
            self.drive_relays();
        }
    }

    /// Drive the relays with readiness (or budget left over), as `drive_dirty` does sessions:
    /// a list of their own keeps the sessions' pass exactly as it is without TCP listeners.
    fn drive_relays(&mut self) {
        let n = self.relay_dirty.len();
        let mut again = Vec::new();
        let mut closed = Vec::new();
        {
            let epoch = self.epoch;
            let (mut ctx, _) = Self::split_ctx(
                &self.poll,
                &self.snap,
                &mut self.balance,
                self.id,
                &self.shared,
                &mut self.log_batch,
                self.now,
                self.wall,
                &mut self.scratch,
                self.stopping_since,
                &mut self.bufs,
                &mut self.conns,
                &mut self.exchanges,
                &mut self.pipes,
                &mut self.sessions,
            );
            for &key in &self.relay_dirty[..n] {
                // Not dirty: a relay closed meanwhile whose slot went to a new one, which is
                // on the list already.
                let Some(entry) = self.relays.get_mut(key).filter(|e| e.dirty) else {
                    continue;
                };
                entry.dirty = false;
                match entry.relay.drive(&mut ctx) {
                    Drive::Closed => closed.push(key),
                    Drive::Again => {
                        again.push(key);
                        arm_relay(entry, key | RELAY_KEY, &mut self.wheel, epoch);
                    }
                    Drive::Idle => arm_relay(entry, key | RELAY_KEY, &mut self.wheel, epoch),
                }
            }
        }
        self.relay_dirty.drain(..n);
        for key in closed {
            self.remove_relay(key);
        }
        for key in again {
            self.mark_dirty(key | RELAY_KEY);
        }
    }

    /// Put session `key` (or relay `key ^ RELAY_KEY`) on its list to drive, once.
    fn mark_dirty(&mut self, key: usize) {
        if key & RELAY_KEY != 0 {
            if let Some(e) = self.relays.get_mut(key ^ RELAY_KEY) {
                if !e.dirty {
                    e.dirty = true;
                    self.relay_dirty.push(key ^ RELAY_KEY);
                }
            }
        } else if let Some(e) = self.sessions.get_mut(key) {
            if !e.dirty {
                e.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Close relay `key`: its line logged, its counts given back; its sockets close with it.
    fn remove_relay(&mut self, key: usize) {
        if self.relays.contains(key) {
            let mut entry = self.relays.remove(key);
            let (mut ctx, _) = self.ctx();
            entry.relay.close(&mut ctx);
        }
        self.accept_paused = false;
        self.accept();
    }

    /// A relay's timer fired: its deadline, if it is still that, ends a phase.
    fn relay_timer(&mut self, key: usize, gen: u32) {
        let now = self.now;
        let epoch = self.epoch;
        let Some(entry) = self.relays.get_mut(key) else {
            return;
        };
        if entry.timer_gen != gen {
            return;
        }
        entry.armed = None;
        if now < entry.relay.deadline() {
            arm_relay(entry, key | RELAY_KEY, &mut self.wheel, epoch);
            return;
        }
        let (mut ctx, _) = Self::split_ctx(
            &self.poll,
            &self.snap,
            &mut self.balance,
            self.id,
            &self.shared,
            &mut self.log_batch,
            self.now,
            self.wall,
            &mut self.scratch,
            self.stopping_since,
            &mut self.bufs,
            &mut self.conns,
            &mut self.exchanges,
            &mut self.pipes,
            &mut self.sessions,
        );
        let Some(entry) = self.relays.get_mut(key) else {
            return;
        };
        match entry.relay.on_timeout(&mut ctx) {
            Drive::Closed => self.remove_relay(key),
            Drive::Again => {
                arm_relay(entry, key | RELAY_KEY, &mut self.wheel, epoch);
                self.mark_dirty(key | RELAY_KEY);
            }
            Drive::Idle => arm_relay(entry, key | RELAY_KEY, &mut self.wheel, epoch),
        }
    }

    fn remove(&mut self, key: usize) {
        if self.sessions.contains(key) {
            let mut entry = self.sessions.remove(key);
            let (mut ctx, _) = self.ctx();
            entry.session.close(&mut ctx);
            self.shared.stats[self.id].open.sub(1);
        }
        // A closed connection frees a descriptor and a slot: resume a paused accept.
        self.accept_paused = false;
        if self.accept_ready || self.tls_accept_ready || self.tcp_ready.contains(&true) {
            self.accept();
        }
    }

    /// Make sure a wheel entry exists at or before the session's deadline.
    #[inline(always)]
    fn arm(&mut self, key: usize) {
        if let Some(entry) = self.sessions.get_mut(key) {
            arm_entry(
                entry,
                key,
                &self.snap.cfg,
                self.stopping_since,
                &mut self.wheel,
                self.epoch,
            );
        }
    }

    fn fire_timers(&mut self) {
        let now_ms = self.now_ms();
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.advance(now_ms, &mut expired);
        for wk in expired.drain(..) {
            match TimerKey::unpack(wk) {
                TimerKey::Session { key, gen } if key & RELAY_KEY != 0 => {
                    self.relay_timer(key ^ RELAY_KEY, gen)
                }
                TimerKey::Session { key, gen } => self.session_timer(key, gen),
                TimerKey::ProbeDeadline(i) => {
                    let again = self
                        .prober
                        .as_mut()
                        .and_then(|p| p.on_deadline(i as usize, self.poll.registry(), self.now));
                    if let Some(deadline) = again {
                        // The next millisecond: the deadline's own one has been seen.
                        let at = self.at_ms(deadline).max(self.now_ms() + 1);
                        self.wheel.insert(at, TimerKey::ProbeDeadline(i).pack());
                    }
                }
                TimerKey::ProbeStart(t) => self.start_check(t),
                TimerKey::Worker(w) => match w {
                    WORKER_SHUTDOWN => {
                        if !self.sessions.is_empty() {
                            warn!(
                                "worker {}: shutdown timeout, closing {} connections",
                                self.id,
                                self.sessions.len()
                            );
                        }
                        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
                        for k in keys {
                            self.remove(k);
                        }
                        if !self.relays.is_empty() {
                            warn!(
                                "worker {}: shutdown timeout, closing {} TCP connections",
                                self.id,
                                self.relays.len()
                            );
                        }
                        let keys: Vec<usize> = self.relays.iter().map(|(k, _)| k).collect();
                        for k in keys {
                            if let Some(e) = self.relays.get_mut(k) {
                                e.relay.shut_down();
                            }
                            self.remove_relay(k);
                        }
                    }
                    WORKER_IDLE_SWEEP => {
                        self.wall = WallClock::read();
                        self.sweep_pools();
                        self.bufs.trim();
                        self.conns.sweep(
                            self.now,
                            self.stopping_since.is_some(),
                            self.poll.registry(),
                        );
                        if self.stopping_since.is_none() {
                            let at = self.at_ms(self.now + IDLE_SWEEP_EVERY);
                            self.wheel
                                .insert(at, TimerKey::Worker(WORKER_IDLE_SWEEP).pack());
                        }
                    }
                    _ => {
                        self.accept_paused = false;
                        self.accept();
                    }
                },
            }
        }
        self.expired = expired;
    }

    fn session_timer(&mut self, key: usize, gen: u32) {
        let now = self.now;
        let snap = Arc::clone(&self.snap);
        let cfg = &snap.cfg;
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        if entry.timer_gen != gen {
            return;
        }
        entry.armed = None;
        if now < entry.session.deadline(cfg, self.stopping_since) {
            self.arm(key);
            return;
        }
        let (mut ctx, sessions) = self.ctx();
        let Some(entry) = sessions.get_mut(key) else {
            return;
        };
        match entry.session.on_timeout(&mut ctx) {
            Drive::Closed => self.remove(key),
            Drive::Again => {
                if let Some(e) = self.sessions.get_mut(key) {
                    if !e.dirty {
                        e.dirty = true;
                        self.dirty.push(key);
                    }
                }
                self.arm(key);
            }
            Drive::Idle => self.arm(key),
        }
    }

    /// On the prober's worker, once a second: note what each pool has sent (its retry
    /// budget's baseline); and bring back the ejected upstreams whose time is up (looked at only
    /// while some upstream is ejected: one load otherwise).
    fn sweep_pools(&mut self) {
        if self.prober.is_none() {
            return;
        }
        let sec = self.now.ns() / 1_000_000_000;
        if self.budget_sampled != sec {
            self.budget_sampled = sec;
            for pool in &self.snap.pools {
                crate::balance::budget::sample(pool, sec);
            }
        }
        if crate::upstream::EJECTED.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        let now_ms = crate::upstream::tick_ms(self.now);
        for pool in &self.snap.pools {
            for m in &pool.members {
                m.state.end_ejection_if_due(&pool.name, now_ms);
            }
        }
    }

    /// Start the checks of upstreams new to the prober (all of them at start).
    fn configure_checks(&mut self) {
        let at = self.now_ms();
        let Some(prober) = &mut self.prober else {
            return;
        };
        for t in prober.configure(&self.snap, self.poll.registry()) {
            self.wheel.insert(at, TimerKey::ProbeStart(t).pack());
        }
    }

    /// A check's start timer fired: start it, and set its deadline and the next start.
    fn start_check(&mut self, t: StartTimer) {
        if self.stopping_since.is_some() {
            return;
        }
        let Some(prober) = &mut self.prober else {
            return;
        };
        let token = probe_token(t.id);
        let Some(started) = prober.start(t, self.poll.registry(), self.now, token) else {
            return;
        };
        let deadline = self.at_ms(started.deadline);
        self.wheel
            .insert(deadline, TimerKey::ProbeDeadline(t.id as u64).pack());
        let next = self.at_ms(started.next);
        self.wheel.insert(next, TimerKey::ProbeStart(t).pack());
    }

    /// A new snapshot was published: new requests use it (those in flight keep theirs), the
    /// balancing state starts afresh, the prober follows its upstreams, and idle connections
    /// to upstreams no pool lists any more are closed.
    fn take_snapshot(&mut self) {
        let (snap, generation) = self.shared.current();
        self.snap = snap;
        self.generation = generation;
        self.balance.fit(&self.snap.pools);
        let cfg = &self.snap.cfg;
        // What a reload may change here: the requests per upstream connection, and the
        // buffers' sizes (the free storage follows, so it keeps being reused).
        self.conns.set_max_requests(cfg.upstream_max_requests);
        let size = crate::buffer::size_for(cfg.limits.max_head);
        self.bufs.adopt([size, size + cfg.request_buffer]);
        let keep: Vec<usize> = self.snap.upstreams().iter().map(|(s, _)| s.id).collect();
        self.conns.retain_upstreams(&keep, self.poll.registry());
        self.configure_checks();
        // Nothing of the upstreams this snapshot does not list is held here any more.
        self.shared.registry.taken(self.id, generation);
        self.take_new_listener();
    }

    /// A reload moved `listen`: poll the new listener, after taking what the old one queued.
    fn take_new_listener(&mut self) {
        let new = {
            let mut all = self
                .shared
                .new_listeners
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            all.get_mut(self.id).and_then(Option::take)
        };
        let Some(new) = new else {
            return;
        };
        if self.stopping_since.is_some() {
            return;
        }
        self.accept_ready = true;
        self.accept();
        if let Some(mut old) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut old);
        }
        let mut listener = TcpListener::from_std(new);
        match self
            .poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
        {
            Ok(()) => {
                self.listener = Some(listener);
                self.accept_ready = true;
            }
            Err(e) => error!("worker {}: cannot poll the new listener: {e}", self.id),
        }
    }

    fn begin_shutdown(&mut self) {
        self.stopping_since = Some(self.now);
        info!(
            "worker {}: shutting down ({} connections open)",
            self.id,
            self.sessions.len()
        );
        // Connections the kernel already queued for us were promised an answer: take them,
        // then close the listener so new ones go nowhere (or to a still-open sibling).
        self.accept_paused = false;
        self.accept_ready = true;
        self.tls_accept_ready = self.tls_listener.is_some();
        self.tcp_ready.fill(true);
        self.accept();
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        if let Some(mut l) = self.tls_listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for l in &mut self.tcp_listeners {
            if let Some(mut l) = l.take() {
                let _ = self.poll.registry().deregister(&mut l);
            }
        }
        if let Some(p) = &mut self.prober {
            p.stop(self.poll.registry());
        }
        self.conns.sweep(self.now, true, self.poll.registry());
        let total = self.conns.opened + self.conns.reused;
        if total > 0 {
            info!(
                "worker {}: {} upstream requests, {} on reused connections ({:.1} %)",
                self.id,
                total,
                self.conns.reused,
                self.conns.reused as f64 * 100.0 / total as f64
            );
        }
        // Every connection is owed the answer to the request its client may have sent
        // already: those in an exchange answer with `Connection: close`; idle keep-alive ones
        // get a short grace to send their next request (answered so too), and those not
        // accepted long ago their first; those still silent then close (`session::deadline`).
        // Closing idle ones at once would race requests already on their way (HAProxy's
        // idle-close-on-response). Drive them all so that each sees the stop and re-arms.
        let keys: Vec<usize> = self.sessions.iter().map(|(k, _)| k).collect();
        for k in keys {
            if let Some(e) = self.sessions.get_mut(k) {
                if !e.dirty {
                    e.dirty = true;
                    self.dirty.push(k);
                }
            }
        }
        let at = self.at_ms(self.now + self.snap.cfg.shutdown_timeout);
        self.wheel
            .insert(at, TimerKey::Worker(WORKER_SHUTDOWN).pack());
    }
}

/// A duration in whole milliseconds, rounded up so a timer never fires before its deadline.
/// Make sure a wheel entry exists at or before the deadline of the session in `entry`.
#[inline(always)]
fn arm_entry(
    entry: &mut Entry,
    key: usize,
    cfg: &crate::config::Config,
    stopping_since: Option<Tick>,
    wheel: &mut TimerWheel,
    epoch: Tick,
) {
    let deadline = entry.session.deadline(cfg, stopping_since);
    if entry.armed.is_some_and(|a| a <= deadline) {
        // The earlier entry fires first and re-arms lazily: no wheel work per byte moved.
        return;
    }
    entry.timer_gen = next_gen(entry.timer_gen);
    entry.armed = Some(deadline);
    let wheel_key = TimerKey::Session {
        key,
        gen: entry.timer_gen,
    }
    .pack();
    wheel.insert(deadline.millis_ceil_since(epoch), wheel_key);
}

/// Make sure a wheel entry exists at or before the deadline of the relay in `entry` (`key`
/// carries `RELAY_KEY`).
fn arm_relay(entry: &mut RelayEntry, key: usize, wheel: &mut TimerWheel, epoch: Tick) {
    let deadline = entry.relay.deadline();
    if entry.armed.is_some_and(|a| a <= deadline) {
        return;
    }
    entry.timer_gen = next_gen(entry.timer_gen);
    entry.armed = Some(deadline);
    let wheel_key = TimerKey::Session {
        key,
        gen: entry.timer_gen,
    }
    .pack();
    wheel.insert(deadline.millis_ceil_since(epoch), wheel_key);
}

/// Log a worker's fatal error (used by the thread that runs it).
pub fn report(id: usize, r: io::Result<()>) {
    if let Err(e) = r {
        error!("worker {id} stopped: {e}");
    }
}

#[cfg(test)]
mod footprint {
    /// What an idle connection costs in the slab (its buffers, pipes and upstream slot are
    /// given back when it goes idle): a bound, so that a field added to a session is a
    /// decision, not an accident. The idle-memory figures of benches/load follow these sizes
    /// (384 B per idle HTTP connection at 360 here).
    #[test]
    fn a_connection_in_the_slab_stays_within_its_bytes() {
        let (session, relay) = (
            std::mem::size_of::<super::Entry>(),
            std::mem::size_of::<super::RelayEntry>(),
        );
        assert!(session <= 360, "a session's entry: {session} bytes");
        assert!(relay <= 416, "a relay's entry: {relay} bytes");
    }
}
