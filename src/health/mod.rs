//! Health checks: one check at a time per upstream, on the timer wheel of worker 0, never on
//! the request path and never on a pooled connection.
//!
//! - `check = "tcp"`: a nonblocking connect; it completes or it does not.
//! - `check = "http"`: `GET path`, judged by its status against `expect` ([`check`]).
//!
//! For a pool with `tls = true` a check makes the TLS handshake first, verifying the
//! upstream's certificate as requests do: a TCP check passes once the handshake is done.
//!
//! Each result feeds the upstream's rise/fall streaks ([`UpstreamState::record_check`]): it
//! leaves after `fall` consecutive failures and comes back after `rise` consecutive passes.
//! The next check of an upstream is due one interval (plus up to a tenth of it of jitter)
//! after the last one started.
//!
//! The prober owns the probe sockets; the worker registers them (token per upstream id),
//! routes their readiness here and keeps the timers: a start per upstream, a deadline per
//! check in flight.

mod check;

use crate::clock::Tick;
use crate::config::{Check, HealthSpec};
use crate::net::{connect_reason, is_local_shortage, marks_upstream_down};
use crate::snapshot::Snapshot;
use crate::tls::UpstreamTls;
use crate::upstream::UpstreamState;
use check::Verdict;
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

/// The checks of one worker (worker 0), by upstream id.
#[derive(Debug, Default)]
pub struct Prober {
    slots: HashMap<usize, Slot>,
    /// Bumped for every slot made, so a start timer of a removed slot is never mistaken for
    /// the timer of a new slot with the same id.
    next_gen: u32,
}

/// One upstream's checks.
#[derive(Debug)]
struct Slot {
    /// Its shared state.
    state: &'static UpstreamState,
    /// The pool whose settings it is checked with, for logs.
    pool: String,
    /// How.
    spec: HealthSpec,
    /// The pool's TLS to its upstreams, if it has `tls = true`.
    tls: Option<Arc<UpstreamTls>>,
    /// Which slot this is (see `Prober::next_gen`).
    gen: u32,
    /// Checks started so far (the jitter's seed).
    round: u64,
    /// The check in flight.
    probe: Option<Probe>,
    /// A check has ended (or was skipped) at least once: readiness waits for every upstream.
    judged: bool,
}

/// A check in flight.
#[derive(Debug)]
struct Probe {
    stream: TcpStream,
    /// The TLS session, for a pool with `tls = true`.
    tls: Option<Box<rustls::ClientConnection>>,
    /// When it started: its deadline is this plus the timeout.
    started: Tick,
    /// Where it is.
    phase: Phase,
}

/// The steps of a check.
#[derive(Debug)]
enum Phase {
    /// Waiting for the connect.
    Connecting,
    /// The TLS handshake.
    Handshaking,
    /// Sending the HTTP request: the bytes and how many went.
    Sending(Vec<u8>, usize),
    /// Reading the response head.
    Reading(Vec<u8>),
}

/// When to come back for a check just started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// Its timeout.
    pub deadline: Tick,
    /// The next check's start.
    pub next: Tick,
}

/// What the worker keeps on its wheel for the prober.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartTimer {
    /// The upstream.
    pub id: usize,
    /// Its slot's generation.
    pub gen: u32,
}

