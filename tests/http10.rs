//! HTTP/1.0 clients: answered in HTTP/1.1 syntax, closed unless they asked for keep-alive.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn http10_request_gets_a_response_with_close_then_eof() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!((resp.version.as_str(), resp.status), ("HTTP/1.1", 200));
    assert!(resp.has_token("Connection", "close"), "{}", show(&resp.raw));
    assert_eq!(
        resp.body_text(),
        format!("Hello from Server {}\n", dummies.port(0))
    );
    client.expect_close(IO_TIMEOUT);
}

#[test]
fn http10_keep_alive_is_honoured() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    for _ in 0..3 {
        client.send(b"GET / HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n");
        let resp = client.read_response("GET");
        assert_eq!(resp.status, 200);
        assert!(
            resp.has_token("Connection", "keep-alive"),
            "{}",
            show(&resp.raw)
        );
        assert_eq!(resp.framing, BodyFraming::Length(resp.body.len()));
    }
    client.expect_open_and_quiet(Duration::from_millis(100));
    // Without the token the next exchange is the last.
    client.send(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n");
    let resp = client.read_response("GET");
    assert!(resp.has_token("Connection", "close"), "{}", show(&resp.raw));
    client.expect_close(IO_TIMEOUT);
}

#[test]
fn http10_head_request_has_no_body() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"HEAD / HTTP/1.0\r\nHost: t\r\n\r\n");
    let resp = client.read_response("HEAD");
    assert_eq!(resp.status, 200);
    client.expect_close(IO_TIMEOUT);
}
