//! End-to-end tests over real loopback sockets: an in-process worker on an ephemeral port,
//! raw requests in, exact response bytes out.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Waker};

use crate::worker::{Worker, LISTENER, WAKER};

/// A worker running on its own thread.
struct Server {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    waker: Waker,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(crate::worker::Answers {
            health_status: 200,
            delay: Duration::ZERO,
        })
    }

    fn start_with(answers: crate::worker::Answers) -> Server {
        let std_listener = crate::bind("127.0.0.1:0".parse().expect("literal"), false)
            .expect("bind an ephemeral port");
        let addr = std_listener.local_addr().expect("local addr");
        let poll = Poll::new().expect("poll");
        let waker = Waker::new(poll.registry(), WAKER).expect("waker");
        let mut listener = mio::net::TcpListener::from_std(std_listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .expect("register");
        let shutdown = Arc::new(AtomicBool::new(false));
        let worker = Worker::new(poll, listener, addr.port(), Arc::clone(&shutdown), answers);
        let thread = Some(std::thread::spawn(move || worker.run()));
        Server {
            addr,
            shutdown,
            waker,
            thread,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
    }

    fn hello(&self) -> Vec<u8> {
        format!("Hello from Server {}\n", self.addr.port()).into_bytes()
    }

    /// Signals shutdown and returns how long the worker took to exit.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.store(true, Ordering::Release);
        self.waker.wake().expect("wake");
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("worker thread panicked");
            assert!(result.is_ok(), "worker failed: {result:?}");
        }
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown.store(true, Ordering::Release);
            let _ = self.waker.wake();
        }
    }
}

fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = vec![0; n];
    stream
        .read_exact(&mut got)
        .expect("read the expected bytes");
    got
}

fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("read until close");
    got
}

fn hello_response(server: &Server, extra: &str) -> Vec<u8> {
    let hello = server.hello();
    let mut expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}\r\n",
        hello.len()
    )
    .into_bytes();
    expected.extend_from_slice(&hello);
    expected
}

fn pattern_bytes(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| b'a' + (i % 26) as u8)
        .collect()
}

#[test]
fn hello_and_keep_alive() {
    let server = Server::start();
    let mut s = server.connect();
    let expected = hello_response(&server, "");
    for _ in 0..3 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        assert_eq!(read_n(&mut s, expected.len()), expected);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET /health HTTP/1.1\r\n\r\nGET /status/418 HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut expected =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n\
HTTP/1.1 418 Unknown\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n418\n"
            .to_vec();
    expected.extend(hello_response(&server, "Connection: close\r\n"));
    assert_eq!(read_to_end(&mut s), expected);
}

#[test]
fn http10_closes_unless_keep_alive() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    assert_eq!(
        read_to_end(&mut s),
        hello_response(&server, "Connection: close\r\n")
    );
    let mut s = server.connect();
    let expected = hello_response(&server, "Connection: keep-alive\r\n");
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .expect("write");
        assert_eq!(read_n(&mut s, expected.len()), expected);
    }
}

#[test]
fn big_streams_the_pattern() {
    let server = Server::start();
    let mut s = server.connect();
    let n = 1_000_003;
    s.write_all(format!("GET /big?bytes={n} HTTP/1.1\r\n\r\n").as_bytes())
        .expect("write");
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n"
    );
    assert_eq!(read_n(&mut s, head.len()), head.as_bytes());
    assert!(read_n(&mut s, n) == pattern_bytes(0, n));
    // The connection is still usable.
    s.write_all(b"HEAD /big?bytes=5 HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n")
        .expect("write");
    let expected =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n";
    assert_eq!(read_n(&mut s, expected.len()), expected);
}

#[test]
fn chunked_continues_the_pattern_across_chunks() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET /chunked?chunks=2&size=3 HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let expected = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    assert_eq!(read_to_end(&mut s), expected);
}

#[test]
fn echo_content_length_then_next_request() {
    let server = Server::start();
    let mut s = server.connect();
    let head = "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
    s.write_all(format!("{head}hello\r\n\r\nGET /health HTTP/1.1\r\n\r\n").as_bytes())
        .expect("write");
    let body = format!("{head}hello");
    let expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n{body}\
HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n",
        body.len()
    );
    // The "\r\n\r\n" between the body and the next request line is skipped as empty lines.
    assert_eq!(read_n(&mut s, expected.len()), expected.as_bytes());
}

#[test]
fn echo_chunked_sends_raw_chunks_back() {
    let server = Server::start();
    let mut s = server.connect();
    let head = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = "3\r\nabc\r\n0\r\nX: y\r\n\r\n";
    s.write_all(format!("{head}{body}GET /health HTTP/1.1\r\n\r\n").as_bytes())
        .expect("write");
    let expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n\
{:x}\r\n{head}\r\n{:x}\r\n{body}\r\n0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n",
        head.len(),
        body.len()
    );
    assert_eq!(read_n(&mut s, expected.len()), expected.as_bytes());
}

#[test]
fn echo_large_body_with_backpressure() {
    let server = Server::start();
    let mut s = server.connect();
    let n = 4 * 1024 * 1024 + 7;
    let head = format!("PUT /echo HTTP/1.1\r\nContent-Length: {n}\r\n\r\n");
    let mut writer = s.try_clone().expect("clone");
    let request_head = head.clone();
    let sender = std::thread::spawn(move || {
        writer.write_all(request_head.as_bytes()).expect("head");
        let body = pattern_bytes(0, n);
        writer.write_all(&body).expect("body");
    });
    let response_head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        head.len() + n
    );
    assert_eq!(
        read_n(&mut s, response_head.len()),
        response_head.as_bytes()
    );
    assert_eq!(read_n(&mut s, head.len()), head.as_bytes());
    assert!(read_n(&mut s, n) == pattern_bytes(0, n));
    sender.join().expect("sender");
}

