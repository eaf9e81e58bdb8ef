//! HTTP/1.1 heads and bodies as pure functions over byte slices: no sockets here.
//!
//! - [`request`]: parse a request head (httparse) and apply the RFC 9112 framing rules.
//! - `fields`: the field section of either head: httparse, our line checks, the strict scan.
//! - [`response`]: parse a response head and decide its framing (RFC 9112 §6.3).
//! - [`rewrite`]: write the forwarded request head and the client's response head.
//! - [`chunked`]: the incremental chunked-body decoder/re-encoder.
//! - [`local`]: the complete answers the proxy makes itself (400, 502, 503, ...).
//! - `plan`: what to do with a head: body modes, interim and upgrade responses, which side
//!   stays open, how long an upstream connection may idle.

pub mod chunked;
pub(crate) mod fields;
pub mod local;
pub(crate) mod plan;
pub mod request;
pub mod response;
pub mod rewrite;

/// The protocol version on one side of the proxy. Only HTTP/1.x exists here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no chunked coding, persistence only with `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1 (and 1.x with a higher minor version, read as 1.1).
    Http11,
}

/// How a message body is delimited on the wire (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (e.g. a GET without framing headers, a 204, a HEAD response).
    None,
    /// `Content-Length: n` bytes follow.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body ends when the sender closes the connection (responses only).
    UntilClose,
}

impl Framing {
    /// No body bytes follow the head (no body, or `Content-Length: 0`).
    pub fn is_empty_body(self) -> bool {
        matches!(self, Framing::None | Framing::Length(0))
    }
}

/// Size limits for heads. Named so tests, flags and buffers agree on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version) before a 414.
    pub max_request_line: usize,
    /// Largest head, request line and fields and the final CRLF, before a 431 (502 for responses).
    pub max_head: usize,
    /// Most header fields in one head before a 431 (502 for responses).
    pub max_fields: usize,
    /// Longest chunk extension kept track of before the chunked body is rejected.
    pub max_chunk_ext: usize,
    /// Most bytes of trailer section accepted (then dropped) before the chunked body is rejected.
    pub max_trailers: usize,
}

impl Limits {
    /// Defaults matching the README's Security section.
    pub const DEFAULT: Limits = Limits {
        max_request_line: 8 * 1024,
        max_head: 32 * 1024,
        max_fields: 100,
        max_chunk_ext: 1024,
        max_trailers: 8 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

// ---------------------------------------------------------------------------------------------
// Small byte-level helpers shared by the parsers and rewriters. Everything here is allocation
// free: the hot path only ever appends to a caller's Vec.
// ---------------------------------------------------------------------------------------------

/// RFC 9110 §5.6.2: `tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
/// "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `is_tchar` as a table: one load per byte in the field-name scan.
static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = matches!(b as u8,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
            | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    t
};

/// Whether field name `name` is `other`, ignoring ASCII case (see [`eq_ignore_case`]).
#[inline(always)]
pub(crate) fn name_is(name: &str, other: &str) -> bool {
    eq_ignore_case(name.as_bytes(), other.as_bytes())
}

/// `a.eq_ignore_ascii_case(b)`, eight bytes at a time: field-name and option compares are most
/// of the work of classifying a head, and the standard one lowers and compares byte by byte.
///
/// Both sides are read as words (overlapping ones for a length that is not a multiple of
/// eight, which is harmless for an equality test). `b`'s word is lowered, and a byte of `a`
/// may differ from it only in bit 5, and only where `b`'s byte is a letter. Written for a
/// literal `b`: all of its side folds at compile time, leaving a load, an OR and a compare per
/// word of `a`.
#[inline(always)]
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let same = |x: u64, y: u64| {
        let lower = fold_case(y);
        x | letters(lower) == lower
    };
    match n {
        0 => true,
        // Bytes 0, n/2 and n-1 cover every byte of a 1-, 2- or 3-byte string.
        1..=3 => same(short_word(a), short_word(b)),
        4..=7 => same(half_words(a), half_words(b)),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if !same(word_at(a, at), word_at(b, at)) {
                    return false;
                }
                at += 8;
            }
            same(word_at(a, n - 8), word_at(b, n - 8))
        }
    }
}

