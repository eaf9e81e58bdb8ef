//! Clients with their own response parser ([`ResponseReader`], [`send_raw`], [`get`]): none of
//! it shares code with the crate's `http` module, which is what is under test. Connections from
//! another 127.0.0.x ([`connect_from`]), a stream of new connections as load
//! ([`new_connections`]), and the answers the proxy makes itself, byte for byte
//! ([`local_answer`]).

use super::{find, hello_port, lock, parse_chunked, show, IO_TIMEOUT};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Largest response head the test client accepts before calling it garbage.
const CLIENT_MAX_HEAD: usize = 256 * 1024;

/// The pause between the pieces of [`Reply::KeepAliveTrickled`] and [`write_trickled`].
pub const TRICKLE_PAUSE: Duration = Duration::from_millis(1);

/// Write `bytes` in pieces of `piece` bytes, `TRICKLE_PAUSE` apart, with TCP_NODELAY on.
pub fn write_trickled(stream: &mut TcpStream, bytes: &[u8], piece: usize) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    for part in bytes.chunks(piece.max(1)) {
        stream.write_all(part)?;
        thread::sleep(TRICKLE_PAUSE);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Connect to `addr` with [`IO_TIMEOUT`] read/write timeouts and Nagle off.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(s) => with_client_options(s),
        Err(e) => panic!("connect to {addr}: {e}"),
    }
}

/// [`IO_TIMEOUT`] read/write timeouts and Nagle off.
fn with_client_options(stream: TcpStream) -> TcpStream {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    stream
}

/// Connect to `addr` from the local address `from` (any 127.0.0.x: all of them are this
/// machine), to be another client for per-client limits, logs and forwarding fields; with the
/// timeouts of [`connect`] and Nagle off.
#[track_caller]
pub fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let result = (|| -> io::Result<TcpStream> {
        let local: SocketAddr = format!("{from}:0").parse().map_err(io::Error::other)?;
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&local.into())?;
        socket.connect_timeout(&addr.into(), IO_TIMEOUT)?;
        Ok(socket.into())
    })();
    match result {
        Ok(s) => with_client_options(s),
        Err(e) => panic!("connect to {addr} from {from}: {e}"),
    }
}

/// Connect, write `bytes`, then read until the server closes; returns everything read.
///
/// Write errors are ignored: a server may answer and close before reading it all (431), and
/// Linux keeps the answer readable after the reset that follows.
#[track_caller]
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    let _ = stream.write_all(bytes);
    read_to_close(&mut stream)
}

/// Read until EOF (or a reset after the peer closed); panics when the peer keeps it open.
#[track_caller]
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "waiting for the server to close: {e} (after {} bytes: {})",
                out.len(),
                show(&out)
            ),
        }
    }
}

/// Read until EOF (a reset after the server closed counts as EOF), each read waiting up to
/// `timeout` (the stream keeps that read timeout); `Err` says what came before a read failed.
pub fn read_until_eof(stream: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, String> {
    let _ = stream.set_read_timeout(Some(timeout));
    let mut out = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) => {
                return Err(format!(
                    "no EOF within {timeout:?} ({e}); received so far: {}",
                    show(&out)
                ))
            }
        }
    }
}

/// Wait until connecting to `addr` is refused: the proxy has closed that listener. Panics with
/// what the last connect did when it still accepts after `timeout`.
#[track_caller]
pub fn wait_until_refused(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{addr} still accepts connections {timeout:?} later: {other:?}"
                );
                // No event to wait on from outside the process: poll the listener.
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// One-shot `GET path` on a new connection: (status, body as text).
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut client = ResponseReader::connect(addr);
    client.send(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes());
    let resp = client.read_response("GET");
    (resp.status, resp.body_text())
}

/// `GET /` on a new connection that must answer 200 from a dummy: the dummy's port.
#[track_caller]
pub fn get_port(addr: SocketAddr) -> u16 {
    let (status, body) = get(addr, "/");
    assert_eq!(status, 200, "GET / answered {status}: {body:?}");
    hello_port(&body)
}

/// How a response body was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Read until the server closed.
    Close,
}

