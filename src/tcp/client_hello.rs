//! The server name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3), read without taking
//! the bytes: TCP mode routes a connection by it and then passes every byte on, untouched.
//! Pure over a byte slice.
//!
//! The hello may span several handshake records; it is read whole up to [`MAX_HELLO`] bytes of
//! records. Anything that is not a TLS handshake starting with a ClientHello is refused, as is
//! a server_name extension that is malformed or carries a name that is not a DNS host name.

/// The most bytes of records a ClientHello may take (a bound on what is buffered before the
/// upstream is chosen).
pub const MAX_HELLO: usize = 16 * 1024;

/// What the bytes received so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not all of the ClientHello is here yet.
    Incomplete,
    /// A whole ClientHello, and the name it asks for (lowercase, no trailing dot), if any.
    Complete { sni: Option<String> },
}

/// Why the bytes are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a TLS handshake record, or its first message is no ClientHello.
    NotTls,
    /// The ClientHello takes more than [`MAX_HELLO`] bytes of records.
    TooLarge,
    /// A length or a field inside it is wrong.
    Malformed,
}

/// Read the ClientHello at the start of `data`.
pub fn parse(data: &[u8]) -> Result<Hello, Refused> {
    // The handshake bytes, gathered from as many records as it takes.
    let mut hs: Vec<u8> = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = data.get(at..at + 5) else {
            return if data.len() - at.min(data.len()) > 0 && data[at] != 22 {
                Err(Refused::NotTls)
            } else {
                Ok(Hello::Incomplete)
            };
        };
        // ContentType handshake, legacy version 3.x.
        if header[0] != 22 || header[1] != 3 {
            return Err(Refused::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > 1 << 14 {
            return Err(Refused::Malformed);
        }
        if at + 5 + len > MAX_HELLO {
            return Err(Refused::TooLarge);
        }
        let Some(body) = data.get(at + 5..at + 5 + len) else {
            return Ok(Hello::Incomplete);
        };
        hs.extend_from_slice(body);
        at += 5 + len;
        if hs.len() < 4 {
            continue;
        }
        if hs[0] != 1 {
            return Err(Refused::NotTls);
        }
        let msg_len = (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
        if msg_len + 4 > MAX_HELLO {
            return Err(Refused::TooLarge);
        }
        if hs.len() >= msg_len + 4 {
            return client_hello(&hs[4..4 + msg_len]).map(|sni| Hello::Complete { sni });
        }
    }
}

/// The server name in a ClientHello's body.
fn client_hello(b: &[u8]) -> Result<Option<String>, Refused> {
    let mut r = Reader { b, at: 0 };
    r.take(2 + 32)?; // legacy_version, random
    let sid = r.u8()?;
    r.take(usize::from(sid))?;
    let suites = r.u16()?;
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    if r.at == b.len() {
        // No extensions at all (TLS 1.2 allows it).
        return Ok(None);
    }
    let ext_len = usize::from(r.u16()?);
    let exts = r.take(ext_len)?;
    if r.at != b.len() {
        return Err(Refused::Malformed);
    }
    let mut e = Reader { b: exts, at: 0 };
    let mut sni = None;
    while e.at < exts.len() {
        let kind = e.u16()?;
        let len = usize::from(e.u16()?);
        let data = e.take(len)?;
        if kind == 0 {
            if sni.is_some() {
                // An extension twice is illegal (RFC 8446 §4.2).
                return Err(Refused::Malformed);
            }
            sni = Some(server_name(data)?);
        }
    }
    Ok(sni.flatten())
}

/// The host name of a server_name extension's body (`None`: it names no host name).
fn server_name(b: &[u8]) -> Result<Option<String>, Refused> {
    let mut r = Reader { b, at: 0 };
    let list = usize::from(r.u16()?);
    let names = r.take(list)?;
    if r.at != b.len() {
        return Err(Refused::Malformed);
    }
    let mut n = Reader { b: names, at: 0 };
    let mut host = None;
    while n.at < names.len() {
        let kind = n.u8()?;
        let len = usize::from(n.u16()?);
        let name = n.take(len)?;
        if kind == 0 {
            if host.is_some() {
                return Err(Refused::Malformed);
            }
            host = Some(host_name(name)?);
        }
    }
    Ok(host)
}

/// A host name as RFC 6066 allows it: ASCII letters, digits, `-`, `_` and dots, no trailing
/// dot, 1 to 253 bytes; lowercased.
fn host_name(b: &[u8]) -> Result<String, Refused> {
    let good = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.';
    if b.is_empty() || b.len() > 253 || !b.iter().all(|&c| good(c)) || b.ends_with(b".") {
        return Err(Refused::Malformed);
    }
    Ok(String::from_utf8_lossy(b).to_ascii_lowercase())
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        let end = self.at.checked_add(n).ok_or(Refused::Malformed)?;
        let s = self.b.get(self.at..end).ok_or(Refused::Malformed)?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Refused> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Refused> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello with `sni` (or none) and `extra` bytes of padding extension, cut into
    /// records of at most `record` bytes.
    pub fn hello(sni: Option<&str>, extra: usize, record: usize) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let mut entry = vec![0u8];
            entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
            entry.extend_from_slice(name.as_bytes());
            let mut body = (entry.len() as u16).to_be_bytes().to_vec();
            body.extend_from_slice(&entry);
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&(body.len() as u16).to_be_bytes());
            exts.extend_from_slice(&body);
        }
        if extra > 0 {
            exts.extend_from_slice(&21u16.to_be_bytes());
            exts.extend_from_slice(&(extra as u16).to_be_bytes());
            exts.extend(std::iter::repeat_n(0, extra));
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut out = Vec::new();
        for piece in hs.chunks(record) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
            out.extend_from_slice(piece);
        }
        out
    }

    #[test]
    fn the_name_is_read_whole_and_every_prefix_is_incomplete() {
        let h = hello(Some("DB.Example.com"), 0, 16384);
        let want = Ok(Hello::Complete {
            sni: Some("db.example.com".into()),
        });
        assert_eq!(parse(&h), want);
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]), Ok(Hello::Incomplete), "prefix {cut}");
        }
        let mut more = h.clone();
        more.extend_from_slice(b"\x17\x03\x03 application data follows");
        assert_eq!(parse(&more), want, "what follows is not read");
    }

    #[test]
    fn a_hello_over_several_records_and_without_a_name() {
        let h = hello(Some("a.test"), 3000, 100);
        assert_eq!(
            parse(&h),
            Ok(Hello::Complete {
                sni: Some("a.test".into())
            })
        );
        assert_eq!(
            parse(&hello(None, 10, 16384)),
            Ok(Hello::Complete { sni: None })
        );
    }

    #[test]
    fn not_tls_too_large_and_malformed_are_refused() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(Refused::NotTls));
        assert_eq!(parse(b"G"), Err(Refused::NotTls));
        assert_eq!(parse(b"\x16\x03"), Ok(Hello::Incomplete));
        let big = hello(Some("a.test"), 17_000, 16384);
        assert_eq!(parse(&big), Err(Refused::TooLarge));
        let mut bad = hello(Some("bad name.test"), 0, 16384);
        assert_eq!(parse(&bad), Err(Refused::Malformed));
        bad = hello(Some("a.test"), 0, 16384);
        // A ServerHello (type 2) where a ClientHello must be.
        bad[5] = 2;
        assert_eq!(parse(&bad), Err(Refused::NotTls));
    }
}
