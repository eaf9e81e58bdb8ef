//! Backends: [`Dummies`], one `goround-dummy` process per backend so that each can be killed
//! and restarted alone on the same port, and [`RawBackend`], a scripted backend with its own
//! tiny request framing ([`request_length`], [`parse_chunked`]) that records the exact bytes
//! it receives, to assert what the proxy forwards byte for byte. And ports where nothing
//! answers ([`free_port`]) or nothing is accepted ([`blackhole_listener`]).

use super::{
    find, lock, parse_listening, show, spawn, write_trickled, Spawned, DUMMY_BIN, EXIT_TIMEOUT,
    STARTUP_TIMEOUT,
};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Dummy backends
// ---------------------------------------------------------------------------------------------

/// One `goround-dummy` process per backend.
pub struct Dummies {
    /// The running processes; `None` while killed.
    procs: Vec<Option<Spawned>>,
    /// The port of each backend, stable across restarts.
    ports: Vec<u16>,
    /// Extra flags of each backend (`--delay`, `--health-status`), kept for restarts.
    args: Vec<Vec<String>>,
}

/// Spawn a dummy with `--port {port}` (0 for any) and `extra` flags.
fn spawn_dummy(port: u16, extra: &[String]) -> Spawned {
    let mut cmd = Command::new(DUMMY_BIN);
    cmd.args(["--port", &port.to_string()]);
    cmd.args(extra);
    spawn(cmd, "goround-dummy")
}

fn dummy_port(d: &Spawned) -> u16 {
    match d.stdout.wait_for(0, "listening on ", STARTUP_TIMEOUT) {
        Ok(line) => parse_listening(&line).port(),
        Err(e) => panic!(
            "goround-dummy did not start: {e}\nstderr:\n{}",
            d.stderr.snapshot().join("\n")
        ),
    }
}

impl Dummies {
    /// Start `n` dummies on ephemeral ports and wait until every one listens.
    pub fn start(n: usize) -> Dummies {
        Dummies::start_each(&vec![&[][..]; n])
    }

    /// Start one dummy per entry of `flags`, each with those extra flags (`--delay 200ms`).
    pub fn start_each(flags: &[&[&str]]) -> Dummies {
        let args: Vec<Vec<String>> = flags
            .iter()
            .map(|f| f.iter().map(|a| a.to_string()).collect())
            .collect();
        let procs: Vec<Spawned> = args.iter().map(|a| spawn_dummy(0, a)).collect();
        let ports = procs.iter().map(dummy_port).collect();
        Dummies {
            procs: procs.into_iter().map(Some).collect(),
            ports,
            args,
        }
    }

    /// The ports, in start order.
    pub fn ports(&self) -> Vec<u16> {
        self.ports.clone()
    }

    /// The port of backend `i`.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }

    /// The pid of backend `i` (it must be running).
    pub fn pid(&self, i: usize) -> u32 {
        match &self.procs[i] {
            Some(p) => p.child.pid(),
            None => panic!("dummy {i} is not running"),
        }
    }

    /// SIGTERM backend `i` and wait until it has exited (the dummy drains within 2 s).
    pub fn kill(&mut self, i: usize) {
        self.stop(i, libc::SIGTERM);
    }

    /// SIGKILL backend `i` and wait until it is gone.
    pub fn kill_hard(&mut self, i: usize) {
        self.stop(i, libc::SIGKILL);
    }

    fn stop(&mut self, i: usize, signal: libc::c_int) {
        let Some(mut p) = self.procs[i].take() else {
            panic!("dummy {i} is not running");
        };
        p.child.signal(signal);
        if p.child.wait_exit(EXIT_TIMEOUT).is_none() {
            panic!("dummy {i} still runs {EXIT_TIMEOUT:?} after signal {signal}");
        }
    }

    /// Start backend `i` again on its old port and wait until it listens.
    pub fn restart(&mut self, i: usize) {
        assert!(self.procs[i].is_none(), "dummy {i} is still running");
        let d = spawn_dummy(self.ports[i], &self.args[i]);
        let port = dummy_port(&d);
        assert_eq!(port, self.ports[i], "dummy {i} came back on another port");
        self.procs[i] = Some(d);
    }
}

/// The port in a dummy's `Hello from Server {port}\n`.
#[track_caller]
pub fn hello_port(body: &str) -> u16 {
    body.strip_prefix("Hello from Server ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a dummy hello: {body:?}"))
}

/// The dummy's `/big` pattern: byte i is `b'a' + (i % 26)`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Raw recording backend
// ---------------------------------------------------------------------------------------------

