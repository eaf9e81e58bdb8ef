//! The state machine of one client connection and its upstream connection.
//!
//! The worker owns the sockets' registrations and tells a session what the OS reported
//! ([`Session::on_client_event`], [`Session::on_upstream_event`]); the session keeps that
//! readiness in userland and [`Session::drive`] moves bytes until nothing more can move.
//! mio is edge-triggered: a readiness is only cleared when a call returned `WouldBlock`, so a
//! session that stops early (a full buffer, the work budget) resumes where it stopped.
//!
//! One exchange at a time: request head → the plan for it (`http::plan`) → upstream connect →
//! request body and response in both directions → back to reading the next head (keep-alive)
//! or closing. An exchange is in one [`Phase`](exchange::Phase) at a time (buffering, queued,
//! connecting, awaiting the head, streaming, draining); what to do with each head is decided
//! by `http::plan`, and the session carries it out.

use crate::access_log::{LogBatch, Logger, Record};
use crate::balance::{self, Choice, Local};
use crate::buffer::{self, BufPool, Buffer};
use crate::clock::{Tick, WallClock};
use crate::config::Config;
use crate::connpool::{self, ConnPool};
use crate::http::chunked::{self, Decoder};
use crate::http::plan;
use crate::http::request::{self, HeadProgress, RequestError, RequestInfo};
use crate::http::response::{self, ResponseError};
use crate::http::rewrite::{self, ClientAddr, RequestContext, ResponseContext};
use crate::http::{local, SliceOut, Version};
use crate::limits::{ClientKey, Limiter};
use crate::metrics::WorkerStats;
use crate::net::client_token;
use crate::snapshot::Snapshot;
use crate::splice::{PipePool, Span};
use crate::upstream::{InFlight, Tried, UpstreamState};
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Most read/process/write rounds one `drive` call makes before yielding to other connections.
const DRIVE_BUDGET: usize = 16;
/// Most client bytes (in and out together) one `drive` call moves before yielding: a large
/// response then goes out in turns with the others' instead of whole while they wait (with
/// 16 connections fetching 1 MiB each, 16 whole rounds a turn put p99 at 1.47× HAProxy's,
/// 64 KiB a turn at 0.83×, with less CPU per request). Small exchanges never reach it.
const DRIVE_BYTES: u64 = 64 * 1024;
/// How long an idle keep-alive connection stays open once a graceful stop has begun: its
/// client may have sent its next request already, which then gets an answer (with
/// `Connection: close`) instead of a reset. One still silent after this is closed.
const STOP_IDLE_GRACE: Duration = Duration::from_secs(1);
/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so that our last answer is not destroyed by a reset (RFC 9112 §9.6, "lingering close").
const LINGER: Duration = Duration::from_secs(2);
/// Room kept free in the client output buffer while forwarding, so that an answer of our own
/// (at most ~200 bytes) always fits whole behind what is already queued.
const LOCAL_ANSWER_ROOM: usize = 256;
/// How long a new connection's first exchange may wait on its upstream before the client
/// socket joins the epoll set. A client is registered only once the session waits for it (more
/// request bytes, room to write, the next request); a `Connection: close` exchange that is
/// answered within this delay never costs the epoll_ctl, and the removal from the epoll set at
/// its close. Past the delay the socket is registered anyway, so that a client that resets
/// during a long upstream wait is noticed and the upstream request let go.
const CLIENT_WATCH_AFTER: Duration = Duration::from_millis(5);
/// How long an upstream's body bytes may wait for a batch (`splice::BATCH`) with no progress
/// before its reads go back to waking at one byte: a sender slower than a batch per wait
/// (6.4 MB/s) streams as it sends, and holds its first bytes at most this long (plus the timer
/// wheel's tick).
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Header slots a head is first parsed into. Slots are initialised on every parse (32 bytes
/// each), which costs more than the parse itself for small heads; a head with more field lines
/// is parsed again with exactly as many (see `parse_with_slots!`).
const FEW_FIELDS: usize = 24;
/// Beyond this many field lines (`--max-fields` above it), the slots are on the heap.
const STACK_FIELDS: usize = 128;

/// `let $parsed = $parse;` where `$parse` is an expression over header slots `$slots` sized to
/// the head: first `FEW_FIELDS`, and if the parser answers `$again(n)`, exactly `n` (on the
/// stack up to `STACK_FIELDS`). A statement macro: the slots must outlive `$parsed`.
macro_rules! parse_with_slots {
    (let $parsed:ident = |$slots:ident| $parse:expr, $again:path) => {
        let mut few = [httparse::EMPTY_HEADER; FEW_FIELDS];
        let mut many;
        let mut heap = Vec::new();
        let $parsed = {
            let $slots = &mut few[..];
            match $parse {
                Err($again(n)) => {
                    let $slots = if n <= STACK_FIELDS {
                        many = [httparse::EMPTY_HEADER; STACK_FIELDS];
                        &mut many[..n]
                    } else {
                        heap.resize(n, httparse::EMPTY_HEADER);
                        &mut heap[..]
                    };
                    $parse
                }
                parsed => parsed,
            }
        };
    };
}

mod connect;
mod exchange;
mod failure;
mod logging;
mod peer;
mod request_side;
mod response_side;
mod round;
mod span;
mod timeouts;
mod tls;
mod tunnel;
mod upstream_io;

pub use exchange::Exchange;
use exchange::{Phase, RequestBody, ResponseBody, SpareSlots, Upstream, UpstreamSlot};
pub(crate) use peer::Peer;
pub(crate) use span::{lend_span, move_span, SpanError};
use tls::{ClientTls, TlsRefusal};

/// What a session asks of the worker after it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Waiting for readiness or a timer.
    Idle,
    /// Work left but the budget ran out: drive it again after other connections had a turn.
    Again,
    /// Done: deregister and drop the session.
    Closed,
}

