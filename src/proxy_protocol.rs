//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a layer-4 proxy puts at the
//! start of a connection to say whose it is, read here, and written for upstreams. Pure
//! functions over bytes; fuzzed (`fuzz/fuzz_targets/proxy_header.rs`).
//!
//! - v1: one text line, at most 107 bytes: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`,
//!   `TCP6` likewise, or `PROXY UNKNOWN …\r\n`.
//! - v2: a 12-byte signature, a version/command byte (`0x21` PROXY, `0x20` LOCAL), a
//!   family/protocol byte, a 16-bit length, then the addresses and optional TLVs.
//!
//! `LOCAL` (the tier's own health checks) and families other than TCP over IPv4/IPv6 carry no
//! client: the connection's own address stands.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the specification's bound).
pub const V1_MAX: usize = 107;
/// The largest v2 header accepted (addresses and TLVs): more is refused, so a connection's
/// memory stays bounded.
pub const V2_MAX: usize = 16 + 1024;

/// What the start of a connection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A whole header of `len` bytes; `source` is the client it names (`None`: `LOCAL`,
    /// `UNKNOWN` or a family without a TCP client, so the connection's address stands).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why the start of a connection is not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// It does not start like one.
    Missing,
    /// It starts like one and breaks the format; the string says where.
    Invalid(&'static str),
}

