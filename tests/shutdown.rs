//! Graceful shutdown on SIGTERM/SIGINT: stop accepting, finish in-flight responses with
//! `Connection: close`, close idle connections after a short grace, exit 0.

mod common;

use common::*;
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[test]
fn sigterm_finishes_the_in_flight_response_with_close_then_exits_0() {
    // The backend holds its answer until the test opens the gate, so the request is provably
    // in flight when SIGTERM lands, with no timing guess.
    let (open_gate, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let backend = RawBackend::start(move |_| {
        if let Ok(g) = gate.lock() {
            let _ = g.recv_timeout(IO_TIMEOUT);
        }
        Reply::KeepAlive(ok_response("finished"))
    });
    let mut proxy = Proxy::with_upstreams(&[backend.port()], &["--shutdown-timeout", "5s"]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    backend.wait_requests(1, IO_TIMEOUT);

    proxy.sigterm();
    wait_until_refused(proxy.addr(), Duration::from_secs(3));
    open_gate.send(()).expect("the backend waits at the gate");

    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    assert_eq!(resp.body, b"finished");
    assert!(resp.has_token("Connection", "close"), "{}", show(&resp.raw));
    client.expect_close(IO_TIMEOUT);
    assert_eq!(proxy.wait_exit(EXIT_TIMEOUT), 0);
}

#[test]
fn sigterm_during_a_slow_dummy_response_still_delivers_it() {
    let dummies = Dummies::start(1);
    let mut proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut slow = ResponseReader::connect(proxy.addr());
    slow.send(b"GET /slow?ms=800 HTTP/1.1\r\nHost: t\r\n\r\n");
    let sent = Instant::now();
    // A full exchange on a second connection through the same single worker: the worker has
    // polled the slow request's bytes (they arrived first) long before this one is answered,
    // so the slow request is in flight when SIGTERM lands.
    assert_eq!(get(proxy.addr(), "/").0, 200);
    proxy.sigterm();
    let resp = slow.read_response("GET");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    assert_eq!(
        resp.body_text(),
        format!("Hello from Server {}\n", dummies.port(0))
    );
    assert!(
        sent.elapsed() >= Duration::from_millis(700),
        "answered before the backend did"
    );
    assert!(resp.has_token("Connection", "close"), "{}", show(&resp.raw));
    slow.expect_close(IO_TIMEOUT);
    // SIGTERM was ~800 ms ago: the listener is long gone.
    let late = TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(1));
    assert!(
        matches!(&late, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new connection after SIGTERM must be refused: {late:?}"
    );
    assert_eq!(proxy.wait_exit(EXIT_TIMEOUT), 0);
}

#[test]
fn sigterm_closes_a_silent_idle_keep_alive_connection_after_a_second_of_grace() {
    // The grace lets a client whose next request is already on its way get it answered (with
    // Connection: close, tests/graceful_stop.rs); one that stays silent is closed then, long
    // before the keep-alive timeout.
    let dummies = Dummies::start(1);
    let mut proxy = Proxy::with_upstreams(&dummies.ports(), &["--keepalive-timeout", "60s"]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response("GET").status, 200);
    let started = Instant::now();
    proxy.sigterm();
    client.expect_close(Duration::from_secs(3));
    assert!(
        started.elapsed() >= Duration::from_millis(900)
            && started.elapsed() < Duration::from_secs(2),
        "idle close took {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.wait_exit(EXIT_TIMEOUT), 0);
}

#[test]
fn sigint_shuts_down_the_same_way() {
    let dummies = Dummies::start(1);
    let mut proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_response("GET").status, 200);
    proxy.sigint();
    client.expect_close(Duration::from_secs(2));
    assert_eq!(proxy.wait_exit(EXIT_TIMEOUT), 0);
}

#[test]
fn shutdown_timeout_bounds_a_response_that_never_comes() {
    let backend = RawBackend::start(|_| Reply::Never);
    let mut proxy = Proxy::with_upstreams(
        &[backend.port()],
        &["--shutdown-timeout", "300ms", "--read-timeout", "60s"],
    );
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    backend.wait_requests(1, IO_TIMEOUT);
    let started = Instant::now();
    proxy.sigterm();
    // The exit code at the deadline is not part of the contract; the deadline is.
    let _code = proxy.wait_exit(Duration::from_secs(3));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?} with a 300 ms shutdown timeout"
    );
    // The stuck exchange dies with the process: whatever the client got, the socket is closed.
    let _ = client.try_read_response("GET");
}
