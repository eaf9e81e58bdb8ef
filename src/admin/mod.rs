//! The admin listener: `GET /metrics` (Prometheus), `/status` (JSON), `/` (the live status
//! page) and `/healthz`, on its own thread and its own small event loop.
//!
//! It never proxies, its requests are not counted as traffic, and it cannot slow the workers:
//! a scrape reads their counters (atomics) and takes no lock a worker waits on; it holds at
//! most [`MAX_CONNECTIONS`] connections, each with a deadline, so a slow scraper or a flood
//! only ever waits on itself.
//!
//! - [`view`]: one reading of every counter, taken per request.
//! - [`render`]: the pages from a reading.

mod render;
mod view;

use crate::http::{request, Limits};
use crate::state::Shared;
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most admin connections at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// How long one admin connection may take, request and response together.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;

const LISTENER: Token = Token(usize::MAX);

/// Serve the admin pages on `std_listener` (nonblocking; bound by us, or handed over) from a
/// thread of their own. Returns its address.
pub fn serve(std_listener: std::net::TcpListener, shared: Arc<Shared>) -> io::Result<SocketAddr> {
    let local = std_listener.local_addr()?;
    let mut listener = TcpListener::from_std(std_listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            let mut server = Server {
                poll,
                listener,
                conns: Slab::with_capacity(MAX_CONNECTIONS),
                shared,
                accept_ready: true,
            };
            if let Err(e) = server.run() {
                warn!("the admin listener stopped: {e}");
            }
        })?;
    Ok(local)
}

/// The admin event loop.
struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    shared: Arc<Shared>,
    /// The listener may have connections queued (edge-triggered).
    accept_ready: bool,
}

/// One admin connection: read a head, write the whole answer, close.
struct Conn {
    stream: TcpStream,
    /// The request head so far.
    input: Vec<u8>,
    /// The answer, once known, and how much of it went.
    output: Option<(Vec<u8>, usize)>,
    /// When it is closed whatever its state.
    deadline: Instant,
}

impl Server {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(128);
        loop {
            // A second is the coarsest a deadline can be late by.
            if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_secs(1))) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            let mut ready = Vec::new();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_ready = true,
                    Token(k) => ready.push(k),
                }
            }
            self.accept();
            for k in ready {
                self.serve(k);
            }
            let now = Instant::now();
            let late: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| now >= c.deadline)
                .map(|(k, _)| k)
                .collect();
            for k in late {
                debug!("admin connection timed out");
                self.close(k);
            }
        }
    }

    fn accept(&mut self) {
        while self.accept_ready && self.conns.len() < MAX_CONNECTIONS {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
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
                    entry.insert(Conn {
                        stream,
                        input: Vec::new(),
                        output: None,
                        deadline: Instant::now() + DEADLINE,
                    });
                    self.serve(key);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.accept_ready = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("admin accept: {e}");
                    // EMFILE and the like: try again at the next event or second.
                    return;
                }
            }
        }
    }

    /// Read what there is; once the head is in, answer; write what the socket takes.
    fn serve(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.output.is_none() {
            let mut chunk = [0u8; 4096];
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => {
                        self.close(key);
                        return;
                    }
                    Ok(n) => {
                        conn.input.extend_from_slice(&chunk[..n]);
                        if conn.input.len() > MAX_HEAD {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.close(key);
                        return;
                    }
                }
            }
            match answer(&conn.input, &self.shared) {
                Some(bytes) => conn.output = Some((bytes, 0)),
                None => return,
            }
        }
        if let Some((bytes, sent)) = &mut conn.output {
            while *sent < bytes.len() {
                match conn.stream.write(&bytes[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if self.conns.contains(key) {
            let mut c = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}

/// The answer to the head in `input`, or `None` while it is incomplete.
pub fn answer(input: &[u8], shared: &Shared) -> Option<Vec<u8>> {
    let limits = Limits {
        max_head: MAX_HEAD,
        max_request_line: 4096,
        ..Limits::DEFAULT
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let (method, path) = match request::parse(input, &limits, &mut headers) {
        Ok(None) if input.len() <= MAX_HEAD => return None,
        Ok(Some(req)) => (req.method.to_string(), req.path.to_string()),
        _ => return Some(respond(400, "text/plain", b"bad request\n".to_vec(), false)),
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return Some(respond(
            405,
            "text/plain",
            b"only GET and HEAD\n".to_vec(),
            false,
        ));
    }
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, body) = match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render::metrics(&view::collect(shared)).into_bytes(),
        ),
        "/status" => (
            200,
            "application/json",
            render::status(&view::collect(shared)).into_bytes(),
        ),
        "/" => (
            200,
            "text/html; charset=utf-8",
            render::page(&view::collect(shared)).into_bytes(),
        ),
        "/healthz" => {
            if shared.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
                (503, "text/plain", b"stopping\n".to_vec())
            } else {
                (200, "text/plain", b"ok\n".to_vec())
            }
        }
        _ => (404, "text/plain", b"not found\n".to_vec()),
    };
    Some(respond(status, kind, body, head_only))
}

/// A whole response that closes the connection.
fn respond(status: u16, kind: &str, body: Vec<u8>, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        crate::http::local::reason(status),
        body.len()
    )
    .into_bytes();
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    out
}
