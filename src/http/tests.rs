//! The shared byte-level helpers: case-insensitive compares, field classes, lists, tokens.

use super::*;
use httparse::Header;

fn h<'a>(name: &'a str, value: &'a [u8]) -> Header<'a> {
    Header { name, value }
}

#[test]
fn tchar_table_matches_rfc_9110() {
    let tchars: Vec<u8> = (0u8..=255).filter(|&b| is_tchar(b)).collect();
    let mut expected: Vec<u8> = b"!#$%&'*+-.^_`|~".to_vec();
    expected.extend(b'0'..=b'9');
    expected.extend(b'A'..=b'Z');
    expected.extend(b'a'..=b'z');
    expected.sort_unstable();
    assert_eq!(tchars, expected);
    assert!(is_token(b"GET"));
    assert!(!is_token(b""));
    assert!(!is_token(b"GE T"));
}

#[test]
fn trim_ows_and_list_elements() {
    assert_eq!(trim_ows(b" \t a b\t "), b"a b");
    assert_eq!(trim_ows(b" \t "), b"");
    assert_eq!(trim_ows(b""), b"");
    let v: Vec<&[u8]> = list_elements(b" a ,, b\t,c , ,").collect();
    assert_eq!(v, vec![&b"a"[..], b"b", b"c"]);
    assert_eq!(list_elements(b" , ,").count(), 0);
}

