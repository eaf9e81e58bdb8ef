//! One request/response exchange: what is kept of the request, where it stands (one [`Phase`]),
//! and the upstream connection it uses.

use super::peer::Peer;
use crate::clock::Tick;
use crate::http::chunked::{self, Decoder};
use crate::http::request::{HeadProgress, RequestInfo};
use crate::upstream::{InFlight, Tried};
use std::time::Duration;

/// Where a session keeps its upstream connection: a box lent by the worker
/// ([`ExchangePool`](super::ExchangePool)) while the session has work, so an idle keep-alive
/// connection holds one word instead of the connection's ~90 bytes, and a request moves the
/// connection in and out of the same box instead of allocating one.
#[derive(Debug, Default)]
pub(super) struct UpstreamSlot(Option<Box<Option<Upstream>>>);

/// Most spare boxes a worker keeps.
const SPARE_SLOTS: usize = 1024;

/// Spare boxes for [`UpstreamSlot`]s.
#[allow(clippy::vec_box)]
pub(super) type SpareSlots = Vec<Box<Option<Upstream>>>;

impl UpstreamSlot {
    #[inline(always)]
    pub(super) fn get(&self) -> Option<&Upstream> {
        self.0.as_deref()?.as_ref()
    }

    #[inline(always)]
    pub(super) fn get_mut(&mut self) -> Option<&mut Upstream> {
        self.0.as_deref_mut()?.as_mut()
    }

    #[inline(always)]
    pub(super) fn is_some(&self) -> bool {
        self.get().is_some()
    }

    /// Move the connection out (the box stays until `release`).
    #[inline(always)]
    pub(super) fn take(&mut self) -> Option<Upstream> {
        self.0.as_deref_mut()?.take()
    }

    /// Hold `up`, in a spare box when this slot has none.
    #[inline(always)]
    pub(super) fn set(&mut self, up: Upstream, spare: &mut SpareSlots) {
        match &mut self.0 {
            Some(b) => **b = Some(up),
            None => {
                let mut b = spare.pop().unwrap_or_default();
                *b = Some(up);
                self.0 = Some(b);
            }
        }
    }

    /// Give the box back when it holds no connection (a session that failed over to a local
    /// answer and stays open).
    pub(super) fn release(&mut self, spare: &mut SpareSlots) {
        if matches!(self.0.as_deref(), Some(None)) && spare.len() < SPARE_SLOTS {
            if let Some(b) = self.0.take() {
                spare.push(b);
            }
        }
    }

    /// Move the connection out and give the box back: the end of an exchange. (Elsewhere a
    /// connection is taken out to be replaced, or the session closes, and the box goes with it.)
    #[inline(always)]
    pub(super) fn take_and_release(&mut self, spare: &mut SpareSlots) -> Option<Upstream> {
        let mut b = self.0.take()?;
        let up = b.take();
        if spare.len() < SPARE_SLOTS {
            spare.push(b);
        }
        up
    }
}

/// The upstream connection of the current exchange or tunnel. Whether its connect has
/// completed is the exchange's phase ([`Phase::Connecting`] until it has; a tunnel's always
/// has), not a flag here.
#[derive(Debug)]
pub(super) struct Upstream {
    /// The socket and its readiness.
    pub(super) peer: Peer,
    /// Member index in the exchange's pool (for `Tried` and the retry on a fresh connection).
    pub(super) idx: usize,
    /// The request counts as in flight to this upstream until this drops (least_conn,
    /// max_conns; dropping it hands a `max_conns` slot to the pool's next waiter); also the
    /// upstream's shared state, for marking it down and for logs.
    pub(super) flight: InFlight,
    /// The socket's id in the worker's `ConnPool` (its token).
    pub(super) id: usize,
    /// It came from the idle pool: if it turns out dead, one fresh connect is tried.
    pub(super) reused: bool,
    /// Requests sent on this connection, this one included.
    pub(super) requests: u32,
    /// A write failed: the upstream stopped reading. Its response may still come.
    pub(super) write_failed: bool,
    /// When the first byte of the request went to it: the start of its response time.
    pub(super) sent_at: Option<Tick>,
    /// Bytes owed to it before any of the request (the PROXY header of `send_proxy`): rare,
    /// and the struct moves, so a thin box (8 bytes here, against 16 for a boxed slice).
    pub(super) preamble: Option<Box<Preamble>>,
    /// TLS to it (a pool with `tls = true`), boxed: rustls' state is large and rare here.
    pub(super) tls: Option<Box<rustls::ClientConnection>>,
    /// The TCP connect completed (a TLS handshake may still be under way: the exchange stays
    /// [`Phase::Connecting`] until both are done).
    pub(super) tcp_up: bool,
}

