//! The black-box test harness: real processes, real sockets, 127.0.0.1 only.
//!
//! # Layout
//! - [`Lines`]: a child's output pipe drained by a thread into lines + a `Condvar`, so tests wait
//!   for a log line instead of sleeping, and the pipe never fills.
//! - [`Proxy`]: the `goround-mio` binary, started on `127.0.0.1:0`, its address read from the
//!   `listening on` line; signals, exit codes, logs. Killed on drop.
//! - [`Dummies`]: one `goround-dummy` process per backend, so each can be killed and restarted
//!   alone on the same port. Killed on drop.
//! - [`RawBackend`]: a scripted backend with its own tiny parser that records the exact bytes it
//!   receives, to assert what the proxy forwards byte for byte.
//! - [`ResponseReader`] and [`send_raw`], [`get`]: clients with their own response parser. None
//!   of this shares code with the crate's `http` module: that module is what is under test.
//!
//! Every wait has a timeout and fails with a message that says what was awaited and what was
//! seen instead.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long a process may take to print its `listening on` line (a debug build on a busy box).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read/write timeout of every test socket: a proxy that stops answering fails the test in
/// seconds instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an expected log line. The events behind them take milliseconds.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a process may take to exit after SIGTERM (the dummy promises 2 s).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The proxy's head size limit (the contract's 32 KiB), for the 431 test.
pub const MAX_HEAD: usize = 32 * 1024;
/// Largest response head the test client accepts before calling it garbage.
const CLIENT_MAX_HEAD: usize = 256 * 1024;

/// The proxy binary under test.
pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_goround-mio");
/// The dummy backend binary.
pub const DUMMY_BIN: &str = env!("CARGO_BIN_EXE_goround-dummy");

/// Lock a mutex, shrugging off poisoning: a panicking test thread must not hide the real failure
/// behind a `PoisonError` in `Drop`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes as text for assertion messages (`\r\n` made visible).
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 4096;
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]).replace('\r', "\\r");
    if bytes.len() > MAX {
        format!("{s}... ({} bytes in all)", bytes.len())
    } else {
        s
    }
}

