//! The request and response head targets: parse, rewrite, re-parse, compare.

use super::support::{fnv1a, show, Rng, SMALL_LIMITS};
use crate::http::request::{self, HeadProgress, Request, RequestError};
use crate::http::response::{self, Response, ResponseError};
use crate::http::rewrite::{self, ClientAddr, ForwardedFor, RequestContext, ResponseContext};
use crate::http::{Framing, Limits, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The client address written into X-Forwarded-For (TEST-NET-1, RFC 5737).
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// An IPv6 client address (documentation prefix, RFC 3849).
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

/// Room for the fields of a re-parsed rewritten head: the input's fields plus the ones the
/// rewriters add (Host, X-Forwarded-*, framing, Connection, Upgrade).
const REPARSE_FIELDS: usize = 128;

/// Fields a request never carries through the proxy (besides those its Connection names).
const REQUEST_DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Fields the request rewriter writes itself.
const REQUEST_WRITTEN: &[&str] = &[
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// Fields a response never carries through the proxy (besides those its Connection names).
const RESPONSE_DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Fields the response rewriter writes itself.
const RESPONSE_WRITTEN: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

// ---------------------------------------------------------------------------------------------
// request_head
// ---------------------------------------------------------------------------------------------

/// Fuzz the request head parser and the request rewriter with one input.
///
/// The last byte picks the options: bits 0-1 the client address (192.0.2.7, the same as an
/// IPv4-mapped IPv6 address, or 2001:db8::7), bit 2 `ForwardedFor::Replace`, bits 3-4 both set
/// `SMALL_LIMITS`, bit 5 `underscores_in_headers`, bit 6 a tight bound on the rewrite (see
/// `rewrite_bound`), bit 7 `expectation_met`.
///
/// Checks: parsing is consistent over prefixes (see `check_prefixes`) and as the head grows
/// with its progress kept (see `check_resumed`); an accepted head, rewritten, parses back completely to the same method, path, host and framing as HTTP/1.1,
/// with exactly the fields the rewriter documents and every end-to-end field in order (no
/// field with `_` in its name unless allowed, no Expect from an HTTP/1.0 client).
pub fn request_head(data: &[u8]) {
    let sel = data.last().copied().unwrap_or(0);
    let client_ip = match sel & 3 {
        1 => IpAddr::V6(CLIENT_V4.to_ipv6_mapped()),
        2 => IpAddr::V6(CLIENT_V6),
        _ => IpAddr::V4(CLIENT_V4),
    };
    let forwarded_for = if sel & 4 != 0 {
        ForwardedFor::Replace
    } else {
        ForwardedFor::Append
    };
    let limits = if sel & 0x18 == 0x18 {
        SMALL_LIMITS
    } else {
        Limits::DEFAULT
    };

    let outcome = request_outcome(data, &limits);
    check_prefixes(data, outcome, |p| request_outcome(p, &limits));
    check_resumed(
        data,
        |p| request_outcome(p, &limits),
        |p, progress| request_resumed(p, &limits, progress),
    );

    let mut hs = [httparse::EMPTY_HEADER; 100];
    let fields = limits.max_fields.min(hs.len());
    if let Ok(Some(req)) = request::parse(data, &limits, &mut hs[..fields]) {
        assert!(req.head_len <= data.len(), "head_len past the input");
        let ctx = RequestContext {
            client_ip: ClientAddr::new(client_ip),
            forwarded_for,
            underscores_in_headers: sel & 0x20 != 0,
            expectation_met: sel & 0x80 != 0,
            https: false,
        };
        let max = rewrite_bound(&limits, req.head_len, sel);
        let Some(out) =
            bounded_rewrite(max, |out, max| rewrite::request_head(&req, &ctx, out, max))
        else {
            return;
        };
        check_rewritten_request(&req, &ctx, client_ip, out);
    }
}

/// The buffer a rewritten head must fit in: the session's upstream (or client) buffer for
/// `limits`, or, with bit 6 of the selector byte, a tight bound just above the received head so
/// that the refusal path is exercised too.
fn rewrite_bound(limits: &Limits, head_len: usize, sel: u8) -> usize {
    if sel & 0x40 != 0 {
        head_len + usize::from(sel & 0x3f)
    } else {
        crate::buffer::size_for(limits.max_head)
    }
}

/// Run a bounded rewrite into a buffer that already holds bytes, and check the bound's
/// contract: the head is appended whole and at most `max` long, or nothing is appended and the
/// unbounded rewrite is indeed longer than `max`. Returns the head when it fitted.
fn bounded_rewrite(
    max: usize,
    rewrite: impl Fn(&mut Vec<u8>, usize) -> Result<usize, rewrite::HeadTooLarge>,
) -> Option<Vec<u8>> {
    const BEFORE: &[u8] = b"queued";
    let mut out = BEFORE.to_vec();
    let result = rewrite(&mut out, max);
    let mut unbounded = Vec::new();
    let full = match rewrite(&mut unbounded, usize::MAX) {
        Ok(len) => len,
        Err(e) => panic!("an unbounded rewrite was refused: {e:?}"),
    };
    assert_eq!(
        full,
        unbounded.len(),
        "the length returned is the length written"
    );
    match result {
        Ok(len) => {
            assert!(len <= max, "a {len}-byte head passed a bound of {max}");
            assert_eq!(len, full, "the bound changed the head");
            assert_eq!(&out[..BEFORE.len()], BEFORE, "queued bytes disturbed");
            assert_eq!(
                &out[BEFORE.len()..],
                &unbounded[..],
                "the bound changed the head"
            );
            Some(unbounded)
        }
        Err(e) => {
            assert_eq!(out, BEFORE, "a refused head left bytes behind");
            assert_eq!((e.len, e.max), (full, max), "{e:?}");
            assert!(
                full > max,
                "a {full}-byte head was refused under a bound of {max}"
            );
            None
        }
    }
}

/// The outcome of parsing `buf` as a request head, as [`check_prefixes`] compares it.
fn request_outcome(buf: &[u8], limits: &Limits) -> Outcome {
    request_resumed(buf, limits, &mut HeadProgress::default())
}

/// [`request_outcome`] through `request::parse_resuming`, as the session parses.
fn request_resumed(buf: &[u8], limits: &Limits, progress: &mut HeadProgress) -> Outcome {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let fields = limits.max_fields.min(hs.len());
    match request::parse_resuming(buf, limits, &mut hs[..fields], progress) {
        Ok(None) => Outcome::Incomplete,
        Ok(Some(req)) => Outcome::Complete(req.head_len),
        Err(e) => Outcome::Refused(RequestError::status(&e)),
    }
}

/// A head parsed as it grows, its progress carried from call to call as the session does
/// (`resumed`), reads at every step exactly as the same bytes parsed at once (`at_once`).
/// At most about 64 steps, of a size derived from the input.
fn check_resumed(
    data: &[u8],
    at_once: impl Fn(&[u8]) -> Outcome,
    resumed: impl Fn(&[u8], &mut HeadProgress) -> Outcome,
) {
    let step = (1 + (fnv1a(data) % 13) as usize).max(data.len() / 64);
    let mut progress = HeadProgress::START;
    let mut cut = 0;
    while cut < data.len() {
        cut = (cut + step).min(data.len());
        let once = at_once(&data[..cut]);
        let grown = resumed(&data[..cut], &mut progress);
        assert_eq!(
            grown,
            once,
            "{cut} bytes in steps of {step} read {grown:?}, at once {once:?}\n{}",
            show(data)
        );
        if once != Outcome::Incomplete {
            break;
        }
    }
}

fn check_rewritten_request(
    req: &Request<'_, '_>,
    ctx: &RequestContext,
    client_ip: IpAddr,
    out: Vec<u8>,
) {
    check_head_bytes(&out);

    let limits = reparse_limits(out.len());
    let mut hs = [httparse::EMPTY_HEADER; REPARSE_FIELDS];
    let again = match request::parse(&out, &limits, &mut hs) {
        Ok(Some(again)) => again,
        other => panic!(
            "rewritten request does not parse: {other:?}\n{}",
            show(&out)
        ),
    };
    let shown = || show(&out);
    assert_eq!(again.head_len, out.len(), "head ends early\n{}", shown());
    assert_eq!(again.method, req.method, "{}", shown());
    // An absolute-form target with an empty path and a query gets its `/` (RFC 9112 §3.2.1).
    let want_path = if req.path.starts_with('?') {
        format!("/{}", req.path)
    } else {
        req.path.to_string()
    };
    assert_eq!(again.target, want_path, "{}", shown());
    assert_eq!(again.path, want_path, "{}", shown());
    assert!(
        want_path.starts_with('/') || (want_path == "*" && req.method == "OPTIONS"),
        "not origin-form: {}",
        shown()
    );
    assert_eq!(again.host, req.host, "{}", shown());
    assert_eq!(again.framing, req.framing, "{}", shown());
    assert_eq!(again.version, Version::Http11, "{}", shown());
    assert_eq!(
        again.info.upgrade_websocket,
        req.info.upgrade_websocket,
        "{}",
        shown()
    );
    assert_eq!(again.info.is_head, req.info.is_head, "{}", shown());
    assert!(again.info.keep_alive, "{}", shown());
    if req.version == Version::Http11 && !ctx.expectation_met {
        assert_eq!(
            again.info.expect_continue,
            req.info.expect_continue,
            "{}",
            shown()
        );
    } else {
        // RFC 9110 §10.1.1: an HTTP/1.0 client's expectation is ignored, not passed on to an
        // upstream that reads HTTP/1.1; one the proxy met itself is not passed on either.
        assert!(
            values(again.headers, "expect").is_empty(),
            "Expect from HTTP/1.0, or met by the proxy\n{}",
            shown()
        );
    }
    if !ctx.underscores_in_headers {
        assert!(
            !again.headers.iter().any(|h| h.name.contains('_')),
            "a field name with `_`\n{}",
            shown()
        );
    }

    // The fields the rewriter writes, each exactly as often as documented.
    let ip_text = match client_ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let xff =
        match ctx.forwarded_for {
            ForwardedFor::Replace => ip_text.clone().into_bytes(),
            ForwardedFor::Append => {
                let mut list = Vec::new();
                for h in req.headers.iter().filter(|h| {
                    h.name.eq_ignore_ascii_case("x-forwarded-for") && !h.value.is_empty()
                }) {
                    list.extend_from_slice(h.value);
                    list.extend_from_slice(b", ");
                }
                list.extend_from_slice(ip_text.as_bytes());
                list
            }
        };
    let xff_values = values(again.headers, "x-forwarded-for");
    assert_eq!(xff_values, [&xff[..]], "X-Forwarded-For\n{}", shown());
    assert!(
        xff == ip_text.as_bytes() || xff.ends_with(format!(", {ip_text}").as_bytes()),
        "{}",
        shown()
    );
    assert_eq!(values(again.headers, "host"), [req.host], "{}", shown());
    assert_eq!(
        again.headers.first().map(|h| h.name),
        Some("Host"),
        "{}",
        shown()
    );
    assert_eq!(
        values(again.headers, "x-forwarded-proto"),
        [&b"http"[..]],
        "{}",
        shown()
    );
    let want_xfh: Vec<&[u8]> = if req.host.is_empty() {
        vec![]
    } else {
        vec![req.host]
    };
    assert_eq!(
        values(again.headers, "x-forwarded-host"),
        want_xfh,
        "{}",
        shown()
    );
    let length = match req.framing {
        Framing::Length(n) => vec![n.to_string().into_bytes()],
        _ => vec![],
    };
    assert_eq!(
        owned_values(again.headers, "content-length"),
        length,
        "{}",
        shown()
    );
    let te: Vec<&[u8]> = if req.framing == Framing::Chunked {
        vec![b"chunked"]
    } else {
        vec![]
    };
    assert_eq!(
        values(again.headers, "transfer-encoding"),
        te,
        "{}",
        shown()
    );
    let (connection, upgrade): (Vec<&[u8]>, Vec<&[u8]>) = if req.info.upgrade_websocket {
        (vec![b"upgrade"], vec![b"websocket"])
    } else {
        (vec![], vec![])
    };
    assert_eq!(
        values(again.headers, "connection"),
        connection,
        "{}",
        shown()
    );
    assert_eq!(values(again.headers, "upgrade"), upgrade, "{}", shown());

    // Every end-to-end field of the input, in order, and nothing else.
    let mut kept = end_to_end(req.headers, REQUEST_DROPPED);
    kept.retain(|(name, _)| {
        (ctx.underscores_in_headers || !name.contains('_'))
            && ((req.version == Version::Http11 && !ctx.expectation_met)
                || !name.eq_ignore_ascii_case("expect"))
    });
    let copied = without(again.headers, REQUEST_WRITTEN);
    assert_eq!(copied, kept, "end-to-end fields\n{}", shown());
}

// ---------------------------------------------------------------------------------------------
// response_head
// ---------------------------------------------------------------------------------------------

/// Fuzz the response head parser and the response rewriter with one input.
///
/// The last byte picks the options: bit 0 says the request was HEAD, bits 3-4 both set
/// `SMALL_LIMITS`, bit 6 a tight bound on the rewrite (see `rewrite_bound`).
///
/// Checks: parsing is consistent over prefixes (see `check_prefixes`) and as the head grows
/// with its progress kept (see `check_resumed`); an accepted head is
/// rewritten for HTTP/1.1 and HTTP/1.0 clients, closing or not (and as a WebSocket switch for a
/// 101), and each result parses back completely to the same status with exactly the framing
/// the context asked for, the documented framing and connection fields (never a
/// Transfer-Encoding for an HTTP/1.0 client), and every end-to-end field in order. Whether an
/// HTTP/1.0 client is refused the body ([`response::client_can_decode`]) matches the codings.
pub fn response_head(data: &[u8]) {
    let sel = data.last().copied().unwrap_or(0);
    let request_is_head = sel & 1 != 0;
    let limits = if sel & 0x18 == 0x18 {
        SMALL_LIMITS
    } else {
        Limits::DEFAULT
    };

    let outcome = response_outcome(data, request_is_head, &limits);
    check_prefixes(data, outcome, |p| {
        response_outcome(p, request_is_head, &limits)
    });
    check_resumed(
        data,
        |p| response_outcome(p, request_is_head, &limits),
        |p, progress| response_resumed(p, request_is_head, &limits, progress),
    );

    let mut hs = [httparse::EMPTY_HEADER; 100];
    let fields = limits.max_fields.min(hs.len());
    let Ok(Some(resp)) = response::parse(data, request_is_head, &limits, &mut hs[..fields]) else {
        return;
    };
    assert!(resp.head_len <= data.len(), "head_len past the input");
    assert!((100..=999).contains(&resp.code), "status {}", resp.code);
    let bodiless = request_is_head || resp.code < 200 || resp.code == 204 || resp.code == 304;
    assert_eq!(bodiless, resp.framing == Framing::None, "{:?}", resp);

    // An HTTP/1.0 client cannot be sent a body under a coding the proxy does not remove.
    let coded_body = matches!(resp.framing, Framing::Chunked | Framing::UntilClose)
        && list(resp.headers, "transfer-encoding")
            .iter()
            .any(|c| !c.eq_ignore_ascii_case(b"chunked"));
    assert!(response::client_can_decode(&resp, Version::Http11));
    assert_eq!(
        response::client_can_decode(&resp, Version::Http10),
        !coded_body,
        "{:?}",
        resp
    );

    let mut contexts = Vec::with_capacity(5);
    for client in [Version::Http11, Version::Http10] {
        for close in [false, true] {
            contexts.push(ResponseContext {
                framing: response::client_framing(resp.framing, client),
                close,
                keep_alive_http10: client == Version::Http10 && !close,
                upgrade: false,
                client_version: client,
            });
        }
    }
    if resp.code == 101 {
        contexts.push(ResponseContext {
            framing: Framing::None,
            close: false,
            keep_alive_http10: false,
            upgrade: true,
            client_version: Version::Http11,
        });
    }
    let max = rewrite_bound(&limits, resp.head_len, sel);
    for ctx in &contexts {
        check_rewritten_response(&resp, request_is_head, ctx, max);
    }
}

/// The outcome of parsing `buf` as a response head, as [`check_prefixes`] compares it.
fn response_outcome(buf: &[u8], request_is_head: bool, limits: &Limits) -> Outcome {
    response_resumed(buf, request_is_head, limits, &mut HeadProgress::default())
}

/// [`response_outcome`] through `response::parse_resuming`, as the session parses.
fn response_resumed(
    buf: &[u8],
    request_is_head: bool,
    limits: &Limits,
    progress: &mut HeadProgress,
) -> Outcome {
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let fields = limits.max_fields.min(hs.len());
    match response::parse_resuming(buf, request_is_head, limits, &mut hs[..fields], progress) {
        Ok(None) => Outcome::Incomplete,
        Ok(Some(resp)) => Outcome::Complete(resp.head_len),
        // Every refusal is a 502; the variant is the closest thing to a class.
        Err(ResponseError::Invalid(_)) => Outcome::Refused(0),
        Err(ResponseError::TooLarge) => Outcome::Refused(1),
        Err(ResponseError::Slots(n)) => panic!("{n} slots asked for, {fields} given"),
    }
}

fn check_rewritten_response(
    resp: &Response<'_, '_>,
    request_is_head: bool,
    ctx: &ResponseContext,
    max: usize,
) {
    let Some(out) = bounded_rewrite(max, |out, max| rewrite::response_head(resp, ctx, out, max))
    else {
        return;
    };
    check_head_bytes(&out);

    let limits = reparse_limits(out.len());
    let mut hs = [httparse::EMPTY_HEADER; REPARSE_FIELDS];
    let again = match response::parse(&out, request_is_head, &limits, &mut hs) {
        Ok(Some(again)) => again,
        other => panic!(
            "rewritten response does not parse: {other:?}\n{ctx:?}\n{}",
            show(&out)
        ),
    };
    let shown = || format!("{ctx:?}\n{}", show(&out));
    assert_eq!(again.head_len, out.len(), "head ends early\n{}", shown());
    assert_eq!(again.version, Version::Http11, "{}", shown());
    assert_eq!(again.code, resp.code, "{}", shown());
    assert_eq!(again.reason, resp.reason, "{}", shown());
    assert_eq!(again.framing, ctx.framing, "framing\n{}", shown());
    assert_eq!(
        again.upstream_closes,
        (ctx.close && !ctx.upgrade) || again.framing == Framing::UntilClose,
        "{}",
        shown()
    );

    // Content-Length: ours for a length, the upstream's for a HEAD or 304 (it describes the
    // body a GET would have had), none otherwise.
    let bodiless_code = resp.code < 200 || resp.code == 204;
    let length: Vec<Vec<u8>> = match ctx.framing {
        Framing::Length(n) => vec![n.to_string().into_bytes()],
        Framing::None if !bodiless_code => owned_values(resp.headers, "content-length"),
        _ => vec![],
    };
    assert_eq!(
        owned_values(again.headers, "content-length"),
        length,
        "Content-Length\n{}",
        shown()
    );

    // Transfer-Encoding: at most one field, listing what the context calls for; none at all
    // for an HTTP/1.0 client (RFC 9112 §6.1).
    let codings = list(resp.headers, "transfer-encoding");
    let under_chunked: Vec<&[u8]> = codings
        .iter()
        .copied()
        .filter(|c| !c.eq_ignore_ascii_case(b"chunked"))
        .collect();
    let want_te: Vec<&[u8]> = match ctx.framing {
        _ if ctx.client_version == Version::Http10 => vec![],
        Framing::Length(_) => vec![],
        Framing::Chunked => {
            let mut v = under_chunked;
            v.push(b"chunked");
            v
        }
        // De-chunked for the client: the chunked layer is gone, the codings under it are not.
        Framing::UntilClose if resp.framing == Framing::Chunked => under_chunked,
        Framing::UntilClose => codings.clone(),
        Framing::None if bodiless_code || resp.code == 304 => vec![],
        Framing::None => codings.clone(),
    };
    assert!(
        values(again.headers, "transfer-encoding").len() <= 1,
        "more than one Transfer-Encoding\n{}",
        shown()
    );
    assert!(
        ctx.client_version == Version::Http11
            || values(again.headers, "transfer-encoding").is_empty(),
        "Transfer-Encoding for an HTTP/1.0 client\n{}",
        shown()
    );
    assert_eq!(
        list(again.headers, "transfer-encoding"),
        want_te,
        "Transfer-Encoding\n{}",
        shown()
    );

    let (connection, upgrade): (Vec<&[u8]>, Vec<&[u8]>) = if ctx.upgrade {
        (vec![b"upgrade"], vec![b"websocket"])
    } else if ctx.close {
        (vec![b"close"], vec![])
    } else if ctx.keep_alive_http10 {
        (vec![b"keep-alive"], vec![])
    } else {
        (vec![], vec![])
    };
    assert_eq!(
        values(again.headers, "connection"),
        connection,
        "{}",
        shown()
    );
    assert_eq!(values(again.headers, "upgrade"), upgrade, "{}", shown());

    let kept = end_to_end(resp.headers, RESPONSE_DROPPED);
    let copied = without(again.headers, RESPONSE_WRITTEN);
    assert_eq!(copied, kept, "end-to-end fields\n{}", shown());
}

// ---------------------------------------------------------------------------------------------
// Shared head checks
// ---------------------------------------------------------------------------------------------

/// What a head parser made of some bytes, reduced to what must agree across prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `Ok(None)`.
    Incomplete,
    /// `Ok(Some(head))` with this `head_len`.
    Complete(usize),
    /// An error of this class (the status code for requests).
    Refused(u16),
}

/// A parser reads a head from its start and needs nothing past its end, so for any prefix of
/// the input it must say "incomplete" or exactly what it says for the whole input: never a
/// different head, never a different error. Checked at a few prefix lengths around the
/// interesting places (the start, the middle, just before the end of an accepted head) and a
/// few derived from the input.
fn check_prefixes(data: &[u8], whole: Outcome, outcome: impl Fn(&[u8]) -> Outcome) {
    let len = data.len();
    let mut cuts = vec![0, 1, 2, len / 2, len.saturating_sub(1)];
    if let Outcome::Complete(head_len) = whole {
        cuts.extend([
            head_len,
            head_len.saturating_sub(1),
            head_len.saturating_sub(2),
            head_len.saturating_sub(3),
            head_len / 2,
        ]);
    }
    let mut rng = Rng::new(fnv1a(data));
    for _ in 0..4 {
        cuts.push(rng.below(len + 1));
    }
    for cut in cuts.into_iter().filter(|&c| c < len) {
        let part = outcome(&data[..cut]);
        let consistent = match (whole, part) {
            (_, Outcome::Incomplete) => true,
            (Outcome::Complete(h), Outcome::Complete(p)) => h == p && cut >= h,
            (Outcome::Refused(a), Outcome::Refused(b)) => a == b,
            _ => false,
        };
        let incomplete_before_end = match (whole, part) {
            (Outcome::Complete(h), part) if cut < h => part == Outcome::Incomplete,
            _ => true,
        };
        assert!(
            consistent && incomplete_before_end,
            "prefix of {cut} bytes reads {part:?}, the whole {len} bytes {whole:?}\n{}",
            show(data)
        );
    }
}

/// Every line of a written head ends in CRLF, there is no other CR or LF and no NUL, and the
/// only empty line is the last one.
fn check_head_bytes(out: &[u8]) {
    assert!(
        out.ends_with(b"\r\n\r\n"),
        "head without its end\n{}",
        show(out)
    );
    assert!(!out.contains(&0), "NUL in a written head\n{}", show(out));
    let lines = &out[..out.len() - 2];
    for line in lines.split_inclusive(|&b| b == b'\n') {
        assert!(
            line.len() > 2 && line.ends_with(b"\r\n") && !line[..line.len() - 2].contains(&b'\r'),
            "bad line {} in a written head\n{}",
            show(line),
            show(out)
        );
    }
}

/// Limits that let a rewritten head of `len` bytes through whatever its shape.
fn reparse_limits(len: usize) -> Limits {
    Limits {
        max_request_line: len + 1,
        max_head: len + 1,
        max_fields: REPARSE_FIELDS,
        ..Limits::DEFAULT
    }
}

/// The values of the fields named `name` (case-insensitive), in order.
fn values<'b>(headers: &[httparse::Header<'b>], name: &str) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// [`values`], owned.
fn owned_values(headers: &[httparse::Header<'_>], name: &str) -> Vec<Vec<u8>> {
    values(headers, name)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// The non-empty comma-separated elements of the fields named `name`, trimmed of SP and HTAB.
fn list<'b>(headers: &[httparse::Header<'b>], name: &str) -> Vec<&'b [u8]> {
    values(headers, name)
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| {
            let start = e.iter().position(|&b| b != b' ' && b != b'\t');
            let end = e.iter().rposition(|&b| b != b' ' && b != b'\t');
            match (start, end) {
                (Some(s), Some(e_)) => &e[s..=e_],
                _ => &e[..0],
            }
        })
        .filter(|e| !e.is_empty())
        .collect()
}

/// The fields a proxy forwards: all but `dropped` and those the Connection field names
/// (RFC 9110 §7.6.1: "for each connection-option in this field, remove any header or trailer
/// field(s) from the message with the same name as the connection-option").
fn end_to_end<'b>(headers: &[httparse::Header<'b>], dropped: &[&str]) -> Vec<(String, &'b [u8])> {
    let options = list(headers, "connection");
    headers
        .iter()
        .filter(|h| !dropped.iter().any(|d| h.name.eq_ignore_ascii_case(d)))
        .filter(|h| {
            !options
                .iter()
                .any(|o| o.eq_ignore_ascii_case(h.name.as_bytes()))
        })
        .map(|h| (h.name.to_string(), h.value))
        .collect()
}

/// The fields of `headers` not named in `written`.
fn without<'b>(headers: &[httparse::Header<'b>], written: &[&str]) -> Vec<(String, &'b [u8])> {
    headers
        .iter()
        .filter(|h| !written.iter().any(|w| h.name.eq_ignore_ascii_case(w)))
        .map(|h| (h.name.to_string(), h.value))
        .collect()
}
