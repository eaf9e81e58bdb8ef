//! One round of a session: read both sockets, process what is buffered, write both sockets;
//! and the lingering close.

use super::*;

impl Session {
    /// One round: read both sides, process, write both sides. `Ok(true)` if anything moved.
    #[inline(always)]
    pub(super) fn round(&mut self, ctx: &mut Ctx<'_>) -> Result<bool, Fail> {
        let mut progress = false;

        // Client → cin. A closing session reads only to discard (lingering close).
        if let State::Closing {
            linger_since,
            clean,
        } = self.state
        {
            return self.round_closing(ctx.now, ctx.bufs, linger_since.is_some(), clean);
        }
        // (Not while a span takes the client's bytes straight from the socket.)
        if self.up_span.as_ref().is_none_or(|s| s.to_read() == 0) {
            let n = if self.tls.is_some() {
                self.tls_read(ctx)?
            } else {
                self.client.read_into(&mut self.cin, ctx.bufs)?
            };
            if n > 0 {
                progress = true;
                self.last_progress = ctx.now;
            }
        }

        // upstream → uin (not while a span takes the upstream's bytes straight from the socket).
        let spliced = self.down_span.as_ref().is_some_and(|s| s.to_read() > 0);
        let connected = self.upstream_connected();
        if let Some(up) = self.upstream.get_mut() {
            if connected && !spliced {
                match up.read_into(&mut self.uin, ctx.bufs) {
                    Ok(n) if n > 0 => {
                        progress = true;
                        self.last_progress = ctx.now;
                        if let State::Exchange(ex) = &mut self.state {
                            // The upstream has started answering: this request is no longer
                            // replayable, whatever happens next.
                            if let Some(w) = ex.replay.take() {
                                self.uout.consume(w.min(self.uout.len()));
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!("upstream read error: {e}");
                        up.peer.eof = true;
                        up.peer.readable = false;
                    }
                }
            }
        }

        // One decision step over both directions, after both reads and before both writes: a
        // request head goes upstream, and a response to the client, in the round they arrive.
        progress |= self.process(ctx)?;

        // uout → upstream.
        if self.upstream_connected() {
            progress |= self.write_upstream(ctx.now)?;
        }

        // cout → client.
        if !self.cout.is_empty() {
            self.nagle_off();
        }
        // The last bytes of a connection that closes cleanly right after them go out with the
        // FIN, in one segment: the client's kernel acknowledges both at once.
        let last = matches!(
            self.state,
            State::Closing {
                linger_since: None,
                clean: true
            }
        );
        if self.tls.is_some() {
            if self.tls_write()? {
                progress = true;
                self.last_progress = ctx.now;
            }
        } else {
            let n = self.client.write_from(self.cout.data(), last)?;
            if n > 0 {
                self.cout.consume(n);
                progress = true;
                self.last_progress = ctx.now;
            }
        }
        if let State::Tunnel = self.state {
            progress |= self.tunnel_half_close();
            if self.client.shut && self.upstream.get().is_none_or(|u| u.peer.shut) {
                return Err(Fail::Abort);
            }
        }
        if let State::Closing { .. } = self.state {
            progress = true;
        }
        Ok(progress)
    }

    /// Turn Nagle's algorithm off on the client socket before a write it could hold: any
    /// write after the first (the rest of a response a write left behind, the next response),
    /// a pipe carrying the body, a tunnel. A small write behind an unacknowledged one would
    /// wait for the client's delayed ACK, up to 40 ms. A connection that carries one response
    /// in one write, which most `Connection: close` traffic is, never pays the setsockopt.
    pub(super) fn nagle_off(&mut self) {
        if !self.client.nodelay
            && (self.client.wrote
                || self.down_span.is_some()
                || matches!(self.state, State::Tunnel))
        {
            self.client.nodelay = true;
            let _ = self.client.stream.set_nodelay(true);
        }
    }

    pub(super) fn round_closing(
        &mut self,
        now: Tick,
        bufs: &mut BufPool,
        lingering: bool,
        clean: bool,
    ) -> Result<bool, Fail> {
        let mut progress = false;
        if self.client_output_pending() {
            if self.tls.is_some() {
                progress = self.tls_write()?;
            } else {
                let n = self.client.write_from(self.cout.data(), false)?;
                if n > 0 {
                    self.cout.consume(n);
                    progress = true;
                }
            }
            if progress {
                self.last_progress = now;
            }
            if self.client_output_pending() {
                return Ok(progress);
            }
        }
        if !lingering {
            if clean && self.cin.is_empty() && !self.client.readable {
                if self.tls.is_some() {
                    self.tls_shutdown_write();
                }
                return Err(Fail::Abort);
            }
            self.tls_shutdown_write();
            self.cin.clear();
            self.state = State::Closing {
                linger_since: Some(now),
                clean,
            };
            progress = true;
        }
        // Read and discard until the client closes too (one read per round: the drive budget
        // bounds a client that keeps sending).
        self.cin.clear();
        match self.client.read_into(&mut self.cin, bufs) {
            Ok(0) if self.client.eof => Err(Fail::Abort),
            Ok(0) => Ok(progress),
            Ok(_) => Ok(true),
            Err(_) => Err(Fail::Abort),
        }
    }

    /// Write queued bytes to the upstream (from the replay cursor while the request is replayable).
    pub(super) fn write_upstream(&mut self, now: Tick) -> Result<bool, Fail> {
        let Some(up) = self.upstream.get_mut() else {
            return Ok(false);
        };
        if up.write_failed {
            return Ok(false);
        }
        if let Some(preamble) = &up.preamble {
            let preamble = &preamble.0;
            // The PROXY header goes first, whole, before any byte of the request.
            match up.peer.write_from(preamble, false) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.last_progress = now;
                    if n < preamble.len() {
                        up.preamble = Some(Box::new(exchange::Preamble(preamble[n..].to_vec())));
                        return Ok(true);
                    }
                    up.preamble = None;
                }
                Err(e) => {
                    debug!("upstream write error: {e}");
                    up.write_failed = true;
                    return Ok(true);
                }
            }
        }
        let replay = match &mut self.state {
            State::Exchange(ex) => ex.replay.as_mut(),
            _ => None,
        };
        let from = replay.as_ref().map_or(0, |w| **w);
        let pending = &self.uout.data()[from.min(self.uout.len())..];
        match up.write_from(pending) {
            Ok(0) => Ok(false),
            Ok(n) => {
                match replay {
                    Some(w) => *w += n,
                    None => self.uout.consume(n),
                }
                up.sent_at.get_or_insert(now);
                self.last_progress = now;
                Ok(true)
            }
            Err(e) => {
                // The upstream stopped reading; it may still have answered (an early 413, say),
                // so the read side decides what happens.
                debug!("upstream write error: {e}");
                up.write_failed = true;
                Ok(true)
            }
        }
    }
}
