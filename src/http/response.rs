//! Response heads: the same strict byte scan as requests, httparse for the field list, then the
//! message-body length rules of RFC 9112 §6.3.

use super::fields::{parse_fields, Fields, HeadProgress, ScanError};
use super::{
    parse_content_length, ConnectionTokens, FieldBits, Framing, KeyFields, Limits, TransferCodings,
    Version,
};

/// Why an upstream response head was refused. Every variant becomes a 502 for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// Malformed or ambiguous head; the string names the rule, for the log.
    Invalid(&'static str),
    /// The head is larger than `Limits::max_head` or has more than `max_fields` fields.
    TooLarge,
    /// The caller's header slots are fewer than the head's field lines: parse again with at
    /// least this many. Never returned when the slots number `Limits::max_fields` or more.
    Slots(usize),
}

/// A parsed, validated response head. Borrows the input bytes and the caller's httparse array.
#[derive(Debug)]
pub struct Response<'h, 'b> {
    /// Bytes of the head, including the blank line that ends it.
    pub head_len: usize,
    /// The version of the status line (HTTP/1.0 or HTTP/1.1).
    pub version: Version,
    /// The status code, 100..=999.
    pub code: u16,
    /// The reason phrase as received (possibly empty; empty too when it is not UTF-8).
    pub reason: &'b [u8],
    /// All header fields as received, in order (values without surrounding OWS).
    pub headers: &'h [httparse::Header<'b>],
    /// The body framing as the upstream sends it, given the request method (HEAD) and status.
    pub framing: Framing,
    /// The upstream will close after this response (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub upstream_closes: bool,
    /// What the Connection field(s) say, read once for the parse and the rewrite.
    pub(crate) connection: ConnectionTokens,
    /// Which fields the rewriter drops.
    pub(crate) bits: FieldBits,
    /// The `timeout=` of a Keep-Alive field, in seconds (see [`keep_alive_timeout`]).
    pub keep_alive_timeout: Option<u64>,
    /// The head as received (`headers` point into it), for copying field lines whole.
    pub(crate) raw: &'b [u8],
}

/// Parse one response head from the start of `buf`.
/// `request_is_head`: the request was HEAD, so the response has no body (RFC 9112 §6.3 rule 1).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    request_is_head: bool,
    limits: &Limits,
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<Response<'h, 'b>>, ResponseError> {
    parse_resuming(
        buf,
        request_is_head,
        limits,
        headers,
        &mut HeadProgress::default(),
    )
}