/// What a session needs from its worker for one call.
pub struct Ctx<'a> {
    /// Where the upstream sockets are registered.
    pub registry: &'a Registry,
    /// The shared upstream set.
    /// The configuration in force for new requests.
    pub snap: &'a Arc<Snapshot>,
    /// The worker's balancing state.
    pub balance: &'a mut Local,
    /// The worker's index (its counter shard of each upstream).
    pub worker: usize,
    /// The worker's client-side counters.
    pub stats: &'a WorkerStats,
    /// The access log, when it is on.
    pub logger: Option<&'a Logger>,
    /// The worker's access-log lines of this turn (handed over at its end).
    pub log_batch: &'a mut LogBatch,
    /// Flags and limits.
    pub cfg: &'a Config,
    /// The worker's clock for this loop iteration.
    pub now: Tick,
    /// The wall clock, for the access log's timestamps.
    pub wall: WallClock,
    /// Reused scratch space for rewritten heads and transcoded chunks (no per-request allocation).
    pub scratch: &'a mut Vec<u8>,
    /// The worker is shutting down: no more keep-alive.
    pub shutting_down: bool,
    /// Since when (a graceful stop began), while `shutting_down`.
    pub stopping_since: Option<Tick>,
    /// The worker's free buffer storage.
    pub bufs: &'a mut BufPool,
    /// The worker's upstream sockets: ids, tokens and the idle connections.
    pub conns: &'a mut ConnPool,
    /// The worker's spare exchange records.
    pub exchanges: &'a mut ExchangePool,
    /// The worker's pipes for splice(2).
    pub pipes: &'a mut PipePool,
}

/// Spare exchange records of one worker, so that starting a request allocates nothing.
#[derive(Debug, Default)]
pub struct ExchangePool {
    /// Records of finished exchanges. Boxed on purpose: a session's state holds the box, and
    /// handing it back and forth moves a pointer, not the record.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Exchange>>,
    /// Boxes for sessions' upstream connections (see [`UpstreamSlot`]).
    slots: SpareSlots,
}

/// Most spare exchange records a worker keeps.
const SPARE_EXCHANGES: usize = 1024;

impl ExchangePool {
    /// (Inlined: the record is then written straight into its box, not built and copied.)
    #[inline(always)]
    fn make(&mut self, ex: Exchange) -> Box<Exchange> {
        match self.free.pop() {
            Some(mut b) => {
                *b = ex;
                b
            }
            None => Box::new(ex),
        }
    }

    fn recycle(&mut self, b: Box<Exchange>) {
        if self.free.len() < SPARE_EXCHANGES {
            self.free.push(b);
        }
    }
}

