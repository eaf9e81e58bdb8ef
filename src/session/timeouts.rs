//! When a session wants to be woken, and what a timeout does to it: the head, body, upstream
//! and idle timeouts each end the exchange their own way (408, 504, a close).

use super::*;
use std::os::fd::AsRawFd;

impl Session {
    /// When the session wants to be woken if nothing happens before. `stopping_since`: when
    /// a graceful stop began, if one has.
    pub fn deadline(&self, cfg: &Config, stopping_since: Option<Tick>) -> Tick {
        let timeout = self.timeout_deadline(cfg, stopping_since);
        let timeout = match self.batch_deadline() {
            Some(t) => t.min(timeout),
            None => timeout,
        };
        match self.client_watch_deadline() {
            Some(t) => t.min(timeout),
            None => timeout,
        }
    }

    /// `BATCH_WAIT` after a response span's upstream, its reads waiting for a batch, was
    /// found drained with nothing since (its own clock: a client that keeps sending, or one
    /// slow to take the pipe's bytes, neither delays nor ends the batch); None when no read
    /// waits.
    fn batch_deadline(&self) -> Option<Tick> {
        let since = self.down_span.as_ref()?.batch_waiting_since()?;
        Some(since + BATCH_WAIT)
    }

    /// The upstream sends slower than a batch per `BATCH_WAIT`: its reads wake at one byte
    /// again, and what it has sent moves now.
    fn end_batch_wait(&mut self) -> io::Result<()> {
        let Some(span) = &mut self.down_span else {
            return Ok(());
        };
        let Some(up) = self.upstream.get_mut() else {
            span.forget_batch();
            return Ok(());
        };
        span.unbatch(up.peer.stream.as_raw_fd()).inspect_err(|e| {
            warn!(
                "upstream {}: cannot reset SO_RCVLOWAT: {e}",
                up.flight.upstream().name()
            )
        })?;
        // What came below the mark raised no event.
        up.peer.readable = true;
        Ok(())
    }

    /// When a first exchange still waiting on its upstream registers the client socket
    /// (`CLIENT_WATCH_AFTER`); None once registered.
    pub(super) fn client_watch_deadline(&self) -> Option<Tick> {
        // Unregistered means no wait for the client yet: `idle_since` is still the accept.
        (!self.client_registered).then(|| self.idle_since + CLIENT_WATCH_AFTER)
    }

    /// When the current wait times out: one deadline per state, and per phase of an exchange.
    pub(super) fn timeout_deadline(&self, cfg: &Config, stopping_since: Option<Tick>) -> Tick {
        let io_deadline = |pending_output: bool| {
            let t = if pending_output {
                cfg.write_timeout
            } else {
                cfg.read_timeout
            };
            self.last_progress + t
        };
        if let (Some(tls), Some(spec)) = (&self.tls, &cfg.tls) {
            if tls.handshaking() {
                return tls.since + spec.handshake_timeout;
            }
        }
        match &self.state {
            State::Head { started, .. } => {
                if self.client_output_pending() {
                    return io_deadline(true);
                }
                match started {
                    // The first head's deadline counts from the accept (slow first bytes too).
                    Some(t) if self.served > 0 => *t + cfg.client_header_timeout,
                    Some(_) => self.idle_since + cfg.client_header_timeout,
                    None if self.served == 0 => self.idle_since + cfg.client_header_timeout,
                    None => {
                        let idle = self.idle_since + cfg.keepalive_timeout;
                        match stopping_since {
                            // Stopping: an idle connection gets the grace to send the request
                            // its client may have sent already, then closes.
                            Some(t) => idle.min(t.max(self.idle_since) + STOP_IDLE_GRACE),
                            None => idle,
                        }
                    }
                }
            }
            State::Exchange(ex) => match &ex.phase {
                Phase::Buffering => io_deadline(self.client_output_pending()),
                Phase::Queued { until, .. } => *until,
                Phase::Connecting { since } => *since + cfg.connect_timeout,
                Phase::AwaitingHead(_) | Phase::Streaming(_) | Phase::Draining => {
                    // While the request is kept for a replay, the upstream buffer also holds
                    // bytes already sent: only the unsent rest is output waiting.
                    let sent = ex.replay.unwrap_or(0);
                    let in_pipe = self.spans_hold_bytes();
                    let up_pending = self.upstream.get().is_some_and(|u| u.output_pending());
                    io_deadline(
                        self.client_output_pending()
                            || self.uout.len() > sent
                            || up_pending
                            || in_pipe,
                    )
                }
            },
            State::Tunnel => io_deadline(
                self.client_output_pending()
                    || !self.uout.is_empty()
                    || self.upstream.get().is_some_and(|u| u.output_pending())
                    || self.spans_hold_bytes(),
            ),
            State::Closing { linger_since, .. } => match linger_since {
                Some(t) => *t + LINGER,
                None => io_deadline(true),
            },
        }
    }

