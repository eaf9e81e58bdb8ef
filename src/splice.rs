//! Zero-copy forwarding with splice(2): socket → pipe → socket, the bytes never enter user
//! space. Used for long body spans of known length (the rest of a Content-Length body, the data
//! of a long chunk) and for tunnels while they stream; the copy path stays the fallback.
//!
//! Pipes cost two descriptors each and, past `fs.pipe-user-pages-soft`, new pipes shrink to
//! one page; so a worker keeps a small bounded pool of pipes and lends one to a connection only
//! for the length of a span.

use crate::clock::Tick;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Pipe capacity asked for (F_SETPIPE_SZ): fewer splice calls per MiB than the 64 KiB default.
const PIPE_SIZE: usize = 256 * 1024;

/// After a pipe could not be made (descriptors or the pipe quota exhausted), no new one is
/// tried for this long: a body in pieces asks for one at every pass, and each failing try
/// would be one more syscall while the system is short of what it needs.
const PIPE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// While a batched span has at least twice this much to read, its source socket reports
/// readable only once this much is queued (SO_RCVLOWAT; the kernel still wakes at the end of
/// stream, and when the receive window cannot hold a batch). A sender faster than the proxy
/// otherwise wakes it for every segment loopback delivers (64 KiB): with 1 MiB responses from
/// nginx, 16 connections and the proxy pinned to its own core (`../shared/bench/run.py`
/// scenario c, 2026-12-07), 128 KiB took its context switches per response from 3.7 to 2.2,
/// its splice calls from 22 to 16 and its CPU per response 4-8 % down (benches/README.md,
/// "Reads in batches"); 256 KiB did as well, 64 KiB no better than none.
/// Linux leaves splice(2) and nonblocking reads free to take fewer bytes than the mark, and
/// raises a smaller receive buffer to hold two batches (its autotuning grows it on from there).
pub const BATCH: usize = 128 * 1024;

/// One pipe: what is spliced in at one end comes out at the other.
#[derive(Debug)]
pub struct Pipe {
    /// Read end.
    rd: OwnedFd,
    /// Write end.
    wr: OwnedFd,
    /// Its capacity in bytes.
    cap: usize,
    /// Bytes spliced in and not yet out: the pipe's own count, so that the pool can tell an
    /// empty pipe from one that must be closed.
    held: usize,
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
        Ok(Pipe {
            rd,
            wr,
            cap,
            held: 0,
        })
    }

    /// The pipe's capacity.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes in the pipe: spliced in, not yet spliced out.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Move up to `len` bytes from socket `from` into the pipe. `Ok(0)` is end of stream.
    pub fn fill_from(&mut self, from: RawFd, len: usize) -> io::Result<usize> {
        let n = splice(from, self.wr.as_raw_fd(), len)?;
        self.held += n;
        Ok(n)
    }

    /// Move up to `len` bytes from the pipe to socket `to`.
    pub fn drain_to(&mut self, to: RawFd, len: usize) -> io::Result<usize> {
        let n = splice(self.rd.as_raw_fd(), to, len.min(self.held))?;
        self.held -= n;
        Ok(n)
    }

    /// Empty by our count and by the kernel's (FIONREAD): fit to lend again.
    fn is_empty(&self) -> bool {
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD on a pipe we own writes one int into the variable we own.
        let r = unsafe { libc::ioctl(self.rd.as_raw_fd(), libc::FIONREAD, &mut queued) };
        self.held == 0 && r == 0 && queued == 0
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

/// Set the socket's SO_RCVLOWAT: epoll reports it readable once `bytes` are queued.
fn set_rcvlowat(fd: RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, v)
}

