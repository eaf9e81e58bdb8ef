//! The chunked target: the incremental decoder against a reference decoder.

use super::support::{fnv1a, show, Rng, SMALL_LIMITS};
use crate::http::chunked::{Decoder, Output, MAX_SIZE_DIGITS, MIN_OUT_ROOM};
use crate::http::Limits;

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
