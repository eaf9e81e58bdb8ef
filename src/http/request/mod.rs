//! Request heads: our own strict scan of the head bytes (RFC 9112), httparse for the field
//! list, then the framing, Host and connection rules httparse leaves to us.
//!
//! httparse is lenient on purpose (it accepts bare LF line endings, for one), and a proxy that
//! reads a head differently from the server behind it is a request-smuggling proxy. So every
//! byte of the head is checked here first; httparse then only splits what we already accepted.

pub use super::fields::HeadProgress;
use super::fields::{parse_fields, Fields, ScanError};
use super::{
    field_elements, has_token, is_tchar, parse_content_length, ConnectionTokens, FieldBits,
    Framing, KeyFields, Limits, Version,
};

/// Most empty lines (CRLF) skipped before the request line.
///
/// RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line SHOULD ignore
/// at least one empty line (CRLF) received prior to the request-line." A few cover the clients
/// that send a stray CRLF after a body; more than this is not a client, it is a probe.
pub const MAX_LEADING_EMPTY_LINES: usize = 8;

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
    /// Not the client's fault: the caller's header slots are fewer than the head's field
    /// lines. Parse again with at least this many. Never returned when the slots number
    /// `Limits::max_fields` or more; its status, should it ever reach a client, is 431.
    Slots(usize),
}

impl RequestError {
    /// The status code the client gets for this error.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::BadRequest(_) => 400,
            RequestError::MethodNotAllowed => 405,
            RequestError::UriTooLong => 414,
            RequestError::HeaderTooLarge | RequestError::Slots(_) => 431,
            RequestError::NotImplemented => 501,
            RequestError::VersionNotSupported => 505,
        }
    }
}

/// A parsed, validated request head. Borrows the input bytes and the caller's httparse array.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// Bytes of the head, including skipped leading empty lines and the blank line that ends it.
    pub head_len: usize,
    /// The method, case-sensitive as received (a token).
    pub method: &'b str,
    /// The request target as sent (origin-form, absolute-form or asterisk-form).
    pub target: &'b str,
    /// The version of the request line (HTTP/1.x with x > 1 reads as 1.1).
    pub version: Version,
    /// All header fields as received, in order (values without surrounding OWS).
    pub headers: &'h [httparse::Header<'b>],
    /// The body framing decided from Content-Length / Transfer-Encoding.
    pub framing: Framing,
    /// The authority to forward as Host: the absolute-form target's, else the Host field's
    /// (empty for an HTTP/1.0 request without Host).
    pub host: &'b [u8],
    /// The path-and-query to forward: the origin-form target, `*`, or what follows the
    /// authority of an absolute-form target (`/` when that is empty, `*` for OPTIONS). It starts
    /// with `?` only for an absolute-form target with an empty path and a query; the rewriter
    /// then writes the `/` in front (RFC 9112 §3.2.1).
    pub path: &'b str,
    /// The summary the connection state machine keeps after the head buffer is gone.
    pub info: RequestInfo,
    /// What the Connection field(s) say, read once for the parse and the rewrite.
    pub(crate) connection: ConnectionTokens,
    /// Which fields the rewriter drops or reads.
    pub(crate) bits: FieldBits,
    /// The head as received (`headers` point into it), for copying field lines whole.
    pub(crate) raw: &'b [u8],
}

/// What the session needs to remember about a request once its head has been forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestInfo {
    /// The version of the request line.
    pub version: Version,
    /// The body framing.
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
/// `headers` is scratch space from the caller: a head with more field lines than it holds gets
/// `RequestError::Slots` (initialising slots costs, so callers start small).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<Request<'h, 'b>>, RequestError> {
    parse_resuming(buf, limits, headers, &mut HeadProgress::default())
}