    /// The deadline passed (the worker checked `deadline()`): act on it.
    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Drive {
        if self.client_watch_deadline().is_some_and(|t| ctx.now >= t) {
            if !self.register_client(ctx.registry) {
                return Drive::Closed;
            }
            if ctx.now < self.timeout_deadline(ctx.cfg, ctx.stopping_since) {
                return Drive::Idle;
            }
        }
        if self.batch_deadline().is_some_and(|t| ctx.now >= t) {
            if self.end_batch_wait().is_err() {
                return Drive::Closed;
            }
            if ctx.now < self.timeout_deadline(ctx.cfg, ctx.stopping_since) {
                return self.drive(ctx);
            }
        }
        let output_pending = self.client_output_pending();
        if let Some(tls) = &self.tls {
            if tls.handshaking() {
                // The handshake did not finish within handshake_timeout.
                self.handshake_failed(crate::tls::HandshakeFailure::Timeout, "timed out", ctx);
                return Drive::Closed;
            }
        }
        match &mut self.state {
            State::Head { started, .. } => {
                if output_pending {
                    debug!("{}: client stopped reading, closing", self.client_ip);
                    return Drive::Closed;
                }
                if self.awaiting_proxy_header {
                    // Not HTTP yet: a PROXY header cut short gets a close, as a bad one does.
                    debug!(
                        "{}: PROXY header not complete in time: closing",
                        self.client_ip
                    );
                    return Drive::Closed;
                }
                if started.is_some() {
                    debug!("{}: request head not complete in time: 408", self.client_ip);
                    if ctx.logger.is_some() {
                        let line = super::request_side::request_line(self.cin.data()).to_vec();
                        self.log_begin_bare(ctx, &line);
                    }
                    self.cin.clear();
                    local::write_response(408, true, None, ctx.scratch_take());
                    ctx.stats.count_local(408);
                    self.log_local(ctx, 408);
                    // Nothing is queued in this state: it fits (or the close says it all).
                    let _ = self.queue_scratch_for_client(ctx);
                    self.state = State::Closing {
                        linger_since: None,
                        clean: false,
                    };
                    return self.drive(ctx);
                }
                Drive::Closed
            }
            State::Exchange(ex) => match ex.phase {
                Phase::Connecting { .. } => {
                    if let Some(mut up) = self.upstream.take() {
                        let _ = ctx.registry.deregister(&mut up.peer.stream);
                        ctx.conns.closed(up.id);
                        let state = up.flight.upstream();
                        state.record_connect_failure();
                        let what = if up.tcp_up {
                            "TLS: handshake timed out"
                        } else {
                            "connect timed out"
                        };
                        crate::balance::outlier::eject(
                            &self.snap.pools[ex.pool],
                            up.idx,
                            crate::upstream::Ejection::Failures,
                            what,
                        );
                    }
                    if let Some(w) = &mut ex.replay {
                        *w = 0;
                    }
                    let r = self.connect_next(ctx);
                    self.after_step(r, ctx)
                }
                Phase::Queued { .. } => {
                    let pool = ex.pool;
                    self.leave_queue(ctx.worker, false);
                    let r = Err(self.queue_timed_out(pool));
                    self.after_step(r, ctx)
                }
                Phase::Buffering if !output_pending => {
                    // The body read before the connect stopped coming: the client's fault,
                    // and no upstream has seen a byte of it.
                    debug!("{}: request body not received in time: 408", self.client_ip);
                    self.after_step(Err(Fail::Respond(408)), ctx)
                }
                _ if ex.phase.final_started() || output_pending => {
                    // A stalled response, or a client that stopped reading what we queued for
                    // it (interim responses): no answer can be delivered, and a 504 would
                    // blame the upstream for the client's silence.
                    debug!("{}: exchange stalled, closing", self.client_ip);
                    Drive::Closed
                }
                _ => {
                    debug!("{}: upstream timed out: 504", self.client_ip);
                    // The upstream's failure only when it had the whole request: a client
                    // that stops sending its body must not get upstreams ejected.
                    let all_sent = matches!(ex.req_body, RequestBody::Done)
                        && self.uout.is_empty()
                        && self.up_span.is_none();
                    if let (true, Some(up)) = (all_sent, self.upstream.get()) {
                        let idx = up.idx;
                        self.count_failure(idx, "timed out before a response head");
                    }
                    self.after_step(Err(Fail::Respond(504)), ctx)
                }
            },
            State::Tunnel | State::Closing { .. } => Drive::Closed,
        }
    }
}
