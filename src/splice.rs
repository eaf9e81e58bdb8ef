//! Zero-copy forwarding with splice(2): socket → pipe → socket, the bytes never enter user
//! space. Used for long body spans of known length; the copy path stays the fallback.
//!
//! Pipes cost two descriptors each and, past `fs.pipe-user-pages-soft`, new pipes shrink to
//! one page; so a worker keeps a small bounded pool of pipes and lends one to a connection only
//! for the length of a span.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Pipe capacity asked for (F_SETPIPE_SZ): fewer splice calls per MiB than the 64 KiB default.
const PIPE_SIZE: usize = 256 * 1024;

/// One pipe: what is spliced in at one end comes out at the other.
#[derive(Debug)]
pub struct Pipe {
    /// Read end.
    rd: OwnedFd,
    /// Write end.
    wr: OwnedFd,
    /// Its capacity in bytes.
    cap: usize,
}

impl Pipe {
    /// A nonblocking pipe, enlarged to `PIPE_SIZE` when the system allows.
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and ours alone.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; a refusal (EPERM past the user's pipe quota)
        // leaves the default size, which F_GETPIPE_SZ then reports.
        let cap = unsafe {
            libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int);
            libc::fcntl(wr.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        let cap = usize::try_from(cap)
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(io::Error::last_os_error)?;
        Ok(Pipe { rd, wr, cap })
    }

    /// The pipe's capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Move up to `len` bytes from socket `from` into the pipe. `Ok(0)` is end of stream.
    pub fn fill_from(&self, from: RawFd, len: usize) -> io::Result<usize> {
        splice(from, self.wr.as_raw_fd(), len)
    }

    /// Move up to `len` bytes from the pipe to socket `to`.
    pub fn drain_to(&self, to: RawFd, len: usize) -> io::Result<usize> {
        splice(self.rd.as_raw_fd(), to, len)
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between two descriptors the caller keeps open for the call; null
    // offsets (sockets and pipes have none); no memory of ours is touched.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A worker's pipes: at most `max` exist at once; an empty pipe goes back for reuse.
#[derive(Debug)]
pub struct PipePool {
    /// Empty pipes ready to lend.
    free: Vec<Pipe>,
    /// Pipes that exist (free or lent).
    live: usize,
    /// Most pipes at once.
    max: usize,
}

impl PipePool {
    /// A pool of at most `max` pipes (0: splicing off).
    pub fn new(max: usize) -> Self {
        PipePool {
            free: Vec::new(),
            live: 0,
            max,
        }
    }

    /// An empty pipe, or `None` when all are lent (the copy path then does the work).
    pub fn take(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.live >= self.max {
            return None;
        }
        match Pipe::new() {
            Ok(p) => {
                self.live += 1;
                Some(p)
            }
            Err(e) => {
                log::debug!("no pipe for splice: {e}");
                None
            }
        }
    }

    /// Give back a pipe that is empty (one still holding bytes is dropped: closed).
    pub fn put(&mut self, pipe: Pipe, empty: bool) {
        if empty {
            self.free.push(pipe);
        } else {
            self.live -= 1;
        }
    }

    /// A lent pipe was dropped with its connection.
    pub fn lost(&mut self) {
        self.live = self.live.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn splices_bytes_between_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l2.local_addr().unwrap()).unwrap();
        let (mut d, _) = l2.accept().unwrap();
        let pipe = Pipe::new().unwrap();
        assert!(pipe.capacity() >= 4096);
        a.write_all(b"zero-copy").unwrap();
        let mut moved = 0;
        while moved < 9 {
            moved += pipe.fill_from(b.as_raw_fd(), 9 - moved).unwrap_or(0);
        }
        assert_eq!(pipe.drain_to(c.as_raw_fd(), 9).unwrap(), 9);
        let mut out = [0u8; 9];
        d.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"zero-copy");
    }

    #[test]
    fn the_pool_bounds_its_pipes() {
        let mut pool = PipePool::new(1);
        let p = pool.take().unwrap();
        assert!(pool.take().is_none());
        pool.put(p, true);
        let p = pool.take().unwrap();
        pool.put(p, false);
        assert!(pool.take().is_some(), "a dropped pipe frees its place");
    }
}