pub(crate) const HIGHS: u64 = 0x8080_8080_8080_8080;
pub(crate) const ONES: u64 = 0x0101_0101_0101_0101;

/// Bit 7 of each zero byte of `x`, the classic SWAR test. A borrow can also flag a byte above a
/// true zero, never below one: the lowest flag is exact, and so is "none".
#[inline(always)]
pub(crate) fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Bit 7 of each byte of `w` that lies in `lo..=hi` (both ASCII). Bit 7 is forced on (or off)
/// before each subtraction so that none borrows across bytes; a byte with bit 7 set is not
/// ASCII and never in the range.
#[inline(always)]
fn in_range(w: u64, lo: u8, hi: u8) -> u64 {
    let at_least_lo = (w | HIGHS).wrapping_sub(ONES * u64::from(lo));
    let at_most_hi = ((ONES * u64::from(hi)) | HIGHS).wrapping_sub(w & !HIGHS);
    at_least_lo & at_most_hi & !w & HIGHS
}

/// `w` with every ASCII capital lowered (bit 5 set).
#[inline(always)]
fn fold_case(w: u64) -> u64 {
    w | in_range(w, b'A', b'Z') >> 2
}

/// Bit 5 of each byte of `w` that is an ASCII lowercase letter.
#[inline(always)]
fn letters(w: u64) -> u64 {
    in_range(w, b'a', b'z') >> 2
}

/// Whether `s` holds `byte` (not 0), a word at a time: for short strings such as field names,
/// where a `memchr` call costs more than the search.
#[inline]
pub(crate) fn any_byte(s: &[u8], byte: u8) -> bool {
    let has = |w: u64| zero_bytes(w ^ (ONES * u64::from(byte))) != 0;
    let n = s.len();
    match n {
        0 => false,
        // The words built for 1 to 7 bytes are padded with zero bytes, never `byte`.
        1..=3 => has(short_word(s)),
        4..=7 => has(half_words(s)),
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if has(word_at(s, at)) {
                    return true;
                }
                at += 8;
            }
            has(word_at(s, n - 8))
        }
    }
}

/// The 8 bytes of `s` at `at` (the caller checked `at + 8 <= s.len()`) as one word.
#[inline(always)]
fn word_at(s: &[u8], at: usize) -> u64 {
    match s.get(at..at + 8).map(<[u8; 8]>::try_from) {
        Some(Ok(w)) => u64::from_le_bytes(w),
        _ => 0,
    }
}

/// A 4- to 7-byte `s` as one word: its first four bytes, and its last four.
#[inline(always)]
fn half_words(s: &[u8]) -> u64 {
    let half = |at: usize| match s.get(at..at + 4).map(<[u8; 4]>::try_from) {
        Some(Ok(w)) => u64::from(u32::from_le_bytes(w)),
        _ => 0,
    };
    half(0) | half(s.len().saturating_sub(4)) << 32
}

/// A 1- to 3-byte `s` as one word: its first, middle and last bytes.
#[inline(always)]
fn short_word(s: &[u8]) -> u64 {
    let byte = |at: usize| u64::from(s.get(at).copied().unwrap_or(0));
    byte(0) | byte(s.len() / 2) << 8 | byte(s.len().saturating_sub(1)) << 16
}

/// Whether a field is a client's own word on who it is, besides X-Forwarded-For: `Forwarded`
/// or `X-Real-IP`, which an edge (`--forwarded-for replace`) drops, as it alone knows the
/// client. (Not a [`FieldName`]: only that setting looks for them, so the parse of every head
/// does not.)
#[inline]
pub(crate) fn is_client_claim(name: &str) -> bool {
    name.len() == 9 && (name_is(name, "forwarded") || name_is(name, "x-real-ip"))
}

/// The field names the proxy acts on; every other name is [`FieldName::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldName {
    Host,
    Expect,
    Upgrade,
    Trailer,
    Te,
    Connection,
    KeepAlive,
    ProxyConnection,
    ContentLength,
    TransferEncoding,
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    Other,
}

