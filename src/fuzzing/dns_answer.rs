//! The DNS answer target: what the resolver thread reads from the network.

/// Fuzz the DNS answer parser with one input, asked about the question the input carries.
///
/// Checks: it never panics; an answer holds at most `MAX_RECORDS` addresses and SRV records,
/// has a TTL exactly when it holds some, names no target longer than a DNS name can be; the
/// same bytes read the same way; and bytes after the last section change nothing.
pub fn dns_answer(data: &[u8]) {
    use crate::dns::wire::{parse, question, MAX_RECORDS};
    let Some((id, name, qtype)) = question(data) else {
        // No question to ask about: a few fixed ones, which must fail cleanly.
        for qtype in [1, 28, 33] {
            assert!(parse(data, 0, "a.test", qtype).is_err() || data.len() >= 12);
        }
        return;
    };
    let outcome = parse(data, id, &name, qtype);
    assert_eq!(parse(data, id, &name, qtype), outcome, "deterministic");
    if let Ok(a) = &outcome {
        assert!(a.addrs.len() <= MAX_RECORDS && a.srv.len() <= MAX_RECORDS);
        assert!(a.extra.len() <= MAX_RECORDS);
        assert_eq!(
            a.ttl.is_some(),
            !a.addrs.is_empty() || !a.srv.is_empty(),
            "a TTL with the records, and only then"
        );
        assert!(a.srv.iter().all(|s| s.target.len() <= 253));
        // What follows the last section is not read: it changes nothing.
        let mut more = data.to_vec();
        more.extend_from_slice(b"\xc0\x0c\x00\x01");
        assert_eq!(
            parse(&more, id, &name, qtype).as_ref(),
            Ok(a),
            "trailing bytes"
        );
    }
}
