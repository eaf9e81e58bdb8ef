//! The complete answers the proxy makes itself: errors it found (400, 414, 431, ...), an
//! upstream that failed (502, 504), no upstream at all (503).

use super::{decimal_len, push_decimal};

/// The methods a 405 names in its Allow field: everything we forward (all but CONNECT).
///
/// RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405 response
/// containing a list of the target resource's currently supported methods."
pub const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";

/// The reason phrase for `status` (RFC 9110 §15), "Unknown" for codes outside the table.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Append a complete response for `status` to `out`: status line, `Content-Type: text/plain`,
/// `Content-Length`, `Retry-After` when given, `Allow` for a 405, `Connection: close` when
/// `close`, and the one-line body `{status} {reason}\n`.
pub fn write_response(status: u16, close: bool, retry_after_secs: Option<u64>, out: &mut Vec<u8>) {
    let reason = reason(status);
    let code = u64::from(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, code);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_decimal(out, (decimal_len(code) + 1 + reason.len() + 1) as u64);
    out.extend_from_slice(b"\r\n");
    if let Some(secs) = retry_after_secs {
        out.extend_from_slice(b"Retry-After: ");
        push_decimal(out, secs);
        out.extend_from_slice(b"\r\n");
    }
    if status == 405 {
        out.extend_from_slice(b"Allow: ");
        out.extend_from_slice(ALLOW.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    push_decimal(out, code);
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.push(b'\n');
}

/// Most bytes of a host name a 404's body repeats (it must fit the room kept for our own
/// answers behind forwarded bytes).
pub const MAX_HOST_IN_BODY: usize = 64;

/// Append a 404 for a request no route matches: the body names the host (cut to
/// [`MAX_HOST_IN_BODY`] bytes; it was validated as a Host value, so it holds no CR, LF or
/// control character).
pub fn write_no_route(host: &[u8], close: bool, out: &mut Vec<u8>) {
    let shown = &host[..host.len().min(MAX_HOST_IN_BODY)];
    let cut = if shown.len() < host.len() { "..." } else { "" };
    let body_len = "no route for host ''\n".len() + shown.len() + cut.len();
    out.extend_from_slice(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: ",
    );
    push_decimal(out, body_len as u64);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\nno route for host '");
    out.extend_from_slice(shown);
    out.extend_from_slice(cut.as_bytes());
    out.extend_from_slice(b"'\n");
}

/// A `200 OK` with `body` as `text/plain` (an ACME http-01 key authorization).
pub fn write_text(body: &[u8], close: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// A `308 Permanent Redirect` to `location` (the same URL over HTTPS), with an empty body.
pub fn write_redirect(location: &[u8], close: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: ");
    out.extend_from_slice(location);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_names_where_to_go() {
        let mut out = Vec::new();
        write_redirect(b"https://example.com/a?b", false, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://example.com/a?b\r\n\
              Content-Length: 0\r\n\r\n"
        );
    }

    fn response(status: u16, close: bool, retry: Option<u64>) -> String {
        let mut out = Vec::new();
        write_response(status, close, retry, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn no_route_names_the_host_within_bounds() {
        let mut out = Vec::new();
        write_no_route(b"shop.test", false, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n\r\n\
             no route for host 'shop.test'\n"
        );
        let mut out = Vec::new();
        write_no_route(&[b'h'; 1000], true, &mut out);
        assert!(out.len() < 200, "{}", out.len());
        let text = String::from_utf8(out).unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let declared: usize = text
            .split("Content-Length: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), declared);
        assert!(body.ends_with("...'\n"));
    }

    #[test]
    fn bad_request_with_close() {
        assert_eq!(
            response(400, true, None),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\
             Connection: close\r\n\r\n400 Bad Request\n"
        );
    }

    #[test]
    fn service_unavailable_with_retry_after() {
        assert_eq!(
            response(503, false, Some(5)),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\
             Retry-After: 5\r\n\r\n503 Service Unavailable\n"
        );
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        assert_eq!(
            response(405, true, None),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\
             Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n\
             Connection: close\r\n\r\n405 Method Not Allowed\n"
        );
    }

    #[test]
    fn unknown_status_is_unknown() {
        assert_eq!(
            response(599, false, None),
            "HTTP/1.1 599 Unknown\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n599 Unknown\n"
        );
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = b"before".to_vec();
        write_response(504, true, Some(0), &mut out);
        assert!(out.starts_with(b"beforeHTTP/1.1 504 Gateway Timeout\r\n"));
        assert!(out.ends_with(b"Retry-After: 0\r\nConnection: close\r\n\r\n504 Gateway Timeout\n"));
    }

    #[test]
    fn every_named_status_has_a_consistent_content_length() {
        for status in [
            400, 405, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 505, 7, 1000,
        ] {
            let text = response(status, false, None);
            let (head, body) = text.split_once("\r\n\r\n").expect("a blank line");
            assert_eq!(body, format!("{status} {}\n", reason(status)));
            assert!(
                head.contains(&format!("\r\nContent-Length: {}", body.len())),
                "{head}"
            );
            assert!(text.starts_with(&format!("HTTP/1.1 {status} {}\r\n", reason(status))));
        }
        assert_eq!(reason(413), "Content Too Large");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(505), "HTTP Version Not Supported");
    }
}
