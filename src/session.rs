//! The state machine of one client connection and its upstream connection.
//!
//! The worker owns the sockets' registrations and tells a session what the OS reported
//! ([`Session::on_client_event`], [`Session::on_upstream_event`]); the session keeps that
//! readiness in userland and [`Session::drive`] moves bytes until nothing more can move.
//! mio is edge-triggered: a readiness is only cleared when a call returned `WouldBlock`, so a
//! session that stops early (a full buffer, the work budget) resumes where it stopped.
//!
//! One exchange at a time: request head → upstream connect → request body and response in
//! both directions → back to reading the next head (keep-alive) or closing.

use crate::buffer::{self, BufPool, Buffer};
use crate::config::Config;
use crate::connpool::{self, ConnPool};
use crate::http::chunked::{self, Decoder};
use crate::http::request::{self, RequestError, RequestInfo};
use crate::http::response::{self, ResponseError};
use crate::http::rewrite::{self, ClientAddr, RequestContext, ResponseContext};
use crate::http::{local, Framing, Version};
use crate::splice::{PipePool, Pulled, Span};
use crate::sys;
use crate::upstream::{Pool, Tried};
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::{IpAddr, Shutdown};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Most read/process/write rounds one `drive` call makes before yielding to other connections.
const DRIVE_BUDGET: usize = 16;
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
    pub pool: &'a Pool,
    /// Flags and limits.
    pub cfg: &'a Config,
    /// The worker's clock for this loop iteration.
    pub now: Instant,
    /// Reused scratch space for rewritten heads and transcoded chunks (no per-request allocation).
    pub scratch: &'a mut Vec<u8>,
    /// The worker is shutting down: no more keep-alive.
    pub shutting_down: bool,
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
}

/// Most spare exchange records a worker keeps.
const SPARE_EXCHANGES: usize = 1024;

impl ExchangePool {
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

/// Upstream socket tokens are `UPSTREAM_TOKENS + id` (ids from the `ConnPool`); client tokens
/// are the session keys, far below.
pub const UPSTREAM_TOKENS: usize = usize::MAX / 4;

/// The mio token of a session's client socket.
pub fn client_token(key: usize) -> Token {
    Token(key)
}

/// The mio token of upstream socket `id`.
pub fn upstream_token(id: usize) -> Token {
    Token(UPSTREAM_TOKENS + id)
}

/// One socket and what the OS last told us about it.
#[derive(Debug)]
struct Peer {
    /// The socket.
    stream: TcpStream,
    /// A read may make progress (cleared only by `WouldBlock`).
    readable: bool,
    /// A write may make progress (cleared only by `WouldBlock`).
    writable: bool,
    /// The peer closed its sending side (read returned 0).
    eof: bool,
    /// We shut our sending side down (after forwarding the other side's EOF, or on closing).
    shut: bool,
    /// The OS said the peer closed or reset (EPOLLRDHUP/ERR), maybe in the same event as data
    /// we have read: edge-triggered, that news will not come again, so a connection with it
    /// must never go to the idle pool.
    hung_up: bool,
    /// TCP_NODELAY is set (see `Session::nagle_off`).
    nodelay: bool,
    /// Something was written to the socket already: a further small write could be held by
    /// Nagle's algorithm behind an unacknowledged one.
    wrote: bool,
}

impl Peer {
    fn new(stream: TcpStream) -> Self {
        Peer {
            stream,
            readable: false,
            writable: false,
            eof: false,
            shut: false,
            hung_up: false,
            nodelay: false,
            wrote: false,
        }
    }