/// What the raw backend does with one request it has read.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Send these bytes, then read the next request on the same connection.
    KeepAlive(Vec<u8>),
    /// The same, with a pause of `PACED_PAUSE` after the first `.1` bytes: a gap in the
    /// stream that a proxy reading as fast as it can sees as a drained socket.
    KeepAlivePaused(Vec<u8>, usize),
    /// The same, `.1` bytes per write with `TRICKLE_PAUSE` between writes (and TCP_NODELAY):
    /// each piece reaches the proxy as its own read.
    KeepAliveTrickled(Vec<u8>, usize),
    /// Send these bytes, then close the connection.
    Close(Vec<u8>),
    /// Close the connection without sending a byte.
    CloseSilently,
    /// Never answer; hold the connection open until the peer closes or the backend is dropped.
    Never,
    /// Send these bytes (a 101 head), then echo every byte received, recording it too.
    UpgradeEcho(Vec<u8>),
}

/// The pause of [`Reply::KeepAlivePaused`].
pub const PACED_PAUSE: Duration = Duration::from_millis(50);

/// A scripted answer per recorded request (the raw request bytes, head and body).
pub type Script = dyn Fn(&[u8]) -> Reply + Send + Sync;

/// A backend that records exactly what it receives and answers with scripted bytes.
///
/// It shares no parser with the proxy: requests are cut by `\r\n\r\n`, then a body by
/// `Content-Length` or by [`parse_chunked`], nothing more.
pub struct RawBackend {
    /// Where it listens (127.0.0.1, ephemeral port).
    addr: SocketAddr,
    shared: Arc<BackendShared>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

struct BackendShared {
    state: Mutex<BackendState>,
    /// Signalled on every received byte batch and every complete request.
    changed: Condvar,
    /// Set on drop: the accept loop stops.
    stopping: AtomicBool,
    /// None: close every connection as soon as it is accepted, without reading.
    script: Option<Box<Script>>,
}

#[derive(Default)]
struct BackendState {
    /// Every byte received, one entry per accepted connection, in accept order.
    connections: Vec<Vec<u8>>,
    /// Every complete request (head and body) as received, in arrival order.
    requests: Vec<Vec<u8>>,
    /// Clones of the open sockets (by connection index), to unblock their threads on drop.
    /// A handler takes its clone out when it ends, so that the socket really closes.
    streams: Vec<Option<TcpStream>>,
    /// Whether each connection's handler has ended (the peer closed, or we did): its record in
    /// `connections` is final.
    ended: Vec<bool>,
}

impl RawBackend {
    /// Start a backend that answers every request with `script(request)`.
    pub fn start(script: impl Fn(&[u8]) -> Reply + Send + Sync + 'static) -> RawBackend {
        RawBackend::spawn(Some(Box::new(script)))
    }

    /// The same, listening on `bind` (another 127.0.0.x, a given port): backends that share a
    /// port and differ by address, as the members of a name do.
    pub fn start_on(
        bind: SocketAddr,
        script: impl Fn(&[u8]) -> Reply + Send + Sync + 'static,
    ) -> RawBackend {
        RawBackend::spawn_on(bind, Some(Box::new(script)))
    }

    /// Start a backend that answers every request with the same bytes and keeps the connection.
    pub fn fixed(response: &[u8]) -> RawBackend {
        let response = response.to_vec();
        RawBackend::start(move |_| Reply::KeepAlive(response.clone()))
    }

    /// Start a backend that closes every connection right after accepting it, reading nothing.
    pub fn close_on_accept() -> RawBackend {
        RawBackend::spawn(None)
    }

