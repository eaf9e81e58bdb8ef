//! The upstream side of an exchange: the response head is checked and rewritten for the
//! client, the body follows its framing, and the exchange ends with the upstream connection
//! pooled or closed.

use super::*;

impl Session {
    /// Parse the response head, carry out its plan, then move body bytes from the upstream
    /// buffer to the client's.
    pub(super) fn pump_response(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(false);
        };
        let Some(up) = self.upstream.get() else {
            return Ok(false);
        };
        let up_eof = up.peer.eof;
        let mut progress = false;
        loop {
            match &mut ex.phase {
                Phase::AwaitingHead(checked) => {
                    if self.uin.is_empty() {
                        if up_eof {
                            return self.upstream_failed_before_response(ctx).map(|_| true);
                        }
                        return Ok(progress);
                    }
                    let limits = ctx.cfg.limits;
                    let (data, is_head) = (self.uin.data(), ex.req.is_head);
                    parse_with_slots!(
                        let parsed = |slots| response::parse_resuming(
                            data, is_head, &limits, slots, checked
                        ),
                        ResponseError::Slots
                    );
                    let upstream = up.flight.upstream();
                    let resp = match parsed {
                        Ok(Some(r)) => {
                            // Whatever comes next (this head consumed, or parsed again once
                            // the client has room) starts over.
                            *checked = HeadProgress::START;
                            r
                        }
                        Ok(None) if up_eof => {
                            warn!("upstream {} closed mid-head: 502", upstream.name());
                            let pool = &self.snap.pools[ex.pool];
                            crate::balance::outlier::count_failure(pool, up.idx, "closed mid-head");
                            return Err(Fail::Respond(502));
                        }
                        Ok(None) => return Ok(progress),
                        Err(e) => {
                            warn!(
                                "upstream {} sent a bad response head ({e:?}): 502",
                                upstream.name()
                            );
                            let pool = &self.snap.pools[ex.pool];
                            crate::balance::outlier::count_failure(
                                pool,
                                up.idx,
                                "a bad response head",
                            );
                            return Err(Fail::Respond(502));
                        }
                    };
                    let facts = plan::ExchangeFacts {
                        continue_sent: ex.continue_sent,
                        request_read: matches!(ex.req_body, RequestBody::Done),
                        stopping: ctx.shutting_down,
                        pooling: ctx.conns.max_idle() > 0,
                        upstream_idle_timeout: ctx.cfg.upstream_idle_timeout,
                    };
                    let (head_len, code) = (resp.head_len, resp.code);
                    self.cout.attach(ctx.bufs);
                    match plan::response(&resp, &ex.req, &facts) {
                        plan::ResponsePlan::Refuse(why) => {
                            warn!("upstream {} {why}: 502", upstream.name());
                            return Err(Fail::Respond(502));
                        }
                        plan::ResponsePlan::Interim { head } => {
                            if let Some(rctx) = head {
                                if !stage_response_head(
                                    &resp,
                                    &rctx,
                                    &mut self.cout,
                                    upstream,
                                    b"",
                                )? {
                                    return Ok(progress);
                                }
                                ex.continue_sent |= code == 100;
                            }
                            self.uin.consume(head_len);
                            progress = true;
                        }
                        plan::ResponsePlan::Upgrade { head } => {
                            if !stage_response_head(&resp, &head, &mut self.cout, upstream, b"")? {
                                return Ok(progress);
                            }
                            self.uin.consume(head_len);
                            ex.upstream_us = Some(record_response(up, 101, ctx));
                            ex.status = 101;
                            ex.body_from = self.client.bytes_out + self.cout.len() as u64;
                            ex.replay = None;
                            // The exchange ends here as far as the log goes: a tunnel follows.
                            self.log_end(ctx.logger, ctx.log_batch, 101, true, None, ctx.now);
                            self.state = State::Tunnel;
                            return Ok(true);
                        }
                        plan::ResponsePlan::Final(p) => {
                            let hsts = match (&self.tls, &self.snap.hsts_line) {
                                (Some(_), Some(line)) => &line[..],
                                _ => b"",
                            };
                            if !stage_response_head(&resp, &p.head, &mut self.cout, upstream, hsts)?
                            {
                                return Ok(progress);
                            }
                            self.uin.consume(head_len);
                            ex.upstream_keep = p.upstream_keep;
                            ex.upstream_us = Some(record_response(up, code, ctx));
                            if (502..=504).contains(&code) {
                                super::connect::gateway_error(
                                    &self.snap.pools[ex.pool],
                                    up.idx,
                                    code,
                                    ctx.worker,
                                );
                            }
                            ex.status = code;
                            ex.body_from = self.client.bytes_out + self.cout.len() as u64;
                            ex.close_after = p.close_client;
                            ex.phase = match p.body {
                                plan::ResponseBody::None => Phase::Draining,
                                plan::ResponseBody::Length(n) => {
                                    Phase::Streaming(ResponseBody::Length(n))
                                }
                                plan::ResponseBody::Chunked(mode) => Phase::Streaming(
                                    ResponseBody::Chunked(Decoder::new(&limits), mode),
                                ),
                                plan::ResponseBody::UntilClose => {
                                    Phase::Streaming(ResponseBody::UntilClose)
                                }
                            };
                            progress = true;
                        }
                    }
                }
                Phase::Streaming(ResponseBody::Chunked(..)) if self.down_span.is_some() => {
                    // A span of the body is under way: `pump_response_span` moves it.
                    return Ok(progress);
                }
                Phase::Streaming(ResponseBody::Length(rem))
                    if self.down_span.as_ref().is_some_and(|s| s.to_read() == *rem) =>
                {
                    // The span has the rest of the body: `pump_response_span` moves it.
                    return Ok(progress);
                }
                Phase::Streaming(ResponseBody::Length(rem)) => {
                    let n = (*rem)
                        .min(self.uin.len() as u64)
                        .min(forward_room(&self.cout) as u64) as usize;
                    if n > 0 {
                        // All `n` fit (`forward_room`); the count is still what moved.
                        let moved = self.cout.move_from(&mut self.uin, n, ctx.bufs);
                        *rem -= moved as u64;
                        progress = true;
                    }
                    if *rem == 0 {
                        // A span lent behind these bytes may still hold the body's end.
                        if self.down_span.is_none() {
                            ex.phase = Phase::Draining;
                        }
                    } else if up_eof && self.uin.is_empty() {
                        warn!("upstream {} closed mid-body", up.flight.upstream().name());
                        return Err(Fail::Abort);
                    } else if self.down_span.is_none() && (self.uin.len() as u64) < *rem {
                        // What the upstream has not sent yet may go by splice, behind what
                        // is read already (the client has it before the pipe's bytes); the
                        // upstream socket is read by the span from now on.
                        let unread = *rem - self.uin.len() as u64;
                        self.down_span = lend_span(
                            ctx.pipes,
                            unread,
                            self.splice_min(ctx.cfg.splice_min_response),
                            true,
                        );
                        progress |= self.down_span.is_some();
                    }
                    return Ok(progress);
                }
                Phase::Streaming(ResponseBody::Chunked(dec, mode)) => {
                    ctx.scratch.clear();
                    let consumed = dec
                        .transcode(
                            self.uin.data(),
                            ctx.scratch,
                            forward_room(&self.cout),
                            *mode,
                        )
                        .map_err(|e| {
                            warn!(
                                "upstream {} sent a bad chunked body: {e:?}",
                                up.flight.upstream().name()
                            );
                            Fail::Abort
                        })?;
                    if consumed > 0 {
                        self.cout.attach(ctx.bufs);
                        self.cout.extend(ctx.scratch);
                        self.uin.consume(consumed);
                        progress = true;
                    }
                    if dec.is_done() {
                        ex.phase = Phase::Draining;
                    } else if up_eof && self.uin.is_empty() {
                        warn!("upstream {} closed mid-body", up.flight.upstream().name());
                        return Err(Fail::Abort);
                    } else if self.uin.is_empty() {
                        // Inside a long chunk, its size line queued: its data may go by splice.
                        self.down_span = lend_span(
                            ctx.pipes,
                            dec.data_remaining(),
                            self.splice_min(ctx.cfg.splice_min_response),
                            true,
                        );
                        progress |= self.down_span.is_some();
                    }
                    return Ok(progress);
                }
                Phase::Streaming(ResponseBody::UntilClose) => {
                    let len = self.uin.len().min(forward_room(&self.cout));
                    if self.cout.move_from(&mut self.uin, len, ctx.bufs) > 0 {
                        progress = true;
                    }
                    if up_eof && self.uin.is_empty() {
                        ex.phase = Phase::Draining;
                        progress = true;
                    }
                    return Ok(progress);
                }
                Phase::Buffering
                | Phase::Queued { .. }
                | Phase::Connecting { .. }
                | Phase::Draining => return Ok(progress),
            }
        }
    }

    /// Move a span of the response body upstream socket → pipe → client socket, counting its
    /// bytes off the body's framing as they leave the upstream.
    #[inline(always)]
    pub(super) fn pump_response_span(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        if self.down_span.is_none() {
            return Ok(false);
        }
        self.move_response_span(ctx)
    }

    /// [`pump_response_span`](Self::pump_response_span) with a span lent.
    #[inline(never)]
    fn move_response_span(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        self.nagle_off();
        let (Some(span), State::Exchange(ex)) = (&mut self.down_span, &mut self.state) else {
            return Ok(false);
        };
        let Some(up) = self.upstream.get_mut() else {
            return Err(Fail::Abort);
        };
        // The span's bytes come after everything queued before it (the head, the size line,
        // body bytes read before the span began: those the body's count has beyond the span's).
        let ready = self.cout.is_empty()
            && match &ex.phase {
                Phase::Streaming(ResponseBody::Length(rem)) => *rem == span.to_read(),
                _ => true,
            };
        let moved = match move_span(span, &mut up.peer, &mut self.client, ready) {
            Ok(m) => m,
            Err(SpanError::Source(e)) => {
                warn!(
                    "upstream {} read error mid-body: {e}",
                    up.flight.upstream().name()
                );
                return Err(Fail::Abort);
            }
            Err(SpanError::Dest(e)) => {
                debug!("{}: write error: {e}", self.client_ip);
                return Err(Fail::Abort);
            }
        };
        span.note_pull(moved.pulled, moved.drained, ctx.now);
        let pulled = moved.pulled as u64;
        match &mut ex.phase {
            Phase::Streaming(ResponseBody::Length(rem)) => *rem = rem.saturating_sub(pulled),
            Phase::Streaming(ResponseBody::Chunked(dec, _)) => {
                dec.skip_data(pulled).map_err(|_| Fail::Abort)?
            }
            _ => {}
        }
        let mut progress = moved.progress;
        if span.is_done() {
            if let Some(span) = self.down_span.take() {
                span.finish(ctx.pipes);
            }
            // A pipe pushes only once the bytes read before it are out, so a body counted to
            // its end is through: the exchange drains now (no later round need come, as the
            // sockets may be quiet).
            if matches!(ex.phase, Phase::Streaming(ResponseBody::Length(0))) {
                ex.phase = Phase::Draining;
            }
            progress = true;
        } else if up.peer.eof && span.held() == 0 && ready {
            // Every byte the upstream sent has reached the client, which now sees a close in
            // the middle of the body.
            warn!("upstream {} closed mid-body", up.flight.upstream().name());
            return Err(Fail::Abort);
        }
        if progress {
            self.last_progress = ctx.now;
        }
        Ok(progress)
    }

    /// End the exchange when both directions are done.
    #[inline(always)]
    pub(super) fn maybe_finish(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let State::Exchange(ex) = &self.state else {
            return false;
        };
        if !matches!(ex.phase, Phase::Draining) {
            return false;
        }
        let body_done = matches!(ex.req_body, RequestBody::Done);
        if !body_done && !ex.close_after {
            // The response is out but the request body is still coming: take it to its end
            // (the upstream gets it, or it is dropped if the upstream stopped reading) so the
            // connection's framing stays known and it can serve the next request.
            return false;
        }
        self.finish_exchange(ctx, ex.close_after);
        true
    }

    pub(super) fn finish_exchange(&mut self, ctx: &mut Ctx<'_>, close: bool) {
        if let State::Exchange(ex) = &self.state {
            let status = ex.status;
            self.log_end(ctx.logger, ctx.log_batch, status, true, None, ctx.now);
        }
        self.release_upstream(ctx);
        self.served += 1;
        self.idle_since = ctx.now;
        let next = if close || ctx.shutting_down {
            let clean = matches!(&self.state, State::Exchange(ex) if matches!(ex.req_body, RequestBody::Done));
            State::Closing {
                linger_since: None,
                clean,
            }
        } else {
            State::waiting_for_head()
        };
        if let State::Exchange(ex) = std::mem::replace(&mut self.state, next) {
            ctx.exchanges.recycle(ex);
        }
    }

    /// After a complete exchange: put the upstream connection in the pool when it is clean
    /// (the whole request sent, the whole response read, nothing extra, keep-alive on both
    /// sides), else close it.
    pub(super) fn release_upstream(&mut self, ctx: &mut Ctx<'_>) {
        // A span ends its batch before its last bytes; one left batching was cut short, and
        // its socket's mark would hold the next response back.
        let batching = self.down_span.as_ref().is_some_and(|s| s.batching());
        self.end_spans(ctx.pipes);
        let (keep, pool) = match &self.state {
            State::Exchange(ex) if matches!(ex.req_body, RequestBody::Done) => {
                (ex.upstream_keep, ex.pool)
            }
            _ => (Duration::ZERO, 0),
        };
        if let Some(mut up) = self.upstream.take_and_release(&mut ctx.exchanges.slots) {
            // (Connected: an exchange ends with its response read.)
            let clean = !keep.is_zero()
                && !batching
                && !up.write_failed
                && !up.peer.eof
                && !up.peer.hung_up
                && self.uin.is_empty()
                && self.uout.is_empty()
                && !up.output_pending()
                && !up.holds_plaintext()
                && !(up.peer.readable && has_bytes_past_the_response(&up.peer.stream));
            if clean {
                let expires = ctx.now + keep;
                // A connection that sent a PROXY header serves its client only.
                let tag = self.snap.cfg.pools[pool]
                    .send_proxy
                    .map(|_| self.peer.ip().to_canonical());
                ctx.conns.put(
                    up.flight.upstream().id,
                    tag,
                    up.id,
                    (up.peer.stream, up.tls),
                    up.requests,
                    expires,
                    ctx.registry,
                );
            } else {
                let _ = ctx.registry.deregister(&mut up.peer.stream);
                ctx.conns.closed(up.id);
            }
            // `up.flight` drops here: the request's slot is handed on.
        }
        self.clear_upstream_input();
        self.uout.clear();
    }
}