/// [`parse`] for a buffer that only grew since the call that left `progress` (same start, more
/// bytes at the end): the checks already passed are not made again. The outcome is the one
/// `parse` gives for the same bytes. Start every new head with `HeadProgress::Start`.
pub fn parse_resuming<'h, 'b>(
    buf: &'b [u8],
    limits: &Limits,
    headers: &'h mut [httparse::Header<'b>],
    progress: &mut HeadProgress,
) -> Result<Option<Request<'h, 'b>>, RequestError> {
    let incomplete = || {
        if buf.len() >= limits.max_head {
            Err(RequestError::HeaderTooLarge)
        } else {
            Ok(None)
        }
    };
    let limited = &buf[..buf.len().min(limits.max_head)];

    // Only the field lines not checked yet are new: while the head is still incomplete, check
    // those alone. Once it is complete, the full parse below runs once.
    match progress.scan_new_fields(limited, limits.max_fields) {
        None => {}
        Some(Ok(())) => return incomplete(),
        Some(Err(ScanError::Invalid(why))) => return Err(RequestError::BadRequest(why)),
        Some(Err(ScanError::TooManyFields)) => return Err(RequestError::HeaderTooLarge),
    }

    let start = match skip_leading_empty_lines(buf)? {
        Some(start) => start,
        None => return incomplete(),
    };

    // The request line, checked against its own limit even before its end has arrived. The
    // search for its end resumes where the last call stopped.
    let window_end = start
        .saturating_add(limits.max_request_line)
        .saturating_add(1);
    let window = &buf[start..buf.len().min(window_end)];
    let seen = progress.line_seen().saturating_sub(start).min(window.len());
    let line_len = match window[seen..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
    {
        Some(len) => seen + len,
        None if buf.len() - start > limits.max_request_line => {
            return Err(RequestError::UriTooLong)
        }
        None => {
            *progress = HeadProgress::in_line(start + window.len());
            return incomplete();
        }
    };
    let line_end = start + line_len;
    let (method, target, version) = parse_request_line(&buf[start..line_end])?;
    let fields_start = match (buf[line_end], buf.get(line_end + 1)) {
        (b'\n', _) => return Err(RequestError::BadRequest("bare LF ends the request line")),
        (_, None) => return incomplete(),
        (_, Some(b'\n')) => line_end + 2,
        (_, Some(_)) => return Err(RequestError::BadRequest("bare CR in the request line")),
    };
    if method == "CONNECT" {
        return Err(RequestError::MethodNotAllowed);
    }

    let (head_len, headers, reformat) =
        match parse_fields(limited, fields_start, limits.max_fields, headers) {
            Fields::Complete(head_len, headers, reformat) => (head_len, headers, reformat),
            Fields::Partial { line, fields } => {
                *progress = HeadProgress::in_fields(line, fields);
                return incomplete();
            }
            Fields::Slots(count) => return Err(RequestError::Slots(count)),
            Fields::TooMany => return Err(RequestError::HeaderTooLarge),
            Fields::Invalid(why) => return Err(RequestError::BadRequest(why)),
        };

    let fields = key_fields(headers)?;
    let (host, path) = resolve_target(method, target, version, &fields)?;
    let framing = request_framing(headers, version, &fields)?;

    let conn = fields.connection_tokens(headers);
    let keep_alive = match version {
        Version::Http11 => !conn.close,
        Version::Http10 => conn.keep_alive && !conn.close,
    };
    let has_body =
        matches!(framing, Framing::Chunked) || matches!(framing, Framing::Length(n) if n > 0);
    // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
    // request MUST ignore that expectation" (and the rewriter drops an HTTP/1.0 client's
    // Expect fields, or the upstream, reading HTTP/1.1, would honour them). From HTTP/1.1, any
    // other expectation is forwarded as is rather than answered with 417: the origin server
    // may know it.
    let expect_continue = version == Version::Http11
        && has_body
        && fields.expect
        && has_token(headers, "expect", b"100-continue");
    let upgrade_websocket = version == Version::Http11
        && method == "GET"
        && conn.upgrade
        && fields.upgrade
        && field_elements(headers, "upgrade").any(is_websocket_protocol);
    let info = RequestInfo {
        version,
        framing,
        keep_alive,
        expect_continue,
        upgrade_websocket,
        is_head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        ),
    };
    Ok(Some(Request {
        head_len,
        method,
        target,
        version,
        headers,
        framing,
        host,
        path,
        info,
        connection: conn,
        bits: FieldBits {
            reformat,
            ..fields.bits
        },
        raw: &buf[..head_len],
    }))
}