    fn spawn(script: Option<Box<Script>>) -> RawBackend {
        RawBackend::spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), script)
    }

    fn spawn_on(bind: SocketAddr, script: Option<Box<Script>>) -> RawBackend {
        let listener = match TcpListener::bind(bind) {
            Ok(l) => l,
            Err(e) => panic!("raw backend: bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("raw backend: local_addr: {e}"),
        };
        let shared = Arc::new(BackendShared {
            state: Mutex::new(BackendState::default()),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            script,
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                // Registered here, not in the handler thread, so that connection indexes follow
                // the accept order: a connection the proxy opened earlier has a lower index.
                let idx = register_connection(&accept_shared, &stream);
                let shared = Arc::clone(&accept_shared);
                thread::spawn(move || serve_connection(&shared, idx, stream));
            }
        });
        RawBackend {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bytes received so far, one entry per accepted connection (health probes included:
    /// they show up as empty entries).
    pub fn connections(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.state).connections.clone()
    }

    /// Every complete request so far.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.state).requests.clone()
    }

    /// The total number of bytes received on all connections.
    pub fn bytes_received(&self) -> usize {
        lock(&self.shared.state)
            .connections
            .iter()
            .map(Vec::len)
            .sum()
    }

    /// How many connections carried at least one byte (health probes connect and send nothing):
    /// the upstream connections the proxy used.
    pub fn used_connections(&self) -> usize {
        lock(&self.shared.state)
            .connections
            .iter()
            .filter(|c| !c.is_empty())
            .count()
    }

    /// Wait until `done` holds for the backend's records, up to `timeout`: `Ok` with them
    /// then, `Err` with them as they are at the deadline.
    fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&BackendState) -> bool,
    ) -> Result<MutexGuard<'_, BackendState>, MutexGuard<'_, BackendState>> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        loop {
            if done(&state) {
                return Ok(state);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(state);
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait until at least `n` complete requests have arrived and return all of them.
    #[track_caller]
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        match self.wait_until(timeout, |s| s.requests.len() >= n) {
            Ok(state) => state.requests.clone(),
            Err(state) => {
                let seen: Vec<String> = state.connections.iter().map(|c| show(c)).collect();
                panic!(
                    "raw backend: {} of {n} requests within {timeout:?}; bytes per connection:\n{}",
                    state.requests.len(),
                    seen.join("\n----\n")
                );
            }
        }
    }

    /// How many connections have been accepted so far: a mark for [`RawBackend::connections`]
    /// and [`RawBackend::wait_ended_since`].
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.state).connections.len()
    }

    /// Wait until every connection accepted at index `from` or later has ended (its peer closed
    /// it), so that their records are final; false on timeout.
    pub fn wait_ended_since(&self, from: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |s| s.ended.iter().skip(from).all(|&e| e))
            .is_ok()
    }

    /// Wait until the connections together have received at least `n` bytes.
    #[track_caller]
    pub fn wait_bytes(&self, n: usize, timeout: Duration) {
        let total = |s: &BackendState| s.connections.iter().map(Vec::len).sum::<usize>();
        if let Err(state) = self.wait_until(timeout, |s| total(s) >= n) {
            panic!(
                "raw backend: {} of {n} bytes within {timeout:?}",
                total(&state)
            );
        }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop with one last connection; it sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for s in lock(&self.shared.state).streams.iter_mut() {
            if let Some(s) = s.take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

/// Append received bytes to connection `idx`'s record and wake waiters.
fn record_bytes(shared: &BackendShared, idx: usize, bytes: &[u8]) {
    lock(&shared.state).connections[idx].extend_from_slice(bytes);
    shared.changed.notify_all();
}

/// Add an empty record for a freshly accepted connection and return its index.
fn register_connection(shared: &BackendShared, stream: &TcpStream) -> usize {
    let mut state = lock(&shared.state);
    state.connections.push(Vec::new());
    state.ended.push(false);
    let clone = match shared.script {
        Some(_) => stream.try_clone().ok(),
        None => None,
    };
    state.streams.push(clone);
    let idx = state.connections.len() - 1;
    drop(state);
    shared.changed.notify_all();
    idx
}

fn serve_connection(shared: &BackendShared, idx: usize, stream: TcpStream) {
    let Some(script) = &shared.script else {
        drop(stream); // closes it, unread
        lock(&shared.state).ended[idx] = true;
        shared.changed.notify_all();
        return;
    };
    serve_requests(shared, idx, script, stream);
    // The clone kept the socket open; dropping it is what closes the connection.
    let mut state = lock(&shared.state);
    state.streams[idx] = None;
    state.ended[idx] = true;
    drop(state);
    shared.changed.notify_all();
}

fn serve_requests(shared: &BackendShared, idx: usize, script: &Script, mut stream: TcpStream) {
    // A safety net so no thread outlives a test by long, whatever the proxy does.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Read one complete request.
        let request_len = loop {
            if let Some(len) = request_length(&pending) {
                break len;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    pending.extend_from_slice(&chunk[..n]);
                    record_bytes(shared, idx, &chunk[..n]);
                }
            }
        };
        let request: Vec<u8> = pending.drain(..request_len).collect();
        lock(&shared.state).requests.push(request.clone());
        shared.changed.notify_all();
        match script(&request) {
            Reply::KeepAlive(bytes) => {
                if stream.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::KeepAliveTrickled(bytes, piece) => {
                if write_trickled(&mut stream, &bytes, piece).is_err() {
                    return;
                }
            }
            Reply::KeepAlivePaused(bytes, at) => {
                let (first, rest) = bytes.split_at(at.min(bytes.len()));
                if stream.write_all(first).is_err() {
                    return;
                }
                thread::sleep(PACED_PAUSE);
                if stream.write_all(rest).is_err() {
                    return;
                }
            }
            Reply::Close(bytes) => {
                let _ = stream.write_all(&bytes);
                let _ = stream.shutdown(Shutdown::Write);
                // Read until the peer closes so our close sends FIN, not RST.
                drain_until_close(shared, idx, &mut stream, &mut chunk);
                return;
            }
            Reply::CloseSilently => return,
            Reply::Never => {
                drain_until_close(shared, idx, &mut stream, &mut chunk);
                return;
            }
            Reply::UpgradeEcho(bytes) => {
                if stream.write_all(&bytes).is_err() || stream.write_all(&pending).is_err() {
                    return;
                }
                loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            record_bytes(shared, idx, &chunk[..n]);
                            if stream.write_all(&chunk[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}

fn drain_until_close(shared: &BackendShared, idx: usize, stream: &mut TcpStream, chunk: &mut [u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    loop {
        match stream.read(chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => record_bytes(shared, idx, &chunk[..n]),
        }
    }
}

/// The length of the complete request at the start of `buf` (head and body), if it is complete.
/// Framing: `Transfer-Encoding` containing `chunked`, else `Content-Length`, else no body.
pub fn request_length(buf: &[u8]) -> Option<usize> {
    let head_len = find(buf, b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut content_length = 0usize;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        if name == "transfer-encoding" && value.contains("chunked") {
            chunked = true;
        } else if name == "content-length" {
            content_length = value.parse().unwrap_or(0);
        }
    }
    if chunked {
        match parse_chunked(&buf[head_len..]) {
            Ok(Some(body)) => Some(head_len + body.wire_len),
            // A malformed body: take what is there so the test sees it in the record.
            Err(_) => Some(buf.len()),
            Ok(None) => None,
        }
    } else if buf.len() >= head_len + content_length {
        Some(head_len + content_length)
    } else {
        None
    }
}

/// A decoded chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBody {
    /// The data, chunks concatenated.
    pub data: Vec<u8>,
    /// Bytes of the wire form, from the first size line to the final CRLF.
    pub wire_len: usize,
    /// Each chunk's size line as sent (without its CRLF), the last-chunk's included.
    pub size_lines: Vec<String>,
    /// The trailer section as sent (empty when there is none), without the final CRLF.
    pub trailers: Vec<u8>,
}

impl ChunkedBody {
    /// No extensions, no trailers, every size line plain hex without leading zeros, no empty
    /// chunk before the last: the form the proxy promises to re-chunk into.
    pub fn is_canonical(&self) -> bool {
        let Some((last, data_lines)) = self.size_lines.split_last() else {
            return false;
        };
        last == "0"
            && self.trailers.is_empty()
            && data_lines.iter().all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit()) && !l.starts_with('0')
            })
    }
}

/// Parse a chunked body at the start of `buf`. `Ok(None)`: not complete yet.
/// Lenient like a recipient should be: extensions and trailers are accepted (and reported).
pub fn parse_chunked(buf: &[u8]) -> Result<Option<ChunkedBody>, String> {
    let mut pos = 0;
    let mut body = ChunkedBody {
        data: Vec::new(),
        wire_len: 0,
        size_lines: Vec::new(),
        trailers: Vec::new(),
    };
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + eol]).to_string();
        let hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| format!("bad chunk size line {line:?} at offset {pos}"))?;
        body.size_lines.push(line);
        pos += eol + 2;
        if size == 0 {
            // Trailer section: field lines, then an empty line.
            if buf.len() < pos + 2 {
                return Ok(None);
            }
            if &buf[pos..pos + 2] == b"\r\n" {
                body.wire_len = pos + 2;
                return Ok(Some(body));
            }
            let Some(end) = find(&buf[pos..], b"\r\n\r\n") else {
                return Ok(None);
            };
            body.trailers = buf[pos..pos + end + 2].to_vec();
            body.wire_len = pos + end + 4;
            return Ok(Some(body));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.data.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(format!("no CRLF after chunk data at offset {}", pos + size));
        }
        pos += size + 2;
    }
}

/// Encode `chunks` as a chunked body (lowercase hex, no extensions, no trailers).
pub fn chunked(chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A `200 OK` with a Content-Length body, for raw backends.
pub fn ok_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A 127.0.0.1 port nothing listens on (bound then released: connects are refused).
pub fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("free_port: {e}"),
    }
}

/// A listener whose accept queue is full, so a new connect to it times out (SYNs are dropped).
/// Keep the returned values alive for as long as the port must stay black-holed.
pub fn blackhole_listener() -> (socket2::Socket, TcpStream, u16) {
    use socket2::{Domain, Socket, Type};
    let result = (|| -> io::Result<(Socket, TcpStream, u16)> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));
        socket.bind(&addr.into())?;
        // Linux: backlog 0 still queues one connection; the filler takes that place.
        socket.listen(0)?;
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an inet socket"))?;
        let filler = TcpStream::connect_timeout(&local, Duration::from_secs(1))?;
        Ok((socket, filler, local.port()))
    })();
    match result {
        Ok(v) => v,
        Err(e) => panic!("blackhole_listener: {e}"),
    }
}
