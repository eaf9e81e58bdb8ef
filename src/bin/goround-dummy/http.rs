//! The pure HTTP/1.1 side of the dummy: request-head analysis, the route table, query
//! parsing, reason phrases, response-head formatting and the body pattern. Nothing here
//! touches a socket, so all of it is unit-tested over byte slices.

use httparse::{Header, Request, Status};

/// Most header fields a request head may carry; more is answered with 431.
pub const MAX_HEADERS: usize = 128;

/// Upper bound on the size of any response head [`write_head`] produces (status line,
/// Content-Type, framing and Connection fields), so callers can reserve space up front.
pub const HEAD_RESERVE: usize = 192;

/// `/big` without `bytes=`: one MiB.
pub const DEFAULT_BIG_BYTES: u64 = 1 << 20;
/// `/chunked` without `chunks=`.
pub const DEFAULT_CHUNKS: u64 = 3;
/// `/chunked` without `size=`.
pub const DEFAULT_CHUNK_SIZE: u64 = 10;
/// `/slow` without `ms=`.
pub const DEFAULT_SLOW_MS: u64 = 1000;
/// Longest `/slow` delay accepted (one day); longer is a 400.
pub const MAX_SLOW_MS: u64 = 24 * 60 * 60 * 1000;
/// Largest `/chunked` chunk size accepted, so one chunk's header always fits a small line.
pub const MAX_GENERATED_CHUNK: u64 = 1 << 40;

/// The body pattern: byte `i` of every generated body is `b'a' + (i % 26)`. It is long
/// enough that any window of [`PATTERN_WINDOW`] bytes starting at any phase is one slice.
static PATTERN: [u8; PATTERN_WINDOW + 26] = make_pattern();

/// Longest slice [`pattern`] returns: the whole output buffer in one copy.
pub const PATTERN_WINDOW: usize = 72 * 1024;

const fn make_pattern() -> [u8; PATTERN_WINDOW + 26] {
    let mut pattern = [0u8; PATTERN_WINDOW + 26];
    let mut i = 0;
    while i < pattern.len() {
        pattern[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    pattern
}

/// The pattern bytes at body offsets `offset..offset + len` (`len` capped at
/// [`PATTERN_WINDOW`]).
pub fn pattern(offset: u64, len: usize) -> &'static [u8] {
    let phase = (offset % 26) as usize;
    &PATTERN[phase..phase + len.min(PATTERN_WINDOW)]
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// What the dummy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Any other path: `Hello from Server {port}\n`.
    Hello,
    /// `/health`: `OK\n`.
    Health,
    /// `/big?bytes=N`: N pattern bytes with a Content-Length.
    Big {
        /// Body length.
        bytes: u64,
    },
    /// `/chunked?chunks=N&size=M`: N chunks of M pattern bytes.
    Chunked {
        /// Number of data chunks.
        chunks: u64,
        /// Bytes per chunk.
        size: u64,
    },
    /// `/slow?ms=N`: the hello answer after N ms.
    Slow {
        /// Delay in milliseconds.
        ms: u64,
    },
    /// `/status/N`: status N with body `{N}\n`.
    Status(u16),
    /// `/echo`: the raw request head and body back.
    Echo,
    /// `/ws`: 101 then a byte echo, when the request asks for a WebSocket upgrade.
    Ws,
    /// `/close`: a close-delimited hello.
    Close,
    /// `/headers`: one `name: value\n` line per received field.
    Headers,
}

/// A target the route table cannot serve (bad number, status out of range): a 400 that
/// keeps the connection, since the request framing itself was fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRoute;

/// Maps a request target to a route. Absolute-form targets are routed on their path.
pub fn route(target: &str) -> Result<Route, BadRoute> {
    let target = origin_form(target);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    let number = |name: &str, default: u64| match query_param(query, name) {
        None => Ok(default),
        Some(value) => parse_decimal(value).ok_or(BadRoute),
    };
    Ok(match path {
        "/health" => Route::Health,
        "/big" => Route::Big {
            bytes: number("bytes", DEFAULT_BIG_BYTES)?,
        },
        "/chunked" => {
            let size = number("size", DEFAULT_CHUNK_SIZE)?;
            if size > MAX_GENERATED_CHUNK {
                return Err(BadRoute);
            }
            Route::Chunked {
                chunks: number("chunks", DEFAULT_CHUNKS)?,
                size,
            }
        }
        "/slow" => {
            let ms = number("ms", DEFAULT_SLOW_MS)?;
            if ms > MAX_SLOW_MS {
                return Err(BadRoute);
            }
            Route::Slow { ms }
        }
        "/echo" => Route::Echo,
        "/ws" => Route::Ws,
        "/close" => Route::Close,
        "/headers" => Route::Headers,
        _ => match path.strip_prefix("/status/") {
            Some(code) => match parse_decimal(code) {
                Some(code @ 200..=599) => Route::Status(code as u16),
                _ => return Err(BadRoute),
            },
            None => Route::Hello,
        },
    })
}

/// The path-and-query of an absolute-form target (`http://host/path?q` → `/path?q`).
fn origin_form(target: &str) -> &str {
    match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        _ => target,
    }
}

