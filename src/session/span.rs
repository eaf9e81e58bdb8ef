//! Spans of bytes moved socket → pipe → socket with splice(2), and the worker's pipes lent
//! for them.

use super::peer::Peer;
use crate::splice::{PipePool, Pulled, Span};
use std::io;
use std::os::fd::AsRawFd;

/// What one `move_span` call did.
#[derive(Debug, Default)]
pub(crate) struct SpanMoved {
    /// Bytes taken from the source (for the body's framing count).
    pub(crate) pulled: usize,
    /// Bytes moved into or out of the pipe.
    pub(crate) progress: bool,
    /// The source had nothing to give and the pipe is empty: the stream paused.
    pub(crate) drained: bool,
}

/// Which end of a span failed.
#[derive(Debug)]
pub(crate) enum SpanError {
    /// Reading the source socket.
    Source(io::Error),
    /// Writing the destination socket.
    Dest(io::Error),
}

/// Move what can move through `span`: from `src` into the pipe, and out of it to `dst` once
/// `dst_ready` (everything queued for `dst` before the span has gone). The source's end of
/// stream is recorded in `src.eof`; readiness is kept like the copy path keeps it.
pub(crate) fn move_span(
    span: &mut Span,
    src: &mut Peer,
    dst: &mut Peer,
    dst_ready: bool,
) -> Result<SpanMoved, SpanError> {
    let mut moved = SpanMoved::default();
    if src.readable && !src.eof && span.can_pull() {
        match span.pull(src.stream.as_raw_fd()) {
            Ok(Pulled::Bytes(n)) => {
                src.bytes_in += n as u64;
                moved.pulled = n;
                moved.progress = true;
            }
            Ok(Pulled::Eof) => {
                src.eof = true;
                moved.progress = true;
            }
            Ok(Pulled::Drained) => {
                src.readable = false;
                moved.drained = true;
            }
            // Keep the readiness: the pipe may have been full; a push makes room.
            Ok(Pulled::Blocked) => {}
            Err(e) => return Err(SpanError::Source(e)),
        }
    }
    if dst_ready && span.held() > 0 && dst.writable && !dst.shut {
        match span.push(dst.stream.as_raw_fd()) {
            Ok(Some(n)) => {
                dst.bytes_out += n as u64;
                moved.progress |= n > 0;
            }
            Ok(None) => dst.writable = false,
            Err(e) => return Err(SpanError::Dest(e)),
        }
    }
    Ok(moved)
}

/// A span of `left` bytes through a pipe of the worker's pool, when it is at least `min` long
/// (`--splice-min` for its direction, 0: never) and a pipe is free. `None`: the copy path does the work; a pool
/// that is out of pipes never fails a request.
/// `batched`: the source is an upstream sending a body of known length, which acknowledges at
/// once and whose reads may wait for a batch ([`Span::batched`]); a client's bytes never wait.
/// Boxed: a span is rare (long bodies, tunnels) and every session keeps two places for one.
pub(crate) fn lend_span(
    pipes: &mut PipePool,
    left: u64,
    min: usize,
    batched: bool,
) -> Option<Box<Span>> {
    let min = min as u64;
    if min == 0 || left < min {
        return None;
    }
    let pipe = pipes.take()?;
    Some(Box::new(if batched {
        Span::batched(pipe, left)
    } else {
        Span::new(pipe, left)
    }))
}