    fn on_event(&mut self, ev: &mio::event::Event) {
        // read_closed and error are hints (mio's Event docs): the next read or write reports them.
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.readable = true;
        }
        if ev.is_read_closed() || ev.is_error() {
            self.hung_up = true;
        }
        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
            self.writable = true;
        }
    }

    /// Read once into `buf` if there is reason to. `Ok(n)` bytes read (0: nothing to do).
    fn read_into(&mut self, buf: &mut Buffer) -> io::Result<usize> {
        if !self.readable || self.eof || buf.room() == 0 {
            return Ok(0);
        }
        loop {
            let room = buf.read_room();
            match buf.read_from(&mut sys::Recv(self.stream.as_raw_fd())) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    // A short read drained the socket (epoll(7), Q9): new bytes will raise a
                    // new edge, so no read that would only say EAGAIN. Not when the peer hung
                    // up: that edge was already reported and the EOF still has to be read.
                    if n < room && !self.hung_up {
                        self.readable = false;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Write once from `bytes` if there is reason to. Returns how many were written. `more`:
    /// the socket is closed or shut down right after these bytes (see `sys::send`).
    fn write_from(&mut self, bytes: &[u8], more: bool) -> io::Result<usize> {
        if !self.writable || bytes.is_empty() || self.shut {
            return Ok(0);
        }
        loop {
            match sys::send(self.stream.as_raw_fd(), bytes, more) {
                Ok(n) => {
                    self.wrote = true;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn shutdown_write(&mut self) {
        if !self.shut {
            self.shut = true;
            // A peer that is already gone makes this fail; there is nothing left to tell it.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }
}

/// The upstream connection of the current exchange or tunnel.
#[derive(Debug)]
struct Upstream {
    /// The socket and its readiness.
    peer: Peer,
    /// Index in the pool, for marking it down and for logs.
    idx: usize,
    /// The socket's id in the worker's `ConnPool` (its token).
    id: usize,
    /// It came from the idle pool: if it turns out dead, one fresh connect is tried.
    reused: bool,
    /// Requests sent on this connection, this one included.
    requests: u32,
    /// The nonblocking connect has completed.
    connected: bool,
    /// When the connect started, for `--connect-timeout`.
    connect_started: Instant,
    /// A write failed: the upstream stopped reading. Its response may still come.
    write_failed: bool,
}

/// How much of the request body is left to forward.
#[derive(Debug)]
enum RequestBody {
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// A chunked body, re-chunked cleanly towards the upstream.
    Chunked(Decoder),
    /// All of it has been queued for the upstream.
    Done,
}

/// Where the response stands.
#[derive(Debug)]
enum ResponseBody {
    /// Waiting for the (final) response head.
    Head,
    /// This many bytes of a Content-Length body left.
    Length(u64),
    /// A chunked body: re-chunked for HTTP/1.1 clients, de-chunked for HTTP/1.0 ones.
    Chunked(Decoder, chunked::Output),
    /// Everything until the upstream closes.
    UntilClose,
    /// The response has been queued for the client in full.
    Done,
}

/// One request/response exchange with an upstream.
#[derive(Debug)]
pub struct Exchange {
    /// What we kept of the request head.
    req: RequestInfo,
    /// Request body progress.
    req_body: RequestBody,
    /// Response progress.
    resp: ResponseBody,
    /// While `Some(written)`, the upstream output buffer still holds the whole request from its
    /// first byte, `written` of which were sent: the request can be replayed on another upstream
    /// if this one fails before answering.
    replay: Option<usize>,
    /// A final response head has been queued for the client: from here on a failure can only
    /// close the connection.
    final_started: bool,
    /// The client connection closes after this exchange (decided with the response head).
    close_after: bool,
    /// A `100 Continue` reached the client: it will send the body.
    continue_sent: bool,
    /// How long the upstream connection may wait in the pool after this exchange; zero when
    /// it must be closed (the upstream closes, a close-delimited body, an upgrade).
    upstream_keep: Duration,
    /// The one fresh-connection retry after a dead pooled connection has been used.
    fresh_retry_used: bool,
}

/// What a session is doing.
#[derive(Debug)]
enum State {
    /// Waiting for a request head; `started` is when its first byte came (None: idle).
    Head { started: Option<Instant> },
    /// A request is being proxied.
    Exchange(Box<Exchange>),
    /// After a 101: bytes flow both ways untouched until both sides have closed.
    Tunnel,
    /// Flushing the last bytes to the client, then lingering until it closes (or `LINGER`).
    /// `clean`: the request was read to its end, so once the output is out and nothing more
    /// came, the connection closes at once: lingering only protects a response from the reset
    /// that unread client bytes would cause, and costs a shutdown, a read and a wakeup.
    Closing {
        linger_since: Option<Instant>,
        clean: bool,
    },
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
    /// The client socket is in the worker's epoll set (see `CLIENT_WATCH_AFTER`).
    client_registered: bool,
    /// The client's address as X-Forwarded-For writes it (IPv4-mapped IPv6 as IPv4).
    client_ip: ClientAddr,
    /// Slab key: the source of both tokens.
    key: usize,
    /// The upstream connection, during an exchange or a tunnel.
    upstream: Option<Upstream>,
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
    /// Upstreams tried for the current request.
    tried: Tried,
    /// Requests completed on this connection.
    served: u64,
    /// When the connection was accepted, or last went idle between requests.
    idle_since: Instant,
    /// Last time a byte moved in either direction: the base of read/write timeouts.
    last_progress: Instant,
    /// Client → upstream bytes going by splice(2): a long span of the request body, or the
    /// tunnel's bytes. While it has bytes to take, the client socket is read by it alone.
    up_span: Option<Span>,
    /// Upstream → client bytes going by splice(2): a long span of the response body, or the
    /// tunnel's bytes. While it has bytes to take, the upstream socket is read by it alone.
    down_span: Option<Span>,
}

impl Session {
    /// A session for a freshly accepted client, not registered yet: the worker drives it at
    /// once, and it joins the epoll set only when it has to wait for the client.
    pub fn new(
        stream: TcpStream,
        client_ip: IpAddr,
        key: usize,
        cfg: &Config,
        now: Instant,
    ) -> Self {
        let size = buffer::size_for(cfg.limits.max_head);
        let mut client = Peer::new(stream);
        // Not registered, so no event will say so: assume the request is there and the send
        // buffer empty. A read or write that would block clears the guess, and registering
        // then reports the socket's real readiness (epoll checks it when a socket is added).
        client.readable = true;
        client.writable = true;
        Session {
            client,
            client_registered: false,
            client_ip: ClientAddr::new(client_ip),
            key,
            upstream: None,
            cin: Buffer::new(size),
            cout: Buffer::new(size),
            uin: Buffer::new(size),
            uout: Buffer::new(size),
            state: State::Head { started: None },
            tried: Tried::default(),
            served: 0,
            idle_since: now,
            last_progress: now,
            up_span: None,
            down_span: None,
        }
    }

    /// Readiness reported for the client socket.
    pub fn on_client_event(&mut self, ev: &mio::event::Event) {
        self.client.on_event(ev);
    }

    /// Readiness reported for upstream socket `id` (ignored if it belonged to an older one).
    pub fn on_upstream_event(&mut self, id: usize, ev: &mio::event::Event) {
        if let Some(up) = &mut self.upstream {
            if up.id == id {
                up.peer.on_event(ev);
            }
        }
    }

    /// The connection is between requests with nothing queued: safe to close at shutdown.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { started: None })
            && self.cin.is_empty()
            && self.cout.is_empty()
    }

    /// Close everything: deregister the sockets (dropping them closes them) and give the
    /// buffers back.
    pub fn close(
        &mut self,
        registry: &Registry,
        bufs: &mut BufPool,
        conns: &mut ConnPool,
        pipes: &mut PipePool,
    ) {
        self.end_spans(pipes);
        self.drop_upstream(registry, conns);
        // No deregister: the socket is closed when the session is dropped right after, and a
        // closed descriptor leaves the epoll set by itself (one syscall less per connection).
        self.cin.clear();
        self.cout.clear();
        self.detach_buffers(bufs);
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
        let holds = |s: &Option<Span>| s.as_ref().is_some_and(|s| s.held() > 0);
        holds(&self.up_span) || holds(&self.down_span)
    }

    /// Storage for the buffers this state needs: only the client input while waiting for a
    /// head (a slow or idle client holds one buffer at most), all four during an exchange.
    #[inline]
    fn attach_buffers(&mut self, bufs: &mut BufPool) {
        self.cin.attach(bufs);
        if !matches!(self.state, State::Head { .. }) {
            self.attach_exchange_buffers(bufs);
        }
    }

    #[inline]
    fn attach_exchange_buffers(&mut self, bufs: &mut BufPool) {
        self.cout.attach(bufs);
        self.uin.attach(bufs);
        self.uout.attach(bufs);
    }

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
        }
        self.uin.clear();
        self.uout.clear();
    }

    /// When the session wants to be woken if nothing happens before.
    pub fn deadline(&self, cfg: &Config) -> Instant {
        let timeout = self.timeout_deadline(cfg);
        match self.client_watch_deadline() {
            Some(t) => t.min(timeout),
            None => timeout,
        }
    }

    /// When a first exchange still waiting on its upstream registers the client socket
    /// (`CLIENT_WATCH_AFTER`); None once registered.
    fn client_watch_deadline(&self) -> Option<Instant> {
        // Unregistered means no wait for the client yet: `idle_since` is still the accept.
        (!self.client_registered).then(|| self.idle_since + CLIENT_WATCH_AFTER)
    }

    /// When the current wait times out.
    fn timeout_deadline(&self, cfg: &Config) -> Instant {
        let io_deadline = |pending_output: bool| {
            let t = if pending_output {
                cfg.write_timeout
            } else {
                cfg.read_timeout
            };
            self.last_progress + t
        };
        match &self.state {
            State::Head { started } => {
                if !self.cout.is_empty() {
                    return io_deadline(true);
                }
                match started {
                    // The first head's deadline counts from the accept (slow first bytes too).
                    Some(t) if self.served > 0 => *t + cfg.client_header_timeout,
                    Some(_) => self.idle_since + cfg.client_header_timeout,
                    None if self.served == 0 => self.idle_since + cfg.client_header_timeout,
                    None => self.idle_since + cfg.keepalive_timeout,
                }
            }
            State::Exchange(ex) => match &self.upstream {
                Some(up) if !up.connected => up.connect_started + cfg.connect_timeout,
                _ => {
                    // While the request is kept for a replay, the upstream buffer also holds
                    // bytes already sent: only the unsent rest is output waiting.
                    let sent = ex.replay.unwrap_or(0);
                    let in_pipe = self.spans_hold_bytes();
                    io_deadline(!self.cout.is_empty() || self.uout.len() > sent || in_pipe)
                }
            },
            State::Tunnel => io_deadline(
                !self.cout.is_empty() || !self.uout.is_empty() || self.spans_hold_bytes(),
            ),
            State::Closing { linger_since, .. } => match linger_since {
                Some(t) => *t + LINGER,
                None => io_deadline(true),
            },
        }
    }

    /// The deadline passed (the worker checked `deadline()`): act on it.
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        if self.client_watch_deadline().is_some_and(|t| ctx.now >= t) {
            if !self.register_client(ctx.registry) {
                return Drive::Closed;
            }
            if ctx.now < self.timeout_deadline(ctx.cfg) {
                return Drive::Idle;
            }
        }
        self.attach_buffers(ctx.bufs);
        match &mut self.state {
            State::Head { started } => {
                if !self.cout.is_empty() {
                    debug!("{}: client stopped reading, closing", self.client_ip);
                    return Drive::Closed;
                }
                if started.is_some() {
                    debug!("{}: request head not complete in time: 408", self.client_ip);
                    self.cin.clear();
                    local::write_response(408, true, None, ctx.scratch_take());
                    // Nothing is queued in this state: it fits (or the close says it all).
                    let _ = self.queue_scratch_for_client(ctx);
                    self.state = State::Closing {
                        linger_since: None,
                        clean: false,
                    };
                    return self.drive(ctx);
                }
                Drive::Closed
            }
            State::Exchange(ex) => {
                let connecting = self.upstream.as_ref().is_some_and(|u| !u.connected);
                if connecting {
                    if let Some(mut up) = self.upstream.take() {
                        let _ = ctx.registry.deregister(&mut up.peer.stream);
                        ctx.conns.closed(up.id);
                        ctx.pool.record_connect_failure(up.idx);
                        ctx.pool.mark_down(up.idx, "connect timed out");
                    }
                    if let Some(w) = &mut ex.replay {
                        *w = 0;
                    }
                    let r = self.connect_next(ctx);
                    return self.after_step(r, ctx);
                }
                if ex.final_started || !self.cout.is_empty() {
                    // A stalled response, or a client that stopped reading what we queued for
                    // it (interim responses): no answer can be delivered, and a 504 would
                    // blame the upstream for the client's silence.
                    debug!("{}: exchange stalled, closing", self.client_ip);
                    return Drive::Closed;
                }
                debug!("{}: upstream timed out: 504", self.client_ip);
                let r = Err(Fail::Respond(504));
                self.after_step(r, ctx)
            }
            State::Tunnel | State::Closing { .. } => Drive::Closed,
        }
    }

    /// Move bytes until nothing more can move, or the budget runs out.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        self.attach_buffers(ctx.bufs);
        let mut d = self.drive_rounds(ctx);
        if d != Drive::Closed
            && !self.client_registered
            && self.waits_for_client()
            && !self.register_client(ctx.registry)
        {
            d = Drive::Closed;
        }
        if d != Drive::Closed {
            // Every empty buffer goes back, not only an idle connection's: a session waiting on
            // its upstream or its client holds storage only for bytes actually queued, so the
            // worker's free list covers thousands of in-flight exchanges without allocating.
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
                    || !self.cout.is_empty()
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
        for _ in 0..DRIVE_BUDGET {
            let r = self.round(ctx);
            match r {
                Ok(true) if self.settled(ctx.shutting_down) => return Drive::Idle,
                Ok(true) => continue,
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
            .as_ref()
            .is_none_or(|u| !u.peer.readable && (u.connected || !u.peer.writable));
        !shutting_down
            && !self.client.readable
            && upstream_quiet
            && self.cin.is_empty()
            && self.cout.is_empty()
            && self.uin.is_empty()
            && self.uout.len() <= sent
            && self.up_span.is_none()
            && self.down_span.is_none()
    }

    /// Turn a step's error into the next state.
    fn after_step(&mut self, r: Result<(), Fail>, ctx: &mut Ctx<'_>) -> Drive {
        match r {
            Ok(()) => self.drive(ctx),
            Err(e) => match self.fail(e, ctx) {
                Drive::Idle => self.drive(ctx),
                d => d,
            },
        }
    }

    /// Handle a failure: answer if we still can, else close. `Idle` means "keep driving".
    fn fail(&mut self, e: Fail, ctx: &mut Ctx<'_>) -> Drive {
        if let State::Closing { .. } = self.state {
            return Drive::Closed;
        }
        let final_started = match &self.state {
            State::Exchange(ex) => ex.final_started,
            State::Tunnel => true,
            _ => false,
        };
        self.drop_upstream(ctx.registry, ctx.conns);
        self.end_spans(ctx.pipes);
        match e {
            Fail::Respond(status) if !final_started => {
                // Keep the connection when the request was read in full and nothing is off
                // with the client side; an error about the head itself always closes.
                let keep = match &self.state {
                    State::Exchange(ex) => {
                        matches!(ex.req_body, RequestBody::Done)
                            && ex.req.keep_alive
                            && !ctx.shutting_down
                            && status >= 500
                    }
                    _ => false,
                };
                let retry_after = (status == 503).then(|| ctx.cfg.health_interval.as_secs().max(1));
                local::write_response(status, !keep, retry_after, ctx.scratch_take());
                // An answer that cannot be queued whole is not sent at all: the connection
                // closes after what is queued before it.
                let keep = self.queue_scratch_for_client(ctx) && keep;
                if keep {
                    self.finish_exchange(ctx, false);
                } else {
                    self.state = State::Closing {
                        linger_since: None,
                        clean: false,
                    };
                }
                Drive::Idle
            }
            _ => {
                // A response is under way: close without completing its framing, so the
                // client sees a truncated message rather than a wrong one.
                if !final_started {
                    return Drive::Closed;
                }
                self.state = State::Closing {
                    linger_since: None,
                    clean: false,
                };
                Drive::Idle
            }
        }
    }

    /// Queue an answer of our own for the client, whole or not at all (false, logged). The
    /// forwarding keeps `LOCAL_ANSWER_ROOM` free for it, so it always fits in practice.
    fn queue_scratch_for_client(&mut self, ctx: &mut Ctx<'_>) -> bool {
        self.cout.attach(ctx.bufs);
        let queued = self.cout.extend_whole(ctx.scratch);
        if !queued {
            warn!(
                "{}: no room for a {}-byte answer; closing without it",
                self.client_ip,
                ctx.scratch.len()
            );
        }
        queued
    }

    /// One round: read both sides, process, write both sides. `Ok(true)` if anything moved.
    fn round(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let mut progress = false;

        // Client → cin. A closing session reads only to discard (lingering close).
        if let State::Closing {
            linger_since,
            clean,
        } = self.state
        {
            return self.round_closing(ctx.now, linger_since.is_some(), clean);
        }
        // (Not while a span takes the client's bytes straight from the socket.)
        if self.up_span.as_ref().is_none_or(|s| s.to_read() == 0) {
            let n = self.client.read_into(&mut self.cin)?;
            if n > 0 {
                progress = true;
                self.last_progress = ctx.now;
            }
        }

        // upstream → uin (not while a span takes the upstream's bytes straight from the socket).
        let spliced = self.down_span.as_ref().is_some_and(|s| s.to_read() > 0);
        if let Some(up) = &mut self.upstream {
            if up.connected && !spliced {
                match up.peer.read_into(&mut self.uin) {
                    Ok(n) if n > 0 => {
                        progress = true;
                        self.last_progress = ctx.now;
                        if let State::Exchange(ex) = &mut self.state {
                            // The upstream has started answering: this request is no longer
                            // replayable, whatever happens next.
                            if let Some(w) = ex.replay.take() {
                                self.uout.consume(w.min(self.uout.len()));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!("upstream read error: {e}");
                        up.peer.eof = true;
                        up.peer.readable = false;
                    }
                }
            }
        }

        // One decision step over both directions, after both reads and before both writes: a
        // request head goes upstream, and a response to the client, in the round they arrive.
        progress |= self.process(ctx)?;

        // uout → upstream.
        progress |= self.write_upstream(ctx.now)?;

        // cout → client.
        if !self.cout.is_empty() {
            self.nagle_off();
        }
        // The last bytes of a connection that closes cleanly right after them go out with the
        // FIN, in one segment: the client's kernel acknowledges both at once.
        let last = matches!(
            self.state,
            State::Closing {
                linger_since: None,
                clean: true
            }
        );
        let n = self.client.write_from(self.cout.data(), last)?;
        if n > 0 {
            self.cout.consume(n);
            progress = true;
            self.last_progress = ctx.now;
        }
        if let State::Tunnel = self.state {
            progress |= self.tunnel_half_close();
            if self.client.shut && self.upstream.as_ref().is_none_or(|u| u.peer.shut) {
                return Err(Fail::Abort);
            }
        }
        if let State::Closing { .. } = self.state {
            progress = true;
        }
        Ok(progress)
    }

    /// Turn Nagle's algorithm off on the client socket before a write it could hold: any
    /// write after the first (the rest of a response a write left behind, the next response),
    /// a pipe carrying the body, a tunnel. A small write behind an unacknowledged one would
    /// wait for the client's delayed ACK, up to 40 ms. A connection that carries one response
    /// in one write, which most `Connection: close` traffic is, never pays the setsockopt.
    fn nagle_off(&mut self) {
        if !self.client.nodelay
            && (self.client.wrote
                || self.down_span.is_some()
                || matches!(self.state, State::Tunnel))
        {
            self.client.nodelay = true;
            let _ = self.client.stream.set_nodelay(true);
        }
    }

    fn round_closing(&mut self, now: Instant, lingering: bool, clean: bool) -> Result<bool, Fail> {
        let mut progress = false;
        if !self.cout.is_empty() {
            let n = self.client.write_from(self.cout.data(), false)?;
            if n > 0 {
                self.cout.consume(n);
                self.last_progress = now;
                progress = true;
            }
            if !self.cout.is_empty() {
                return Ok(progress);
            }
        }
        if !lingering {
            if clean && self.cin.is_empty() && !self.client.readable {
                return Err(Fail::Abort);
            }
            self.client.shutdown_write();
            self.cin.clear();
            self.state = State::Closing {
                linger_since: Some(now),
                clean,
            };
            progress = true;
        }
        // Read and discard until the client closes too (one read per round: the drive budget
        // bounds a client that keeps sending).
        self.cin.clear();
        match self.client.read_into(&mut self.cin) {
            Ok(0) if self.client.eof => Err(Fail::Abort),
            Ok(0) => Ok(progress),
            Ok(_) => Ok(true),
            Err(_) => Err(Fail::Abort),
        }
    }

    /// Write queued bytes to the upstream (from the replay cursor while the request is replayable).
    fn write_upstream(&mut self, now: Instant) -> Result<bool, Fail> {
        let Some(up) = &mut self.upstream else {
            return Ok(false);
        };
        if !up.connected || up.write_failed {
            return Ok(false);
        }
        let replay = match &mut self.state {
            State::Exchange(ex) => ex.replay.as_mut(),
            _ => None,
        };
        let from = replay.as_ref().map_or(0, |w| **w);
        let pending = &self.uout.data()[from.min(self.uout.len())..];
        match up.peer.write_from(pending, false) {
            Ok(0) => Ok(false),
            Ok(n) => {
                match replay {
                    Some(w) => *w += n,
                    None => self.uout.consume(n),
                }
                self.last_progress = now;
                Ok(true)
            }
            Err(e) => {
                // The upstream stopped reading; it may still have answered (an early 413, say),
                // so the read side decides what happens.
                debug!("upstream write error: {e}");
                up.write_failed = true;
                Ok(true)
            }
        }
    }

    /// State-specific work on the buffered bytes. `Ok(true)` if anything changed.
    fn process(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        match &mut self.state {
            State::Head { .. } => self.process_head(ctx),
            State::Exchange(_) => {
                let mut progress = self.poll_connect(ctx)?;
                progress |= self.pump_request_body(ctx)?;
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

    fn process_head(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        if self.cin.is_empty() {
            // Between requests: a client that closed, or a shutdown, ends the connection once
            // the last response is out.
            if (self.client.eof || ctx.shutting_down) && self.cout.is_empty() {
                return Err(Fail::Abort);
            }
            return Ok(false);
        }
        if let State::Head {
            started: started @ None,
        } = &mut self.state
        {
            *started = Some(ctx.now);
        }
        let limits = ctx.cfg.limits;
        let data = self.cin.data();
        parse_with_slots!(
            let parsed = |slots| request::parse(data, &limits, slots),
            RequestError::Slots
        );
        let (info, head_len) = match parsed {
            Ok(None) => {
                // The client gave up mid-head; there is nobody to answer, but the previous
                // response must still go out whole before the close.
                if self.client.eof && self.cout.is_empty() {
                    return Err(Fail::Abort);
                }
                return Ok(false);
            }
            Err(e) => {
                debug!(
                    "{}: bad request head ({e:?}): {}",
                    self.client_ip,
                    e.status()
                );
                self.cin.clear();
                return Err(Fail::Respond(e.status()));
            }
            Ok(Some(req)) => {
                ctx.scratch.clear();
                let rctx = RequestContext {
                    client_ip: self.client_ip,
                    forwarded_for: ctx.cfg.forwarded_for,
                    underscores_in_headers: ctx.cfg.underscores_in_headers,
                };
                // The whole rewritten head must fit the upstream buffer, or nothing goes.
                if let Err(e) =
                    rewrite::request_head(&req, &rctx, ctx.scratch, self.uout.capacity())
                {
                    debug!(
                        "{}: forwarded head would be {} bytes, over {}: 431",
                        self.client_ip, e.len, e.max
                    );
                    self.cin.clear();
                    return Err(Fail::Respond(431));
                }
                (req.info, req.head_len)
            }
        };
        self.cin.consume(head_len);
        self.attach_exchange_buffers(ctx.bufs);
        self.uout.clear();
        if !self.uout.extend_whole(ctx.scratch) {
            // Cannot happen (the bound above is the empty buffer's capacity), but a head is
            // never cut: a cut one would leave its body to be read as the next request.
            self.cin.clear();
            return Err(Fail::Respond(431));
        }
        let req_body = match info.framing {
            Framing::Length(0) | Framing::None | Framing::UntilClose => RequestBody::Done,
            Framing::Length(n) => RequestBody::Length(n),
            Framing::Chunked => RequestBody::Chunked(Decoder::new(&limits)),
        };
        self.state = State::Exchange(ctx.exchanges.make(Exchange {
            req: info,
            req_body,
            resp: ResponseBody::Head,
            replay: Some(0),
            final_started: false,
            close_after: false,
            continue_sent: false,
            upstream_keep: Duration::ZERO,
            fresh_retry_used: false,
        }));
        self.tried.clear();
        self.connect_next(ctx)?;
        Ok(true)
    }

    /// Connect to the next alive upstream not tried yet for this request.
    fn connect_next(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Fail> {
        self.drop_upstream_keep_request(ctx.registry, ctx.conns);
        loop {
            let Some(idx) = ctx.pool.pick(&self.tried) else {
                let status = if ctx.pool.alive_count() == 0 {
                    503
                } else {
                    502
                };
                debug!("{}: no upstream left to try: {status}", self.client_ip);
                return Err(Fail::Respond(status));
            };
            self.tried.insert(idx);
            match self.connect_to(idx, true, ctx) {
                Ok(()) => return Ok(()),
                Err(e) => self.connect_failed(idx, &e, ctx)?,
            }
        }
    }

    /// Judge a failed connect to `idx`: refused/unreachable/timed out takes the upstream down
    /// (the caller tries the next one); the proxy's own shortage is a 503 right away.
    fn connect_failed(&self, idx: usize, e: &io::Error, ctx: &mut Ctx<'_>) -> Result<(), Fail> {
        if !is_local_shortage(e) {
            ctx.pool.record_connect_failure(idx);
        }
        if marks_upstream_down(e) {
            ctx.pool.mark_down(idx, &connect_reason(e));
            Ok(())
        } else if is_local_shortage(e) {
            // EMFILE, EADDRNOTAVAIL and the like are the proxy's own trouble: the upstream is
            // not to blame and stays in the rotation.
            warn!(
                "cannot open a connection to {}: {e}",
                ctx.pool.get(idx).name
            );
            Err(Fail::Respond(503))
        } else {
            warn!("connect to {} failed: {e}", ctx.pool.get(idx).name);
            Ok(())
        }
    }

    /// Take an idle pooled connection to upstream `idx` (when `reuse`), else start a
    /// nonblocking connect to it.
    fn connect_to(&mut self, idx: usize, reuse: bool, ctx: &mut Ctx<'_>) -> io::Result<()> {
        if reuse {
            if let Some(r) = ctx.conns.take(idx, self.key, ctx.now, ctx.registry) {
                let mut peer = Peer::new(r.stream);
                // Edge-triggered: its writable edge was reported long ago. A pending EOF on
                // it would have evicted it from the pool, or shows up as a failed read.
                peer.writable = true;
                ctx.pool.record_request(idx);
                self.upstream = Some(Upstream {
                    peer,
                    idx,
                    id: r.id,
                    reused: true,
                    requests: r.requests + 1,
                    connected: true,
                    connect_started: ctx.now,
                    write_failed: false,
                });
                return Ok(());
            }
        }
        let mut stream = TcpStream::connect(ctx.pool.get(idx).addr)?;
        let id = ctx.conns.open(self.key);
        if let Err(e) = ctx.registry.register(
            &mut stream,
            upstream_token(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            ctx.conns.closed(id);
            return Err(e);
        }
        let _ = stream.set_nodelay(true);
        ctx.pool.record_request(idx);
        self.upstream = Some(Upstream {
            peer: Peer::new(stream),
            idx,
            id,
            reused: false,
            requests: 1,
            connected: false,
            connect_started: ctx.now,
            write_failed: false,
        });
        Ok(())
    }

    /// Drop the upstream socket but keep the queued request (for a retry).
    fn drop_upstream_keep_request(&mut self, registry: &Registry, conns: &mut ConnPool) {
        if let Some(mut up) = self.upstream.take() {
            let _ = registry.deregister(&mut up.peer.stream);
            conns.closed(up.id);
        }
        self.uin.clear();
        if let State::Exchange(ex) = &mut self.state {
            if let Some(w) = &mut ex.replay {
                *w = 0;
            }
        }
    }

    /// Check a pending nonblocking connect (mio's `TcpStream::connect` recipe: on writable,
    /// `take_error`, then `peer_addr`).
    fn poll_connect(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let Some(up) = &mut self.upstream else {
            return Ok(false);
        };
        if up.connected || !up.peer.writable {
            return Ok(false);
        }
        let err = match up.peer.stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match up.peer.stream.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    // Spurious wakeup: still connecting.
                    up.peer.writable = false;
                    return Ok(false);
                }
                Err(e) => Some(e),
            },
        };
        match err {
            None => {
                up.connected = true;
                self.last_progress = ctx.now;
                Ok(true)
            }
            Some(e) => {
                let idx = up.idx;
                self.connect_failed(idx, &e, ctx)?;
                self.connect_next(ctx)?;
                Ok(true)
            }
        }
    }

    /// Move request body bytes from the client buffer to the upstream buffer.
    fn pump_request_body(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(false);
        };
        let write_failed = self.upstream.as_ref().is_some_and(|u| u.write_failed);
        let mut progress = false;
        // Room left for body bytes. When the request outgrows the buffer it stops being
        // replayable: the bytes already sent are let go.
        if self.uout.room() < chunked::MIN_OUT_ROOM {
            if let Some(w) = ex.replay.take() {
                self.uout.consume(w.min(self.uout.len()));
            }
        }
        if write_failed {
            // The upstream stopped reading: what it will not read is dropped, not queued.
            self.uout.clear();
            ex.replay = None;
        }
        if self.up_span.is_some() {
            // A span of the body is under way: `pump_request_span` moves it.
            return Ok(progress);
        }
        match &mut ex.req_body {
            RequestBody::Done => {}
            RequestBody::Length(rem) => {
                let n = (*rem)
                    .min(self.cin.len() as u64)
                    .min(self.uout.room() as u64) as usize;
                if n > 0 {
                    if !write_failed {
                        self.uout.extend(&self.cin.data()[..n]);
                    }
                    self.cin.consume(n);
                    *rem -= n as u64;
                    progress = true;
                }
                if *rem == 0 {
                    ex.req_body = RequestBody::Done;
                } else if self.client.eof && self.cin.is_empty() {
                    debug!("{}: client closed mid-upload", self.client_ip);
                    return Err(Fail::Abort);
                }
            }
            RequestBody::Chunked(dec) => {
                ctx.scratch.clear();
                let room = self.uout.room();
                let consumed = dec
                    .transcode(self.cin.data(), ctx.scratch, room, chunked::Output::Rechunk)
                    .map_err(|e| {
                        debug!("{}: bad chunked request body: {e:?}", self.client_ip);
                        Fail::Respond(400)
                    })?;
                if consumed > 0 {
                    if !write_failed {
                        self.uout.extend(ctx.scratch);
                    }
                    self.cin.consume(consumed);
                    progress = true;
                }
                if dec.is_done() {
                    ex.req_body = RequestBody::Done;
                } else if self.client.eof && self.cin.is_empty() {
                    debug!("{}: client closed mid-upload", self.client_ip);
                    return Err(Fail::Abort);
                }
            }
        }
        // What is left of a Content-Length body, or of the current chunk's data, goes by
        // splice(2) once the buffered bytes are through; never while the request is kept for
        // a replay, which needs every byte in the buffer.
        let connected = self.upstream.as_ref().is_some_and(|u| u.connected);
        if self.cin.is_empty() && ex.replay.is_none() && connected && !write_failed {
            let left = match &ex.req_body {
                RequestBody::Length(rem) => *rem,
                RequestBody::Chunked(dec) => dec.data_remaining(),
                RequestBody::Done => 0,
            };
            self.up_span = lend_span(ctx, left, ctx.cfg.splice_min);
            progress |= self.up_span.is_some();
        }
        Ok(progress)
    }

    /// Move a span of the request body client socket → pipe → upstream socket, counting its
    /// bytes off the body's framing as they leave the client.
    fn pump_request_span(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let (Some(span), State::Exchange(ex)) = (&mut self.up_span, &mut self.state) else {
            return Ok(false);
        };
        let Some(up) = &mut self.upstream else {
            return Err(Fail::Abort);
        };
        if up.write_failed {
            // The upstream stopped reading: the copy path takes the rest of the body and drops
            // it; what the pipe holds goes with the pipe.
            if let Some(span) = self.up_span.take() {
                span.finish(ctx.pipes);
            }
            return Ok(true);
        }
        // The span's bytes come after everything queued before it.
        let ready = self.uout.is_empty();
        let moved = match move_span(span, &mut self.client, &mut up.peer, ready) {
            Ok(m) => m,
            Err(SpanError::Source(e)) => {
                debug!("{}: client read error mid-upload: {e}", self.client_ip);
                return Err(Fail::Abort);
            }
            Err(SpanError::Dest(e)) => {
                // As on the copy path: the upstream may still have answered (an early 413).
                debug!("upstream write error: {e}");
                up.write_failed = true;
                return Ok(true);
            }
        };
        let pulled = moved.pulled as u64;
        match &mut ex.req_body {
            RequestBody::Length(rem) => *rem = rem.saturating_sub(pulled),
            RequestBody::Chunked(dec) => dec.skip_data(pulled).map_err(|_| Fail::Abort)?,
            RequestBody::Done => {}
        }
        let mut progress = moved.progress;
        if span.is_done() {
            if let Some(span) = self.up_span.take() {
                span.finish(ctx.pipes);
            }
            progress = true;
        } else if self.client.eof && span.held() == 0 {
            // What the client sent has gone on; the upstream sees the body stop short.
            debug!("{}: client closed mid-upload", self.client_ip);
            return Err(Fail::Abort);
        }
        if progress {
            self.last_progress = ctx.now;
        }
        Ok(progress)
    }

    /// Parse the response head, then move body bytes from the upstream buffer to the client's.
    fn pump_response(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(false);
        };
        let Some(up) = &self.upstream else {
            return Ok(false);
        };
        let up_eof = up.peer.eof;
        let mut progress = false;
        loop {
            match &mut ex.resp {
                ResponseBody::Head => {
                    if self.uin.is_empty() {
                        if up_eof {
                            return self.upstream_failed_before_response(ctx).map(|_| true);
                        }
                        return Ok(progress);
                    }
                    let limits = ctx.cfg.limits;
                    let (data, is_head) = (self.uin.data(), ex.req.is_head);
                    parse_with_slots!(
                        let parsed = |slots| response::parse(data, is_head, &limits, slots),
                        ResponseError::Slots
                    );
                    let resp = match parsed {
                        Ok(Some(r)) => r,
                        Ok(None) if up_eof => {
                            warn!(
                                "upstream {} closed mid-head: 502",
                                ctx.pool.get(up.idx).name
                            );
                            return Err(Fail::Respond(502));
                        }
                        Ok(None) => return Ok(progress),
                        Err(e) => {
                            warn!(
                                "upstream {} sent a bad response head ({e:?}): 502",
                                ctx.pool.get(up.idx).name
                            );
                            return Err(Fail::Respond(502));
                        }
                    };
                    let head_len = resp.head_len;
                    ctx.scratch.clear();
                    if resp.code == 101 {
                        if !ex.req.upgrade_websocket {
                            warn!(
                                "upstream {} switched protocols unasked: 502",
                                ctx.pool.get(up.idx).name
                            );
                            return Err(Fail::Respond(502));
                        }
                        let rctx = ResponseContext {
                            framing: Framing::None,
                            close: false,
                            keep_alive_http10: false,
                            upgrade: true,
                            client_version: ex.req.version,
                        };
                        if !stage_response_head(&resp, &rctx, ctx, &self.cout, up.idx)? {
                            return Ok(progress);
                        }
                        self.cout.extend(ctx.scratch);
                        self.uin.consume(head_len);
                        ex.final_started = true;
                        ex.replay = None;
                        self.state = State::Tunnel;
                        return Ok(true);
                    }
                    if resp.code < 200 {
                        // Interim (100 Continue, 103 Early Hints): forward to HTTP/1.1 clients
                        // (RFC 9110 §15.2: not to HTTP/1.0 ones) and keep waiting.
                        if ex.req.version == Version::Http11 {
                            let rctx = ResponseContext {
                                framing: Framing::None,
                                close: false,
                                keep_alive_http10: false,
                                upgrade: false,
                                client_version: ex.req.version,
                            };
                            if !stage_response_head(&resp, &rctx, ctx, &self.cout, up.idx)? {
                                return Ok(progress);
                            }
                            self.cout.extend(ctx.scratch);
                            ex.continue_sent |= resp.code == 100;
                        }
                        self.uin.consume(head_len);
                        progress = true;
                        continue;
                    }
                    if !response::client_can_decode(&resp, ex.req.version) {
                        warn!(
                            "upstream {} sent a transfer coding an HTTP/1.0 client cannot receive: 502",
                            ctx.pool.get(up.idx).name
                        );
                        return Err(Fail::Respond(502));
                    }
                    let framing = response::client_framing(resp.framing, ex.req.version);
                    // A request body still on its way is forwarded to its end and the
                    // connection stays usable; but a client still waiting for a 100 Continue
                    // will never send its body (RFC 9110 §10.1.1): it must not be reused.
                    let body_withheld = ex.req.expect_continue
                        && !ex.continue_sent
                        && !matches!(ex.req_body, RequestBody::Done);
                    let close = !ex.req.keep_alive
                        || ctx.shutting_down
                        || framing == Framing::UntilClose
                        || body_withheld;
                    let rctx = ResponseContext {
                        framing,
                        close,
                        keep_alive_http10: !close && ex.req.version == Version::Http10,
                        upgrade: false,
                        client_version: ex.req.version,
                    };
                    if !stage_response_head(&resp, &rctx, ctx, &self.cout, up.idx)? {
                        return Ok(progress);
                    }
                    let upstream_framing = resp.framing;
                    ex.upstream_keep = if resp.upstream_closes
                        || upstream_framing == Framing::UntilClose
                        || ctx.conns.max_idle() == 0
                    {
                        Duration::ZERO
                    } else {
                        // Leave a second of margin under the upstream's own idle timeout.
                        let hint = resp
                            .keep_alive_timeout
                            .map(|s| Duration::from_secs(s.saturating_sub(1)));
                        hint.map_or(ctx.cfg.upstream_idle_timeout, |h| {
                            h.min(ctx.cfg.upstream_idle_timeout)
                        })
                    };
                    self.cout.extend(ctx.scratch);
                    self.uin.consume(head_len);
                    ex.final_started = true;
                    ex.close_after = close;
                    ex.resp = match upstream_framing {
                        Framing::None | Framing::Length(0) => ResponseBody::Done,
                        Framing::Length(n) => ResponseBody::Length(n),
                        Framing::Chunked => {
                            let mode = if framing == Framing::Chunked {
                                chunked::Output::Rechunk
                            } else {
                                chunked::Output::Dechunk
                            };
                            ResponseBody::Chunked(Decoder::new(&limits), mode)
                        }
                        Framing::UntilClose => ResponseBody::UntilClose,
                    };
                    progress = true;
                }
                ResponseBody::Length(_) | ResponseBody::Chunked(..) if self.down_span.is_some() => {
                    // A span of the body is under way: `pump_response_span` moves it.
                    return Ok(progress);
                }
                ResponseBody::Length(rem) => {
                    let n = (*rem)
                        .min(self.uin.len() as u64)
                        .min(forward_room(&self.cout) as u64) as usize;
                    if n > 0 {
                        self.cout.extend(&self.uin.data()[..n]);
                        self.uin.consume(n);
                        *rem -= n as u64;
                        progress = true;
                    }
                    if *rem == 0 {
                        ex.resp = ResponseBody::Done;
                    } else if up_eof && self.uin.is_empty() {
                        warn!("upstream {} closed mid-body", ctx.pool.get(up.idx).name);
                        return Err(Fail::Abort);
                    } else if self.uin.is_empty() {
                        // What came with the head is through: the rest may go by splice.
                        self.down_span = lend_span(ctx, *rem, ctx.cfg.splice_min_response);
                        progress |= self.down_span.is_some();
                    }
                    return Ok(progress);
                }
                ResponseBody::Chunked(dec, mode) => {
                    ctx.scratch.clear();
                    let consumed = dec
                        .transcode(
                            self.uin.data(),
                            ctx.scratch,
                            forward_room(&self.cout),
                            *mode,
                        )
                        .map_err(|e| {
                            warn!(
                                "upstream {} sent a bad chunked body: {e:?}",
                                ctx.pool.get(up.idx).name
                            );
                            Fail::Abort
                        })?;
                    if consumed > 0 {
                        self.cout.extend(ctx.scratch);
                        self.uin.consume(consumed);
                        progress = true;
                    }
                    if dec.is_done() {
                        ex.resp = ResponseBody::Done;
                    } else if up_eof && self.uin.is_empty() {
                        warn!("upstream {} closed mid-body", ctx.pool.get(up.idx).name);
                        return Err(Fail::Abort);
                    } else if self.uin.is_empty() {
                        // Inside a long chunk, its size line queued: its data may go by splice.
                        self.down_span =
                            lend_span(ctx, dec.data_remaining(), ctx.cfg.splice_min_response);
                        progress |= self.down_span.is_some();
                    }
                    return Ok(progress);
                }
                ResponseBody::UntilClose => {
                    let len = self.uin.len().min(forward_room(&self.cout));
                    let n = self.cout.extend(&self.uin.data()[..len]);
                    if n > 0 {
                        self.uin.consume(n);
                        progress = true;
                    }
                    if up_eof && self.uin.is_empty() {
                        ex.resp = ResponseBody::Done;
                        progress = true;
                    }
                    return Ok(progress);
                }
                ResponseBody::Done => return Ok(progress),
            }
        }
    }

    /// Move a span of the response body upstream socket → pipe → client socket, counting its
    /// bytes off the body's framing as they leave the upstream.
    fn pump_response_span(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        if self.down_span.is_none() {
            return Ok(false);
        }
        self.nagle_off();
        let (Some(span), State::Exchange(ex)) = (&mut self.down_span, &mut self.state) else {
            return Ok(false);
        };
        let Some(up) = &mut self.upstream else {
            return Err(Fail::Abort);
        };
        // The span's bytes come after everything queued before it (the head, the size line).
        let ready = self.cout.is_empty();
        let moved = match move_span(span, &mut up.peer, &mut self.client, ready) {
            Ok(m) => m,
            Err(SpanError::Source(e)) => {
                warn!(
                    "upstream {} read error mid-body: {e}",
                    ctx.pool.get(up.idx).name
                );
                return Err(Fail::Abort);
            }
            Err(SpanError::Dest(e)) => {
                debug!("{}: write error: {e}", self.client_ip);
                return Err(Fail::Abort);
            }
        };
        let pulled = moved.pulled as u64;
        match &mut ex.resp {
            ResponseBody::Length(rem) => *rem = rem.saturating_sub(pulled),
            ResponseBody::Chunked(dec, _) => dec.skip_data(pulled).map_err(|_| Fail::Abort)?,
            _ => {}
        }
        let mut progress = moved.progress;
        if span.is_done() {
            if let Some(span) = self.down_span.take() {
                span.finish(ctx.pipes);
            }
            progress = true;
        } else if up.peer.eof && span.held() == 0 {
            // Every byte the upstream sent has reached the client, which now sees a close in
            // the middle of the body.
            warn!("upstream {} closed mid-body", ctx.pool.get(up.idx).name);
            return Err(Fail::Abort);
        }
        if progress {
            self.last_progress = ctx.now;
        }
        Ok(progress)
    }

    /// The upstream closed (or reset) before sending any response byte.
    fn upstream_failed_before_response(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Err(Fail::Abort);
        };
        let Some(up) = &self.upstream else {
            return Err(Fail::Abort);
        };
        let (idx, reused) = (up.idx, up.reused);
        let name = &ctx.pool.get(idx).name;
        // Nothing reached the client and the whole request is still here: an idempotent
        // request can be sent again (RFC 9110 §9.2.2).
        if !(ex.req.idempotent && ex.replay.is_some()) {
            warn!("upstream {name} closed before answering: 502");
            return Err(Fail::Respond(502));
        }
        if reused && !ex.fresh_retry_used {
            // A pooled connection the upstream had closed meanwhile: one fresh connection to
            // the same upstream, which is not to blame.
            debug!("pooled connection to {name} was closed; retrying on a fresh one");
            ex.fresh_retry_used = true;
            self.drop_upstream_keep_request(ctx.registry, ctx.conns);
            match self.connect_to(idx, false, ctx) {
                Ok(()) => return Ok(()),
                Err(e) => self.connect_failed(idx, &e, ctx)?,
            }
        } else {
            debug!("upstream {name} closed before answering; retrying the request elsewhere");
        }
        self.connect_next(ctx)
    }

    /// End the exchange when both directions are done.
    fn maybe_finish(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Exchange(ex) = &self.state else {
            return false;
        };
        if !matches!(ex.resp, ResponseBody::Done) {
            return false;
        }
        let body_done = matches!(ex.req_body, RequestBody::Done);
        if !body_done && !ex.close_after {
            // The response is out but the request body is still coming: take it to its end
            // (the upstream gets it, or it is dropped if the upstream stopped reading) so the
            // connection's framing stays known and it can serve the next request.
            return false;
        }
        self.finish_exchange(ctx, ex.close_after);
        true
    }

    fn finish_exchange(&mut self, ctx: &mut Ctx<'_>, close: bool) {
        self.release_upstream(ctx);
        self.served += 1;
        self.idle_since = ctx.now;
        let next = if close || ctx.shutting_down {
            let clean = matches!(&self.state, State::Exchange(ex) if matches!(ex.req_body, RequestBody::Done));
            State::Closing {
                linger_since: None,
                clean,
            }
        } else {
            State::Head { started: None }
        };
        if let State::Exchange(ex) = std::mem::replace(&mut self.state, next) {
            ctx.exchanges.recycle(ex);
        }
    }

    /// After a complete exchange: put the upstream connection in the pool when it is clean
    /// (the whole request sent, the whole response read, nothing extra, keep-alive on both
    /// sides), else close it.
    fn release_upstream(&mut self, ctx: &mut Ctx<'_>) {
        self.end_spans(ctx.pipes);
        let keep = match &self.state {
            State::Exchange(ex) if matches!(ex.req_body, RequestBody::Done) => ex.upstream_keep,
            _ => Duration::ZERO,
        };
        if let Some(mut up) = self.upstream.take() {
            let clean = !keep.is_zero()
                && up.connected
                && !up.write_failed
                && !up.peer.eof
                && !up.peer.hung_up
                && self.uin.is_empty()
                && self.uout.is_empty()
                && !(up.peer.readable && has_bytes_past_the_response(&up.peer.stream));
            if clean {
                let expires = ctx.now + keep;
                ctx.conns.put(
                    up.idx,
                    up.id,
                    up.peer.stream,
                    up.requests,
                    expires,
                    ctx.registry,
                );
            } else {
                let _ = ctx.registry.deregister(&mut up.peer.stream);
                ctx.conns.closed(up.id);
            }
        }
        self.uin.clear();
        self.uout.clear();
    }

    /// Tunnel: bytes go both ways untouched, through the buffers or by splice(2).
    fn pump_tunnel(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let mut progress = false;
        // A direction's buffered bytes wait while its span is under way: they came later.
        if self.up_span.is_none() && !self.cin.is_empty() {
            let n = self.uout.extend(self.cin.data());
            self.cin.consume(n);
            progress |= n > 0;
        }
        if self.down_span.is_none() && !self.uin.is_empty() {
            let n = self.cout.extend(self.uin.data());
            self.uin.consume(n);
            progress |= n > 0;
        }
        progress |= self.pump_tunnel_spans(ctx)?;
        Ok(progress)
    }

    /// Tunnel: a direction goes by splice(2) while it streams. A read that filled the whole
    /// buffer and left the socket readable says a burst is under way: the next bytes go
    /// through a pipe until the socket is drained, then the pipe goes back to the pool, so an
    /// idle tunnel holds none. Small messages (most WebSocket frames) stay on the copy path,
    /// where one read and one write move them, against two splices and the EAGAIN that ends
    /// a span.
    fn pump_tunnel_spans(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let Some(up) = &mut self.upstream else {
            return Ok(false);
        };
        let mut progress = false;

        // Client → upstream.
        let streaming = self.client.readable && !self.client.eof && self.cin.is_empty();
        if self.up_span.is_none() && streaming && !up.write_failed {
            self.up_span = lend_span(ctx, u64::MAX, ctx.cfg.splice_min);
        }
        if let Some(span) = &mut self.up_span {
            let ready = self.uout.is_empty();
            let drained = match move_span(span, &mut self.client, &mut up.peer, ready) {
                Ok(m) => {
                    progress |= m.progress;
                    m.drained
                }
                Err(SpanError::Source(e)) => {
                    debug!("{}: tunnel read error: {e}", self.client_ip);
                    return Err(Fail::Abort);
                }
                Err(SpanError::Dest(e)) => {
                    // As on the copy path: nothing more goes to the upstream.
                    debug!("upstream write error: {e}");
                    up.write_failed = true;
                    progress = true;
                    false
                }
            };
            let idle = (drained || self.client.eof) && span.held() == 0;
            if span.is_done() || idle || up.write_failed {
                if let Some(span) = self.up_span.take() {
                    span.finish(ctx.pipes);
                }
                progress = true;
            }
        }

        // Upstream → client.
        let streaming = up.peer.readable && !up.peer.eof && self.uin.is_empty();
        if self.down_span.is_none() && streaming {
            self.down_span = lend_span(ctx, u64::MAX, ctx.cfg.splice_min);
        }
        if let Some(span) = &mut self.down_span {
            let ready = self.cout.is_empty();
            let drained = match move_span(span, &mut up.peer, &mut self.client, ready) {
                Ok(m) => {
                    progress |= m.progress;
                    m.drained
                }
                Err(SpanError::Source(e)) => {
                    // As on the copy path: a read error ends that direction like a close.
                    debug!("upstream read error: {e}");
                    up.peer.eof = true;
                    up.peer.readable = false;
                    progress = true;
                    false
                }
                Err(SpanError::Dest(e)) => {
                    debug!("{}: tunnel write error: {e}", self.client_ip);
                    return Err(Fail::Abort);
                }
            };
            if span.is_done() || ((drained || up.peer.eof) && span.held() == 0) {
                if let Some(span) = self.down_span.take() {
                    span.finish(ctx.pipes);
                }
                progress = true;
            }
        }
        if progress {
            self.last_progress = ctx.now;
        }
        Ok(progress)
    }

    /// Tunnel: pass each side's end of stream on once its bytes are flushed.
    fn tunnel_half_close(&mut self) -> bool {
        let mut progress = false;
        let Some(up) = &mut self.upstream else {
            return false;
        };
        let up_flushed = self.cin.is_empty() && self.uout.is_empty() && self.up_span.is_none();
        if self.client.eof && up_flushed && !up.peer.shut {
            up.peer.shutdown_write();
            progress = true;
        }
        let down_flushed = self.uin.is_empty() && self.cout.is_empty() && self.down_span.is_none();
        if up.peer.eof && down_flushed && !self.client.shut {
            self.client.shutdown_write();
            progress = true;
        }
        progress
    }
}

/// What one `move_span` call did.
#[derive(Debug, Default)]
struct SpanMoved {
    /// Bytes taken from the source (for the body's framing count).
    pulled: usize,
    /// Bytes moved into or out of the pipe.
    progress: bool,
    /// The source had nothing to give and the pipe is empty: the stream paused.
    drained: bool,
}

/// Which end of a span failed.
#[derive(Debug)]
enum SpanError {
    /// Reading the source socket.
    Source(io::Error),
    /// Writing the destination socket.
    Dest(io::Error),
}

/// Move what can move through `span`: from `src` into the pipe, and out of it to `dst` once
/// `dst_ready` (everything queued for `dst` before the span has gone). The source's end of
/// stream is recorded in `src.eof`; readiness is kept like the copy path keeps it.
fn move_span(
    span: &mut Span,
    src: &mut Peer,
    dst: &mut Peer,
    dst_ready: bool,
) -> Result<SpanMoved, SpanError> {
    let mut moved = SpanMoved::default();
    if src.readable && !src.eof && span.can_pull() {
        match span.pull(src.stream.as_raw_fd()) {
            Ok(Pulled::Bytes(n)) => {
                moved.pulled = n;
                moved.progress = true;
            }
            Ok(Pulled::Eof) => {
                src.eof = true;
                moved.progress = true;
            }
            Ok(Pulled::Drained) => {
                src.readable = false;
                moved.drained = true;
            }
            // Keep the readiness: the pipe may have been full; a push makes room.
            Ok(Pulled::Blocked) => {}
            Err(e) => return Err(SpanError::Source(e)),
        }
    }
    if dst_ready && span.held() > 0 && dst.writable && !dst.shut {
        match span.push(dst.stream.as_raw_fd()) {
            Ok(Some(n)) => moved.progress |= n > 0,
            Ok(None) => dst.writable = false,
            Err(e) => return Err(SpanError::Dest(e)),
        }
    }
    Ok(moved)
}

/// A socket not read to `WouldBlock` may hold bytes past the response (a span takes exactly
/// the body's length, and a full read leaves the socket unknown): stray bytes, or an EOF, that
/// would be read as the next response on a reused connection. Edge-triggered, they raise no
/// new event once the connection is idle, so look now.
fn has_bytes_past_the_response(stream: &TcpStream) -> bool {
    !connpool::is_quiet(stream)
}

/// A span of `left` bytes through a pipe of the worker's pool, when it is at least `min` long
/// (`--splice-min` for its direction, 0: never) and a pipe is free. `None`: the copy path does the work; a pool
/// that is out of pipes never fails a request.
fn lend_span(ctx: &mut Ctx<'_>, left: u64, min: usize) -> Option<Span> {
    let min = min as u64;
    if min == 0 || left < min {
        return None;
    }
    ctx.pipes.take().map(|pipe| Span::new(pipe, left))
}

/// Rewrite a response head into the scratch buffer, to be queued for the client. `Ok(false)`:
/// it fits the client buffer but not yet, behind what is queued there; wait for the client to
/// take some. A head that could never fit (its rewrite grew it past the buffer, with a raised
/// `--max-head`) is a 502: it is never cut, nor waited on forever.
fn stage_response_head(
    resp: &response::Response<'_, '_>,
    rctx: &ResponseContext,
    ctx: &mut Ctx<'_>,
    cout: &Buffer,
    upstream: usize,
) -> Result<bool, Fail> {
    let max = cout.capacity().saturating_sub(LOCAL_ANSWER_ROOM);
    let scratch = ctx.scratch_take();
    match rewrite::response_head(resp, rctx, scratch, max) {
        Ok(len) => Ok(len <= forward_room(cout)),
        Err(e) => {
            warn!(
                "upstream {} sent a response head of {} bytes once rewritten, over {}: 502",
                ctx.pool.get(upstream).name,
                e.len,
                e.max
            );
            Err(Fail::Respond(502))
        }
    }
}

/// What the forwarding may put in the client output buffer: all but `LOCAL_ANSWER_ROOM`.
fn forward_room(cout: &Buffer) -> usize {
    cout.room().saturating_sub(LOCAL_ANSWER_ROOM)
}

impl Ctx<'_> {
    /// The scratch buffer, emptied.
    fn scratch_take(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        self.scratch
    }
}

/// Connect errors that say the upstream is not there: refused, unreachable, timed out
/// (shared with the health probe).
pub fn marks_upstream_down(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED)
            | Some(libc::EHOSTUNREACH)
            | Some(libc::ENETUNREACH)
            | Some(libc::ETIMEDOUT)
            | Some(libc::EHOSTDOWN)
            | Some(libc::ENETDOWN)
    )
}

/// Errors that are the proxy's own shortage, not the upstream's fault (shared with the health
/// probe and accept).
pub fn is_local_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE)
            | Some(libc::ENFILE)
            | Some(libc::ENOBUFS)
            | Some(libc::ENOMEM)
            | Some(libc::EADDRNOTAVAIL)
            | Some(libc::EAGAIN)
    )
}

/// A short reason for the log line of an upstream going down.
pub fn connect_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::EHOSTUNREACH) | Some(libc::EHOSTDOWN) => "host unreachable".into(),
        Some(libc::ENETUNREACH) | Some(libc::ENETDOWN) => "network unreachable".into(),
        Some(libc::ETIMEDOUT) => "connect timed out".into(),
        _ => e.to_string(),
    }
}