impl Prober {
    /// Check the upstreams of `snap` from now on: a new upstream gets its first check at once
    /// (returned: the worker sets their start timers); one no longer configured stops (its
    /// check in flight is dropped); one kept keeps its streaks and its schedule.
    pub fn configure(&mut self, snap: &Snapshot, registry: &Registry) -> Vec<StartTimer> {
        let wanted = snap.upstreams();
        let keep: std::collections::HashSet<usize> = wanted.iter().map(|(s, _)| s.id).collect();
        let gone: Vec<usize> = self
            .slots
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut slot) = self.slots.remove(&id) {
                slot.stop(registry);
            }
        }
        let mut new = Vec::new();
        for (state, p) in wanted {
            let pool = &snap.cfg.pools[p];
            match self.slots.get_mut(&state.id) {
                Some(slot) => {
                    slot.spec = pool.health.clone();
                    slot.pool.clone_from(&pool.name);
                    slot.tls.clone_from(&snap.upstream_tls[p]);
                }
                None => {
                    self.next_gen = self.next_gen.wrapping_add(1);
                    let gen = self.next_gen;
                    self.slots.insert(
                        state.id,
                        Slot {
                            state,
                            pool: pool.name.clone(),
                            spec: pool.health.clone(),
                            tls: snap.upstream_tls[p].clone(),
                            gen,
                            round: 0,
                            probe: None,
                            judged: false,
                        },
                    );
                    new.push(StartTimer { id: state.id, gen });
                }
            }
        }
        new
    }

    /// A start timer fired: start the check (unless one is still in flight) and say when to
    /// come back. `None`: the timer is stale (the upstream is no longer checked).
    pub fn start(
        &mut self,
        timer: StartTimer,
        registry: &Registry,
        now: Tick,
        token: Token,
    ) -> Option<Started> {
        let slot = self.slots.get_mut(&timer.id)?;
        if slot.gen != timer.gen {
            return None;
        }
        slot.round += 1;
        let next =
            now + slot.spec.interval + check::jitter(slot.spec.interval, timer.id, slot.round);
        let deadline = now + slot.spec.timeout;
        if slot.probe.is_some() {
            // Still in flight (its timeout is at most the interval, but jitter and a busy loop
            // may meet): never two at once.
            return Some(Started { deadline, next });
        }
        match TcpStream::connect(slot.state.addr()) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = registry.register(&mut stream, token, interest) {
                    warn!(
                        "health check of {}: cannot register: {e}",
                        slot.state.name()
                    );
                    return Some(Started { deadline, next });
                }
                slot.probe = Some(Probe {
                    stream,
                    tls: None,
                    started: now,
                    phase: Phase::Connecting,
                });
            }
            Err(e) => slot.connect_failed(&e),
        }
        Some(Started { deadline, next })
    }

    /// Readiness for upstream `id`'s check: take it as far as it goes.
    pub fn on_event(&mut self, id: usize, registry: &Registry) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(probe) = &mut slot.probe else {
            return;
        };
        let outcome = advance(probe, &slot.spec, slot.state, slot.tls.as_deref());
        match outcome {
            Step::Wait => {}
            Step::ConnectFailed(e) => {
                slot.stop(registry);
                slot.connect_failed(&e);
            }
            Step::Done(verdict) => {
                slot.stop(registry);
                slot.record(verdict);
            }
        }
    }

    /// Upstream `id`'s check deadline: a check still in flight by now has failed. The timer
    /// wheel counts in whole milliseconds and may fire within the millisecond before the
    /// deadline: then the deadline is returned, to be armed again (a check is never left
    /// without one).
    #[must_use]
    pub fn on_deadline(&mut self, id: usize, registry: &Registry, now: Tick) -> Option<Tick> {
        let slot = self.slots.get_mut(&id)?;
        let deadline = slot.probe.as_ref()?.started + slot.spec.timeout;
        if now < deadline {
            return Some(deadline);
        }
        let what = match slot.probe.as_ref().map(|p| &p.phase) {
            Some(Phase::Connecting) => "connect timed out",
            Some(Phase::Handshaking) => "TLS handshake timed out",
            _ => "timed out",
        };
        slot.stop(registry);
        slot.record(Verdict::Fail(what.to_string()));
        None
    }

    /// Every upstream has had its first check.
    pub fn all_judged(&self) -> bool {
        self.slots.values().all(|s| s.judged)
    }

    /// Drop every check in flight (at shutdown).
    pub fn stop(&mut self, registry: &Registry) {
        for slot in self.slots.values_mut() {
            slot.stop(registry);
        }
    }
}

impl Slot {
    fn stop(&mut self, registry: &Registry) {
        if let Some(mut probe) = self.probe.take() {
            let _ = registry.deregister(&mut probe.stream);
        }
    }

    /// A connect that failed: refused, unreachable or timed out is a failed check; the proxy's
    /// own shortage (EMFILE, EADDRNOTAVAIL, ...) says nothing about the upstream.
    fn connect_failed(&mut self, e: &io::Error) {
        if is_local_shortage(e) {
            warn!("health check of {} skipped: {e}", self.state.name());
            self.judged = true;
            return;
        }
        let detail = if marks_upstream_down(e) {
            connect_reason(e)
        } else {
            e.to_string()
        };
        self.record(Verdict::Fail(detail));
    }

    fn record(&mut self, verdict: Verdict) {
        let (ok, detail) = match verdict {
            Verdict::Pass(d) => (true, d),
            Verdict::Fail(d) => (false, d),
            Verdict::Incomplete => return,
        };
        self.judged = true;
        debug!(
            "health check of {} in pool {}: {}",
            self.state.name(),
            self.pool,
            if ok { "pass" } else { "fail" }
        );
        self.state
            .record_check(&self.pool, ok, &detail, self.spec.rise, self.spec.fall);
    }
}

/// Where a step of a check left it.
enum Step {
    /// Waiting for readiness.
    Wait,
    /// The connect failed.
    ConnectFailed(io::Error),
    /// Judged.
    Done(Verdict),
}

