//! The ClientHello target: what TCP mode reads of a TLS client before routing it.

/// Fuzz the ClientHello reader with one input.
///
/// Checks: it never panics; a complete hello stays complete, with the same name, whatever
/// follows it; every prefix of the input is incomplete or refused the same way, never a
/// different name; a name is lowercase, without a trailing dot, at most 253 bytes.
pub fn client_hello(data: &[u8]) {
    use crate::tcp::client_hello::{parse, Hello};
    let outcome = parse(data);
    if let Ok(Hello::Complete { sni: Some(name) }) = &outcome {
        assert!(name.len() <= 253 && !name.ends_with('.'));
        assert_eq!(name, &name.to_ascii_lowercase());
    }
    if let Ok(Hello::Complete { .. }) = &outcome {
        let mut more = data.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
        assert_eq!(parse(&more), outcome, "what follows a complete hello");
    }
    for cut in [data.len() / 2, data.len().saturating_sub(1)] {
        match parse(&data[..cut]) {
            Ok(Hello::Incomplete) | Err(_) => {}
            Ok(Hello::Complete { sni }) => assert!(
                matches!(&outcome, Ok(Hello::Complete { sni: s }) if *s == sni),
                "a prefix read as another hello"
            ),
        }
    }
}
