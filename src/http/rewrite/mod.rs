//! The forwarded request head and the client's response head, byte for byte.
//!
//! Both rewriters append to the caller's buffer and allocate nothing else. Their input was
//! validated by `request::parse` / `response::parse` (no CR, LF or NUL anywhere in a name or
//! value), so copying received bytes cannot inject a line.

use super::request::Request;
use super::response::Response;
use super::{
    any_byte, field_elements, has_token, is_client_claim, name_is, push_decimal, ConnectionTokens,
    FieldBits, FieldName, Framing, Out, Version,
};
use std::io::Write;
use std::net::IpAddr;

/// What to do with the X-Forwarded-For fields a client sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedFor {
    /// Keep the client's list and append the client address (for a proxy behind another
    /// trusted proxy).
    #[default]
    Append,
    /// Drop the client's list and write only the client address (for an edge proxy: a client
    /// could otherwise claim any address it likes).
    Replace,
}

/// A client address as X-Forwarded-For lists it, formatted once per connection (formatting an
/// address through `core::fmt` costs about a thousand instructions, a tenth of a request).
///
/// An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 client) is written as
/// plain IPv4; IPv6 without brackets.
/// The longest text of a [`ClientAddr`].
const CLIENT_ADDR_MAX: usize = 39;

#[derive(Clone, Copy)]
pub struct ClientAddr {
    /// The text, in the first `len` bytes. 39 is the longest IPv6 text
    /// (`ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff`); the 45 of INET6_ADDRSTRLEN also counts
    /// the dotted IPv4-mapped form, which is written as IPv4 here.
    text: [u8; CLIENT_ADDR_MAX],
    /// How many bytes of `text` are used.
    len: u8,
}

impl ClientAddr {
    /// The text for `ip`.
    pub fn new(ip: IpAddr) -> Self {
        let mut addr = ClientAddr {
            text: [0; CLIENT_ADDR_MAX],
            len: 0,
        };
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        addr.push(b".");
                    }
                    addr.push(super::decimal(u64::from(octet), &mut [0; 20]));
                }
            }
            IpAddr::V6(v6) => {
                // Rare enough for the formatter; the text is at most 39 bytes long.
                let mut w = &mut addr.text[..];
                let _ = write!(w, "{v6}");
                let left = w.len();
                addr.len = (CLIENT_ADDR_MAX - left) as u8;
            }
        }
        addr
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.len);
        self.text[at..at + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }

    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }

    /// The text as a `str`: only digits, dots, colons and hex letters ever get in.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAddr({self})")
    }
}

/// What the request rewriter needs besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext {
    /// The client's address, as X-Forwarded-For writes it.
    pub client_ip: ClientAddr,
    /// Whether the client's X-Forwarded-For is kept (and appended to) or replaced.
    pub forwarded_for: ForwardedFor,
    /// Forward fields whose name contains `_` (`--underscores-in-headers`). Off, they are
    /// dropped: CGI and WSGI backends read `-` and `_` as the same character (both become
    /// `HTTP_X_FORWARDED_FOR`), so `X_Forwarded_For` or `Transfer_Encoding` would pass for
    /// the fields we control.
    pub underscores_in_headers: bool,
    /// The proxy answers the client's `Expect: 100-continue` itself and reads the body before
    /// it connects (`--request-buffer`): the expectation is met, and Expect is not forwarded.
    pub expectation_met: bool,
    /// The request came over TLS: `X-Forwarded-Proto: https`.
    pub https: bool,
}

impl RequestContext {
    /// A context for `client_ip` with the default policies: X-Forwarded-For appended to,
    /// fields with `_` in their name dropped.
    pub fn new(client_ip: IpAddr) -> Self {
        RequestContext {
            client_ip: ClientAddr::new(client_ip),
            forwarded_for: ForwardedFor::default(),
            underscores_in_headers: false,
            https: false,
            expectation_met: false,
        }
    }
}

/// A rewritten head longer than the buffer it must go into: the caller refuses the message
/// (431 for a request, 502 for a response) and nothing is sent. A head is never cut: a cut one
/// would leave its body to be read as the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadTooLarge {
    /// How long the rewritten head would have been.
    pub len: usize,
    /// The most it may be.
    pub max: usize,
}

