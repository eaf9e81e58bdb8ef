//! The incremental chunked-body decoder (RFC 9112 §7.1).
//!
//! A byte-level state machine, one small function per state: it never needs the whole body, a
//! whole chunk or even a whole size line in one piece, and it never writes more output than the
//! caller has room for. In `Rechunk` mode what comes out is a clean chunked body: one size line
//! per received chunk, no extensions, no trailers, `0\r\n\r\n` at the end. So whatever oddities
//! the sender's framing had, the receiver sees framing it cannot read differently from us.

use super::{is_tchar, push_hex, Limits};

/// Most hex digits on one size line, leading zeros included. 16 significant digits already
/// fill a u64; this bounds the leading zeros a sender can stream before saying anything.
pub const MAX_SIZE_DIGITS: usize = 32;

/// Output room that guarantees `transcode` makes progress: the longest thing written in one go
/// is a size line, 16 hex digits and CRLF.
pub const MIN_OUT_ROOM: usize = 32;

/// What to write for the decoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Re-emit clean chunks: `{size:x}\r\n` data `\r\n` ... `0\r\n\r\n`; extensions and
    /// trailers are dropped.
    Rechunk,
    /// Emit only the data bytes (for an HTTP/1.0 client, the end is then a close).
    Dechunk,
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedError {
    /// Malformed framing; the string names the rule, for the log.
    Invalid(&'static str),
    /// A chunk size, extension or trailer section over its limit.
    TooLarge(&'static str),
}

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The hex digits of a chunk size (at least one is needed).
    Size,
    /// Whitespace after the size: `BWS` before a `;`, or before the CR.
    SizeWs,
    /// Chunk extensions, up to the CR of the size line.
    Extension,
    /// The LF of the size line.
    SizeLf,
    /// Chunk data; `Decoder::remaining` bytes are left.
    Data,
    /// The CR after the chunk data.
    DataCr,
    /// The LF after the chunk data.
    DataLf,
    /// The start of a trailer line, or the CR of the empty line ending the body.
    TrailerStart,
    /// A trailer field name, up to its colon.
    TrailerName,
    /// A trailer field value, up to its CR.
    TrailerValue,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The LF of the empty line ending the body.
    EndLf,
    /// The body is complete; nothing more is consumed.
    Done,
    /// An error was returned; the decoder refuses to go on.
    Failed,
}

/// Inside chunk extensions (RFC 9112 §7.1.1):
/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`,
/// `chunk-ext-name = token`, `chunk-ext-val = token / quoted-string`. We drop extensions, but
/// an upstream or a server behind another proxy may read them, so only the grammar passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// After `;`: optional whitespace, then a name.
    BeforeName,
    /// In the name.
    Name,
    /// Whitespace after the name: `=`, `;` or the end of the line may follow.
    AfterName,
    /// After `=`: optional whitespace, then a token or a quoted string.
    BeforeValue,
    /// In a token value.
    Token,
    /// In a quoted-string value.
    Quoted,
    /// After a backslash in a quoted string.
    QuotedPair,
    /// After a value: whitespace, `;` or the end of the line.
    AfterValue,
}

/// The decoder's state between calls.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Where we are.
    state: State,
    /// The chunk size being read, then the data bytes left of the chunk.
    remaining: u64,
    /// Hex digits read on the current size line.
    digits: usize,
    /// Extension bytes (whitespace included) read on the current size line.
    extension_len: usize,
    /// Where the current chunk extension's grammar stands.
    ext: Ext,
    /// Bytes of trailer section read so far.
    trailer_len: usize,
    /// `Limits::max_chunk_ext`.
    max_extension: usize,
    /// `Limits::max_trailers`.
    max_trailers: usize,
}

impl Decoder {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: &Limits) -> Self {
        Decoder {
            state: State::Size,
            remaining: 0,
            digits: 0,
            extension_len: 0,
            ext: Ext::BeforeName,
            trailer_len: 0,
            max_extension: limits.max_chunk_ext,
            max_trailers: limits.max_trailers,
        }
    }

    /// Decode from `input`, appending the output to `out` without letting `out.len()` exceed
    /// `out_cap`. Returns how many input bytes were consumed. Stops early when `out` is full,
    /// when input runs out, or when the body is complete.
    ///
    /// Progress is guaranteed whenever `out_cap - out.len() >= MIN_OUT_ROOM` and input is
    /// left. After the body is complete it consumes nothing (bytes after the body belong to
    /// the next message); after an error it returns that it failed.
    pub fn transcode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_cap: usize,
        mode: Output,
    ) -> Result<usize, ChunkedError> {
        if self.state == State::Failed {
            return Err(ChunkedError::Invalid("chunked decoder used after an error"));
        }
        let mut pos = 0;
        while pos < input.len() && self.state != State::Done {
            let room = out_cap.saturating_sub(out.len());
            match self.step(&input[pos..], out, room, mode) {
                Ok(0) => break, // out of output room
                Ok(n) => pos += n,
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e);
                }
            }
        }
        Ok(pos)
    }

    /// The last chunk and the trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes of the current chunk not consumed yet: nonzero only between a chunk's size
    /// line (already consumed, and in `Rechunk` mode already written) and its data's end.
    /// These bytes go to the output verbatim in both modes, so a caller may move them by
    /// another way (splice(2)) and account for them with [`Decoder::skip_data`].
    pub fn data_remaining(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// Account for `n` data bytes of the current chunk that reached the receiver without
    /// passing through [`Decoder::transcode`]: as if they had been transcoded. After the last
    /// one the decoder expects the CRLF that ends the chunk's data. More than
    /// [`Decoder::data_remaining`] is refused (and the decoder fails): the framing would be lost.
    pub fn skip_data(&mut self, n: u64) -> Result<(), ChunkedError> {
        if n == 0 {
            return Ok(());
        }
        if n > self.data_remaining() {
            self.state = State::Failed;
            return Err(ChunkedError::Invalid("skipped past the chunk data"));
        }
        self.remaining -= n;
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
        Ok(())
    }

    /// Take one step from the non-empty `input`; `Ok(0)` means no room to write.
    fn step(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        room: usize,
        mode: Output,
    ) -> Result<usize, ChunkedError> {
        let b = input[0];
        match self.state {
            State::Size => self.read_size(b),
            State::SizeWs => self.read_size_ws(b),
            State::Extension => self.read_extension(input),
            State::SizeLf => self.read_size_lf(b, out, room, mode),
            State::Data => Ok(self.read_data(input, out, room)),
            State::DataCr => expect(b, b'\r', State::DataLf, "chunk data not followed by CRLF")
                .map(|s| self.go(s)),
            State::DataLf => self.read_data_lf(b, out, room, mode),
            State::TrailerStart => self.read_trailer_start(b),
            State::TrailerName => self.read_trailer_name(b),
            State::TrailerValue => self.read_trailer_value(b),
            State::TrailerLf => self.count_trailer().and_then(|()| {
                expect(b, b'\n', State::TrailerStart, "bare CR in a trailer field")
                    .map(|s| self.go(s))
            }),
            State::EndLf => self.read_end_lf(b, out, room, mode),
            State::Done | State::Failed => Ok(0),
        }
    }

    /// Move to `state` having consumed one byte.
    fn go(&mut self, state: State) -> usize {
        self.state = state;
        1
    }

    fn read_size(&mut self, b: u8) -> Result<usize, ChunkedError> {
        let Some(digit) = hex_value(b) else {
            if self.digits == 0 {
                return Err(ChunkedError::Invalid("chunk size is not hex"));
            }
            return self.after_size(b);
        };
        self.digits += 1;
        if self.digits > MAX_SIZE_DIGITS {
            return Err(ChunkedError::TooLarge(
                "chunk size line has too many digits",
            ));
        }
        self.remaining = self
            .remaining
            .checked_mul(16)
            .and_then(|n| n.checked_add(u64::from(digit)))
            .ok_or(ChunkedError::TooLarge("chunk size overflows 64 bits"))?;
        Ok(1)
    }

    /// The byte after the size digits: `;` starts an extension; whitespace is BWS (RFC 9112
    /// §7.1.1 `chunk-ext = *( BWS ";" BWS chunk-ext-name ...)`), accepted before the CR too as
    /// many implementations send it; CR ends the line.
    fn after_size(&mut self, b: u8) -> Result<usize, ChunkedError> {
        match b {
            b';' => {
                self.count_extension(1)?;
                self.ext = Ext::BeforeName;
                Ok(self.go(State::Extension))
            }
            b' ' | b'\t' => {
                self.count_extension(1)?;
                Ok(self.go(State::SizeWs))
            }
            b'\r' => Ok(self.go(State::SizeLf)),
            b'\n' => Err(ChunkedError::Invalid("bare LF ends a chunk size line")),
            _ => Err(ChunkedError::Invalid("invalid byte after the chunk size")),
        }
    }

    fn read_size_ws(&mut self, b: u8) -> Result<usize, ChunkedError> {
        self.after_size(b)
    }

    /// Extensions are dropped, but checked against their grammar (see [`Ext`]) byte by byte
    /// (they are rare), and their length is capped.
    fn read_extension(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let b = input[0];
        let ws = b == b' ' || b == b'\t';
        let bad = |why| Err(ChunkedError::Invalid(why));
        if b == b'\n' {
            return bad("bare LF in a chunk extension");
        }
        if b == b'\r' {
            return match self.ext {
                Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterValue => {
                    Ok(self.go(State::SizeLf))
                }
                Ext::BeforeName => bad("chunk extension without a name"),
                Ext::BeforeValue => bad("chunk extension without a value after '='"),
                Ext::Quoted | Ext::QuotedPair => bad("unterminated quoted chunk extension value"),
            };
        }
        self.count_extension(1)?;
        self.ext = match (self.ext, b) {
            (Ext::BeforeName | Ext::AfterName | Ext::BeforeValue | Ext::AfterValue, _) if ws => {
                self.ext
            }
            (Ext::BeforeName, b) if is_tchar(b) => Ext::Name,
            (Ext::Name, b) if is_tchar(b) => Ext::Name,
            (Ext::Name, _) if ws => Ext::AfterName,
            (Ext::Name | Ext::AfterName, b'=') => Ext::BeforeValue,
            (Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterValue, b';') => Ext::BeforeName,
            (Ext::BeforeValue, b'"') => Ext::Quoted,
            (Ext::BeforeValue | Ext::Token, b) if is_tchar(b) => Ext::Token,
            (Ext::Token, _) if ws => Ext::AfterValue,
            (Ext::Quoted, b'"') => Ext::AfterValue,
            (Ext::Quoted, b'\\') => Ext::QuotedPair,
            (Ext::Quoted, b) if b != 0x7f && is_field_byte(b) => Ext::Quoted,
            (Ext::QuotedPair, b) if is_field_byte(b) => Ext::Quoted,
            (_, b) if !is_field_byte(b) => return bad("control character in a chunk extension"),
            _ => return bad("chunk extension does not follow its grammar"),
        };
        Ok(1)
    }

    fn count_extension(&mut self, n: usize) -> Result<(), ChunkedError> {
        self.extension_len += n;
        if self.extension_len > self.max_extension {
            return Err(ChunkedError::TooLarge("chunk extension"));
        }
        Ok(())
    }

    /// The end of a size line: the chunk's data follows, or for size 0, the trailer section.
    fn read_size_lf(
        &mut self,
        b: u8,
        out: &mut Vec<u8>,
        room: usize,
        mode: Output,
    ) -> Result<usize, ChunkedError> {
        if b != b'\n' {
            return Err(ChunkedError::Invalid("bare CR in a chunk size line"));
        }
        if self.remaining == 0 {
            // The last chunk; its `0\r\n` is written with the final CRLF, once the trailer
            // section has been read.
            return Ok(self.go(State::TrailerStart));
        }
        if mode == Output::Rechunk {
            let line_len = hex_len(self.remaining) + 2;
            if room < line_len {
                return Ok(0);
            }
            push_hex(out, self.remaining);
            out.extend_from_slice(b"\r\n");
        }
        self.digits = 0;
        self.extension_len = 0;
        Ok(self.go(State::Data))
    }

    fn read_data(&mut self, input: &[u8], out: &mut Vec<u8>, room: usize) -> usize {
        let n = input.len().min(room);
        let n = usize::try_from(self.remaining).map_or(n, |r| r.min(n));
        out.extend_from_slice(&input[..n]);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
        n
    }

    fn read_data_lf(
        &mut self,
        b: u8,
        out: &mut Vec<u8>,
        room: usize,
        mode: Output,
    ) -> Result<usize, ChunkedError> {
        if b != b'\n' {
            return Err(ChunkedError::Invalid("chunk data not followed by CRLF"));
        }
        if mode == Output::Rechunk {
            if room < 2 {
                return Ok(0);
            }
            out.extend_from_slice(b"\r\n");
        }
        Ok(self.go(State::Size))
    }

    /// Trailer fields are dropped (we never announce them, RFC 9110 §6.5.1 lets a recipient
    /// discard them), so they are checked only as lines: a token name, a colon, a value of
    /// field bytes, CRLF. No obs-fold.
    fn read_trailer_start(&mut self, b: u8) -> Result<usize, ChunkedError> {
        if b == b'\r' {
            return Ok(self.go(State::EndLf));
        }
        self.count_trailer()?;
        match b {
            b'\n' => Err(ChunkedError::Invalid("bare LF in the trailer section")),
            _ if is_tchar(b) => Ok(self.go(State::TrailerName)),
            _ => Err(ChunkedError::Invalid("invalid trailer field line")),
        }
    }

    fn read_trailer_name(&mut self, b: u8) -> Result<usize, ChunkedError> {
        self.count_trailer()?;
        match b {
            b':' => Ok(self.go(State::TrailerValue)),
            _ if is_tchar(b) => Ok(1),
            _ => Err(ChunkedError::Invalid("invalid trailer field name")),
        }
    }

    fn read_trailer_value(&mut self, b: u8) -> Result<usize, ChunkedError> {
        self.count_trailer()?;
        match b {
            b'\r' => Ok(self.go(State::TrailerLf)),
            b'\n' => Err(ChunkedError::Invalid("bare LF in a trailer field")),
            _ if is_field_byte(b) => Ok(1),
            _ => Err(ChunkedError::Invalid(
                "control character in a trailer field",
            )),
        }
    }

    fn count_trailer(&mut self) -> Result<(), ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailers {
            return Err(ChunkedError::TooLarge("trailer section"));
        }
        Ok(())
    }

    fn read_end_lf(
        &mut self,
        b: u8,
        out: &mut Vec<u8>,
        room: usize,
        mode: Output,
    ) -> Result<usize, ChunkedError> {
        if b != b'\n' {
            return Err(ChunkedError::Invalid("bare CR ends the chunked body"));
        }
        if mode == Output::Rechunk {
            if room < 5 {
                return Ok(0);
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        Ok(self.go(State::Done))
    }
}

/// Consume `b` if it is `want` and move to `next`; otherwise refuse with `why`.
fn expect(b: u8, want: u8, next: State, why: &'static str) -> Result<State, ChunkedError> {
    if b == want {
        Ok(next)
    } else {
        Err(ChunkedError::Invalid(why))
    }
}

/// HTAB, SP, VCHAR, obs-text: what a field value (or an extension, quoted strings included)
/// is made of.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// How many hex digits `push_hex(n)` writes.
fn hex_len(n: u64) -> usize {
    (64 - n.leading_zeros() as usize).div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: Limits = Limits {
        max_chunk_ext: 64,
        max_trailers: 256,
        ..Limits::DEFAULT
    };

    /// Decode `body` in one call with plenty of room.
    fn once(body: &[u8], mode: Output) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = Decoder::new(&Limits::DEFAULT);
        let mut out = Vec::new();
        let n = d.transcode(body, &mut out, usize::MAX, mode)?;
        Ok((out, n, d.is_done()))
    }

    fn rechunk(body: &[u8]) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        once(body, Output::Rechunk)
    }

    fn invalid(body: &[u8]) -> ChunkedError {
        match rechunk(body) {
            Err(e) => e,
            Ok(ok) => panic!("{ok:?} for {:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn rechunks_a_simple_body() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(rechunk(body), Ok((body.to_vec(), body.len(), true)));
    }

    #[test]
    fn dechunks_to_the_data_only() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            once(body, Output::Dechunk),
            Ok((b"hello world".to_vec(), body.len(), true))
        );
    }

    #[test]
    fn empty_body() {
        assert_eq!(rechunk(b"0\r\n\r\n"), Ok((b"0\r\n\r\n".to_vec(), 5, true)));
        assert_eq!(once(b"0\r\n\r\n", Output::Dechunk), Ok((vec![], 5, true)));
    }

    #[test]
    fn sizes_are_normalised() {
        let body = b"000A\r\n0123456789\r\n1b\r\n0123456789abcdefghijklmnopq\r\n00\r\n\r\n";
        let (out, n, done) = rechunk(body).expect("valid");
        assert_eq!(
            out,
            b"a\r\n0123456789\r\n1b\r\n0123456789abcdefghijklmnopq\r\n0\r\n\r\n".to_vec()
        );
        assert_eq!((n, done), (body.len(), true));
    }

    #[test]
    fn extensions_and_trailers_are_dropped() {
        let body =
            b"3;name=value;quoted=\"a b; c\"\r\nabc\r\n2 ; x\r\nde\r\n1 \t\r\nf\r\n0;last\r\n\
                     Expires: never\r\nX-Sum:\r\n\r\n";
        let (out, n, done) = rechunk(body).expect("valid");
        assert_eq!(out, b"3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n".to_vec());
        assert_eq!((n, done), (body.len(), true));
    }

    #[test]
    fn extensions_follow_their_grammar() {
        use ChunkedError::Invalid;
        for good in [
            &b"1;a\r\nx\r\n0\r\n\r\n"[..],
            b"1 ; a = b ; c\r\nx\r\n0\r\n\r\n",
            b"1;a=\"q \\\" ;\\\\\"\r\nx\r\n0\r\n\r\n",
            b"1;a=\"\"\r\nx\r\n0\r\n\r\n",
            b"1;a;b;c=d \r\nx\r\n0\r\n\r\n",
        ] {
            assert!(
                rechunk(good).is_ok_and(|(_, _, done)| done),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        for (bad, why) in [
            (&b"5;\r\n"[..], "chunk extension without a name"),
            (b"5; \r\n", "chunk extension without a name"),
            (b"5;;a\r\n", "chunk extension does not follow its grammar"),
            (b"5;=b\r\n", "chunk extension does not follow its grammar"),
            (b"5;a b\r\n", "chunk extension does not follow its grammar"),
            (b"5;a=\r\n", "chunk extension without a value after '='"),
            (
                b"5;a=b c\r\n",
                "chunk extension does not follow its grammar",
            ),
            (
                b"5;a=b=c\r\n",
                "chunk extension does not follow its grammar",
            ),
            (b"5;a=\"b\r\n", "unterminated quoted chunk extension value"),
            (
                b"5;a=\"b\"c\r\n",
                "chunk extension does not follow its grammar",
            ),
            (b"5;a(b)\r\n", "chunk extension does not follow its grammar"),
            (
                b"5;a=\r\rb\r\n",
                "chunk extension without a value after '='",
            ),
        ] {
            assert_eq!(
                invalid(bad),
                Invalid(why),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let body = b"1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut d = Decoder::new(&Limits::DEFAULT);
        let mut out = Vec::new();
        assert_eq!(
            d.transcode(body, &mut out, 100, Output::Dechunk),
            Ok(body.len() - 16)
        );
        assert!(d.is_done());
        assert_eq!(d.transcode(b"more", &mut out, 100, Output::Dechunk), Ok(0));
        assert_eq!(out, b"a");
    }

    #[test]
    fn incomplete_input_waits() {
        let body = b"4\r\nwiki\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            let (out, n, done) = rechunk(&body[..cut]).expect("valid so far");
            assert_eq!((n, done), (cut, false), "cut {cut}");
            assert!(out.len() <= 9);
        }
    }

    #[test]
    fn size_line_errors() {
        use ChunkedError::*;
        assert_eq!(invalid(b"\r\n"), Invalid("chunk size is not hex"));
        assert_eq!(invalid(b"x\r\n"), Invalid("chunk size is not hex"));
        assert_eq!(invalid(b"-1\r\n"), Invalid("chunk size is not hex"));
        assert_eq!(invalid(b";a\r\n"), Invalid("chunk size is not hex"));
        assert_eq!(
            invalid(b"0x5\r\n"),
            Invalid("invalid byte after the chunk size")
        );
        assert_eq!(
            invalid(b"5 5\r\n"),
            Invalid("invalid byte after the chunk size")
        );
        assert_eq!(invalid(b"5\n"), Invalid("bare LF ends a chunk size line"));
        assert_eq!(invalid(b"5\rx"), Invalid("bare CR in a chunk size line"));
        assert_eq!(
            invalid(b"5;a\nb\r\n"),
            Invalid("bare LF in a chunk extension")
        );
        assert_eq!(
            invalid(b"5;a\x00\r\n"),
            Invalid("control character in a chunk extension")
        );
        assert_eq!(
            invalid(b"5;a\rb\r\n"),
            Invalid("bare CR in a chunk size line")
        );
    }

    #[test]
    fn size_limits() {
        use ChunkedError::*;
        // 16 significant digits fit; 17 overflow.
        let (out, n, _) = rechunk(b"ffffffffffffffff\r\nabc").expect("a huge chunk is fine");
        assert_eq!((out.as_slice(), n), (&b"ffffffffffffffff\r\nabc"[..], 21));
        assert_eq!(
            invalid(b"10000000000000000\r\n"),
            TooLarge("chunk size overflows 64 bits")
        );
        // Leading zeros are allowed up to the digit cap.
        let mut zeros = b"0".repeat(MAX_SIZE_DIGITS - 1);
        zeros.extend_from_slice(b"1\r\nx\r\n0\r\n\r\n");
        assert_eq!(
            rechunk(&zeros).map(|r| r.0),
            Ok(b"1\r\nx\r\n0\r\n\r\n".to_vec())
        );
        let mut too_many = b"0".repeat(MAX_SIZE_DIGITS);
        too_many.extend_from_slice(b"1\r\n");
        assert_eq!(
            invalid(&too_many),
            TooLarge("chunk size line has too many digits")
        );
    }

    #[test]
    fn extension_limit() {
        let limits = Limits {
            max_chunk_ext: 4,
            ..Limits::DEFAULT
        };
        let run = |body: &[u8]| {
            let mut out = Vec::new();
            Decoder::new(&limits).transcode(body, &mut out, 1000, Output::Rechunk)
        };
        assert_eq!(run(b"1;abc\r\nx\r\n1 ;ab\r\ny\r\n0\r\n\r\n"), Ok(25));
        assert_eq!(
            run(b"1;abcd\r\n"),
            Err(ChunkedError::TooLarge("chunk extension"))
        );
        assert_eq!(
            run(b"1    ;\r\n"),
            Err(ChunkedError::TooLarge("chunk extension"))
        );
    }

    #[test]
    fn data_must_end_in_crlf() {
        use ChunkedError::*;
        assert_eq!(
            invalid(b"3\r\nabcd\r\n"),
            Invalid("chunk data not followed by CRLF")
        );
        assert_eq!(
            invalid(b"3\r\nabc\n0\r\n\r\n"),
            Invalid("chunk data not followed by CRLF")
        );
        assert_eq!(
            invalid(b"3\r\nabc\rx"),
            Invalid("chunk data not followed by CRLF")
        );
    }

    #[test]
    fn trailer_errors_and_limit() {
        use ChunkedError::*;
        assert_eq!(
            invalid(b"0\r\nX: a\nb\r\n\r\n"),
            Invalid("bare LF in a trailer field")
        );
        assert_eq!(
            invalid(b"0\r\nX: a\rb\r\n\r\n"),
            Invalid("bare CR in a trailer field")
        );
        assert_eq!(
            invalid(b"0\r\nNoColon\r\n\r\n"),
            Invalid("invalid trailer field name")
        );
        assert_eq!(
            invalid(b"0\r\nX : a\r\n\r\n"),
            Invalid("invalid trailer field name")
        );
        assert_eq!(
            invalid(b"0\r\n: a\r\n\r\n"),
            Invalid("invalid trailer field line")
        );
        assert_eq!(
            invalid(b"0\r\nX: a\r\n b\r\n\r\n"),
            Invalid("invalid trailer field line")
        );
        assert_eq!(
            invalid(b"0\r\n\n"),
            Invalid("bare LF in the trailer section")
        );
        assert_eq!(
            invalid(b"0\r\nX: \x01\r\n\r\n"),
            Invalid("control character in a trailer field")
        );
        assert_eq!(
            invalid(b"0\r\n\rx"),
            Invalid("bare CR ends the chunked body")
        );
        let limits = Limits {
            max_trailers: 6,
            ..Limits::DEFAULT
        };
        let run = |body: &[u8]| {
            let mut out = Vec::new();
            Decoder::new(&limits).transcode(body, &mut out, 1000, Output::Rechunk)
        };
        assert_eq!(run(b"0\r\nX: a\r\n\r\n"), Ok(11));
        assert_eq!(run(b"0\r\nX: ab\r\n\r\n"), Err(TooLarge("trailer section")));
        let none = Limits {
            max_trailers: 0,
            ..Limits::DEFAULT
        };
        let mut out = Vec::new();
        assert_eq!(
            Decoder::new(&none).transcode(b"0\r\n\r\n", &mut out, 9, Output::Rechunk),
            Ok(5)
        );
    }

    #[test]
    fn an_error_is_final() {
        let mut d = Decoder::new(&Limits::DEFAULT);
        let mut out = Vec::new();
        assert!(d.transcode(b"z", &mut out, 100, Output::Rechunk).is_err());
        assert!(d
            .transcode(b"0\r\n\r\n", &mut out, 100, Output::Rechunk)
            .is_err());
        assert!(!d.is_done());
    }

    #[test]
    fn output_room_is_respected() {
        let body = b"10\r\n0123456789abcdef\r\n0\r\n\r\n";
        let mut d = Decoder::new(&Limits::DEFAULT);
        let mut out = b"xxx".to_vec();
        let r = Output::Rechunk;
        // No room for the size line: the LF is not consumed.
        assert_eq!(d.transcode(body, &mut out, 6, r), Ok(3));
        assert_eq!(out, b"xxx");
        assert_eq!(d.transcode(&body[3..], &mut out, 7, r), Ok(1));
        assert_eq!(out, b"xxx10\r\n");
        assert_eq!(d.transcode(&body[4..], &mut out, 10, r), Ok(3));
        assert_eq!(out, b"xxx10\r\n012");
        out.clear();
        // The rest of the data, and the CR after it, which needs no room.
        assert_eq!(d.transcode(&body[7..], &mut out, 13, r), Ok(14));
        assert_eq!(out, b"3456789abcdef");
        out.clear();
        // The LF waits for room for the CRLF we write; then the last chunk runs up to the
        // final LF, which waits for room for `0\r\n\r\n`.
        assert_eq!(d.transcode(&body[21..], &mut out, 1, r), Ok(0));
        assert_eq!(d.transcode(&body[21..], &mut out, 2, r), Ok(5));
        assert_eq!(out, b"\r\n");
        assert_eq!(d.transcode(&body[26..], &mut out, 6, r), Ok(0));
        assert!(!d.is_done());
        assert_eq!(d.transcode(&body[26..], &mut out, 7, r), Ok(1));
        assert!(d.is_done());
        assert_eq!(out, b"\r\n0\r\n\r\n");
    }

    #[test]
    fn skipped_data_counts_as_transcoded() {
        let body = b"a;x=y\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n";
        for mode in [Output::Rechunk, Output::Dechunk] {
            let mut d = Decoder::new(&Limits::DEFAULT);
            let mut out = Vec::new();
            assert_eq!(d.data_remaining(), 0);
            // Up to the size line's end, and two data bytes.
            assert_eq!(d.transcode(&body[..9], &mut out, 100, mode), Ok(9));
            assert_eq!(d.data_remaining(), 8);
            // Six bytes go another way; two more through the decoder.
            assert_eq!(d.skip_data(0), Ok(()));
            assert_eq!(d.skip_data(6), Ok(()));
            assert_eq!(d.data_remaining(), 2);
            assert_eq!(d.transcode(&body[15..17], &mut out, 100, mode), Ok(2));
            assert_eq!(d.data_remaining(), 0);
            let rest = d.transcode(&body[17..], &mut out, 100, mode);
            assert_eq!(rest, Ok(body.len() - 17));
            assert!(d.is_done());
            let want: &[u8] = match mode {
                Output::Rechunk => b"a\r\n0189\r\n3\r\nabc\r\n0\r\n\r\n",
                Output::Dechunk => b"0189abc",
            };
            assert_eq!(out, want, "{mode:?}");
        }
    }

    #[test]
    fn skipping_the_whole_chunk_leaves_its_crlf_to_the_decoder() {
        let mut d = Decoder::new(&Limits::DEFAULT);
        let mut out = Vec::new();
        let r = Output::Rechunk;
        assert_eq!(d.transcode(b"10\r\n", &mut out, 100, r), Ok(4));
        assert_eq!(d.skip_data(16), Ok(()));
        assert_eq!(d.data_remaining(), 0);
        // The CRLF after the data is still checked.
        assert_eq!(
            d.transcode(b"x", &mut out, 100, r),
            Err(ChunkedError::Invalid("chunk data not followed by CRLF"))
        );
        let mut d = Decoder::new(&Limits::DEFAULT);
        out.clear();
        d.transcode(b"10\r\n", &mut out, 100, r).unwrap();
        d.skip_data(16).unwrap();
        assert_eq!(d.transcode(b"\r\n0\r\n\r\n", &mut out, 100, r), Ok(7));
        assert!(d.is_done());
        assert_eq!(out, b"10\r\n\r\n0\r\n\r\n");
    }

    #[test]
    fn skipping_outside_chunk_data_is_refused() {
        let over = Err(ChunkedError::Invalid("skipped past the chunk data"));
        // Before any size line.
        let mut d = Decoder::new(&Limits::DEFAULT);
        assert_eq!(d.skip_data(1), over);
        assert!(d
            .transcode(b"0\r\n\r\n", &mut Vec::new(), 100, Output::Rechunk)
            .is_err());
        // Past the chunk's end.
        let mut d = Decoder::new(&Limits::DEFAULT);
        let mut out = Vec::new();
        d.transcode(b"4\r\nab", &mut out, 100, Output::Rechunk)
            .unwrap();
        assert_eq!(d.skip_data(3), over);
        assert_eq!(d.data_remaining(), 0);
        // In the middle of a size line.
        let mut d = Decoder::new(&Limits::DEFAULT);
        d.transcode(b"4", &mut out, 100, Output::Rechunk).unwrap();
        assert_eq!(d.data_remaining(), 0);
        assert_eq!(d.skip_data(1), over);
    }

    #[test]
    fn hex_len_matches_push_hex() {
        for n in [1u64, 15, 16, 255, 256, 0xfff_ffff, u64::MAX] {
            let mut out = Vec::new();
            push_hex(&mut out, n);
            assert_eq!(hex_len(n), out.len(), "{n}");
        }
    }

    // ---- The reference decoder and the random-split comparison --------------------------

    /// What the reference decoder makes of a whole input.
    #[derive(Debug, PartialEq)]
    enum Reference {
        /// A complete body: its chunks' data and its length.
        Valid(Vec<Vec<u8>>, usize),
        /// The framing is broken somewhere in the input.
        Invalid,
        /// The input ends before the body does.
        Incomplete,
    }

    /// The line at `pos`: (content, start of the next line). Err(Some(())) for broken line
    /// endings, Err(None) when the line is not complete.
    fn reference_line(buf: &[u8], pos: usize) -> Result<(&[u8], usize), Option<()>> {
        let rest = buf.get(pos..).ok_or(None)?;
        let end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .ok_or(None)?;
        match (rest[end], rest.get(end + 1)) {
            (b'\r', Some(b'\n')) => Ok((&rest[..end], pos + end + 2)),
            (b'\r', None) => Err(None),
            _ => Err(Some(())),
        }
    }

    /// RFC 9112 §7.1.1's chunk-ext, written as a plain recursive-descent reading of the ABNF
    /// (an independent check of the decoder's state machine).
    fn reference_extensions(ext: &[u8]) -> bool {
        let ws = |i: &mut usize| {
            while *i < ext.len() && (ext[*i] == b' ' || ext[*i] == b'\t') {
                *i += 1;
            }
        };
        let token = |i: &mut usize| {
            let start = *i;
            while *i < ext.len() && crate::http::is_tchar(ext[*i]) {
                *i += 1;
            }
            *i > start
        };
        let quoted = |i: &mut usize| {
            *i += 1; // the opening DQUOTE
            while *i < ext.len() {
                match ext[*i] {
                    b'"' => {
                        *i += 1;
                        return true;
                    }
                    b'\\' if *i + 1 < ext.len() && is_field_byte(ext[*i + 1]) => *i += 2,
                    b'\\' => return false,
                    b if b != 0x7f && is_field_byte(b) => *i += 1,
                    _ => return false,
                }
            }
            false
        };
        let mut i = 0;
        loop {
            ws(&mut i);
            if i == ext.len() {
                return true;
            }
            if ext[i] != b';' {
                return false;
            }
            i += 1;
            ws(&mut i);
            if !token(&mut i) {
                return false;
            }
            ws(&mut i);
            if i < ext.len() && ext[i] == b'=' {
                i += 1;
                ws(&mut i);
                let ok = if i < ext.len() && ext[i] == b'"' {
                    quoted(&mut i)
                } else {
                    token(&mut i)
                };
                if !ok {
                    return false;
                }
            }
        }
    }

    /// A whole-input, obviously-correct reading of RFC 9112 §7.1 with our limits.
    fn reference(buf: &[u8], limits: &Limits) -> Reference {
        let mut chunks = Vec::new();
        let mut pos = 0;
        macro_rules! line {
            () => {
                match reference_line(buf, pos) {
                    Ok(l) => l,
                    Err(Some(())) => return Reference::Invalid,
                    Err(None) => return Reference::Incomplete,
                }
            };
        }
        loop {
            let (l, next) = line!();
            let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if digits == 0 || digits > MAX_SIZE_DIGITS {
                return Reference::Invalid;
            }
            let Ok(size) = u64::from_str_radix(std::str::from_utf8(&l[..digits]).unwrap(), 16)
            else {
                return Reference::Invalid;
            };
            let ext = &l[digits..];
            if !reference_extensions(ext) || ext.len() > limits.max_chunk_ext {
                return Reference::Invalid;
            }
            pos = next;
            if size == 0 {
                break;
            }
            let size = size as usize;
            if buf.len() < pos + size {
                return Reference::Incomplete;
            }
            let crlf = &buf[pos + size..buf.len().min(pos + size + 2)];
            if !b"\r\n".starts_with(crlf) {
                return Reference::Invalid;
            }
            if crlf.len() < 2 {
                return Reference::Incomplete;
            }
            chunks.push(buf[pos..pos + size].to_vec());
            pos += size + 2;
        }
        let mut trailers = 0;
        loop {
            let (l, next) = line!();
            pos = next;
            if l.is_empty() {
                return Reference::Valid(chunks, pos);
            }
            let Some(colon) = l.iter().position(|&b| b == b':') else {
                return Reference::Invalid;
            };
            if colon == 0
                || !l[..colon].iter().all(|&b| is_tchar(b))
                || !l[colon + 1..].iter().all(|&b| is_field_byte(b))
            {
                return Reference::Invalid;
            }
            trailers += l.len() + 2;
            if trailers > limits.max_trailers {
                return Reference::Invalid;
            }
        }
    }

    fn expected_output(chunks: &[Vec<u8>], mode: Output) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            if mode == Output::Rechunk {
                out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            }
            out.extend_from_slice(c);
            if mode == Output::Rechunk {
                out.extend_from_slice(b"\r\n");
            }
        }
        if mode == Output::Rechunk {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        out
    }

    /// A deterministic xorshift64 generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Feed `buf` in random pieces into random amounts of output room, draining the output at
    /// random. Returns (everything written, bytes consumed, done) or the error.
    fn incremental(
        buf: &[u8],
        limits: &Limits,
        mode: Output,
        rng: &mut Rng,
    ) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = Decoder::new(limits);
        let (mut received, mut consumed) = (0, 0);
        let (mut out, mut sink) = (Vec::new(), Vec::new());
        loop {
            received = buf.len().min(received + rng.below(24));
            let room = rng.below(48);
            let cap = out.len() + room;
            let n = d.transcode(&buf[consumed..received], &mut out, cap, mode)?;
            assert!(out.len() <= cap, "output over its cap");
            if room >= MIN_OUT_ROOM && consumed < received && !d.is_done() {
                assert!(n > 0, "no progress with {room} bytes of room");
            }
            consumed += n;
            if rng.below(3) == 0 {
                sink.append(&mut out);
            }
            if d.is_done() || (received == buf.len() && consumed == received) {
                sink.append(&mut out);
                return Ok((sink, consumed, d.is_done()));
            }
        }
    }

    /// A random valid body: chunks of random sizes, random size spellings, extensions,
    /// whitespace and trailers.
    fn random_body(rng: &mut Rng) -> Vec<u8> {
        let mut body = Vec::new();
        for _ in 0..rng.below(6) {
            let size = 1 + rng.below(40);
            let zeros = "0".repeat(rng.below(3));
            let hex = if rng.below(2) == 0 {
                format!("{size:x}")
            } else {
                format!("{size:X}")
            };
            body.extend_from_slice(format!("{zeros}{hex}").as_bytes());
            match rng.below(4) {
                0 => body.extend_from_slice(b";a=b"),
                1 => body.extend_from_slice(b" \t; q=\"x;y\""),
                2 => body.extend_from_slice(b" "),
                _ => {}
            }
            body.extend_from_slice(b"\r\n");
            body.extend((0..size).map(|i| b"\r\n0123456789abcdef;:"[(i + rng.below(19)) % 19]));
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(if rng.below(2) == 0 {
            b"0\r\n"
        } else {
            b"000;end\r\n"
        });
        for _ in 0..rng.below(3) {
            body.extend_from_slice(b"X-Trailer: v\t1\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    #[test]
    fn the_reference_agrees_with_itself_on_examples() {
        assert_eq!(
            reference(b"2\r\nab\r\n0\r\n\r\n", &BIG),
            Reference::Valid(vec![b"ab".to_vec()], 12)
        );
        assert_eq!(reference(b"2\r\nab\r\n0\r\n", &BIG), Reference::Incomplete);
        assert_eq!(reference(b"2\r\nabc\r\n", &BIG), Reference::Invalid);
    }

    #[test]
    fn random_splits_of_valid_bodies_match_the_reference() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut bodies: Vec<Vec<u8>> = vec![
            b"0\r\n\r\n".to_vec(),
            b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
            b"1;a=\"b\"\r\n\n\r\n1\r\n\r\r\n0\r\nA: b\r\nC:d\r\n\r\n".to_vec(),
            b"00010 \t;x\r\n0123456789abcdef\r\n0\r\n\r\n".to_vec(),
        ];
        bodies.extend((0..200).map(|_| random_body(&mut rng)));
        for body in &bodies {
            let Reference::Valid(chunks, len) = reference(body, &BIG) else {
                panic!("reference refuses {:?}", String::from_utf8_lossy(body));
            };
            assert_eq!(len, body.len());
            let mut input = body.clone();
            input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
            for mode in [Output::Rechunk, Output::Dechunk] {
                let want = expected_output(&chunks, mode);
                for _ in 0..20 {
                    let got = incremental(&input, &BIG, mode, &mut rng);
                    assert_eq!(
                        got,
                        Ok((want.clone(), len, true)),
                        "{:?}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_bodies_are_refused_by_both() {
        let bodies: &[&[u8]] = &[
            b"5\r\nhell\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"g\r\n\r\n",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
            b"0\r\nBad Name: x\r\n\r\n",
            b"0\r\n x: y\r\n\r\n",
            b"10000000000000000\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"\r\n0\r\n\r\n",
        ];
        let mut rng = Rng(0xfeed_face_cafe_beef);
        for body in bodies {
            assert_eq!(
                reference(body, &BIG),
                Reference::Invalid,
                "{:?}",
                String::from_utf8_lossy(body)
            );
            for mode in [Output::Rechunk, Output::Dechunk] {
                for _ in 0..20 {
                    assert!(
                        incremental(body, &BIG, mode, &mut rng).is_err(),
                        "{:?}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
        }
    }

    /// Mutated bodies: wherever the reference is sure, the decoder agrees with it.
    #[test]
    fn mutated_bodies_agree_with_the_reference() {
        let mut rng = Rng(0x0bad_5eed_dead_10cc);
        let limits = Limits {
            max_chunk_ext: 8,
            max_trailers: 24,
            ..BIG
        };
        for _ in 0..3000 {
            let mut body = random_body(&mut rng);
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(body.len());
                body[i] = b"\r\n ;:0aZ\t\x00\x7f"[rng.below(11)];
            }
            let mode = if rng.below(2) == 0 {
                Output::Rechunk
            } else {
                Output::Dechunk
            };
            let got = incremental(&body, &limits, mode, &mut rng);
            match reference(&body, &limits) {
                Reference::Valid(chunks, len) => {
                    assert_eq!(
                        got,
                        Ok((expected_output(&chunks, mode), len, true)),
                        "{:?}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Reference::Invalid => assert!(got.is_err(), "{:?}", String::from_utf8_lossy(&body)),
                // Where the input stops, the decoder may already have seen a bad byte, or wait.
                Reference::Incomplete => assert!(
                    !matches!(got, Ok((_, _, true))),
                    "{:?}",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
    }
}