/// Read a PROXY header from the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.is_empty() {
        return Ok(Parsed::Incomplete);
    }
    let sig = &V2_SIGNATURE[..buf.len().min(12)];
    if buf.starts_with(sig) {
        return if buf.len() < 12 {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    let proxy = &b"PROXY "[..buf.len().min(6)];
    if buf.starts_with(proxy) {
        return if buf.len() < 6 {
            Ok(Parsed::Incomplete)
        } else {
            parse_v1(buf)
        };
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::Invalid("v1 line longer than 107 bytes"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if window[cr] == b'\n' {
        return Err(ProxyError::Invalid("v1 line ends without CR"));
    }
    match window.get(cr + 1) {
        // The LF could only come past the 107 bytes a line may take.
        None if cr + 1 >= V1_MAX => {
            return Err(ProxyError::Invalid("v1 line longer than 107 bytes"))
        }
        None => return Ok(Parsed::Incomplete),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::Invalid("v1 line ends without CRLF")),
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&window[6..cr])
        .map_err(|_| ProxyError::Invalid("v1 line is not text"))?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(Parsed::Header { len, source: None });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [proto, src, dst, sport, dport] = parts[..] else {
        return Err(ProxyError::Invalid("v1 line does not have its five fields"));
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            src.parse::<Ipv4Addr>()
                .map_err(|_| ProxyError::Invalid("v1 source is not IPv4"))?
                .into(),
            dst.parse::<Ipv4Addr>()
                .map_err(|_| ProxyError::Invalid("v1 destination is not IPv4"))?
                .into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>()
                .map_err(|_| ProxyError::Invalid("v1 source is not IPv6"))?
                .into(),
            dst.parse::<Ipv6Addr>()
                .map_err(|_| ProxyError::Invalid("v1 destination is not IPv6"))?
                .into(),
        ),
        _ => {
            return Err(ProxyError::Invalid(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let port = |p: &str| -> Result<u16, ProxyError> {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'));
        p.parse::<u16>()
            .ok()
            .filter(|_| ok)
            .ok_or(ProxyError::Invalid("v1 port is not 0-65535"))
    };
    let sport = port(sport)?;
    port(dport)?;
    let _ = dst;
    Ok(Parsed::Header {
        len,
        source: Some(SocketAddr::new(src, sport)),
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Invalid("v2 version is not 2"));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(ProxyError::Invalid("v2 command is not LOCAL or PROXY"));
    }
    let family = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(ProxyError::Invalid("v2 header larger than 1 KiB"));
    }
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let addr = &buf[16..len];
    if command == 0 {
        // LOCAL: the connection's own endpoints stand, whatever follows.
        return Ok(Parsed::Header { len, source: None });
    }
    let source = match family {
        // TCP over IPv4: src 4, dst 4, sport 2, dport 2.
        0x11 => {
            if addr.len() < 12 {
                return Err(ProxyError::Invalid("v2 IPv4 addresses are short"));
            }
            let ip = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([addr[8], addr[9]]),
            ))
        }
        // TCP over IPv6: src 16, dst 16, sport 2, dport 2.
        0x21 => {
            if addr.len() < 36 {
                return Err(ProxyError::Invalid("v2 IPv6 addresses are short"));
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addr[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([addr[32], addr[33]]),
            ))
        }
        // UNSPEC, UDP, UNIX: no TCP client to take; the connection's address stands.
        0x00 | 0x12 | 0x22 | 0x31 | 0x32 => None,
        _ => return Err(ProxyError::Invalid("v2 family/protocol is unknown")),
    };
    Ok(Parsed::Header { len, source })
}

/// The header to send an upstream for a client `source` connected to `dest` (the proxy's
/// address), version 1 (text) or 2 (binary).
pub fn write(version: u8, source: SocketAddr, dest: SocketAddr, out: &mut Vec<u8>) {
    let (src_ip, dst_ip) = match (source.ip().to_canonical(), dest.ip().to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (
            IpAddr::V6(match s {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            }),
            IpAddr::V6(match d {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            }),
        ),
    };
    if version == 1 {
        let proto = if src_ip.is_ipv4() { "TCP4" } else { "TCP6" };
        out.extend_from_slice(
            format!(
                "PROXY {proto} {src_ip} {dst_ip} {} {}\r\n",
                source.port(),
                dest.port()
            )
            .as_bytes(),
        );
        return;
    }
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (src_ip, dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => unreachable!("both sides were made the same family above"),
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&dest.port().to_be_bytes());
}

/// The header for a connection of the proxy's own (a health check): v2 `LOCAL`, or v1
/// `UNKNOWN`; the receiver keeps the connection's addresses.
pub fn write_local(version: u8, out: &mut Vec<u8>) {
    if version == 1 {
        out.extend_from_slice(b"PROXY UNKNOWN\r\n");
    } else {
        out.extend_from_slice(&V2_SIGNATURE);
        out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    }
}

/// An address block (`10.0.0.0/8`, `::1/128`, or a bare address: that address alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network.
    pub net: IpAddr,
    /// The prefix length.
    pub bits: u8,
}

impl Cidr {
    /// Parse `ADDR/BITS` or `ADDR`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an address block (ADDR/BITS)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.parse::<u8>() {
                Ok(n) if n <= max && b.bytes().all(|c| c.is_ascii_digit()) => n,
                _ => return Err(format!("'{s}': the prefix length must be 0-{max}")),
            },
        };
        Ok(Cidr { net, bits })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net.to_canonical(), ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_v1_line_that_cannot_end_within_107_bytes_is_refused_at_once() {
        // The longest line: its LF is the 107th byte.
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX - 2, b'x');
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), V1_MAX);
        assert_eq!(
            parse(&line),
            Ok(Parsed::Header {
                len: V1_MAX,
                source: None
            })
        );
        assert_eq!(parse(&line[..V1_MAX - 1]), Ok(Parsed::Incomplete));
        // One byte longer: its CR is the 107th, so no LF can follow in time.
        line.insert(20, b'x');
        assert!(parse(&line[..V1_MAX]).is_err());
        assert!(parse(&line).is_err());
    }

    #[test]
    fn v1_lines() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(h),
            Ok(Parsed::Header {
                len: 40,
                source: Some(sa("192.0.2.7:56324"))
            })
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::7 ::1 1 443\r\n"),
            Ok(Parsed::Header {
                len: 34,
                source: Some(sa("[2001:db8::7]:1"))
            })
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN whatever\r\n"),
            Ok(Parsed::Header {
                len: 24,
                source: None
            })
        );
        for cut in 0..40 {
            assert_eq!(parse(&h[..cut]), Ok(Parsed::Incomplete), "cut {cut}");
        }
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n"[..],
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 80\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 080 80\r\n",
            b"PROXY TCP4 192.0.2.7  10.0.0.1 1 80\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 80\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 80\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 80\rx",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(parse(&long), Err(ProxyError::Invalid(_))));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
        assert_eq!(parse(b"PROXZ"), Err(ProxyError::Missing));
    }

    #[test]
    fn v2_headers_and_what_we_write_read_back() {
        for v in [1u8, 2] {
            for (src, dst) in [
                ("192.0.2.7:5555", "10.0.0.1:80"),
                ("[2001:db8::7]:5555", "[::1]:80"),
                ("192.0.2.7:5555", "[::1]:80"),
            ] {
                let mut out = Vec::new();
                write(v, sa(src), sa(dst), &mut out);
                let want = match sa(src).ip().to_canonical() {
                    IpAddr::V4(_) if sa(dst).ip().is_ipv4() => sa(src),
                    IpAddr::V4(v4) => SocketAddr::new(v4.to_ipv6_mapped().into(), 5555),
                    _ => sa(src),
                };
                out.extend_from_slice(b"GET /");
                assert_eq!(
                    parse(&out),
                    Ok(Parsed::Header {
                        len: out.len() - 5,
                        source: Some(want)
                    }),
                    "v{v} {src} {dst}"
                );
                for cut in 0..out.len() - 5 {
                    assert_eq!(parse(&out[..cut]), Ok(Parsed::Incomplete), "v{v} cut {cut}");
                }
            }
        }
        // LOCAL: no client, whatever the family says.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            parse(&local),
            Ok(Parsed::Header {
                len: 16,
                source: None
            })
        );
        // Errors.
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
        assert!(
            matches!(parse(&bad), Err(ProxyError::Invalid(_))),
            "version 3"
        );
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(
            matches!(parse(&big), Err(ProxyError::Invalid(_))),
            "too large"
        );
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Err(ProxyError::Invalid(_))));
    }

    #[test]
    fn address_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains("127.0.0.1".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.1/32")
            .unwrap()
            .contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "10.0.0.0/", "::/129", "10.0.0.0/+8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    }
}
