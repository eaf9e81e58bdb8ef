//! Choosing and reaching an upstream: the pick, the wait in the pool's queue for a
//! `max_conns` slot, the nonblocking connect, the judgement of a failed connect, and the
//! retries (the next upstream, or a fresh connection after a dead pooled one).

use super::*;
use crate::balance::outlier;
use crate::net::{connect_reason, is_local_shortage, marks_upstream_down, upstream_token};
use crate::upstream::{Ejection, Waiter};
use std::sync::atomic::AtomicU64;

/// The next wait's ticket, for the whole process (see `enqueue_for_a_slot`).
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

impl Session {
    /// The upstream state of member `idx` of this exchange's pool.
    fn member_state(&self, idx: usize) -> &'static UpstreamState {
        let pool = self.exchange_pool();
        self.snap.pools[pool].members[idx].state
    }

    /// The pool of the current exchange (0 outside one).
    pub(super) fn exchange_pool(&self) -> usize {
        match &self.state {
            State::Exchange(ex) => ex.pool,
            _ => 0,
        }
    }

    /// Connect to the next eligible upstream of the exchange's pool not tried yet for this
    /// request, within the pool's retries; or wait in the pool's queue when every eligible one
    /// is at its `max_conns`.
    pub(super) fn connect_next(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Fail> {
        self.drop_upstream_keep_request(ctx.registry, ctx.conns);
        let (p, key) = match &self.state {
            State::Exchange(ex) => (ex.pool, ex.hash),
            _ => return Err(Fail::Abort),
        };
        // Queued by this call: the pick is made once more after the enqueue (a slot freed in
        // between woke nobody), and the request then waits if that finds none either.
        let mut queued_now = false;
        loop {
            let pool = &self.snap.pools[p];
            let State::Exchange(ex) = &self.state else {
                return Err(Fail::Abort);
            };
            if ex.tried.len() > pool.retries {
                return Err(self.no_retry_left(pool));
            }
            // Only slow start needs the time.
            let now_ms = if pool.slow_start_ms > 0 {
                crate::upstream::tick_ms(ctx.now)
            } else {
                0
            };
            let idx = match pool.pick(&ex.tried, key, ctx.balance.for_pool(p), now_ms) {
                Choice::Member(i) => i,
                Choice::NoneAlive => {
                    debug!(
                        "{}: no upstream alive in pool {}: 503",
                        self.client_ip, pool.name
                    );
                    return Err(Fail::Respond(503));
                }
                Choice::AllFull if queued_now => return Ok(()),
                Choice::AllFull => {
                    self.enqueue_for_a_slot(ctx, p)?;
                    queued_now = true;
                    // The second look must not be answered from before the enqueue: the pick
                    // reads the in-flight counts with relaxed loads (see `PoolShared::enqueue`).
                    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                    continue;
                }
                Choice::AllTried => {
                    debug!(
                        "{}: no upstream left to try in pool {}: 502",
                        self.client_ip, pool.name
                    );
                    return Err(Fail::Respond(502));
                }
            };
            let member = &pool.members[idx];
            let queue = pool.capped.then_some(pool.shared);
            let Some(flight) = member.state.try_begin_request(member.max_conns, queue) else {
                // Another worker took its last slot since the pick: pick again (it is full
                // now, so another member, or the queue).
                continue;
            };
            // A try after the first spends the pool's retry budget (once per try made).
            if self.tries() > 0 {
                self.spend_retry(pool, ctx)?;
            }
            // A slot of our own: out of the queue, if we were in it (the slot is used).
            self.leave_queue(ctx.worker, true);
            if let State::Exchange(ex) = &mut self.state {
                ex.tried.insert(idx);
            }
            match self.connect_to(idx, flight, true, ctx) {
                Ok(()) => return Ok(()),
                Err(e) => self.connect_failed(idx, &e, ctx)?,
            }
        }
    }

    /// Upstreams tried for the current request.
    #[inline]
    fn tries(&self) -> usize {
        match &self.state {
            State::Exchange(ex) => ex.tried.len(),
            _ => 0,
        }
    }

    /// Every try allowed failed: 502, or 503 when they took the last alive upstreams down
    /// (as for a request that finds the pool so).
    #[cold]
    fn no_retry_left(&self, pool: &crate::balance::Pool) -> Fail {
        let status = if pool.any_alive() { 502 } else { 503 };
        debug!(
            "{}: {} tries in pool {}, no retry left: {status}",
            self.client_ip,
            self.tries(),
            pool.name
        );
        Fail::Respond(status)
    }

    /// A retry about to be made spends the pool's retry budget (retries may add only a share
    /// of the pool's first tries); past it, the request gets what a request with no retry left
    /// gets.
    #[cold]
    fn spend_retry(&self, pool: &crate::balance::Pool, ctx: &Ctx<'_>) -> Result<(), Fail> {
        if crate::balance::budget::take_retry(pool, ctx.now.ns() / 1_000_000_000) {
            return Ok(());
        }
        debug!(
            "{}: pool {}'s retry budget is spent: no retry",
            self.client_ip, pool.name
        );
        Err(self.no_retry_left(pool))
    }

    /// Every eligible upstream of pool `p` is at its `max_conns`: join the pool's queue (in
    /// order of arrival, woken when a slot frees on any worker) until the pool's
    /// `queue_timeout`, then 503. A request woken that finds the slot taken again goes back to
    /// the front of the queue, keeping its deadline.
    fn enqueue_for_a_slot(&mut self, ctx: &mut Ctx<'_>, p: usize) -> Result<(), Fail> {
        let pool = &self.snap.pools[p];
        let timeout = self.snap.cfg.pools[p].queue_timeout;
        let State::Exchange(ex) = &mut self.state else {
            return Err(Fail::Abort);
        };
        let again = match ex.phase {
            Phase::Queued { ticket, .. } => {
                let old = Waiter {
                    worker: ctx.worker,
                    key: self.key,
                    ticket,
                };
                if pool.shared.cancel(old) {
                    // Still in the queue: the wake-up was not for this place. Keep it.
                    ex.phase = Phase::Queued {
                        ticket,
                        until: *ex.queue_until.get_or_insert(ctx.now + timeout),
                        woken: false,
                    };
                    return Ok(());
                }
                true
            }
            _ => ex.queue_until.is_some(),
        };
        // One deadline for the whole request, however often it waits (after a failed connect).
        let until = *ex.queue_until.get_or_insert(ctx.now + timeout);
        if ctx.now >= until {
            return Err(self.queue_timed_out(p));
        }
        // A process-wide ticket: (worker, key, ticket) never repeats, so a wake-up meant for
        // an earlier wait (of this session, or of one that had the same key) is told apart.
        let ticket = NEXT_TICKET.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let waiter = Waiter {
            worker: ctx.worker,
            key: self.key,
            ticket,
        };
        if !pool.shared.enqueue(waiter, again) {
            debug!(
                "{}: the queue of pool {} is full: 503",
                self.client_ip, pool.name
            );
            return Err(Fail::Respond(503));
        }
        debug!(
            "{}: every upstream of pool {} is at its max_conns: queued",
            self.client_ip, pool.name
        );
        ex.phase = Phase::Queued {
            ticket,
            until,
            woken: false,
        };
        Ok(())
    }

    /// The wait for a slot in pool `p` ended: counted, and a 503.
    pub(super) fn queue_timed_out(&mut self, p: usize) -> Fail {
        let pool = &self.snap.pools[p];
        pool.shared
            .queue_timeouts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        debug!(
            "{}: no slot in pool {} within its queue_timeout: 503",
            self.client_ip, pool.name
        );
        Fail::Respond(503)
    }

    /// Leave the pool's queue, if the exchange waits in it. `took_a_slot`: the request has a
    /// slot of its own now. Otherwise (a timeout, the client gone) a wake-up already on its way
    /// to it would be lost with it: it is passed on to the next waiter.
    pub(super) fn leave_queue(&mut self, worker: usize, took_a_slot: bool) {
        let State::Exchange(ex) = &mut self.state else {
            return;
        };
        let Phase::Queued { ticket, woken, .. } = ex.phase else {
            return;
        };
        // The phase that follows is set by the caller; until then nothing waits.
        ex.phase = Phase::Buffering;
        let Some(pool) = self.snap.pools.get(ex.pool) else {
            return;
        };
        let still_queued = pool.shared.cancel(Waiter {
            worker,
            key: self.key,
            ticket,
        });
        if !took_a_slot && (woken || !still_queued) {
            pool.shared.slot_freed();
        }
    }

    /// A worker's mailbox said a slot freed for wait `ticket`: pick again at the next round.
    pub fn wake(&mut self, ticket: u64) {
        if let State::Exchange(ex) = &mut self.state {
            if let Phase::Queued {
                ticket: waiting,
                woken,
                ..
            } = &mut ex.phase
            {
                if *waiting == ticket {
                    *woken = true;
                }
            }
        }
    }

    /// A live request to member `idx` failed before a response head (`detail` says how):
    /// counted, and the upstream ejected at the pool's `consecutive_failures` in a row.
    pub(super) fn count_failure(&self, idx: usize, detail: &str) {
        outlier::count_failure(&self.snap.pools[self.exchange_pool()], idx, detail);
    }

    /// Judge a failed connect to member `idx`: refused/unreachable/timed out ejects the
    /// upstream at once (within the pool's `max_ejected_percent`), another error counts
    /// towards `consecutive_failures` (the caller tries the next one); the proxy's own
    /// shortage is a 503 right away.
    pub(super) fn connect_failed(
        &self,
        idx: usize,
        e: &io::Error,
        _ctx: &mut Ctx<'_>,
    ) -> Result<(), Fail> {
        let state = self.member_state(idx);
        if is_local_shortage(e) {
            // EMFILE, EADDRNOTAVAIL and the like are the proxy's own trouble: the upstream is
            // not to blame and stays in the rotation.
            warn!("cannot open a connection to {}: {e}", state.name());
            return Err(Fail::Respond(503));
        }
        state.record_connect_failure();
        if marks_upstream_down(e) {
            let pool = &self.snap.pools[self.exchange_pool()];
            outlier::eject(pool, idx, Ejection::Failures, &connect_reason(e));
        } else {
            warn!("connect to {} failed: {e}", state.name());
            self.count_failure(idx, &format!("connect: {e}"));
        }
        Ok(())
    }

    /// Take an idle pooled connection to member `idx` (when `reuse`), else start a
    /// nonblocking connect to it, for the request counted by `flight`; the exchange's phase
    /// follows (awaiting the head on a pooled connection, connecting otherwise).
    pub(super) fn connect_to(
        &mut self,
        idx: usize,
        flight: InFlight,
        reuse: bool,
        ctx: &mut Ctx<'_>,
    ) -> io::Result<()> {
        let state = self.member_state(idx);
        let send_proxy = self.snap.cfg.pools[self.exchange_pool()].send_proxy;
        // A connection that carries a PROXY header serves that client only.
        let tag = send_proxy.map(|_| self.peer.ip().to_canonical());
        if reuse {
            if let Some(r) = ctx
                .conns
                .take(state.id, tag, self.key, ctx.now, ctx.registry)
            {
                let mut peer = Peer::new(r.stream);
                // Edge-triggered: its writable edge was reported long ago. A pending EOF on
                // it would have evicted it from the pool, or shows up as a failed read.
                peer.writable = true;
                flight.sent(ctx.worker);
                self.upstream.set(
                    Upstream {
                        peer,
                        idx,
                        flight,
                        id: r.id,
                        reused: true,
                        requests: r.requests + 1,
                        write_failed: false,
                        sent_at: None,
                        preamble: None,
                        tls: r.tls,
                        tcp_up: true,
                    },
                    &mut ctx.exchanges.slots,
                );
                self.set_phase(Phase::AwaitingHead(HeadProgress::START));
                return Ok(());
            }
        }
        let member = &self.snap.pools[self.exchange_pool()].members[idx];
        let addr = member.addr;
        // TLS: the session is set up before the connect, so that a name that cannot be one
        // fails like a connect (the next upstream is tried).
        let tls = match &self.snap.upstream_tls[self.exchange_pool()] {
            Some(t) => {
                let name = t.name_for(&member.name).map_err(io::Error::other)?;
                let conn = rustls::ClientConnection::new(Arc::clone(&t.config), name)
                    .map_err(io::Error::other)?;
                Some(Box::new(conn))
            }
            None => None,
        };
        let mut stream = TcpStream::connect(addr)?;
        let id = ctx.conns.open(self.key);
        if let Err(e) = ctx.registry.register(
            &mut stream,
            upstream_token(id),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            ctx.conns.closed(id);
            return Err(e);
        }
        let _ = stream.set_nodelay(true);
        let preamble = send_proxy.map(|version| {
            let local = self
                .client
                .stream
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let mut header = Vec::with_capacity(crate::proxy_protocol::V1_MAX);
            crate::proxy_protocol::write(version, self.peer, local, &mut header);
            Box::new(exchange::Preamble(header))
        });
        self.upstream.set(
            Upstream {
                peer: Peer::new(stream),
                idx,
                flight,
                id,
                reused: false,
                requests: 1,
                write_failed: false,
                sent_at: None,
                preamble,
                tls,
                tcp_up: false,
            },
            &mut ctx.exchanges.slots,
        );
        self.set_phase(Phase::Connecting { since: ctx.now });
        Ok(())
    }

    /// Set the exchange's phase (no-op outside an exchange).
    #[inline]
    pub(super) fn set_phase(&mut self, phase: Phase) {
        if let State::Exchange(ex) = &mut self.state {
            ex.phase = phase;
        }
    }

    /// Drop the upstream socket but keep the queued request (for a retry).
    pub(super) fn drop_upstream_keep_request(&mut self, registry: &Registry, conns: &mut ConnPool) {
        if let Some(mut up) = self.upstream.take() {
            let _ = registry.deregister(&mut up.peer.stream);
            conns.closed(up.id);
        }
        self.clear_upstream_input();
        if let State::Exchange(ex) = &mut self.state {
            if let Some(w) = &mut ex.replay {
                *w = 0;
            }
        }
    }

    /// Check a pending nonblocking connect (mio's `TcpStream::connect` recipe: on writable,
    /// `take_error`, then `peer_addr`), then, for a pool with `tls = true`, take the TLS
    /// handshake as far as the socket lets it. The connect timeout covers both.
    pub(super) fn poll_connect(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(false);
        };
        let (Phase::Connecting { .. }, Some(up)) = (&ex.phase, self.upstream.get_mut()) else {
            return Ok(false);
        };
        let mut progress = false;
        if !up.tcp_up {
            if !up.peer.writable {
                return Ok(false);
            }
            let err = match up.peer.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) => match up.peer.stream.peer_addr() {
                    Ok(_) => None,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        // Spurious wakeup: still connecting.
                        up.peer.writable = false;
                        return Ok(false);
                    }
                    Err(e) => Some(e),
                },
            };
            if let Some(e) = err {
                let idx = up.idx;
                self.connect_failed(idx, &e, ctx)?;
                self.connect_next(ctx)?;
                return Ok(true);
            }
            up.tcp_up = true;
            progress = true;
        }
        if up.tls.as_ref().is_some_and(|c| c.is_handshaking()) {
            match upstream_handshake(up, &mut self.uin, ctx.bufs) {
                Ok(true) => {}
                Ok(false) => return Ok(progress),
                Err(why) => {
                    let idx = up.idx;
                    self.upstream_tls_failed(idx, &why);
                    self.connect_next(ctx)?;
                    return Ok(true);
                }
            }
        }
        up.flight.sent(ctx.worker);
        ex.phase = Phase::AwaitingHead(HeadProgress::START);
        self.last_progress = ctx.now;
        Ok(true)
    }

    /// The TLS handshake with member `idx` failed (its certificate did not verify, it does
    /// not speak TLS, ...): a failed connect, which takes it down with the reason, as a
    /// refused one does. The request was not sent: it goes to the next upstream.
    fn upstream_tls_failed(&self, idx: usize, why: &str) {
        let state = self.member_state(idx);
        let pool = &self.snap.pools[self.exchange_pool()];
        state.record_connect_failure();
        warn!("TLS handshake with {} failed: {why}", state.name());
        outlier::eject(pool, idx, Ejection::Failures, &format!("TLS: {why}"));
    }

    /// The upstream closed (or reset) before sending any response byte.
    pub(super) fn upstream_failed_before_response(
        &mut self,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Err(Fail::Abort);
        };
        let Some(up) = self.upstream.get() else {
            return Err(Fail::Abort);
        };
        let (idx, reused) = (up.idx, up.reused);
        let name = up.flight.upstream().name();
        // Nothing reached the client and the whole request is still here: an idempotent
        // request can be sent again (RFC 9110 §9.2.2).
        let blameless = reused && !ex.fresh_retry_used;
        if !(ex.req.idempotent && ex.replay.is_some()) {
            warn!("upstream {name} closed before answering: 502");
            if !blameless {
                self.count_failure(idx, "closed before answering");
            }
            return Err(Fail::Respond(502));
        }
        if reused && !ex.fresh_retry_used {
            // A pooled connection the upstream had closed meanwhile: one fresh connection to
            // the same upstream, which is not to blame.
            debug!("pooled connection to {name} was closed; retrying on a fresh one");
            ex.fresh_retry_used = true;
            self.drop_upstream_keep_request(ctx.registry, ctx.conns);
            let pool = &self.snap.pools[self.exchange_pool()];
            let member = &pool.members[idx];
            let queue = pool.capped.then_some(pool.shared);
            // Its slot went with the connection: without one now, the request queues.
            if let Some(flight) = member.state.try_begin_request(member.max_conns, queue) {
                match self.connect_to(idx, flight, false, ctx) {
                    Ok(()) => return Ok(()),
                    Err(e) => self.connect_failed(idx, &e, ctx)?,
                }
            }
        } else {
            debug!("upstream {name} closed before answering; retrying the request elsewhere");
            self.count_failure(idx, "closed before answering");
        }
        self.connect_next(ctx)
    }
}