/// What a session is doing.
#[derive(Debug)]
enum State {
    /// Waiting for a request head; `started` is when its first byte came (None: idle),
    /// `progress` how far the part received so far has been checked.
    Head {
        started: Option<Tick>,
        progress: HeadProgress,
    },
    /// A request is being proxied.
    Exchange(Box<Exchange>),
    /// After a 101: bytes flow both ways untouched until both sides have closed.
    Tunnel,
    /// Flushing the last bytes to the client, then lingering until it closes (or `LINGER`).
    /// `clean`: the request was read to its end, so once the output is out and nothing more
    /// came, the connection closes at once: lingering only protects a response from the reset
    /// that unread client bytes would cause, and costs a shutdown, a read and a wakeup.
    Closing {
        linger_since: Option<Tick>,
        clean: bool,
    },
}

impl State {
    /// Idle between requests: nothing of the next head yet.
    fn waiting_for_head() -> State {
        State::Head {
            started: None,
            progress: HeadProgress::START,
        }
    }
}

/// How an exchange step failed.
#[derive(Debug)]
enum Fail {
    /// Answer with this status (when no final response has started), then close.
    Respond(u16),
    /// Close the client connection now (after flushing what is queued).
    Abort,
}

impl From<io::Error> for Fail {
    fn from(_: io::Error) -> Self {
        Fail::Abort
    }
}

/// One client connection.
pub struct Session {
    /// The client socket.
    client: Peer,
    /// The TLS layer over it, on the HTTPS listener (boxed: rare on a plain port, and a plain
    /// connection then pays one word).
    tls: Option<Box<ClientTls>>,
    /// The client socket is in the worker's epoll set (see `CLIENT_WATCH_AFTER`).
    client_registered: bool,
    /// The client's address as X-Forwarded-For writes it (IPv4-mapped IPv6 as IPv4).
    client_ip: ClientAddr,
    /// Slab key: the source of both tokens.
    key: usize,
    /// The upstream connection, during an exchange or a tunnel. Boxed: an idle keep-alive
    /// connection, the most common kind, then holds one word for it instead of its ~90 bytes.
    upstream: UpstreamSlot,
    /// Raw bytes from the client.
    cin: Buffer,
    /// Bytes for the client.
    cout: Buffer,
    /// Raw bytes from the upstream.
    uin: Buffer,
    /// Bytes for the upstream.
    uout: Buffer,
    /// What the session is doing.
    state: State,
    /// The configuration this connection's current (or last) request runs on: taken from the
    /// worker's at the start of each request, so a reload never changes a request midway.
    snap: Arc<Snapshot>,
    /// The client's address and port (a PROXY header's when one came): the key of `ip_hash`
    /// and the limits, and what a PROXY header sent upstream names.
    peer: SocketAddr,
    /// `proxy_protocol`: the connection must start with a PROXY header, not read yet.
    awaiting_proxy_header: bool,
    /// Client bytes in and out already added to the worker's counters.
    counted: (u64, u64),
    /// The limiter this connection is counted in (a connection limit), to uncount it at the
    /// close.
    conn_limiter: Option<Arc<Limiter>>,
    /// The connection was over its client's connection limit when it opened: its first request
    /// gets 429 and the connection closes.
    over_connection_limit: bool,
    /// The access-log record of the current request (allocated once, the access log on).
    log: Option<Box<Record>>,
    /// `log` describes a request not logged yet.
    log_open: bool,
    /// When the current request's head was complete (its duration's start).
    log_started: Tick,
    /// The most a forwarded head may take of the upstream buffer (what is not kept for a body
    /// read before the connect); fixed with the buffers' sizes when the connection starts.
    head_room: usize,
    /// Requests completed on this connection.
    served: u64,
    /// When the connection was accepted, or last went idle between requests.
    idle_since: Tick,
    /// Last time a byte moved in either direction: the base of read/write timeouts.
    last_progress: Tick,
    /// Client → upstream bytes going by splice(2): a long span of the request body, or the
    /// tunnel's bytes. While it has bytes to take, the client socket is read by it alone.
    up_span: Option<Box<Span>>,
    /// Upstream → client bytes going by splice(2): a long span of the response body, or the
    /// tunnel's bytes. While it has bytes to take, the upstream socket is read by it alone.
    down_span: Option<Box<Span>>,
}