impl FieldName {
    /// Which name `name` is: a switch on the length, then one or two compares.
    #[inline(always)]
    pub(crate) fn of(name: &str) -> FieldName {
        use FieldName::*;
        let is = |lower: &str| name_is(name, lower);
        match name.len() {
            2 if is("te") => Te,
            4 if is("host") => Host,
            6 if is("expect") => Expect,
            7 if is("upgrade") => Upgrade,
            7 if is("trailer") => Trailer,
            10 if is("connection") => Connection,
            10 if is("keep-alive") => KeepAlive,
            14 if is("content-length") => ContentLength,
            15 if is("x-forwarded-for") => XForwardedFor,
            16 if is("proxy-connection") => ProxyConnection,
            16 if is("x-forwarded-host") => XForwardedHost,
            17 if is("transfer-encoding") => TransferEncoding,
            17 if is("x-forwarded-proto") => XForwardedProto,
            _ => Other,
        }
    }

    /// Never copied from a response: hop-by-hop fields (RFC 9110 §7.6.1), Trailer (we drop
    /// trailers) and the framing fields we write ourselves.
    pub(crate) fn hop_by_hop(self) -> bool {
        use FieldName::*;
        matches!(
            self,
            Te | Upgrade
                | Trailer
                | Connection
                | KeepAlive
                | ProxyConnection
                | ContentLength
                | TransferEncoding
        )
    }

    /// Never copied from a request: the hop-by-hop ones, and Host and the X-Forwarded-*
    /// fields, which we write (a client-sent X-Forwarded-Proto or -Host would be spoofed).
    pub(crate) fn not_forwarded(self) -> bool {
        use FieldName::*;
        self.hop_by_hop()
            || matches!(
                self,
                Host | XForwardedFor | XForwardedHost | XForwardedProto
            )
    }
}

/// Which of a head's first 64 fields have the names the rewriters look for, one bit per field,
/// found by [`KeyFields::of`] in its pass: the rewriters then test a bit per field instead of
/// comparing names again. A field past the 64th is classified again where it is needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FieldBits {
    /// [`FieldName::not_forwarded`].
    pub not_forwarded: u64,
    /// [`FieldName::hop_by_hop`].
    pub hop_by_hop: u64,
    /// Expect.
    pub expect: u64,
    /// X-Forwarded-For.
    pub forwarded_for: u64,
    /// Lines not written `name: value` CRLF, set by the parsers (see `fields::line_shapes`).
    pub reformat: u64,
}

impl FieldBits {
    /// Whether field `index`, named `name`, is in `bits` (the set `test` defines).
    #[inline]
    pub(crate) fn test(bits: u64, index: usize, name: &str, test: fn(FieldName) -> bool) -> bool {
        if index < 64 {
            bits >> index & 1 != 0
        } else {
            test(FieldName::of(name))
        }
    }
}

/// A non-empty run of tchars (RFC 9110 §5.6.2 `token`).
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `s` without leading and trailing OWS (SP / HTAB).
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// The non-empty elements of a comma-separated list, each trimmed of OWS.
/// RFC 9110 §5.6.1: "a recipient MUST accept empty list elements" (and ignore them).
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Every list element of every field named `name` (case-insensitive), in order.
pub(crate) fn field_elements<'a, 'b: 'a>(
    headers: &'a [httparse::Header<'b>],
    name: &'a str,
) -> impl Iterator<Item = &'b [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| name_is(h.name, name))
        .flat_map(|h| list_elements(h.value))
}

/// Whether any field named `name` lists `token` (both compared case-insensitively).
pub(crate) fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &[u8]) -> bool {
    field_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token))
}

/// The fields that decide how a head is read, found in one pass over it (a length switch, then
/// one case-insensitive compare): the readers of Transfer-Encoding, Connection, Expect, Upgrade
/// and Keep-Alive look at the fields only when there is one to read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyFields<'b> {
    /// How many Host fields.
    pub host_count: usize,
    /// The (last) Host value.
    pub host: &'b [u8],
    /// How many Content-Length fields.
    pub content_length_count: usize,
    /// The (last) Content-Length value.
    pub content_length: &'b [u8],
    /// A Transfer-Encoding field is present.
    pub transfer_encoding: bool,
    /// How many Connection fields.
    pub connection_count: usize,
    /// The (last) Connection value: with one field, its options are read from here without
    /// another pass over the fields.
    pub connection: &'b [u8],
    /// An Expect field is present.
    pub expect: bool,
    /// An Upgrade field is present.
    pub upgrade: bool,
    /// A Keep-Alive field is present.
    pub keep_alive: bool,
    /// Which fields the rewriters drop or read.
    pub bits: FieldBits,
}

