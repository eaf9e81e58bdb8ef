//! Responses without a body (HEAD, 204, 304) end at their head: the next request on the same
//! connection works, which proves neither side waited for body bytes.

mod common;

use common::*;

#[test]
fn head_response_has_no_body_but_keeps_its_content_length() {
    let dummies = Dummies::start(2);
    let p = dummies.ports();
    let proxy = Proxy::with_upstreams(&p, &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response("HEAD");
    assert_eq!(resp.status, 200);
    let get_length = format!("Hello from Server {}\n", p[0]).len().to_string();
    assert_eq!(
        resp.header("Content-Length"),
        Some(get_length.as_str()),
        "{}",
        show(&resp.raw)
    );
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let next = client.read_response("GET");
    assert_eq!(next.body_text(), format!("Hello from Server {}\n", p[1]));
}

/// `GET path` must answer `status` without a body, then a plain GET on the same connection works.
fn no_body_then_next(path: &str, status: u16) {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let resp = client.read_response("GET");
    assert_eq!(resp.status, status, "{}", show(&resp.raw));
    assert_eq!(
        resp.header("Transfer-Encoding"),
        None,
        "{}",
        show(&resp.raw)
    );
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let next = client.read_response("GET");
    assert_eq!(
        next.body_text(),
        format!("Hello from Server {}\n", dummies.port(0))
    );
}

#[test]
fn status_204_has_no_body() {
    no_body_then_next("/status/204", 204);
}

#[test]
fn status_304_has_no_body() {
    no_body_then_next("/status/304", 304);
}

#[test]
fn upstream_head_response_with_a_large_content_length_is_not_waited_for() {
    let backend = RawBackend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    for _ in 0..2 {
        client.send(b"HEAD /file HTTP/1.1\r\nHost: t\r\n\r\n");
        let resp = client.read_response("HEAD");
        assert_bytes_eq(
            &resp.raw,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",
            "HEAD response",
        );
    }
}