/// setsockopt(2) of one int.
fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads one int from the variable we own, of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Have `fd`'s kernel acknowledge what arrives at once, not after the delayed-ACK timer
/// (TCP_QUICKACK). An upstream connection carries request and answer in turns, so Linux takes
/// it for an interactive one ("pingpong" mode) and holds the ACK of a lone segment for up to
/// 40 ms in the hope of a reply to carry it; but no reply comes while a body streams in, and a
/// sender waiting on that ACK (its congestion window small after a loss or a reordering, as
/// loopback causes when two cores send for one connection) sends one segment per timer. With
/// 1 MiB responses from nginx, 16 connections and the proxy pinned to its own core
/// (`../shared/bench/run.py` scenario c, 2026-12-07), 1-2 % of the responses stalled so for
/// 40-110 ms: p99 52-74 ms, p99.9 ~100 ms; once per span, this took p99 to 13-14 ms, and the
/// delayed ACKs of a 10 s run from ~190 to 2-5. The mode holds until the socket next sends.
fn ack_at_once(fd: RawFd) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1)
}

/// What one pull from the source socket into a span's pipe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// This many bytes went into the pipe.
    Bytes(usize),
    /// The source closed its sending side.
    Eof,
    /// Nothing: the socket has nothing to give now (EAGAIN into an empty pipe).
    Drained,
    /// Nothing, perhaps for want of pipe room (the pipe counts pages, not bytes, so it can be
    /// full with bytes to spare): try again after a push.
    Blocked,
}

/// A run of bytes moved socket → pipe → socket without entering user space: a body span of
/// known length, or one direction of a tunnel (unbounded).
#[derive(Debug)]
pub struct Span {
    /// The lent pipe.
    pipe: Pipe,
    /// Bytes still to take from the source socket.
    to_read: u64,
    /// Whether reads from the source wait for a batch.
    batch: Batch,
}

/// A span's use of SO_RCVLOWAT on its source socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// Not for this span (unbounded, or its source is a client).
    Never,
    /// Not pulled from yet: the first pull makes the source acknowledge at once
    /// ([`ack_at_once`]) and batches the span if it is long enough.
    Ready,
    /// The source has `BATCH` as its low-water mark. `drained_at`: when a pull last found the
    /// socket empty, if no bytes came since: bytes arriving below the mark raise no event, so
    /// from then on some may be waiting.
    On { drained_at: Option<Tick> },
    /// Back to one byte: the span's last two batches, or a source slower than a batch per
    /// wait. Not again for this span.
    Off,
}

impl Span {
    /// A span of `len` bytes (`u64::MAX`: until the source's end) through `pipe`.
    pub fn new(pipe: Pipe, len: u64) -> Span {
        Span {
            pipe,
            to_read: len,
            batch: Batch::Never,
        }
    }

    /// A span of `len` bytes from an upstream: its source acknowledges at once
    /// ([`ack_at_once`]), and its reads wait for a batch ([`BATCH`]) while it is long. The
    /// source must be sending at least `len` more bytes (a body of known length).
    pub fn batched(pipe: Pipe, len: u64) -> Span {
        Span {
            pipe,
            to_read: len,
            batch: Batch::Ready,
        }
    }

    /// The source waits for a batch: a slow sender's bytes sit in its socket until
    /// [`unbatch`](Self::unbatch).
    pub fn batching(&self) -> bool {
        matches!(self.batch, Batch::On { .. })
    }

    /// Note what a pull did at `now` (`pulled` bytes; `drained`: the socket was empty).
    pub fn note_pull(&mut self, pulled: usize, drained: bool, now: Tick) {
        if let Batch::On { drained_at } = &mut self.batch {
            if pulled > 0 {
                *drained_at = None;
            } else if drained && drained_at.is_none() {
                *drained_at = Some(now);
            }
        }
    }

    /// Since when the source may hold bytes below the mark: found empty, nothing since.
    pub fn batch_waiting_since(&self) -> Option<Tick> {
        match self.batch {
            Batch::On { drained_at } => drained_at,
            _ => None,
        }
    }

    /// The source socket is gone: nothing to set back, and no wait to watch.
    pub fn forget_batch(&mut self) {
        if self.batching() {
            self.batch = Batch::Off;
        }
    }

    /// Reads from `from` (the source) go back to waking at one byte, for the rest of the span.
    /// An error leaves the socket's mark unknown: the connection must not serve again.
    pub fn unbatch(&mut self, from: RawFd) -> io::Result<()> {
        if self.batching() {
            set_rcvlowat(from, 1)?;
            self.batch = Batch::Off;
        }
        Ok(())
    }