/// The bytes of [`Upstream::preamble`] still to send.
#[derive(Debug)]
pub(super) struct Preamble(pub(super) Vec<u8>);

/// How much of the request body is left to read from the client.
#[derive(Debug)]
pub(super) enum RequestBody {
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// A chunked body, re-chunked cleanly towards the upstream.
    Chunked(Decoder),
    /// All of it has been read (and queued for the upstream, or dropped when it stopped
    /// reading).
    Done,
}

/// How much of a final response's body is left to move.
#[derive(Debug)]
pub(super) enum ResponseBody {
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// A chunked body: re-chunked for HTTP/1.1 clients, de-chunked for HTTP/1.0 ones.
    Chunked(Decoder, chunked::Output),
    /// Everything until the upstream closes.
    UntilClose,
}

/// Where an exchange stands on its upstream side: one phase at a time, each with its own
/// deadline (see `Session::timeout_deadline`), so that no two can hold at once.
///
/// buffering → queued → connecting → awaiting the head → streaming → draining; a phase may
/// be skipped (no body to buffer, a free slot, a pooled connection, an empty response body),
/// and a failed connect or a dead pooled connection goes back to queued or connecting for the
/// next try.
#[derive(Debug)]
pub(super) enum Phase {
    /// The request body is read, and its framing checked, before any upstream is chosen
    /// (`--request-buffer`): nothing of a bad body reaches one. Deadline: the client's
    /// read timeout.
    Buffering,
    /// Every eligible upstream is at its `max_conns`: waiting in the pool's queue with
    /// `ticket` until `until` (then 503). `woken`: a slot freed for this wait; pick again.
    Queued {
        ticket: u64,
        until: Tick,
        woken: bool,
    },
    /// A nonblocking connect to the upstream is under way since `since`. Deadline:
    /// `--connect-timeout`.
    Connecting { since: Tick },
    /// Connected: the request goes out (as far as it has come) and the response head is
    /// awaited (interim heads pass through); how far the upstream's bytes were checked.
    /// Deadline: the read or write timeout.
    AwaitingHead(HeadProgress),
    /// The final response head went to the client: its body follows. From here on a failure
    /// can only close the connection.
    Streaming(ResponseBody),
    /// The response is queued for the client in full; the rest of the request body is still
    /// read (and forwarded, or dropped if the upstream stopped reading) so that the
    /// connection's framing stays known.
    Draining,
}

impl Phase {
    /// A final response head has been queued for the client.
    #[inline]
    pub(super) fn final_started(&self) -> bool {
        matches!(self, Phase::Streaming(_) | Phase::Draining)
    }
}

/// One request/response exchange with an upstream.
#[derive(Debug)]
pub struct Exchange {
    /// What we kept of the request head.
    pub(super) req: RequestInfo,
    /// Request body progress.
    pub(super) req_body: RequestBody,
    /// Where the exchange stands on its upstream side.
    pub(super) phase: Phase,
    /// While `Some(written)`, the upstream output buffer still holds the whole request from its
    /// first byte, `written` of which were sent: the request can be replayed on another upstream
    /// if this one fails before answering.
    pub(super) replay: Option<usize>,
    /// The client connection closes after this exchange (decided with the response head).
    pub(super) close_after: bool,
    /// A `100 Continue` reached the client: it will send the body.
    pub(super) continue_sent: bool,
    /// How long the upstream connection may wait in the pool after this exchange; zero when
    /// it must be closed (the upstream closes, a close-delimited body, an upgrade).
    pub(super) upstream_keep: Duration,
    /// The one fresh-connection retry after a dead pooled connection has been used.
    pub(super) fresh_retry_used: bool,
    /// Length of the forwarded head at the front of the upstream buffer: what follows it while
    /// buffering is the body read so far.
    pub(super) head_len: usize,
    /// The pool (index in the session's snapshot) the route chose.
    pub(super) pool: usize,
    /// The hash of the request's key, for the hash strategies (`None`: round robin).
    pub(super) hash: Option<u64>,
    /// The final status sent to the client (0 until one is).
    pub(super) status: u16,
    /// Client bytes (written and queued) when the final response head was queued: what comes
    /// after is its body (the access log's bytes sent).
    pub(super) body_from: u64,
    /// Request sent → response head received, µs, once known.
    pub(super) upstream_us: Option<u64>,
    /// When waiting for a `max_conns` slot ends with a 503, once the request has waited: one
    /// deadline for the request, however often it waits.
    pub(super) queue_until: Option<Tick>,
    /// Upstreams tried for this request.
    pub(super) tried: Tried,
}
