//! The client side of an exchange: the request head becomes an exchange, and the request
//! body goes upstream (through the buffers, or by splice(2) for long spans).

use super::logging::log_begin;
use super::*;

impl Session {
    // Always inlined into its one caller, `process` (as the layout that measured lowest; out
    // of line it cost ~40 instructions per request, and left the body pump out of line too).
    #[inline(always)]
    pub(super) fn process_head(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        if self.cin.is_empty() {
            // Between requests: a client that closed ends the connection once the last
            // response is out. A graceful stop does not: a connection is owed the answer to
            // the request its client may have sent already (its first, or its next after a
            // keep-alive pause), which then says `Connection: close`; a silent one is closed
            // at its deadline (`client_header_timeout` for a first request, the stop's grace
            // for an idle one).
            if self.client.eof && !self.client_output_pending() {
                return Err(Fail::Abort);
            }
            return Ok(false);
        }
        if let State::Head {
            started: started @ None,
            ..
        } = &mut self.state
        {
            *started = Some(ctx.now);
            // A new request runs on the configuration in force now, to its end; a reload that
            // changed the buffers' sizes reaches a connection kept alive from before here.
            if !Arc::ptr_eq(&self.snap, ctx.snap) {
                self.snap = Arc::clone(ctx.snap);
                self.adopt_sizes(ctx.bufs);
            }
        }
        if self.awaiting_proxy_header && !self.take_proxy_header(ctx)? {
            return Ok(false);
        }
        let limits = ctx.cfg.limits;
        let data = self.cin.data();
        let mut unused = HeadProgress::START;
        let progress = match &mut self.state {
            State::Head { progress, .. } => progress,
            _ => &mut unused,
        };
        parse_with_slots!(
            let parsed = |slots| request::parse_resuming(data, &limits, slots, progress),
            RequestError::Slots
        );
        if !matches!(parsed, Ok(None)) {
            ctx.stats.requests.add(1);
        }
        let (info, head_len, pool, hash, plan) = match parsed {
            Ok(None) => {
                // The client gave up mid-head; there is nobody to answer, but the previous
                // response must still go out whole before the close.
                if self.client.eof && !self.client_output_pending() {
                    return Err(Fail::Abort);
                }
                return Ok(false);
            }
            Err(e) => {
                debug!(
                    "{}: bad request head ({e:?}): {}",
                    self.client_ip,
                    e.status()
                );
                if ctx.logger.is_some() {
                    let line = request_line(self.cin.data()).to_vec();
                    self.log_begin_bare(ctx, &line);
                }
                self.cin.clear();
                return Err(Fail::Respond(e.status()));
            }
            Ok(Some(req)) => {
                if ctx.logger.is_some() {
                    self.log_open = true;
                    self.log_started = ctx.now;
                    let rec = self.log.get_or_insert_with(Default::default);
                    log_begin(
                        rec,
                        self.client_ip,
                        &req,
                        request_line(data),
                        ctx.wall.unix_ms(ctx.now),
                    );
                    rec.tls = self
                        .tls
                        .as_ref()
                        .and_then(|t| t.done())
                        .map_or("", |d| d.version);
                }
                if let Some(answer) = self.acme_token(req.path) {
                    // ACME's http-01 validation, before routing and before any redirect to
                    // HTTPS (RFC 8555 §8.3: the CA asks over plain HTTP). Other tokens are
                    // routed as any request (a backend may answer its own challenges).
                    let (head_len, info) = (req.head_len, req.info);
                    return self.answer_at_head(ctx, 200, head_len, &info, false, |out, close| {
                        local::write_text(answer.as_bytes(), close, out)
                    });
                }
                if let Some(refusal) = self.tls_refusal(ctx, req.host, req.path) {
                    let (head_len, info) = (req.head_len, req.info);
                    return match refusal {
                        TlsRefusal::Misdirected => {
                            debug!(
                                "{}: host not covered by the certificate: 421",
                                self.client_ip
                            );
                            self.answer_at_head(ctx, 421, head_len, &info, false, |out, close| {
                                local::write_response(421, close, None, out)
                            })
                        }
                        TlsRefusal::Redirect(location) => {
                            self.answer_at_head(ctx, 308, head_len, &info, false, |out, close| {
                                local::write_redirect(&location, close, out)
                            })
                        }
                        TlsRefusal::NoHost => {
                            self.answer_at_head(ctx, 400, head_len, &info, false, |out, close| {
                                local::write_response(400, close, None, out)
                            })
                        }
                    };
                }
                let Some(pool) = self.snap.routes.lookup(req.host, req.path) else {
                    let (head_len, info) = (req.head_len, req.info);
                    let host = req.host.to_vec();
                    debug!(
                        "{}: no route for host '{}': 404",
                        self.client_ip,
                        String::from_utf8_lossy(&host)
                    );
                    return self.answer_at_head(ctx, 404, head_len, &info, false, |out, close| {
                        local::write_no_route(&host, close, out)
                    });
                };
                if let Some(retry_after) = self.over_limit(ctx, pool) {
                    let (head_len, info) = (req.head_len, req.info);
                    // Over the connection limit: this connection closes after its answer.
                    let close = self.over_connection_limit;
                    return self.answer_at_head(ctx, 429, head_len, &info, close, |out, close| {
                        local::write_response(429, close, Some(retry_after), out)
                    });
                }
                let hash = match &self.snap.pools[pool].hash_key {
                    Some(key) => {
                        let h = balance::hash::key_of(key, self.peer.ip(), req.headers, req.path);
                        if h.is_none() {
                            debug!(
                                "{}: no {} in the request: round robin in pool {}",
                                self.client_ip,
                                key.describe(),
                                self.snap.pools[pool].name
                            );
                        }
                        h
                    }
                    None => None,
                };
                let plan = plan::request(&req.info, ctx.cfg.request_buffer);
                let rctx = RequestContext {
                    client_ip: self.client_ip,
                    forwarded_for: ctx.cfg.forwarded_for,
                    underscores_in_headers: ctx.cfg.underscores_in_headers,
                    expectation_met: plan.own_continue,
                    https: self.tls.is_some(),
                };
                // The whole rewritten head must fit the upstream buffer (the part of it that is
                // not for a buffered body), or nothing goes.
                let head_room = self.head_room;
                // Written in place at the front of the (empty) upstream buffer: no copy.
                self.uout.attach(ctx.bufs);
                self.uout.clear();
                let spare = self.uout.spare_all();
                let limit = head_room.min(spare.len());
                let mut out = SliceOut::new(&mut spare[..limit]);
                match rewrite::request_head(&req, &rctx, &mut out, head_room) {
                    Ok(len) if out.fits() => self.uout.commit(len),
                    Ok(len) | Err(rewrite::HeadTooLarge { len, .. }) => {
                        debug!(
                            "{}: forwarded head would be {len} bytes, over {head_room}: 431",
                            self.client_ip
                        );
                        self.cin.clear();
                        return Err(Fail::Respond(431));
                    }
                }
                (req.info, req.head_len, pool, hash, plan)
            }
        };
        self.cin.consume(head_len);
        let req_body = match plan.body {
            plan::RequestBody::None => RequestBody::Done,
            plan::RequestBody::Length(n) => RequestBody::Length(n),
            plan::RequestBody::Chunked => RequestBody::Chunked(Decoder::new(&limits)),
        };
        if plan.own_continue {
            self.cout.attach(ctx.bufs);
            // The client buffer is empty here (a new exchange starts with the last response
            // out), so this always fits.
            if !self.cout.extend_whole(CONTINUE) {
                return Err(Fail::Abort);
            }
        }
        self.state = State::Exchange(ctx.exchanges.make(Exchange {
            req: info,
            req_body,
            // Reading the body first, or (set by the connect below) on to an upstream.
            phase: Phase::Buffering,
            replay: Some(0),
            close_after: false,
            continue_sent: false,
            upstream_keep: Duration::ZERO,
            fresh_retry_used: false,
            head_len: self.uout.len(),
            pool,
            hash,
            status: 0,
            body_from: 0,
            upstream_us: None,
            queue_until: None,
            tried: Tried::default(),
        }));
        if !plan.buffer_first {
            // Nothing reaches an upstream before the request is known good, as far as the
            // proxy holds it: the body bytes that came with the head are checked (and queued
            // behind it) before any upstream is chosen, even when the rest will stream.
            if plan.body != plan::RequestBody::None && !self.cin.is_empty() {
                self.pump_request_body(ctx)?;
            }
            self.connect_next(ctx)?;
        }
        Ok(true)
    }