impl<'b> KeyFields<'b> {
    /// Find the key fields of `headers`.
    #[inline]
    pub(crate) fn of(headers: &[httparse::Header<'b>]) -> Self {
        let mut k = KeyFields::default();
        for (i, h) in headers.iter().enumerate() {
            let name = FieldName::of(h.name);
            if name == FieldName::Other {
                continue;
            }
            let bit = 1u64.checked_shl(i as u32).unwrap_or(0);
            if name.not_forwarded() {
                k.bits.not_forwarded |= bit;
            }
            if name.hop_by_hop() {
                k.bits.hop_by_hop |= bit;
            }
            match name {
                FieldName::Host => {
                    k.host_count += 1;
                    k.host = h.value;
                }
                FieldName::Expect => {
                    k.expect = true;
                    k.bits.expect |= bit;
                }
                FieldName::XForwardedFor => k.bits.forwarded_for |= bit,
                FieldName::Upgrade => k.upgrade = true,
                FieldName::Connection => {
                    k.connection_count += 1;
                    k.connection = h.value;
                }
                FieldName::KeepAlive => k.keep_alive = true,
                FieldName::ContentLength => {
                    k.content_length_count += 1;
                    k.content_length = h.value;
                }
                FieldName::TransferEncoding => k.transfer_encoding = true,
                _ => {}
            }
        }
        k
    }

    /// The Connection options, read only when there is a Connection field.
    pub(crate) fn connection_tokens(&self, headers: &[httparse::Header<'_>]) -> ConnectionTokens {
        match self.connection_count {
            0 => ConnectionTokens::default(),
            1 => ConnectionTokens::of_value(self.connection),
            _ => ConnectionTokens::of(headers),
        }
    }

    /// The transfer codings, read only when there is a Transfer-Encoding field.
    pub(crate) fn transfer_codings(&self, headers: &[httparse::Header<'_>]) -> TransferCodings {
        if self.transfer_encoding {
            TransferCodings::of(headers)
        } else {
            TransferCodings::default()
        }
    }
}

/// What the Connection field(s) of a head say (RFC 9110 §7.6.1), gathered in one pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnectionTokens {
    /// The `close` option.
    pub close: bool,
    /// The `keep-alive` option (HTTP/1.0 persistence).
    pub keep_alive: bool,
    /// The `upgrade` option.
    pub upgrade: bool,
    /// Some other token: a field name the sender declared hop-by-hop.
    pub names_fields: bool,
}

impl ConnectionTokens {
    /// Gather the Connection options of `headers`.
    pub(crate) fn of(headers: &[httparse::Header<'_>]) -> Self {
        let mut tokens = ConnectionTokens::default();
        for e in field_elements(headers, "connection") {
            tokens.add(e);
        }
        tokens
    }

    /// The options of one Connection field's value.
    pub(crate) fn of_value(value: &[u8]) -> Self {
        let mut tokens = ConnectionTokens::default();
        // The common values, whole: no list splitting.
        if eq_ignore_case(value, b"keep-alive") {
            tokens.keep_alive = true;
        } else if eq_ignore_case(value, b"close") {
            tokens.close = true;
        } else {
            for e in list_elements(value) {
                tokens.add(e);
            }
        }
        tokens
    }

    fn add(&mut self, e: &[u8]) {
        if eq_ignore_case(e, b"close") {
            self.close = true;
        } else if eq_ignore_case(e, b"keep-alive") {
            self.keep_alive = true;
        } else if eq_ignore_case(e, b"upgrade") {
            self.upgrade = true;
        } else {
            self.names_fields = true;
        }
    }
}

/// What the Transfer-Encoding field(s) of a head say (RFC 9112 §6.1), across all fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TransferCodings {
    /// At least one Transfer-Encoding field is present.
    pub present: bool,
    /// How many times `chunked` is listed.
    pub chunked_count: u32,
    /// The final coding is `chunked`.
    pub final_chunked: bool,
    /// A coding other than `chunked` is listed.
    pub other: bool,
    /// A field is empty, an element is not a token, or `chunked` carries parameters.
    pub malformed: bool,
}

impl TransferCodings {
    /// Gather the transfer codings of `headers`, in order over all Transfer-Encoding fields.
    pub(crate) fn of(headers: &[httparse::Header<'_>]) -> Self {
        let mut te = TransferCodings::default();
        for h in headers
            .iter()
            .filter(|h| name_is(h.name, "transfer-encoding"))
        {
            te.present = true;
            let mut elements = 0;
            for e in list_elements(h.value) {
                elements += 1;
                // transfer-coding = token *( OWS ";" OWS transfer-parameter )
                let (name, has_params) = match e.iter().position(|&b| b == b';') {
                    Some(i) => (trim_ows(&e[..i]), true),
                    None => (e, false),
                };
                if !is_token(name) {
                    te.malformed = true;
                }
                if name.eq_ignore_ascii_case(b"chunked") {
                    // The chunked coding defines no parameters (RFC 9112 §7.1).
                    te.malformed |= has_params;
                    te.chunked_count += 1;
                    te.final_chunked = true;
                } else {
                    te.other = true;
                    te.final_chunked = false;
                }
            }
            // An empty Transfer-Encoding field is not "no coding": it is a framing header that
            // different implementations read differently, so it is refused.
            if elements == 0 {
                te.malformed = true;
            }
        }
        te
    }
}

/// Parse a Content-Length value: exactly `1*DIGIT` (RFC 9110 §8.6) that fits in a u64.
/// No sign, no inner whitespace, no list (`5, 5`): each of those is refused by the callers.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// `n` in decimal, written into `buf`: the digits are the returned tail (no allocation).
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    digits(n, 10, buf)
}

/// `n` in lowercase hexadecimal without leading zeros (`0` for zero), written into `buf`.
pub fn hex(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    digits(n, 16, buf)
}

// Inlined so that each caller divides by a constant (a multiply) rather than by a variable.
#[inline(always)]
fn digits(mut n: u64, radix: u64, buf: &mut [u8; 20]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Where a rewriter writes a head: a growable `Vec`, or [`SliceOut`], the free space of a
/// connection buffer, written in place (no copy through a scratch buffer) and never overrun.
pub trait Out {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Append one byte.
    fn put_byte(&mut self, b: u8) {
        self.put(&[b]);
    }
    /// Bytes appended so far (for a [`SliceOut`], asked for: what did not fit counts too).
    fn written(&self) -> usize;
    /// Take back everything appended after `len` (a refused head leaves nothing behind).
    fn truncate_to(&mut self, len: usize);
}

impl Out for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        self.push(b);
    }
    #[inline]
    fn written(&self) -> usize {
        self.len()
    }
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

/// A fixed slice written from its start: bytes that would not fit are counted, not written,
/// so the writer learns how long the whole would have been and nothing is ever overrun.
#[derive(Debug)]
pub struct SliceOut<'a> {
    buf: &'a mut [u8],
    /// Bytes asked for so far (may exceed `buf.len()`).
    len: usize,
}

impl<'a> SliceOut<'a> {
    /// Write into `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceOut { buf, len: 0 }
    }

    /// Everything asked for fitted.
    pub fn fits(&self) -> bool {
        self.len <= self.buf.len()
    }
}

impl Out for SliceOut<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
        }
        self.len = end;
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        if let Some(dst) = self.buf.get_mut(self.len) {
            *dst = b;
        }
        self.len += 1;
    }
    #[inline]
    fn written(&self) -> usize {
        self.len
    }
    fn truncate_to(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// Append `n` in decimal.
#[inline]
pub(crate) fn push_decimal(out: &mut impl Out, n: u64) {
    out.put(decimal(n, &mut [0; 20]));
}

/// Append `n` in lowercase hexadecimal without leading zeros (`0` for zero).
pub(crate) fn push_hex(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(hex(n, &mut [0; 20]));
}

/// How many bytes `push_decimal(n)` appends.
pub(crate) fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests;
