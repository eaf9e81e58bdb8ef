//! Upstream keep-alive: idle upstream connections are pooled per worker and reused, and never
//! reused when the upstream said it would close, after it closed, or past their limits.

mod common;

use common::*;
use std::thread;
use std::time::Duration;

fn post(addr: std::net::SocketAddr, body: &str) -> u16 {
    let mut client = ResponseReader::connect(addr);
    client.send(
        format!(
            "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    client.read_response("POST").status
}

#[test]
fn sequential_requests_reuse_one_upstream_connection() {
    let backend = RawBackend::fixed(&ok_response("pooled"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    for _ in 0..5 {
        assert_eq!(get(proxy.addr(), "/"), (200, "pooled".to_string()));
    }
    assert_eq!(post(proxy.addr(), "body"), 200);
    assert_eq!(backend.requests().len(), 6);
    assert_eq!(
        backend.used_connections(),
        1,
        "one pooled connection serves all six"
    );
}

#[test]
fn an_upstream_that_says_close_is_not_reused() {
    let backend = RawBackend::start(|_| {
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec(),
        )
    });
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    for _ in 0..3 {
        let mut client = ResponseReader::connect(proxy.addr());
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let resp = client.read_response("GET");
        assert_eq!(resp.status, 200);
        // The upstream's Connection: close is hop-by-hop: the client connection stays open.
        assert!(
            !resp.has_token("Connection", "close"),
            "{}",
            show(&resp.raw)
        );
    }
    assert_eq!(backend.used_connections(), 3);
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_never_used_for_a_failed_request() {
    // The backend closes every connection right after its (keep-alive looking) response, as a
    // backend with a short idle timeout does. Each GET must still succeed: the dead connection
    // is evicted when its EOF arrives, or, if the request wins the race, retried once on a
    // fresh connection.
    let backend = RawBackend::start(|_| Reply::Close(ok_response("fresh")));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    for i in 0..20 {
        assert_eq!(
            get(proxy.addr(), "/"),
            (200, "fresh".to_string()),
            "request {i}"
        );
    }
    assert_eq!(backend.requests().len(), 20);
}

#[test]
fn upstream_idle_zero_turns_pooling_off() {
    let backend = RawBackend::fixed(&ok_response("x"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--upstream-idle", "0"]);
    for _ in 0..3 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    assert_eq!(backend.used_connections(), 3);
}

#[test]
fn a_connection_is_closed_after_upstream_max_requests() {
    let backend = RawBackend::fixed(&ok_response("x"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--upstream-max-requests", "2"]);
    for _ in 0..5 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    assert_eq!(backend.used_connections(), 3, "2 + 2 + 1 requests");
}

#[test]
fn the_upstream_keep_alive_timeout_is_honoured() {
    // `Keep-Alive: timeout=2` → the proxy keeps the connection at most 1 s (a second of margin).
    let backend = RawBackend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nKeep-Alive: timeout=2\r\n\r\nk",
    );
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--upstream-idle-timeout", "10s"]);
    assert_eq!(get(proxy.addr(), "/").0, 200);
    assert_eq!(get(proxy.addr(), "/").0, 200);
    assert_eq!(backend.used_connections(), 1, "reused within the timeout");
    // Past the hint (1 s) plus the idle sweep's period (250 ms).
    thread::sleep(Duration::from_millis(1400));
    assert_eq!(get(proxy.addr(), "/").0, 200);
    assert_eq!(
        backend.used_connections(),
        2,
        "not reused past the upstream's timeout"
    );
}

#[test]
fn keep_alive_clients_spread_over_pooled_upstreams() {
    let dummies = Dummies::start(3);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    let mut seen = Vec::new();
    for _ in 0..9 {
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let resp = client.read_response("GET");
        seen.push(hello_port(&resp.body_text()));
    }
    let p = dummies.ports();
    let expected: Vec<u16> = (0..9).map(|i| p[i % 3]).collect();
    assert_eq!(seen, expected);
}

#[test]
fn large_responses_keep_their_upstream_connection_spliced_or_copied() {
    // After a large body the connection goes idle with readiness edges still in flight (the
    // ACK of the request, data already read or spliced): those must not evict it.
    let body = "x".repeat(1 << 20);
    let backend = RawBackend::fixed(&ok_response(&body));
    for args in [&[][..], &["--splice-min", "0"][..]] {
        let proxy = Proxy::with_upstreams(&[backend.port()], args);
        let before = backend.used_connections();
        for _ in 0..5 {
            let (status, got) = get(proxy.addr(), "/");
            assert_eq!((status, got.len()), (200, body.len()), "{args:?}");
            // Let late readiness events reach the idle connection before the next request.
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            backend.used_connections() - before,
            1,
            "one pooled connection serves all five ({args:?})"
        );
    }
}