    /// Size the buffers for the configuration the connection now runs on (a reload changed
    /// `max_head` or `request_buffer`). Between requests they hold no storage, so this only
    /// changes what they will take.
    fn adopt_sizes(&mut self, bufs: &mut BufPool) {
        let cfg = &self.snap.cfg;
        let size = buffer::size_for(cfg.limits.max_head);
        self.cin.resize(size, bufs);
        self.cout.resize(size, bufs);
        self.uin.resize(size, bufs);
        self.uout.resize(size + cfg.request_buffer, bufs);
        self.head_room = size;
    }

    /// Answer a request ourselves right at its head (a 404, a 429): nothing goes upstream.
    /// The connection stays open for the next request when this one had no body (nothing of
    /// it is left unread), keeps alive, and `close` is not asked.
    fn answer_at_head(
        &mut self,
        ctx: &mut Ctx<'_>,
        status: u16,
        head_len: usize,
        info: &RequestInfo,
        close: bool,
        write: impl FnOnce(&mut Vec<u8>, bool),
    ) -> Result<bool, Fail> {
        let keep = !close
            && plan::keep_after_local_answer(
                status,
                info,
                info.framing.is_empty_body(),
                ctx.shutting_down,
            );
        write(ctx.scratch_take(), !keep);
        ctx.stats.count_local(status);
        self.log_local(ctx, status);
        if !self.queue_scratch_for_client(ctx) || !keep {
            self.cin.clear();
            self.state = State::Closing {
                linger_since: None,
                clean: false,
            };
            return Ok(true);
        }
        self.cin.consume(head_len);
        self.served += 1;
        self.idle_since = ctx.now;
        self.state = State::waiting_for_head();
        Ok(true)
    }

