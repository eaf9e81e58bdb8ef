//! The state machine of one client connection: read, answer requests in order, stream
//! bodies with backpressure, write, close. It owns two fixed buffers and keeps the socket's
//! readiness in userland, because mio is edge-triggered: "readiness events are only
//! delivered once per change", so wherever it stops before `WouldBlock` it must remember
//! that and come back by itself.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use httparse::EMPTY_HEADER;
use mio::event::Event;
use mio::net::TcpStream;

use crate::chunked::ChunkedScanner;
use crate::http::{self, Framing, HeadError, Length, Persistence, Route, HEAD_RESERVE};
use goround_mio::buffer::Buffer as Buf;

/// Capacity of a connection's input buffer, and so the largest request head (a longer one
/// is answered with 431).
pub const IN_BUF_SIZE: usize = 64 * 1024;
/// Capacity of a connection's output buffer: room for an echoed head of [`IN_BUF_SIZE`]
/// plus our own response head and chunk framing.
pub const OUT_BUF_SIZE: usize = IN_BUF_SIZE + 4 * 1024;
/// Read/process/write rounds one `drive` call may run before yielding to other
/// connections (a fast upload or download would otherwise starve them).
const DRIVE_BUDGET: usize = 32;
/// How long a closing connection keeps reading and discarding after its FIN, so unread
/// request bytes do not turn the close into an RST that destroys the response in flight.
const LINGER: Duration = Duration::from_millis(500);
/// Room for a chunk-size line and the CRLF after the data.
const CHUNK_FRAME_MAX: usize = 16 + 2 + 2;
/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// The last chunk and the empty trailer section.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// The 101 answer to a WebSocket upgrade.
const SWITCHING: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
/// Content type of the text answers.
const TEXT: &str = "text/plain";
/// Content type of the generated and echoed bodies.
const BINARY: &str = "application/octet-stream";

/// A pending timer: when, which connection (slab key) and which incarnation of it.
pub type Timer = Reverse<(Instant, usize, u64)>;

/// What a connection needs from its worker while it runs.
pub struct Ctx<'a> {
    /// `Hello from Server {port}\n` for this listener.
    pub hello: &'a [u8],
    /// What `/health` answers (`--health-status`).
    pub health_status: u16,
    /// How long every answer waits (`--delay`).
    pub delay: Duration,
    /// The time of the current loop iteration.
    pub now: Instant,
    /// The worker is draining: no new request starts.
    pub shutting_down: bool,
    /// The worker's timers; a connection pushes its `/slow` and linger deadlines here.
    pub timers: &'a mut BinaryHeap<Timer>,
}

/// What the worker should do with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more to do until an event or a timer.
    Wait,
    /// Work is left but the budget is spent: drive again on the next loop iteration.
    Again,
    /// Close it now.
    Close,
}

/// Where the connection stands.
enum State {
    /// Waiting for (or parsing) the next request head.
    Head,
    /// A request is being answered.
    Exchange(Exchange),
    /// After a 101: every byte read is written back.
    Tunnel,
    /// No more requests: flush the output, then close.
    Closing,
    /// FIN sent; reading and discarding until the peer closes or the deadline passes.
    Linger {
        /// When to give up and close.
        deadline: Instant,
    },
}

/// One request being answered: its body still to consume and its response still to produce.
struct Exchange {
    /// The request body still to read.
    body: Body,
    /// What happens to the request body bytes.
    echo: Echo,
    /// The response bytes still to generate.
    producer: Producer,
    /// Close the connection once this exchange is done.
    close_after: bool,
}

/// The request body still to read.
enum Body {
    /// All of it has been read.
    Done,
    /// This many Content-Length bytes are still to come.
    Length(u64),
    /// A chunked body, and where its scanner stands.
    Chunked(ChunkedScanner),
}

/// What happens to request body bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Echo {
    /// Read and dropped.
    Discard,
    /// Copied to the output as they are (Content-Length `/echo`).
    Raw,
    /// Copied to the output as chunks (chunked `/echo`).
    Chunked,
}

