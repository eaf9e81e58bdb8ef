//! Heads that arrive a few bytes per read, from a client or from a backend: the proxy keeps how
//! far it checked each (so a read costs only its new bytes) and must read them exactly as the
//! same heads arriving at once: the same bytes forwarded, the same refusals.

mod common;

use common::*;
use std::time::Duration;

/// A response head with many fields, and its body. Its first field's value, bytes 44 to 244,
/// is words and spaces with no colon: a field-line check started anywhere inside it (from the
/// stale progress of an earlier head) would refuse it.
fn long_response() -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Note: ".to_vec();
    r.extend_from_slice(&b"x ".repeat(100));
    r.extend_from_slice(b"end\r\n");
    for i in 0..40 {
        r.extend_from_slice(format!("X-Field-{i:02}: {}\r\n", "v".repeat(i)).as_bytes());
    }
    r.extend_from_slice(b"\r\nok");
    r
}

/// What a client gets for one GET when the backend writes `response` in pieces of `piece`
/// bytes (the whole of it in one write when `piece` is its length): every response the client
/// reads, interim ones included, until the final one.
fn responses_through(response: &[u8], piece: usize) -> Vec<Vec<u8>> {
    let response = response.to_vec();
    let backend = RawBackend::start(move |_| Reply::KeepAliveTrickled(response.clone(), piece));
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut got = Vec::new();
    loop {
        let resp = client.read_response("GET");
        let interim = (100..200).contains(&resp.status);
        got.push(resp.raw);
        if !interim {
            return got;
        }
    }
}

#[test]
fn a_response_head_in_small_reads_is_forwarded_as_if_it_came_at_once() {
    let response = long_response();
    let at_once = responses_through(&response, response.len());
    assert_eq!(at_once.len(), 1);
    assert!(
        at_once[0].starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        show(&at_once[0])
    );
    for piece in [1, 3, 7, 64] {
        let trickled = responses_through(&response, piece);
        assert_eq!(trickled.len(), 1, "pieces of {piece}");
        assert_bytes_eq(&trickled[0], &at_once[0], &format!("pieces of {piece}"));
    }
}

/// After an interim response the next head starts where the interim one ended: what was known
/// of the first head's progress must not be applied to the second.
#[test]
fn interim_and_final_heads_in_small_reads_are_each_read_from_their_start() {
    let mut response = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\nLink: </b.js>; rel=preload\r\n\r\n".to_vec();
    response.extend_from_slice(&long_response());
    let at_once = responses_through(&response, response.len());
    assert_eq!(at_once.len(), 2, "an interim and a final response");
    for piece in [1, 5, 64] {
        let trickled = responses_through(&response, piece);
        assert_eq!(trickled.len(), 2, "pieces of {piece}");
        for (got, want) in trickled.iter().zip(&at_once) {
            assert_bytes_eq(got, want, &format!("pieces of {piece}"));
        }
    }
}

#[test]
fn a_bad_line_late_in_a_trickled_response_head_is_still_a_502() {
    // A bare LF ends the 30th field line: refused whether it comes at once or in pieces.
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n".to_vec();
    for i in 0..40 {
        let end = if i == 30 { "\n" } else { "\r\n" };
        response.extend_from_slice(format!("X-Field-{i:02}: v{end}").as_bytes());
    }
    response.extend_from_slice(b"\r\nok");
    for piece in [response.len(), 4] {
        let got = responses_through(&response, piece);
        let last = got.last().map(|r| r.as_slice()).unwrap_or_default();
        assert!(
            last.starts_with(b"HTTP/1.1 502 "),
            "pieces of {piece}: {}",
            show(last)
        );
    }
}

#[test]
fn a_request_head_in_small_writes_reaches_the_backend_as_if_sent_at_once() {
    let mut request = b"GET /trickle?x=1 HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..40 {
        request.extend_from_slice(format!("X-Field-{i:02}: {}\r\n", "w".repeat(i)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let backend = RawBackend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut received = Vec::new();
    for piece in [request.len(), 1, 3, 64] {
        let mut client = ResponseReader::connect(proxy.addr());
        let mut stream = match client.stream().try_clone() {
            Ok(s) => s,
            Err(e) => panic!("clone: {e}"),
        };
        if let Err(e) = write_trickled(&mut stream, &request, piece) {
            panic!("write: {e}");
        }
        let resp = client.read_response("GET");
        assert_bytes_eq(
            &resp.raw,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            &format!("pieces of {piece}"),
        );
        received = backend.wait_requests(received.len() + 1, Duration::from_secs(10));
    }
    assert_eq!(received.len(), 4);
    for (i, r) in received.iter().enumerate().skip(1) {
        assert_bytes_eq(r, &received[0], &format!("request {i}"));
    }
}