    /// Whether this request is over a client limit: `Some(retry_after_secs)` if so (counted
    /// for its pool and logged at debug). The connection limit was decided at the accept; the
    /// rates (the global one, then the pool's own) are checked here, before anything is read
    /// of the body or sent upstream.
    #[inline(always)]
    fn over_limit(&self, ctx: &Ctx<'_>, pool: usize) -> Option<u64> {
        let snap = &self.snap;
        if !self.over_connection_limit
            && snap.cfg.client_limits.rate.is_none()
            && snap.pool_limiters[pool].is_none()
        {
            return None;
        }
        self.check_limits(ctx, pool)
    }

    /// [`over_limit`](Self::over_limit) when a limit applies.
    #[inline(never)]
    fn check_limits(&self, ctx: &Ctx<'_>, pool: usize) -> Option<u64> {
        let snap = &self.snap;
        let name = &snap.pools[pool].name;
        let verdict = if self.over_connection_limit {
            debug!("{}: over the connection limit: 429", self.client_ip);
            Some(1)
        } else {
            let key = ClientKey::of(self.peer.ip());
            let now = ctx.now.ns();
            let limiters = [
                snap.limiter
                    .as_ref()
                    .filter(|_| snap.cfg.client_limits.rate.is_some()),
                snap.pool_limiters[pool].as_ref(),
            ];
            limiters.into_iter().flatten().find_map(|l| match l.check(key, now) {
                crate::limits::Verdict::Allow => None,
                crate::limits::Verdict::Deny { retry_after_secs } => {
                    debug!(
                        "{}: over the request rate of pool {name}: 429 (retry after {retry_after_secs} s)",
                        self.client_ip
                    );
                    Some(retry_after_secs)
                }
            })
        };
        if verdict.is_some() {
            snap.pools[pool]
                .shared
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        verdict
    }

    /// While the body is read before the connect: connect once it is all here (and good: a
    /// bad one was refused while it was read), or once `--request-buffer` of it is buffered
    /// and the rest must stream.
    pub(super) fn end_buffering(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(false);
        };
        if !matches!(ex.phase, Phase::Buffering) {
            return Ok(false);
        }
        let buffered = self.uout.len().saturating_sub(ex.head_len);
        let full = buffered >= ctx.cfg.request_buffer || self.uout.room() < chunked::MIN_OUT_ROOM;
        if !matches!(ex.req_body, RequestBody::Done) && !full {
            return Ok(false);
        }
        self.connect_next(ctx)?;
        Ok(true)
    }

