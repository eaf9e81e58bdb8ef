//! An incremental scanner that finds where a chunked request body ends (RFC 9112 §7.1)
//! without copying or decoding it, so the dummy can discard or echo the raw bytes and keep
//! the keep-alive framing right.
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! ```

/// Largest chunk size accepted. Anything bigger is a malformed (or hostile) size line, and
/// the cap keeps the size arithmetic far from overflow.
pub const MAX_CHUNK_SIZE: u64 = 1 << 48;

/// Why a chunked body is malformed. Every case ends the connection: the framing is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk-size line does not start with a hex digit, or holds a byte a size line cannot.
    BadSize,
    /// The chunk size is above [`MAX_CHUNK_SIZE`].
    SizeTooLarge,
    /// A line ends in a bare LF or a CR not followed by LF; RFC 9112 §2.2 lets a recipient
    /// accept a bare LF, but a strict peer that rejects it can never be desynchronised by it.
    BadLineEnd,
    /// Chunk data is not followed by CRLF.
    MissingDataCrlf,
}

/// Where the scanner stands in the chunked grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a chunk size.
    SizeStart,
    /// Inside the hex digits of a chunk size.
    Size,
    /// Whitespace after the size (the BWS before a chunk extension).
    SizeSpace,
    /// Inside chunk extensions, skipped up to the CR.
    Extension,
    /// The CR of the size line was seen; expecting LF.
    SizeLf,
    /// Inside chunk data; `remaining` bytes of it are still to come.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer field line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line, skipped up to the CR.
    Trailer,
    /// The CR of a trailer field line was seen; expecting LF.
    TrailerLf,
    /// The CR of the final empty line was seen; expecting LF.
    EndLf,
    /// The whole chunked body has been seen.
    Done,
}

/// The incremental chunked-body scanner: feed it the bytes as they arrive, it says how many
/// belong to the body and when the body is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedScanner {
    /// Position in the grammar.
    state: State,
    /// The chunk size being parsed, then the chunk-data bytes still to skip.
    remaining: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    /// A scanner positioned at the start of a chunked body.
    pub fn new() -> Self {
        Self {
            state: State::SizeStart,
            remaining: 0,
        }
    }

    /// Whether the body's final CRLF has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes the body bytes at the front of `input` and returns how many belong to the
    /// body. It returns less than `input.len()` only when the body ends inside `input` (the
    /// rest is the next request) or after it has ended (then 0).
    pub fn scan(&mut self, input: &[u8]) -> Result<usize, ChunkedError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => return Ok(pos),
                State::Data => {
                    let available = (input.len() - pos) as u64;
                    let take = available.min(self.remaining);
                    // `take` is at most `available`, which came from a usize.
                    pos += take as usize;
                    self.remaining -= take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::Extension | State::Trailer => {
                    // Skip the line's content in one go: only the line end matters.
                    let rest = &input[pos..];
                    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                        None => pos = input.len(),
                        Some(i) => {
                            if rest[i] == b'\n' {
                                return Err(ChunkedError::BadLineEnd);
                            }
                            pos += i + 1;
                            self.state = if self.state == State::Extension {
                                State::SizeLf
                            } else {
                                State::TrailerLf
                            };
                        }
                    }
                }
                _ => {
                    self.step(input[pos])?;
                    pos += 1;
                }
            }
        }
        Ok(pos)
    }

    /// Advances over one byte of a size line, a line end or the trailer section.
    fn step(&mut self, byte: u8) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::SizeStart => {
                self.remaining = u64::from(hex_value(byte).ok_or(ChunkedError::BadSize)?);
                State::Size
            }
            State::Size => match byte {
                b'\r' => State::SizeLf,
                b';' => State::Extension,
                b' ' | b'\t' => State::SizeSpace,
                b'\n' => return Err(ChunkedError::BadLineEnd),
                _ => {
                    let digit = hex_value(byte).ok_or(ChunkedError::BadSize)?;
                    self.remaining = self.remaining * 16 + u64::from(digit);
                    if self.remaining > MAX_CHUNK_SIZE {
                        return Err(ChunkedError::SizeTooLarge);
                    }
                    State::Size
                }
            },
            State::SizeSpace => match byte {
                b' ' | b'\t' => State::SizeSpace,
                b';' => State::Extension,
                b'\r' => State::SizeLf,
                b'\n' => return Err(ChunkedError::BadLineEnd),
                _ => return Err(ChunkedError::BadSize),
            },
            State::SizeLf => match byte {
                b'\n' if self.remaining == 0 => State::TrailerStart,
                b'\n' => State::Data,
                _ => return Err(ChunkedError::BadLineEnd),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkedError::MissingDataCrlf),
            },
            State::DataLf => match byte {
                b'\n' => State::SizeStart,
                _ => return Err(ChunkedError::MissingDataCrlf),
            },
            State::TrailerStart => match byte {
                b'\r' => State::EndLf,
                b'\n' => return Err(ChunkedError::BadLineEnd),
                _ => State::Trailer,
            },
            State::TrailerLf | State::EndLf => match byte {
                b'\n' if self.state == State::EndLf => State::Done,
                b'\n' => State::TrailerStart,
                _ => return Err(ChunkedError::BadLineEnd),
            },
            // `scan` handles these itself; reaching here would be a scanner bug, and leaving
            // the state unchanged is the harmless answer.
            State::Data | State::Extension | State::Trailer | State::Done => self.state,
        };
        Ok(())
    }
}

/// The value of one hex digit, either case.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` in one call; returns (consumed, done).
    fn scan_all(input: &[u8]) -> Result<(usize, bool), ChunkedError> {
        let mut scanner = ChunkedScanner::new();
        let n = scanner.scan(input)?;
        Ok((n, scanner.is_done()))
    }

    #[test]
    fn simple_body_ends_exactly_after_final_crlf() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(scan_all(body), Ok((body.len(), true)));
    }

    #[test]
    fn stops_at_end_and_leaves_next_request() {
        let body = b"3\r\nabc\r\n0\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(scan_all(&input), Ok((body.len(), true)));
    }

    #[test]
    fn byte_by_byte_matches_one_shot() {
        let body = b"a;name=value\r\n0123456789\r\nF\r\n0123456789abcde\r\n0\r\nX-T: 1\r\n\r\n";
        let mut scanner = ChunkedScanner::new();
        let mut total = 0;
        for (i, byte) in body.iter().enumerate() {
            assert!(!scanner.is_done(), "done too early at byte {i}");
            total += scanner.scan(std::slice::from_ref(byte)).unwrap_or(0);
        }
        assert_eq!(total, body.len());
        assert!(scanner.is_done());
        assert_eq!(scanner.scan(b"more"), Ok(0));
    }

    #[test]
    fn extensions_whitespace_and_trailers() {
        let body = b"4 ; ext=\"x\"\r\nwxyz\r\n0;last\r\nTrailer-A: a\r\nTrailer-B: b\r\n\r\n";
        assert_eq!(scan_all(body), Ok((body.len(), true)));
    }

    #[test]
    fn uppercase_hex_and_leading_zeros() {
        let mut body = b"00A\r\n".to_vec();
        body.extend_from_slice(&[b'x'; 10]);
        body.extend_from_slice(b"\r\n000\r\n\r\n");
        assert_eq!(scan_all(&body), Ok((body.len(), true)));
    }

    #[test]
    fn partial_input_is_all_consumed_and_not_done() {
        assert_eq!(scan_all(b"5\r\nhel"), Ok((6, false)));
        assert_eq!(scan_all(b"0\r\n"), Ok((3, false)));
        assert_eq!(scan_all(b"0\r\n\r"), Ok((4, false)));
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        assert_eq!(scan_all(b"x\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(scan_all(b"\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(scan_all(b"5\nhello"), Err(ChunkedError::BadLineEnd));
        assert_eq!(scan_all(b"5\rxhello"), Err(ChunkedError::BadLineEnd));
        assert_eq!(scan_all(b"5 x\r\n"), Err(ChunkedError::BadSize));
        assert_eq!(scan_all(b"3\r\nabcX"), Err(ChunkedError::MissingDataCrlf));
        assert_eq!(scan_all(b"3\r\nabc\rX"), Err(ChunkedError::MissingDataCrlf));
        assert_eq!(scan_all(b"1;e\nx"), Err(ChunkedError::BadLineEnd));
        assert_eq!(scan_all(b"0\r\nT: 1\n"), Err(ChunkedError::BadLineEnd));
        assert_eq!(scan_all(b"0\r\n\n"), Err(ChunkedError::BadLineEnd));
        assert_eq!(scan_all(b"0\r\n\r\r"), Err(ChunkedError::BadLineEnd));
    }

    #[test]
    fn oversized_chunk_is_rejected() {
        assert_eq!(
            scan_all(b"1000000000001\r\n"),
            Err(ChunkedError::SizeTooLarge)
        );
        assert_eq!(
            scan_all(b"ffffffffffffffffffff\r\n"),
            Err(ChunkedError::SizeTooLarge)
        );
        // Exactly the cap is fine.
        assert_eq!(scan_all(b"1000000000000"), Ok((13, false)));
    }
}