#[test]
fn one_connection_value_reads_as_the_field_list_does() {
    for value in [
        &b"keep-alive"[..],
        b"Keep-Alive",
        b"close",
        b"CLOSE",
        b" close ",
        b"Upgrade",
        b"keep-alive, Upgrade",
        b"close,,x-trace",
        b"",
        b"te",
    ] {
        let headers = [Header {
            name: "Connection",
            value,
        }];
        let key = KeyFields::of(&headers);
        assert_eq!(key.connection_count, 1);
        assert_eq!(
            key.connection_tokens(&headers),
            ConnectionTokens::of(&headers),
            "{:?}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn eq_ignore_case_agrees_with_eq_ignore_ascii_case_at_every_length_and_position() {
    let base = b"x-forwarded-proto-content";
    for len in 0..=base.len() {
        for pos in 0..len {
            for x in 0..=255u8 {
                for y in [x, x ^ 0x20, x ^ 0x80, x ^ 1, b'a', b'A', b'-', b'\r'] {
                    let (mut a, mut b) = (base[..len].to_vec(), base[..len].to_vec());
                    a[pos] = x;
                    b[pos] = y;
                    assert_eq!(
                        eq_ignore_case(&a, &b),
                        a.eq_ignore_ascii_case(&b),
                        "{a:?} {b:?}"
                    );
                }
            }
        }
        // Unequal lengths never match.
        assert!(len == base.len() || !eq_ignore_case(&base[..len], base));
        assert!(len == base.len() || !eq_ignore_case(base, &base[..len]));
    }
}

#[test]
fn any_byte_finds_a_byte_at_every_length_and_position() {
    for len in 0..=30 {
        let clean = vec![b'a'; len];
        assert!(!any_byte(&clean, b'_'));
        for pos in 0..len {
            for (byte, other) in [(b'_', b'\x7f'), (b'_', b'^'), (0x80, 0x81), (b'-', b'.')] {
                let mut s = clean.clone();
                s[pos] = byte;
                assert!(any_byte(&s, byte), "{s:?} {byte}");
                s[pos] = other;
                assert!(!any_byte(&s, byte), "{s:?} {byte}");
            }
        }
    }
}

#[test]
fn field_names_classify_case_insensitively() {
    for (name, want) in [
        ("TE", FieldName::Te),
        ("Host", FieldName::Host),
        ("hosT", FieldName::Host),
        ("Hostx", FieldName::Other),
        ("X-Forwarded-For", FieldName::XForwardedFor),
        ("x-forwarded-host", FieldName::XForwardedHost),
        ("X-FORWARDED-PROTO", FieldName::XForwardedProto),
        ("Transfer-Encoding", FieldName::TransferEncoding),
        ("Transfer_Encoding", FieldName::Other),
        ("Proxy-Connection", FieldName::ProxyConnection),
        ("Keep-Alive", FieldName::KeepAlive),
        ("Trailer", FieldName::Trailer),
        ("Expect", FieldName::Expect),
    ] {
        assert_eq!(FieldName::of(name), want, "{name}");
    }
    assert!(FieldName::Host.not_forwarded() && !FieldName::Host.hop_by_hop());
    assert!(FieldName::Te.not_forwarded() && FieldName::Te.hop_by_hop());
    assert!(!FieldName::Expect.not_forwarded() && !FieldName::Other.not_forwarded());
}

#[test]
fn key_fields_mark_field_bits_and_classify_past_the_64th() {
    let mut headers = vec![
        Header {
            name: "Accept",
            value: b"*/*"
        };
        70
    ];
    headers[0] = Header {
        name: "Host",
        value: b"a",
    };
    headers[3] = Header {
        name: "X-Forwarded-For",
        value: b"1.2.3.4",
    };
    headers[5] = Header {
        name: "Connection",
        value: b"close",
    };
    headers[7] = Header {
        name: "expect",
        value: b"100-continue",
    };
    headers[66] = Header {
        name: "Upgrade",
        value: b"x",
    };
    let bits = KeyFields::of(&headers).bits;
    assert_eq!(bits.not_forwarded, 1 | 1 << 3 | 1 << 5);
    assert_eq!(bits.hop_by_hop, 1 << 5);
    assert_eq!(bits.forwarded_for, 1 << 3);
    assert_eq!(bits.expect, 1 << 7);
    assert_eq!(bits.reformat, 0);
    assert!(FieldBits::test(
        bits.hop_by_hop,
        66,
        "Upgrade",
        FieldName::hop_by_hop
    ));
    assert!(!FieldBits::test(
        bits.hop_by_hop,
        65,
        "Accept",
        FieldName::hop_by_hop
    ));
    assert!(!FieldBits::test(
        bits.hop_by_hop,
        3,
        "X-Forwarded-For",
        FieldName::hop_by_hop
    ));
}

#[test]
fn name_is_agrees_with_eq_ignore_ascii_case() {
    let names = [
        "Host",
        "HOST",
        "host",
        "hOsT",
        "Hos",
        "Hostx",
        "H\u{f3}st",
        "Content-Length",
        "content-length",
        "Content_Length",
        "Content\rLength",
        "",
        "-",
        "\r",
    ];
    for a in names {
        for b in names {
            assert_eq!(name_is(a, b), a.eq_ignore_ascii_case(b), "{a:?} {b:?}");
        }
    }
    // Every byte pair, as one-byte names.
    for x in 0..128u8 {
        for y in 0..128u8 {
            let (a, b) = ((x as char).to_string(), (y as char).to_string());
            assert_eq!(name_is(&a, &b), a.eq_ignore_ascii_case(&b), "{x} {y}");
        }
    }
}

#[test]
fn connection_tokens_span_fields_case_insensitively() {
    let hs = [
        h("Connection", b"Keep-Alive, X-Foo"),
        h("connection", b"CLOSE"),
    ];
    let t = ConnectionTokens::of(&hs);
    assert_eq!(
        t,
        ConnectionTokens {
            close: true,
            keep_alive: true,
            upgrade: false,
            names_fields: true
        }
    );
    assert!(has_token(&hs, "CONNECTION", b"x-foo"));
    assert!(!has_token(&hs, "connection", b"upgrade"));
}

#[test]
fn transfer_codings_final_and_counts() {
    let te = TransferCodings::of(&[h("Transfer-Encoding", b"gzip"), h("TE", b"chunked")]);
    assert!(te.present && !te.final_chunked && te.other && !te.malformed);
    let te = TransferCodings::of(&[
        h("Transfer-Encoding", b"gzip"),
        h("transfer-encoding", b" Chunked "),
    ]);
    assert!(te.final_chunked && te.other && te.chunked_count == 1 && !te.malformed);
    let te = TransferCodings::of(&[h("Transfer-Encoding", b"chunked, chunked")]);
    assert_eq!(te.chunked_count, 2);
    assert!(TransferCodings::of(&[h("Transfer-Encoding", b" , ")]).malformed);
    assert!(TransferCodings::of(&[h("Transfer-Encoding", b"chunked;a=b")]).malformed);
    assert!(TransferCodings::of(&[h("Transfer-Encoding", b"chu\"nked")]).malformed);
    let te = TransferCodings::of(&[h("Transfer-Encoding", b"gzip;q=1, chunked")]);
    assert!(!te.malformed && te.final_chunked && te.other);
    assert!(!TransferCodings::of(&[h("Host", b"x")]).present);
}

#[test]
fn content_length_is_strict_digits() {
    assert_eq!(parse_content_length(b"0"), Some(0));
    assert_eq!(parse_content_length(b"007"), Some(7));
    assert_eq!(
        parse_content_length(b"18446744073709551615"),
        Some(u64::MAX)
    );
    assert_eq!(parse_content_length(b"18446744073709551616"), None);
    for bad in [
        &b""[..],
        b"+5",
        b"-5",
        b"5 5",
        b"5,5",
        b"5, 5",
        b"0x5",
        b" 5",
    ] {
        assert_eq!(parse_content_length(bad), None, "{:?}", bad);
    }
}

#[test]
fn numbers_are_written_exactly() {
    let mut out = Vec::new();
    for n in [0u64, 7, 10, 255, 1_000_000, u64::MAX] {
        out.clear();
        push_decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
        assert_eq!(decimal_len(n), out.len());
        out.clear();
        push_hex(&mut out, n);
        assert_eq!(out, format!("{n:x}").as_bytes());
    }
}