impl Session {
    /// A session for a freshly accepted client, not registered yet: the worker drives it at
    /// once, and it joins the epoll set only when it has to wait for the client.
    /// On the HTTPS listener, `tls` is the configuration its handshake uses; `None` when its
    /// TLS state cannot be made (the connection is then refused).
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        key: usize,
        snap: &Arc<Snapshot>,
        now: Tick,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Option<Self> {
        let tls = match tls {
            Some(config) => Some(ClientTls::new(config, now)?),
            None => None,
        };
        let cfg = &snap.cfg;
        let client_ip = peer.ip();
        let size = buffer::size_for(cfg.limits.max_head);
        let mut client = Peer::new(stream);
        // Not registered, so no event will say so: assume the request is there and the send
        // buffer empty. A read or write that would block clears the guess, and registering
        // then reports the socket's real readiness (epoll checks it when a socket is added).
        client.readable = true;
        client.writable = true;
        // A connection limit counts this connection now; the first request of one over it gets
        // a 429 and the connection closes.
        let (conn_limiter, over_connection_limit) =
            match (cfg.client_limits.connections, &snap.limiter) {
                (Some(limit), Some(l)) => {
                    let fits = l.open(ClientKey::of(client_ip), limit, now.ns());
                    (Some(Arc::clone(l)), !fits)
                }
                _ => (None, false),
            };
        Some(Session {
            client,
            tls,
            client_registered: false,
            client_ip: ClientAddr::new(client_ip),
            key,
            upstream: UpstreamSlot::default(),
            cin: Buffer::new(size),
            cout: Buffer::new(size),
            uin: Buffer::new(size),
            // Room for a head and, behind it, a body read before the connect.
            uout: Buffer::new(size + cfg.request_buffer),
            state: State::waiting_for_head(),
            snap: Arc::clone(snap),
            peer,
            awaiting_proxy_header: cfg.proxy_protocol,
            head_room: size,
            counted: (0, 0),
            conn_limiter,
            over_connection_limit,
            log: None,
            log_open: false,
            log_started: now,
            served: 0,
            idle_since: now,
            last_progress: now,
            up_span: None,
            down_span: None,
        })
    }

    /// Readiness reported for the client socket.
    pub fn on_client_event(&mut self, ev: &mio::event::Event) {
        self.client.on_event(ev);
    }

    /// Readiness reported for upstream socket `id` (ignored if it belonged to an older one).
    pub fn on_upstream_event(&mut self, id: usize, ev: &mio::event::Event) {
        if let Some(up) = self.upstream.get_mut() {
            if up.id == id {
                up.peer.on_event(ev);
            }
        }
    }

