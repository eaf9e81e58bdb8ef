//! The incremental chunked-body decoder (RFC 9112 §7.1). STUB: interface only.

use super::Limits;

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

/// The decoder's state between calls.
#[derive(Debug, Clone)]
pub struct Decoder {
    _todo: (),
}

impl Decoder {
    pub fn new(limits: &Limits) -> Self {
        let _ = limits;
        todo!("http::chunked::Decoder::new")
    }

    /// Decode from `input`, appending the output to `out` without letting `out.len()` exceed
    /// `out_cap`. Returns how many input bytes were consumed. Stops early when `out` is full,
    /// when input runs out, or when the body is complete.
    pub fn transcode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        out_cap: usize,
        mode: Output,
    ) -> Result<usize, ChunkedError> {
        let _ = (input, out, out_cap, mode);
        todo!("http::chunked::Decoder::transcode")
    }

    /// The last chunk and the trailer section have been consumed.
    pub fn is_done(&self) -> bool {
        todo!()
    }
}
