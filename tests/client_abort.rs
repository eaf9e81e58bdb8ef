//! A client that closes its side before its answer has left, as nginx sees it: the request is
//! logged 499 and the upstream request is cancelled (its connection closed). And the access
//! log writes a request line as it came, escaped like nginx, refused lines included.

mod common;

use common::*;
use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

#[test]
fn a_client_that_half_closes_before_its_answer_is_logged_499_and_the_upstream_request_cancelled() {
    let backend = RawBackend::start(|_| Reply::Never);
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--access-log", &log_arg]);
    let mut stream = connect(proxy.addr());
    stream
        .write_all(b"GET /wait HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    backend.wait_requests(1, IO_TIMEOUT);
    let left = Instant::now();
    stream.shutdown(Shutdown::Write).expect("half-close");
    // The proxy lets the upstream request go at once, and closes the client without an answer.
    assert!(
        backend.wait_ended_since(0, Duration::from_secs(2)),
        "the upstream request is still open {:?} after the client left",
        left.elapsed()
    );
    assert_eq!(read_to_close(&mut stream), b"");
    let got = wait_file_lines(&log, 1);
    assert!(
        got[0].contains("\"GET /wait HTTP/1.1\" 499 0 "),
        "{}",
        got[0]
    );
}

#[test]
fn request_lines_are_logged_as_they_came_escaped_like_nginx_refused_ones_too() {
    let dummies = Dummies::start(1);
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let json = dir.path().join("access.json");
    let log_arg = log.to_string_lossy().into_owned();
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--access-log", &log_arg]);
    // A line that is no request at all (the start of a TLS handshake, say), and a refused one
    // with a byte outside ASCII.
    let garbage = send_raw(proxy.addr(), b"\x16\x03\x01 hello\r\n\r\n");
    assert!(garbage.starts_with(b"HTTP/1.1 400 "), "{}", show(&garbage));
    let refused = send_raw(proxy.addr(), b"GET /caf\xE9 HTTP/1.1\r\n\r\n");
    assert!(refused.starts_with(b"HTTP/1.1 400 "), "{}", show(&refused));
    let got = wait_file_lines(&log, 2);
    assert!(
        got[0].contains("] \"\\x16\\x03\\x01 hello\" 400 "),
        "{}",
        got[0]
    );
    assert!(
        got[1].contains("] \"GET /caf\\xE9 HTTP/1.1\" 400 "),
        "{}",
        got[1]
    );
    drop(proxy);

    // The JSON format carries the same escaped text, as valid JSON.
    let json_arg = json.to_string_lossy().into_owned();
    let proxy = Proxy::with_upstreams(
        &dummies.ports(),
        &["--access-log", &json_arg, "--access-log-format", "json"],
    );
    let refused = send_raw(proxy.addr(), b"GET /caf\xE9 HTTP/1.1\r\n\r\n");
    assert!(refused.starts_with(b"HTTP/1.1 400 "), "{}", show(&refused));
    let got = wait_file_lines(&json, 1);
    assert!(
        got[0].contains("\"request\":\"GET /caf\\\\xE9 HTTP/1.1\""),
        "{}",
        got[0]
    );
    assert!(got[0].is_ascii(), "{}", got[0]);
}
