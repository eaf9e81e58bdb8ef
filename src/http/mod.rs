//! HTTP/1.1 heads and bodies as pure functions over byte slices: no sockets here.
//!
//! - [`request`]: parse a request head (httparse) and apply the RFC 9112 framing rules.
//! - [`response`]: parse a response head and decide its framing (RFC 9112 §6.3).
//! - [`rewrite`]: write the forwarded request head and the client's response head.
//! - [`chunked`]: the incremental chunked-body decoder/re-encoder.
//! - [`local`]: the complete answers the proxy makes itself (400, 502, 503, ...).

pub mod chunked;
pub mod local;
pub mod request;
pub mod response;
pub mod rewrite;

/// The protocol version on one side of the proxy. Only HTTP/1.x exists here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How a message body is delimited on the wire (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (e.g. a GET without framing headers, a 204, a HEAD response).
    None,
    /// `Content-Length: n` bytes follow.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body ends when the sender closes the connection (responses only).
    UntilClose,
}

/// Size limits for heads. Named so tests, flags and buffers agree on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version) before a 414.
    pub max_request_line: usize,
    /// Largest head, request line and fields and the final CRLF, before a 431 (502 for responses).
    pub max_head: usize,
    /// Most header fields in one head before a 431 (502 for responses).
    pub max_fields: usize,
    /// Longest chunk extension kept track of before the chunked body is rejected.
    pub max_chunk_ext: usize,
    /// Most bytes of trailer section accepted (then dropped) before the chunked body is rejected.
    pub max_trailers: usize,
}

impl Limits {
    /// Defaults matching the README's Security section.
    pub const DEFAULT: Limits = Limits {
        max_request_line: 8 * 1024,
        max_head: 32 * 1024,
        max_fields: 100,
        max_chunk_ext: 1024,
        max_trailers: 8 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
