//! The field section of a head (request or response): httparse splits it, our checks on top
//! refuse what httparse would let through (a bare LF), and a strict byte scan gives the precise
//! error and resumes where an incomplete head stopped.

use super::{is_tchar, zero_bytes, HIGHS, ONES};

/// Why the field section of a head was refused by [`scan_fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// A byte-level rule is broken; the string names it.
    Invalid(&'static str),
    /// More field lines than allowed.
    TooManyFields,
}

/// How far an incomplete head (a request's or a response's) has been checked, kept by the
/// caller between reads so that `request::parse_resuming` and `response::parse_resuming` look
/// only at what is new: a head that trickles in costs time in proportion to its length, not to
/// its length squared.
///
/// Packed in four bytes, since a session keeps one per connection: 0 is "nothing known yet";
/// with the top bit set, the low 31 bits count bytes that hold no end of the start line (the
/// request or status line); else the start line and `fields` field lines (bits 21 to 30) are
/// checked and the next line starts at `line` (bits 0 to 20). Progress that does not fit (a
/// line past 2 MiB, more than 1,023 fields) is not kept: the next call starts over, as without
/// progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadProgress(u32);

impl HeadProgress {
    const LINE_FLAG: u32 = 1 << 31;
    const LINE_BITS: u32 = 21;
    const FIELDS_MAX: usize = (1 << (31 - Self::LINE_BITS)) - 1;

    /// Nothing known yet.
    pub const START: HeadProgress = HeadProgress(0);

    /// The first `seen` bytes hold no end of the start line.
    pub(crate) fn in_line(seen: usize) -> HeadProgress {
        match u32::try_from(seen) {
            Ok(seen) if seen < Self::LINE_FLAG => HeadProgress(Self::LINE_FLAG | seen),
            _ => Self::START,
        }
    }

    /// The start line and `fields` field lines are checked; the next line starts at `line`.
    pub(crate) fn in_fields(line: usize, fields: usize) -> HeadProgress {
        if line == 0 || line >= 1 << Self::LINE_BITS || fields > Self::FIELDS_MAX {
            return Self::START;
        }
        HeadProgress(((fields as u32) << Self::LINE_BITS) | line as u32)
    }

    /// See [`in_line`](Self::in_line).
    pub(crate) fn line_seen(self) -> usize {
        if self.0 & Self::LINE_FLAG != 0 {
            (self.0 & !Self::LINE_FLAG) as usize
        } else {
            0
        }
    }

    /// See [`in_fields`](Self::in_fields): (line, fields).
    pub(crate) fn field_lines(self) -> Option<(usize, usize)> {
        let line = (self.0 & ((1 << Self::LINE_BITS) - 1)) as usize;
        (self.0 & Self::LINE_FLAG == 0 && line != 0)
            .then_some((line, (self.0 >> Self::LINE_BITS) as usize))
    }

    /// While `progress` says the field lines before `line` are checked (and the head is still
    /// incomplete), check only those from `line` on. `Some(Ok(()))`: still incomplete,
    /// `progress` moved on; `None`: no field progress, or the head is complete now (the full
    /// parse must run).
    pub(crate) fn scan_new_fields(
        &mut self,
        buf: &[u8],
        max_fields: usize,
    ) -> Option<Result<(), ScanError>> {
        let (line, fields) = self.field_lines()?;
        match scan_fields(buf, line, fields, max_fields) {
            Ok(Scan::Partial { line, fields }) => {
                *self = HeadProgress::in_fields(line, fields);
                Some(Ok(()))
            }
            Ok(Scan::Complete { .. }) => None,
            Err(e) => Some(Err(e)),
        }
    }
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
pub(crate) fn line_shapes(
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
pub(crate) fn scan_value(buf: &[u8], mut pos: usize) -> Result<Option<usize>, ScanError> {
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
/// with the high bit of that byte set: [`zero_bytes`]' test with 0x20 instead of 0x01 flags the
/// bytes below 0x20, and `w ^ 0x7f..` turns DEL into zero. A borrow can flag a byte above a
/// true one, never below: so the lowest flag is exact.
pub(crate) fn control_or_del(w: u64) -> u64 {
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    below_space | zero_bytes(w ^ (ONES * 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
