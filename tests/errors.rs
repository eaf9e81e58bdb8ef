//! The answers the proxy makes itself, and what reaches the backend meanwhile (nothing).

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Assert a proxy-made answer by status, type, length and body (whether it closes is free).
#[track_caller]
fn assert_local(resp: &Response, code: u16, reason: &str) {
    let body = format!("{code} {reason}\n");
    assert_eq!(
        (resp.status, resp.reason.as_str()),
        (code, reason),
        "{}",
        show(&resp.raw)
    );
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain"),
        "{}",
        show(&resp.raw)
    );
    assert_eq!(resp.body_text(), body);
    assert_eq!(
        resp.framing,
        BodyFraming::Length(body.len()),
        "{}",
        show(&resp.raw)
    );
}

/// A recording backend that answers 200, and a proxy in front of it.
fn recorded() -> (RawBackend, Proxy) {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    (backend, proxy)
}

/// After an attack: nothing reached the backend, and a fresh request still works.
#[track_caller]
fn assert_untouched_then_healthy(backend: &RawBackend, proxy: &Proxy) {
    assert_eq!(
        backend.bytes_received(),
        0,
        "the backend got: {:?}",
        backend.connections()
    );
    assert_eq!(get(proxy.addr(), "/"), (200, "ok".to_string()));
}

#[test]
fn malformed_heads_get_400_and_close_and_reach_no_backend() {
    let (backend, proxy) = recorded();
    let cases: &[(&str, &[u8])] = &[
        ("field without colon", b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n"),
        (
            "Content-Length and Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        ("non-digit Content-Length", b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc"),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n"),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
        ("garbage request line", b"HELLO\r\n\r\n"),
    ];
    for (what, request) in cases {
        let answer = send_raw(proxy.addr(), request);
        if answer != local_answer(400, true) {
            panic!(
                "{what}: expected the exact 400 and a close, got: {}",
                show(&answer)
            );
        }
    }
    assert_untouched_then_healthy(&backend, &proxy);
}

#[test]
fn head_over_32_kib_gets_431_and_close() {
    let (backend, proxy) = recorded();
    let mut request = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    request.resize(request.len() + MAX_HEAD + 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    let answer = send_raw(proxy.addr(), &request);
    assert_bytes_eq(&answer, &local_answer(431, true), "answer");
    assert_untouched_then_healthy(&backend, &proxy);
}

#[test]
fn incomplete_head_gets_408_after_the_client_header_timeout() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--client-header-timeout", "300ms"]);
    let started = Instant::now();
    let answer = send_raw(proxy.addr(), b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow:");
    let elapsed = started.elapsed();
    assert_bytes_eq(&answer, &local_answer(408, true), "answer");
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(3),
        "408 after {elapsed:?} for a 300 ms header timeout"
    );
    assert_untouched_then_healthy(&backend, &proxy);
}

#[test]
fn garbage_from_the_upstream_gets_502() {
    let backend = RawBackend::start(|_| Reply::Close(b"NOT HTTP AT ALL\r\n\r\n".to_vec()));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_local(&client.read_response("GET"), 502, "Bad Gateway");
}

#[test]
fn upstream_closing_before_any_response_byte_gets_502_for_a_post() {
    let backend = RawBackend::close_on_accept();
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na=1");
    assert_local(&client.read_response("POST"), 502, "Bad Gateway");
}

#[test]
fn unsolicited_101_gets_502() {
    let backend = RawBackend::start(|_| {
        Reply::UpgradeEcho(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                .to_vec(),
        )
    });
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_local(&client.read_response("GET"), 502, "Bad Gateway");
}

#[test]
fn every_upstream_down_gets_503_with_retry_after_at_once() {
    let proxy = Proxy::with_upstreams(&[free_port(), free_port()], &[]);
    let started = Instant::now();
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = client.read_response("GET");
    let elapsed = started.elapsed();
    assert_local(&resp, 503, "Service Unavailable");
    let retry_after = resp.header("Retry-After").unwrap_or("");
    assert!(
        !retry_after.is_empty() && retry_after.bytes().all(|b| b.is_ascii_digit()),
        "Retry-After must be delta-seconds: {}",
        show(&resp.raw)
    );
    assert!(elapsed < Duration::from_secs(1), "503 took {elapsed:?}");
}

#[test]
fn upstream_silent_past_the_read_timeout_gets_504() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--read-timeout", "300ms"]);
    let started = Instant::now();
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = client.read_response("GET");
    let elapsed = started.elapsed();
    assert_local(&resp, 504, "Gateway Timeout");
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_millis(2500),
        "504 after {elapsed:?} for a 300 ms read timeout"
    );
}

#[test]
fn connect_method_gets_405() {
    let (backend, proxy) = recorded();
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    let resp = client.read_response("CONNECT");
    assert_eq!(resp.status, 405, "{}", show(&resp.raw));
    assert_eq!(resp.body, b"405 Method Not Allowed\n");
    assert!(
        resp.header("Allow").is_some(),
        "405 without Allow: {}",
        show(&resp.raw)
    );
    drop(client);
    assert_untouched_then_healthy(&backend, &proxy);
}