/// Keep what was appended to `out` since `start` if it is at most `max` bytes long, else take it
/// back out and say so.
fn bounded(out: &mut impl Out, start: usize, max: usize) -> Result<usize, HeadTooLarge> {
    let len = out.written() - start;
    if len > max {
        out.truncate_to(start);
        return Err(HeadTooLarge { len, max });
    }
    Ok(len)
}

/// Append the head to send upstream for `req` to `out`, and return its length, or append
/// nothing and return [`HeadTooLarge`] if it would be longer than `max` bytes.
///
/// The rewrite may grow a head: X-Forwarded-Host repeats Host, X-Forwarded-For gains the client
/// address, X-Forwarded-Proto and the framing field are added. A head just under `--max-head`
/// can therefore outgrow the upstream buffer, and must then be refused whole.
///
/// The request line says HTTP/1.1; hop-by-hop fields are dropped; X-Forwarded-For gets the
/// client appended; exactly one framing header is emitted from `req.framing`; CRLF everywhere.
/// Also dropped: fields with `_` in their name (unless `ctx.underscores_in_headers`), and
/// Expect from an HTTP/1.0 client or when the proxy met the expectation itself.
///
/// Layout: request line, `Host`, the received end-to-end fields in order, `X-Forwarded-For`,
/// `X-Forwarded-Proto`, `X-Forwarded-Host` (when the host is not empty), the framing field,
/// `Connection: upgrade` + `Upgrade: websocket` for a WebSocket upgrade, the blank line.
// Always inlined into its one caller on the hot path (the session): LLVM's own choice
// flips with unrelated edits, and out of line it costs ~90 instructions per request.
#[inline(always)]
pub fn request_head(
    req: &Request<'_, '_>,
    ctx: &RequestContext,
    out: &mut impl Out,
    max: usize,
) -> Result<usize, HeadTooLarge> {
    let start = out.written();
    out.put(req.method.as_bytes());
    out.put_byte(b' ');
    if req.path.starts_with('?') {
        // An absolute-form target with an empty path and a query: RFC 9112 §3.2.1 "If the
        // target URI's path component is empty, the client MUST send "/" as the path".
        out.put_byte(b'/');
    }
    out.put(req.path.as_bytes());
    out.put(b" HTTP/1.1\r\nHost: ");
    out.put(req.host);
    out.put(b"\r\n");

    // RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header field before a
    // message is forwarded and, for each connection-option in this field, remove any header or
    // trailer field(s) from the message with the same name as the connection-option".
    let named = names_a_field(&req.connection);
    // RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
    // request MUST ignore that expectation." Our request line says HTTP/1.1, so an upstream
    // would honour it: the field goes, and any other expectation with it (HTTP/1.0 defines
    // none).
    let drop_expect = req.version == Version::Http10 || ctx.expectation_met;
    // One scan of the field section for `_` instead of one per name: most heads have none.
    let drop_underscored =
        !ctx.underscores_in_headers && fields_section(req).is_none_or(|s| s.contains(&b'_'));
    // An edge (`--forwarded-for replace`) alone knows the client: what the client says of
    // itself in Forwarded or X-Real-IP goes, like its X-Forwarded-For.
    let drop_claims = ctx.forwarded_for == ForwardedFor::Replace;
    let bits = &req.bits;
    let dropped = |i: usize, h: &httparse::Header<'_>| {
        FieldBits::test(bits.not_forwarded, i, h.name, FieldName::not_forwarded)
            || (drop_claims && is_client_claim(h.name))
            || (named && has_token(req.headers, "connection", h.name.as_bytes()))
            || (drop_expect && FieldBits::test(bits.expect, i, h.name, |n| n == FieldName::Expect))
            || (drop_underscored && any_byte(h.name.as_bytes(), b'_'))
    };
    // The parser's bits, and the rarer rules field by field only when they apply.
    let mut mask = bits.not_forwarded | if drop_expect { bits.expect } else { 0 };
    if drop_claims {
        mask |= first_fields_mask(req.headers, |_, h| is_client_claim(h.name));
    }
    if drop_underscored {
        mask |= first_fields_mask(req.headers, |_, h| any_byte(h.name.as_bytes(), b'_'));
    }
    if named {
        mask |= first_fields_mask(req.headers, |_, h| {
            has_token(req.headers, "connection", h.name.as_bytes())
        });
    }
    copy_fields(out, req.raw, req.headers, mask, bits.reformat, dropped);

    out.put(b"X-Forwarded-For: ");
    if ctx.forwarded_for == ForwardedFor::Append {
        let forwarded_for = |(i, h): &(usize, &httparse::Header<'_>)| {
            FieldBits::test(bits.forwarded_for, *i, h.name, |n| {
                n == FieldName::XForwardedFor
            })
        };
        // Most requests have none: skip the walk when the first 64 fields say so.
        if bits.forwarded_for != 0 || req.headers.len() > 64 {
            for (_, h) in req.headers.iter().enumerate().filter(forwarded_for) {
                if !h.value.is_empty() {
                    out.put(h.value);
                    out.put(b", ");
                }
            }
        }
    }
    out.put(ctx.client_ip.as_bytes());
    // Fixed-length pieces: each is copied as a few stores, where one piece of either length
    // would be a call to memcpy on every request.
    out.put(b"\r\nX-Forwarded-Proto: http");
    if ctx.https {
        out.put(b"s");
    }
    out.put(b"\r\n");
    if !req.host.is_empty() {
        push_field(out, b"X-Forwarded-Host", req.host);
    }

    match req.framing {
        Framing::Length(n) => push_content_length(out, n),
        Framing::Chunked => out.put(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::UntilClose => {}
    }
    if req.info.upgrade_websocket {
        out.put(b"Connection: upgrade\r\nUpgrade: websocket\r\n");
    }
    out.put(b"\r\n");
    bounded(out, start, max)
}