    /// Bytes still to take from the source.
    pub fn to_read(&self) -> u64 {
        self.to_read
    }

    /// Bytes taken from the source and not yet given to the destination.
    pub fn held(&self) -> usize {
        self.pipe.held()
    }

    /// Every byte of the span has reached the destination.
    pub fn is_done(&self) -> bool {
        self.to_read == 0 && self.pipe.held() == 0
    }

    /// Room for a pull: bytes are still to come and the pipe is not full by our count.
    pub fn can_pull(&self) -> bool {
        self.to_read > 0 && self.pipe.held() < self.pipe.capacity()
    }

    /// Take what the source socket has, up to the span's end and the pipe's room.
    pub fn pull(&mut self, from: RawFd) -> io::Result<Pulled> {
        let room = self.pipe.capacity().saturating_sub(self.pipe.held());
        let want = usize::try_from(self.to_read).map_or(room, |r| r.min(room));
        if want == 0 {
            return Ok(Pulled::Blocked);
        }
        let batch_len = 2 * BATCH as u64;
        if self.batch == Batch::Ready {
            // The first pull of an upstream's body. A refusal costs only latency.
            let _ = ack_at_once(from);
            // Without the mark the span goes on unbatched: nothing is lost but wakeups.
            self.batch = if self.to_read < batch_len {
                Batch::Off
            } else {
                match set_rcvlowat(from, BATCH) {
                    Ok(()) => Batch::On { drained_at: None },
                    Err(_) => Batch::Off,
                }
            };
        }
        loop {
            match self.pipe.fill_from(from, want) {
                Ok(0) => return Ok(Pulled::Eof),
                Ok(n) => {
                    self.to_read -= n as u64;
                    // The last bytes come unbatched, and the socket is back to its usual mark
                    // before anything past the span (the next head) is read from it.
                    if self.to_read < batch_len {
                        self.unbatch(from)?;
                    }
                    return Ok(Pulled::Bytes(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(if self.pipe.held() == 0 {
                        Pulled::Drained
                    } else {
                        Pulled::Blocked
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Give the destination socket what the pipe holds. `Ok(None)`: it would block.
    pub fn push(&mut self, to: RawFd) -> io::Result<Option<usize>> {
        loop {
            match self.pipe.drain_to(to, self.pipe.held()) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// End the span: the pipe goes back to `pool` (closed if it still holds bytes).
    pub fn finish(self, pool: &mut PipePool) {
        pool.put(self.pipe);
    }
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
    /// No new pipe is tried before this (the last try failed).
    retry_at: Option<Instant>,
}

impl PipePool {
    /// A pool of at most `max` pipes (0: splicing off).
    pub fn new(max: usize) -> Self {
        PipePool {
            free: Vec::new(),
            live: 0,
            max,
            retry_at: None,
        }
    }

    /// An empty pipe, or `None` when all are lent or none can be made now (the copy path then
    /// does the work).
    pub fn take(&mut self) -> Option<Pipe> {
        self.take_made_by(Pipe::new)
    }

    /// `take`, with `make` making a new pipe.
    fn take_made_by(&mut self, make: impl FnOnce() -> io::Result<Pipe>) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.live >= self.max {
            return None;
        }
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                return None;
            }
            self.retry_at = None;
        }
        match make() {
            Ok(p) => {
                self.live += 1;
                Some(p)
            }
            Err(e) => {
                log::warn!(
                    "no pipe for splice ({e}): bodies are copied, and no pipe is tried for {} s",
                    PIPE_RETRY_AFTER.as_secs()
                );
                self.retry_at = Some(Instant::now() + PIPE_RETRY_AFTER);
                None
            }
        }
    }

    /// Give a pipe back: kept for reuse when it is empty, closed when it still holds bytes
    /// (bytes of a connection that failed mid-span must never reach another one).
    pub fn put(&mut self, pipe: Pipe) {
        if pipe.is_empty() {
            self.free.push(pipe);
        } else {
            self.live = self.live.saturating_sub(1);
        }
    }

    /// Pipes lent out now.
    #[cfg(test)]
    pub fn lent(&self) -> usize {
        self.live - self.free.len()
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
        let mut pipe = Pipe::new().unwrap();
        assert!(pipe.capacity() >= 4096);
        a.write_all(b"zero-copy").unwrap();
        let mut moved = 0;
        while moved < 9 {
            moved += pipe.fill_from(b.as_raw_fd(), 9 - moved).unwrap_or(0);
        }
        assert_eq!(pipe.held(), 9);
        assert_eq!(pipe.drain_to(c.as_raw_fd(), 100).unwrap(), 9);
        assert_eq!(pipe.held(), 0);
        let mut out = [0u8; 9];
        d.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"zero-copy");
    }

    #[test]
    fn the_pool_bounds_its_pipes() {
        let mut pool = PipePool::new(1);
        let p = pool.take().unwrap();
        assert!(pool.take().is_none());
        assert_eq!(pool.lent(), 1);
        pool.put(p);
        assert_eq!(pool.lent(), 0);
        assert!(pool.take().is_some());
    }

    #[test]
    fn after_a_failed_pipe_none_is_tried_for_a_while() {
        let mut pool = PipePool::new(4);
        let emfile = || Err(io::Error::from_raw_os_error(libc::EMFILE));
        assert!(pool.take_made_by(emfile).is_none());
        let not_called = || -> io::Result<Pipe> { panic!("tried again within the back-off") };
        assert!(pool.take_made_by(not_called).is_none());
        assert_eq!(pool.lent(), 0);
        // Once the back-off is over, the next request tries again.
        pool.retry_at = Some(Instant::now() - Duration::from_millis(1));
        assert!(pool.take_made_by(Pipe::new).is_some());
        assert_eq!((pool.lent(), pool.retry_at), (1, None));
    }

    /// Two connected sockets: (what we write into, what the span reads from).
    fn socket_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn a_pipe_holding_bytes_is_closed_not_reused() {
        let mut pool = PipePool::new(1);
        let (mut a, b) = socket_pair();
        let mut span = Span::new(pool.take().unwrap(), 100);
        a.write_all(b"stray").unwrap();
        let mut got = Pulled::Drained;
        for _ in 0..1000 {
            got = span.pull(b.as_raw_fd()).unwrap();
            if got != Pulled::Drained {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(got, Pulled::Bytes(5));
        assert_eq!((span.held(), span.to_read()), (5, 95));
        span.finish(&mut pool);
        assert_eq!(pool.lent(), 0);
        // A fresh pipe replaces it: nothing of the stray bytes can come out of it.
        let mut fresh = pool.take().unwrap();
        assert_eq!(fresh.held(), 0);
        assert!(fresh.is_empty());
        let (c, _d) = socket_pair();
        let e = fresh.drain_to(c.as_raw_fd(), 5);
        assert_eq!(e.unwrap(), 0, "an empty pipe gives nothing");
    }

    #[test]
    fn a_span_stops_at_its_length_and_reports_the_end_of_stream() {
        let (mut a, b) = socket_pair();
        let (c, mut d) = socket_pair();
        c.set_nonblocking(false).unwrap();
        let mut span = Span::new(Pipe::new().unwrap(), 4);
        assert_eq!(span.pull(b.as_raw_fd()).unwrap(), Pulled::Drained);
        a.write_all(b"abcdefgh").unwrap();
        let mut pulled = 0;
        while span.can_pull() {
            match span.pull(b.as_raw_fd()).unwrap() {
                Pulled::Bytes(n) => pulled += n,
                Pulled::Drained | Pulled::Blocked => std::thread::yield_now(),
                Pulled::Eof => panic!("no end of stream yet"),
            }
        }
        assert_eq!(pulled, 4);
        assert_eq!(span.push(c.as_raw_fd()).unwrap(), Some(4));
        assert!(span.is_done());
        let mut out = [0u8; 4];
        d.read_exact(&mut out).unwrap();
        assert_eq!(&out, b"abcd");
        // The rest stays in the socket; after it, the end of stream.
        drop(a);
        let mut rest = Span::new(Pipe::new().unwrap(), u64::MAX);
        let mut seen = Vec::new();
        loop {
            match rest.pull(b.as_raw_fd()).unwrap() {
                Pulled::Bytes(n) => seen.push(n),
                Pulled::Eof => break,
                Pulled::Drained | Pulled::Blocked => std::thread::yield_now(),
            }
        }
        assert_eq!(seen.iter().sum::<usize>(), 4);
        assert_eq!(rest.held(), 4);
    }

    /// The socket's SO_RCVLOWAT.
    fn rcvlowat(s: &TcpStream) -> libc::c_int {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes one int and its length into variables we own.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "getsockopt: {}", io::Error::last_os_error());
        v
    }

    // The kernel caps the mark at half of `net.ipv4.tcp_rmem`'s largest buffer (6 MiB by
    // default): a batch is far below.
    #[test]
    fn a_long_span_reads_in_batches_until_its_last_two() {
        const LEN: usize = 5 * BATCH + 7;
        let (mut a, b) = socket_pair();
        let (c, mut d) = socket_pair();
        let sender = std::thread::spawn(move || a.write_all(&vec![7u8; LEN]));
        d.set_nonblocking(false).unwrap();
        let sink = std::thread::spawn(move || {
            let mut got = Vec::new();
            d.read_to_end(&mut got).map(|_| got.len())
        });
        let mut span = Span::batched(Pipe::new().unwrap(), LEN as u64);
        assert!(!span.batching(), "no mark before the first pull");
        let mut marks = Vec::new();
        while !span.is_done() {
            let before = span.to_read();
            match span.pull(b.as_raw_fd()).unwrap() {
                Pulled::Bytes(_) => {}
                Pulled::Drained | Pulled::Blocked => std::thread::yield_now(),
                Pulled::Eof => panic!("the sender stopped short"),
            }
            if span.to_read() != before {
                marks.push((before, rcvlowat(&b)));
            }
            span.push(c.as_raw_fd()).unwrap();
        }
        // Every pull that began with two batches or more to come left the mark at a batch;
        // the pull that took the span below two batches set it back to one byte.
        let mut ended = false;
        for (i, &(before, after_pull)) in marks.iter().enumerate() {
            let left_after = marks.get(i + 1).map_or(0, |&(b, _)| b);
            if left_after >= 2 * BATCH as u64 {
                assert_eq!(after_pull, BATCH as libc::c_int, "pull from {before} left");
            } else {
                assert_eq!(after_pull, 1, "pull from {before} left");
                ended = true;
            }
        }
        assert!(ended && !span.batching());
        assert_eq!(rcvlowat(&b), 1);
        drop(c);
        sender.join().unwrap().unwrap();
        assert_eq!(sink.join().unwrap().unwrap(), LEN);
    }

    #[test]
    fn unbatching_sets_the_mark_back_once_and_for_good() {
        const LEN: usize = 4 * BATCH;
        let (mut a, b) = socket_pair();
        let mut span = Span::batched(Pipe::new().unwrap(), LEN as u64);
        a.write_all(b"first").unwrap();
        while span.to_read() == LEN as u64 {
            let _ = span.pull(b.as_raw_fd()).unwrap();
            std::thread::yield_now();
        }
        assert!(span.batching());
        assert_eq!(rcvlowat(&b), BATCH as libc::c_int);
        // A wait starts when a pull finds the socket empty and lasts until bytes come.
        let (t1, t2) = (Tick::from_ns(1_000), Tick::from_ns(2_000));
        assert_eq!(span.batch_waiting_since(), None);
        span.note_pull(0, false, t1);
        assert_eq!(
            span.batch_waiting_since(),
            None,
            "blocked on the pipe: no wait"
        );
        span.note_pull(0, true, t1);
        span.note_pull(0, true, t2);
        assert_eq!(span.batch_waiting_since(), Some(t1));
        span.note_pull(5, false, t2);
        assert_eq!(span.batch_waiting_since(), None);
        span.note_pull(0, true, t2);
        assert_eq!(span.batch_waiting_since(), Some(t2));
        span.unbatch(b.as_raw_fd()).unwrap();
        assert_eq!(span.batch_waiting_since(), None);
        assert!(!span.batching());
        assert_eq!(rcvlowat(&b), 1);
        // Later pulls of a long span do not batch again.
        a.write_all(b"second").unwrap();
        while span.to_read() > (LEN - 11) as u64 {
            let _ = span.pull(b.as_raw_fd()).unwrap();
            std::thread::yield_now();
        }
        assert_eq!((span.batching(), rcvlowat(&b)), (false, 1));
    }

    /// The socket's TCP_QUICKACK: 0 while Linux delays ACKs as for an interactive connection.
    fn acks_at_once(s: &TcpStream) -> libc::c_int {
        socket2::SockRef::from(s).tcp_quickack().unwrap().into()
    }

    /// Put the socket in delayed-ACK ("pingpong") mode, as request/answer turns do.
    fn delay_acks(s: &TcpStream) {
        socket2::SockRef::from(s).set_tcp_quickack(false).unwrap();
        assert_eq!(acks_at_once(s), 0);
    }

    /// Pull until the span has taken `n` more bytes from `from`.
    fn pull_until_taken(span: &mut Span, from: &TcpStream, n: u64) {
        let goal = span.to_read() - n;
        while span.to_read() > goal {
            let _ = span.pull(from.as_raw_fd()).unwrap();
            std::thread::yield_now();
        }
    }

    /// Bytes sent to `b`, taken by `span`, then `b`'s TCP_QUICKACK; `None` when that took 20 ms
    /// or more: a delayed-ACK timer (40 ms at the least) that fires leaves the mode by itself.
    fn send_take_look(a: &mut TcpStream, b: &TcpStream, span: &mut Span) -> Option<libc::c_int> {
        let start = Instant::now();
        a.write_all(b"bytes").unwrap();
        pull_until_taken(span, b, 5);
        let mode = acks_at_once(b);
        (start.elapsed() < Duration::from_millis(20)).then_some(mode)
    }

    #[test]
    fn an_upstream_span_acknowledges_at_once_from_its_first_pull() {
        // (first pull, second pull) per span; a stalled step is tried again on a new pair.
        let cases = [
            (Some(1_000), (1, 0)),
            (Some(4 * BATCH as u64), (1, 0)),
            // A tunnel's bytes keep the socket's own mode.
            (None, (0, 0)),
        ];
        for (len, want) in cases {
            let got = (0..50).find_map(|_| {
                let (mut a, b) = socket_pair();
                // Else the second bytes would wait for the first ones' ACK, delayed.
                a.set_nodelay(true).unwrap();
                delay_acks(&b);
                let mut span = match len {
                    Some(len) => Span::batched(Pipe::new().unwrap(), len),
                    None => Span::new(Pipe::new().unwrap(), 4 * BATCH as u64),
                };
                let first = send_take_look(&mut a, &b, &mut span)?;
                // Once per span: the socket sends nothing while the body comes, so the mode
                // set at the first pull holds; the second must leave it as it finds it.
                delay_acks(&b);
                let second = send_take_look(&mut a, &b, &mut span)?;
                Some((first, second))
            });
            assert_eq!(got, Some(want), "span of {len:?}");
        }
    }

    #[test]
    fn a_span_not_batched_leaves_the_mark_alone() {
        let (mut a, b) = socket_pair();
        let mut span = Span::new(Pipe::new().unwrap(), 4 * BATCH as u64);
        a.write_all(b"bytes").unwrap();
        while span.to_read() == 4 * BATCH as u64 {
            let _ = span.pull(b.as_raw_fd()).unwrap();
            std::thread::yield_now();
        }
        assert_eq!((span.batching(), rcvlowat(&b)), (false, 1));
    }
}
