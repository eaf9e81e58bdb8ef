//! Request heads: our own strict scan of the head bytes (RFC 9112), httparse for the field
//! list, then the framing, Host and connection rules httparse leaves to us.
//!
//! httparse is lenient on purpose (it accepts bare LF line endings, for one), and a proxy that
//! reads a head differently from the server behind it is a request-smuggling proxy. So every
//! byte of the head is checked here first; httparse then only splits what we already accepted.

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

/// How far an incomplete request head has been checked, kept by the caller between reads so
/// that [`parse_resuming`] looks only at what is new: a head that trickles in costs time in
/// proportion to its length, not to its length squared.
///
/// Packed in four bytes, since a session keeps one per connection: 0 is "nothing known yet";
/// with the top bit set, the low 31 bits count bytes that hold no end of the request line;
/// else the request line and `fields` field lines (bits 21 to 30) are checked and the next
/// line starts at `line` (bits 0 to 20). Progress that does not fit (a line past 2 MiB, more
/// than 1,023 fields) is not kept: the next call starts over, as without progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadProgress(u32);

impl HeadProgress {
    const LINE_FLAG: u32 = 1 << 31;
    const LINE_BITS: u32 = 21;
    const FIELDS_MAX: usize = (1 << (31 - Self::LINE_BITS)) - 1;

    /// Nothing known yet.
    pub const START: HeadProgress = HeadProgress(0);

    /// The first `seen` bytes hold no end of the request line.
    fn in_line(seen: usize) -> HeadProgress {
        match u32::try_from(seen) {
            Ok(seen) if seen < Self::LINE_FLAG => HeadProgress(Self::LINE_FLAG | seen),
            _ => Self::START,
        }
    }

    /// The request line and `fields` field lines are checked; the next line starts at `line`.
    fn in_fields(line: usize, fields: usize) -> HeadProgress {
        if line == 0 || line >= 1 << Self::LINE_BITS || fields > Self::FIELDS_MAX {
            return Self::START;
        }
        HeadProgress(((fields as u32) << Self::LINE_BITS) | line as u32)
    }

    /// See [`in_line`](Self::in_line).
    fn line_seen(self) -> usize {
        if self.0 & Self::LINE_FLAG != 0 {
            (self.0 & !Self::LINE_FLAG) as usize
        } else {
            0
        }
    }

    /// See [`in_fields`](Self::in_fields): (line, fields).
    fn field_lines(self) -> Option<(usize, usize)> {
        let line = (self.0 & ((1 << Self::LINE_BITS) - 1)) as usize;
        (self.0 & Self::LINE_FLAG == 0 && line != 0)
            .then_some((line, (self.0 >> Self::LINE_BITS) as usize))
    }
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

