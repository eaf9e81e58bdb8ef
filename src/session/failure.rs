//! What a failed step becomes: an answer of our own when the client can still get one, else
//! a close; and the queueing of such answers.

use super::*;

impl Session {
    /// Turn a step's error into the next state.
    pub(super) fn after_step(&mut self, r: Result<(), Fail>, ctx: &mut Ctx<'_>) -> Drive {
        match r {
            Ok(()) => self.drive(ctx),
            Err(e) => match self.fail(e, ctx) {
                Drive::Idle => self.drive(ctx),
                d => d,
            },
        }
    }

    /// Handle a failure: answer if we still can, else close. `Idle` means "keep driving".
    pub(super) fn fail(&mut self, e: Fail, ctx: &mut Ctx<'_>) -> Drive {
        if let State::Closing { .. } = self.state {
            return Drive::Closed;
        }
        let final_started = match &self.state {
            State::Exchange(ex) => ex.phase.final_started(),
            State::Tunnel => true,
            _ => false,
        };
        // A request still waiting for a slot gives its place up (and any wake-up on its way
        // to the next waiter).
        self.leave_queue(ctx.worker, false);
        let closing_without_answer = !matches!(e, Fail::Respond(_)) || final_started;
        if closing_without_answer && self.log_open {
            // What reached the client is logged: the response's status if it started, else
            // 499 (the client left, or the exchange broke before any answer).
            let status = match &self.state {
                State::Exchange(ex) if ex.status != 0 => ex.status,
                _ => 499,
            };
            self.log_end(ctx.logger, ctx.log_batch, status, true, None, ctx.now);
        }
        self.drop_upstream(ctx.registry, ctx.conns);
        self.upstream.release(&mut ctx.exchanges.slots);
        self.end_spans(ctx.pipes);
        match e {
            Fail::Respond(status) if !final_started => {
                // Keep the connection when the request was read in full and nothing is off
                // with the client side; an error about the head itself always closes.
                let keep = match &self.state {
                    State::Exchange(ex) => plan::keep_after_local_answer(
                        status,
                        &ex.req,
                        matches!(ex.req_body, RequestBody::Done),
                        ctx.shutting_down,
                    ),
                    _ => false,
                };
                let retry_after = (status == 503).then(|| {
                    let pool = self.exchange_pool();
                    let interval = self
                        .snap
                        .cfg
                        .pools
                        .get(pool)
                        .map_or(ctx.cfg.health_interval, |p| p.health.interval);
                    interval.as_secs().max(1)
                });
                local::write_response(status, !keep, retry_after, ctx.scratch_take());
                ctx.stats.count_local(status);
                if status >= 500 {
                    // The pool's own error count, for its error share (an error path only).
                    if let State::Exchange(ex) = &self.state {
                        if let Some(p) = self.snap.pools.get(ex.pool) {
                            p.shared
                                .local_5xx
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                self.log_local(ctx, status);
                // An answer that cannot be queued whole is not sent at all: the connection
                // closes after what is queued before it.
                let keep = self.queue_scratch_for_client(ctx) && keep;
                if keep {
                    self.finish_exchange(ctx, false);
                } else {
                    self.state = State::Closing {
                        linger_since: None,
                        clean: false,
                    };
                }
                Drive::Idle
            }
            _ => {
                // A response is under way: close without completing its framing, so the
                // client sees a truncated message rather than a wrong one.
                if !final_started {
                    return Drive::Closed;
                }
                self.state = State::Closing {
                    linger_since: None,
                    clean: false,
                };
                Drive::Idle
            }
        }
    }

    /// Queue an answer of our own for the client, whole or not at all (false, logged). The
    /// forwarding keeps `LOCAL_ANSWER_ROOM` free for it, so it always fits in practice.
    pub(super) fn queue_scratch_for_client(&mut self, ctx: &mut Ctx<'_>) -> bool {
        self.cout.attach(ctx.bufs);
        let queued = self.cout.extend_whole(ctx.scratch);
        if !queued {
            warn!(
                "{}: no room for a {}-byte answer; closing without it",
                self.client_ip,
                ctx.scratch.len()
            );
        }
        queued
    }
}
