//! One connection of a `[[tcp]]` listener: balanced once, when it opens, then bytes both ways.
//!
//! Phases, one at a time: *opening* (the PROXY header a listener's clients send, the
//! ClientHello an SNI-routed listener routes by; bounded by `client_header_timeout`) →
//! *connecting* (the pool's pick; a failed connect tries the next upstream, within the pool's
//! `retries`, before any byte went either way) → *relaying* (each direction on its own: through
//! a buffer, or by splice(2) while it streams; a FIN is passed on once what came before it is
//! flushed, so one direction may go on after the other ended). `idle_timeout` without a byte
//! either way closes both sides.
//!
//! The bytes read while opening (the ClientHello) are the first the upstream gets: routing
//! reads them, it never changes or drops them.

use super::client_hello::{self, Hello};
use crate::access_log::TcpRecord;
use crate::balance::{budget, outlier, Choice};
use crate::buffer::Buffer;
use crate::clock::Tick;
use crate::config::{TcpSpec, TcpTarget};
use crate::limits::{ClientKey, Limiter, Verdict};
use crate::net::{connect_reason, is_local_shortage, marks_upstream_down, relay_token};
use crate::proxy_protocol::{self, Parsed};
use crate::session::{lend_span, move_span, Ctx, Drive, Peer, SpanError};
use crate::snapshot::Snapshot;
use crate::splice::{PipePool, Span};
use crate::upstream::{Ejection, InFlight, Tried};
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Read/write rounds one `drive` makes before other connections get a turn.
const DRIVE_BUDGET: usize = 16;

/// How a relayed connection ended: the access log's `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed first (or reset, or stopped taking bytes).
    ClientClosed,
    /// The upstream closed first (or reset, or stopped taking bytes).
    UpstreamClosed,
    /// No byte either way for `idle_timeout` (or no ClientHello/PROXY header within
    /// `client_header_timeout`).
    IdleTimeout,
    /// No upstream could be reached within the pool's retries (or none is alive).
    ConnectFailed,
    /// Refused before any upstream: a client limit, no route for its SNI, no TLS, a ClientHello
    /// over 16 KiB, a bad PROXY header, every upstream at its `max_conns`.
    Refused,
    /// Still open when the graceful stop's `shutdown_timeout` ran out.
    Shutdown,
}

impl End {
    /// The name in the access log.
    pub fn label(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::UpstreamClosed => "upstream_closed",
            End::IdleTimeout => "idle_timeout",
            End::ConnectFailed => "connect_failed",
            End::Refused => "refused",
            End::Shutdown => "shutdown",
        }
    }
}

/// The upstream side, once a member was picked.
#[derive(Debug)]
struct Upstream {
    peer: Peer,
    /// The member's index in the pool.
    idx: usize,
    /// Its count in the member's connections (least_conn, `max_conns`, active_requests).
    flight: InFlight,
}

/// Where the connection is.
#[derive(Debug)]
enum Phase {
    /// Reading the PROXY header (`proxy`) and, on an SNI-routed listener, the ClientHello.
    Opening { proxy: bool },
    /// Connecting to `up`, the pool's pick; `tried` are the members tried so far.
    Connecting {
        up: Upstream,
        tried: Tried,
        since: Tick,
    },
    /// Bytes flow both ways.
    Relaying { up: Upstream },
    /// Nothing left to do: the worker closes it.
    Done,
}

/// One direction's bytes on their way: through the buffer, or a pipe while it streams.
#[derive(Debug)]
struct Flow {
    buf: Buffer,
    span: Option<Box<Span>>,
    /// The last read filled the buffer: a burst is under way, the next bytes go by splice.
    streaming: bool,
}

impl Flow {
    fn new(cap: usize) -> Flow {
        Flow {
            buf: Buffer::new(cap),
            span: None,
            streaming: false,
        }
    }

    /// Nothing of this direction is held here.
    fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.span.is_none()
    }
}

/// Which socket an error came from.
enum Failed {
    Client,
    Upstream,
}