/// Skip the CRLFs before the request line. `Ok(None)`: only (part of) empty lines so far.
fn skip_leading_empty_lines(buf: &[u8]) -> Result<Option<usize>, RequestError> {
    let mut pos = 0;
    for _ in 0..=MAX_LEADING_EMPTY_LINES {
        match (buf.get(pos), buf.get(pos + 1)) {
            (Some(b'\r'), Some(b'\n')) => pos += 2,
            (Some(b'\r'), None) | (None, _) => return Ok(None),
            (Some(b'\r'), Some(_)) => {
                return Err(RequestError::BadRequest("bare CR before the request line"))
            }
            (Some(b'\n'), _) => {
                return Err(RequestError::BadRequest("bare LF before the request line"))
            }
            (Some(_), _) => return Ok(Some(pos)),
        }
    }
    Err(RequestError::BadRequest(
        "too many empty lines before the request line",
    ))
}

/// `method SP request-target SP HTTP-version`, single spaces (RFC 9112 §3). One pass over
/// the line: the method's token bytes, the target's visible ones, then the version.
fn parse_request_line(line: &[u8]) -> Result<(&str, &str, Version), RequestError> {
    use RequestError::BadRequest;
    let method_len = line
        .iter()
        .position(|&b| !is_tchar(b))
        .ok_or(BadRequest("request line without target"))?;
    match line[method_len] {
        b' ' if method_len > 0 => {}
        b' ' => return Err(BadRequest("method is not a token")),
        _ if !line[method_len..].contains(&b' ') => {
            return Err(BadRequest("request line without target"))
        }
        _ => return Err(BadRequest("method is not a token")),
    }
    let target_start = method_len + 1;
    // A target is URI characters only: visible ASCII. Non-ASCII bytes are refused rather than
    // guessed at (RFC 3986 has none; a server behind us could decode them differently).
    let mut fragment = false;
    let mut end = target_start;
    loop {
        match line.get(end) {
            Some(b' ') => break,
            Some(b'#') => fragment = true,
            Some(0x21..=0x7e) => {}
            Some(_) if line[end..].contains(&b' ') => {
                return Err(BadRequest("invalid byte in the request target"))
            }
            _ => return Err(BadRequest("request line without version")),
        }
        end += 1;
    }
    if end == target_start {
        return Err(BadRequest("more than one space in the request line"));
    }
    if fragment {
        return Err(BadRequest("fragment in the request target"));
    }
    let version = parse_version(&line[end + 1..])?;
    // Method and target are ASCII by the checks above: one conversion for both, and slicing at
    // ASCII positions cannot split a character.
    let text = std::str::from_utf8(&line[..end])
        .map_err(|_| BadRequest("invalid byte in the request target"))?;
    let method = text
        .get(..method_len)
        .ok_or(BadRequest("method is not a token"))?;
    let target = text
        .get(target_start..)
        .ok_or(BadRequest("invalid byte in the request target"))?;
    Ok((method, target, version))
}

/// `HTTP/DIGIT.DIGIT`. RFC 9110 §2.5: a recipient of 1.x with a higher minor version "SHOULD
/// process the message as if it were in the highest minor version within that major version
/// to which the recipient is conformant": so 1.2 and up read as 1.1.
fn parse_version(v: &[u8]) -> Result<Version, RequestError> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Ok(Version::Http10),
                (b'1', _) => Ok(Version::Http11),
                _ => Err(RequestError::VersionNotSupported),
            }
        }
        _ => Err(RequestError::BadRequest("malformed HTTP version")),
    }
}

