//! Request heads: parse with httparse, then enforce what httparse does not (RFC 9112).
//! STUB: interface only; the implementation comes with its unit tests.

use super::{Framing, Limits, Version};

/// Why a request head was refused; each maps to exactly one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// 400: the head is malformed or ambiguous. The string says which rule, for the log.
    BadRequest(&'static str),
    /// 405: CONNECT (we are not a forward proxy).
    MethodNotAllowed,
    /// 414: the request line is longer than `Limits::max_request_line`.
    UriTooLong,
    /// 431: the head is larger than `Limits::max_head` or has more than `max_fields` fields.
    HeaderTooLarge,
    /// 501: a transfer coding we do not implement.
    NotImplemented,
    /// 505: an HTTP major version other than 1.
    VersionNotSupported,
}

impl RequestError {
    /// The status code the client gets for this error.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::MethodNotAllowed => 405,
            RequestError::UriTooLong => 414,
            RequestError::HeaderTooLarge => 431,
            RequestError::NotImplemented => 501,
            RequestError::VersionNotSupported => 505,
        }
    }
}

/// A parsed, validated request head. Borrows the input bytes and the caller's httparse array.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// Bytes of the head, including the blank line that ends it.
    pub head_len: usize,
    pub method: &'b str,
    /// The request target as sent (origin-form, absolute-form or asterisk-form).
    pub target: &'b str,
    pub version: Version,
    /// All header fields as received, in order.
    pub headers: &'h [httparse::Header<'b>],
    /// The body framing decided from Content-Length / Transfer-Encoding.
    pub framing: Framing,
    /// The authority to forward as Host: the absolute-form target's, else the Host field's
    /// (empty for an HTTP/1.0 request without Host).
    pub host: &'b [u8],
    /// The path-and-query to forward (origin-form; absolute-form targets are reduced to it).
    pub path: &'b str,
    /// The summary the connection state machine keeps after the head buffer is gone.
    pub info: RequestInfo,
}

/// What the session needs to remember about a request once its head has been forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestInfo {
    pub version: Version,
    pub framing: Framing,
    /// The client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (and is meaningful: HTTP/1.1 with a body).
    pub expect_continue: bool,
    /// The client asked for `Upgrade: websocket` with `Connection: upgrade`.
    pub upgrade_websocket: bool,
    /// The method is HEAD: the response carries no body whatever its headers say.
    pub is_head: bool,
    /// RFC 9110 §9.2.2: safe to send again after a failure (GET, HEAD, OPTIONS, TRACE, PUT, DELETE).
    pub idempotent: bool,
}

/// Parse one request head from the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet (and not yet over a limit).
/// `headers` is scratch space from the caller; its length must be at least `limits.max_fields`.
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<Request<'h, 'b>>, RequestError> {
    let _ = (buf, limits, headers);
    todo!("http::request::parse")
}
