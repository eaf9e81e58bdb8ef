//! The admin listener: `GET /metrics` (Prometheus), `/status` (JSON), `/` (the live status
//! page) and `/healthz`, on its own thread and its own small event loop.
//!
//! It never proxies, its requests are not counted as traffic, and it cannot slow the workers:
//! a scrape reads their counters (atomics) and takes no lock a worker waits on. It holds at
//! most [`MAX_CONNECTIONS`] connections; one that has sent nothing within [`FIRST_BYTE`], or
//! not finished within [`DEADLINE`], is closed, and when all places are taken a new connection
//! takes the place of the oldest one still waiting for its request. So a flood of silent
//! connections never keeps `/healthz` from answering: a probe sends its request at once.
//!
//! With `[admin] token_file`, every page but `/healthz` wants `Authorization: Bearer TOKEN`;
//! without one, the pages answer loopback clients only.
//!
//! - [`view`]: one reading of every counter, taken per request.
//! - [`render`]: the pages from a reading.
//! - [`history`]: the last hour in 10 s buckets, from a reading a second.

mod history;
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

/// Most admin connections at once; past it, the oldest still waiting for a request goes.
pub const MAX_CONNECTIONS: usize = 256;
/// How long one admin connection may take, request and response together.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How long a new connection may take to send its first byte.
pub const FIRST_BYTE: Duration = Duration::from_secs(1);
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
                history: history::History::default(),
                next_reading: Instant::now(),
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
    /// The last hour, read once a second.
    history: history::History,
    next_reading: Instant,
}

/// How often the history reads the counters (its state changes' resolution; buckets close
/// every `history::INTERVAL_MS`).
const READING_EVERY: Duration = Duration::from_secs(1);

/// One admin connection: read a head, write the whole answer, close.
struct Conn {
    stream: TcpStream,
    /// The client is on this machine (a loopback address).
    loopback: bool,
    /// The request head so far.
    input: Vec<u8>,
    /// The answer, once known, and how much of it went.
    output: Option<(Vec<u8>, usize)>,
    /// When it was accepted: the oldest waiting connection makes room for a new one.
    accepted: Instant,
}

impl Conn {
    /// When it is closed whatever its state: soon if it has said nothing yet.
    fn deadline(&self) -> Instant {
        let limit = if self.input.is_empty() && self.output.is_none() {
            FIRST_BYTE
        } else {
            DEADLINE
        };
        self.accepted + limit
    }
}

