//! After a 101: bytes flow both ways untouched, through the buffers or by splice(2) while a
//! direction streams, and each side's end of stream is passed on.

use super::*;

impl Session {
    /// Tunnel: bytes go both ways untouched, through the buffers or by splice(2).
    pub(super) fn pump_tunnel(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let mut progress = false;
        // A direction's buffered bytes wait while its span is under way: they came later.
        if self.up_span.is_none() && !self.cin.is_empty() {
            self.uout.attach(ctx.bufs);
            let n = self.uout.extend(self.cin.data());
            self.cin.consume(n);
            progress |= n > 0;
        }
        if self.down_span.is_none() && !self.uin.is_empty() {
            self.cout.attach(ctx.bufs);
            let n = self.cout.extend(self.uin.data());
            self.uin.consume(n);
            progress |= n > 0;
        }
        progress |= self.pump_tunnel_spans(ctx)?;
        Ok(progress)
    }

    /// Tunnel: a direction goes by splice(2) while it streams. A read that filled the whole
    /// buffer and left the socket readable says a burst is under way: the next bytes go
    /// through a pipe until the socket is drained, then the pipe goes back to the pool, so an
    /// idle tunnel holds none. Small messages (most WebSocket frames) stay on the copy path,
    /// where one read and one write move them, against two splices and the EAGAIN that ends
    /// a span.
    pub(super) fn pump_tunnel_spans(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let splice_min = self.splice_min(ctx.cfg.splice_min);
        let Some(up) = self.upstream.get_mut() else {
            return Ok(false);
        };
        let mut progress = false;

        // Client → upstream.
        let streaming = self.client.readable && !self.client.eof && self.cin.is_empty();
        if self.up_span.is_none() && streaming && !up.write_failed {
            self.up_span = lend_span(ctx.pipes, u64::MAX, splice_min, false);
        }
        if let Some(span) = &mut self.up_span {
            let ready = self.uout.is_empty();
            let drained = match move_span(span, &mut self.client, &mut up.peer, ready) {
                Ok(m) => {
                    progress |= m.progress;
                    m.drained
                }
                Err(SpanError::Source(e)) => {
                    debug!("{}: tunnel read error: {e}", self.client_ip);
                    return Err(Fail::Abort);
                }
                Err(SpanError::Dest(e)) => {
                    // As on the copy path: nothing more goes to the upstream.
                    debug!("upstream write error: {e}");
                    up.write_failed = true;
                    progress = true;
                    false
                }
            };
            let idle = (drained || self.client.eof) && span.held() == 0;
            if span.is_done() || idle || up.write_failed {
                if let Some(span) = self.up_span.take() {
                    span.finish(ctx.pipes);
                }
                progress = true;
            }
        }

        // Upstream → client.
        let streaming = up.peer.readable && !up.peer.eof && self.uin.is_empty();
        if self.down_span.is_none() && streaming {
            self.down_span = lend_span(ctx.pipes, u64::MAX, splice_min, false);
        }
        if let Some(span) = &mut self.down_span {
            let ready = self.cout.is_empty();
            let drained = match move_span(span, &mut up.peer, &mut self.client, ready) {
                Ok(m) => {
                    progress |= m.progress;
                    m.drained
                }
                Err(SpanError::Source(e)) => {
                    // As on the copy path: a read error ends that direction like a close.
                    debug!("upstream read error: {e}");
                    up.peer.eof = true;
                    up.peer.readable = false;
                    progress = true;
                    false
                }
                Err(SpanError::Dest(e)) => {
                    debug!("{}: tunnel write error: {e}", self.client_ip);
                    return Err(Fail::Abort);
                }
            };
            if span.is_done() || ((drained || up.peer.eof) && span.held() == 0) {
                if let Some(span) = self.down_span.take() {
                    span.finish(ctx.pipes);
                }
                progress = true;
            }
        }
        if progress {
            self.last_progress = ctx.now;
        }
        Ok(progress)
    }

    /// Tunnel: pass each side's end of stream on once its bytes are flushed.
    pub(super) fn tunnel_half_close(&mut self) -> bool {
        let mut progress = false;
        let down_flushed =
            self.uin.is_empty() && !self.client_output_pending() && self.down_span.is_none();
        let Some(up) = self.upstream.get_mut() else {
            return false;
        };
        let up_flushed = self.cin.is_empty()
            && self.uout.is_empty()
            && self.up_span.is_none()
            && !up.output_pending();
        if self.client.eof && up_flushed && !up.peer.shut {
            progress |= up.shutdown_write();
        }
        if up.peer.eof && down_flushed && !self.client.shut {
            progress |= self.client_half_close();
        }
        progress
    }
}
