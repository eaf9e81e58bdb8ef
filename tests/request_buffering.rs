//! Request bodies are read, and their framing checked, before an upstream is chosen
//! (`--request-buffer`, 64 KiB by default): a malformed body gets 400 and no upstream ever sees
//! a connection or a byte for it. Longer bodies stream, with memory bounded.

mod common;

use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// A recording backend behind a proxy with no health sweep after the first, and that first
/// probe's connection already seen: from here on, every connection the backend accepts is one
/// the proxy opened for a request.
fn quiet_backend(extra: &[&str]) -> (RawBackend, Proxy) {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let mut args = vec!["--health-interval", "1h"];
    args.extend_from_slice(extra);
    let proxy = Proxy::with_upstreams(&[backend.port()], &args);
    let deadline = Instant::now() + LOG_TIMEOUT;
    while backend.connection_count() < 1 {
        assert!(
            Instant::now() < deadline,
            "the first health probe never came"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (backend, proxy)
}

/// The bodies that RFC 9112 §7.1 makes malformed, each complete in the first read.
const BAD_CHUNKED: &[(&str, &[u8])] = &[
    ("size with 0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("size with +", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("size with -", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("size with a space inside", b"5 5\r\nhello\r\n0\r\n\r\n"),
    ("size before a space", b" 5\r\nhello\r\n0\r\n\r\n"),
    (
        "size overflowing 64 bits",
        b"10000000000000000\r\nhello\r\n0\r\n\r\n",
    ),
    ("empty size", b"\r\nhello\r\n0\r\n\r\n"),
    ("non-hex size", b"g\r\nhello\r\n0\r\n\r\n"),
    ("bare LF after the size", b"5\nhello\r\n0\r\n\r\n"),
    ("bare CR after the size", b"5\rhello\r\n0\r\n\r\n"),
    ("data not followed by CRLF", b"5\r\nhelloX\r\n0\r\n\r\n"),
    ("data followed by a bare LF", b"5\r\nhello\n0\r\n\r\n"),
    ("bare LF after the last chunk", b"5\r\nhello\r\n0\n\r\n"),
    ("an extension without a name", b"5;\r\nhello\r\n0\r\n\r\n"),
    (
        "an extension with a bad name",
        b"5;a b\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "an extension with a bare CR",
        b"5;a=\rb\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "a trailer without a colon",
        b"5\r\nhello\r\n0\r\nX-T y\r\n\r\n",
    ),
    (
        "a trailer with a bare LF",
        b"5\r\nhello\r\n0\r\nX-T: y\n\r\n",
    ),
    (
        "a trailer section that runs into the next request",
        b"5\r\nhello\r\n0\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n",
    ),
];

#[test]
fn every_malformed_chunked_body_gets_400_and_no_upstream_sees_a_connection_or_a_byte() {
    let (backend, proxy) = quiet_backend(&[]);
    let connections = backend.connection_count();
    for (what, body) in BAD_CHUNKED {
        let mut request =
            b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        let reply = send_raw(proxy.addr(), &request);
        assert!(
            reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
            "{what}: {}",
            show(&reply)
        );
        assert!(
            find(&reply, b"\r\nConnection: close\r\n").is_some(),
            "{what}: {}",
            show(&reply)
        );
        assert_eq!(
            backend.connection_count(),
            connections,
            "{what}: the backend accepted a connection"
        );
        assert_eq!(backend.bytes_received(), 0, "{what}: the backend got bytes");
    }
    // A good request still works, on a fresh connection.
    let reply = send_raw(
        proxy.addr(),
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(
        reply.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        show(&reply)
    );
    let got = backend.wait_requests(1, IO_TIMEOUT);
    assert!(
        got[0].ends_with(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{}",
        show(&got[0])
    );
}

#[test]
fn a_body_that_stops_short_reaches_no_upstream() {
    let (backend, proxy) = quiet_backend(&[]);
    let connections = backend.connection_count();
    for (what, request) in [
        (
            "Content-Length body cut short",
            &b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello"[..],
        ),
        (
            "chunked body cut short",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        ),
        (
            "chunked body without its last chunk",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
    ] {
        let mut stream = connect(proxy.addr());
        stream.write_all(request).expect("send");
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let reply = read_to_close(&mut stream);
        assert!(
            reply.is_empty() || reply.starts_with(b"HTTP/1.1 400 "),
            "{what}: {}",
            show(&reply)
        );
        assert_eq!(backend.connection_count(), connections, "{what}");
        assert_eq!(backend.bytes_received(), 0, "{what}");
    }
}

#[test]
fn a_body_that_stops_coming_gets_408_and_reaches_no_upstream() {
    let (backend, proxy) = quiet_backend(&["--read-timeout", "300ms"]);
    let connections = backend.connection_count();
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello");
    let resp = client.read_response("POST");
    assert_eq!(resp.status, 408, "{}", show(&resp.raw));
    assert_eq!(resp.header("Connection"), Some("close"));
    assert_eq!(backend.connection_count(), connections);
    assert_eq!(backend.bytes_received(), 0);
}

#[test]
fn a_valid_chunked_body_sent_in_many_tiny_writes_arrives_intact() {
    let (backend, proxy) = quiet_backend(&[]);
    let chunks: Vec<Vec<u8>> = (0..40)
        .map(|i| vec![b'a' + (i % 26) as u8; 1 + i * 7])
        .collect();
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let body = chunked(&refs);
    let mut stream = connect(proxy.addr());
    let _ = stream.set_nodelay(true);
    stream
        .write_all(b"POST /tiny HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .expect("head");
    for (i, piece) in body.chunks(3).enumerate() {
        stream.write_all(piece).expect("piece");
        if i % 50 == 0 {
            // Let some of the pieces arrive as segments of their own.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut client = ResponseReader::new(stream);
    let resp = client.read_response("POST");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    let got = backend.wait_requests(1, IO_TIMEOUT);
    let head_end = find(&got[0], b"\r\n\r\n").expect("head") + 4;
    let parsed = parse_chunked(&got[0][head_end..])
        .expect("valid chunked")
        .expect("complete");
    assert_eq!(parsed.data, chunks.concat());
    assert_eq!(backend.connection_count(), 2, "one probe and one request");
}

#[test]
fn a_pipelined_request_behind_a_buffered_one_is_still_answered() {
    let (backend, proxy) = quiet_backend(&[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"POST /first HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello\
          POST /second HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
          GET /third HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    for _ in 0..3 {
        let resp = client.read_response("POST");
        assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    }
    let got = backend.wait_requests(3, IO_TIMEOUT);
    assert!(got[0].starts_with(b"POST /first ") && got[0].ends_with(b"\r\n\r\nhello"));
    assert!(got[1].starts_with(b"POST /second ") && got[1].ends_with(b"3\r\nabc\r\n0\r\n\r\n"));
    assert!(got[2].starts_with(b"GET /third "));
}

#[test]
fn with_request_buffering_off_a_bad_body_is_still_refused_once_found() {
    // Streaming from the first byte: the upstream may see the head, but the client still gets
    // 400 and the upstream connection is closed, never pooled.
    let (backend, proxy) = quiet_backend(&["--request-buffer", "0"]);
    let reply = send_raw(
        proxy.addr(),
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    );
    assert!(reply.starts_with(b"HTTP/1.1 400 "), "{}", show(&reply));
    assert!(
        backend.wait_ended_since(1, IO_TIMEOUT),
        "the upstream connection was closed"
    );
    assert!(
        backend.requests().is_empty(),
        "no complete request reached the backend"
    );
}

#[test]
fn a_one_gibibyte_upload_streams_with_flat_memory() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    // Warm up: the buffers and pipes a first upload takes stay in the worker's pools.
    let warm = vec![b'w'; 4 << 20];
    client.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            warm.len()
        )
        .as_bytes(),
    );
    client.send(&warm);
    assert_eq!(client.read_response("POST").status, 200);
    let before = vm_rss_kib(proxy.pid());
    let total: usize = 1 << 30;
    client
        .send(format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n").as_bytes());
    let block = vec![b'x'; 1 << 20];
    let mut peak = before;
    for i in 0..total / block.len() {
        client.send(&block);
        if i % 64 == 0 {
            peak = peak.max(vm_rss_kib(proxy.pid()));
        }
    }
    let resp = client.read_response("POST");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    peak = peak.max(vm_rss_kib(proxy.pid()));
    // Flat: the body passes through a bounded buffer and pipes, never accumulates.
    assert!(
        peak <= before + 4 * 1024,
        "RSS went from {before} KiB to {peak} KiB during a 1 GiB upload"
    );
}
