//! What the backend receives, byte for byte, and what the client gets back: the request line,
//! Host, the client's end-to-end fields in order, X-Forwarded-*, one framing field; hop-by-hop
//! fields dropped both ways.

mod common;

use common::*;

/// The block the proxy appends for a client on 127.0.0.1 without prior X-Forwarded-For.
const XFF: &str = "X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n";

/// Send `request` through a proxy in front of a recording backend that answers `200 ok`;
/// returns what the backend received and what the client got.
fn through_proxy(request: &[u8], method: &str) -> (Vec<u8>, Response) {
    through_proxy_with(request, method, &[])
}

/// [`through_proxy`] with `extra` flags.
fn through_proxy_with(request: &[u8], method: &str, extra: &[&str]) -> (Vec<u8>, Response) {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], extra);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(request);
    let resp = client.read_response(method);
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    assert_eq!(resp.body, b"ok");
    let mut requests = backend.wait_requests(1, IO_TIMEOUT);
    assert_eq!(requests.len(), 1, "one request, one forwarded request");
    (requests.remove(0), resp)
}

#[test]
fn get_head_is_forwarded_byte_exact_with_x_forwarded_fields() {
    let (forwarded, _) = through_proxy(
        b"GET /a/b?c=1&d=2 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\nAccept: */*\r\n\
          X-Custom: one\r\n\r\n",
        "GET",
    );
    let expected = format!(
        "GET /a/b?c=1&d=2 HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t/1\r\nAccept: */*\r\n\
         X-Custom: one\r\n{XFF}X-Forwarded-Host: example.test\r\n\r\n"
    );
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded head");
}

#[test]
fn host_moves_first_and_client_x_forwarded_fields_are_replaced() {
    let (forwarded, _) = through_proxy(
        b"GET / HTTP/1.1\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.1\r\nHost: h.test\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n\
          X-Forwarded-Host: evil.test\r\nX-After: 1\r\n\r\n",
        "GET",
    );
    let expected = "GET / HTTP/1.1\r\nHost: h.test\r\nAccept: */*\r\nX-After: 1\r\n\
        X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
        X-Forwarded-Host: h.test\r\n\r\n";
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded head");
}

#[test]
fn fields_named_by_connection_are_dropped_but_content_length_framing_stays() {
    let (forwarded, _) = through_proxy(
        b"POST /p HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, X-Foo\r\nX-Foo: secret\r\n\
          X-Bar: 2\r\nContent-Length: 5\r\n\r\nhello",
        "POST",
    );
    let expected = format!(
        "POST /p HTTP/1.1\r\nHost: h\r\nX-Bar: 2\r\n{XFF}X-Forwarded-Host: h\r\n\
         Content-Length: 5\r\n\r\nhello"
    );
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded request");
}

#[test]
fn hop_by_hop_fields_are_dropped_whatever_their_case() {
    let (forwarded, _) = through_proxy(
        b"GET / HTTP/1.1\r\nHost: h\r\nkeep-alive: timeout=5\r\nTE: trailers\r\n\
          Proxy-Connection: keep-alive\r\nTrailer: X-T\r\nconnection: keep-alive\r\nX-Keep: 1\r\n\r\n",
        "GET",
    );
    let expected =
        format!("GET / HTTP/1.1\r\nHost: h\r\nX-Keep: 1\r\n{XFF}X-Forwarded-Host: h\r\n\r\n");
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded head");
}

/// CGI-style backends read `_` as `-` (both become `HTTP_X_FORWARDED_FOR`): a field named
/// `X_Forwarded_For` would get past `--forwarded-for replace`, `Transfer_Encoding` past the
/// framing rules. Such fields are dropped, as nginx does by default.
#[test]
fn fields_with_underscores_are_dropped() {
    let request = b"POST /p HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-A: 1\r\n\
        Transfer_Encoding: chunked\r\nX_Real_IP: 6.6.6.6\r\nContent-Length: 2\r\nX-B: 2\r\n\r\nhi";
    let (forwarded, _) = through_proxy_with(request, "POST", &["--forwarded-for", "replace"]);
    let expected = format!(
        "POST /p HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: 2\r\n{XFF}X-Forwarded-Host: h\r\n\
         Content-Length: 2\r\n\r\nhi"
    );
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded request");
}

/// `--underscores-in-headers` forwards them as ordinary fields, in place.
#[test]
fn underscores_in_headers_flag_forwards_them() {
    let request = b"POST /p HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-A: 1\r\n\
        Transfer_Encoding: chunked\r\nContent-Length: 2\r\n\r\nhi";
    let (forwarded, _) = through_proxy_with(request, "POST", &["--underscores-in-headers"]);
    let expected = format!(
        "POST /p HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX-A: 1\r\n\
         Transfer_Encoding: chunked\r\n{XFF}X-Forwarded-Host: h\r\nContent-Length: 2\r\n\r\nhi"
    );
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded request");
}