/// The key fields of a request head, with the Host rules checked.
fn key_fields<'b>(headers: &[httparse::Header<'b>]) -> Result<KeyFields<'b>, RequestError> {
    let f = KeyFields::of(headers);
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message
    // that contains more than one Host header field line or a Host header field with an
    // invalid field value."
    if f.host_count > 1 {
        return Err(RequestError::BadRequest("more than one Host field"));
    }
    if f.host_count == 1 && !is_valid_host(f.host) {
        return Err(RequestError::BadRequest("invalid Host field"));
    }
    Ok(f)
}

/// Check the target form and return (the host to forward, the path to forward).
fn resolve_target<'b>(
    method: &str,
    target: &'b str,
    version: Version,
    fields: &KeyFields<'b>,
) -> Result<(&'b [u8], &'b str), RequestError> {
    use RequestError::BadRequest;
    if version == Version::Http11 && fields.host_count == 0 {
        return Err(BadRequest("HTTP/1.1 request without Host"));
    }
    if target == "*" {
        // RFC 9112 §3.2.4: the asterisk-form "is only used for a server-wide OPTIONS request".
        if method != "OPTIONS" {
            return Err(BadRequest(
                "asterisk-form target for a method other than OPTIONS",
            ));
        }
        return Ok((fields.host, target));
    }
    if target.starts_with('/') {
        return Ok((fields.host, target));
    }
    // absolute-form. RFC 9112 §3.2.2: "When an origin server receives a request with an
    // absolute-form of request-target, the origin server MUST ignore the received Host header
    // field (if any) and instead use the host information of the request-target."
    let (scheme, rest) = target
        .split_once("://")
        .ok_or(BadRequest("unknown request-target form"))?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(BadRequest(
            "absolute-form target with a scheme other than http(s)",
        ));
    }
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_len);
    // RFC 9110 §4.2.1: "A recipient that processes such a URI reference [with an empty host
    // identifier] MUST reject it as invalid." Userinfo (`@`) fails the host syntax check.
    match split_host_port(authority.as_bytes()) {
        Some((host, _)) if !host.is_empty() => {}
        _ => return Err(BadRequest("invalid authority in an absolute-form target")),
    }
    let path = match path {
        // RFC 9112 §3.2.4: for OPTIONS with an empty path "the last proxy on the request chain
        // MUST send a request-target of "*" when it forwards the request to the indicated
        // origin server"; otherwise §3.2.1: "the client MUST send "/" as the path".
        "" if method == "OPTIONS" => "*",
        "" => "/",
        p => p,
    };
    Ok((authority.as_bytes(), path))
}