/// The value of the first `name=value` pair named `name` in a query string (no decoding;
/// a bare `name` has the empty value).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// A non-empty run of ASCII digits as a u64 (no sign, no spaces, no overflow).
pub fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The reason phrases are the proxy's own (one table for both).
pub use goround_mio::http::local::reason;

/// Why a request head cannot be served at all: the answer is an error and a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Syntax or framing error: 400.
    Malformed,
    /// Too many header fields: 431 (a head too long for the buffer is the caller's 431).
    TooLarge,
}

/// What the dummy needs to know about one complete request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Length of the head in bytes, through the blank line.
    pub len: usize,
    /// Empty lines before the request line (RFC 9112 §2.2 lets a server skip them); they
    /// are part of `len` but not of the head `/echo` sends back.
    pub leading: usize,
    /// The method is HEAD: the response has no body.
    pub head_method: bool,
    /// The request is HTTP/1.0.
    pub http10: bool,
    /// How the request body is delimited.
    pub framing: Framing,
    /// The connection stays open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    pub websocket: bool,
    /// Number of header fields, filled into the caller's array.
    pub fields: usize,
    /// What to serve.
    pub route: Result<Route, BadRoute>,
}

/// Parses a request head at the front of `buf`; `Ok(None)` means it is not complete yet.
/// The fields land in `headers[..head.fields]`.
pub fn parse_head<'b>(
    buf: &'b [u8],
    headers: &mut [Header<'b>],
) -> Result<Option<Head>, HeadError> {
    let mut request = Request::new(headers);
    let len = match request.parse(buf) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let http10 = request.version == Some(0);
    let mut content_length = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let (mut close, mut keep_alive, mut upgrade) = (false, false, false);
    let mut expect_continue = false;
    let mut websocket = false;
    for field in request.headers.iter() {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3: a repeated or invalid Content-Length is an unrecoverable
            // framing error; like the proxy, reject rather than guess.
            let value = std::str::from_utf8(field.value).map_err(|_| HeadError::Malformed)?;
            if content_length.is_some() || value.len() > 18 {
                return Err(HeadError::Malformed);
            }
            content_length = Some(parse_decimal(value).ok_or(HeadError::Malformed)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in tokens(field.value) {
                // "A sender MUST NOT apply the chunked transfer coding more than once"
                // (RFC 9112 §7.1): chunked before another coding is an error.
                if chunked {
                    return Err(HeadError::Malformed);
                }
                transfer_encoding = true;
                chunked = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in tokens(field.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                upgrade |= option.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= field.value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("upgrade") {
            websocket |= tokens(field.value).any(|p| p.eq_ignore_ascii_case(b"websocket"));
        }
    }
    let framing = match (content_length, transfer_encoding) {
        (None, false) => Framing::None,
        (Some(n), false) => Framing::Length(n),
        // "If a Transfer-Encoding header field is present in a request and the chunked
        // transfer coding is not the final encoding, the message body length cannot be
        // determined reliably; the server MUST respond with the 400 (Bad Request) status
        // code and then close the connection." (RFC 9112 §6.3). Both headers, or
        // Transfer-Encoding in HTTP/1.0 (§6.1), are smuggling shapes: 400 too.
        (None, true) if chunked && !http10 => Framing::Chunked,
        _ => return Err(HeadError::Malformed),
    };
    let method = request.method.unwrap_or("");
    let target = request.path.unwrap_or("/");
    let leading = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    Ok(Some(Head {
        len,
        leading,
        head_method: method == "HEAD",
        http10,
        framing,
        keep_alive: !close && (!http10 || keep_alive),
        expect_continue,
        websocket: websocket && upgrade,
        fields: request.headers.len(),
        route: route(target),
    }))
}

/// The comma-separated, OWS-trimmed, non-empty elements of a list-valued field.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|item| item.trim_ascii())
        .filter(|item| !item.is_empty())
}

/// The length of the `/headers` body for these fields.
pub fn listing_len(fields: &[Header<'_>]) -> usize {
    fields
        .iter()
        .map(|f| f.name.len() + 2 + f.value.len() + 1)
        .sum()
}

/// Writes the `/headers` body (`name: value\n` per field, in order) into `dst`; returns the
/// bytes written, or `None` if `dst` is too small.
pub fn write_listing(dst: &mut [u8], fields: &[Header<'_>]) -> Option<usize> {
    let mut cursor = Cursor::new(dst);
    for field in fields {
        cursor.put(field.name.as_bytes());
        cursor.put(b": ");
        cursor.put(field.value);
        cursor.put(b"\n");
    }
    cursor.finish()
}

/// How a response body is delimited in the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// `Content-Length: N`.
    Fixed(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: no body (204, 304) or a close-delimited one.
    Omitted,
}

/// The Connection field of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// No Connection field: HTTP/1.1 keep-alive.
    Default,
    /// `Connection: close`: the server closes after this response.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client asked to keep the connection.
    KeepAlive,
}

/// Writes a response head into `dst` and returns its length, or `None` if `dst` is too
/// small. Field order: Content-Type, framing, Connection. No Date (determinism).
pub fn write_head(
    dst: &mut [u8],
    status: u16,
    content_type: Option<&str>,
    length: Length,
    persistence: Persistence,
) -> Option<usize> {
    let mut cursor = Cursor::new(dst);
    cursor.put(b"HTTP/1.1 ");
    cursor.put_decimal(u64::from(status));
    cursor.put(b" ");
    cursor.put(reason(status).as_bytes());
    cursor.put(b"\r\n");
    if let Some(content_type) = content_type {
        cursor.put(b"Content-Type: ");
        cursor.put(content_type.as_bytes());
        cursor.put(b"\r\n");
    }
    match length {
        Length::Fixed(n) => {
            cursor.put(b"Content-Length: ");
            cursor.put_decimal(n);
            cursor.put(b"\r\n");
        }
        Length::Chunked => cursor.put(b"Transfer-Encoding: chunked\r\n"),
        Length::Omitted => {}
    }
    match persistence {
        Persistence::Default => {}
        Persistence::Close => cursor.put(b"Connection: close\r\n"),
        Persistence::KeepAlive => cursor.put(b"Connection: keep-alive\r\n"),
    }
    cursor.put(b"\r\n");
    cursor.finish()
}

/// Writes a chunk-size line (`{hex}\r\n`) into `dst`; returns its length or `None`.
pub fn write_chunk_size(dst: &mut [u8], size: u64) -> Option<usize> {
    let mut cursor = Cursor::new(dst);
    cursor.put_hex(size);
    cursor.put(b"\r\n");
    cursor.finish()
}

/// Writes `{n}\n`, the `/status/N` body, into `dst`; returns its length or `None`.
pub fn write_status_body(dst: &mut [u8], status: u16) -> Option<usize> {
    let mut cursor = Cursor::new(dst);
    cursor.put_decimal(u64::from(status));
    cursor.put(b"\n");
    cursor.finish()
}

/// A bounds-checked writer over a byte slice: formatting without `fmt` or allocation.
struct Cursor<'a> {
    /// Where the bytes go.
    dst: &'a mut [u8],
    /// Bytes written so far.
    len: usize,
    /// A write did not fit; the output is unusable.
    overflow: bool,
}

impl<'a> Cursor<'a> {
    fn new(dst: &'a mut [u8]) -> Self {
        Self {
            dst,
            len: 0,
            overflow: false,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        match self.dst.get_mut(self.len..self.len + bytes.len()) {
            Some(slot) if !self.overflow => {
                slot.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.overflow = true,
        }
    }

    fn put_decimal(&mut self, n: u64) {
        self.put(goround_mio::http::decimal(n, &mut [0; 20]));
    }

    fn put_hex(&mut self, n: u64) {
        self.put(goround_mio::http::hex(n, &mut [0; 20]));
    }

    fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use httparse::EMPTY_HEADER;

    fn parse(raw: &[u8]) -> Result<Option<Head>, HeadError> {
        let mut headers = [EMPTY_HEADER; MAX_HEADERS];
        parse_head(raw, &mut headers)
    }

    fn head_bytes(status: u16, ct: Option<&str>, length: Length, p: Persistence) -> Vec<u8> {
        let mut dst = [0u8; HEAD_RESERVE];
        let n = write_head(&mut dst, status, ct, length, p).unwrap_or(0);
        dst[..n].to_vec()
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param("bytes=10", "bytes"), Some("10"));
        assert_eq!(query_param("a=1&bytes=20&bytes=30", "bytes"), Some("20"));
        assert_eq!(query_param("a=1&b", "b"), Some(""));
        assert_eq!(query_param("a=1=2", "a"), Some("1=2"));
        assert_eq!(query_param("", "a"), None);
        assert_eq!(query_param("ab=1", "a"), None);
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal("18446744073709551616"), None);
        assert_eq!(parse_decimal(""), None);
        assert_eq!(parse_decimal("+1"), None);
        assert_eq!(parse_decimal("1 "), None);
        assert_eq!(parse_decimal("0x10"), None);
    }

    #[test]
    fn route_table() {
        assert_eq!(route("/"), Ok(Route::Hello));
        assert_eq!(route("/anything/else?x=1"), Ok(Route::Hello));
        assert_eq!(route("/health"), Ok(Route::Health));
        assert_eq!(route("/health/"), Ok(Route::Hello));
        assert_eq!(route("/big?bytes=123"), Ok(Route::Big { bytes: 123 }));
        assert_eq!(route("/big"), Ok(Route::Big { bytes: 1 << 20 }));
        assert_eq!(route("/big?bytes=x"), Err(BadRoute));
        assert_eq!(route("/big?bytes="), Err(BadRoute));
        assert_eq!(
            route("/chunked"),
            Ok(Route::Chunked {
                chunks: 3,
                size: 10
            })
        );
        assert_eq!(
            route("/chunked?size=7&chunks=2"),
            Ok(Route::Chunked { chunks: 2, size: 7 })
        );
        assert_eq!(route("/chunked?size=1099511627777"), Err(BadRoute));
        assert_eq!(route("/slow?ms=250"), Ok(Route::Slow { ms: 250 }));
        assert_eq!(route("/slow"), Ok(Route::Slow { ms: 1000 }));
        assert_eq!(route("/slow?ms=86400001"), Err(BadRoute));
        assert_eq!(route("/status/200"), Ok(Route::Status(200)));
        assert_eq!(route("/status/599?x"), Ok(Route::Status(599)));
        assert_eq!(route("/status/199"), Err(BadRoute));
        assert_eq!(route("/status/600"), Err(BadRoute));
        assert_eq!(route("/status/"), Err(BadRoute));
        assert_eq!(route("/status/abc"), Err(BadRoute));
        assert_eq!(route("/status/99999999999999999999"), Err(BadRoute));
        assert_eq!(route("/echo"), Ok(Route::Echo));
        assert_eq!(route("/ws"), Ok(Route::Ws));
        assert_eq!(route("/close"), Ok(Route::Close));
        assert_eq!(route("/headers?x"), Ok(Route::Headers));
        assert_eq!(route("http://example.com/health"), Ok(Route::Health));
        assert_eq!(route("http://example.com"), Ok(Route::Hello));
        assert_eq!(route("*"), Ok(Route::Hello));
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(204), "No Content");
        assert_eq!(reason(404), "Not Found");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(503), "Service Unavailable");
        assert_eq!(reason(299), "Unknown");
        assert_eq!(reason(599), "Unknown");
    }

    #[test]
    fn response_heads() {
        assert_eq!(
            head_bytes(
                200,
                Some("text/plain"),
                Length::Fixed(23),
                Persistence::Default
            ),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n\r\n"
        );
        assert_eq!(
            head_bytes(200, Some("text/plain"), Length::Omitted, Persistence::Close),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            head_bytes(204, None, Length::Omitted, Persistence::KeepAlive),
            b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        assert_eq!(
            head_bytes(299, None, Length::Chunked, Persistence::Default),
            b"HTTP/1.1 299 Unknown\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let longest = head_bytes(
            431,
            Some("application/octet-stream"),
            Length::Fixed(u64::MAX),
            Persistence::KeepAlive,
        );
        assert!(!longest.is_empty() && longest.len() <= HEAD_RESERVE);
        let mut small = [0u8; 10];
        assert_eq!(
            write_head(&mut small, 200, None, Length::Omitted, Persistence::Default),
            None
        );
    }

    #[test]
    fn chunk_sizes_and_status_bodies() {
        let mut dst = [0u8; 32];
        let n = write_chunk_size(&mut dst, 0x1a2b).unwrap_or(0);
        assert_eq!(&dst[..n], b"1a2b\r\n");
        let n = write_chunk_size(&mut dst, 0).unwrap_or(0);
        assert_eq!(&dst[..n], b"0\r\n");
        let n = write_status_body(&mut dst, 418).unwrap_or(0);
        assert_eq!(&dst[..n], b"418\n");
    }

    #[test]
    fn pattern_bytes() {
        assert_eq!(pattern(0, 5), b"abcde");
        assert_eq!(pattern(24, 4), b"yzab");
        assert_eq!(pattern(26 * 1000 + 1, 2), b"bc");
        let window = pattern(25, usize::MAX);
        assert_eq!(window.len(), PATTERN_WINDOW);
        assert!(window
            .iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + ((i + 25) % 26) as u8));
    }

    #[test]
    fn head_keep_alive_rules() {
        let h = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok().flatten();
        assert_eq!(
            h.map(|h| (h.keep_alive, h.http10, h.len)),
            Some((true, false, 27))
        );
        let h = parse(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .ok()
            .flatten();
        assert_eq!(h.map(|h| h.keep_alive), Some(false));
        let h = parse(b"GET / HTTP/1.0\r\n\r\n").ok().flatten();
        assert_eq!(h.map(|h| (h.keep_alive, h.http10)), Some((false, true)));
        let h = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .ok()
            .flatten();
        assert_eq!(h.map(|h| h.keep_alive), Some(true));
        let h = parse(b"HEAD /health HTTP/1.1\r\n\r\n").ok().flatten();
        assert_eq!(
            h.map(|h| (h.head_method, h.route)),
            Some((true, Ok(Route::Health)))
        );
    }

    #[test]
    fn head_framing_rules() {
        let framing = |raw: &[u8]| parse(raw).map(|h| h.map(|h| h.framing));
        assert_eq!(framing(b"GET / HTTP/1.1\r\n\r\n"), Ok(Some(Framing::None)));
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n"),
            Ok(Some(Framing::Length(42)))
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Ok(Some(Framing::Chunked))
        );
        let malformed: [&[u8]; 8] = [
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ];
        for raw in malformed {
            assert_eq!(parse(raw), Err(HeadError::Malformed), "{raw:?}");
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n"), Err(HeadError::Malformed));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(HeadError::TooLarge));
    }

    #[test]
    fn head_expect_upgrade_and_leading_lines() {
        let h =
            parse(b"\r\nPUT /echo HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
                .ok()
                .flatten();
        assert_eq!(h.map(|h| (h.leading, h.expect_continue)), Some((2, true)));
        let h = parse(
            b"GET /ws HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        )
        .ok()
        .flatten();
        assert_eq!(h.map(|h| h.websocket), Some(true));
        let h = parse(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")
            .ok()
            .flatten();
        assert_eq!(h.map(|h| h.websocket), Some(false));
    }

    #[test]
    fn header_listing() {
        let mut headers = [EMPTY_HEADER; MAX_HEADERS];
        let raw = b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
        let fields = match parse_head(raw, &mut headers) {
            Ok(Some(head)) => head.fields,
            _ => 0,
        };
        let fields = &headers[..fields];
        let mut dst = [0u8; 64];
        let n = write_listing(&mut dst, fields).unwrap_or(0);
        assert_eq!(&dst[..n], b"Host: a\nX-Forwarded-For: 1.2.3.4\n");
        assert_eq!(listing_len(fields), n);
    }
}
