//! The socket reads and writes of the data path, made as direct system calls.
//!
//! glibc's `recv` and `send` are thread cancellation points: in a multi-threaded process each
//! call brackets its system call with two atomic updates of the thread's cancellation state,
//! about 60 instructions a call and four calls per proxied request. goround-mio never cancels
//! a thread, so the data path enters the kernel through `syscall(2)`, which is no cancellation
//! point. The kernel does the same work either way.

use std::io;
use std::os::fd::RawFd;

/// A connected socket read with `recvfrom(2)`, as `std::io::Read` (for `Buffer::read_from`).
#[derive(Debug, Clone, Copy)]
pub struct Recv(pub RawFd);

impl io::Read for Recv {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let null = std::ptr::null_mut::<libc::c_void>();
        // SAFETY: recvfrom writes at most `buf.len()` bytes into `buf`, which we borrow
        // mutably for the call; the address arguments are null, so nothing else is written.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                self.0,
                buf.as_mut_ptr(),
                buf.len(),
                0,
                null,
                null,
            )
        };
        result(n)
    }
}

/// `sendto(2)` of `bytes` on a connected socket, without SIGPIPE. `more`: more bytes or the end
/// of the stream follow at once (MSG_MORE), so the kernel holds a last partial segment for
/// them; a `close` or `shutdown` right after sends it with the FIN, in one segment.
pub fn send(fd: RawFd, bytes: &[u8], more: bool) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    let null = std::ptr::null::<libc::c_void>();
    // SAFETY: sendto only reads `bytes.len()` bytes from `bytes`, borrowed for the call; the
    // address argument is null with length 0.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            bytes.as_ptr(),
            bytes.len(),
            flags,
            null,
            0,
        )
    };
    result(n)
}

/// A system call's return value as a byte count, or the thread's errno.
fn result(n: libc::c_long) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn bytes_go_both_ways_and_errors_keep_their_kind() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        assert_eq!(send(a.as_raw_fd(), b"hello", true).unwrap(), 5);
        assert_eq!(send(a.as_raw_fd(), b" world", false).unwrap(), 6);
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while got.len() < 11 {
            let n = Recv(b.as_raw_fd()).read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello world");
        b.set_nonblocking(true).unwrap();
        let e = Recv(b.as_raw_fd()).read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(b);
        // The peer is gone: the first send may still be accepted, a later one fails (EPIPE or
        // ECONNRESET), and never raises SIGPIPE.
        let failed = (0..100).any(|_| send(a.as_raw_fd(), b"x", false).is_err());
        assert!(failed);
    }
}
