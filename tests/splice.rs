//! Long Content-Length response bodies go by splice(2); the bytes, the framing and the
//! failure behaviour are the same as on the copy path.

mod common;

use common::*;

const BODY: usize = 3 * 1024 * 1024 + 17;

fn download(proxy: &Proxy, path: &str) -> Response {
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    client.read_response("GET")
}

#[test]
fn spliced_and_copied_bodies_are_identical() {
    let dummies = Dummies::start(1);
    for splice_min in ["1", "0", "128k"] {
        let proxy = Proxy::with_upstreams(&dummies.ports(), &["--splice-min", splice_min]);
        // Twice on one connection: the pipe goes back to the pool clean and is reused.
        let mut client = ResponseReader::connect(proxy.addr());
        for _ in 0..2 {
            client.send(format!("GET /big?bytes={BODY} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            let resp = client.read_response("GET");
            assert_eq!(resp.status, 200);
            assert_eq!(
                resp.header("Content-Length"),
                Some(BODY.to_string().as_str())
            );
            assert!(
                resp.body == pattern(BODY),
                "body differs with --splice-min {splice_min}"
            );
        }
        let small = download(&proxy, "/");
        assert_eq!(small.status, 200);
    }
}

#[test]
fn an_upstream_that_stops_short_mid_splice_closes_the_client() {
    // The head promises 1 MiB, 300 KiB come, then the upstream closes.
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    reply.extend(pattern(300 * 1024));
    let backend = RawBackend::start(move |_| Reply::Close(reply.clone()));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "64k"]);
    let mut stream = std::net::TcpStream::connect(proxy.addr()).expect("connect");
    use std::io::Write;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let got = read_to_close(&mut stream);
    let head_end = find(&got, b"\r\n\r\n").expect("a head") + 4;
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        show(&got[..head_end])
    );
    assert_eq!(
        got.len() - head_end,
        300 * 1024,
        "every byte received, then a close"
    );
    // The proxy itself is fine: the next request gets the same treatment.
    let mut stream = std::net::TcpStream::connect(proxy.addr()).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    assert_eq!(read_to_close(&mut stream).len(), got.len());
}