    /// Move request body bytes from the client buffer to the upstream buffer.
    // Always inlined: it runs in every round of an exchange, and for most requests (no body)
    // it is a few tests; a call costs more than that.
    #[inline(always)]
    pub(super) fn pump_request_body(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(false);
        };
        let write_failed = self.upstream.get().is_some_and(|u| u.write_failed);
        let mut progress = false;
        // Room left for body bytes. When the request outgrows the buffer it stops being
        // replayable: the bytes already sent are let go.
        if self.uout.room() < chunked::MIN_OUT_ROOM {
            if let Some(w) = ex.replay.take() {
                self.uout.consume(w.min(self.uout.len()));
            }
        }
        if write_failed {
            // The upstream stopped reading: what it will not read is dropped, not queued.
            self.uout.clear();
            ex.replay = None;
        }
        if self.up_span.is_some() {
            // A span of the body is under way: `pump_request_span` moves it.
            return Ok(progress);
        }
        match &mut ex.req_body {
            // All read: nothing to move, nor any span to lend.
            RequestBody::Done => return Ok(progress),
            RequestBody::Length(rem) => {
                let n = (*rem)
                    .min(self.cin.len() as u64)
                    .min(self.uout.room() as u64) as usize;
                if n > 0 {
                    if !write_failed {
                        self.uout.attach(ctx.bufs);
                        self.uout.extend(&self.cin.data()[..n]);
                    }
                    self.cin.consume(n);
                    *rem -= n as u64;
                    progress = true;
                }
                if *rem == 0 {
                    ex.req_body = RequestBody::Done;
                } else if self.client.eof && self.cin.is_empty() {
                    debug!("{}: client closed mid-upload", self.client_ip);
                    return Err(Fail::Abort);
                }
            }
            RequestBody::Chunked(dec) => {
                ctx.scratch.clear();
                let room = self.uout.room();
                let consumed = dec
                    .transcode(self.cin.data(), ctx.scratch, room, chunked::Output::Rechunk)
                    .map_err(|e| {
                        debug!("{}: bad chunked request body: {e:?}", self.client_ip);
                        Fail::Respond(400)
                    })?;
                if consumed > 0 {
                    if !write_failed {
                        self.uout.attach(ctx.bufs);
                        self.uout.extend(ctx.scratch);
                    }
                    self.cin.consume(consumed);
                    progress = true;
                }
                if dec.is_done() {
                    ex.req_body = RequestBody::Done;
                } else if self.client.eof && self.cin.is_empty() {
                    debug!("{}: client closed mid-upload", self.client_ip);
                    return Err(Fail::Abort);
                }
            }
        }
        // What is left of a Content-Length body, or of the current chunk's data, goes by
        // splice(2) once the buffered bytes are through; never while the request is kept for
        // a replay, which needs every byte in the buffer.
        let connected = self.upstream.is_some()
            && matches!(
                ex.phase,
                Phase::AwaitingHead(_) | Phase::Streaming(_) | Phase::Draining
            );
        if self.cin.is_empty() && ex.replay.is_none() && connected && !write_failed {
            let left = match &ex.req_body {
                RequestBody::Length(rem) => *rem,
                RequestBody::Chunked(dec) => dec.data_remaining(),
                RequestBody::Done => 0,
            };
            self.up_span = lend_span(ctx.pipes, left, self.splice_min(ctx.cfg.splice_min), false);
            progress |= self.up_span.is_some();
        }
        Ok(progress)
    }

    /// Move a span of the request body client socket → pipe → upstream socket, counting its
    /// bytes off the body's framing as they leave the client.
    pub(super) fn pump_request_span(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let (Some(span), State::Exchange(ex)) = (&mut self.up_span, &mut self.state) else {
            return Ok(false);
        };
        let Some(up) = self.upstream.get_mut() else {
            return Err(Fail::Abort);
        };
        if up.write_failed {
            // The upstream stopped reading: the copy path takes the rest of the body and drops
            // it; what the pipe holds goes with the pipe.
            if let Some(span) = self.up_span.take() {
                span.finish(ctx.pipes);
            }
            return Ok(true);
        }
        // The span's bytes come after everything queued before it.
        let ready = self.uout.is_empty();
        let moved = match move_span(span, &mut self.client, &mut up.peer, ready) {
            Ok(m) => m,
            Err(SpanError::Source(e)) => {
                debug!("{}: client read error mid-upload: {e}", self.client_ip);
                return Err(Fail::Abort);
            }
            Err(SpanError::Dest(e)) => {
                // As on the copy path: the upstream may still have answered (an early 413).
                debug!("upstream write error: {e}");
                up.write_failed = true;
                return Ok(true);
            }
        };
        let pulled = moved.pulled as u64;
        match &mut ex.req_body {
            RequestBody::Length(rem) => *rem = rem.saturating_sub(pulled),
            RequestBody::Chunked(dec) => dec.skip_data(pulled).map_err(|_| Fail::Abort)?,
            RequestBody::Done => {}
        }
        let mut progress = moved.progress;
        if span.is_done() {
            if let Some(span) = self.up_span.take() {
                span.finish(ctx.pipes);
            }
            progress = true;
        } else if self.client.eof && span.held() == 0 {
            // What the client sent has gone on; the upstream sees the body stop short.
            debug!("{}: client closed mid-upload", self.client_ip);
            return Err(Fail::Abort);
        }
        if progress {
            self.last_progress = ctx.now;
        }
        Ok(progress)
    }
}