#[test]
fn expect_100_continue() {
    let server = Server::start();
    let mut s = server.connect();
    let head = "POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    s.write_all(head.as_bytes()).expect("write");
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    assert_eq!(read_n(&mut s, interim.len()), interim);
    s.write_all(b"data").expect("write");
    let expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n{head}data",
        head.len() + 4
    );
    assert_eq!(read_n(&mut s, expected.len()), expected.as_bytes());
}

#[test]
fn websocket_upgrade_echoes_bytes() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly")
        .expect("write");
    let switching =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(read_n(&mut s, switching.len()), switching);
    assert_eq!(read_n(&mut s, 5), b"early");
    s.write_all(b"\x00\x01binary\xff").expect("write");
    assert_eq!(read_n(&mut s, 9), b"\x00\x01binary\xff");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(read_to_end(&mut s), b"");

    let mut s = server.connect();
    s.write_all(b"GET /ws HTTP/1.1\r\n\r\n").expect("write");
    let expected =
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nBad Request\n";
    assert_eq!(read_n(&mut s, expected.len()), expected);
}

#[test]
fn status_codes_and_head() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET /status/204 HTTP/1.1\r\n\r\nGET /status/503 HTTP/1.1\r\n\r\nHEAD /status/404 HTTP/1.1\r\n\r\nGET /status/99 HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let expected = b"HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n503\n\
HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n\
HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
    assert_eq!(read_to_end(&mut s), expected);
}

#[test]
fn malformed_and_oversized_heads_are_refused_and_closed() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nGET / HTTP/1.1\r\n\r\n")
        .expect("write");
    let expected = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n";
    assert_eq!(read_to_end(&mut s), expected);

    let mut s = server.connect();
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.resize(70 * 1024, b'a');
    // The server may answer and close before all of it is written.
    let _ = s.write_all(&huge);
    let expected = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n";
    assert_eq!(read_n(&mut s, expected.len()), expected);
}

#[test]
fn close_route_is_close_delimited() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET /close HTTP/1.1\r\n\r\n").expect("write");
    let mut expected =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".to_vec();
    expected.extend(server.hello());
    assert_eq!(read_to_end(&mut s), expected);
}

#[test]
fn headers_route_lists_fields_in_order() {
    let server = Server::start();
    let mut s = server.connect();
    s.write_all(b"GET /headers HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    let body = "Host: h\nX-Forwarded-For: 10.0.0.1\nConnection: close\n";
    let expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(read_to_end(&mut s), expected.as_bytes());
}

#[test]
fn slow_does_not_block_other_connections() {
    let server = Server::start();
    let mut slow = server.connect();
    let started = Instant::now();
    slow.write_all(b"GET /slow?ms=300 HTTP/1.1\r\n\r\n")
        .expect("write");
    let mut fast = server.connect();
    fast.write_all(b"GET /health HTTP/1.1\r\n\r\n")
        .expect("write");
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n";
    assert_eq!(read_n(&mut fast, ok.len()), ok);
    assert!(started.elapsed() < Duration::from_millis(250));
    let expected = hello_response(&server, "");
    assert_eq!(read_n(&mut slow, expected.len()), expected);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn shutdown_finishes_in_flight_and_closes_idle() {
    let mut server = Server::start();
    let mut idle = server.connect();
    idle.write_all(b"GET /health HTTP/1.1\r\n\r\n")
        .expect("write");
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n";
    assert_eq!(read_n(&mut idle, ok.len()), ok);
    let mut busy = server.connect();
    busy.write_all(b"GET /slow?ms=200 HTTP/1.1\r\n\r\n")
        .expect("write");
    // Let the worker read the slow request before the signal.
    std::thread::sleep(Duration::from_millis(50));
    let took = server.stop();
    assert!(took < Duration::from_secs(2), "drain took {took:?}");
    assert_eq!(read_to_end(&mut idle), b"");
    assert_eq!(read_to_end(&mut busy), hello_response(&server, ""));
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "listener still open"
    );
}

#[test]
fn head_arriving_in_pieces() {
    let server = Server::start();
    let mut s = server.connect();
    for piece in [
        &b"GET /hea"[..],
        b"lth HTTP/1.1\r\nHost: x\r",
        b"\n",
        b"\r",
        b"\n",
    ] {
        s.write_all(piece).expect("write");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n";
    assert_eq!(read_n(&mut s, ok.len()), ok);
    // A bare-LF head trickled in is found too.
    s.write_all(b"GET /health HTTP/1.1\n").expect("write");
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(b"\n").expect("write");
    assert_eq!(read_n(&mut s, ok.len()), ok);
}

#[test]
fn blank_line_detection() {
    assert!(crate::conn::may_end_head(b"x\r\n\r\n"));
    assert!(crate::conn::may_end_head(b"\n\n"));
    assert!(crate::conn::may_end_head(b"\n\r"));
    assert!(!crate::conn::may_end_head(b"GET / HTTP/1.1\r\nHost: x\r"));
    assert!(!crate::conn::may_end_head(b""));
}

#[test]
fn health_status_and_delay_come_from_the_flags() {
    let mut server = Server::start_with(crate::worker::Answers {
        health_status: 503,
        delay: Duration::from_millis(200),
    });
    let mut c = server.connect();
    let started = Instant::now();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(
        waited >= Duration::from_millis(200),
        "answered after {waited:?}"
    );
    server.stop();
}
