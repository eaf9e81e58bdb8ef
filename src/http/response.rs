//! Response heads: parse with httparse, decide framing (RFC 9112 §6.3).
//! STUB: interface only.

use super::{Framing, Limits, Version};

/// Why an upstream response head was refused. Every variant becomes a 502 for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// Malformed or ambiguous head; the string names the rule, for the log.
    Invalid(&'static str),
    /// The head is larger than `Limits::max_head` or has more than `max_fields` fields.
    TooLarge,
}

/// A parsed, validated response head. Borrows the input bytes and the caller's httparse array.
#[derive(Debug)]
pub struct Response<'h, 'b> {
    /// Bytes of the head, including the blank line that ends it.
    pub head_len: usize,
    pub version: Version,
    pub code: u16,
    pub reason: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    /// The body framing as the upstream sends it, given the request method (HEAD) and status.
    pub framing: Framing,
    /// The upstream will close after this response (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub upstream_closes: bool,
}

/// Parse one response head from the start of `buf`.
/// `request_is_head`: the request was HEAD, so the response has no body (RFC 9112 §6.3 rule 1).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    request_is_head: bool,
    limits: &Limits,
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<Response<'h, 'b>>, ResponseError> {
    let _ = (buf, request_is_head, limits, headers);
    todo!("http::response::parse")
}

/// The framing the proxy uses towards the client for a response the upstream framed as `upstream`.
/// An HTTP/1.0 client cannot read chunked: it gets the body de-chunked and ended by a close.
pub fn client_framing(upstream: Framing, client: Version) -> Framing {
    match (upstream, client) {
        (Framing::Chunked, Version::Http10) => Framing::UntilClose,
        (f, _) => f,
    }
}