/// Our own answer to `Expect: 100-continue` when we read the body before connecting.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl Session {
    /// `proxy_protocol`: read the PROXY header at the start of the connection; from then on its
    /// client is this connection's client everywhere (X-Forwarded-For, the limits, `ip_hash`,
    /// the access log). `Ok(false)`: not all of it is here yet. A missing or bad header closes
    /// the connection.
    pub(super) fn take_proxy_header(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        match crate::proxy_protocol::parse(self.cin.data()) {
            Ok(crate::proxy_protocol::Parsed::Incomplete) => {
                if self.client.eof {
                    return Err(Fail::Abort);
                }
                Ok(false)
            }
            Ok(crate::proxy_protocol::Parsed::Header { len, source }) => {
                self.cin.consume(len);
                self.awaiting_proxy_header = false;
                if let Some(src) = source {
                    let now = ctx.now.ns();
                    // The connection limit counts the real client, not the layer-4 tier.
                    if let Some(l) = &self.conn_limiter {
                        l.close(ClientKey::of(self.peer.ip()));
                        if let Some(limit) = self.snap.cfg.client_limits.connections {
                            self.over_connection_limit =
                                !l.open(ClientKey::of(src.ip()), limit, now);
                        }
                    }
                    self.peer = src;
                    self.client_ip = ClientAddr::new(src.ip());
                }
                Ok(true)
            }
            Err(e) => {
                debug!("{}: no valid PROXY header ({e:?}): closing", self.client_ip);
                Err(Fail::Abort)
            }
        }
    }
}

/// Most bytes of a request line the access log keeps.
const LOGGED_LINE: usize = 8 * 1024;

/// The request line of a head as received, for the access log: after any empty lines before
/// it (which the parser skips too), up to its first CR or LF, at most `LOGGED_LINE` bytes.
pub(super) fn request_line(head: &[u8]) -> &[u8] {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let line = &head[start..];
    let end = line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len())
        .min(LOGGED_LINE);
    &line[..end]
}