    /// Close everything: deregister the sockets (dropping them closes them) and give the
    /// buffers back.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        let (registry, stats, logger, worker) = (ctx.registry, ctx.stats, ctx.logger, ctx.worker);
        self.count_bytes(stats);
        if self.tls.as_ref().is_some_and(|t| t.handshaking()) {
            // Closed before its handshake ended for any reason not counted already (a write
            // error, a reset): every handshake is counted once, as ok or as failed.
            self.handshake_failed(crate::tls::HandshakeFailure::Eof, "closed", ctx);
        }
        self.leave_queue(worker, false);
        if let Some(l) = self.conn_limiter.take() {
            l.close(ClientKey::of(self.peer.ip()));
        }
        // A request still open when the connection goes: the client left before its answer
        // (499, nginx's code) or in the middle of it.
        if self.log_open {
            let status = match &self.state {
                State::Exchange(ex) if ex.status != 0 => ex.status,
                _ => 499,
            };
            self.log_end(logger, ctx.log_batch, status, true, None, Tick::now());
        }
        self.end_spans(ctx.pipes);
        self.drop_upstream(registry, ctx.conns);
        // No deregister: the socket is closed when the session is dropped right after, and a
        // closed descriptor leaves the epoll set by itself (one syscall less per connection).
        self.cin.clear();
        self.cout.clear();
        self.detach_buffers(ctx.bufs);
    }

    /// Add the client bytes moved since the last call to the worker's counters.
    #[inline]
    fn count_bytes(&mut self, stats: &WorkerStats) {
        let (bytes_in, bytes_out) = (self.client.bytes_in, self.client.bytes_out);
        stats.bytes_received.add(bytes_in - self.counted.0);
        stats.bytes_sent.add(bytes_out - self.counted.1);
        self.counted = (bytes_in, bytes_out);
    }

    /// Give the lent pipes back (the pool closes one that still holds bytes).
    fn end_spans(&mut self, pipes: &mut PipePool) {
        if let Some(span) = self.up_span.take() {
            span.finish(pipes);
        }
        if let Some(span) = self.down_span.take() {
            span.finish(pipes);
        }
    }

    /// Bytes sit in a pipe, waiting for their destination to take them.
    fn spans_hold_bytes(&self) -> bool {
        let holds = |s: &Option<Box<Span>>| s.as_ref().is_some_and(|s| s.held() > 0);
        holds(&self.up_span) || holds(&self.down_span)
    }

    /// Give back the storage of every empty buffer. Storage is taken from the pool where bytes
    /// are written (a read, a head, a body), so a buffer holds storage only while it holds
    /// bytes: an idle client none, an exchange only the directions that have something queued.
    #[inline]
    fn detach_buffers(&mut self, bufs: &mut BufPool) {
        self.cin.detach(bufs);
        self.cout.detach(bufs);
        self.uin.detach(bufs);
        self.uout.detach(bufs);
    }

    fn drop_upstream(&mut self, registry: &Registry, conns: &mut ConnPool) {
        if let Some(mut up) = self.upstream.take() {
            let _ = registry.deregister(&mut up.peer.stream);
            conns.closed(up.id);
            // Dropping it (its `InFlight`) hands a `max_conns` slot on.
        }
        self.clear_upstream_input();
        self.uout.clear();
    }

    /// Empty the upstream input: how far a response head in it was checked goes with it.
    fn clear_upstream_input(&mut self) {
        self.uin.clear();
        if let State::Exchange(ex) = &mut self.state {
            if let Phase::AwaitingHead(checked) = &mut ex.phase {
                *checked = HeadProgress::START;
            }
        }
    }

    /// Move bytes until nothing more can move, or the budget runs out.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        let mut d = self.drive_rounds(ctx);
        if d != Drive::Closed
            && !self.client_registered
            && self.waits_for_client()
            && !self.register_client(ctx.registry)
        {
            d = Drive::Closed;
        }
        self.count_bytes(ctx.stats);
        if d != Drive::Closed {
            // Every empty buffer goes back, not only an idle connection's: a session waiting on
            // its upstream or its client holds storage only for bytes actually queued, so the
            // worker's free list covers thousands of in-flight exchanges without allocating.
            // (Storage is taken where bytes are written, never for a buffer a drive leaves
            // empty: a request's two drives take four buffers, not eight.)
            self.detach_buffers(ctx.bufs);
        }
        d
    }

    /// Whether the session needs the client socket's readiness to go on: anything but a
    /// first exchange whose request is in and whose answer is not yet queued.
    fn waits_for_client(&self) -> bool {
        match &self.state {
            State::Exchange(ex) => {
                !matches!(ex.req_body, RequestBody::Done)
                    || self.client_output_pending()
                    || self.up_span.is_some()
                    || self.down_span.is_some()
            }
            _ => true,
        }
    }

    /// Add the client socket to the epoll set; false (logged) when the OS refuses, and then
    /// the session can only close: nothing would ever wake it.
    fn register_client(&mut self, registry: &Registry) -> bool {
        let interest = Interest::READABLE | Interest::WRITABLE;
        match registry.register(&mut self.client.stream, client_token(self.key), interest) {
            Ok(()) => {
                self.client_registered = true;
                true
            }
            Err(e) => {
                warn!("cannot register a client socket: {e}");
                false
            }
        }
    }

    fn drive_rounds(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        let moved_before = self.client.bytes_in + self.client.bytes_out;
        for _ in 0..DRIVE_BUDGET {
            let r = self.round(ctx);
            match r {
                Ok(true) if self.settled(ctx.shutting_down) => return Drive::Idle,
                Ok(true) => {
                    if self.client.bytes_in + self.client.bytes_out - moved_before >= DRIVE_BYTES {
                        return Drive::Again;
                    }
                }
                Ok(false) => return Drive::Idle,
                Err(e) => match self.fail(e, ctx) {
                    Drive::Idle => continue,
                    d => return d,
                },
            }
        }
        Drive::Again
    }

    /// After a round that moved something: whether another round is sure to move nothing, so
    /// that it can be skipped (it would cost a quarter of a small request's instructions).
    /// Conservative: no socket may have more to give (its last read was short, or blocked), no
    /// byte is buffered in either direction but a sent request kept for a replay, no pipe is
    /// lent, and the state is one whose processing needs new bytes to move. Anything else
    /// takes the extra round, which then finds out for itself.
    fn settled(&self, shutting_down: bool) -> bool {
        let sent = match &self.state {
            State::Head { .. } => 0,
            State::Exchange(ex) => ex.replay.unwrap_or(0),
            State::Tunnel | State::Closing { .. } => return false,
        };
        let upstream_quiet = self
            .upstream
            .get()
            .is_none_or(|u| !u.peer.readable && (self.upstream_connected() || !u.peer.writable));
        !shutting_down
            && !self.client.readable
            && upstream_quiet
            && self.cin.is_empty()
            && !self.client_output_pending()
            && self.uin.is_empty()
            && self.uout.len() <= sent
            && self.up_span.is_none()
            && self.down_span.is_none()
    }

    /// State-specific work on the buffered bytes. `Ok(true)` if anything changed.
    // Kept out of line, and `round` inlined into `drive`: LLVM's own choice here varies with
    // unrelated changes, and this one measured lowest (callgrind, benches/load guard).
    #[inline(never)]
    fn process(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        match &mut self.state {
            State::Head { .. } => self.process_head(ctx),
            State::Exchange(ex) => {
                let woken = matches!(ex.phase, Phase::Queued { woken: true, .. });
                if self.client_left(ex_final_started(&self.state)) {
                    // As nginx: a client that closed its side before its answer has gone;
                    // the upstream request is let go (499).
                    debug!("{}: client closed before its answer: 499", self.client_ip);
                    return Err(Fail::Abort);
                }
                if woken {
                    // A slot freed: pick again (back to the queue's front if it went already).
                    self.connect_next(ctx)?;
                }
                let mut progress = self.poll_connect(ctx)?;
                progress |= self.pump_request_body(ctx)?;
                progress |= self.end_buffering(ctx)?;
                progress |= self.pump_request_span(ctx)?;
                progress |= self.pump_response(ctx)?;
                progress |= self.pump_response_span(ctx)?;
                progress |= self.maybe_finish(ctx);
                Ok(progress)
            }
            State::Tunnel => self.pump_tunnel(ctx),
            State::Closing { .. } => Ok(false),
        }
    }
}

