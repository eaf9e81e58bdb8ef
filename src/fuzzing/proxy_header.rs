//! The PROXY protocol target: the parser's framing, and what we write reads back.

/// Fuzz the PROXY protocol parser with one input.
///
/// Checks: it never panics; a header's length is within the input; every shorter prefix of a
/// header is incomplete and the header alone parses the same; what follows a header does not
/// change it; and a header this crate writes (for addresses taken from the input's first bytes)
/// reads back to the same client.
pub fn proxy_header(data: &[u8]) {
    use crate::proxy_protocol::{parse, write, Parsed};
    use std::net::SocketAddr;
    let outcome = parse(data);
    if let Ok(Parsed::Header { len, source }) = outcome {
        assert!(
            len > 0 && len <= data.len(),
            "header length {len} of {}",
            data.len()
        );
        assert_eq!(parse(&data[..len]), outcome, "the header alone");
        for cut in 0..len {
            assert_eq!(
                parse(&data[..cut]),
                Ok(Parsed::Incomplete),
                "prefix {cut} of {len}"
            );
        }
        let mut more = data[..len].to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&more), Ok(Parsed::Header { len, source }));
    }
    if data.len() >= 40 {
        let v6 = data[0] & 1 == 1;
        let ip = |b: &[u8]| -> std::net::IpAddr {
            if v6 {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[..16]);
                std::net::Ipv6Addr::from(o).into()
            } else {
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
            }
        };
        let source = SocketAddr::new(ip(&data[1..17]), u16::from_be_bytes([data[33], data[34]]));
        let dest = SocketAddr::new(ip(&data[17..33]), u16::from_be_bytes([data[35], data[36]]));
        for version in [1, 2] {
            let mut out = Vec::new();
            write(version, source, dest, &mut out);
            // Mixed families are written as IPv4-mapped IPv6, so compare canonical forms.
            match parse(&out) {
                Ok(Parsed::Header {
                    len,
                    source: Some(read),
                }) => {
                    assert_eq!(len, out.len(), "v{version} {source} -> {dest}");
                    assert_eq!(read.ip().to_canonical(), source.ip().to_canonical());
                    assert_eq!(read.port(), source.port());
                }
                other => panic!("v{version} {source} -> {dest} read back as {other:?}"),
            }
        }
    }
}