impl Server {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(128);
        loop {
            // First thing, so the history counts from the start.
            let now = Instant::now();
            if now >= self.next_reading {
                self.next_reading = now + READING_EVERY;
                let v = view::collect(&self.shared);
                self.history.observe(&v, crate::upstream::unix_ms());
            }
            // A second is the coarsest a deadline can be late by; the next reading is due at
            // most that far ahead too.
            let wait = self.next_reading.saturating_duration_since(Instant::now());
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(wait.min(Duration::from_secs(1))))
            {
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
                .filter(|(_, c)| now >= c.deadline())
                .map(|(k, _)| k)
                .collect();
            for k in late {
                debug!("admin connection timed out");
                self.close(k);
            }
        }
    }

    fn accept(&mut self) {
        while self.accept_ready {
            if self.conns.len() >= MAX_CONNECTIONS && !self.make_room() {
                // Every place holds a request being answered: the rest wait in the backlog.
                return;
            }
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
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
                        loopback: peer.ip().to_canonical().is_loopback(),
                        input: Vec::new(),
                        output: None,
                        accepted: Instant::now(),
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
            match answer(&conn.input, &self.shared, &self.history, conn.loopback) {
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

    /// Close the oldest connection still waiting for its request; false if there is none.
    fn make_room(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| c.output.is_none())
            .min_by_key(|(_, c)| c.accepted)
            .map(|(k, _)| k);
        match oldest {
            Some(k) => {
                debug!("admin listener full: closing its oldest waiting connection");
                self.close(k);
                true
            }
            None => false,
        }
    }

    fn close(&mut self, key: usize) {
        if self.conns.contains(key) {
            let mut c = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }
}

/// The answer to the head in `input` from a client on this machine or not (`loopback`), or
/// `None` while it is incomplete.
fn answer(
    input: &[u8],
    shared: &Shared,
    history: &history::History,
    loopback: bool,
) -> Option<Vec<u8>> {
    let limits = Limits {
        max_head: MAX_HEAD,
        max_request_line: 4096,
        ..Limits::DEFAULT
    };
    // As many slots as the limit allows fields: a head within the limits always parses.
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_fields];
    let (method, path, authorization) = match request::parse(input, &limits, &mut headers) {
        Ok(None) if input.len() <= MAX_HEAD => return None,
        Ok(Some(req)) => (
            req.method.to_string(),
            req.path.to_string(),
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .map(|h| h.value.to_vec()),
        ),
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
    let (path, query) = path.split_once('?').unwrap_or((&path, ""));
    if path != "/healthz" {
        let (snap, _) = shared.current();
        let token = snap.cfg.admin_token.as_ref().map(|(_, t)| t.as_str());
        match access(token, authorization.as_deref(), loopback) {
            Access::Allowed => {}
            Access::NeedsToken => {
                return Some(respond(
                    401,
                    "text/plain",
                    b"a bearer token is needed\n".to_vec(),
                    head_only,
                ))
            }
            Access::LoopbackOnly => {
                return Some(respond(
                    403,
                    "text/plain",
                    b"the admin pages answer loopback clients only: set [admin] token_file\n"
                        .to_vec(),
                    head_only,
                ))
            }
        }
    }
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
        "/status/history" => match since(query) {
            Some(since) => (
                200,
                "application/json",
                history
                    .json(&view::collect(shared), crate::upstream::unix_ms(), since)
                    .into_bytes(),
            ),
            None => (
                400,
                "text/plain",
                b"since= takes a Unix time in milliseconds\n".to_vec(),
            ),
        },
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

/// The `since=` of a query (Unix ms; 0 when absent), or `None` when it is no number.
fn since(query: &str) -> Option<u64> {
    match query.split('&').find_map(|kv| kv.strip_prefix("since=")) {
        Some(v) => v.parse().ok(),
        None => Some(0),
    }
}

/// Who may see the admin pages (all but `/healthz`, which answers everyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Allowed,
    /// A token is set and the request did not carry it: 401.
    NeedsToken,
    /// No token is set and the client is not on this machine: 403.
    LoopbackOnly,
}

/// The access rule: with a `token`, a request carrying `Authorization: Bearer TOKEN` (compared
/// in constant time); without one, loopback clients.
fn access(token: Option<&str>, authorization: Option<&[u8]>, loopback: bool) -> Access {
    let Some(token) = token else {
        return if loopback {
            Access::Allowed
        } else {
            Access::LoopbackOnly
        };
    };
    let given = authorization
        .and_then(|v| {
            let v = v.trim_ascii();
            let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ')?);
            scheme
                .eq_ignore_ascii_case(b"bearer")
                .then(|| rest.trim_ascii())
        })
        .unwrap_or(b"");
    if same_bytes(given, token.as_bytes()) {
        Access::Allowed
    } else {
        Access::NeedsToken
    }
}

/// `a == b` in a time that depends on their lengths only, not on where they differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    if status == 401 {
        out.extend_from_slice(b"WWW-Authenticate: Bearer realm=\"goround-mio\"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_want_the_token_when_one_is_set_and_loopback_when_not() {
        let t = Some("0123456789abcdef");
        assert_eq!(access(None, None, true), Access::Allowed);
        assert_eq!(access(None, None, false), Access::LoopbackOnly);
        assert_eq!(
            access(None, Some(b"Bearer anything"), false),
            Access::LoopbackOnly
        );
        assert_eq!(access(t, None, true), Access::NeedsToken, "loopback too");
        assert_eq!(
            access(t, Some(b"Bearer 0123456789abcdef"), false),
            Access::Allowed
        );
        assert_eq!(
            access(t, Some(b"bearer  0123456789abcdef "), false),
            Access::Allowed
        );
        for wrong in [
            &b"Bearer 0123456789abcdeX"[..],
            b"Bearer 0123456789abcde",
            b"Basic 0123456789abcdef",
            b"0123456789abcdef",
            b"Bearer",
            b"",
        ] {
            assert_eq!(
                access(t, Some(wrong), true),
                Access::NeedsToken,
                "{wrong:?}"
            );
        }
    }
}
