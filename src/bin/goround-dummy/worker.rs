//! One listener's event loop: a mio `Poll`, the accept loop, a slab of connections, the
//! timers of `/slow` and lingering closes, and the graceful drain on shutdown.

use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::conn::{Conn, Ctx, Timer, Verdict, IN_BUF_SIZE, OUT_BUF_SIZE};
use goround_mio::buffer::Buffer as Buf;

/// Token of the listener.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the waker the main thread uses to announce shutdown.
pub const WAKER: Token = Token(usize::MAX);
/// Readiness events handled per `poll` call.
const EVENTS_CAPACITY: usize = 1024;
/// Buffer pairs kept for reuse after connections close, so steady-state accept churn
/// allocates nothing.
const POOL_MAX: usize = 256;
/// Pause before retrying `accept` after a resource error (EMFILE and friends), so a full
/// fd table does not turn the loop into a busy spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// How this backend answers, from its flags.
#[derive(Debug, Clone, Copy)]
pub struct Answers {
    /// What `/health` answers.
    pub health_status: u16,
    /// How long every answer waits.
    pub delay: Duration,
}

/// One listener's loop and everything it owns.
pub struct Worker {
    /// The readiness queue.
    poll: Poll,
    /// The listening socket; `None` once shutdown has begun.
    listener: Option<TcpListener>,
    /// Set by the main thread on SIGTERM/SIGINT before it wakes us.
    shutdown: Arc<AtomicBool>,
    /// The hello body of this listener.
    hello: Box<[u8]>,
    /// `--health-status` and `--delay`.
    answers: Answers,
    /// The live connections; a connection's token is its key.
    conns: Slab<Conn>,
    /// Deadlines of `/slow` answers and lingering closes.
    timers: BinaryHeap<Timer>,
    /// Recycled, emptied buffers (input, output).
    pool: Vec<(Buf, Buf)>,
    /// Connections to drive again without waiting for an event (budget spent).
    again: Vec<usize>,
    /// The listener may have connections to accept (edge-triggered: kept until WouldBlock).
    accept_ready: bool,
    /// After a resource error, no accept before this instant.
    accept_after: Option<Instant>,
    /// Incarnation counter handed to new connections.
    next_serial: u64,
    /// Shutdown has begun.
    draining: bool,
}

impl Worker {
    /// A worker for `listener` (already registered with `poll` under [`LISTENER`]); `port`
    /// is the listener's real port, used in the hello body.
    pub fn new(
        poll: Poll,
        listener: TcpListener,
        port: u16,
        shutdown: Arc<AtomicBool>,
        answers: Answers,
    ) -> Self {
        Self {
            poll,
            listener: Some(listener),
            shutdown,
            hello: format!("Hello from Server {port}\n").into_bytes().into(),
            answers,
            conns: Slab::with_capacity(1024),
            timers: BinaryHeap::with_capacity(64),
            pool: Vec::new(),
            again: Vec::with_capacity(64),
            accept_ready: true,
            accept_after: None,
            next_serial: 0,
            draining: false,
        }
    }

    /// Runs until shutdown has drained every connection. Errors only if `poll` fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut again = Vec::with_capacity(64);
        loop {
            if self.draining && self.conns.is_empty() {
                return Ok(());
            }
            let timeout = self.timeout(Instant::now());
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        if self.shutdown.load(Ordering::Acquire) {
                            self.begin_shutdown(now);
                        }
                    }
                    LISTENER => self.accept_ready = true,
                    Token(key) => {
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.note(event);
                            self.drive(key, now);
                        }
                    }
                }
            }
            self.accept(now);
            std::mem::swap(&mut again, &mut self.again);
            for key in again.drain(..) {
                self.drive(key, now);
            }
            while let Some(&std::cmp::Reverse((deadline, key, serial))) = self.timers.peek() {
                if deadline > now {
                    break;
                }
                self.timers.pop();
                if self.conns.get(key).is_some_and(|c| c.serial() == serial) {
                    self.drive(key, now);
                }
            }
        }
    }

    /// How long `poll` may sleep: not at all with work pending, else until the next timer.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let accept_at = match (
            self.accept_ready && self.listener.is_some(),
            self.accept_after,
        ) {
            (true, Some(after)) => Some(after),
            (true, None) => return Some(Duration::ZERO),
            (false, _) => None,
        };
        let timer_at = self.timers.peek().map(|t| t.0 .0);
        let wake_at = match (accept_at, timer_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        wake_at.map(|at| at.saturating_duration_since(now))
    }

    /// Accepts until `WouldBlock` (or a resource error, then backs off).
    fn accept(&mut self, now: Instant) {
        if self.accept_after.is_some_and(|after| now < after) {
            return;
        }
        self.accept_after = None;
        while self.accept_ready {
            let Some(listener) = &self.listener else {
                return;
            };
            let (mut stream, _) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready = false;
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(_) => {
                    // Out of fds or memory: the queue keeps the connection; retry later.
                    self.accept_after = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            };
            // Small responses must leave at once, not wait for Nagle's timer.
            if stream.set_nodelay(true).is_err() {
                continue;
            }
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut stream, Token(key), interest)
                .is_err()
            {
                continue;
            }
            let (input, output) = match self.pool.pop() {
                Some(buffers) => buffers,
                None => (Buf::new(IN_BUF_SIZE), Buf::new(OUT_BUF_SIZE)),
            };
            self.next_serial += 1;
            entry.insert(Conn::new(stream, key, self.next_serial, input, output));
        }
    }

    /// Drives one connection and acts on its verdict.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut ctx = Ctx {
            hello: &self.hello,
            health_status: self.answers.health_status,
            delay: self.answers.delay,
            now,
            shutting_down: self.draining,
            timers: &mut self.timers,
        };
        match conn.drive(&mut ctx) {
            Verdict::Wait => {}
            Verdict::Again => self.again.push(key),
            Verdict::Close => {
                // Dropping the stream closes the fd, which also removes it from epoll.
                let conn = self.conns.remove(key);
                let (mut input, mut output) = conn.into_buffers();
                if self.pool.len() < POOL_MAX {
                    input.clear();
                    output.clear();
                    self.pool.push((input, output));
                }
            }
        }
    }

    /// Stops accepting at once (the listener closes), closes idle connections and lets
    /// busy ones finish their response.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.draining {
            return;
        }
        self.draining = true;
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.begin_shutdown();
            }
            self.drive(key, now);
        }
    }
}