/// What the response rewriter needs besides the response itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseContext {
    /// The framing towards the client (see `response::client_framing`).
    pub framing: Framing,
    /// The proxy closes the client connection after this response: add `Connection: close`.
    pub close: bool,
    /// The client is HTTP/1.0 and the connection stays open: add `Connection: keep-alive`.
    pub keep_alive_http10: bool,
    /// This is a 101 to a WebSocket upgrade the client asked for: write `Connection: upgrade`
    /// and `Upgrade: websocket` (the upstream's own Upgrade/Connection are never copied).
    pub upgrade: bool,
    /// The version of the client's request: an HTTP/1.0 client never gets Transfer-Encoding.
    pub client_version: Version,
}

/// Append the head to send to the client for `resp` to `out`, and return its length, or append
/// nothing and return [`HeadTooLarge`] if it would be longer than `max` bytes.
///
/// Layout: `HTTP/1.1 {code} {reason}`, the received end-to-end fields in order, the framing
/// field(s) for `ctx.framing`, then one of `Connection: upgrade` + `Upgrade: websocket` (an
/// upgrade wins over everything else: the connection becomes a tunnel), `Connection: close`,
/// `Connection: keep-alive`; the blank line.
///
/// Framing fields:
/// - `Length(n)`: `Content-Length: n`.
/// - `Chunked`: `Transfer-Encoding: chunked`, after any other codings the upstream applied
///   under its chunked layer (`gzip, chunked` stays `gzip, chunked`: we re-chunk, we do not
///   decode gzip). Never the framing for an HTTP/1.0 client (see `response::client_framing`).
/// - `UntilClose`: no Content-Length. For an HTTP/1.1 client whose upstream body is itself
///   close-delimited under a Transfer-Encoding (final coding not chunked), the bytes pass
///   untouched and so does the list. For an HTTP/1.0 client, nothing: the caller refuses a
///   body under any coding but chunked (`response::client_can_decode`) and de-chunks the rest.
/// - `None`: nothing for 1xx and 204. A 304 keeps the upstream's Content-Length, and so does
///   the response to a HEAD, which also keeps the upstream's Transfer-Encoding for an HTTP/1.1
///   client: both describe the body a GET would have had (RFC 9110 §8.6, §9.3.2).
///
/// RFC 9112 §6.1: "A server MUST NOT send a response containing Transfer-Encoding unless the
/// corresponding request indicates HTTP/1.1 (or later minor revisions)": whatever the framing,
/// a response to an HTTP/1.0 client has no Transfer-Encoding.
#[inline]
pub fn response_head(
    resp: &Response<'_, '_>,
    ctx: &ResponseContext,
    out: &mut impl Out,
    max: usize,
) -> Result<usize, HeadTooLarge> {
    let start = out.written();
    out.put(b"HTTP/1.1 ");
    push_status_code(out, resp.code);
    out.put_byte(b' ');
    out.put(resp.reason);
    out.put(b"\r\n");

    let named = names_a_field(&resp.connection);
    let dropped = |i: usize, h: &httparse::Header<'_>| {
        FieldBits::test(resp.bits.hop_by_hop, i, h.name, FieldName::hop_by_hop)
            || (named && has_token(resp.headers, "connection", h.name.as_bytes()))
    };
    let mask = if named {
        first_fields_mask(resp.headers, dropped)
    } else {
        resp.bits.hop_by_hop
    };
    copy_fields(
        out,
        resp.raw,
        resp.headers,
        mask,
        resp.bits.reformat,
        dropped,
    );

    let bodiless = resp.code < 200 || resp.code == 204;
    let te_allowed = ctx.client_version == Version::Http11;
    match ctx.framing {
        Framing::Length(n) => push_content_length(out, n),
        Framing::None if bodiless => {}
        Framing::None => {
            if let Some(h) = resp
                .headers
                .iter()
                .find(|h| name_is(h.name, "content-length"))
            {
                push_field(out, b"Content-Length", h.value);
            }
            if resp.code != 304 && te_allowed {
                push_transfer_encoding(out, resp, Codings::All, false);
            }
        }
        Framing::Chunked | Framing::UntilClose if !te_allowed => {}
        Framing::Chunked => push_transfer_encoding(out, resp, Codings::UnderChunked, true),
        Framing::UntilClose if resp.framing == Framing::Chunked => {
            push_transfer_encoding(out, resp, Codings::UnderChunked, false);
        }
        Framing::UntilClose => push_transfer_encoding(out, resp, Codings::All, false),
    }

    if ctx.upgrade {
        out.put(b"Connection: upgrade\r\nUpgrade: websocket\r\n");
    } else if ctx.close {
        out.put(b"Connection: close\r\n");
    } else if ctx.keep_alive_http10 {
        out.put(b"Connection: keep-alive\r\n");
    }
    out.put(b"\r\n");
    bounded(out, start, max)
}

