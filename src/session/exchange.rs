//! One request/response exchange: what is kept of the request, body and response progress,
//! and the upstream connection it uses.

use super::*;

/// The upstream connection of the current exchange or tunnel.
#[derive(Debug)]
pub(super) struct Upstream {
    /// The socket and its readiness.
    pub(super) peer: Peer,
    /// Member index in the exchange's pool (for `Tried` and the retry on a fresh connection).
    pub(super) idx: usize,
    /// The request counts as in flight to this upstream until this drops (least_conn,
    /// max_conns); also the upstream's shared state, for marking it down and for logs.
    pub(super) flight: InFlight,
    /// The socket's id in the worker's `ConnPool` (its token).
    pub(super) id: usize,
    /// It came from the idle pool: if it turns out dead, one fresh connect is tried.
    pub(super) reused: bool,
    /// Requests sent on this connection, this one included.
    pub(super) requests: u32,
    /// The nonblocking connect has completed.
    pub(super) connected: bool,
    /// When the connect started, for `--connect-timeout`.
    pub(super) connect_started: Tick,
    /// A write failed: the upstream stopped reading. Its response may still come.
    pub(super) write_failed: bool,
    /// When the first byte of the request went to it: the start of its response time.
    pub(super) sent_at: Option<Tick>,
    /// Bytes owed to it before any of the request (the PROXY header of `send_proxy`), boxed:
    /// rare, and the struct moves.
    pub(super) preamble: Option<Box<[u8]>>,
}

/// How much of the request body is left to forward.
#[derive(Debug)]
pub(super) enum RequestBody {
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// A chunked body, re-chunked cleanly towards the upstream.
    Chunked(Decoder),
    /// All of it has been queued for the upstream.
    Done,
}

/// Where the response stands.
#[derive(Debug)]
pub(super) enum ResponseBody {
    /// Waiting for the (final) response head; how far the part received so far has been
    /// checked (reset wherever the upstream input is consumed or cleared).
    Head(HeadProgress),
    /// This many bytes of a Content-Length body left.
    Length(u64),
    /// A chunked body: re-chunked for HTTP/1.1 clients, de-chunked for HTTP/1.0 ones.
    Chunked(Decoder, chunked::Output),
    /// Everything until the upstream closes.
    UntilClose,
    /// The response has been queued for the client in full.
    Done,
}

/// One request/response exchange with an upstream.
#[derive(Debug)]
pub struct Exchange {
    /// What we kept of the request head.
    pub(super) req: RequestInfo,
    /// Request body progress.
    pub(super) req_body: RequestBody,
    /// Response progress.
    pub(super) resp: ResponseBody,
    /// While `Some(written)`, the upstream output buffer still holds the whole request from its
    /// first byte, `written` of which were sent: the request can be replayed on another upstream
    /// if this one fails before answering.
    pub(super) replay: Option<usize>,
    /// A final response head has been queued for the client: from here on a failure can only
    /// close the connection.
    pub(super) final_started: bool,
    /// The client connection closes after this exchange (decided with the response head).
    pub(super) close_after: bool,
    /// A `100 Continue` reached the client: it will send the body.
    pub(super) continue_sent: bool,
    /// How long the upstream connection may wait in the pool after this exchange; zero when
    /// it must be closed (the upstream closes, a close-delimited body, an upgrade).
    pub(super) upstream_keep: Duration,
    /// The one fresh-connection retry after a dead pooled connection has been used.
    pub(super) fresh_retry_used: bool,
    /// The request body is being read, and its framing checked, before any upstream is
    /// chosen (`--request-buffer`): nothing of a bad body reaches an upstream.
    pub(super) buffering: bool,
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
    /// Waiting in the pool's queue for a `max_conns` slot: the ticket, and when the wait ends
    /// with a 503.
    pub(super) queued: Option<(u64, Tick)>,
}
