//! The health sweep: every `--health-interval`, one nonblocking connect to each upstream.
//! A connect that completes brings the upstream up; one refused, unreachable or timed out
//! takes it down. (One success or one failure decides for now; rise/fall thresholds later.)
//!
//! The prober only owns the probe sockets; the worker registers them, routes their readiness
//! here and schedules the sweep and the probe deadlines on its timer wheel.

use crate::session::{connect_reason, is_local_shortage, marks_upstream_down};
use crate::upstream::Pool;
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io;
use std::time::Instant;

/// The health probes of one worker: at most one connect in flight per upstream.
#[derive(Debug)]
pub struct Prober {
    /// The probe in flight for each upstream index, if any.
    probes: Vec<Option<Probe>>,
}

/// One probe connect in flight.
#[derive(Debug)]
struct Probe {
    /// The connecting socket.
    stream: TcpStream,
    /// When the connect started, for the health timeout.
    started: Instant,
}

impl Prober {
    /// A prober for `upstreams` upstreams, nothing in flight.
    pub fn new(upstreams: usize) -> Self {
        Prober {
            probes: (0..upstreams).map(|_| None).collect(),
        }
    }

    /// Start a probe to every upstream that has none in flight. `token(i)` is the mio token
    /// for upstream `i`'s probe. Returns the indices of the probes started (for their deadlines).
    pub fn sweep(
        &mut self,
        registry: &Registry,
        pool: &Pool,
        now: Instant,
        token: impl Fn(usize) -> Token,
        started: &mut Vec<usize>,
    ) {
        for (i, slot) in self.probes.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let addr = pool.get(i).addr;
            match TcpStream::connect(addr) {
                Ok(mut stream) => {
                    if let Err(e) = registry.register(&mut stream, token(i), Interest::WRITABLE) {
                        warn!("health check of {}: cannot register: {e}", pool.get(i).name);
                        continue;
                    }
                    *slot = Some(Probe {
                        stream,
                        started: now,
                    });
                    started.push(i);
                }
                Err(e) => judge(pool, i, &e),
            }
        }
    }

    /// Readiness for upstream `i`'s probe: settle it if the connect has finished.
    pub fn on_event(&mut self, i: usize, registry: &Registry, pool: &Pool) {
        let Some(slot) = self.probes.get_mut(i) else {
            return;
        };
        let Some(probe) = slot else { return };
        let outcome = match probe.stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match probe.stream.peer_addr() {
                Ok(_) => Ok(()),
                // Spurious wakeup: the connect is still in progress (mio's connect docs).
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(e),
            },
        };
        if let Some(mut probe) = slot.take() {
            let _ = registry.deregister(&mut probe.stream);
        }
        match outcome {
            Ok(()) => {
                pool.mark_up(i, "health check connect succeeded");
            }
            Err(e) => judge(pool, i, &e),
        }
    }

    /// Upstream `i`'s probe deadline passed: if it is still connecting, that is a failure.
    pub fn on_deadline(
        &mut self,
        i: usize,
        registry: &Registry,
        pool: &Pool,
        now: Instant,
        timeout: std::time::Duration,
    ) {
        let Some(slot) = self.probes.get_mut(i) else {
            return;
        };
        let due = slot.as_ref().is_some_and(|p| now >= p.started + timeout);
        if due {
            if let Some(mut probe) = slot.take() {
                let _ = registry.deregister(&mut probe.stream);
            }
            pool.mark_down(i, "health check timed out");
        }
    }

    /// Drop every probe in flight (at shutdown).
    pub fn stop(&mut self, registry: &Registry) {
        for slot in &mut self.probes {
            if let Some(mut probe) = slot.take() {
                let _ = registry.deregister(&mut probe.stream);
            }
        }
    }
}

/// A failed probe: refused/unreachable/timed out takes the upstream down; the proxy's own
/// shortage (EMFILE, EADDRNOTAVAIL, ...) says nothing about the upstream.
fn judge(pool: &Pool, i: usize, e: &io::Error) {
    if marks_upstream_down(e) {
        pool.mark_down(i, &format!("health check: {}", connect_reason(e)));
    } else if is_local_shortage(e) {
        warn!("health check of {} skipped: {e}", pool.get(i).name);
    } else {
        debug!("health check of {} failed: {e}", pool.get(i).name);
        pool.mark_down(i, &format!("health check: {e}"));
    }
}