/// The part of a response generated after its head.
enum Producer {
    /// Nothing left.
    Done,
    /// `/big`: pattern bytes from `offset`, `remaining` of them.
    Pattern {
        /// Body offset of the next byte.
        offset: u64,
        /// Bytes still to send.
        remaining: u64,
    },
    /// `/chunked`: pattern chunks.
    Chunks {
        /// Body offset of the next data byte (the pattern runs on across chunks).
        offset: u64,
        /// Data chunks not yet started.
        chunks_left: u64,
        /// Bytes per chunk.
        size: u64,
        /// Where the chunk being written stands.
        part: ChunkPart,
    },
    /// `/slow`: the whole response, once the deadline has passed.
    Slow {
        /// When to answer.
        deadline: Instant,
        /// HEAD request: no body.
        head_only: bool,
        /// The Connection field to send.
        persistence: Persistence,
    },
    /// Chunked `/echo`: the last chunk, once the request body has ended.
    LastChunk,
}

/// Where a generated chunk stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ChunkPart {
    /// Its size line is next.
    Size,
    /// This many data bytes are next.
    Data(u64),
    /// The CRLF after its data is next.
    Crlf,
}

/// A client connection.
pub struct Conn {
    /// The socket.
    stream: TcpStream,
    /// Slab key, for timers.
    key: usize,
    /// Tells this connection's timers from those of an earlier one with the same key.
    serial: u64,
    /// Bytes read and not yet consumed.
    input: Buf,
    /// Bytes produced and not yet written.
    output: Buf,
    /// The socket may have bytes to read: no `WouldBlock` since the last readable event.
    readable: bool,
    /// The socket may accept bytes: no `WouldBlock` since the last writable event.
    writable: bool,
    /// The peer has shut down its sending side (a read returned 0).
    eof: bool,
    /// Length of the incomplete head the last parse saw (0 if none): bytes that cannot
    /// hold its end, so a head trickling in is not re-parsed from the start on every
    /// segment (quadratic) until a blank line may have arrived.
    partial_head: usize,
    /// `--delay`: the head waiting in the input is answered at this time.
    delayed_until: Option<Instant>,
    /// Where the connection stands.
    state: State,
}

impl Conn {
    /// A connection over an accepted, registered socket, with (recycled) buffer storage.
    pub fn new(stream: TcpStream, key: usize, serial: u64, input: Buf, output: Buf) -> Self {
        Self {
            stream,
            key,
            serial,
            input,
            output,
            readable: false,
            // Optimistic: a fresh socket has room, and a WouldBlock clears this anyway.
            writable: true,
            eof: false,
            partial_head: 0,
            delayed_until: None,
            state: State::Head,
        }
    }

    /// This connection's incarnation number.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Gives the buffers back for recycling.
    pub fn into_buffers(self) -> (Buf, Buf) {
        (self.input, self.output)
    }

