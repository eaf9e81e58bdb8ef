//! `Expect: 100-continue` and other interim (1xx) responses reach HTTP/1.1 clients before the
//! final response.

mod common;

use common::*;

/// Send a POST with `Expect: 100-continue` and `framing`, wait for the 100, send `body`, and
/// return what the upstream (goround-dummy's /echo) received, then check the connection carries on.
fn continue_exchange(extra: &[&str], framing: &str, body: &[u8]) -> String {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), extra);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n{framing}\r\n\r\n")
            .as_bytes(),
    );
    // The body is withheld until the 100 arrives: a proxy that swallowed it would time out here.
    let interim = client.read_response("POST");
    assert_bytes_eq(
        &interim.raw,
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "interim response",
    );
    client.send(body);
    let resp = client.read_response("POST");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    let echoed = resp.body_text();
    assert!(echoed.starts_with("POST /echo HTTP/1.1\r\n"), "{echoed:?}");
    // And the connection carries on.
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response("GET").status, 200);
    echoed
}

#[test]
fn a_small_body_gets_the_proxys_own_100_continue_and_is_read_before_the_connect() {
    // The body fits --request-buffer: the proxy meets the expectation itself, reads and checks
    // the body, and forwards the request without Expect.
    let echoed = continue_exchange(&[], "Content-Length: 5", b"hello");
    assert!(!echoed.contains("Expect"), "{echoed:?}");
    assert!(
        echoed.ends_with("\r\nContent-Length: 5\r\n\r\nhello"),
        "{echoed:?}"
    );
}

#[test]
fn a_long_or_chunked_body_keeps_the_expectation_for_the_upstream() {
    // Longer than the request buffer: the upstream answers 100 and the body streams.
    let body = vec![b'x'; 2000];
    let echoed = continue_exchange(&["--request-buffer", "1k"], "Content-Length: 2000", &body);
    assert!(
        echoed.contains("\r\nExpect: 100-continue\r\n"),
        "{echoed:?}"
    );
    assert!(echoed.ends_with(&"x".repeat(2000)), "{echoed:?}");
    // A chunked body's length is unknown: the same.
    let echoed = continue_exchange(
        &[],
        "Transfer-Encoding: chunked",
        b"5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(
        echoed.contains("\r\nExpect: 100-continue\r\n"),
        "{echoed:?}"
    );
    assert!(echoed.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{echoed:?}");
    // And with request buffering off, every expectation goes upstream.
    let echoed = continue_exchange(&["--request-buffer", "0"], "Content-Length: 5", b"hello");
    assert!(
        echoed.contains("\r\nExpect: 100-continue\r\n"),
        "{echoed:?}"
    );
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
