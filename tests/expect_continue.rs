//! `Expect: 100-continue` and other interim (1xx) responses reach HTTP/1.1 clients before the
//! final response.

mod common;

use common::*;

#[test]
fn expect_100_continue_gets_the_interim_response_then_the_final_one() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    // The body is withheld until the 100 arrives: a proxy that swallowed it would time out here.
    let interim = client.read_response("POST");
    assert_bytes_eq(
        &interim.raw,
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "interim response",
    );
    client.send(b"hello");
    let resp = client.read_response("POST");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    let echoed = resp.body_text();
    assert!(echoed.starts_with("POST /echo HTTP/1.1\r\n"), "{echoed:?}");
    assert!(
        echoed.contains("\r\nExpect: 100-continue\r\n"),
        "{echoed:?}"
    );
    assert!(echoed.ends_with("\r\n\r\nhello"), "{echoed:?}");
    // And the connection carries on.
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response("GET").status, 200);
}

/// An upstream that sends 103 Early Hints, then the final response.
fn early_hints_backend() -> RawBackend {
    RawBackend::fixed(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
}

#[test]
fn early_hints_are_forwarded_before_the_final_response() {
    let backend = early_hints_backend();
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let interim = client.read_response("GET");
    assert_bytes_eq(
        &interim.raw,
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
        "interim response",
    );
    let resp = client.read_response("GET");
    assert_bytes_eq(
        &resp.raw,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "final",
    );
}

#[test]
fn http10_clients_get_no_interim_responses() {
    let backend = early_hints_backend();
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    assert_eq!(resp.body, b"ok");
}
