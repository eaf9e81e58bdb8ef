//! The pure parts of a health check: the request an HTTP check sends, the judgement of what
//! came back, and the jitter that spreads checks over time.

use crate::config::HealthSpec;
use crate::http::{response, Limits};
use std::net::SocketAddr;
use std::time::Duration;

/// Most bytes of a check's response read before it is judged (a head must fit).
pub const MAX_RESPONSE: usize = 16 * 1024;

/// What an HTTP check sends: `GET path` with `Host` (the configured one, or the upstream's
/// address), and `Connection: close`, since the check's connection is never reused.
pub fn request(spec: &HealthSpec, addr: SocketAddr) -> Vec<u8> {
    let mut out = proxy_header(spec);
    out.extend_from_slice(&http_request(spec, addr));
    out
}

/// The PROXY header a check of a `send_proxy` pool starts with (empty otherwise).
pub fn proxy_header(spec: &HealthSpec) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(version) = spec.send_proxy {
        crate::proxy_protocol::write_local(version, &mut out);
    }
    out
}

/// The HTTP request of a check, without a PROXY header.
pub fn http_request(spec: &HealthSpec, addr: SocketAddr) -> Vec<u8> {
    let host = spec.host.clone().unwrap_or_else(|| addr.to_string());
    let mut out = Vec::new();
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: goround-mio/{} health check\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        spec.path,
        env!("CARGO_PKG_VERSION")
    );
    out.extend_from_slice(head.as_bytes());
    out
}

/// The judgement of a check's response bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The head is not complete yet: read more.
    Incomplete,
    /// Passed: the detail for the status page (`HTTP 200`).
    Pass(String),
    /// Failed, and why.
    Fail(String),
}

/// Judge the response bytes of an HTTP check: a complete head whose status is in `expect`
/// passes; another status, a bad head or one too large fails. `eof`: the upstream closed, so
/// an incomplete head fails too.
pub fn judge(spec: &HealthSpec, bytes: &[u8], eof: bool) -> Verdict {
    let limits = Limits {
        max_head: MAX_RESPONSE,
        ..Limits::DEFAULT
    };
    // As many slots as the limit allows fields: a head within the limits always parses.
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_fields];
    match response::parse(bytes, false, &limits, &mut headers) {
        Ok(Some(r)) if r.code < 200 => {
            // An interim response (100, 103): the final one follows; judge that.
            judge(spec, &bytes[r.head_len..], eof)
        }
        Ok(Some(r)) if spec.expect.contains(r.code) => Verdict::Pass(format!("HTTP {}", r.code)),
        Ok(Some(r)) => Verdict::Fail(format!(
            "HTTP {} (expected {})",
            r.code,
            spec.expect.describe()
        )),
        Ok(None) if eof && bytes.is_empty() => {
            Verdict::Fail("closed without answering".to_string())
        }
        Ok(None) if eof => Verdict::Fail("closed mid-head".to_string()),
        Ok(None) => Verdict::Incomplete,
        Err(response::ResponseError::TooLarge) => {
            Verdict::Fail("response head too large".to_string())
        }
        Err(e) => Verdict::Fail(format!("bad response head ({e:?})")),
    }
}

/// Up to a tenth of `interval`, chosen by (upstream id, round): stable for a given check,
/// different between upstreams, so a hundred upstreams are not checked in one burst.
pub fn jitter(interval: Duration, id: usize, round: u64) -> Duration {
    let tenth = interval.as_millis() as u64 / 10;
    if tenth == 0 {
        return Duration::ZERO;
    }
    let mut x =
        (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    Duration::from_millis(x % (tenth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Check, StatusRanges};

    fn spec() -> HealthSpec {
        HealthSpec {
            check: Check::Http,
            path: "/healthz".into(),
            host: None,
            expect: StatusRanges(vec![(200, 399)]),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
            send_proxy: None,
            tls: false,
        }
    }

    #[test]
    fn the_request_names_path_and_host() {
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let r = String::from_utf8(request(&spec(), addr)).unwrap();
        assert!(
            r.starts_with("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"),
            "{r}"
        );
        assert!(r.ends_with("Connection: close\r\n\r\n"), "{r}");
        let named = HealthSpec {
            host: Some("app.internal".into()),
            ..spec()
        };
        let r = String::from_utf8(request(&named, addr)).unwrap();
        assert!(r.contains("\r\nHost: app.internal\r\n"), "{r}");
    }

    #[test]
    fn a_send_proxy_pool_checks_with_a_local_header() {
        let addr: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let v1 = HealthSpec {
            send_proxy: Some(1),
            ..spec()
        };
        let r = request(&v1, addr);
        assert!(r.starts_with(b"PROXY UNKNOWN\r\nGET /healthz HTTP/1.1\r\n"));
        let v2 = HealthSpec {
            send_proxy: Some(2),
            ..spec()
        };
        let r = request(&v2, addr);
        assert_eq!(
            crate::proxy_protocol::parse(&r),
            Ok(crate::proxy_protocol::Parsed::Header {
                len: 16,
                source: None
            })
        );
        assert!(r[16..].starts_with(b"GET /healthz HTTP/1.1\r\n"));
    }

    #[test]
    fn statuses_are_judged_against_expect() {
        let s = spec();
        let j = |b: &[u8], eof| judge(&s, b, eof);
        assert_eq!(
            j(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
            Verdict::Pass("HTTP 200".into())
        );
        assert_eq!(
            j(b"HTTP/1.1 302 Found\r\n\r\n", false),
            Verdict::Pass("HTTP 302".into())
        );
        assert_eq!(
            j(b"HTTP/1.1 500 Oops\r\n\r\n", false),
            Verdict::Fail("HTTP 500 (expected 200-399)".into())
        );
        assert_eq!(j(b"HTTP/1.1 200 OK\r\n", false), Verdict::Incomplete);
        assert_eq!(
            j(b"HTTP/1.1 200 OK\r\n", true),
            Verdict::Fail("closed mid-head".into())
        );
        assert_eq!(
            j(b"", true),
            Verdict::Fail("closed without answering".into())
        );
        assert!(matches!(j(b"garbage\r\n\r\n", false), Verdict::Fail(_)));
        assert_eq!(
            j(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
                false
            ),
            Verdict::Pass("HTTP 204".into())
        );
        let big = [
            b"HTTP/1.1 200 OK\r\nX: ".as_slice(),
            &vec![b'a'; MAX_RESPONSE],
        ]
        .concat();
        assert_eq!(
            j(&big, false),
            Verdict::Fail("response head too large".into())
        );
    }

    #[test]
    fn jitter_stays_within_a_tenth_and_varies() {
        let i = Duration::from_secs(10);
        let all: Vec<Duration> = (0..100).map(|id| jitter(i, id, 3)).collect();
        assert!(all.iter().all(|j| *j <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert!(distinct.len() > 50, "{} distinct", distinct.len());
        assert_eq!(jitter(Duration::from_millis(5), 1, 1), Duration::ZERO);
    }
}
