//! SIGUSR2: a binary upgrade without a refused connection. The running process starts the
//! binary at its own path (the new one, if it was replaced) with its own arguments, handing it
//! the listening sockets as systemd would (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, the
//! descriptors from 3 on) and the write end of a pipe (`GOROUND_READY_FD`). The new process
//! accepts on the same sockets at once; once its first health checks are done it writes to the
//! pipe, and the old one stops accepting, drains what is in flight and exits. If the new one
//! fails to start (it exits, or says nothing within [`READY_TIMEOUT`]), the old one keeps
//! serving and logs why.

use super::systemd;
use super::{lock, Control};
use log::{error, info, warn};
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a new binary may take to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The variable naming the descriptor a new process writes to once ready.
pub const READY_FD_VAR: &str = "GOROUND_READY_FD";

/// Start an upgrade (the signal thread calls this on SIGUSR2).
pub fn start(control: &Arc<Control>) {
    if control.upgrading.swap(true, Ordering::AcqRel) {
        warn!("SIGUSR2: an upgrade is already under way");
        return;
    }
    if control.shared.shutdown.load(Ordering::Acquire) {
        warn!("SIGUSR2: shutting down already; no upgrade");
        control.upgrading.store(false, Ordering::Release);
        return;
    }
    let result = spawn(control);
    match result {
        Ok((child, ready)) => {
            let control = Arc::clone(control);
            let waiter = std::thread::Builder::new()
                .name("upgrade".into())
                .spawn(move || wait_ready(&control, child, ready));
            if let Err(e) = waiter {
                error!("upgrade: cannot wait for the new process: {e}");
            }
        }
        Err(e) => {
            error!("upgrade failed, still serving: {e}");
            control.upgrading.store(false, Ordering::Release);
        }
    }
}

/// The binary to start: our own path; after the file was replaced, /proc/self/exe says
/// `PATH (deleted)` and PATH is the new binary.
fn binary() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.as_os_str().as_encoded_bytes();
    Ok(match text.strip_suffix(b" (deleted)") {
        // SAFETY: a prefix of an OsStr's encoded bytes that ends before an ASCII suffix is a
        // valid encoded OsStr.
        Some(p) => {
            std::path::PathBuf::from(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(p) })
        }
        None => exe,
    })
}

/// A descriptor duplicated to a high number, close-on-exec (a safe place while the child is
/// set up: the low numbers 3.. may be taken).
fn dup_high(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one we own, or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 1000) };
    if new < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A new pipe, both ends close-on-exec: (read end, write end).
fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut pipe = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array we own.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot make a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: both ends were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) })
}