/// Whether the exchange in `state` has queued its final response head.
#[inline]
fn ex_final_started(state: &State) -> bool {
    matches!(state, State::Exchange(ex) if ex.phase.final_started())
}

impl Session {
    /// The client closed its side with its request read in full and nothing behind it, before
    /// any final answer: it has gone. (A pipelined request behind, or a body still coming,
    /// says otherwise; once the answer has started, a half-closed client still reads it.)
    #[inline]
    fn client_left(&self, final_started: bool) -> bool {
        self.client.eof
            && !final_started
            && self.cin.is_empty()
            && self.up_span.is_none()
            && matches!(&self.state, State::Exchange(ex) if matches!(ex.req_body, RequestBody::Done))
    }

    /// Whether the upstream connection, if any, is connected: an exchange's connect may still
    /// be under way; a tunnel's never is.
    #[inline]
    fn upstream_connected(&self) -> bool {
        !matches!(&self.state, State::Exchange(ex) if matches!(ex.phase, Phase::Connecting { .. }))
    }
}

impl Ctx<'_> {
    /// The scratch buffer, emptied.
    fn scratch_take(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        self.scratch
    }
}
#[cfg(test)]
mod tests {
    /// Every connection holds a session in the worker's slab, idle or not: its size is most of
    /// the memory an idle keep-alive client costs (benches/load --mode idle-rss; the goal is
    /// 600 bytes per connection, all included). Grow it only on purpose.
    #[test]
    fn a_session_stays_small() {
        assert!(std::mem::size_of::<super::State>() <= 16);
        assert!(std::mem::size_of::<super::Session>() <= 496);
    }
}