/// The body framing of a request (RFC 9112 §6.1-6.3).
fn request_framing(
    headers: &[httparse::Header<'_>],
    version: Version,
    fields: &KeyFields<'_>,
) -> Result<Framing, RequestError> {
    use RequestError::BadRequest;
    let te = fields.transfer_codings(headers);
    if te.present {
        // RFC 9112 §6.1: "A server MAY reject a request that contains both Content-Length and
        // Transfer-Encoding or process such a request in accordance with the Transfer-Encoding
        // alone." Both at once is the classic smuggling shape: we reject.
        if fields.content_length_count > 0 {
            return Err(BadRequest("both Content-Length and Transfer-Encoding"));
        }
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty".
        if version == Version::Http10 {
            return Err(BadRequest("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if te.malformed {
            return Err(BadRequest("malformed Transfer-Encoding"));
        }
        // RFC 9112 §6.3: "If a Transfer-Encoding header field is present in a request and the
        // chunked transfer coding is not the final encoding, the message body length cannot be
        // determined reliably; the server MUST respond with the 400 (Bad Request) status code
        // and then close the connection."
        if !te.final_chunked {
            return Err(BadRequest("Transfer-Encoding does not end in chunked"));
        }
        // RFC 9112 §6.1: "A sender MUST NOT apply the chunked transfer coding more than once".
        if te.chunked_count > 1 {
            return Err(BadRequest("chunked applied more than once"));
        }
        // We forward the body re-chunked; another coding under it would be forwarded without
        // its name. RFC 9112 §6.1: "A server that receives a request message with a transfer
        // coding it does not understand SHOULD respond with 501 (Not Implemented)."
        if te.other {
            return Err(RequestError::NotImplemented);
        }
        return Ok(Framing::Chunked);
    }
    match fields.content_length_count {
        0 => Ok(Framing::None),
        // Even two equal values are refused: RFC 9112 §6.3 lets a recipient accept a list of
        // identical values, but a server behind us may not, so we are the strict one.
        1 => parse_content_length(fields.content_length)
            .map(Framing::Length)
            .ok_or(BadRequest("invalid Content-Length")),
        _ => Err(BadRequest("more than one Content-Length field")),
    }
}

/// An Upgrade list element naming WebSocket (`websocket` or `websocket/<version>`).
fn is_websocket_protocol(e: &[u8]) -> bool {
    let name = e.split(|&b| b == b'/').next().unwrap_or(e);
    name.eq_ignore_ascii_case(b"websocket")
}

/// Split `uri-host [":" port]` (RFC 3986 §3.2.2-3.2.3) into host and port, checking both.
/// `None` when the syntax is invalid. An empty host is syntactically valid.
pub(crate) fn split_host_port(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let (host, rest) = if v.first() == Some(&b'[') {
        split_ip_literal(v)?
    } else {
        // One pass: the reg-name up to the first byte outside it, which must be the colon
        // before the port (or the end).
        let end = reg_name_len(v)?;
        v.split_at(end)
    };
    let port = match rest {
        [] => rest,
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => port,
        _ => return None,
    };
    Some((host, port))
}

/// `[...]` at the start of `v` and what follows it, if the inside is an IP literal. Out of
/// line: rare, and the IPv6 parser inlined would make every Host check save more registers.
#[cold]
#[inline(never)]
fn split_ip_literal(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let close = v.iter().position(|&b| b == b']')?;
    let (literal, rest) = v.split_at(close + 1);
    is_ip_literal(&literal[1..literal.len() - 1]).then_some((literal, rest))
}

/// A Host field value: `uri-host [":" port]`, possibly empty (RFC 9112 §3.2: "If the
/// authority component is missing or undefined for the target URI, then a client MUST send a
/// Host header field with an empty field value.").
pub(crate) fn is_valid_host(v: &[u8]) -> bool {
    split_host_port(v).is_some()
}

/// The length of the `reg-name = *( unreserved / pct-encoded / sub-delims )` at the start of
/// `s` (an IPv4 address is one too), which must end at a colon or the end of `s`; `None` for a
/// byte outside the grammar or a broken percent-encoding.
fn reg_name_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if REG_NAME[usize::from(b)] {
            i += 1;
            continue;
        }
        match b {
            b'%' if s.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit) =>
            {
                i += 3
            }
            b':' => return Some(i),
            _ => return None,
        }
    }
    Some(i)
}

/// The inside of `[...]`: an IPv6 address or `IPvFuture = "v" 1*HEXDIG "." 1*( unreserved /
/// sub-delims / ":" )`.
fn is_ip_literal(s: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = s {
        let dot = rest.iter().position(|&b| b == b'.').unwrap_or(0);
        let (version, tail) = rest.split_at(dot);
        return dot > 0
            && version.iter().all(u8::is_ascii_hexdigit)
            && tail.len() > 1
            && tail[1..]
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    std::str::from_utf8(s).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// RFC 3986 `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`.
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `is_unreserved(b) || is_sub_delim(b)` as a table: one load per byte of every Host value.
static REG_NAME: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = is_unreserved(b as u8) || is_sub_delim(b as u8);
        b += 1;
    }
    t
};

/// RFC 3986 `sub-delims = "!" / "$" / "&" / "'" / "(" / ")" / "*" / "+" / "," / ";" / "="`.
const fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests;