/// One relayed connection.
#[derive(Debug)]
pub struct Relay {
    client: Peer,
    /// Its slab key (its tokens are `relay_token(key, _)`).
    key: usize,
    /// The listener's index in `snap.cfg.tcp` (and in the shared counters).
    listener: usize,
    /// The configuration it was accepted under: its pool indices refer to this snapshot.
    snap: Arc<Snapshot>,
    /// The client, as a PROXY header named it on such a listener.
    peer: SocketAddr,
    phase: Phase,
    /// Client → upstream (the ClientHello and a PROXY header for the upstream start it).
    up_flow: Flow,
    /// Upstream → client.
    down_flow: Flow,
    opened: Tick,
    last_progress: Tick,
    /// The pool chosen (index in `snap.pools`).
    pool: Option<usize>,
    /// The ClientHello's server name, on an SNI-routed listener.
    sni: Option<Box<str>>,
    /// The hash-strategy key (the client's address).
    hash: Option<u64>,
    /// The limiter that counts this connection for `client_limits.connections`.
    conn_limiter: Option<Arc<Limiter>>,
    /// Who ended first, once one side did (the access log's `end`).
    end: Option<End>,
    /// Bytes already added to the listener's counters.
    counted: (u64, u64),
    /// The member it reached (for the access log, which is written after the upstream went).
    reached: Option<usize>,
    /// The PROXY header for the upstream (`send_proxy`), sent before the client's bytes.
    preamble: Vec<u8>,
    /// The client is over `client_limits.connections` (counted when its address is known).
    over_connection_limit: bool,
}