/// One response as the client received it.
#[derive(Debug, Clone)]
pub struct Response {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The fields in order, names as sent, values with surrounding whitespace trimmed.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// How the body was delimited.
    pub framing: BodyFraming,
    /// The exact bytes of the whole message.
    pub raw: Vec<u8>,
    /// The length of the head within `raw`, blank line included.
    pub head_len: usize,
}

impl Response {
    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field named `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a comma-separated field `name` lists `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// The head bytes, blank line included.
    pub fn head(&self) -> &[u8] {
        &self.raw[..self.head_len]
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The fields in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
}

/// Parse a response head (ending with the blank line): version, code, reason, fields.
pub fn parse_response_head(head: &[u8]) -> Result<ResponseHead, String> {
    let text = std::str::from_utf8(head).map_err(|_| format!("non-UTF-8 head: {}", show(head)))?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| format!("head does not end with CRLF CRLF: {}", show(head)))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let code = parts.next().unwrap_or("");
    let reason = parts.next().unwrap_or("").to_string();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("bad status code in {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("field line without a colon: {line:?}"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(format!("bad field name in {line:?}"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(ResponseHead {
        version,
        status,
        reason,
        headers,
    })
}

/// A client connection that reads responses one at a time, keeping bytes that arrived early
/// (pipelined responses, tunnel data after a 101) for the next read.
pub struct ResponseReader {
    /// The connection.
    stream: TcpStream,
    /// Bytes received but not yet consumed.
    buf: Vec<u8>,
}

impl ResponseReader {
    /// Wrap an open connection.
    pub fn new(stream: TcpStream) -> ResponseReader {
        ResponseReader {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connect to `addr` (see [`connect`]).
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> ResponseReader {
        ResponseReader::new(connect(addr))
    }

    /// The socket, e.g. to change its timeouts or shut down its write half.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Write all of `bytes`; panics on error.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            panic!("client write: {e}");
        }
    }

    /// Write all of `bytes`, reporting an error instead of panicking.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Read one response (1xx included: call again for the final one). `method` is the
    /// request's, so a HEAD response is known to have no body. Panics with what was received.
    #[track_caller]
    pub fn read_response(&mut self, method: &str) -> Response {
        match self.try_read_response(method) {
            Ok(r) => r,
            Err(e) => panic!("reading a response to {method}: {e}"),
        }
    }