/// A socket not read to `WouldBlock` may hold bytes past the response (a span takes exactly
/// the body's length, and a full read leaves the socket unknown): stray bytes, or an EOF, that
/// would be read as the next response on a reused connection. Edge-triggered, they raise no
/// new event once the connection is idle, so look now.
pub(super) fn has_bytes_past_the_response(stream: &TcpStream) -> bool {
    !connpool::is_quiet(stream)
}

/// Count a final response from `up` in the worker's shard of its counters, with the time since
/// the request was sent.
/// Returns that time, µs.
#[inline]
fn record_response(up: &Upstream, code: u16, ctx: &Ctx<'_>) -> u64 {
    let us = up.sent_at.map_or(0, |t| ctx.now.micros_since(t));
    up.flight.upstream().shard(ctx.worker).response(code, us);
    us
}

/// Rewrite a response head into the scratch buffer, to be queued for the client. `Ok(false)`:
/// it fits the client buffer but not yet, behind what is queued there; wait for the client to
/// take some. A head that could never fit (its rewrite grew it past the buffer, with a raised
/// `--max-head`) is a 502: it is never cut, nor waited on forever.
pub(super) fn stage_response_head(
    resp: &response::Response<'_, '_>,
    rctx: &ResponseContext,
    cout: &mut Buffer,
    upstream: &UpstreamState,
    extra: &[u8],
) -> Result<bool, Fail> {
    let max = cout
        .capacity()
        .saturating_sub(LOCAL_ANSWER_ROOM + extra.len());
    let room = forward_room(cout);
    // Written in place, behind what is queued: no copy through a scratch buffer.
    let spare = cout.spare_all();
    let limit = room.min(spare.len());
    let mut out = SliceOut::new(&mut spare[..limit.saturating_sub(extra.len())]);
    match rewrite::response_head(resp, rctx, &mut out, max) {
        Ok(len) if out.fits() => {
            if !extra.is_empty() {
                // Field lines of our own (Strict-Transport-Security) go before the blank line
                // that ends the head; the room for them was kept.
                let end = len - 2;
                spare[end..end + extra.len()].copy_from_slice(extra);
                spare[end + extra.len()..len + extra.len()].copy_from_slice(b"\r\n");
            }
            cout.commit(len + extra.len());
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) => {
            warn!(
                "upstream {} sent a response head of {} bytes once rewritten, over {}: 502",
                upstream.name(),
                e.len,
                e.max
            );
            Err(Fail::Respond(502))
        }
    }
}

/// What the forwarding may put in the client output buffer: all but `LOCAL_ANSWER_ROOM`.
pub(super) fn forward_room(cout: &Buffer) -> usize {
    cout.room().saturating_sub(LOCAL_ANSWER_ROOM)
}