/// Take a check as far as the socket lets it (edge-triggered: until it would block).
fn advance(
    probe: &mut Probe,
    spec: &HealthSpec,
    state: &UpstreamState,
    tls: Option<&UpstreamTls>,
) -> Step {
    loop {
        match &mut probe.phase {
            Phase::Connecting => {
                // mio's connect recipe: take_error, then peer_addr.
                match probe.stream.take_error() {
                    Ok(Some(e)) | Err(e) => return Step::ConnectFailed(e),
                    Ok(None) => {}
                }
                match probe.stream.peer_addr() {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Wait,
                    Err(e) => return Step::ConnectFailed(e),
                }
                if let Some(t) = tls {
                    let conn = t.name_for(&state.name()).and_then(|name| {
                        rustls::ClientConnection::new(Arc::clone(&t.config), name)
                            .map_err(|e| e.to_string())
                    });
                    match conn {
                        Ok(c) => {
                            probe.tls = Some(Box::new(c));
                            // The PROXY header of a send_proxy pool precedes the ClientHello.
                            let header = check::proxy_header(spec);
                            if !header.is_empty() && probe.stream.write_all(&header).is_err() {
                                return Step::Done(Verdict::Fail(
                                    "cannot send the PROXY header".to_string(),
                                ));
                            }
                            probe.phase = Phase::Handshaking;
                            continue;
                        }
                        Err(e) => return Step::Done(Verdict::Fail(format!("TLS: {e}"))),
                    }
                }
                match spec.check {
                    Check::Tcp => return Step::Done(Verdict::Pass("connected".to_string())),
                    Check::Http => {
                        probe.phase = Phase::Sending(check::request(spec, state.addr()), 0);
                    }
                }
            }
            Phase::Handshaking => {
                let Some(conn) = probe.tls.as_mut() else {
                    return Step::Done(Verdict::Fail("no TLS session".to_string()));
                };
                match tls_pump(conn, &mut probe.stream) {
                    Ok(eof) if conn.is_handshaking() => {
                        if eof {
                            return Step::Done(Verdict::Fail(
                                "closed during the TLS handshake".to_string(),
                            ));
                        }
                        return Step::Wait;
                    }
                    Ok(_) => {}
                    Err(e) => return Step::Done(Verdict::Fail(format!("TLS: {e}"))),
                }
                match spec.check {
                    Check::Tcp => {
                        return Step::Done(Verdict::Pass("TLS handshake done".to_string()))
                    }
                    Check::Http => {
                        probe.phase = Phase::Sending(check::http_request(spec, state.addr()), 0);
                    }
                }
            }
            Phase::Sending(bytes, sent) => {
                if let Some(conn) = probe.tls.as_mut() {
                    // A check's request is small: rustls takes it whole.
                    if *sent < bytes.len() {
                        match conn.writer().write(&bytes[*sent..]) {
                            Ok(n) => *sent += n,
                            Err(e) => {
                                return Step::Done(Verdict::Fail(format!("send failed: {e}")))
                            }
                        }
                    }
                    match tls_pump(conn, &mut probe.stream) {
                        Ok(_) if conn.wants_write() || *sent < bytes.len() => return Step::Wait,
                        Ok(_) => probe.phase = Phase::Reading(Vec::new()),
                        Err(e) => return Step::Done(Verdict::Fail(format!("TLS: {e}"))),
                    }
                    continue;
                }
                match probe.stream.write(&bytes[*sent..]) {
                    Ok(n) => {
                        *sent += n;
                        if *sent == bytes.len() {
                            probe.phase = Phase::Reading(Vec::new());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Step::Done(Verdict::Fail(format!("send failed: {e}"))),
                }
            }
            Phase::Reading(got) => {
                let mut chunk = [0u8; 4096];
                let read = match probe.tls.as_mut() {
                    Some(conn) => match tls_pump(conn, &mut probe.stream) {
                        Err(e) => return Step::Done(Verdict::Fail(format!("TLS: {e}"))),
                        Ok(eof) => match conn.reader().read(&mut chunk) {
                            Ok(0) => Ok(0),
                            Ok(n) => Ok(n),
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock && eof => Ok(0),
                            Err(e) => Err(e),
                        },
                    },
                    None => probe.stream.read(&mut chunk),
                };
                let (n, eof) = match read {
                    Ok(0) => (0, true),
                    Ok(n) => (n, false),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Step::Done(Verdict::Fail(format!("read failed: {e}"))),
                };
                let take = n.min(check::MAX_RESPONSE + 1 - got.len().min(check::MAX_RESPONSE));
                got.extend_from_slice(&chunk[..take]);
                match check::judge(spec, got, eof) {
                    Verdict::Incomplete if !eof => {}
                    Verdict::Incomplete => {
                        return Step::Done(Verdict::Fail("closed mid-head".to_string()))
                    }
                    v => return Step::Done(v),
                }
            }
        }
    }
}

/// Move a check's TLS records both ways as far as the socket lets them: out all rustls has,
/// in all the socket has (processed). `Ok(true)` once the upstream closed its side.
fn tls_pump(conn: &mut rustls::ClientConnection, stream: &mut TcpStream) -> io::Result<bool> {
    tls_flush(conn, stream)?;
    loop {
        match conn.read_tls(stream) {
            Ok(0) => return Ok(true),
            Ok(_) => {
                let state = conn.process_new_packets().map_err(io::Error::other)?;
                if state.peer_has_closed() {
                    return Ok(true);
                }
                // The server's next flight may be due now (the handshake's end).
                tls_flush(conn, stream)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // rustls' buffer is full: the caller reads the plaintext out first.
            Err(e) if e.kind() == io::ErrorKind::Other => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Write rustls' records until it has none or the socket takes no more.
fn tls_flush(conn: &mut rustls::ClientConnection, stream: &mut TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
