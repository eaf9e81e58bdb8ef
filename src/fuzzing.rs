//! The bodies of the fuzz targets, as plain functions over bytes.
//!
//! Each of [`request_head`], [`response_head`] and [`chunked`] runs one input through a parser
//! and checks properties that must hold for *every* input, panicking (`assert!`) when one
//! breaks. "No panic" alone would miss the bugs a proxy cares about: a head that we accept but
//! rewrite into something that reads differently, a line injected into a rewritten head, a
//! chunked body decoded differently depending on how it arrived.
//!
//! The cargo-fuzz targets in `fuzz/` are one call each, and `tests/fuzz_corpus.rs` replays the
//! committed corpora and regressions through the same functions, so what a fuzzer once found
//! stays a test. The module is always compiled (no feature flag) and uses no test-only crate.
//!
//! Options that the targets vary (client address, X-Forwarded-For policy, small or default
//! limits, HEAD or not) come from the input's last byte for heads, so a seed picks them by what
//! follows its head; the chunked target derives its split points and output room from a hash of
//! the whole input. Either way one input always runs the same way.

use crate::http::chunked::{Decoder, Output, MAX_SIZE_DIGITS, MIN_OUT_ROOM};
use crate::http::request::{self, Request, RequestError};
use crate::http::response::{self, Response, ResponseError};
use crate::http::rewrite::{self, ClientAddr, ForwardedFor, RequestContext, ResponseContext};
use crate::http::{Framing, Limits, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The client address written into X-Forwarded-For (TEST-NET-1, RFC 5737).
const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// An IPv6 client address (documentation prefix, RFC 3849).
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

/// Limits small enough that short fuzz inputs reach every limit check.
/// `max_request_line` stays below `max_head`, as it does in any sane configuration.
pub const SMALL_LIMITS: Limits = Limits {
    max_request_line: 64,
    max_head: 256,
    max_fields: 8,
    max_chunk_ext: 16,
    max_trailers: 32,
};

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
/// [`SMALL_LIMITS`], bit 5 `underscores_in_headers`, bit 6 a tight bound on the rewrite (see
/// [`rewrite_bound`]), bit 7 `expectation_met`.
///
/// Checks: parsing is consistent over prefixes (see [`check_prefixes`]); an accepted head,
/// rewritten, parses back completely to the same method, path, host and framing as HTTP/1.1,
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

    let mut hs = [httparse::EMPTY_HEADER; 100];
    let fields = limits.max_fields.min(hs.len());
    if let Ok(Some(req)) = request::parse(data, &limits, &mut hs[..fields]) {
        assert!(req.head_len <= data.len(), "head_len past the input");
        let ctx = RequestContext {
            client_ip: ClientAddr::new(client_ip),
            forwarded_for,
            underscores_in_headers: sel & 0x20 != 0,
            expectation_met: sel & 0x80 != 0,
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
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let fields = limits.max_fields.min(hs.len());
    match request::parse(buf, limits, &mut hs[..fields]) {
        Ok(None) => Outcome::Incomplete,
        Ok(Some(req)) => Outcome::Complete(req.head_len),
        Err(e) => Outcome::Refused(RequestError::status(&e)),
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
/// [`SMALL_LIMITS`], bit 6 a tight bound on the rewrite (see [`rewrite_bound`]).
///
/// Checks: parsing is consistent over prefixes (see [`check_prefixes`]); an accepted head is
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
    let mut hs = [httparse::EMPTY_HEADER; 100];
    let fields = limits.max_fields.min(hs.len());
    match response::parse(buf, request_is_head, limits, &mut hs[..fields]) {
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

/// Bytes as an escaped string, for assertion messages.
fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------------------------
// chunked
// ---------------------------------------------------------------------------------------------

/// Fuzz the incremental chunked decoder with one input, read as a chunked body.
///
/// The decoder runs in both output modes, once on the whole input with unlimited room, and once
/// fed in pieces with a small, varying output room (both derived from a hash of the input), the
/// way a session feeds it from a socket. Every run must agree with [`reference_dechunk`]: the
/// same decision (complete, incomplete, invalid), the same bytes consumed, and exactly its
/// output. Whatever `Output::Rechunk` writes must itself decode, with the reference, to the
/// same body. The output room is never overrun, and a call that stops before its input ends
/// only does so without [`MIN_OUT_ROOM`] left.
pub fn chunked(data: &[u8]) {
    let seed = fnv1a(data);
    let limits = if seed & 0x300 == 0x300 {
        SMALL_LIMITS
    } else {
        Limits::DEFAULT
    };
    let reference = reference_dechunk(data, &limits);
    for mode in [Output::Dechunk, Output::Rechunk] {
        let mut out = Vec::new();
        let mut dec = Decoder::new(&limits);
        let whole = match dec.transcode(data, &mut out, usize::MAX, mode) {
            Ok(consumed) => Run::Decoded {
                out,
                consumed,
                done: dec.is_done(),
            },
            Err(_) => Run::Failed,
        };
        check_run(data, &reference, mode, &whole, "in one call");
        let pieces = decode_in_pieces(data, &limits, mode, seed);
        check_run(data, &reference, mode, &pieces, "in pieces");
    }

    // The re-chunked body is clean chunked framing for the same data.
    let (body, rechunked, complete) = match reference {
        Dechunked::Invalid => return,
        Dechunked::Complete {
            body, rechunked, ..
        } => (body, rechunked, true),
        Dechunked::Incomplete { body, rechunked } => (body, rechunked, false),
    };
    let again = reference_dechunk(&rechunked, &Limits::DEFAULT);
    let want = if complete {
        Dechunked::Complete {
            body,
            len: rechunked.len(),
            rechunked: rechunked.clone(),
        }
    } else {
        Dechunked::Incomplete {
            body,
            rechunked: rechunked.clone(),
        }
    };
    assert_eq!(
        again,
        want,
        "re-chunked {} of {}",
        show(&rechunked),
        show(data)
    );
}

/// What one decoder run made of the input.
#[derive(Debug)]
enum Run {
    /// No error: this output, this many bytes consumed, the body complete or not.
    Decoded {
        out: Vec<u8>,
        consumed: usize,
        done: bool,
    },
    /// The decoder refused the body.
    Failed,
}

fn check_run(data: &[u8], reference: &Dechunked, mode: Output, run: &Run, how: &str) {
    let pick = |body: &[u8], rechunked: &[u8]| -> Vec<u8> {
        match mode {
            Output::Dechunk => body.to_vec(),
            Output::Rechunk => rechunked.to_vec(),
        }
    };
    let agrees = match (reference, run) {
        (Dechunked::Invalid, Run::Failed) => true,
        (
            Dechunked::Complete {
                body,
                rechunked,
                len,
            },
            Run::Decoded {
                out,
                consumed,
                done,
            },
        ) => *done && consumed == len && *out == pick(body, rechunked),
        (
            Dechunked::Incomplete { body, rechunked },
            Run::Decoded {
                out,
                consumed,
                done,
            },
        ) => !*done && *consumed == data.len() && *out == pick(body, rechunked),
        _ => false,
    };
    assert!(
        agrees,
        "{mode:?} {how}: decoder {run:?}, reference {reference:?}\ninput {}",
        show(data)
    );
}

/// Feed `data` to a decoder the way a session does: bytes arrive in pieces, each call gets all
/// that arrived and is not consumed yet, and a fresh output buffer with a varying room.
fn decode_in_pieces(data: &[u8], limits: &Limits, mode: Output, seed: u64) -> Run {
    let mut rng = Rng::new(seed ^ mode as u64);
    // Piece sizes from 1 byte up to a cap that varies with the input.
    let max_piece = [1, 2, 7, 64, 4096][rng.below(5)];
    let mut dec = Decoder::new(limits);
    let mut all = Vec::new();
    let mut out = Vec::new();
    let (mut arrived, mut consumed) = (0, 0);
    let mut stalled = false;
    loop {
        if arrived < data.len() {
            arrived = (arrived + 1 + rng.below(max_piece)).min(data.len());
        }
        // Mostly enough room to progress; sometimes less, which must never be overrun. After a
        // call that could not move, enough room, so the loop always ends.
        let room = if !stalled && rng.below(4) == 0 {
            rng.below(MIN_OUT_ROOM)
        } else {
            MIN_OUT_ROOM + rng.below(48)
        };
        out.clear();
        let offered = &data[consumed..arrived];
        let n = match dec.transcode(offered, &mut out, room, mode) {
            Ok(n) => n,
            Err(_) => {
                let again = dec.transcode(b"0\r\n\r\n", &mut out, usize::MAX, mode);
                assert!(again.is_err(), "decoder goes on after an error");
                return Run::Failed;
            }
        };
        assert!(
            out.len() <= room,
            "output room {room} overrun by {}",
            out.len()
        );
        assert!(n <= offered.len(), "consumed more than offered");
        consumed += n;
        all.extend_from_slice(&out);
        stalled = n == 0;
        if dec.is_done() {
            let mut more = Vec::new();
            let after = dec.transcode(&data[consumed..], &mut more, usize::MAX, mode);
            assert!(
                after == Ok(0) && more.is_empty(),
                "decoder reads past the end of the body"
            );
            break;
        }
        if n < offered.len() {
            assert!(
                room - out.len() < MIN_OUT_ROOM,
                "{mode:?}: stopped at {consumed} with {} bytes of room\n{}",
                room - out.len(),
                show(data)
            );
        } else if arrived == data.len() {
            break;
        }
    }
    Run::Decoded {
        out: all,
        consumed,
        done: dec.is_done(),
    }
}

/// What [`reference_dechunk`] makes of an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dechunked {
    /// A complete chunked body of `len` bytes; what follows belongs to the next message.
    Complete {
        /// The data of all chunks.
        body: Vec<u8>,
        /// The body as `Output::Rechunk` writes it: one `{size:x}` line per chunk, `0\r\n\r\n`.
        rechunked: Vec<u8>,
        /// How many input bytes the chunked body takes.
        len: usize,
    },
    /// The input is a valid beginning of a chunked body and ends before the body does.
    Incomplete {
        /// The data received so far.
        body: Vec<u8>,
        /// What `Output::Rechunk` has written so far: a size line once its LF is in, data as it
        /// comes, the CRLF after data once its LF is in, `0\r\n\r\n` only at the very end.
        rechunked: Vec<u8>,
    },
    /// Not a chunked body, or over a limit.
    Invalid,
}

/// The chunked body at the start of `input`, decoded in one go: the obviously-correct model the
/// incremental [`Decoder`] is held to. It follows RFC 9112 §7.1 with the decoder's documented
/// policy: at most [`MAX_SIZE_DIGITS`] hex digits fitting in a u64; after them extensions that
/// follow RFC 9112 §7.1.1's grammar (whitespace allowed before the CR), at most `max_chunk_ext`
/// bytes;
/// trailer lines `token ":" field-bytes`, at most `max_trailers` bytes of them, CRLFs
/// included; CRLF and nothing else as a line end.
pub fn reference_dechunk(input: &[u8], limits: &Limits) -> Dechunked {
    let mut body = Vec::new();
    let mut rechunked = Vec::new();
    let mut pos = 0;
    // The chunks.
    loop {
        let (line, next) = match line_at(input, pos) {
            Line::Complete(line, next) => (line, next),
            Line::Partial { line, cr } => {
                return if size_line(line, cr, limits.max_chunk_ext).is_some() {
                    Dechunked::Incomplete { body, rechunked }
                } else {
                    Dechunked::Invalid
                }
            }
            Line::Broken => return Dechunked::Invalid,
        };
        let Some(size) = size_line(line, true, limits.max_chunk_ext) else {
            return Dechunked::Invalid;
        };
        pos = next;
        if size == 0 {
            break;
        }
        rechunked.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        let left = input.len() - pos;
        let take = usize::try_from(size).map_or(left, |s| s.min(left));
        body.extend_from_slice(&input[pos..pos + take]);
        rechunked.extend_from_slice(&input[pos..pos + take]);
        pos += take;
        if (take as u64) < size {
            return Dechunked::Incomplete { body, rechunked };
        }
        match &input[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [] | [b'\r'] => return Dechunked::Incomplete { body, rechunked },
            _ => return Dechunked::Invalid,
        }
        rechunked.extend_from_slice(b"\r\n");
    }
    // The trailer section, up to the empty line.
    let mut trailer_bytes = 0;
    loop {
        match line_at(input, pos) {
            Line::Complete([], next) => {
                rechunked.extend_from_slice(b"0\r\n\r\n");
                return Dechunked::Complete {
                    body,
                    rechunked,
                    len: next,
                };
            }
            Line::Complete(line, next) => {
                trailer_bytes += line.len() + 2;
                if trailer_bytes > limits.max_trailers || !trailer_line(line, true) {
                    return Dechunked::Invalid;
                }
                pos = next;
            }
            Line::Partial { line: [], .. } => return Dechunked::Incomplete { body, rechunked },
            Line::Partial { line, cr } => {
                trailer_bytes += line.len() + usize::from(cr);
                return if trailer_bytes <= limits.max_trailers && trailer_line(line, cr) {
                    Dechunked::Incomplete { body, rechunked }
                } else {
                    Dechunked::Invalid
                };
            }
            Line::Broken => return Dechunked::Invalid,
        }
    }
}

/// A line of the input starting at some position.
enum Line<'a> {
    /// The line's content and where the next line starts (after its CRLF).
    Complete(&'a [u8], usize),
    /// The input ends first; `cr`: the content is all there and a CR ends it, the LF is missing.
    Partial { line: &'a [u8], cr: bool },
    /// A bare CR or a bare LF.
    Broken,
}

fn line_at(input: &[u8], pos: usize) -> Line<'_> {
    let rest = &input[pos..];
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        None => Line::Partial {
            line: rest,
            cr: false,
        },
        Some(i) => match (rest[i], rest.get(i + 1)) {
            (b'\r', Some(b'\n')) => Line::Complete(&rest[..i], pos + i + 2),
            (b'\r', None) => Line::Partial {
                line: &rest[..i],
                cr: true,
            },
            _ => Line::Broken,
        },
    }
}

/// The chunk size of a size line, or `None` if it is not one. When `whole` is false the line
/// may still go on: then `None` means it can no longer become one.
fn size_line(line: &[u8], whole: bool, max_extension: usize) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits > MAX_SIZE_DIGITS || (digits == 0 && (whole || !line.is_empty())) {
        return None;
    }
    let size = match digits {
        0 => 0,
        _ => u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()?,
    };
    let rest = &line[digits..];
    if rest.len() > max_extension {
        return None;
    }
    extensions(rest, whole).then_some(size)
}

/// RFC 9112 §7.1.1's `chunk-ext` (`*( BWS ";" BWS token [ BWS "=" BWS ( token /
/// quoted-string ) ] )`), read by plain recursive descent; when `whole` is false, a beginning of
/// one is enough.
fn extensions(ext: &[u8], whole: bool) -> bool {
    let n = ext.len();
    let ws = |i: &mut usize| {
        while *i < n && (ext[*i] == b' ' || ext[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < n && is_token_byte(ext[*i]) {
            *i += 1;
        }
        *i > start
    };
    let mut i = 0;
    loop {
        ws(&mut i);
        if i == n {
            return true;
        }
        if ext[i] != b';' {
            return false;
        }
        i += 1;
        ws(&mut i);
        if i == n {
            return !whole;
        }
        if !token(&mut i) {
            return false;
        }
        ws(&mut i);
        if i == n || ext[i] != b'=' {
            continue;
        }
        i += 1;
        ws(&mut i);
        if i == n {
            return !whole;
        }
        if ext[i] != b'"' {
            if !token(&mut i) {
                return false;
            }
            continue;
        }
        i += 1;
        loop {
            match ext.get(i) {
                None => return !whole,
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') => match ext.get(i + 1) {
                    None => return !whole,
                    Some(&b) if is_field_byte(b) => i += 2,
                    Some(_) => return false,
                },
                Some(&b) if is_field_byte(b) => i += 1,
                Some(_) => return false,
            }
        }
    }
}

/// A trailer line `token ":" *field-byte`; when `whole` is false, a beginning of one.
fn trailer_line(line: &[u8], whole: bool) -> bool {
    let name = line.iter().take_while(|&&b| is_token_byte(b)).count();
    match &line[name..] {
        [] => !whole && name > 0,
        [b':', value @ ..] => name > 0 && value.iter().all(|&b| is_field_byte(b)),
        _ => false,
    }
}

/// HTAB, SP, VCHAR and obs-text.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

// ---------------------------------------------------------------------------------------------
// Determinism helpers
// ---------------------------------------------------------------------------------------------

/// FNV-1a over the input: a seed that changes with any byte of it.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// xorshift64*: a small deterministic generator, so an input always runs the same way.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`0` for `n == 0`).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(body: &[u8], rechunked: &[u8], len: usize) -> Dechunked {
        Dechunked::Complete {
            body: body.to_vec(),
            rechunked: rechunked.to_vec(),
            len,
        }
    }

    fn incomplete(body: &[u8], rechunked: &[u8]) -> Dechunked {
        Dechunked::Incomplete {
            body: body.to_vec(),
            rechunked: rechunked.to_vec(),
        }
    }

    #[test]
    fn reference_decodes_complete_bodies() {
        let l = Limits::DEFAULT;
        assert_eq!(
            reference_dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT", &l),
            complete(
                b"hello world",
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                26
            )
        );
        assert_eq!(
            reference_dechunk(
                b"00A;x=\"y\"\r\n0123456789\r\n0 ; z\r\nA: b\r\nC:\r\n\r\n",
                &l
            ),
            complete(b"0123456789", b"a\r\n0123456789\r\n0\r\n\r\n", 42)
        );
        assert_eq!(
            reference_dechunk(b"0\r\n\r\n", &l),
            complete(b"", b"0\r\n\r\n", 5)
        );
    }

    #[test]
    fn reference_tells_incomplete_from_invalid() {
        let l = Limits::DEFAULT;
        assert_eq!(reference_dechunk(b"", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"5", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"5;a", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"5\r", &l), incomplete(b"", b""));
        assert_eq!(
            reference_dechunk(b"5\r\nhel", &l),
            incomplete(b"hel", b"5\r\nhel")
        );
        assert_eq!(
            reference_dechunk(b"5\r\nhello\r", &l),
            incomplete(b"hello", b"5\r\nhello")
        );
        assert_eq!(reference_dechunk(b"0\r\nX", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"0\r\nX: y\r", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"0\r\n\r", &l), incomplete(b"", b""));
        for bad in [
            &b"x"[..],
            b"\r\n",
            b"5\n",
            b"5\rx",
            b"5 5",
            b"5\r\nhelloX",
            b"5\r\nhello\rX",
            b"0\r\nX\r\n",
            b"0\r\n X: y\r\n",
            b"0\r\nX : y",
            b"0\r\n\rX",
            b"10000000000000000",
        ] {
            assert_eq!(
                reference_dechunk(bad, &l),
                Dechunked::Invalid,
                "{}",
                show(bad)
            );
        }
        let mut zeros = b"0".repeat(MAX_SIZE_DIGITS);
        assert_eq!(reference_dechunk(&zeros, &l), incomplete(b"", b""));
        zeros.push(b'0');
        assert_eq!(reference_dechunk(&zeros, &l), Dechunked::Invalid);
    }

    #[test]
    fn reference_applies_the_limits() {
        let l = Limits {
            max_chunk_ext: 4,
            max_trailers: 6,
            ..Limits::DEFAULT
        };
        assert_eq!(
            reference_dechunk(b"1 ;ab\r\nx\r\n0\r\nX: a\r\n\r\n", &l),
            complete(b"x", b"1\r\nx\r\n0\r\n\r\n", 21)
        );
        assert_eq!(reference_dechunk(b"1;abcd", &l), Dechunked::Invalid);
        assert_eq!(
            reference_dechunk(b"0\r\nX: ab\r\n\r\n", &l),
            Dechunked::Invalid
        );
        assert!(reference_dechunk(b"0\r\nX: a\r\n\r\n", &l).is_complete());
        assert_eq!(reference_dechunk(b"0\r\nX: abcd", &l), Dechunked::Invalid);
    }

    impl Dechunked {
        fn is_complete(&self) -> bool {
            matches!(self, Dechunked::Complete { .. })
        }
    }

    #[test]
    fn targets_accept_typical_inputs() {
        request_head(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
        request_head(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n\x04");
        request_head(b"GET http://a:1?q HTTP/1.0\r\nConnection: keep-alive, X\r\nX: y\r\n\r\n\x01");
        request_head(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        request_head(b"garbage\x18");
        // Underscored names dropped (last byte: bit 5 clear) or kept (set); Expect from 1.0.
        request_head(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nX_A: 1\r\nContent-Length: 1\r\n\r\n\x00",
        );
        request_head(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nX_A: 1\r\nContent-Length: 1\r\n\r\n\x20");
        response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        );
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        // The response to a HEAD (last byte: bit 0 set).
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\x01");
        response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\x01");
        response_head(
            b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        );
        response_head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
        response_head(b"HTTP/1.0 200 OK\r\n\r\n");
        chunked(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n");
        chunked(b"5\r\nhello\r\n6;x=y\r\n wor");
        chunked(b"5\r\nhelloX");
        chunked(b"");
    }
}