/// Start the new process with our sockets and a readiness pipe.
fn spawn(control: &Control) -> Result<(std::process::Child, OwnedFd), String> {
    let exe = binary().map_err(|e| format!("cannot find my binary: {e}"))?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for l in lock(&control.listeners).iter() {
        fds.push(dup_high(l.as_raw_fd()).map_err(|e| format!("cannot pass a listener: {e}"))?);
        names.push("http");
    }
    for l in lock(&control.tls_listeners).iter() {
        fds.push(
            dup_high(l.as_raw_fd()).map_err(|e| format!("cannot pass an HTTPS listener: {e}"))?,
        );
        names.push("https");
    }
    let tcp_names: Vec<String>;
    {
        let tcp = lock(&control.tcp_listeners);
        for (_, l) in tcp.iter() {
            fds.push(
                dup_high(l.as_raw_fd()).map_err(|e| format!("cannot pass a TCP listener: {e}"))?,
            );
        }
        tcp_names = tcp.iter().map(|(i, _)| format!("tcp{i}")).collect();
    }
    names.extend(tcp_names.iter().map(String::as_str));
    if let Some(a) = lock(&control.admin).as_ref() {
        fds.push(
            dup_high(a.as_raw_fd()).map_err(|e| format!("cannot pass the admin listener: {e}"))?,
        );
        names.push("admin");
    }
    if fds.is_empty() {
        return Err("no listening socket to hand over".to_string());
    }
    let (read_end, write_end) = pipe()?;
    let write_high = dup_high(write_end.as_raw_fd()).map_err(|e| format!("pipe: {e}"))?;
    drop(write_end);
    let ready_fd = systemd::LISTEN_FDS_START + fds.len() as RawFd;
    // The session tickets' keys go through a pipe of their own (never an argument or the
    // environment, which other processes of the user can read), so that clients resume their
    // sessions on the new process.
    let keys = control
        .shared
        .current()
        .0
        .tls
        .as_ref()
        .map(|t| t.export_tickets());
    let keys_pipe = match keys {
        Some(bytes) => Some(key_pipe(&bytes)?),
        None => None,
    };
    let keys_fd = ready_fd + 1;
    let keys_source = keys_pipe.as_ref().map(|p| p.as_raw_fd());
    let sources: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let ready_source = write_high.as_raw_fd();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = Command::new("/bin/sh");
    // `$$` is the shell's pid, which `exec` keeps: LISTEN_PID must name the new process.
    cmd.arg("-c")
        .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"")
        .arg(&exe)
        .args(&args)
        .env("LISTEN_FDS", sources.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env(READY_FD_VAR, ready_fd.to_string())
        .env_remove(crate::tls::TICKET_KEYS_FD_VAR)
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null());
    // After the removal above (a variable we inherited ourselves names no pipe of ours).
    if keys_source.is_some() {
        cmd.env(crate::tls::TICKET_KEYS_FD_VAR, keys_fd.to_string());
    }
    // SAFETY: between fork and exec only dup2 runs (async-signal-safe); it puts the sockets at
    // 3.. and the pipe after them, and dup2 clears close-on-exec on the copies.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &fd) in sources.iter().enumerate() {
                if libc::dup2(fd, systemd::LISTEN_FDS_START + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::dup2(ready_source, ready_fd) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(k) = keys_source {
                if libc::dup2(k, keys_fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    info!(
        "upgrade: started {} (pid {}), handing it {} listening socket{}",
        exe.display(),
        child.id(),
        fds.len(),
        if fds.len() == 1 { "" } else { "s" }
    );
    // Our copies of what the child got go now: the pipe's write end must be the child's
    // alone, so its exit reads as an end of file.
    drop(write_high);
    drop(fds);
    drop(keys_pipe);
    Ok((child, read_end))
}

/// A pipe holding `bytes` (at most a few KiB: within the pipe's buffer), its write end closed:
/// the read end, close-on-exec and at a high number, to be put where the child reads it.
fn key_pipe(bytes: &[u8]) -> Result<OwnedFd, String> {
    use std::io::Write;
    let (read_end, write_end) = pipe()?;
    std::fs::File::from(write_end)
        .write_all(bytes)
        .map_err(|e| format!("cannot hand the ticket keys over: {e}"))?;
    dup_high(read_end.as_raw_fd()).map_err(|e| format!("pipe: {e}"))
}

/// In a new process started by an upgrade: the session tickets' keys its parent handed over,
/// read at start. `None` when not started that way.
pub fn claim_ticket_keys() -> Option<Vec<u8>> {
    use std::io::Read;
    let fd = inherited_fd(crate::tls::TICKET_KEYS_FD_VAR)?;
    // SAFETY: the upgrading parent put the pipe's read end at this descriptor for us to own.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Wait for the new process to say it is ready, then stop; or keep serving if it does not.
fn wait_ready(control: &Control, mut child: std::process::Child, ready: OwnedFd) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pipe = std::fs::File::from(ready);
    let fd = pipe.as_raw_fd();
    let verdict = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(format!("it said nothing within {READY_TIMEOUT:?}"));
        }
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads one pollfd we own, for a descriptor we own.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(1000) as i32) };
        if n <= 0 {
            continue;
        }
        let mut byte = [0u8; 1];
        match pipe.read(&mut byte) {
            Ok(1) => break Ok(()),
            Ok(_) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                break Err(format!("it exited before it was ready ({status})"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(format!("cannot read its readiness: {e}")),
        }
    };
    match verdict {
        Ok(()) => {
            info!(
                "upgrade: pid {} is ready; this process stops accepting and drains",
                child.id()
            );
            control.begin_shutdown();
        }
        Err(why) => {
            error!("upgrade failed, still serving: the new process {why}");
            let _ = child.kill();
            let _ = child.wait();
            control.upgrading.store(false, Ordering::Release);
        }
    }
}

/// In a new process started by an upgrade: the pipe to say "ready" on, taken at start (and
/// kept from our own children). `None` when not started that way.
pub fn claim_ready_pipe() -> Option<std::fs::File> {
    let fd = inherited_fd(READY_FD_VAR)?;
    // SAFETY: fcntl with valid arguments; an invalid descriptor just fails.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: the upgrading parent put the pipe's write end at this descriptor for us to own.
    Some(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Say we are ready to whoever waits: an upgrading parent's pipe, the service manager.
pub fn announce_ready(pipe: Option<std::fs::File>) {
    if let Some(mut f) = pipe {
        use std::io::Write;
        let _ = f.write_all(b"1");
    }
    systemd::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
}

/// The descriptor an upgrading parent named in the variable `var`, when it was meant for this
/// process: LISTEN_PID names us only then (a child of ours inherits the variables, not the
/// descriptors).
fn inherited_fd(var: &str) -> Option<RawFd> {
    let fd = std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
        .filter(|&fd| fd > 2)?;
    let ours = std::env::var("LISTEN_PID").ok()? == std::process::id().to_string();
    ours.then_some(fd)
}