/// [`parse`] for a buffer that only grew since the call that left `progress` (same start, more
/// bytes at the end): the checks already passed are not made again, and the outcome is the one
/// `parse` gives for the same bytes. Start every new head with `HeadProgress::START`.
pub fn parse_resuming<'h, 'b>(
    buf: &'b [u8],
    request_is_head: bool,
    limits: &Limits,
    headers: &'h mut [httparse::Header<'b>],
    progress: &mut HeadProgress,
) -> Result<Option<Response<'h, 'b>>, ResponseError> {
    use ResponseError::Invalid;
    let incomplete = || {
        if buf.len() >= limits.max_head {
            Err(ResponseError::TooLarge)
        } else {
            Ok(None)
        }
    };
    let limited = &buf[..buf.len().min(limits.max_head)];

    // The field lines not checked yet alone while the head is incomplete; the full parse
    // below runs once, when it is complete.
    match progress.scan_new_fields(limited, limits.max_fields) {
        None => {}
        Some(Ok(())) => return incomplete(),
        Some(Err(ScanError::Invalid(why))) => return Err(Invalid(why)),
        Some(Err(ScanError::TooManyFields)) => return Err(ResponseError::TooLarge),
    }

    // The search for the status line's end resumes where the last call stopped.
    let seen = progress.line_seen().min(limited.len());
    let Some(line_len) = limited[seen..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|len| seen + len)
    else {
        *progress = HeadProgress::in_line(limited.len());
        return incomplete();
    };
    let (version, code, reason) = parse_status_line(&buf[..line_len])?;
    let fields_start = match (buf[line_len], limited.get(line_len + 1)) {
        (b'\n', _) => return Err(Invalid("bare LF ends the status line")),
        (_, None) => return incomplete(),
        (_, Some(b'\n')) => line_len + 2,
        (_, Some(_)) => return Err(Invalid("bare CR in the status line")),
    };
    let (head_len, headers, reformat) =
        match parse_fields(limited, fields_start, limits.max_fields, headers) {
            Fields::Complete(head_len, headers, reformat) => (head_len, headers, reformat),
            Fields::Partial { line, fields } => {
                *progress = HeadProgress::in_fields(line, fields);
                return incomplete();
            }
            Fields::Slots(count) => return Err(ResponseError::Slots(count)),
            Fields::TooMany => return Err(ResponseError::TooLarge),
            Fields::Invalid(why) => return Err(Invalid(why)),
        };

    let key = KeyFields::of(headers);
    let framing = response_framing(headers, &key, version, code, request_is_head)?;
    let conn = key.connection_tokens(headers);
    let upstream_closes = match version {
        Version::Http11 => conn.close,
        Version::Http10 => conn.close || !conn.keep_alive,
    } || framing == Framing::UntilClose;
    Ok(Some(Response {
        connection: conn,
        bits: FieldBits {
            reformat,
            ..key.bits
        },
        raw: &buf[..head_len],
        head_len,
        version,
        code,
        reason,
        headers,
        framing,
        upstream_closes,
        keep_alive_timeout: if key.keep_alive {
            keep_alive_timeout(headers)
        } else {
            None
        },
    }))
}

/// `HTTP-version SP status-code SP [ reason-phrase ]` (RFC 9112 §4). A missing SP after the
/// code is accepted too, as httparse does: some servers send `HTTP/1.1 200` and nothing else.
fn parse_status_line(line: &[u8]) -> Result<(Version, u16, &[u8]), ResponseError> {
    use ResponseError::Invalid;
    let (version, rest) = match line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'0', b' ', rest @ ..] => {
            (Version::Http10, rest)
        }
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1', b' ', rest @ ..] => {
            (Version::Http11, rest)
        }
        _ => return Err(Invalid("status line is not HTTP/1.0 or HTTP/1.1")),
    };
    let (code, reason) = match rest {
        [a, b, c, tail @ ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            match tail {
                [] => (code, tail),
                [b' ', reason @ ..] => (code, reason),
                _ => return Err(Invalid("status code is not three digits")),
            }
        }
        _ => return Err(Invalid("status code is not three digits")),
    };
    if code < 100 {
        return Err(Invalid("status code below 100"));
    }
    // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
    let mut non_ascii = false;
    for &b in reason {
        match b {
            b'\t' | b' '..=b'~' => {}
            0x80.. => non_ascii = true,
            _ => return Err(Invalid("control character in the reason phrase")),
        }
    }
    // RFC 9112 §4: "A client SHOULD ignore the reason-phrase content because it is not a
    // reliable channel for information": a non-UTF-8 one is dropped rather than refused.
    let reason = if non_ascii && std::str::from_utf8(reason).is_err() {
        &[]
    } else {
        reason
    };
    Ok((version, code, reason))
}