#[test]
fn h2c_upgrade_is_not_forwarded_and_the_request_proceeds() {
    let (forwarded, resp) = through_proxy(
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nAccept: */*\r\n\r\n",
        "GET",
    );
    let expected =
        format!("GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n{XFF}X-Forwarded-Host: h\r\n\r\n");
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded head");
    assert_eq!(resp.header("Upgrade"), None);
}

#[test]
fn absolute_form_target_is_reduced_to_origin_form() {
    let (forwarded, _) = through_proxy(
        b"GET http://example.com:8080/p?q HTTP/1.1\r\nHost: example.com:8080\r\nX-A: 1\r\n\r\n",
        "GET",
    );
    let expected = format!(
        "GET /p?q HTTP/1.1\r\nHost: example.com:8080\r\nX-A: 1\r\n{XFF}\
         X-Forwarded-Host: example.com:8080\r\n\r\n"
    );
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded head");
}

#[test]
fn http10_request_is_forwarded_as_http11() {
    let (forwarded, resp) = through_proxy(b"GET /x HTTP/1.0\r\nHost: h\r\nX-A: 1\r\n\r\n", "GET");
    let expected =
        format!("GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n{XFF}X-Forwarded-Host: h\r\n\r\n");
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded head");
    assert_eq!(resp.version, "HTTP/1.1");
}

#[test]
fn http10_request_without_host_gets_an_empty_host_and_no_x_forwarded_host() {
    let (forwarded, _) = through_proxy(b"GET /x HTTP/1.0\r\nX-A: 1\r\n\r\n", "GET");
    let expected = format!("GET /x HTTP/1.1\r\nHost: \r\nX-A: 1\r\n{XFF}\r\n");
    assert_bytes_eq(&forwarded, expected.as_bytes(), "forwarded head");
}

#[test]
fn chunked_request_body_is_rechunked_without_extensions_or_trailers() {
    let (forwarded, _) = through_proxy(
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
          5;ext=1\r\nhello\r\n6;a=\"b\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "POST",
    );
    let head = format!(
        "POST /up HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n{XFF}X-Forwarded-Host: h\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    assert_bytes_eq(
        &forwarded[..head.len().min(forwarded.len())],
        head.as_bytes(),
        "head",
    );
    let body = &forwarded[head.len()..];
    let parsed = match parse_chunked(body) {
        Ok(Some(p)) => p,
        other => panic!(
            "forwarded body is not a complete chunked body: {other:?}: {}",
            show(body)
        ),
    };
    assert_eq!(parsed.data, b"hello world");
    assert_eq!(
        parsed.wire_len,
        body.len(),
        "bytes after the last chunk: {}",
        show(body)
    );
    assert!(
        parsed.is_canonical(),
        "chunks must be `{{hex}}\\r\\n{{data}}\\r\\n` and end with `0\\r\\n\\r\\n`: {}",
        show(body)
    );
}

#[test]
fn response_head_drops_hop_by_hop_fields() {
    let backend = RawBackend::fixed(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Up: 1\r\n\
          Content-Length: 2\r\n\r\nok",
    );
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = client.read_response("GET");
    assert_bytes_eq(
        &resp.raw,
        b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Length: 2\r\n\r\nok",
        "response to the client",
    );
}

#[test]
fn http10_upstream_status_line_becomes_http11() {
    let backend = RawBackend::start(|_| {
        Reply::Close(b"HTTP/1.0 404 Not Found\r\nX-Up: 1\r\nContent-Length: 4\r\n\r\nnope".to_vec())
    });
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(
        (resp.version.as_str(), resp.status, resp.reason.as_str()),
        ("HTTP/1.1", 404, "Not Found")
    );
    assert_eq!(resp.header("X-Up"), Some("1"));
    assert_eq!(resp.body, b"nope");
}

/// `n` fields `X-F{i}: v{i}`, each ending in CRLF.
fn many_fields(n: usize) -> String {
    (0..n).map(|i| format!("X-F{i}: v{i}\r\n")).collect()
}

#[test]
fn heads_with_more_fields_than_the_first_slots_are_forwarded_whole() {
    // The proxy parses into a few header slots first and again with exactly as many as a head
    // has: 30 fields take the second path on the stack, 150 (with --max-fields 200) the heap.
    for (n, args) in [(30, &[][..]), (150, &["--max-fields", "200"][..])] {
        let fields = many_fields(n);
        let reply = format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: 2\r\n\r\nok");
        let backend = RawBackend::fixed(reply.as_bytes());
        let proxy = Proxy::with_upstreams(&[backend.port()], args);
        let mut client = ResponseReader::connect(proxy.addr());
        client.send(format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n").as_bytes());
        let resp = client.read_response("GET");
        assert_bytes_eq(&resp.raw, reply.as_bytes(), "response to the client");
        let requests = backend.wait_requests(1, IO_TIMEOUT);
        let expected =
            format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}{XFF}X-Forwarded-Host: h\r\n\r\n");
        assert_bytes_eq(&requests[0], expected.as_bytes(), "forwarded head");
    }
}
