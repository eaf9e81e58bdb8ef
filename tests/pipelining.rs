//! Pipelined requests: several requests in one write are all answered, in order.

mod common;

use common::*;

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dummies = Dummies::start(3);
    let p = dummies.ports();
    let proxy = Proxy::with_upstreams(&p, &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"GET /big?bytes=3 HTTP/1.1\r\nHost: t\r\n\r\n\
          HEAD / HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /health HTTP/1.1\r\nHost: t\r\n\r\n\
          GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.read_response("GET").body, b"abc");
    let head = client.read_response("HEAD");
    assert_eq!((head.status, head.framing), (200, BodyFraming::None));
    assert_eq!(client.read_response("GET").body, b"OK\n");
    // The fourth request is the fourth pick: A again.
    assert_eq!(
        client.read_response("GET").body_text(),
        format!("Hello from Server {}\n", p[0])
    );
    client.expect_open_and_quiet(std::time::Duration::from_millis(100));
}

#[test]
fn a_slow_first_response_still_comes_first() {
    let dummies = Dummies::start(2);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\nGET /big?bytes=5 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let first = client.read_response("GET");
    assert_eq!(
        first.body_text(),
        format!("Hello from Server {}\n", dummies.port(0))
    );
    assert_eq!(client.read_response("GET").body, b"abcde");
}

#[test]
fn pipelined_post_body_does_not_leak_into_the_next_request() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 20\r\n\r\nGET /evil HTTP/1.1\r\n\
          GET /b HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.read_response("POST").body, b"ok");
    assert_eq!(client.read_response("GET").body, b"ok");
    let requests = backend.wait_requests(2, IO_TIMEOUT);
    assert_eq!(requests.len(), 2);
    assert!(requests[0].starts_with(b"POST /a HTTP/1.1\r\n"));
    assert!(
        requests[0].ends_with(b"\r\n\r\nGET /evil HTTP/1.1\r\n"),
        "{}",
        show(&requests[0])
    );
    assert!(
        requests[1].starts_with(b"GET /b HTTP/1.1\r\n"),
        "{}",
        show(&requests[1])
    );
}
