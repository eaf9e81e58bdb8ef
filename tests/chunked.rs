//! Chunked bodies both ways: responses to HTTP/1.1 clients stay chunked, HTTP/1.0 clients get
//! them de-chunked and ended by a close; request bodies are re-chunked cleanly.

mod common;

use common::*;
use std::io::Write;
use std::thread;

#[test]
fn chunked_response_reaches_an_http11_client_chunked() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET /chunked?chunks=4&size=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.framing, BodyFraming::Chunked, "{}", show(resp.head()));
    assert_eq!(resp.header_all("Transfer-Encoding"), vec!["chunked"]);
    assert_eq!(resp.header("Content-Length"), None);
    assert!(
        resp.body == pattern(4000),
        "body differs from the /chunked pattern"
    );
    // The message ended where the chunked framing said: the connection carries on.
    client.send(b"GET /chunked?chunks=256&size=4096 HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response("GET");
    assert!(
        resp.body == pattern(256 * 4096),
        "1 MiB body differs from the pattern"
    );
}

#[test]
fn chunked_response_to_an_http10_client_is_dechunked_and_ended_by_close() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"GET /chunked?chunks=4&size=1000 HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n",
    );
    let resp = client.read_response("GET");
    assert_eq!((resp.version.as_str(), resp.status), ("HTTP/1.1", 200));
    assert_eq!(resp.framing, BodyFraming::Close, "{}", show(resp.head()));
    assert_eq!(resp.header("Transfer-Encoding"), None);
    assert_eq!(resp.header("Content-Length"), None);
    assert!(
        resp.has_token("Connection", "close"),
        "{}",
        show(resp.head())
    );
    assert!(
        resp.body == pattern(4000),
        "body differs: {}",
        show(&resp.body)
    );
}

/// Split a `/echo` body into the request head the dummy saw and the raw body after it.
fn split_echo(echo: &[u8]) -> (&[u8], &[u8]) {
    match find(echo, b"\r\n\r\n") {
        Some(i) => echo.split_at(i + 4),
        None => panic!("no head in the echo: {}", show(echo)),
    }
}

#[test]
fn chunked_request_body_reaches_the_backend_rechunked() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: dropped\r\n\r\n",
    );
    let resp = client.read_response("POST");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.framing,
        BodyFraming::Chunked,
        "the dummy echoes chunked as chunked"
    );
    let (head, body) = split_echo(&resp.body);
    let head = String::from_utf8_lossy(head);
    assert!(head.starts_with("POST /echo HTTP/1.1\r\n"), "{head:?}");
    assert!(
        head.ends_with("\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "{head:?}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head:?}"
    );
    let parsed = match parse_chunked(body) {
        Ok(Some(p)) => p,
        other => panic!("not a chunked body: {other:?}: {}", show(body)),
    };
    assert_eq!(parsed.data, b"hello world");
    assert_eq!(parsed.wire_len, body.len());
    assert!(
        parsed.is_canonical(),
        "not re-chunked cleanly: {}",
        show(body)
    );
}

#[test]
fn large_chunked_upload_round_trips() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let data: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    // Odd chunk sizes, some with extensions, to exercise every boundary of the decoder.
    let mut wire = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let sizes = [1usize, 7, 100, 4096, 65_535, 13, 16_384];
    let (mut pos, mut k) = (0, 0);
    while pos < data.len() {
        let n = sizes[k % sizes.len()].min(data.len() - pos);
        let ext = if k % 3 == 0 { ";x=y" } else { "" };
        wire.extend_from_slice(format!("{n:X}{ext}\r\n").as_bytes());
        wire.extend_from_slice(&data[pos..pos + n]);
        wire.extend_from_slice(b"\r\n");
        pos += n;
        k += 1;
    }
    wire.extend_from_slice(b"0\r\n\r\n");

    let mut client = ResponseReader::connect(proxy.addr());
    let mut writer = client
        .stream()
        .try_clone()
        .expect("clone the client socket");
    // Write while reading: the dummy echoes as it receives, so neither side may wait for the other.
    let sender = thread::spawn(move || writer.write_all(&wire));
    let resp = client.read_response("POST");
    sender
        .join()
        .expect("writer thread")
        .expect("write the upload");
    let (_, body) = split_echo(&resp.body);
    let parsed = match parse_chunked(body) {
        Ok(Some(p)) => p,
        other => panic!(
            "not a chunked body: {:?}",
            other.map(|o| o.map(|p| p.wire_len))
        ),
    };
    assert_eq!(parsed.data.len(), data.len());
    assert!(
        parsed.data == data,
        "the re-chunked upload differs from what was sent"
    );
    assert!(parsed.is_canonical(), "not re-chunked cleanly");
}