    /// Read one response, or say why not.
    pub fn try_read_response(&mut self, method: &str) -> Result<Response, String> {
        let head_len = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if self.buf.len() > CLIENT_MAX_HEAD {
                return Err(format!("no end of head in {} bytes", self.buf.len()));
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed before a complete head; received: {:?}",
                    show(&self.buf)
                ));
            }
        };
        let ResponseHead {
            version,
            status,
            reason,
            headers,
        } = parse_response_head(&self.buf[..head_len])?;
        let field = |name: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let no_body = method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        let te = field("transfer-encoding");
        let cl = field("content-length");
        let framing = if no_body {
            BodyFraming::None
        } else if !te.is_empty() {
            let last = te.last().and_then(|v| v.rsplit(',').next()).unwrap_or("");
            if last.trim().eq_ignore_ascii_case("chunked") {
                BodyFraming::Chunked
            } else {
                BodyFraming::Close
            }
        } else if let Some(first) = cl.first() {
            if cl.iter().any(|v| v != first) {
                return Err(format!("conflicting Content-Length fields: {cl:?}"));
            }
            let n = first
                .parse()
                .map_err(|_| format!("bad Content-Length {first:?}"))?;
            BodyFraming::Length(n)
        } else {
            BodyFraming::Close
        };
        let (body, end) = match framing {
            BodyFraming::None => (Vec::new(), head_len),
            BodyFraming::Length(n) => {
                while self.buf.len() < head_len + n {
                    if self.fill()? == 0 {
                        return Err(format!(
                            "closed after {} of {n} body bytes; head: {}",
                            self.buf.len() - head_len,
                            show(&self.buf[..head_len])
                        ));
                    }
                }
                (self.buf[head_len..head_len + n].to_vec(), head_len + n)
            }
            BodyFraming::Chunked => loop {
                if let Some(c) = parse_chunked(&self.buf[head_len..])? {
                    break (c.data, head_len + c.wire_len);
                }
                if self.fill()? == 0 {
                    return Err(format!("closed inside a chunked body: {}", show(&self.buf)));
                }
            },
            BodyFraming::Close => {
                loop {
                    match self.fill() {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            return Err(format!(
                                "close-delimited body did not end cleanly: {e}; head: {}",
                                show(&self.buf[..head_len])
                            ))
                        }
                    }
                }
                (self.buf[head_len..].to_vec(), self.buf.len())
            }
        };
        let raw: Vec<u8> = self.buf.drain(..end).collect();
        Ok(Response {
            version,
            status,
            reason,
            headers,
            body,
            framing,
            raw,
            head_len,
        })
    }

    /// Read exactly `n` more bytes (tunnel data), buffered bytes first.
    #[track_caller]
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            match self.fill() {
                Ok(0) => panic!(
                    "closed after {} of {n} bytes: {}",
                    self.buf.len(),
                    show(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!("{e} after {} of {n} bytes", self.buf.len()),
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Assert the server closes the connection within `timeout` without sending anything more.
    #[track_caller]
    pub fn expect_close(&mut self, timeout: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {}",
            show(&self.buf)
        );
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut chunk = [0u8; 4096];
        let result = loop {
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        match result {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Ok(n) => panic!(
                "expected the connection to close, got bytes: {}",
                show(&chunk[..n])
            ),
            Err(e) => panic!("expected the connection to close within {timeout:?}: {e}"),
        }
    }

    /// Assert that nothing arrives and the connection stays open for `quiet`.
    #[track_caller]
    pub fn expect_open_and_quiet(&mut self, quiet: Duration) {
        assert!(self.buf.is_empty(), "unexpected bytes: {}", show(&self.buf));
        let _ = self.stream.set_read_timeout(Some(quiet));
        let mut chunk = [0u8; 4096];
        let result = self.stream.read(&mut chunk);
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        match result {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Ok(0) => panic!("the server closed the connection"),
            Ok(n) => panic!("unexpected bytes: {}", show(&chunk[..n])),
            Err(e) => panic!("connection failed: {e}"),
        }
    }

    /// Read what is available into the buffer: Ok(0) at EOF.
    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read error: {e} (buffered: {})", show(&self.buf))),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the proxy answers itself, and load
// ---------------------------------------------------------------------------------------------

/// An answer the proxy makes itself, byte for byte: `{code} {reason}\n` as `text/plain`, with
/// `Allow` for a 405 and `Connection: close` when `close`. Codes whose answer carries more (429
/// and 503 carry `Retry-After`, a 404 names the host) are not spelled here.
#[track_caller]
pub fn local_answer(code: u16, close: bool) -> Vec<u8> {
    let reason = match code {
        400 => "Bad Request",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => panic!("no local answer spelled for {code}"),
    };
    let body = format!("{code} {reason}\n");
    let allow = if code == 405 {
        "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n"
    } else {
        ""
    };
    let close = if close { "Connection: close\r\n" } else { "" };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         {allow}{close}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A WebSocket upgrade request (with RFC 6455's sample key), to open a tunnel through the proxy.
pub const UPGRADE_REQUEST: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Load for a test that changes the proxy under it: new connections one after another until
/// `stop`, `pause` apart, each sending a `Connection: close` GET at once that must get a 200.
/// Every try counts in `done`; a refused connect, a failed exchange or another status is a
/// line in `failures`.
pub fn new_connections(
    addr: SocketAddr,
    pause: Duration,
    stop: &AtomicBool,
    done: &AtomicUsize,
    failures: &Mutex<Vec<String>>,
) {
    while !stop.load(Ordering::Relaxed) {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                let mut c = ResponseReader::new(s);
                let r = c
                    .try_send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    .map_err(|e| e.to_string())
                    .and_then(|()| c.try_read_response("GET"));
                match r {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => lock(failures).push(show(&r.raw)),
                    Err(e) => lock(failures).push(format!("new connection: {e}")),
                }
            }
            Err(e) => lock(failures).push(format!("refused: {e}")),
        }
        done.fetch_add(1, Ordering::Relaxed);
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
}