/// Member `idx` of `pool` answered `code` (502, 503 or 504) to worker `worker`: counted, and
/// ejected at the pool's `consecutive_5xx` in a row.
#[cold]
pub(super) fn gateway_error(pool: &crate::balance::Pool, idx: usize, code: u16, worker: usize) {
    let Some(member) = pool.members.get(idx) else {
        return;
    };
    let n = member.state.count_gateway_error(worker);
    let most = pool.outlier.consecutive_5xx;
    if most > 0 && n >= most {
        let why = format!("{n} responses 502/503/504 in a row, the last {code}");
        outlier::eject(pool, idx, Ejection::Errors5xx, &why);
    }
}

/// Take an upstream's TLS handshake as far as the socket lets it: the PROXY header first (it
/// precedes the ClientHello on the wire), then rustls' records out and in. `Ok(true)`: done;
/// `Ok(false)`: waiting for the socket; `Err`: why it failed.
fn upstream_handshake(
    up: &mut Upstream,
    scratch: &mut Buffer,
    bufs: &mut crate::buffer::BufPool,
) -> Result<bool, String> {
    if let Some(preamble) = &up.preamble {
        let preamble = &preamble.0;
        match up.peer.write_from(preamble, false) {
            Ok(n) if n == preamble.len() => up.preamble = None,
            Ok(n) => {
                up.preamble = Some(Box::new(exchange::Preamble(preamble[n..].to_vec())));
                return Ok(false);
            }
            Err(e) => return Err(format!("cannot send the PROXY header: {e}")),
        }
    }
    let Some(conn) = up.tls.as_mut() else {
        return Ok(true);
    };
    loop {
        super::tls::flush_records(conn, &mut up.peer).map_err(|e| e.to_string())?;
        if !conn.is_handshaking() {
            return Ok(true);
        }
        if !up.peer.readable {
            return Ok(false);
        }
        // No plaintext comes before the handshake's end (no early data here).
        super::tls::read_records(conn, &mut up.peer, scratch, bufs).map_err(|e| e.to_string())?;
        if up.peer.eof && conn.is_handshaking() {
            return Err("the upstream closed the connection during the handshake".to_string());
        }
    }
}
