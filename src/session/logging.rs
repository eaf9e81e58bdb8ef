//! The session's side of the access log: a record opened when a request head is complete,
//! closed with the answer (the upstream's or our own), or with 499 when the client leaves
//! before any. Only when the access log is on: otherwise none of this runs.

use super::*;
use crate::http::request::Request;

/// Fill `rec` for a request whose head is `req`, its request line `line` as received, from
/// `client` (the caller marks it open: this borrows only the record, while `req` still borrows
/// the session's input).
pub(super) fn log_begin(
    rec: &mut Record,
    client: ClientAddr,
    req: &Request<'_, '_>,
    line: &[u8],
    unix_ms: u64,
) {
    // Into the record's own strings, which keep their capacity from request to request: no
    // allocation per request once a connection has logged one.
    rec.unix_ms = unix_ms;
    // The record lives as long as the connection, and so does its client's address (a PROXY
    // header, if any, came before the first request).
    if rec.client.is_empty() {
        rec.client.push_str(client.as_str());
    }
    rec.request.clear();
    rec.request.extend_from_slice(line);
    rec.method.clear();
    rec.method.push_str(req.method);
    rec.target.clear();
    rec.target.push_str(req.target);
    rec.version = match req.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    rec.host.clear();
    rec.host.extend_from_slice(req.host);
    rec.user_agent.clear();
    rec.referer.clear();
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("user-agent") && rec.user_agent.is_empty() {
            rec.user_agent.extend_from_slice(h.value);
        } else if h.name.eq_ignore_ascii_case("referer") && rec.referer.is_empty() {
            rec.referer.extend_from_slice(h.value);
        }
    }
    rec.status = 0;
    rec.upstream_ms = None;
}

impl Session {
    /// Open a record for a head that was refused (or never came): its request line as
    /// received, byte for byte, whatever it is (nginx logs it so: a TLS handshake on a plain
    /// port shows as `\x16\x03\x01...`).
    pub(super) fn log_begin_bare(&mut self, ctx: &Ctx<'_>, line: &[u8]) {
        if ctx.logger.is_none() {
            return;
        }
        let rec = self.log.get_or_insert_with(Default::default);
        **rec = Record {
            unix_ms: ctx.wall.unix_ms(ctx.now),
            client: self.client_ip.to_string(),
            request: line.to_vec(),
            ..Record::default()
        };
        self.log_open = true;
        self.log_started = ctx.now;
    }

    /// Close the open record with `status` and write it. `upstream`: the answer came from the
    /// exchange's upstream (its pool, address and response time go in). Body bytes: what was
    /// queued for the client after the final head, or `local_body` for an answer of our own.
    pub(super) fn log_end(
        &mut self,
        logger: Option<&Logger>,
        batch: &mut LogBatch,
        status: u16,
        upstream: bool,
        local_body: Option<u64>,
        now: Tick,
    ) {
        let (Some(logger), true) = (logger, self.log_open) else {
            return;
        };
        self.log_open = false;
        let queued = self.client.bytes_out + self.cout.len() as u64;
        let Some(rec) = self.log.as_mut() else {
            return;
        };
        rec.status = status;
        rec.duration_ms = now.since(self.log_started).as_millis() as u64;
        rec.pool.clear();
        rec.upstream.clear();
        rec.upstream_ms = None;
        rec.bytes_sent = 0;
        if let State::Exchange(ex) = &self.state {
            // (The request line stays as it came.)
            if upstream {
                if let Some(p) = self.snap.pools.get(ex.pool) {
                    rec.pool.push_str(&p.name);
                }
                if let Some(m) = self
                    .upstream
                    .get()
                    .and_then(|up| self.snap.pools.get(ex.pool)?.members.get(up.idx))
                {
                    rec.upstream.push_str(&m.addr_text);
                }
                rec.upstream_ms = ex.upstream_us.map(|us| us / 1000);
                rec.bytes_sent = queued.saturating_sub(ex.body_from);
            }
        }
        if let Some(body) = local_body {
            rec.bytes_sent = body;
        }
        logger.append(rec, batch);
    }

    /// Close the open record for an answer of our own in `ctx.scratch` (opening a bare one for
    /// a head that never parsed).
    pub(super) fn log_local(&mut self, ctx: &mut Ctx<'_>, status: u16) {
        if ctx.logger.is_none() {
            return;
        }
        if !self.log_open {
            self.log_begin_bare(ctx, b"");
        }
        let body = ctx
            .scratch
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |head| ctx.scratch.len() - head - 4);
        let now = ctx.now;
        self.log_end(
            ctx.logger,
            ctx.log_batch,
            status,
            false,
            Some(body as u64),
            now,
        );
    }
}
