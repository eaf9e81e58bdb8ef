//! The forwarded request head and the client's response head, byte for byte.
//! STUB: interface only.

use super::request::Request;
use super::response::Response;
use super::Framing;
use std::net::IpAddr;

/// What the request rewriter needs besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// The client's address, written as plain IPv4 when it is IPv4-mapped.
    pub client_ip: IpAddr,
}

/// Append the head to send upstream for `req` to `out`.
/// The request line says HTTP/1.1; hop-by-hop fields are dropped; X-Forwarded-For gets the
/// client appended; exactly one framing header is emitted from `req.framing`; CRLF everywhere.
pub fn request_head(req: &Request<'_, '_>, ctx: &RequestContext, out: &mut Vec<u8>) {
    let _ = (req, ctx, out);
    todo!("http::rewrite::request_head")
}

/// What the response rewriter needs besides the response itself.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext {
    /// The framing towards the client (see `response::client_framing`).
    pub framing: Framing,
    /// The proxy closes the client connection after this response: add `Connection: close`.
    pub close: bool,
    /// The client is HTTP/1.0 and the connection stays open: add `Connection: keep-alive`.
    pub keep_alive_http10: bool,
    /// This is a 101 to a WebSocket upgrade the client asked for: keep Upgrade/Connection.
    pub upgrade: bool,
}

/// Append the head to send to the client for `resp` to `out`.
pub fn response_head(resp: &Response<'_, '_>, ctx: &ResponseContext, out: &mut Vec<u8>) {
    let _ = (resp, ctx, out);
    todo!("http::rewrite::response_head")
}
