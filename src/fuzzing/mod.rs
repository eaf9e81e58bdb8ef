//! The bodies of the fuzz targets, as plain functions over bytes.
//!
//! Each of [`request_head`], [`response_head`], [`chunked`] and [`proxy_header`] runs one input through a parser
//! and checks properties that must hold for *every* input, panicking (`assert!`) when one
//! breaks. "No panic" alone would miss the bugs a proxy cares about: a head that we accept but
//! rewrite into something that reads differently, a line injected into a rewritten head, a
//! chunked body decoded differently depending on how it arrived.
//!
//! The cargo-fuzz targets in `fuzz/` are one call each, and `tests/fuzz_corpus.rs` replays the
//! committed corpora and regressions through the same functions, so what a fuzzer once found
//! stays a test. The module is compiled with the `fuzzing` feature and uses no test-only crate.
//!
//! Options that the targets vary (client address, X-Forwarded-For policy, small or default
//! limits, HEAD or not) come from the input's last byte for heads, so a seed picks them by what
//! follows its head; the chunked target derives its split points and output room from a hash of
//! the whole input. Either way one input always runs the same way.

mod chunked;
mod client_hello;
mod dns_answer;
mod heads;
mod proxy_header;
mod support;

pub use chunked::{chunked, reference_dechunk, Dechunked};
pub use client_hello::client_hello;
pub use dns_answer::dns_answer;
pub use heads::{request_head, response_head};
pub use proxy_header::proxy_header;

#[cfg(test)]
mod tests {
    use super::support::show;
    use super::*;
    use crate::http::chunked::MAX_SIZE_DIGITS;
    use crate::http::Limits;

    fn complete(body: &[u8], rechunked: &[u8], len: usize) -> Dechunked {
        Dechunked::Complete {
            body: body.to_vec(),
            rechunked: rechunked.to_vec(),
            len,
        }
    }

    fn incomplete(body: &[u8], rechunked: &[u8]) -> Dechunked {
        Dechunked::Incomplete {
            body: body.to_vec(),
            rechunked: rechunked.to_vec(),
        }
    }

    #[test]
    fn reference_decodes_complete_bodies() {
        let l = Limits::DEFAULT;
        assert_eq!(
            reference_dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT", &l),
            complete(
                b"hello world",
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                26
            )
        );
        assert_eq!(
            reference_dechunk(
                b"00A;x=\"y\"\r\n0123456789\r\n0 ; z\r\nA: b\r\nC:\r\n\r\n",
                &l
            ),
            complete(b"0123456789", b"a\r\n0123456789\r\n0\r\n\r\n", 42)
        );
        assert_eq!(
            reference_dechunk(b"0\r\n\r\n", &l),
            complete(b"", b"0\r\n\r\n", 5)
        );
    }

    #[test]
    fn reference_tells_incomplete_from_invalid() {
        let l = Limits::DEFAULT;
        assert_eq!(reference_dechunk(b"", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"5", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"5;a", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"5\r", &l), incomplete(b"", b""));
        assert_eq!(
            reference_dechunk(b"5\r\nhel", &l),
            incomplete(b"hel", b"5\r\nhel")
        );
        assert_eq!(
            reference_dechunk(b"5\r\nhello\r", &l),
            incomplete(b"hello", b"5\r\nhello")
        );
        assert_eq!(reference_dechunk(b"0\r\nX", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"0\r\nX: y\r", &l), incomplete(b"", b""));
        assert_eq!(reference_dechunk(b"0\r\n\r", &l), incomplete(b"", b""));
        for bad in [
            &b"x"[..],
            b"\r\n",
            b"5\n",
            b"5\rx",
            b"5 5",
            b"5\r\nhelloX",
            b"5\r\nhello\rX",
            b"0\r\nX\r\n",
            b"0\r\n X: y\r\n",
            b"0\r\nX : y",
            b"0\r\n\rX",
            b"10000000000000000",
        ] {
            assert_eq!(
                reference_dechunk(bad, &l),
                Dechunked::Invalid,
                "{}",
                show(bad)
            );
        }
        let mut zeros = b"0".repeat(MAX_SIZE_DIGITS);
        assert_eq!(reference_dechunk(&zeros, &l), incomplete(b"", b""));
        zeros.push(b'0');
        assert_eq!(reference_dechunk(&zeros, &l), Dechunked::Invalid);
    }

    #[test]
    fn reference_applies_the_limits() {
        let l = Limits {
            max_chunk_ext: 4,
            max_trailers: 6,
            ..Limits::DEFAULT
        };
        assert_eq!(
            reference_dechunk(b"1 ;ab\r\nx\r\n0\r\nX: a\r\n\r\n", &l),
            complete(b"x", b"1\r\nx\r\n0\r\n\r\n", 21)
        );
        assert_eq!(reference_dechunk(b"1;abcd", &l), Dechunked::Invalid);
        assert_eq!(
            reference_dechunk(b"0\r\nX: ab\r\n\r\n", &l),
            Dechunked::Invalid
        );
        assert!(reference_dechunk(b"0\r\nX: a\r\n\r\n", &l).is_complete());
        assert_eq!(reference_dechunk(b"0\r\nX: abcd", &l), Dechunked::Invalid);
    }

    impl Dechunked {
        fn is_complete(&self) -> bool {
            matches!(self, Dechunked::Complete { .. })
        }
    }

    #[test]
    fn targets_accept_typical_inputs() {
        request_head(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
        request_head(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n\x04");
        request_head(b"GET http://a:1?q HTTP/1.0\r\nConnection: keep-alive, X\r\nX: y\r\n\r\n\x01");
        request_head(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        request_head(b"garbage\x18");
        // Underscored names dropped (last byte: bit 5 clear) or kept (set); Expect from 1.0.
        request_head(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nX_A: 1\r\nContent-Length: 1\r\n\r\n\x00",
        );
        request_head(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nX_A: 1\r\nContent-Length: 1\r\n\r\n\x20");
        response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello",
        );
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        // The response to a HEAD (last byte: bit 0 set).
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\x01");
        response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\x01");
        response_head(
            b"HTTP/1.1 101 Switching\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        );
        response_head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n");
        response_head(b"HTTP/1.0 200 OK\r\n\r\n");
        chunked(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n");
        chunked(b"5\r\nhello\r\n6;x=y\r\n wor");
        chunked(b"5\r\nhelloX");
        chunked(b"");
    }
}