/// The message-body length of a response (RFC 9112 §6.3), strict where the RFC allows a choice.
fn response_framing(
    headers: &[httparse::Header<'_>],
    key: &KeyFields<'_>,
    version: Version,
    code: u16,
    request_is_head: bool,
) -> Result<Framing, ResponseError> {
    use ResponseError::Invalid;
    let length = match key.content_length_count {
        0 => None,
        // RFC 9112 §6.3 rule 5: "If a message is received without Transfer-Encoding and with
        // an invalid Content-Length header field, then the message framing is invalid and the
        // recipient MUST treat it as an unrecoverable error ... If it is a response message
        // received by a proxy, the proxy MUST close the connection to the server, discard the
        // received response, and send a 502 (Bad Gateway) response to the client." Two fields,
        // even equal ones, are refused too: we never guess which one the sender meant.
        1 => Some(
            parse_content_length(key.content_length).ok_or(Invalid("invalid Content-Length"))?,
        ),
        _ => return Err(Invalid("more than one Content-Length field")),
    };
    let te = key.transfer_codings(headers);
    if te.present {
        // RFC 9112 §6.3 rule 3 lets a recipient let Transfer-Encoding win over Content-Length,
        // "but ought to handle the message as an error": we do, and answer 502.
        if length.is_some() {
            return Err(Invalid("both Content-Length and Transfer-Encoding"));
        }
        // RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty".
        if version == Version::Http10 {
            return Err(Invalid("Transfer-Encoding in an HTTP/1.0 response"));
        }
        if te.malformed {
            return Err(Invalid("malformed Transfer-Encoding"));
        }
        if te.chunked_count > 1 {
            return Err(Invalid("chunked applied more than once"));
        }
    }
    // Rules 1 and 2: "Any response to a HEAD request and any response with a 1xx
    // (Informational), 204 (No Content), or 304 (Not Modified) status code is always terminated
    // by the first empty line after the header fields, regardless of the header fields present".
    Ok(
        if request_is_head || code < 200 || code == 204 || code == 304 {
            Framing::None
        } else if te.present {
            // Rule 4: "If a Transfer-Encoding header field is present in a response and the chunked
            // transfer coding is not the final encoding, the message body length is determined by
            // reading the connection until it is closed by the server."
            if te.final_chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            // Rule 8: "Otherwise, this is a response message without a declared message body
            // length, so the message body length is determined by the number of octets received
            // prior to the server closing the connection."
            Framing::UntilClose
        },
    )
}

/// The framing the proxy uses towards the client for a response the upstream framed as `upstream`.
/// An HTTP/1.0 client cannot read chunked: it gets the body de-chunked and ended by a close.
pub fn client_framing(upstream: Framing, client: Version) -> Framing {
    match (upstream, client) {
        (Framing::Chunked, Version::Http10) => Framing::UntilClose,
        (f, _) => f,
    }
}

/// Whether a `client` of this version can be sent `resp`'s body. Only an HTTP/1.0 client
/// ever cannot: RFC 9112 §6.1 says "A server MUST NOT send a response containing
/// Transfer-Encoding unless the corresponding request indicates HTTP/1.1 (or later minor
/// revisions)". The proxy removes a chunked coding itself, but a body under any other coding
/// (`gzip, chunked`, or close-delimited `gzip`) it cannot undo, and forwarded without the field
/// that names the coding, the client would take the coded bytes for the content. The caller
/// answers 502 instead (as nginx does for a transfer coding it does not know).
/// A response without a body (HEAD, 1xx, 204, 304) is always fine: its Transfer-Encoding only
/// describes, and the rewriter drops it for an HTTP/1.0 client.
pub fn client_can_decode(resp: &Response<'_, '_>, client: Version) -> bool {
    client == Version::Http11
        || !matches!(resp.framing, Framing::Chunked | Framing::UntilClose)
        || !TransferCodings::of(resp.headers).other
}

/// The idle timeout an upstream announces with `Keep-Alive: timeout=N` (seconds), if any.
/// The proxy keeps a pooled connection for less than this, so it never reuses one the upstream
/// is about to close.
pub fn keep_alive_timeout(headers: &[httparse::Header<'_>]) -> Option<u64> {
    super::field_elements(headers, "keep-alive")
        .filter_map(|param| {
            let (name, value) = param.split_at(param.iter().position(|&b| b == b'=')?);
            if !super::trim_ows(name).eq_ignore_ascii_case(b"timeout") {
                return None;
            }
            let digits = super::trim_ows(&value[1..]);
            if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            digits
                .iter()
                .try_fold(0u64, |n, &d| Some(n * 10 + u64::from(d - b'0')))
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResponseError::*;

    const L: Limits = Limits::DEFAULT;

    fn with<R>(buf: &[u8], head: bool, f: impl FnOnce(&Response<'_, '_>) -> R) -> R {
        let mut hs = [httparse::EMPTY_HEADER; 100];
        match parse(buf, head, &L, &mut hs) {
            Ok(Some(resp)) => f(&resp),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    fn result_with(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ResponseError> {
        let mut hs = [httparse::EMPTY_HEADER; 100];
        parse(buf, false, limits, &mut hs).map(|r| r.map(|r| r.head_len))
    }

    fn err(buf: &[u8]) -> ResponseError {
        match result_with(buf, &L) {
            Err(e) => e,
            ok => panic!("{:?} for {:?}", ok, String::from_utf8_lossy(buf)),
        }
    }

    /// What `parse` says of `buf`: the head length, or the error (`Ok(0)`: incomplete).
    fn outcome(r: Result<Option<Response<'_, '_>>, ResponseError>) -> Result<usize, ResponseError> {
        r.map(|r| r.map_or(0, |r| r.head_len))
    }

    #[test]
    fn a_head_parsed_as_it_grows_reads_as_parsed_at_once() {
        let mut many = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
        for i in 0..60 {
            many.push_str(&format!("X-F{i}: {}\r\n", "v".repeat(i)));
        }
        many.push_str("\r\n");
        let heads: Vec<Vec<u8>> = vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n".to_vec(),
            many.into_bytes(),
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\nX: a\r\n\r\n".to_vec(),
            b"HTTP/1.1 2000 OK\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 O\x01K\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
            format!("HTTP/1.1 200 {}\r\n\r\n", "r".repeat(9000)).into_bytes(),
            format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "b".repeat(40000)).into_bytes(),
        ];
        let small = Limits {
            max_fields: 20,
            max_head: 600,
            ..L
        };
        for head in &heads {
            for limits in [&L, &small] {
                for step in [1, 2, 3, 7, 64] {
                    let mut progress = HeadProgress::START;
                    let mut cut = 0;
                    loop {
                        cut = (cut + step).min(head.len());
                        let mut a = [httparse::EMPTY_HEADER; 100];
                        let mut b = [httparse::EMPTY_HEADER; 100];
                        let once = outcome(parse(&head[..cut], false, limits, &mut a));
                        let grown = outcome(parse_resuming(
                            &head[..cut],
                            false,
                            limits,
                            &mut b,
                            &mut progress,
                        ));
                        assert_eq!(
                            grown,
                            once,
                            "step {step}, {cut} bytes of {:?}",
                            String::from_utf8_lossy(&head[..cut.min(80)])
                        );
                        if once != Ok(0) || cut == head.len() {
                            break;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn head_progress_points_at_the_first_line_not_checked() {
        let head = b"HTTP/1.1 200 OK\r\nServer: a\r\nDate: b\r\nConte";
        let mut hs = [httparse::EMPTY_HEADER; 8];
        let mut progress = HeadProgress::START;
        let mut step = |len: usize, progress: &mut HeadProgress| {
            outcome(parse_resuming(&head[..len], false, &L, &mut hs, progress))
        };
        assert_eq!(step(10, &mut progress), Ok(0));
        assert_eq!(progress.line_seen(), 10);
        assert_eq!(step(head.len(), &mut progress), Ok(0));
        assert_eq!(
            progress.field_lines(),
            Some((head.len() - b"Conte".len(), 2))
        );
    }

    /// The framing of a response with this status line and these fields.
    fn framing(status: &str, fields: &str, head: bool) -> Result<Framing, ResponseError> {
        let buf = format!("HTTP/1.1 {status}\r\n{fields}\r\n");
        let mut hs = [httparse::EMPTY_HEADER; 16];
        parse(buf.as_bytes(), head, &L, &mut hs)
            .map(|r| r.map(|r| r.framing).unwrap_or(Framing::None))
    }

    fn closes(buf: &str) -> bool {
        with(buf.as_bytes(), false, |r| r.upstream_closes)
    }

    #[test]
    fn ok_response_is_parsed_exactly() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\nx-a: c\r\n\r\nhello";
        with(buf, false, |r| {
            assert_eq!(r.head_len, buf.len() - 5);
            assert_eq!(
                (r.version, r.code, r.reason),
                (Version::Http11, 200, &b"OK"[..])
            );
            assert_eq!(r.framing, Framing::Length(5));
            assert!(!r.upstream_closes);
            let fields: Vec<(&str, &[u8])> = r.headers.iter().map(|h| (h.name, h.value)).collect();
            assert_eq!(
                fields,
                vec![("Content-Length", &b"5"[..]), ("X-A", b"b"), ("x-a", b"c")]
            );
        });
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let buf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        for n in 0..buf.len() {
            assert_eq!(result_with(&buf[..n], &L), Ok(None), "prefix {n}");
        }
        assert_eq!(result_with(buf, &L), Ok(Some(buf.len())));
    }

    #[test]
    fn reason_phrase_forms() {
        with(b"HTTP/1.1 204 \r\n\r\n", false, |r| {
            assert_eq!((r.code, r.reason), (204, &b""[..]))
        });
        with(b"HTTP/1.1 204\r\n\r\n", false, |r| {
            assert_eq!((r.code, r.reason), (204, &b""[..]))
        });
        with(b"HTTP/1.0 404 Not  Found\there\r\n\r\n", false, |r| {
            assert_eq!(
                (r.version, r.reason),
                (Version::Http10, &b"Not  Found\there"[..])
            );
        });
        with("HTTP/1.1 200 Très bien\r\n\r\n".as_bytes(), false, |r| {
            assert_eq!(r.reason, "Très bien".as_bytes())
        });
        with(b"HTTP/1.1 200 \xff\r\n\r\n", false, |r| {
            assert_eq!(r.reason, b"")
        });
        assert_eq!(
            err(b"HTTP/1.1 200 O\x01K\r\n\r\n"),
            Invalid("control character in the reason phrase")
        );
        assert_eq!(
            err(b"HTTP/1.1 200 O\x7fK\r\n\r\n"),
            Invalid("control character in the reason phrase")
        );
    }

    #[test]
    fn status_line_versions_and_codes() {
        for bad in [
            "HTTP/1.2 200 OK",
            "HTTP/2.0 200 OK",
            "HTTP/0.9 200 OK",
            "http/1.1 200 OK",
            "HTTP/1.1  200 OK",
            "HTTP/1.1 20 OK",
            "HTTP/1.1 2000 OK",
            "HTTP/1.1 2x0 OK",
            "HTTP/1.1 099 Low",
            "HTTP/1.1 000",
            "HTTP/1.1",
            "ICY 200 OK",
        ] {
            let buf = format!("{bad}\r\n\r\n");
            assert!(matches!(err(buf.as_bytes()), Invalid(_)), "{bad:?}");
        }
        with(b"HTTP/1.1 100 Continue\r\n\r\n", false, |r| {
            assert_eq!(r.code, 100)
        });
        with(b"HTTP/1.1 999 Whatever\r\n\r\n", false, |r| {
            assert_eq!(r.code, 999)
        });
    }

    #[test]
    fn byte_level_rules_match_requests() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"HTTP/1.1 200 OK\nA: b\r\n\r\n",
                "bare LF ends the status line",
            ),
            (
                b"HTTP/1.1 200 OK\rA: b\r\n\r\n",
                "bare CR in the status line",
            ),
            (
                b"HTTP/1.1 200 OK\r\nA: b\n\r\n",
                "bare LF ends a field line",
            ),
            (
                b"HTTP/1.1 200 OK\r\nA: b\r\n\n",
                "bare LF in the field section",
            ),
            (
                b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
                "bare CR in a field value",
            ),
            (
                b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
                "obs-fold or whitespace before a field name",
            ),
            (
                b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
                "whitespace between field name and colon",
            ),
            (
                b"HTTP/1.1 200 OK\r\nA: b\x00\r\n\r\n",
                "control character in a field value",
            ),
            (
                b"HTTP/1.1 200 OK\r\nAb\r\n\r\n",
                "field line without a colon",
            ),
            (b"HTTP/1.1 200 OK\r\n: b\r\n\r\n", "empty field name"),
        ];
        for (buf, why) in cases {
            assert_eq!(err(buf), Invalid(why), "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn size_limits_are_too_large() {
        let buf = b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            result_with(
                buf,
                &Limits {
                    max_head: buf.len(),
                    ..L
                }
            ),
            Ok(Some(buf.len()))
        );
        assert_eq!(
            result_with(
                buf,
                &Limits {
                    max_head: buf.len() - 1,
                    ..L
                }
            ),
            Err(TooLarge)
        );
        assert_eq!(
            result_with(&buf[..10], &Limits { max_head: 10, ..L }),
            Err(TooLarge)
        );
        assert_eq!(
            result_with(&buf[..9], &Limits { max_head: 10, ..L }),
            Ok(None)
        );
        assert_eq!(
            result_with(buf, &Limits { max_fields: 2, ..L }),
            Ok(Some(buf.len()))
        );
        assert_eq!(
            result_with(buf, &Limits { max_fields: 1, ..L }),
            Err(TooLarge)
        );
    }

    #[test]
    fn bodiless_statuses_and_head_have_no_framing() {
        for status in [
            "100 Continue",
            "101 Switching Protocols",
            "103 Early Hints",
            "204 No Content",
            "304 Not Modified",
        ] {
            assert_eq!(
                framing(status, "Content-Length: 10\r\n", false),
                Ok(Framing::None),
                "{status}"
            );
            assert_eq!(
                framing(status, "Transfer-Encoding: chunked\r\n", false),
                Ok(Framing::None)
            );
        }
        assert_eq!(
            framing("200 OK", "Content-Length: 10\r\n", true),
            Ok(Framing::None)
        );
        assert_eq!(
            framing("200 OK", "Transfer-Encoding: chunked\r\n", true),
            Ok(Framing::None)
        );
        assert_eq!(framing("200 OK", "", true), Ok(Framing::None));
        // Still validated.
        assert_eq!(
            framing("204 No Content", "Content-Length: x\r\n", false),
            Err(Invalid("invalid Content-Length"))
        );
        assert_eq!(
            framing("200 OK", "Content-Length: 1, 1\r\n", true),
            Err(Invalid("invalid Content-Length"))
        );
    }

    #[test]
    fn length_and_chunked_framing() {
        assert_eq!(
            framing("200 OK", "Content-Length: 0\r\n", false),
            Ok(Framing::Length(0))
        );
        assert_eq!(
            framing("200 OK", "Content-Length: 123\r\n", false),
            Ok(Framing::Length(123))
        );
        assert_eq!(
            framing("404 Not Found", "Transfer-Encoding: chunked\r\n", false),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("200 OK", "Transfer-Encoding: gzip, Chunked\r\n", false),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("200 OK", "Transfer-Encoding: gzip\r\n", false),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            framing("200 OK", "Transfer-Encoding: chunked, gzip\r\n", false),
            Ok(Framing::UntilClose)
        );
        assert_eq!(framing("200 OK", "", false), Ok(Framing::UntilClose));
    }

    #[test]
    fn ambiguous_framing_is_invalid() {
        let cases: &[(&str, &str)] = &[
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                "both Content-Length and Transfer-Encoding",
            ),
            (
                "Content-Length: 5\r\nContent-Length: 5\r\n",
                "more than one Content-Length field",
            ),
            ("Content-Length: 5, 5\r\n", "invalid Content-Length"),
            ("Content-Length: +5\r\n", "invalid Content-Length"),
            ("Content-Length:\r\n", "invalid Content-Length"),
            (
                "Content-Length: 99999999999999999999\r\n",
                "invalid Content-Length",
            ),
            (
                "Transfer-Encoding: chunked, chunked\r\n",
                "chunked applied more than once",
            ),
            ("Transfer-Encoding:\r\n", "malformed Transfer-Encoding"),
            (
                "Transfer-Encoding: chunked;q=1\r\n",
                "malformed Transfer-Encoding",
            ),
        ];
        for (fields, why) in cases {
            assert_eq!(
                framing("200 OK", fields, false),
                Err(Invalid(why)),
                "{fields:?}"
            );
        }
        assert_eq!(
            err(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Invalid("Transfer-Encoding in an HTTP/1.0 response")
        );
    }

    #[test]
    fn upstream_closes() {
        assert!(!closes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(closes(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n"
        ));
        assert!(closes("HTTP/1.1 200 OK\r\n\r\n"));
        assert!(closes("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"));
        assert!(closes("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!closes(
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(closes(
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
        assert!(!closes("HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(!closes(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        ));
    }

    #[test]
    fn client_framing_dechunks_for_http10_only() {
        use Framing::*;
        assert_eq!(client_framing(Chunked, Version::Http10), UntilClose);
        assert_eq!(client_framing(Chunked, Version::Http11), Chunked);
        for f in [None, Length(0), Length(9), UntilClose] {
            assert_eq!(client_framing(f, Version::Http10), f);
            assert_eq!(client_framing(f, Version::Http11), f);
        }
    }

    #[test]
    fn http10_clients_get_no_body_under_a_coding_but_chunked() {
        let can = |head: &str, is_head: bool, client: Version| {
            with(head.as_bytes(), is_head, |r| client_can_decode(r, client))
        };
        let refused = [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, br\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: identity, chunked\r\n\r\n",
        ];
        for head in refused {
            assert!(!can(head, false, Version::Http10), "{head}");
            assert!(can(head, false, Version::Http11), "{head}");
            // No body to decode: only the field goes.
            assert!(can(head, true, Version::Http10), "{head}");
        }
        let fine = [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.0 200 OK\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nTransfer-Encoding: gzip\r\n\r\n",
        ];
        for head in fine {
            for client in [Version::Http10, Version::Http11] {
                assert!(can(head, false, client), "{head} {client:?}");
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let seed =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut buf = seed.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % buf.len();
                buf[i] =
                    [b'\r', b'\n', b' ', b':', b'0', b'1', next() as u8][(next() % 7) as usize];
            }
            let cut = (next() as usize) % (buf.len() + 1);
            let mut hs = [httparse::EMPTY_HEADER; 100];
            let limits = Limits {
                max_head: 40,
                max_fields: 1,
                ..L
            };
            for l in [&L, &limits] {
                if let Ok(Some(r)) = parse(&buf[..cut], next() % 2 == 0, l, &mut hs) {
                    assert!(r.head_len <= cut && (100..=999).contains(&r.code));
                }
            }
        }
    }

    #[test]
    fn keep_alive_timeout_is_read_from_the_parameters() {
        let h = |v: &'static str| {
            [httparse::Header {
                name: "Keep-Alive",
                value: v.as_bytes(),
            }]
        };
        assert_eq!(keep_alive_timeout(&h("timeout=5, max=100")), Some(5));
        assert_eq!(keep_alive_timeout(&h("max=100, Timeout = 3")), Some(3));
        assert_eq!(keep_alive_timeout(&h("timeout=x")), None);
        assert_eq!(keep_alive_timeout(&h("timeout=")), None);
        assert_eq!(keep_alive_timeout(&[]), None);
    }
}
