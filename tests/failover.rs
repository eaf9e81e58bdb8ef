//! Failover inside one request: a refused, timed-out or (for idempotent requests) silently
//! closed upstream costs the client nothing; each upstream is tried at most once.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn refused_upstream_is_marked_down_and_the_request_goes_to_the_next() {
    let dummies = Dummies::start(2);
    let dead = free_port();
    let (a, b) = (dummies.port(0), dummies.port(1));
    // A long sweep interval: the request path itself must notice the refusal.
    let proxy = Proxy::with_upstreams(&[dead, a, b], &["--health-interval", "60s"]);
    let started = Instant::now();
    let seen: Vec<u16> = (0..4).map(|_| get_port(proxy.addr())).collect();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(seen.iter().all(|p| *p == a || *p == b), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "A and B must alternate: {seen:?}"
    );
    proxy.wait_for_log(&down_line(dead), LOG_TIMEOUT);
}

#[test]
fn timed_out_connect_is_marked_down_and_the_request_goes_to_the_next() {
    let dummies = Dummies::start(1);
    let (_listener, _filler, blackhole) = blackhole_listener();
    let proxy = Proxy::with_upstreams(
        &[blackhole, dummies.port(0)],
        &[
            "--connect-timeout",
            "200ms",
            "--health-interval",
            "60s",
            "--health-timeout",
            "200ms",
        ],
    );
    let started = Instant::now();
    assert_eq!(get_port(proxy.addr()), dummies.port(0));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "failover took {elapsed:?}"
    );
    proxy.wait_for_log(&down_line(blackhole), LOG_TIMEOUT);
}

#[test]
fn get_is_retried_elsewhere_when_the_upstream_closes_before_responding() {
    let dummies = Dummies::start(1);
    let closer = RawBackend::close_on_accept();
    let proxy = Proxy::with_upstreams(&[closer.port(), dummies.port(0)], &[]);
    // The first pick is the closer.
    assert_eq!(get_port(proxy.addr()), dummies.port(0));
    assert!(
        !closer.connections().is_empty(),
        "the closer was never tried"
    );
}

#[test]
fn post_is_not_retried_when_the_upstream_closes_before_responding() {
    let backend = RawBackend::fixed(&ok_response("second"));
    let closer = RawBackend::start(|_| Reply::CloseSilently);
    let proxy = Proxy::with_upstreams(&[closer.port(), backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"POST /order HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let resp = client.read_response("POST");
    assert_eq!(resp.status, 502, "{}", show(&resp.raw));
    assert_eq!(closer.requests().len(), 1);
    assert!(backend.requests().is_empty(), "a POST was sent twice");
}

#[test]
fn each_upstream_is_tried_at_most_once_per_request() {
    let first = RawBackend::start(|_| Reply::CloseSilently);
    let second = RawBackend::start(|_| Reply::CloseSilently);
    let proxy = Proxy::with_upstreams(&[first.port(), second.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 502, "{}", show(&resp.raw));
    assert_eq!(
        first.wait_requests(1, IO_TIMEOUT).len(),
        1,
        "first upstream tries"
    );
    assert_eq!(
        second.wait_requests(1, IO_TIMEOUT).len(),
        1,
        "second upstream tries"
    );
}
