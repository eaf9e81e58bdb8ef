//! What systemd (or a goround-mio being upgraded) hands a new process, and what it is told
//! back: listening sockets by descriptor (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, as in
//! sd_listen_fds(3)) and readiness (`NOTIFY_SOCKET`, sd_notify(3)).

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// The first inherited descriptor (SD_LISTEN_FDS_START).
pub const LISTEN_FDS_START: RawFd = 3;

/// A listening socket handed over, with its name (`http` unless `LISTEN_FDNAMES` says else).
#[derive(Debug)]
pub struct Inherited {
    /// `LISTEN_FDNAMES`' entry: `admin` for the admin listener, anything else serves traffic.
    pub name: String,
    /// The socket.
    pub listener: TcpListener,
}

/// Which descriptors the environment says are ours: `n` from `LISTEN_FDS` when `LISTEN_PID`
/// is this process, with their names. Pure, for the tests.
pub fn parse_env(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    pid: u32,
) -> Vec<String> {
    let ours = listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid);
    let n = listen_fds
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| ours && n <= 1024)
        .unwrap_or(0);
    let mut given: Vec<String> = names
        .map(|s| s.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    given.resize(n, String::new());
    given
        .into_iter()
        .map(|s| if s.is_empty() { "http".to_string() } else { s })
        .collect()
}

/// Take the sockets this process inherited, if any. Each must be a listening TCP socket; one
/// that is not is closed with a warning.
pub fn inherited() -> Vec<Inherited> {
    let var = |k: &str| std::env::var(k).ok();
    let names = parse_env(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    let mut out = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let fd = LISTEN_FDS_START + i as RawFd;
        // SAFETY: LISTEN_PID names this process, so descriptor `fd` was handed to it to own
        // (sd_listen_fds(3)); nothing else in this process refers to it.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        match listener.local_addr() {
            Ok(_) => {
                // Our own descriptors stay ours: no child inherits them by accident.
                // SAFETY: fcntl on a descriptor we own, with a valid command and flag.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                if let Err(e) = listener.set_nonblocking(true) {
                    log::warn!("inherited descriptor {fd}: {e}");
                    continue;
                }
                out.push(Inherited { name, listener });
            }
            Err(e) => log::warn!("inherited descriptor {fd} is not a listening socket: {e}"),
        }
    }
    out
}

/// Tell the service manager `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `MAINPID=n`),
/// when `NOTIFY_SOCKET` is set; silently nothing otherwise.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::warn!("cannot notify the service manager ({state:?}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_descriptors_meant_for_this_process_are_taken() {
        assert_eq!(parse_env(Some("42"), Some("2"), None, 42), ["http", "http"]);
        assert_eq!(
            parse_env(Some("42"), Some("3"), Some("http:http:admin"), 42),
            ["http", "http", "admin"]
        );
        assert!(
            parse_env(Some("41"), Some("2"), None, 42).is_empty(),
            "another pid"
        );
        assert!(parse_env(None, Some("2"), None, 42).is_empty());
        assert!(parse_env(Some("42"), Some("x"), None, 42).is_empty());
        assert_eq!(
            parse_env(Some("42"), Some("1"), Some("web:extra"), 42),
            ["web"]
        );
    }
}
