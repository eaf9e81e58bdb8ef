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
mod tests;