    if let Some((line, fields)) = progress.field_lines() {
        // Only the field lines from `line` on are new: while the head is still incomplete,
        // check those alone. Once it is complete, the full parse below runs once.
        match scan_fields(limited, line, fields, limits.max_fields) {
            Ok(Scan::Partial { line, fields }) => {
                *progress = HeadProgress::in_fields(line, fields);
                return incomplete();
            }
            Ok(Scan::Complete { .. }) => {}
            Err(ScanError::Invalid(why)) => return Err(RequestError::BadRequest(why)),
            Err(ScanError::TooManyFields) => return Err(RequestError::HeaderTooLarge),
        }
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

/// Why the field section of a head was refused by [`scan_fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// A byte-level rule is broken; the string names it.
    Invalid(&'static str),
    /// More field lines than allowed.
    TooManyFields,
}

/// What [`parse_fields`] found.
pub(crate) enum Fields<'h, 'b> {
    /// The head ends at this offset; its field lines, in order; which of the first 64 are not
    /// written `name: value` CRLF (see [`line_shapes`]).
    Complete(usize, &'h [httparse::Header<'b>], u64),
    /// The head is not complete (and nothing in it so far is refused): its lines before
    /// `line`, `fields` of them, are checked.
    Partial { line: usize, fields: usize },
    /// The head has this many field lines, more than the slots given: call again with more.
    Slots(usize),
    /// More field lines than `max_fields`.
    TooMany,
    /// A byte-level rule is broken; the string names it.
    Invalid(&'static str),
}

/// Parse the field section of `buf` from `start` into `headers`, with our rules on top of
/// httparse's: one walk over the bytes on the common path.
///
/// httparse's defaults already refuse everything [`scan_fields`] refuses except a bare LF
/// ending a line (obs-fold, whitespace before a colon, a line without a colon, a name that is
/// not a token, a control byte or DEL in a value, a bare CR). So httparse splits the fields,
/// and a check over the field lines, not the bytes, requires every line to end in CRLF: the
/// two bytes before each field name after the first, and the four that end the head. Anything
/// unusual (an error, too few slots, an incomplete head) is handed to `scan_fields`, whose
/// answer is the precise one, so the outcome is the same as scanning first.
pub(crate) fn parse_fields<'h, 'b>(
    buf: &'b [u8],
    start: usize,
    max_fields: usize,
    headers: &'h mut [httparse::Header<'b>],
) -> Fields<'h, 'b> {
    let slots = headers.len();
    // (`start` may lie beyond a `buf` cut at the head limit.)
    let Some(section) = buf.get(start..) else {
        return Fields::Partial {
            line: start,
            fields: 0,
        };
    };
    if let Ok(httparse::Status::Complete((len, fields))) = httparse::parse_headers(section, headers)
    {
        let end = start + len;
        if fields.len() > max_fields {
            return Fields::TooMany;
        }
        if let Some(reformat) = line_shapes(buf, start, end, fields) {
            return Fields::Complete(end, fields, reformat);
        }
    }
    match scan_fields(buf, start, 0, max_fields) {
        Ok(Scan::Complete { fields, .. }) if fields > slots => Fields::Slots(fields),
        // Our scan accepted a complete head that httparse refused (or the reverse): a gap in
        // one of the two. Refusing is the safe side of that disagreement.
        Ok(Scan::Complete { .. }) => Fields::Invalid("field section refused by httparse"),
        Ok(Scan::Partial { line, fields }) => Fields::Partial { line, fields },
        Err(ScanError::Invalid(why)) => Fields::Invalid(why),
        Err(ScanError::TooManyFields) => Fields::TooMany,
    }
}

/// Whether each line of the field section `buf[start..end]` that httparse split into `fields`
/// ends in CRLF (httparse also takes a bare LF): `None` if one does not. Else, one bit for each
/// of the first 64 fields whose line is not `name:` SP-or-HTAB `value` CRLF (other whitespace
/// around the value), which the rewriters then write out again instead of copying it.
fn line_shapes(
    buf: &[u8],
    start: usize,
    end: usize,
    fields: &[httparse::Header<'_>],
) -> Option<u64> {
    let crlf_before = |at: usize| at >= 2 && buf.get(at - 2..at) == Some(b"\r\n");
    if fields.is_empty() {
        return (end == start + 2 && crlf_before(end)).then_some(0);
    }
    if !crlf_before(end) {
        return None;
    }
    // Addresses, not offsets: `headers` point into `buf`, and only equalities are tested.
    let base = buf.as_ptr() as usize;
    let blank_line = base.wrapping_add(end - 2);
    let mut reformat = 0;
    for (i, f) in fields.iter().enumerate() {
        // Where the next line starts: the next name, or the blank line.
        let next = fields
            .get(i + 1)
            .map_or(blank_line, |n| n.name.as_ptr() as usize);
        if !crlf_before(next.wrapping_sub(base)) {
            return None;
        }
        // One byte between the colon and the value (httparse skips only SP and HTAB there),
        // and only the CRLF after it.
        let value = f.value.as_ptr() as usize;
        let canonical = value == (f.name.as_ptr() as usize).wrapping_add(f.name.len() + 2)
            && value.wrapping_add(f.value.len() + 2) == next;
        if !canonical && i < 64 {
            reformat |= 1 << i;
        }
    }
    Some(reformat)
}

/// Check the field lines starting at `pos` (after `fields` field lines already checked) up to
/// the empty line that ends the head, and say where the head ends and how many field lines it
/// has, or, when `buf` ends first, where the incomplete line starts.
///
/// What is refused, and httparse would otherwise accept or read differently:
/// - a bare LF or a bare CR anywhere (RFC 9112 §2.2 allows a recipient to accept a bare LF; we
///   do not, because a server behind us that does not is a smuggling vector);
/// - obs-fold, a field line starting with SP or HTAB (RFC 9112 §5.2: "A server that receives an
///   obs-fold in a request message ... MUST either reject the message by sending a 400");
/// - whitespace between the field name and the colon (RFC 9112 §5.1: "A server MUST reject, with
///   a response status code of 400 (Bad Request), any received request message that contains
///   whitespace between a header field name and colon");
/// - a line without a colon, an empty name, a name that is not a token;
/// - a control character (other than HTAB) or DEL in a value.
pub(crate) fn scan_fields(
    buf: &[u8],
    mut pos: usize,
    mut fields: usize,
    max_fields: usize,
) -> Result<Scan, ScanError> {
    use ScanError::Invalid;
    loop {
        // Where this line starts, and the count before it: where a later call resumes.
        let partial = Scan::Partial { line: pos, fields };
        let Some(&first) = buf.get(pos) else {
            return Ok(partial);
        };
        match first {
            b'\r' => {
                return match buf.get(pos + 1) {
                    None => Ok(partial),
                    Some(b'\n') => Ok(Scan::Complete {
                        end: pos + 2,
                        fields,
                    }),
                    Some(_) => Err(Invalid("bare CR in the field section")),
                }
            }
            b'\n' => return Err(Invalid("bare LF in the field section")),
            b' ' | b'\t' => return Err(Invalid("obs-fold or whitespace before a field name")),
            b':' => return Err(Invalid("empty field name")),
            _ => {}
        }
        fields += 1;
        if fields > max_fields {
            return Err(ScanError::TooManyFields);
        }
        // The name, up to the colon.
        let name_len = match buf[pos..].iter().position(|&b| !is_tchar(b)) {
            Some(n) => n,
            None => return Ok(partial),
        };
        pos += name_len;
        match buf[pos] {
            b':' => pos += 1,
            b' ' | b'\t' => return Err(Invalid("whitespace between field name and colon")),
            b'\r' | b'\n' => return Err(Invalid("field line without a colon")),
            _ => return Err(Invalid("invalid byte in a field name")),
        }
        match scan_value(buf, pos)? {
            Some(next) => pos = next,
            None => return Ok(partial),
        }
    }
}

/// What [`scan_fields`] found in a field section that broke no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The head ends at `end`, after `fields` field lines.
    Complete { end: usize, fields: usize },
    /// The buffer ends inside the line starting at `line`, after `fields` complete field lines
    /// (all of them checked): a later call with more bytes may resume there.
    Partial { line: usize, fields: usize },
}

/// Check a field value starting at `pos` (field-vchar, SP and HTAB) up to its CRLF, and return
/// where the next line starts. `Ok(None)`: `buf` ends first.
fn scan_value(buf: &[u8], mut pos: usize) -> Result<Option<usize>, ScanError> {
    use ScanError::Invalid;
    loop {
        // Eight bytes at a time while none is a control byte or DEL: most values are plain
        // text, and this is the hot loop of every head.
        while let Some(word) = buf.get(pos..pos + 8) {
            let Ok(word) = <[u8; 8]>::try_from(word) else {
                break;
            };
            let special = control_or_del(u64::from_le_bytes(word));
            if special != 0 {
                // The lowest flagged byte is a true one (see `control_or_del`): go straight to it.
                pos += (special.trailing_zeros() / 8) as usize;
                break;
            }
            pos += 8;
        }
        // Then byte by byte up to the first control byte or DEL (HTAB goes back to the words).
        loop {
            let Some(&b) = buf.get(pos) else {
                return Ok(None);
            };
            pos += 1;
            match b {
                b' '..=b'~' | 0x80..=0xff => {}
                b'\t' => break,
                b'\r' => {
                    return match buf.get(pos) {
                        None => Ok(None),
                        Some(b'\n') => Ok(Some(pos + 1)),
                        Some(_) => Err(Invalid("bare CR in a field value")),
                    }
                }
                b'\n' => return Err(Invalid("bare LF ends a field line")),
                _ => return Err(Invalid("control character in a field value")),
            }
        }
    }
}

/// Non-zero when any of the eight bytes of `w` (little-endian) is below 0x20 or is 0x7F (DEL),
/// with the high bit of that byte set. The classic SWAR tests: `(x - 0x01..) & !x & 0x80..`
/// flags the zero bytes of `x`, and with 0x20 instead of 0x01 the bytes below 0x20;
/// `w ^ 0x7f..` turns DEL into zero. A borrow can flag a byte above a true one, never below: so
/// the lowest flag is exact.
fn control_or_del(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    let x = w ^ (ONES * 0x7f);
    let del = x.wrapping_sub(ONES) & !x & HIGHS;
    below_space | del
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
        let close = v.iter().position(|&b| b == b']')?;
        let (literal, rest) = v.split_at(close + 1);
        if !is_ip_literal(&literal[1..literal.len() - 1]) {
            return None;
        }
        (literal, rest)
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
mod tests {
    use super::*;
    use RequestError::*;

    /// The byte rule `scan_value` applies, stated plainly: the reference for its word path.
    fn reference_value_end(buf: &[u8], pos: usize) -> Result<Option<usize>, ScanError> {
        use ScanError::Invalid;
        let rest = &buf[pos..];
        let plain = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80;
        let Some(i) = rest.iter().position(|&b| !plain(b)) else {
            return Ok(None);
        };
        match (rest[i], rest.get(i + 1)) {
            (b'\r', None) => Ok(None),
            (b'\r', Some(b'\n')) => Ok(Some(pos + i + 2)),
            (b'\r', Some(_)) => Err(Invalid("bare CR in a field value")),
            (b'\n', _) => Err(Invalid("bare LF ends a field line")),
            _ => Err(Invalid("control character in a field value")),
        }
    }

    #[test]
    fn control_or_del_flags_exactly_the_first_special_byte() {
        // Every byte value at every position of a word, among fillers that stress borrows
        // (0x00, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff).
        for filler in [0x00u8, 0x1f, 0x20, 0x41, 0x7e, 0x7f, 0x80, 0xff] {
            for at in 0..8 {
                for b in 0..=255u8 {
                    let mut word = [b'a'; 8];
                    word[at] = b;
                    if at + 1 < 8 {
                        word[at + 1..].fill(filler);
                    }
                    let special = |x: u8| x < 0x20 || x == 0x7f;
                    let first = word.iter().position(|&x| special(x));
                    let got = control_or_del(u64::from_le_bytes(word));
                    let got_first = (got != 0).then(|| (got.trailing_zeros() / 8) as usize);
                    assert_eq!(got_first, first, "{word:02x?}");
                }
            }
        }
    }

    #[test]
    fn value_scan_agrees_with_the_byte_rule() {
        // Values of every length up to 20 with one byte of every value at every position,
        // then CRLF, a truncated end, or a bare CR.
        for len in 0..20usize {
            for at in 0..len.max(1) {
                for b in 0..=255u8 {
                    let mut value: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                    if at < len {
                        value[at] = b;
                    }
                    for tail in [&b"\r\nX"[..], b"", b"\r", b"\rX"] {
                        let mut buf = b"N:".to_vec();
                        buf.extend_from_slice(&value);
                        buf.extend_from_slice(tail);
                        assert_eq!(
                            scan_value(&buf, 2),
                            reference_value_end(&buf, 2),
                            "{:?}",
                            String::from_utf8_lossy(&buf)
                        );
                    }
                }
            }
        }
    }

    const L: Limits = Limits::DEFAULT;

    /// What `parse` says of `buf`, as (head length) or the error's status (0 for incomplete).
    fn outcome(r: Result<Option<Request<'_, '_>>, RequestError>) -> Result<usize, u16> {
        match r {
            Ok(Some(req)) => Ok(req.head_len),
            Ok(None) => Err(0),
            Err(e) => Err(e.status()),
        }
    }

    #[test]
    fn a_head_parsed_as_it_grows_reads_as_parsed_at_once() {
        let mut many = String::from("GET /x HTTP/1.1\r\nHost: a\r\n");
        for i in 0..60 {
            many.push_str(&format!("X-F{i}: {}\r\n", "v".repeat(i)));
        }
        many.push_str("\r\n");
        let heads: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n".to_vec(),
            b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n".to_vec(),
            many.into_bytes(),
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nY: b\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000)).into_bytes(),
            format!(
                "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
                "b".repeat(40000)
            )
            .into_bytes(),
        ];
        let small = Limits {
            max_fields: 20,
            max_head: 600,
            max_request_line: 100,
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
                        let once = outcome(parse(&head[..cut], limits, &mut a));
                        let grown =
                            outcome(parse_resuming(&head[..cut], limits, &mut b, &mut progress));
                        assert_eq!(
                            grown,
                            once,
                            "step {step}, {cut} bytes of {:?}",
                            String::from_utf8_lossy(&head[..cut.min(80)])
                        );
                        if once != Err(0) || cut == head.len() {
                            break;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn head_progress_points_at_the_first_line_not_checked() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Ag";
        let mut hs = [httparse::EMPTY_HEADER; 8];
        let mut progress = HeadProgress::START;
        assert_eq!(
            outcome(parse_resuming(&head[..10], &L, &mut hs, &mut progress)),
            Err(0)
        );
        assert_eq!(progress.line_seen(), 10);
        assert_eq!(
            outcome(parse_resuming(head, &L, &mut hs, &mut progress)),
            Err(0)
        );
        let user_agent = head.len() - b"User-Ag".len();
        assert_eq!(progress.field_lines(), Some((user_agent, 2)));
        // What does not fit is not kept.
        assert_eq!(HeadProgress::in_fields(3 << 20, 1), HeadProgress::START);
        assert_eq!(HeadProgress::in_fields(100, 5000), HeadProgress::START);
        assert_eq!(
            HeadProgress::in_fields(100, 1023).field_lines(),
            Some((100, 1023))
        );
        assert_eq!(HeadProgress::in_line(12).line_seen(), 12);
        assert_eq!(HeadProgress::START.field_lines(), None);
    }

    /// Parse `buf` completely and hand the request to `f`.
    fn with<R>(buf: &[u8], f: impl FnOnce(&Request<'_, '_>) -> R) -> R {
        let mut hs = [httparse::EMPTY_HEADER; 100];
        match parse(buf, &L, &mut hs) {
            Ok(Some(req)) => f(&req),
            other => panic!("{:?} for {:?}", other, String::from_utf8_lossy(buf)),
        }
    }

    fn info(buf: &[u8]) -> RequestInfo {
        with(buf, |r| r.info)
    }

    fn framing(buf: &[u8]) -> Framing {
        with(buf, |r| r.framing)
    }

    fn result_with(buf: &[u8], limits: &Limits) -> Result<Option<usize>, RequestError> {
        let mut hs = [httparse::EMPTY_HEADER; 128];
        parse(buf, limits, &mut hs).map(|r| r.map(|r| r.head_len))
    }

    fn err(buf: &[u8]) -> RequestError {
        match result_with(buf, &L) {
            Err(e) => e,
            ok => panic!("{:?} for {:?}", ok, String::from_utf8_lossy(buf)),
        }
    }

    fn is_bad(buf: &[u8]) -> bool {
        matches!(result_with(buf, &L), Err(BadRequest(_)))
    }

    /// A GET with the given field lines.
    fn get(fields: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
    }

    fn post(fields: &str) -> Vec<u8> {
        format!("POST /p HTTP/1.1\r\nHost: a\r\n{fields}\r\n").into_bytes()
    }

    #[test]
    fn simple_get_is_parsed_exactly() {
        let buf = b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nAccept:  */*  \r\nX-Empty:\r\n\r\nBODY";
        with(buf, |r| {
            assert_eq!(r.head_len, buf.len() - 4);
            assert_eq!(r.method, "GET");
            assert_eq!(r.target, "/a/b?c=d");
            assert_eq!(r.path, "/a/b?c=d");
            assert_eq!(r.host, b"example.com:8080");
            assert_eq!(r.version, Version::Http11);
            assert_eq!(r.framing, Framing::None);
            assert_eq!(r.headers.len(), 3);
            assert_eq!(
                (r.headers[1].name, r.headers[1].value),
                ("Accept", &b"*/*"[..])
            );
            assert_eq!(
                (r.headers[2].name, r.headers[2].value),
                ("X-Empty", &b""[..])
            );
            assert_eq!(
                r.info,
                RequestInfo {
                    version: Version::Http11,
                    framing: Framing::None,
                    keep_alive: true,
                    expect_continue: false,
                    upgrade_websocket: false,
                    is_head: false,
                    idempotent: true,
                }
            );
        });
    }

    #[test]
    fn every_proper_prefix_is_incomplete() {
        let buf = b"\r\nPOST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        for n in 0..buf.len() {
            assert_eq!(result_with(&buf[..n], &L), Ok(None), "prefix {n}");
        }
        assert_eq!(result_with(buf, &L), Ok(Some(buf.len())));
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        with(buf, |r| {
            assert_eq!(r.head_len, buf.len());
            assert_eq!(r.method, "GET");
        });
        let mut many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
        many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(result_with(&many, &L), Ok(Some(many.len())));
        let mut too_many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
        too_many.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(is_bad(&too_many));
        assert!(is_bad(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(is_bad(b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn request_line_over_the_limit_is_414_even_incomplete() {
        let limits = Limits {
            max_request_line: 20,
            ..L
        };
        // 21 bytes and no line end yet: the line is already longer than 20.
        assert_eq!(
            result_with(b"GET /1234567890123456", &limits),
            Err(UriTooLong)
        );
        assert_eq!(result_with(b"GET /123456789012345", &limits), Ok(None));
        assert_eq!(
            result_with(b"GET /123456789012 HTTP/1.1\r\nHost: a\r\n\r\n", &limits),
            Err(UriTooLong)
        );
        // Exactly max_request_line bytes before the CRLF is fine.
        let ok = b"GET /1234 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            result_with(
                &ok[..],
                &Limits {
                    max_request_line: 18,
                    ..L
                }
            ),
            Ok(Some(ok.len()))
        );
        assert_eq!(
            result_with(
                &ok[..],
                &Limits {
                    max_request_line: 17,
                    ..L
                }
            ),
            Err(UriTooLong)
        );
    }

    #[test]
    fn head_over_the_limit_is_431() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: 123456\r\n\r\n";
        let exact = Limits {
            max_head: buf.len(),
            ..L
        };
        assert_eq!(result_with(buf, &exact), Ok(Some(buf.len())));
        let smaller = Limits {
            max_head: buf.len() - 1,
            ..L
        };
        assert_eq!(result_with(buf, &smaller), Err(HeaderTooLarge));
        // Incomplete, and already as long as the limit allows: it can only end up too large.
        assert_eq!(
            result_with(&buf[..buf.len() - 1], &smaller),
            Err(HeaderTooLarge)
        );
        assert_eq!(result_with(&buf[..buf.len() - 2], &smaller), Ok(None));
        // A request line ending past max_head (max_request_line > max_head).
        let odd = Limits {
            max_head: 10,
            max_request_line: 100,
            ..L
        };
        assert_eq!(
            result_with(b"GET /abcdefgh HTTP/1.1\r\n", &odd),
            Err(HeaderTooLarge)
        );
    }

    #[test]
    fn more_fields_than_max_fields_is_431() {
        let limits = Limits { max_fields: 3, ..L };
        let three = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(result_with(three, &limits), Ok(Some(three.len())));
        let four = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(result_with(four, &limits), Err(HeaderTooLarge));
        // Even before the head is complete.
        assert_eq!(
            result_with(&four[..four.len() - 4], &limits),
            Err(HeaderTooLarge)
        );
        // Fewer slots than field lines: the caller is told how many to come back with.
        let mut hs = [httparse::EMPTY_HEADER; 2];
        assert_eq!(
            parse(three, &L, &mut hs).map(|r| r.map(|r| r.head_len)),
            Err(RequestError::Slots(3))
        );
        assert_eq!(RequestError::Slots(3).status(), 431);
        let mut hs = [httparse::EMPTY_HEADER; 3];
        assert_eq!(
            parse(three, &L, &mut hs).map(|r| r.map(|r| r.head_len)),
            Ok(Some(three.len()))
        );
    }

    #[test]
    fn bare_lf_anywhere_is_400() {
        assert!(is_bad(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\n\r\n"));
        assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\n\n"));
        assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n"));
        // Detected before the head is complete.
        assert!(is_bad(b"GET / HTTP/1.1\r\nX: a\n"));
    }

    #[test]
    fn bare_cr_anywhere_is_400() {
        assert!(is_bad(b"GET / HTTP/1.1\rHost: a\r\n\r\n"));
        assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"));
        assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"));
        assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\n\rX"));
        assert!(is_bad(b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn obs_fold_is_400() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
            BadRequest("obs-fold or whitespace before a field name")
        );
        assert!(is_bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n"));
        assert!(is_bad(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"));
    }

    #[test]
    fn control_characters_in_values_are_400() {
        for c in (0u8..0x20)
            .filter(|&c| c != b'\t' && c != b'\r' && c != b'\n')
            .chain([0x7f])
        {
            let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: a".to_vec();
            buf.push(c);
            buf.extend_from_slice(b"b\r\n\r\n");
            assert_eq!(
                err(&buf),
                BadRequest("control character in a field value"),
                "byte {c:#x}"
            );
        }
        // HTAB and obs-text are field-vchar.
        with(
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xff\x80\r\n\r\n",
            |r| {
                assert_eq!(r.headers[1].value, b"a\tb\xff\x80");
            },
        );
    }

    #[test]
    fn whitespace_before_colon_is_400() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            BadRequest("whitespace between field name and colon")
        );
        assert!(is_bad(&get("Content-Length\t: 5\r\n")));
    }

    #[test]
    fn malformed_field_names_are_400() {
        assert_eq!(
            err(&get("NoColon\r\n")),
            BadRequest("field line without a colon")
        );
        assert_eq!(err(&get(": v\r\n")), BadRequest("empty field name"));
        assert_eq!(
            err(&get("A@B: v\r\n")),
            BadRequest("invalid byte in a field name")
        );
        assert_eq!(
            err(&get("A\x00B: v\r\n")),
            BadRequest("invalid byte in a field name")
        );
        assert!(is_bad(&get("\u{e9}: v\r\n")));
    }

    #[test]
    fn request_line_shape_is_strict() {
        assert!(is_bad(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(is_bad(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(is_bad(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"));
        assert!(is_bad(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(is_bad(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(is_bad(b"GET /\r\nHost: a\r\n\r\n"));
        assert!(is_bad(b"GET\r\nHost: a\r\n\r\n"));
        assert_eq!(
            err(b"GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
            BadRequest("method is not a token")
        );
        assert_eq!(
            err(b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n"),
            BadRequest("invalid byte in the request target")
        );
        assert!(is_bad(b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(is_bad(b"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_eq!(
            err(b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n"),
            BadRequest("fragment in the request target")
        );
    }

    #[test]
    fn versions() {
        let v = |line: &str| {
            let mut hs = [httparse::EMPTY_HEADER; 8];
            let buf = format!("GET / {line}\r\nHost: a\r\n\r\n");
            parse(buf.as_bytes(), &L, &mut hs).map(|r| r.map(|r| r.version))
        };
        assert_eq!(v("HTTP/1.0"), Ok(Some(Version::Http10)));
        assert_eq!(v("HTTP/1.1"), Ok(Some(Version::Http11)));
        assert_eq!(v("HTTP/1.2"), Ok(Some(Version::Http11)));
        assert_eq!(v("HTTP/1.9"), Ok(Some(Version::Http11)));
        assert_eq!(v("HTTP/2.0"), Err(VersionNotSupported));
        assert_eq!(v("HTTP/0.9"), Err(VersionNotSupported));
        assert_eq!(v("HTTP/3.0"), Err(VersionNotSupported));
        for garbage in [
            "HTTP/1",
            "http/1.1",
            "HTTP/1.1x",
            "HTTP/11.1",
            "HTTP/1.a",
            "HTTPS/1.1",
            "",
            "HTTP/1,1",
        ] {
            assert_eq!(
                v(garbage),
                Err(BadRequest("malformed HTTP version")),
                "{garbage:?}"
            );
        }
        assert_eq!(VersionNotSupported.status(), 505);
    }

    #[test]
    fn connect_is_405() {
        assert_eq!(
            err(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            MethodNotAllowed
        );
        assert_eq!(MethodNotAllowed.status(), 405);
        // Methods are case-sensitive: `connect` is some other (unknown) method.
        with(b"connect / HTTP/1.1\r\nHost: a\r\n\r\n", |r| {
            assert_eq!(r.method, "connect")
        });
    }

    #[test]
    fn asterisk_form_only_for_options() {
        with(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", |r| {
            assert_eq!((r.path, r.target, r.host), ("*", "*", &b"a"[..]));
            assert!(r.info.idempotent);
        });
        assert_eq!(
            err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            BadRequest("asterisk-form target for a method other than OPTIONS")
        );
    }

    #[test]
    fn absolute_form_replaces_host_and_reduces_path() {
        with(
            b"GET http://Example.com:81/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
            |r| {
                assert_eq!(r.host, b"Example.com:81");
                assert_eq!(r.path, "/x?y");
                assert_eq!(r.target, "http://Example.com:81/x?y");
            },
        );
        with(
            b"GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: other\r\n\r\n",
            |r| {
                assert_eq!((r.host, r.path), (&b"[::1]:8443"[..], "/"));
            },
        );
        with(b"OPTIONS http://h HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
            assert_eq!(r.path, "*")
        });
        with(b"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", |r| {
            assert_eq!(r.path, "?q=1")
        });
        with(b"GET http://h/ HTTP/1.0\r\n\r\n", |r| {
            assert_eq!((r.host, r.path), (&b"h"[..], "/"))
        });
    }

    #[test]
    fn bad_absolute_forms_are_400() {
        for target in [
            "ftp://h/x",
            "http:/h/x",
            "http:///x",
            "http://:80/x",
            "http://user@h/x",
            "http://h:8x/",
            "http://[::1/",
            "h/x",
            "x",
        ] {
            let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert!(is_bad(buf.as_bytes()), "{target}");
        }
        // The Host field is still checked with an absolute-form target.
        assert!(is_bad(b"GET http://h/ HTTP/1.1\r\nHost: a b\r\n\r\n"));
        assert!(is_bad(
            b"GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n"
        ));
        assert!(is_bad(b"GET http://h/ HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn host_field_rules() {
        assert_eq!(
            err(b"GET / HTTP/1.1\r\n\r\n"),
            BadRequest("HTTP/1.1 request without Host")
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            BadRequest("more than one Host field")
        );
        assert!(is_bad(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"));
        with(b"GET / HTTP/1.0\r\n\r\n", |r| assert_eq!(r.host, b""));
        with(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", |r| {
            assert_eq!(r.host, b"")
        });
        for good in [
            "a.b-c_d~e",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::7]:8080",
            "x%41y",
            "a!$&'()*+,;=",
            "h:",
            "[v1.a:b]",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            with(buf.as_bytes(), |r| assert_eq!(r.host, good.as_bytes()));
        }
        for bad in [
            "a b", "u@h", "h:p", "h:80:81", "[::g]", "[::1]x", "[::1", "x%4", "x%zz", "h/p",
            "[v.x]", "[v1.]", "h\"", "\u{e9}",
        ] {
            let buf = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(
                err(buf.as_bytes()),
                BadRequest("invalid Host field"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn content_length_framing() {
        assert_eq!(framing(&post("Content-Length: 0\r\n")), Framing::Length(0));
        assert_eq!(
            framing(&post("Content-Length: 42\r\n")),
            Framing::Length(42)
        );
        assert_eq!(
            framing(&post("content-length:007 \r\n")),
            Framing::Length(7)
        );
        assert_eq!(
            framing(&post("Content-Length: 18446744073709551615\r\n")),
            Framing::Length(u64::MAX)
        );
        assert_eq!(framing(&post("")), Framing::None);
        for bad in [
            "+5",
            "-1",
            "",
            "5 5",
            "5, 5",
            "5,5",
            "0x10",
            "18446744073709551616",
            "1e3",
        ] {
            let buf = post(&format!("Content-Length: {bad}\r\n"));
            assert_eq!(err(&buf), BadRequest("invalid Content-Length"), "{bad:?}");
        }
        assert_eq!(
            err(&post("Content-Length: 5\r\nContent-Length: 5\r\n")),
            BadRequest("more than one Content-Length field")
        );
    }

    #[test]
    fn transfer_encoding_framing() {
        assert_eq!(
            framing(&post("Transfer-Encoding: chunked\r\n")),
            Framing::Chunked
        );
        assert_eq!(
            framing(&post("transfer-encoding:  Chunked \r\n")),
            Framing::Chunked
        );
        assert_eq!(
            framing(&post("Transfer-Encoding: ,chunked,\r\n")),
            Framing::Chunked
        );
        let cases: &[(&str, RequestError)] = &[
            ("Transfer-Encoding: gzip, chunked\r\n", NotImplemented),
            ("Transfer-Encoding: gzip,chunked\r\n", NotImplemented),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                NotImplemented,
            ),
            ("Transfer-Encoding: x-foo;a=1 , chunked\r\n", NotImplemented),
            (
                "Transfer-Encoding: chunked, gzip\r\n",
                BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "Transfer-Encoding: identity\r\n",
                BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "Transfer-Encoding: gzip\r\n",
                BadRequest("Transfer-Encoding does not end in chunked"),
            ),
            (
                "Transfer-Encoding: chunked, chunked\r\n",
                BadRequest("chunked applied more than once"),
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                BadRequest("chunked applied more than once"),
            ),
            (
                "Transfer-Encoding: gzip, chunked, chunked\r\n",
                BadRequest("chunked applied more than once"),
            ),
            (
                "Transfer-Encoding:\r\n",
                BadRequest("malformed Transfer-Encoding"),
            ),
            (
                "Transfer-Encoding: , ,\r\n",
                BadRequest("malformed Transfer-Encoding"),
            ),
            (
                "Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n",
                BadRequest("malformed Transfer-Encoding"),
            ),
            (
                "Transfer-Encoding: chunked;x=1\r\n",
                BadRequest("malformed Transfer-Encoding"),
            ),
            (
                "Transfer-Encoding: \"chunked\"\r\n",
                BadRequest("malformed Transfer-Encoding"),
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                BadRequest("both Content-Length and Transfer-Encoding"),
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                BadRequest("both Content-Length and Transfer-Encoding"),
            ),
        ];
        for (fields, want) in cases {
            assert_eq!(&err(&post(fields)), want, "{fields:?}");
        }
        assert_eq!(
            err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        );
        assert_eq!(NotImplemented.status(), 501);
    }

    #[test]
    fn keep_alive_per_version() {
        assert!(info(&get("")).keep_alive);
        assert!(!info(&get("Connection: close\r\n")).keep_alive);
        assert!(!info(&get("Connection: Foo, CLOSE\r\n")).keep_alive);
        assert!(!info(&get("Connection: foo\r\nConnection: close\r\n")).keep_alive);
        assert!(info(&get("Connection: closed\r\n")).keep_alive);
        assert!(!info(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(info(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!info(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").keep_alive);
        assert!(!info(b"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n").keep_alive);
    }

    #[test]
    fn expect_continue_needs_http11_and_a_body() {
        assert!(info(&post("Content-Length: 5\r\nExpect: 100-Continue\r\n")).expect_continue);
        assert!(
            info(&post(
                "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
            ))
            .expect_continue
        );
        assert!(!info(&post("Content-Length: 0\r\nExpect: 100-continue\r\n")).expect_continue);
        assert!(!info(&post("Expect: 100-continue\r\n")).expect_continue);
        assert!(!info(&post("Content-Length: 5\r\nExpect: something\r\n")).expect_continue);
        assert!(
            !info(b"POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn websocket_upgrade_detection() {
        let ws = "Connection: Upgrade\r\nUpgrade: WebSocket\r\n";
        assert!(info(&get(ws)).upgrade_websocket);
        assert!(
            info(&get(
                "Connection: keep-alive, upgrade\r\nUpgrade: h2c, websocket/13\r\n"
            ))
            .upgrade_websocket
        );
        assert!(!info(&get("Upgrade: websocket\r\n")).upgrade_websocket);
        assert!(!info(&get("Connection: upgrade\r\nUpgrade: h2c\r\n")).upgrade_websocket);
        assert!(!info(&get("Connection: upgrade\r\nUpgrade: websockets\r\n")).upgrade_websocket);
        assert!(!info(&post(ws)).upgrade_websocket);
        assert!(!info(format!("GET / HTTP/1.0\r\n{ws}\r\n").as_bytes()).upgrade_websocket);
    }

    #[test]
    fn methods_head_and_idempotence() {
        for (m, head, idem) in [
            ("GET", false, true),
            ("HEAD", true, true),
            ("OPTIONS", false, true),
            ("TRACE", false, true),
            ("PUT", false, true),
            ("DELETE", false, true),
            ("POST", false, false),
            ("PATCH", false, false),
            ("get", false, false),
            ("head", false, false),
            ("X-CUSTOM", false, false),
        ] {
            let i = info(format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
            assert_eq!((i.is_head, i.idempotent), (head, idem), "{m}");
        }
    }

    #[test]
    fn error_statuses() {
        assert_eq!(BadRequest("x").status(), 400);
        assert_eq!(UriTooLong.status(), 414);
        assert_eq!(HeaderTooLarge.status(), 431);
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let huge = Limits {
            max_request_line: usize::MAX,
            max_head: usize::MAX,
            max_fields: 100,
            ..L
        };
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(result_with(buf, &huge), Ok(Some(buf.len())));
        assert_eq!(result_with(&buf[..5], &huge), Ok(None));
        let tiny = Limits {
            max_request_line: 0,
            ..L
        };
        assert_eq!(result_with(b"G", &tiny), Err(UriTooLong));
        assert_eq!(result_with(b"", &tiny), Ok(None));
    }

    #[test]
    fn garbage_never_panics() {
        let seeds: [&[u8]; 3] = [
            b"GET http://h/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\n\r\n",
            b"\r\nPOST /p HTTP/1.0\r\nContent-Length: 10\r\nX: \xff\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\nExpect: 100-continue\r\n\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let limits = Limits {
            max_head: 64,
            max_request_line: 40,
            max_fields: 4,
            ..L
        };
        for round in 0..20_000 {
            let mut buf = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % buf.len();
                buf[i] = [b'\r', b'\n', b' ', b':', b',', 0, next() as u8][(next() % 7) as usize];
            }
            let cut = (next() as usize) % (buf.len() + 1);
            for l in [&L, &limits] {
                let mut hs = [httparse::EMPTY_HEADER; 100];
                if let Ok(Some(r)) = parse(&buf[..cut], l, &mut hs) {
                    assert!(r.head_len <= cut && r.head_len <= l.max_head);
                }
            }
        }
    }
}