/// Assert two byte strings are equal, printing both readably when they are not.
#[track_caller]
pub fn assert_bytes_eq(actual: &[u8], expected: &[u8], what: &str) {
    if actual != expected {
        panic!(
            "{what}: bytes differ\n--- expected ({} bytes):\n{}\n--- actual ({} bytes):\n{}\n",
            expected.len(),
            show(expected),
            actual.len(),
            show(actual)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------------------------

/// The lines a child process wrote to one pipe, filled by a background thread.
pub struct Lines {
    /// The lines so far and whether the pipe has closed (the process exited).
    state: Mutex<LinesState>,
    /// Signalled on every new line and on close.
    changed: Condvar,
}

struct LinesState {
    lines: Vec<String>,
    closed: bool,
}

impl Lines {
    /// Start a thread that reads `pipe` line by line until EOF.
    pub fn drain(pipe: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines {
            state: Mutex::new(LinesState {
                lines: Vec::new(),
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_string();
                        lock(&sink.state).lines.push(text);
                        sink.changed.notify_all();
                    }
                }
            }
            lock(&sink.state).closed = true;
            sink.changed.notify_all();
        });
        lines
    }

    /// Wait until the pipe has closed (the process exited); false on timeout.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        while !state.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Every line so far.
    pub fn snapshot(&self) -> Vec<String> {
        lock(&self.state).lines.clone()
    }

    /// How many lines so far: a mark for [`Lines::wait_for`] to look only at later lines.
    pub fn len(&self) -> usize {
        lock(&self.state).lines.len()
    }

    /// Whether no line has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first line at index `from` or later that contains `needle`, waiting up to `timeout`.
    pub fn wait_for(&self, from: usize, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        let mut checked = from;
        loop {
            if let Some(line) = state
                .lines
                .iter()
                .skip(checked)
                .find(|l| l.contains(needle))
            {
                return Ok(line.clone());
            }
            checked = checked.max(state.lines.len());
            if state.closed {
                return Err(format!(
                    "the process exited before writing a line containing {needle:?}; it wrote:\n{}",
                    state.lines.join("\n")
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no line containing {needle:?} within {timeout:?}; lines so far:\n{}",
                    state.lines.join("\n")
                ));
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A child process that is killed (SIGKILL) and reaped on drop, even when the test panics.
pub struct ChildGuard {
    child: Child,
    /// What this child is, for messages.
    name: String,
}

/// A spawned child with both output pipes drained.
pub struct Spawned {
    /// The process.
    pub child: ChildGuard,
    /// Its stdout lines.
    pub stdout: Arc<Lines>,
    /// Its stderr lines.
    pub stderr: Arc<Lines>,
}

/// Spawn `cmd` with piped stdout/stderr drained into [`Lines`] and `RUST_LOG` unset.
pub fn spawn(mut cmd: Command, name: &str) -> Spawned {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory shared with the parent. PR_SET_PDEATHSIG fires
    // when the *thread* that forked exits; every test spawns and drops its children on its own
    // thread, so this only matters when the test process itself is killed, which is its purpose:
    // no orphaned proxies or dummies left holding ports.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => panic!("cannot spawn {name}: {e}"),
    };
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        panic!("{name}: stdout/stderr were not piped");
    };
    Spawned {
        child: ChildGuard {
            child,
            name: name.to_string(),
        },
        stdout: Lines::drain(out),
        stderr: Lines::drain(err),
    }
}

impl ChildGuard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` (e.g. `libc::SIGTERM`) unless the process has already been reaped.
    pub fn signal(&mut self, signal: libc::c_int) {
        // Only we reap this child, so while try_wait says "running" its pid cannot be reused.
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{}: cannot signal, it already exited ({status})", self.name);
        }
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(libc::pid_t::MAX);
        // SAFETY: kill(2) takes plain integers and has no memory effects in this process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "{}: kill({pid}, {signal}) failed: {}",
            self.name,
            io::Error::last_os_error()
        );
    }

    /// Wait for the process to exit, up to `timeout`. `None` when it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("{}: waitpid failed: {e}", self.name),
            }
            if Instant::now() >= deadline {
                return None;
            }
            // No pidfd in std: a 5 ms poll is the cheapest portable wait with a deadline.
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished command wrote and how it ended.
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout, line by line.
    pub stdout: Vec<String>,
    /// Its stderr, line by line.
    pub stderr: Vec<String>,
}

/// Run a command to completion with a deadline (it is killed and the test fails past it).
#[track_caller]
pub fn run_with_timeout(cmd: Command, name: &str, timeout: Duration) -> Finished {
    let mut spawned = spawn(cmd, name);
    let Some(status) = spawned.child.wait_exit(timeout) else {
        panic!(
            "{name} still runs after {timeout:?}; stderr so far:\n{}",
            spawned.stderr.snapshot().join("\n")
        );
    };
    // The pipes close when the process exits; let the drain threads catch up.
    spawned.stdout.wait_closed(IO_TIMEOUT);
    spawned.stderr.wait_closed(IO_TIMEOUT);
    Finished {
        status,
        stdout: spawned.stdout.snapshot(),
        stderr: spawned.stderr.snapshot(),
    }
}

/// Extract the address after `listening on ` in a log line.
pub fn parse_listening(line: &str) -> SocketAddr {
    let Some(pos) = line.find("listening on ") else {
        panic!("no `listening on` in {line:?}");
    };
    let rest = &line[pos + "listening on ".len()..];
    let text = rest.split_whitespace().next().unwrap_or("");
    match text.parse() {
        Ok(addr) => addr,
        Err(e) => panic!("bad address {text:?} in {line:?}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// A running `goround-mio`.
pub struct Proxy {
    child: ChildGuard,
    /// The address from its `listening on` line.
    addr: SocketAddr,
    /// Its stderr (the log).
    log: Arc<Lines>,
}

/// The log line fragment for `127.0.0.1:{port}` going down (name as given = address).
pub fn down_line(port: u16) -> String {
    format!("upstream 127.0.0.1:{port} (127.0.0.1:{port}) in pool default is down")
}

/// The log line fragment for `127.0.0.1:{port}` coming back.
pub fn up_line(port: u16) -> String {
    format!("upstream 127.0.0.1:{port} (127.0.0.1:{port}) in pool default is up")
}

impl Proxy {
    /// Start the proxy with `args`, adding `--listen 127.0.0.1:0` and `--workers 1` unless the
    /// args say otherwise, and wait for its `listening on` line.
    pub fn start(args: &[&str]) -> Proxy {
        let mut full: Vec<&str> = Vec::new();
        if !args.contains(&"--listen") {
            full.extend(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--workers") {
            full.extend(["--workers", "1"]);
        }
        full.extend_from_slice(args);
        Proxy::start_exact(&full)
    }

    /// Start the proxy with exactly `args` (nothing added: the config file may set `listen`)
    /// and wait for its `listening on` line.
    pub fn start_exact(full: &[&str]) -> Proxy {
        let mut cmd = Command::new(PROXY_BIN);
        cmd.args(full);
        Proxy::spawn(cmd)
    }

    /// Start the proxy as `cmd` says (its own arguments and environment) and wait for its
    /// `listening on` line.
    pub fn spawn(cmd: Command) -> Proxy {
        let what = format!("{cmd:?}");
        let spawned = spawn(cmd, "goround-mio");
        let line = match spawned.stderr.wait_for(0, "listening on ", STARTUP_TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!("{what} did not start: {e}"),
        };
        Proxy {
            child: spawned.child,
            addr: parse_listening(&line),
            log: spawned.stderr,
        }
    }

    /// Start the proxy with the config file `text` (written to a fresh temp dir, returned too
    /// so it lives as long as the proxy), plus `extra` flags.
    pub fn with_config(text: &str, extra: &[&str]) -> (Proxy, TempDir) {
        let dir = TempDir::new();
        let path = dir.write("goround.toml", text);
        let path = path.to_string_lossy().into_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        (Proxy::start(&args), dir)
    }

    /// Start the proxy in front of `127.0.0.1:{port}` for each port, plus `extra` flags.
    pub fn with_upstreams(ports: &[u16], extra: &[&str]) -> Proxy {
        let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args: Vec<&str> = Vec::new();
        for u in &upstreams {
            args.extend(["--upstream", u.as_str()]);
        }
        args.extend_from_slice(extra);
        Proxy::start(&args)
    }

    /// Where its admin listener listens (started with `--admin` or `[admin]`): read from its
    /// `admin pages on http://ADDR/` line.
    pub fn admin_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("admin pages on http://", LOG_TIMEOUT);
        let rest = line.split("admin pages on http://").nth(1).unwrap_or("");
        let addr = rest.split('/').next().unwrap_or("");
        match addr.parse() {
            Ok(a) => a,
            Err(e) => panic!("no admin address in {line:?}: {e}"),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.log.snapshot()
    }

    /// The number of log lines so far, to wait only for lines logged after this point.
    pub fn log_mark(&self) -> usize {
        self.log.len()
    }

    /// Wait for a log line containing `needle` (anywhere in the log) and return it.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_since(0, needle, timeout)
    }

    /// Wait for a log line containing `needle` logged at or after `mark` (see [`Proxy::log_mark`]).
    #[track_caller]
    pub fn wait_for_log_since(&self, mark: usize, needle: &str, timeout: Duration) -> String {
        match self.log.wait_for(mark, needle, timeout) {
            Ok(line) => line,
            Err(e) => panic!("proxy log: {e}"),
        }
    }

    /// Whether some log line contains `needle` right now.
    pub fn has_logged(&self, needle: &str) -> bool {
        self.logs().iter().any(|l| l.contains(needle))
    }

    /// Ask for a graceful shutdown.
    pub fn sigterm(&mut self) {
        self.child.signal(libc::SIGTERM);
    }

    /// Ask for a graceful shutdown the Ctrl-C way.
    pub fn sigint(&mut self) {
        self.child.signal(libc::SIGINT);
    }

    /// Send it `signal` (SIGHUP, SIGUSR1, ...).
    pub fn signal(&mut self, signal: libc::c_int) {
        self.child.signal(signal);
    }

    /// Wait for the proxy to exit and return its exit code; panics on timeout or a signal death.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        match self.child.wait_exit(timeout) {
            Some(status) => match status.code() {
                Some(code) => code,
                None => panic!("proxy died from a signal: {status}; log:\n{}", self.dump()),
            },
            None => panic!("proxy still runs {timeout:?} later; log:\n{}", self.dump()),
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    fn dump(&self) -> String {
        self.logs().join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if thread::panicking() {
            // libtest shows a failed test's captured output: the log explains most failures.
            let state = match self.child.child.try_wait() {
                Ok(Some(status)) => format!("it had exited: {status}"),
                _ => "it was still running".to_string(),
            };
            eprintln!("---- goround-mio log ({state}) ----\n{}\n----", self.dump());
        }
    }
}

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

/// A directory of its own under the system's temp dir, removed on drop: config files.
pub struct TempDir {
    path: std::path::PathBuf,
}

impl TempDir {
    /// A fresh, empty directory.
    pub fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("goround-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        if let Err(e) = std::fs::create_dir_all(&path) {
            panic!("{}: {e}", path.display());
        }
        TempDir { path }
    }

    /// Write `text` to the file `name` in it and return its path.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.path.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            panic!("{}: {e}", path.display());
        }
        path
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
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
        let listener = match TcpListener::bind("127.0.0.1:0") {
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

    /// Wait until at least `n` complete requests have arrived and return all of them.
    #[track_caller]
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        loop {
            if state.requests.len() >= n {
                return state.requests.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let seen: Vec<String> = state.connections.iter().map(|c| show(c)).collect();
                panic!(
                    "raw backend: {} of {n} requests within {timeout:?}; bytes per connection:\n{}",
                    state.requests.len(),
                    seen.join("\n----\n")
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
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
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        loop {
            if state.ended.iter().skip(from).all(|&e| e) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait until the connections together have received at least `n` bytes.
    #[track_caller]
    pub fn wait_bytes(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        loop {
            let total: usize = state.connections.iter().map(Vec::len).sum();
            if total >= n {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!("raw backend: {total} of {n} bytes within {timeout:?}");
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
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

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/// Connect to `addr` with [`IO_TIMEOUT`] read/write timeouts and Nagle off.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(s) => s,
        Err(e) => panic!("connect to {addr}: {e}"),
    };
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    stream
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
// Process statistics
// ---------------------------------------------------------------------------------------------

/// A `kB` field of /proc/PID/status (e.g. `VmRSS`, `VmHWM`), in KiB.
#[track_caller]
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => panic!("{path}: {e}"),
    };
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {path}"))
}

/// The resident set size of `pid`, in KiB.
pub fn vm_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS")
}

/// The peak resident set size of `pid` since it started, in KiB.
pub fn vm_hwm_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM")
}

/// The value of the sample `name` (the metric name with its labels, exactly as written) in a
/// Prometheus text exposition.
pub fn metric_value<'a>(metrics: &'a str, name: &str) -> Option<&'a str> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
}
