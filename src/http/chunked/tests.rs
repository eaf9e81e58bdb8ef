//! The chunked decoder and re-encoder: every rule of RFC 9112 §7.1, and byte-at-a-time input.

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
    let body = b"3;name=value;quoted=\"a b; c\"\r\nabc\r\n2 ; x\r\nde\r\n1 \t\r\nf\r\n0;last\r\n\
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
        let Ok(size) = u64::from_str_radix(std::str::from_utf8(&l[..digits]).unwrap(), 16) else {
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