/// Whether the Connection options may name a field we would otherwise copy. `close` is such a
/// name too (the field name `Close` is reserved for exactly this clash), so a `Close` field
/// next to `Connection: close` goes; `keep-alive` and `upgrade` name fields dropped anyway.
fn names_a_field(tokens: &ConnectionTokens) -> bool {
    tokens.names_fields || tokens.close
}

/// The field lines of a request head: from the first field's name to the end. `None` when the
/// fields do not point into the head (a request not made by `request::parse`).
fn fields_section<'b>(req: &Request<'_, 'b>) -> Option<&'b [u8]> {
    let Some(first) = req.headers.first() else {
        return Some(&[]);
    };
    let start = (first.name.as_ptr() as usize).checked_sub(req.raw.as_ptr() as usize)?;
    req.raw.get(start..)
}

/// A status code (100..=999, as the parser allows) as its three digits; anything else in full.
#[inline]
fn push_status_code(out: &mut impl Out, code: u16) {
    if (100..=999).contains(&code) {
        let digit = |n: u16| b'0' + (n % 10) as u8;
        out.put(&[digit(code / 100), digit(code / 10), digit(code)]);
    } else {
        push_decimal(out, u64::from(code));
    }
}

/// Which of the upstream's transfer codings to list again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Codings {
    /// All of them, as received: the body passes through untouched.
    All,
    /// Those under the final chunked layer, which we decode.
    UnderChunked,
}

/// Write `Transfer-Encoding:` with the upstream's codings picked by `which`, then `chunked` when
/// `chunked`; nothing at all when that list is empty.
fn push_transfer_encoding(
    out: &mut impl Out,
    resp: &Response<'_, '_>,
    which: Codings,
    chunked: bool,
) {
    let mut first = true;
    for coding in field_elements(resp.headers, "transfer-encoding") {
        if which == Codings::UnderChunked && coding.eq_ignore_ascii_case(b"chunked") {
            continue;
        }
        push_list_element(out, &mut first, b"Transfer-Encoding", coding);
    }
    if chunked {
        push_list_element(out, &mut first, b"Transfer-Encoding", b"chunked");
    }
    if !first {
        out.put(b"\r\n");
    }
}