impl Relay {
    /// A relay for a connection accepted on listener `listener`; its socket is registered
    /// here (`None`: it could not be, and the connection is dropped).
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        key: usize,
        listener: usize,
        snap: &Arc<Snapshot>,
        registry: &Registry,
        now: Tick,
    ) -> Option<Relay> {
        let spec = snap.cfg.tcp.get(listener)?;
        let mut client = Peer::new(stream);
        if let Err(e) = registry.register(
            &mut client.stream,
            relay_token(key, false),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("cannot poll a TCP connection: {e}");
            return None;
        }
        // Registered just now: epoll reports what is already there, but the bytes that came
        // with the connection can be read at once.
        client.readable = true;
        client.writable = true;
        let size = crate::buffer::size_for(snap.cfg.limits.max_head);
        let proxy = spec.proxy_protocol;
        let mut relay = Relay {
            client,
            key,
            listener,
            snap: Arc::clone(snap),
            peer,
            phase: Phase::Opening {
                proxy: spec.proxy_protocol,
            },
            up_flow: Flow::new(size),
            down_flow: Flow::new(size),
            opened: now,
            last_progress: now,
            pool: None,
            sni: None,
            hash: None,
            conn_limiter: None,
            end: None,
            counted: (0, 0),
            reached: None,
            preamble: Vec::new(),
            over_connection_limit: false,
        };
        // The connection counts for its client from now on (after its PROXY header, on a
        // listener whose clients send one): a slow ClientHello holds its place as well.
        if !proxy {
            relay.count_connection(now);
        }
        Some(relay)
    }

    /// Close it at once, logged as refused (a client `proxy_protocol_from` does not list).
    pub fn refuse(&mut self) {
        self.end_with(End::Refused);
        self.phase = Phase::Done;
    }

    /// Count this connection for its client's `client_limits.connections`.
    fn count_connection(&mut self, now: Tick) {
        let snap = &self.snap;
        if let (Some(limit), Some(l)) = (snap.cfg.client_limits.connections, &snap.limiter) {
            self.over_connection_limit = !l.open(ClientKey::of(self.peer.ip()), limit, now.ns());
            self.conn_limiter = Some(Arc::clone(l));
        }
    }

    fn spec(&self) -> Option<&TcpSpec> {
        self.snap.cfg.tcp.get(self.listener)
    }

    /// Readiness of its client socket (`upstream` false) or of its upstream socket.
    pub fn on_event(&mut self, upstream: bool, ev: &mio::event::Event) {
        if !upstream {
            self.client.on_event(ev);
            return;
        }
        if let Phase::Connecting { up, .. } | Phase::Relaying { up } = &mut self.phase {
            up.peer.on_event(ev);
        }
    }

    /// When its timer must fire: the end of the wait for what opens it, of the connect, or of
    /// `idle_timeout`.
    pub fn deadline(&self) -> Tick {
        let cfg = &self.snap.cfg;
        match &self.phase {
            Phase::Opening { .. } => self.opened + cfg.client_header_timeout,
            Phase::Connecting { since, .. } => *since + cfg.connect_timeout,
            Phase::Relaying { .. } => {
                let idle = self
                    .spec()
                    .map_or(crate::config::TCP_IDLE_TIMEOUT, |s| s.idle_timeout);
                self.last_progress + idle
            }
            Phase::Done => self.opened,
        }
    }

    /// Move what can move. `Closed`: it ended (the worker calls [`close`](Self::close)).
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        let mut drive = Drive::Again;
        for _ in 0..DRIVE_BUDGET {
            let progress = match self.step(ctx) {
                Ok(p) => p,
                Err(end) => {
                    self.end_with(end);
                    self.phase = Phase::Done;
                    false
                }
            };
            if matches!(self.phase, Phase::Done) {
                drive = Drive::Closed;
                break;
            }
            if !progress {
                drive = Drive::Idle;
                break;
            }
            self.last_progress = ctx.now;
        }
        self.count_bytes(ctx);
        drive
    }

    /// Its deadline passed (the worker checked): what it means in this phase.
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Opening { .. } => {
                debug!("{}: nothing to route by in time: closed", self.peer);
                self.end_with(End::IdleTimeout);
                Drive::Closed
            }
            Phase::Connecting { up, tried, .. } => {
                let e = io::Error::from_raw_os_error(libc::ETIMEDOUT);
                if let Err(end) = self.connect_failed(up, &e, tried, ctx) {
                    self.end_with(end);
                    return Drive::Closed;
                }
                self.drive(ctx)
            }
            Phase::Relaying { .. } => {
                debug!("{}: idle_timeout: closed", self.peer);
                self.end_with(End::IdleTimeout);
                Drive::Closed
            }
            Phase::Done => Drive::Closed,
        }
    }

    /// The graceful stop's time is up.
    pub fn shut_down(&mut self) {
        self.end_with(End::Shutdown);
    }

    /// Record `end` unless an earlier one was.
    fn end_with(&mut self, end: End) {
        self.end.get_or_insert(end);
    }

    fn step(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        match &mut self.phase {
            Phase::Opening { .. } => self.open(ctx),
            Phase::Connecting { .. } => self.poll_connect(ctx),
            Phase::Relaying { .. } => self.pump(ctx),
            Phase::Done => Ok(false),
        }
    }

    /// Read the client until what opens the connection is known, then choose the pool and
    /// start the connect.
    fn open(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        let Phase::Opening { proxy } = self.phase else {
            return Ok(false);
        };
        let read = match self.client.read_into(&mut self.up_flow.buf, ctx.bufs) {
            Ok(n) => n,
            Err(e) => {
                debug!("{}: read error: {e}", self.peer);
                return Err(End::ClientClosed);
            }
        };
        if proxy {
            match proxy_protocol::parse(self.up_flow.buf.data()) {
                Ok(Parsed::Incomplete) if self.client.eof => return Err(End::ClientClosed),
                Ok(Parsed::Incomplete) => return Ok(read > 0),
                Ok(Parsed::Header { len, source }) => {
                    self.up_flow.buf.consume(len);
                    if let Some(source) = source {
                        self.peer = source;
                    }
                    self.phase = Phase::Opening { proxy: false };
                    self.count_connection(ctx.now);
                }
                Err(e) => {
                    debug!("{}: bad PROXY header ({e:?}): refused", self.peer);
                    return Err(End::Refused);
                }
            }
        }
        let snap = Arc::clone(&self.snap);
        let Some(spec) = snap.cfg.tcp.get(self.listener) else {
            return Err(End::Refused);
        };
        let pool = match &spec.target {
            TcpTarget::Pool(p) => *p,
            TcpTarget::Sni(routes) => {
                if routes.is_empty() {
                    // A listener a reload removed: it takes nothing new.
                    return Err(End::Refused);
                }
                let sni = match client_hello::parse(self.up_flow.buf.data()) {
                    Ok(Hello::Incomplete) if self.client.eof => return Err(End::ClientClosed),
                    Ok(Hello::Incomplete) => return Ok(read > 0),
                    Ok(Hello::Complete { sni }) => sni,
                    Err(why) => {
                        debug!(
                            "{}: no ClientHello to route by ({why:?}): refused",
                            self.peer
                        );
                        return Err(End::Refused);
                    }
                };
                let Some(route) = routes.iter().find(|r| r.matches(sni.as_deref())) else {
                    self.sni = sni.map(String::into_boxed_str);
                    debug!("{}: no route for SNI {:?}: refused", self.peer, self.sni);
                    return Err(End::Refused);
                };
                self.sni = sni.map(String::into_boxed_str);
                route.pool
            }
        };
        self.pool = Some(pool);
        self.check_limits(ctx, pool)?;
        self.hash = self.snap.pools[pool]
            .hash_key
            .as_ref()
            .map(|_| crate::balance::hash::hash_ip(self.peer.ip()));
        if let Some(version) = self.snap.cfg.pools[pool].send_proxy {
            self.proxy_header_for_upstream(version);
        }
        self.connect_next(Tried::default(), ctx)?;
        Ok(true)
    }

    /// `client_limits.connections` (counted already), and the rates (`requests_per_second`
    /// counts new connections here), global and the pool's.
    fn check_limits(&mut self, ctx: &Ctx<'_>, pool: usize) -> Result<(), End> {
        let snap = &self.snap;
        let key = ClientKey::of(self.peer.ip());
        let now = ctx.now.ns();
        let mut over = self.over_connection_limit;
        if !over {
            let limiters = [
                snap.limiter
                    .as_ref()
                    .filter(|_| snap.cfg.client_limits.rate.is_some()),
                snap.pool_limiters[pool].as_ref(),
            ];
            over = limiters
                .into_iter()
                .flatten()
                .any(|l| matches!(l.check(key, now), Verdict::Deny { .. }));
        }
        if over {
            snap.pools[pool]
                .shared
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
            debug!("{}: over a client limit: refused", self.peer);
            return Err(End::Refused);
        }
        Ok(())
    }

    /// The pool's PROXY header (`send_proxy`), to go out before anything of the client's.
    fn proxy_header_for_upstream(&mut self, version: u8) {
        let local = self
            .client
            .stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.preamble.reserve_exact(proxy_protocol::V2_MAX);
        proxy_protocol::write(version, self.peer, local, &mut self.preamble);
    }

    /// Connect to the pool's next pick not in `tried`, within its retries and retry budget.
    fn connect_next(&mut self, mut tried: Tried, ctx: &mut Ctx<'_>) -> Result<(), End> {
        let p = self.pool.ok_or(End::Refused)?;
        loop {
            let snap = &self.snap;
            let pool = &snap.pools[p];
            if tried.len() > pool.retries {
                debug!("{}: no upstream of pool {} reached", self.peer, pool.name);
                return Err(End::ConnectFailed);
            }
            let now_ms = if pool.slow_start_ms > 0 {
                crate::upstream::tick_ms(ctx.now)
            } else {
                0
            };
            let idx = match pool.pick(&tried, self.hash, ctx.balance.for_pool(p), now_ms) {
                Choice::Member(i) => i,
                Choice::NoneAlive | Choice::AllTried => {
                    debug!("{}: no upstream left in pool {}", self.peer, pool.name);
                    return Err(End::ConnectFailed);
                }
                Choice::AllFull => {
                    debug!(
                        "{}: every upstream of pool {} is at its max_conns: refused",
                        self.peer, pool.name
                    );
                    return Err(End::Refused);
                }
            };
            let member = &pool.members[idx];
            let Some(flight) = member.state.try_begin_request(member.max_conns, None) else {
                continue;
            };
            if !tried.is_empty() && !budget::take_retry(pool, ctx.now.ns() / 1_000_000_000) {
                debug!("{}: pool {}'s retry budget is spent", self.peer, pool.name);
                return Err(End::ConnectFailed);
            }
            tried.insert(idx);
            match self.open_upstream(member.addr, ctx.registry) {
                Ok(stream) => {
                    self.phase = Phase::Connecting {
                        up: Upstream {
                            peer: Peer::new(stream),
                            idx,
                            flight,
                        },
                        tried,
                        since: ctx.now,
                    };
                    return Ok(());
                }
                Err(e) => {
                    if is_local_shortage(&e) {
                        warn!("cannot open a connection to {}: {e}", member.name);
                        return Err(End::ConnectFailed);
                    }
                    judge_connect_failure(pool, idx, &e);
                }
            }
        }
    }

    fn open_upstream(&self, addr: SocketAddr, registry: &Registry) -> io::Result<TcpStream> {
        let mut stream = TcpStream::connect(addr)?;
        registry.register(
            &mut stream,
            relay_token(self.key, true),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The connect to `up` failed with `e`: judged, then the next upstream.
    fn connect_failed(
        &mut self,
        up: Upstream,
        e: &io::Error,
        tried: Tried,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), End> {
        let p = self.pool.ok_or(End::Refused)?;
        let mut up = up;
        let _ = ctx.registry.deregister(&mut up.peer.stream);
        let idx = up.idx;
        drop(up);
        judge_connect_failure(&self.snap.pools[p], idx, e);
        self.connect_next(tried, ctx)
    }

    /// Check a pending connect (on writable: `take_error`, then `peer_addr`); meanwhile, take
    /// what the client sends (it waits in the buffer).
    fn poll_connect(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        let mut progress = false;
        if self.up_flow.buf.room() > 0 {
            match self.client.read_into(&mut self.up_flow.buf, ctx.bufs) {
                Ok(n) => progress |= n > 0,
                Err(e) => {
                    debug!("{}: read error: {e}", self.peer);
                    return Err(End::ClientClosed);
                }
            }
        }
        let Phase::Connecting { up, .. } = &mut self.phase else {
            return Ok(progress);
        };
        if !up.peer.writable {
            return Ok(progress);
        }
        let err = match up.peer.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match up.peer.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    up.peer.writable = false;
                    return Ok(progress);
                }
                Err(e) => Some(e),
            },
        };
        let Phase::Connecting { up, tried, .. } = std::mem::replace(&mut self.phase, Phase::Done)
        else {
            return Ok(progress);
        };
        if let Some(e) = err {
            self.connect_failed(up, &e, tried, ctx)?;
            return Ok(true);
        }
        up.flight.sent(ctx.worker);
        self.reached = Some(up.idx);
        self.phase = Phase::Relaying { up };
        Ok(true)
    }

    /// Both directions, then each side's end of stream passed on.
    fn pump(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, End> {
        let Phase::Relaying { up } = &mut self.phase else {
            return Ok(false);
        };
        let mut progress = false;
        if !self.preamble.is_empty() {
            let n = up
                .peer
                .write_from(&self.preamble, false)
                .map_err(|_| End::UpstreamClosed)?;
            self.preamble.drain(..n);
            progress |= n > 0;
        }
        if self.preamble.is_empty() {
            match flow(
                &mut self.client,
                &mut up.peer,
                &mut self.up_flow,
                ctx.cfg.splice_min,
                ctx,
            ) {
                Ok(p) => progress |= p,
                Err(Failed::Client) => return Err(End::ClientClosed),
                Err(Failed::Upstream) => {
                    // The upstream takes nothing more (it closed or reset): what the client
                    // still sends is dropped, and what the upstream sent before still goes to
                    // the client (an error reply sent before a close, say).
                    debug!("{}: the upstream stopped taking bytes", self.peer);
                    self.end.get_or_insert(End::UpstreamClosed);
                    self.client.eof = true;
                    self.client.readable = false;
                    up.peer.shut = true;
                    if let Some(span) = self.up_flow.span.take() {
                        span.finish(ctx.pipes);
                    }
                    self.up_flow.buf.clear();
                    self.up_flow.buf.detach(ctx.bufs);
                    progress = true;
                }
            }
        }
        match flow(
            &mut up.peer,
            &mut self.client,
            &mut self.down_flow,
            ctx.cfg.splice_min_response,
            ctx,
        ) {
            Ok(p) => progress |= p,
            // `flow` names the source as `Client`: here the source is the upstream.
            Err(Failed::Client) => return Err(End::UpstreamClosed),
            Err(Failed::Upstream) => return Err(End::ClientClosed),
        }
        // Who ended first is how the connection ended.
        if self.client.eof && self.end.is_none() {
            self.end = Some(End::ClientClosed);
        }
        if up.peer.eof && self.end.is_none() {
            self.end = Some(End::UpstreamClosed);
        }
        if self.client.eof && self.up_flow.is_empty() && self.preamble.is_empty() && !up.peer.shut {
            up.peer.shutdown_write();
            progress = true;
        }
        if up.peer.eof && self.down_flow.is_empty() && !self.client.shut {
            self.client.shutdown_write();
            progress = true;
        }
        if up.peer.shut && self.client.shut {
            self.phase = Phase::Done;
        }
        Ok(progress)
    }

    /// Add the bytes moved since the last call to the listener's counters.
    fn count_bytes(&mut self, ctx: &Ctx<'_>) {
        let (i, o) = (self.client.bytes_in, self.client.bytes_out);
        if (i, o) == self.counted {
            return;
        }
        if let Some(c) = ctx.stats.tcp.get(self.listener) {
            c.bytes_in.add(i - self.counted.0);
            c.bytes_out.add(o - self.counted.1);
        }
        self.counted = (i, o);
    }

    /// Let everything go (the sockets close when the relay is dropped right after): pipes and
    /// buffers back to the worker, the client's count in its limiter, the access-log line.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        self.count_bytes(ctx);
        for flow in [&mut self.up_flow, &mut self.down_flow] {
            if let Some(span) = flow.span.take() {
                span.finish(ctx.pipes);
            }
            flow.buf.clear();
            flow.buf.detach(ctx.bufs);
        }
        if let Some(l) = self.conn_limiter.take() {
            l.close(ClientKey::of(self.peer.ip()));
        }
        if let Some(c) = ctx.stats.tcp.get(self.listener) {
            c.open.sub(1);
        }
        if let Some(logger) = ctx.logger {
            let pool = self.pool.and_then(|p| self.snap.pools.get(p));
            let end = self.end.unwrap_or(End::ClientClosed);
            let rec = TcpRecord {
                unix_ms: ctx.wall.unix_ms(self.opened),
                client: self.peer.ip().to_string(),
                listener: self
                    .spec()
                    .map(|s| s.listen.to_string())
                    .unwrap_or_default(),
                sni: self.sni.as_deref().unwrap_or_default().to_string(),
                pool: pool.map(|p| p.name.clone()).unwrap_or_default(),
                upstream: match (pool, self.reached) {
                    (Some(p), Some(i)) => p
                        .members
                        .get(i)
                        .map(|m| m.addr_text.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                },
                bytes_in: self.client.bytes_in,
                bytes_out: self.client.bytes_out,
                duration_ms: u64::try_from(ctx.now.since(self.opened).as_millis())
                    .unwrap_or(u64::MAX),
                end: end.label(),
            };
            logger.append_tcp(&rec, ctx.log_batch);
        }
    }
}

