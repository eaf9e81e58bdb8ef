//! HTTP/1.0 clients: answered in HTTP/1.1 syntax, closed unless they asked for keep-alive,
//! never sent Transfer-Encoding, their expectations not passed on.

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

/// A backend answering by path: bodies under `gzip, chunked`, close-delimited `gzip`, plain
/// `chunked`, and HEAD answers with Transfer-Encoding or Content-Length.
fn coding_backend() -> RawBackend {
    RawBackend::start(|req| {
        let path = req.split(|&b| b == b' ').nth(1).unwrap_or(b"");
        match path {
            b"/gzip-chunked" => Reply::KeepAlive(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX-Up: 1\r\n\r\n\
                  5\r\nhello\r\n0\r\n\r\n"
                    .to_vec(),
            ),
            b"/gzip" => Reply::Close(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX-Up: 1\r\n\r\nhello".to_vec(),
            ),
            b"/chunked" => Reply::KeepAlive(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n\
                  5\r\nhello\r\n0\r\n\r\n"
                    .to_vec(),
            ),
            b"/head-te" => Reply::KeepAlive(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nX-Up: 1\r\n\r\n".to_vec(),
            ),
            _ => Reply::KeepAlive(
                b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\nX-Up: 1\r\n\r\n".to_vec(),
            ),
        }
    })
}

/// RFC 9112 §6.1: "A server MUST NOT send a response containing Transfer-Encoding unless the
/// corresponding request indicates HTTP/1.1". A HEAD response's Transfer-Encoding goes; its
/// Content-Length stays. HTTP/1.1 clients still get both.
#[test]
fn http10_head_response_has_no_transfer_encoding() {
    let backend = coding_backend();
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"HEAD /head-te HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n");
    let resp = client.read_response("HEAD");
    assert_bytes_eq(
        &resp.raw,
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nConnection: keep-alive\r\n\r\n",
        "HEAD with Transfer-Encoding, to HTTP/1.0",
    );
    client.send(b"HEAD /head-cl HTTP/1.0\r\nHost: t\r\n\r\n");
    let resp = client.read_response("HEAD");
    assert_bytes_eq(
        &resp.raw,
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Length: 42\r\nConnection: close\r\n\r\n",
        "HEAD with Content-Length, to HTTP/1.0",
    );
    client.expect_close(IO_TIMEOUT);

    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"HEAD /head-te HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response("HEAD");
    assert_bytes_eq(
        &resp.raw,
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HEAD with Transfer-Encoding, to HTTP/1.1",
    );
}

/// A body under a coding the proxy cannot remove cannot reach an HTTP/1.0 client without the
/// field naming it: 502, logged, and the next request on a fresh connection still works. An
/// HTTP/1.1 client gets the same response as sent.
#[test]
fn http10_client_gets_502_for_a_body_under_another_transfer_coding() {
    let backend = coding_backend();
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    for path in ["/gzip-chunked", "/gzip"] {
        let mark = proxy.log_mark();
        let got = send_raw(
            proxy.addr(),
            format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes(),
        );
        assert_bytes_eq(&got, &local_answer(502, true), path);
        let line = proxy.wait_for_log_since(
            mark,
            "sent a transfer coding an HTTP/1.0 client cannot receive: 502",
            LOG_TIMEOUT,
        );
        assert!(
            line.contains(&format!("127.0.0.1:{}", backend.port())),
            "{line}"
        );
    }
    // Chunked alone is ours to remove.
    let got = send_raw(proxy.addr(), b"GET /chunked HTTP/1.0\r\nHost: t\r\n\r\n");
    assert_bytes_eq(
        &got,
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nConnection: close\r\n\r\nhello",
        "de-chunked for HTTP/1.0",
    );
    let got = send_raw(
        proxy.addr(),
        b"GET /gzip-chunked HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_bytes_eq(
        &got,
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
        "gzip, chunked to HTTP/1.1",
    );
    let got = send_raw(proxy.addr(), b"GET /gzip HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_bytes_eq(
        &got,
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\nhello",
        "close-delimited gzip to HTTP/1.1",
    );
}

/// RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
/// request MUST ignore that expectation." The request goes upstream as HTTP/1.1, so the field
/// must not go with it; the body follows at once.
#[test]
fn http10_expect_is_not_forwarded() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"POST /u HTTP/1.0\r\nHost: h\r\nExpect: 100-continue\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello",
    );
    let resp = client.read_response("POST");
    assert_bytes_eq(
        &resp.raw,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        "response",
    );
    client.expect_close(IO_TIMEOUT);
    let requests = backend.wait_requests(1, IO_TIMEOUT);
    assert_bytes_eq(
        &requests[0],
        b"POST /u HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-Forwarded-For: 127.0.0.1\r\n\
          X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nContent-Length: 5\r\n\r\nhello",
        "forwarded request",
    );
}
