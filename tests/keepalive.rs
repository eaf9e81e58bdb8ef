//! Client keep-alive: connections stay open between requests, close when asked, when idle too
//! long, and after a close-delimited body.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn many_requests_share_one_connection() {
    let dummies = Dummies::start(2);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    for i in 0..10 {
        client.send(format!("GET /n/{i} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes());
        let resp = client.read_response("GET");
        assert_eq!(resp.status, 200, "{}", show(&resp.raw));
        assert_eq!(resp.header("Connection"), None, "{}", show(&resp.raw));
        assert_eq!(hello_port(&resp.body_text()), dummies.port(i % 2));
    }
    client.expect_open_and_quiet(Duration::from_millis(100));
}

#[test]
fn connection_close_request_is_answered_with_close_then_closed() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200);
    assert!(resp.has_token("Connection", "close"), "{}", show(&resp.raw));
    client.expect_close(IO_TIMEOUT);
}

#[test]
fn idle_connection_is_closed_after_the_keepalive_timeout() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--keepalive-timeout", "300ms"]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n");
    assert_eq!(client.read_response("GET").status, 200);
    let idle_since = Instant::now();
    client.expect_close(Duration::from_secs(3));
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(150),
        "closed after {idle:?}, before the 300 ms keep-alive timeout"
    );
}

#[test]
fn close_delimited_upstream_body_is_forwarded_and_closes_the_client_connection() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET /close HTTP/1.1\r\nHost: test.local\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.framing, BodyFraming::Close, "{}", show(&resp.raw));
    assert!(resp.has_token("Connection", "close"), "{}", show(&resp.raw));
    assert_eq!(
        resp.body_text(),
        format!("Hello from Server {}\n", dummies.port(0))
    );
}

#[test]
fn upstream_closing_its_connection_does_not_close_the_client_connection() {
    let backend = RawBackend::start(|_| {
        Reply::Close(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        )
    });
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n");
        let resp = client.read_response("GET");
        assert_bytes_eq(
            &resp.raw,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "response",
        );
    }
    assert_eq!(backend.wait_requests(3, IO_TIMEOUT).len(), 3);
}
