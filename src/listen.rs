//! The listening sockets: one per worker on the same address, through SO_REUSEPORT, so the
//! kernel spreads new connections over the workers.
//!
//! SO_REUSEPORT would also let a second goround-mio silently share our port. Before binding,
//! a plain (non-REUSEPORT) socket is bound to the address: if anything listens there already,
//! that bind fails with EADDRINUSE and so do we, clearly.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};

/// Bind `count` listeners on `addr` (`dual_stack`: an IPv6 wildcard that takes IPv4 too).
/// Port 0 picks one free port shared by all. Falls back to IPv4 when IPv6 is unavailable for a
/// dual-stack wildcard.
pub fn bind(
    addr: SocketAddr,
    dual_stack: bool,
    count: usize,
    backlog: u32,
) -> io::Result<Vec<TcpListener>> {
    let addr = match check_free(addr, dual_stack) {
        Ok(a) => a,
        Err(e) if dual_stack && is_no_ipv6(&e) => {
            let v4 = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, addr.port()));
            log::info!("IPv6 is not available ({e}); listening on IPv4 only");
            return bind(v4, false, count, backlog);
        }
        Err(e) => return Err(e),
    };
    (0..count.max(1))
        .map(|_| listener(addr, dual_stack, backlog))
        .collect()
}

fn is_no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

fn socket(addr: SocketAddr, dual_stack: bool) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack && addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Lets a restarted proxy bind while connections of the previous one sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Bind a socket without SO_REUSEPORT to learn whether the address is free; returns the
/// address with the port the kernel chose when `addr` had port 0.
fn check_free(addr: SocketAddr, dual_stack: bool) -> io::Result<SocketAddr> {
    let probe = socket(addr, dual_stack)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                format!("{addr} is already in use (is another proxy running?)"),
            )
        } else {
            io::Error::new(e.kind(), format!("cannot bind {addr}: {e}"))
        }
    })?;
    let local = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no socket address"))?;
    Ok(local)
}

fn listener(addr: SocketAddr, dual_stack: bool, backlog: u32) -> io::Result<TcpListener> {
    let socket = socket(addr, dual_stack)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    // Accepted sockets inherit delayed ACKs from the start (instead of the quick ACKs of a new
    // connection): the request is acknowledged by the response that carries the answer, not
    // by a segment of its own, one segment less per new connection. HAProxy does the same for
    // HTTP listeners. Only an optimisation: a kernel that refuses it loses nothing else.
    let _ = socket.set_tcp_quickack(false);
    Ok(socket.into())
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit: every connection costs two descriptors.
/// Returns the soft limit in force afterwards.
pub fn raise_nofile_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; the resource constant is valid.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        log::warn!(
            "getrlimit(RLIMIT_NOFILE) failed: {}",
            std::io::Error::last_os_error()
        );
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let old = lim.rlim_cur;
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising soft up to hard needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            log::debug!("RLIMIT_NOFILE raised from {old} to {}", raised.rlim_cur);
            lim = raised;
        } else {
            log::warn!(
                "setrlimit(RLIMIT_NOFILE) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// One plain nonblocking listener on `addr` (SO_REUSEADDR, so a restart binds despite
/// TIME_WAIT; SO_REUSEPORT only with `reuse_port`): what goround-dummy's listeners are.
pub fn plain_listener(addr: SocketAddr, reuse_port: bool, backlog: u32) -> io::Result<TcpListener> {
    let socket = socket(addr, false)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_one_shared_port() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let ls = bind(addr, false, 2, 16).unwrap();
        let a = ls[0].local_addr().unwrap();
        let b = ls[1].local_addr().unwrap();
        assert_eq!(a, b);
        assert_ne!(a.port(), 0);
    }

    #[test]
    fn a_second_instance_is_refused() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = bind(addr, false, 1, 16).unwrap();
        let taken = first[0].local_addr().unwrap();
        let err = bind(taken, false, 1, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("already in use"), "{err}");
    }
}