/// A failed connect to member `idx` of `pool`: refused/unreachable/timed out ejects it at
/// once (within `max_ejected_percent`), another error counts towards `consecutive_failures`.
fn judge_connect_failure(pool: &crate::balance::Pool, idx: usize, e: &io::Error) {
    let Some(member) = pool.members.get(idx) else {
        return;
    };
    member.state.record_connect_failure();
    if marks_upstream_down(e) {
        outlier::eject(pool, idx, Ejection::Failures, &connect_reason(e));
    } else {
        warn!("connect to {} failed: {e}", member.name);
        outlier::count_failure(pool, idx, &format!("connect: {e}"));
    }
}

/// Move one direction's bytes from `src` to `dst` as far as the sockets let them: a read and
/// a write through the buffer, or, while the source streams (a read filled the buffer), a span
/// through a pipe until the source is drained. `Err(Failed::Client)` names the source,
/// `Err(Failed::Upstream)` the destination.
fn flow(
    src: &mut Peer,
    dst: &mut Peer,
    flow: &mut Flow,
    splice_min: usize,
    ctx: &mut Ctx<'_>,
) -> Result<bool, Failed> {
    let mut progress = false;
    if flow.span.is_none() {
        if !flow.buf.is_empty() {
            let n = dst
                .write_from(flow.buf.data(), false)
                .map_err(|_| Failed::Upstream)?;
            flow.buf.consume(n);
            progress |= n > 0;
        }
        if flow.buf.is_empty() && flow.streaming && src.readable && !src.eof {
            flow.span = lend_span(ctx.pipes, u64::MAX, splice_min, false);
            flow.streaming = false;
        }
    }
    if flow.span.is_none() && flow.buf.room() > 0 && src.readable && !src.eof {
        let room = flow.buf.read_room();
        let n = src
            .read_into(&mut flow.buf, ctx.bufs)
            .map_err(|_| Failed::Client)?;
        progress |= n > 0 || src.eof;
        // A read that filled the whole buffer: more is waiting, a burst is under way.
        flow.streaming = n > 0 && n >= room;
        if n > 0 {
            let w = dst
                .write_from(flow.buf.data(), false)
                .map_err(|_| Failed::Upstream)?;
            flow.buf.consume(w);
        }
    }
    if let Some(span) = &mut flow.span {
        let drained = match move_span(span, src, dst, true) {
            Ok(m) => {
                progress |= m.progress;
                m.drained
            }
            Err(SpanError::Source(_)) => return Err(Failed::Client),
            Err(SpanError::Dest(_)) => return Err(Failed::Upstream),
        };
        if (drained || src.eof) && span.held() == 0 {
            finish_span(flow, ctx.pipes);
            progress = true;
        }
    }
    flow.buf.detach(ctx.bufs);
    Ok(progress)
}

fn finish_span(flow: &mut Flow, pipes: &mut PipePool) {
    if let Some(span) = flow.span.take() {
        span.finish(pipes);
    }
}
