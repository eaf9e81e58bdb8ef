//! The complete answers the proxy makes itself. STUB: interface only.

/// Append a complete response for `status` to `out`: status line, `Content-Type: text/plain`,
/// `Content-Length`, `Connection: close` when `close`, `Retry-After` when given, and a one-line body.
pub fn write_response(status: u16, close: bool, retry_after_secs: Option<u64>, out: &mut Vec<u8>) {
    let _ = (status, close, retry_after_secs, out);
    todo!("http::local::write_response")
}