/// Start the field `name` before the first element, separate the others with `, `.
fn push_list_element(out: &mut impl Out, first: &mut bool, name: &[u8], element: &[u8]) {
    if *first {
        out.put(name);
        out.put(b": ");
        *first = false;
    } else {
        out.put(b", ");
    }
    out.put(element);
}

/// Bit `i` set for each of the first 64 fields that `dropped` refuses.
fn first_fields_mask(
    headers: &[httparse::Header<'_>],
    dropped: impl Fn(usize, &httparse::Header<'_>) -> bool,
) -> u64 {
    headers
        .iter()
        .take(64)
        .enumerate()
        .filter(|(i, h)| dropped(*i, h))
        .fold(0, |mask, (i, _)| mask | 1 << i)
}

/// Write the field lines of a head that are kept: of the first 64 fields, those whose bit in
/// `mask` is clear; of the others, those `dropped` does not refuse.
///
/// A parsed head's field lines all end in CRLF (the parsers refuse any other ending), so field
/// `i`'s line runs from its name to the next field's name, the last one's to the blank line.
/// Each run of adjacent kept lines written `name: value` CRLF goes out in one copy of the
/// received bytes: a head costs a copy per dropped field, not work per field. A line with other
/// whitespace (its bit in `reformat`), a field past the 64th, and fields that do not point into
/// `raw` (a head not made by the parsers) are written out as `name: value` instead.
// Always inlined: out of line (LLVM's choice with a larger session) it cost ~60
// instructions per request.
#[inline(always)]
fn copy_fields(
    out: &mut impl Out,
    raw: &[u8],
    headers: &[httparse::Header<'_>],
    mask: u64,
    reformat: u64,
    dropped: impl Fn(usize, &httparse::Header<'_>) -> bool,
) {
    let first = headers.len().min(64);
    let all = u64::MAX.checked_shr(64 - first as u32).unwrap_or(0);
    let mut rewrite = reformat & !mask & all;
    let mut copy = !mask & !reformat & all;
    while copy | rewrite != 0 {
        let i = (copy | rewrite).trailing_zeros() as usize;
        if rewrite >> i & 1 != 0 {
            if let Some(h) = headers.get(i) {
                push_field(out, h.name.as_bytes(), h.value);
            }
            rewrite &= !(1 << i);
        } else {
            let len = (!(copy >> i)).trailing_zeros() as usize;
            copy_lines(out, raw, headers, i, i + len);
            copy &= !(u64::MAX.checked_shr(64 - len as u32).unwrap_or(0) << i);
        }
    }
    for (i, h) in headers.iter().enumerate().skip(first) {
        if !dropped(i, h) {
            push_field(out, h.name.as_bytes(), h.value);
        }
    }
}

/// Write the lines of fields `from..to`: one copy of the received bytes when they are where
/// a parsed head has them, else field by field.
fn copy_lines(
    out: &mut impl Out,
    raw: &[u8],
    headers: &[httparse::Header<'_>],
    from: usize,
    to: usize,
) {
    let base = raw.as_ptr() as usize;
    let start = |h: &httparse::Header<'_>| (h.name.as_ptr() as usize).checked_sub(base);
    let span = headers.get(from).and_then(start).and_then(|s| {
        let e = match headers.get(to) {
            Some(next) => start(next)?,
            None => raw.len().checked_sub(2)?,
        };
        (s < e && raw.get(e.checked_sub(2)?..e) == Some(&b"\r\n"[..])).then(|| raw.get(s..e))?
    });
    match span {
        Some(lines) => out.put(lines),
        None => {
            for h in headers.get(from..to).unwrap_or_default() {
                push_field(out, h.name.as_bytes(), h.value);
            }
        }
    }
}

/// `name: value\r\n`.
#[inline]
fn push_field(out: &mut impl Out, name: &[u8], value: &[u8]) {
    out.put(name);
    out.put(b": ");
    out.put(value);
    out.put(b"\r\n");
}

/// `Content-Length: n\r\n`.
#[inline]
fn push_content_length(out: &mut impl Out, n: u64) {
    out.put(b"Content-Length: ");
    push_decimal(out, n);
    out.put(b"\r\n");
}

#[cfg(test)]
mod tests;
