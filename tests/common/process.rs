//! Processes: children whose output is drained into [`Lines`] (so tests wait for a log line
//! instead of sleeping, and no pipe fills), [`Proxy`] (the `goround-mio` binary, started on
//! `127.0.0.1:0`, its address read from the `listening on` line; killed on drop), the
//! processes an upgrade leaves behind ([`Orphans`]), [`TempDir`] for the files they read and
//! write, and the timeouts every wait uses.

use super::lock;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
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

/// The proxy binary under test.
pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_goround-mio");
/// The dummy backend binary.
pub const DUMMY_BIN: &str = env!("CARGO_BIN_EXE_goround-dummy");

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

    /// Run the proxy with exactly `args` until it exits (`--check`, `--help`, a usage error),
    /// within [`IO_TIMEOUT`].
    #[track_caller]
    pub fn run(args: &[&str]) -> Finished {
        let mut cmd = Command::new(PROXY_BIN);
        cmd.args(args);
        run_with_timeout(cmd, &format!("goround-mio {}", args.join(" ")), IO_TIMEOUT)
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

    /// Where its HTTPS listener listens (`[tls] listen`): read from its `HTTPS on ADDR` line.
    pub fn https_addr(&self) -> SocketAddr {
        let line = self.wait_for_log("HTTPS on ", LOG_TIMEOUT);
        let text = line
            .split("HTTPS on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("");
        match text.parse() {
            Ok(a) => a,
            Err(e) => panic!("no HTTPS address in {line:?}: {e}"),
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

    /// Send SIGHUP and wait for the reload's verdict: `Ok` with the `configuration reloaded
    /// from ...` line, `Err` with the `configuration not reloaded ...` one, which says why.
    #[track_caller]
    pub fn reload(&mut self) -> Result<String, String> {
        let mark = self.log_mark();
        self.signal(libc::SIGHUP);
        let line = self.wait_for_log_since(mark, "configuration ", LOG_TIMEOUT);
        if line.contains("configuration reloaded from") {
            Ok(line)
        } else if line.contains("configuration not reloaded") {
            Err(line)
        } else {
            panic!("SIGHUP: not a reload verdict: {line}");
        }
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

/// The lines of the file at `path` (an access log the proxy writes) once it has at least `n`,
/// waiting up to [`LOG_TIMEOUT`]; panics with what the file holds by then.
#[track_caller]
pub fn wait_file_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines {LOG_TIMEOUT:?} later, want {n}:\n{text}",
            path.display(),
            lines.len()
        );
        // Another process writes the file: no event to wait on from here, so poll it.
        thread::sleep(Duration::from_millis(20));
    }
}

/// The first executable file called `name` in a directory of `PATH` (what `command -v` finds),
/// if any: the tools some tests need (build.rs looks them up the same way).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

// ---------------------------------------------------------------------------------------------
// Upgrades
// ---------------------------------------------------------------------------------------------

/// The new process's pid in the `upgrade: started ... (pid N), ...` line a SIGUSR2 logs.
#[track_caller]
pub fn upgraded_pid(started: &str) -> i32 {
    started
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {started:?}"))
}

impl Proxy {
    /// SIGUSR2, then wait until the new process said it is ready and this one exited (code 0);
    /// the new process is adopted by `orphans` and its pid returned.
    #[track_caller]
    pub fn upgrade(&mut self, orphans: &Orphans) -> i32 {
        let mark = self.log_mark();
        self.signal(libc::SIGUSR2);
        let started = self.wait_for_log_since(mark, "upgrade: started", LOG_TIMEOUT);
        let pid = upgraded_pid(&started);
        orphans.adopt(pid);
        self.wait_for_log_since(
            mark,
            &format!("upgrade: pid {pid} is ready"),
            Duration::from_secs(15),
        );
        assert_eq!(
            self.wait_exit(Duration::from_secs(20)),
            0,
            "the old process drains and exits"
        );
        pid
    }
}

/// The processes upgrades started: children of the proxy, not of the test, so no [`ChildGuard`]
/// holds them. Every one adopted gets SIGTERM on drop, even when the test panics.
pub struct Orphans(Mutex<Vec<i32>>);

impl Orphans {
    /// None yet.
    pub fn new() -> Orphans {
        Orphans(Mutex::new(Vec::new()))
    }

    /// SIGTERM `pid` when this is dropped.
    pub fn adopt(&self, pid: i32) {
        lock(&self.0).push(pid);
    }
}

impl Drop for Orphans {
    fn drop(&mut self) {
        for &pid in lock(&self.0).iter() {
            // SAFETY: kill(2) takes plain integers and has no memory effects in this process;
            // the pid was read from the proxy's own log, and is at worst gone (ESRCH).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// Wait up to `timeout` until process `pid` has exited; false when it still runs. For a process
/// that is not our child (an upgraded one): /proc is polled, and a zombie counts as gone.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| !stat.contains(") Z "))
            .unwrap_or(false);
        if !running {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        // No waitpid for another parent's child: a 10 ms poll of /proc.
        thread::sleep(Duration::from_millis(10));
    }
}