    /// Records an event's readiness. Errors and hang-ups count as both: the next read or
    /// write reports them.
    pub fn note(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.readable = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.writable = true;
        }
    }

    /// The worker is draining: idle connections close, busy ones close after the
    /// response in flight.
    pub fn begin_shutdown(&mut self) {
        match &mut self.state {
            State::Head | State::Tunnel => self.state = State::Closing,
            State::Exchange(exchange) => exchange.close_after = true,
            State::Closing | State::Linger { .. } => {}
        }
    }

    /// Runs read → process → write rounds until nothing moves, the budget is spent or the
    /// connection must close.
    pub fn drive(&mut self, ctx: &mut Ctx<'_>) -> Verdict {
        for _ in 0..DRIVE_BUDGET {
            let mut progress = match self.read() {
                Ok(progress) => progress,
                Err(_) => return Verdict::Close,
            };
            match self.process(ctx) {
                Ok(moved) => progress |= moved,
                Err(_) => return Verdict::Close,
            }
            match self.write() {
                Ok(moved) => progress |= moved,
                Err(_) => return Verdict::Close,
            }
            match self.state {
                State::Closing if self.output.is_empty() => {
                    // Unread bytes would make close() send an RST, which can destroy the
                    // response still in flight: linger unless none can be pending.
                    if self.eof || (!self.readable && self.input.is_empty()) {
                        return Verdict::Close;
                    }
                    if self.stream.shutdown(Shutdown::Write).is_err() {
                        return Verdict::Close;
                    }
                    let deadline = ctx.now + LINGER;
                    ctx.timers.push(Reverse((deadline, self.key, self.serial)));
                    self.state = State::Linger { deadline };
                    progress = true;
                }
                State::Linger { deadline } if self.eof || ctx.now >= deadline => {
                    return Verdict::Close;
                }
                _ => {}
            }
            if !progress {
                return Verdict::Wait;
            }
        }
        Verdict::Again
    }

    /// Reads until `WouldBlock`, end of stream or a full input buffer (then `readable`
    /// stays set and a later round resumes). Returns whether anything was read.
    fn read(&mut self) -> io::Result<bool> {
        let mut progress = false;
        while self.readable && !self.eof && !self.input.is_full() {
            match self.stream.read(self.input.spare()) {
                Ok(0) => {
                    self.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.input.commit(n);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Writes until `WouldBlock` or an empty output buffer. Returns whether anything was
    /// written.
    fn write(&mut self) -> io::Result<bool> {
        let mut progress = false;
        while self.writable && !self.output.is_empty() {
            match self.stream.write(self.output.data()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.consume(n);
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Turns buffered input into output as far as the buffers allow. Returns whether
    /// anything moved; an error means the connection must close at once.
    fn process(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Abort> {
        let mut progress = false;
        loop {
            let moved = match &mut self.state {
                State::Head => self.start_request(ctx),
                State::Exchange(exchange) => {
                    let moved = step_exchange(exchange, &mut self.input, &mut self.output, ctx)?;
                    if exchange.is_done() {
                        self.state = if exchange.close_after || ctx.shutting_down {
                            State::Closing
                        } else {
                            State::Head
                        };
                        true
                    } else {
                        if self.eof && self.input.is_empty() && !matches!(exchange.body, Body::Done)
                        {
                            // The peer stopped sending mid-body: the request cannot complete.
                            return Err(Abort);
                        }
                        moved
                    }
                }
                State::Tunnel => {
                    let n = self.input.len().min(self.output.room());
                    put(&mut self.output, &self.input.data()[..n]);
                    self.input.consume(n);
                    if self.eof && self.input.is_empty() {
                        self.state = State::Closing;
                    }
                    n > 0
                }
                State::Closing | State::Linger { .. } => {
                    let moved = !self.input.is_empty();
                    self.input.clear();
                    moved
                }
            };
            if !moved {
                return Ok(progress);
            }
            progress = true;
        }
    }

    /// Parses the next request head and starts its answer. Returns whether anything moved.
    fn start_request(&mut self, ctx: &mut Ctx<'_>) -> bool {
        if ctx.shutting_down || (self.eof && self.input.is_empty()) {
            self.state = State::Closing;
            return true;
        }
        if self.input.is_empty() {
            return false;
        }
        let mut headers = [EMPTY_HEADER; http::MAX_HEADERS];
        let raw = self.input.data();
        if self.partial_head > 0
            && raw.len() < IN_BUF_SIZE
            && !self.eof
            && !may_end_head(
                raw.get(self.partial_head.saturating_sub(3)..)
                    .unwrap_or(raw),
            )
        {
            return false;
        }
        let head = match http::parse_head(raw, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) if raw.len() >= IN_BUF_SIZE => return self.refuse(431),
            Ok(None) if self.eof => {
                // A partial head and no more bytes: nobody to answer.
                self.state = State::Closing;
                return true;
            }
            Ok(None) => {
                self.partial_head = raw.len();
                return false;
            }
            Err(HeadError::TooLarge) => return self.refuse(431),
            Err(HeadError::Malformed) => return self.refuse(400),
        };
        // `--delay`: every answer waits; the head stays in the input until its time comes.
        if !ctx.delay.is_zero() {
            match self.delayed_until {
                None => {
                    let until = ctx.now + ctx.delay;
                    self.delayed_until = Some(until);
                    ctx.timers.push(Reverse((until, self.key, self.serial)));
                    return false;
                }
                Some(until) if ctx.now < until => return false,
                Some(_) => self.delayed_until = None,
            }
        }
        // Every answer started here fits in this much: our head, an interim 100, and at
        // most the request head again (echo, header listing) plus chunk framing.
        if self.output.room() < HEAD_RESERVE + CONTINUE.len() + head.len + CHUNK_FRAME_MAX {
            return false; // wait for the output to drain
        }
        let out = &mut self.output;
        let fields = &headers[..head.fields];
        let persistence = if !head.keep_alive {
            Persistence::Close
        } else if head.http10 {
            Persistence::KeepAlive
        } else {
            Persistence::Default
        };
        let with_body = !head.head_method;
        let has_request_body = match head.framing {
            Framing::None | Framing::Length(0) => false,
            Framing::Length(_) | Framing::Chunked => true,
        };
        let mut exchange = Exchange {
            body: match head.framing {
                Framing::None | Framing::Length(0) => Body::Done,
                Framing::Length(n) => Body::Length(n),
                Framing::Chunked => Body::Chunked(ChunkedScanner::new()),
            },
            echo: Echo::Discard,
            producer: Producer::Done,
            close_after: !head.keep_alive,
        };
        let route = match head.route {
            Ok(Route::Ws) if !head.websocket => Err(http::BadRoute),
            route => route,
        };
        if head.expect_continue && has_request_body && !head.http10 && route != Ok(Route::Ws) {
            // RFC 9110 §10.1.1: a server that will read the body "ought to" send 100 first.
            put(out, CONTINUE);
        }
        let mut next = None;
        match route {
            Err(http::BadRoute) => {
                simple(out, 400, TEXT, b"Bad Request\n", persistence, with_body);
            }
            Ok(Route::Hello) => simple(out, 200, TEXT, ctx.hello, persistence, with_body),
            Ok(Route::Health) if ctx.health_status == 200 => {
                simple(out, 200, TEXT, b"OK\n", persistence, with_body)
            }
            Ok(Route::Health) => {
                let mut body = [0u8; 8];
                let n = http::write_status_body(&mut body, ctx.health_status).unwrap_or(0);
                simple(
                    out,
                    ctx.health_status,
                    TEXT,
                    &body[..n],
                    persistence,
                    with_body,
                );
            }
            Ok(Route::Big { bytes }) => {
                push_head(out, 200, Some(BINARY), Length::Fixed(bytes), persistence);
                if with_body {
                    exchange.producer = Producer::Pattern {
                        offset: 0,
                        remaining: bytes,
                    };
                }
            }
            Ok(Route::Chunked { chunks, size }) => {
                push_head(out, 200, Some(BINARY), Length::Chunked, persistence);
                if with_body {
                    exchange.producer = Producer::Chunks {
                        offset: 0,
                        // Zero-size chunks would end the body early: only the last chunk.
                        chunks_left: if size == 0 { 0 } else { chunks },
                        size,
                        part: ChunkPart::Size,
                    };
                }
            }
            Ok(Route::Slow { ms }) => {
                let deadline = ctx.now + Duration::from_millis(ms);
                ctx.timers.push(Reverse((deadline, self.key, self.serial)));
                exchange.producer = Producer::Slow {
                    deadline,
                    head_only: !with_body,
                    persistence,
                };
            }
            Ok(Route::Status(status @ (204 | 304))) => {
                push_head(out, status, None, Length::Omitted, persistence);
            }
            Ok(Route::Status(status)) => {
                let mut body = [0u8; 8];
                let n = http::write_status_body(&mut body, status).unwrap_or(0);
                simple(out, status, TEXT, &body[..n], persistence, with_body);
            }
            Ok(Route::Echo) => {
                let echoed = &raw[head.leading..head.len];
                if head.framing == Framing::Chunked {
                    push_head(out, 200, Some(BINARY), Length::Chunked, persistence);
                    if with_body {
                        push_chunk(out, echoed);
                        exchange.echo = Echo::Chunked;
                        exchange.producer = Producer::LastChunk;
                    }
                } else {
                    let body_len = match head.framing {
                        Framing::Length(n) => n,
                        Framing::None | Framing::Chunked => 0,
                    };
                    let total = echoed.len() as u64 + body_len;
                    push_head(out, 200, Some(BINARY), Length::Fixed(total), persistence);
                    if with_body {
                        put(out, echoed);
                        exchange.echo = Echo::Raw;
                    }
                }
            }
            Ok(Route::Ws) => {
                put(out, SWITCHING);
                // Whatever follows the head already belongs to the tunnel.
                next = Some(State::Tunnel);
            }
            Ok(Route::Close) => {
                push_head(out, 200, Some(TEXT), Length::Omitted, Persistence::Close);
                if with_body {
                    put(out, ctx.hello);
                }
                next = Some(State::Closing);
            }
            Ok(Route::Headers) => {
                let len = http::listing_len(fields);
                push_head(out, 200, Some(TEXT), Length::Fixed(len as u64), persistence);
                if with_body {
                    let n = http::write_listing(out.spare(), fields).unwrap_or(0);
                    out.commit(n);
                }
            }
        }
        let consumed = head.len;
        self.partial_head = 0;
        self.input.consume(consumed);
        self.state = next.unwrap_or(State::Exchange(exchange));
        true
    }

    /// Answers an unusable head with `status` and closes.
    fn refuse(&mut self, status: u16) -> bool {
        if self.output.room() < HEAD_RESERVE + 64 {
            return false; // wait for the output to drain
        }
        let body: &[u8] = if status == 431 {
            b"Request Header Fields Too Large\n"
        } else {
            b"Bad Request\n"
        };
        simple(
            &mut self.output,
            status,
            TEXT,
            body,
            Persistence::Close,
            true,
        );
        self.state = State::Closing;
        true
    }
}

/// Whether `bytes` holds a blank line ending (`\n\r\n` or `\n\n`), the only way a head ends.
pub fn may_end_head(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|pair| pair[0] == b'\n' && (pair[1] == b'\n' || pair[1] == b'\r'))
}

/// The connection must close at once (malformed body, truncated request).
#[derive(Debug)]
struct Abort;

impl Exchange {
    /// Both the request body and the response are complete.
    fn is_done(&self) -> bool {
        matches!(self.body, Body::Done) && matches!(self.producer, Producer::Done)
    }
}

/// One round of an exchange: consume request body bytes, then generate response bytes,
/// each as far as the buffers allow. Returns whether anything moved.
fn step_exchange(
    exchange: &mut Exchange,
    input: &mut Buf,
    output: &mut Buf,
    ctx: &Ctx<'_>,
) -> Result<bool, Abort> {
    let mut progress = false;
    match &mut exchange.body {
        Body::Done => {}
        Body::Length(remaining) => {
            let available = (input.len() as u64).min(*remaining) as usize;
            let n = match exchange.echo {
                // Backpressure: echo only what the output can take.
                Echo::Raw => output.extend(&input.data()[..available.min(output.room())]),
                Echo::Discard | Echo::Chunked => available,
            };
            input.consume(n);
            *remaining -= n as u64;
            if *remaining == 0 {
                exchange.body = Body::Done;
            }
            progress |= n > 0;
        }
        Body::Chunked(scanner) => {
            let n = if exchange.echo == Echo::Chunked {
                let room = output.room().saturating_sub(CHUNK_FRAME_MAX);
                let take = input.len().min(room);
                let n = scanner.scan(&input.data()[..take]).map_err(|_| Abort)?;
                push_chunk(output, &input.data()[..n]);
                n
            } else {
                scanner.scan(input.data()).map_err(|_| Abort)?
            };
            input.consume(n);
            progress |= n > 0;
            if scanner.is_done() {
                exchange.body = Body::Done;
                progress = true;
            }
        }
    }
    let body_done = matches!(exchange.body, Body::Done);
    match &mut exchange.producer {
        Producer::Done => {}
        Producer::Pattern { offset, remaining } => {
            let n = (*remaining).min(output.room() as u64) as usize;
            put(output, http::pattern(*offset, n));
            *offset += n as u64;
            *remaining -= n as u64;
            progress |= n > 0;
            if *remaining == 0 {
                exchange.producer = Producer::Done;
            }
        }
        Producer::Chunks {
            offset,
            chunks_left,
            size,
            part,
        } => loop {
            match *part {
                ChunkPart::Size if *chunks_left == 0 => {
                    if output.room() < LAST_CHUNK.len() {
                        break;
                    }
                    put(output, LAST_CHUNK);
                    exchange.producer = Producer::Done;
                    progress = true;
                    break;
                }
                ChunkPart::Size => {
                    if output.room() < CHUNK_FRAME_MAX {
                        break;
                    }
                    let n = http::write_chunk_size(output.spare(), *size).unwrap_or(0);
                    output.commit(n);
                    *part = ChunkPart::Data(*size);
                }
                ChunkPart::Data(left) => {
                    let n = left.min(output.room() as u64) as usize;
                    if n == 0 {
                        break;
                    }
                    put(output, http::pattern(*offset, n));
                    *offset += n as u64;
                    *part = if left == n as u64 {
                        ChunkPart::Crlf
                    } else {
                        ChunkPart::Data(left - n as u64)
                    };
                }
                ChunkPart::Crlf => {
                    if output.room() < 2 {
                        break;
                    }
                    put(output, b"\r\n");
                    *chunks_left -= 1;
                    *part = ChunkPart::Size;
                }
            }
            progress = true;
        },
        Producer::Slow {
            deadline,
            head_only,
            persistence,
        } => {
            if ctx.now >= *deadline && output.room() >= HEAD_RESERVE + ctx.hello.len() {
                simple(output, 200, TEXT, ctx.hello, *persistence, !*head_only);
                exchange.producer = Producer::Done;
                progress = true;
            }
        }
        Producer::LastChunk => {
            if body_done && output.room() >= LAST_CHUNK.len() {
                put(output, LAST_CHUNK);
                exchange.producer = Producer::Done;
                progress = true;
            }
        }
    }
    Ok(progress)
}

/// Appends `bytes`; callers reserve the room first, so a short append is a sizing bug, said
/// loudly rather than hidden.
fn put(out: &mut Buf, bytes: &[u8]) {
    let n = out.extend(bytes);
    if n < bytes.len() {
        eprintln!(
            "goround-dummy: bug: {} of {} bytes did not fit the output buffer",
            bytes.len() - n,
            bytes.len()
        );
    }
}

/// Appends a response head. The caller has reserved [`HEAD_RESERVE`] bytes.
fn push_head(
    out: &mut Buf,
    status: u16,
    content_type: Option<&str>,
    length: Length,
    persistence: Persistence,
) {
    let n = http::write_head(out.spare(), status, content_type, length, persistence).unwrap_or(0);
    out.commit(n);
}

/// Appends a whole Content-Length response (the body only if `with_body`).
fn simple(
    out: &mut Buf,
    status: u16,
    content_type: &str,
    body: &[u8],
    persistence: Persistence,
    with_body: bool,
) {
    let length = Length::Fixed(body.len() as u64);
    push_head(out, status, Some(content_type), length, persistence);
    if with_body {
        put(out, body);
    }
}

/// Appends `data` as one chunk; empty data appends nothing (an empty chunk would end the
/// body). The caller has reserved [`CHUNK_FRAME_MAX`] bytes beyond the data.
fn push_chunk(out: &mut Buf, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let n = http::write_chunk_size(out.spare(), data.len() as u64).unwrap_or(0);
    out.commit(n);
    put(out, data);
    put(out, b"\r\n");
}
