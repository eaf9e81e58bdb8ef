//! The `max_conns` queue: a request that got its slot is no longer bound by the queue's
//! deadline, a slot that frees always reaches a waiter (on any worker), and a waiter whose
//! client has gone is dropped instead of being sent upstream.

mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A pool `p` of one upstream at `port` with `max_conns = 1` and this `queue_timeout`.
fn one_slot_pool(port: u16, queue_timeout: &str) -> String {
    format!(
        "[pools.p]\nqueue_timeout = \"{queue_timeout}\"\n\
         upstreams = [{{ address = \"127.0.0.1:{port}\", max_conns = 1 }}]\n"
    )
}

#[test]
fn a_queued_request_that_gets_its_slot_is_not_cut_at_the_queue_deadline() {
    // 700 ms per request and one slot: the second request waits ~700 ms (under its 1 s
    // queue_timeout) and is then served for another 700 ms, past enqueue + 1 s.
    let backend = RawBackend::start(|_| {
        std::thread::sleep(Duration::from_millis(700));
        Reply::KeepAlive(ok_response("ok"))
    });
    let config = one_slot_pool(backend.port(), "1s");
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0"]);
    let addr = proxy.addr();
    let first = std::thread::spawn(move || get(addr, "/first").0);
    backend.wait_requests(1, IO_TIMEOUT);
    let started = Instant::now();
    let (status, body) = get(addr, "/second");
    assert_eq!(
        (status, body.as_str()),
        (200, "ok"),
        "after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "served after the first: {:?}",
        started.elapsed()
    );
    assert_eq!(first.join().expect("first client"), 200);
    assert_eq!(
        metric_count(
            proxy.admin_addr(),
            "goround_queue_timeouts_total{pool=\"p\"}"
        ),
        0
    );
    assert!(
        !proxy.has_logged(&format!("127.0.0.1:{}) in pool p is down", backend.port())),
        "a healthy upstream was taken out: {:?}",
        proxy.logs()
    );
    // Still in the rotation.
    assert_eq!(get(addr, "/third").0, 200);
}

#[test]
fn a_freed_slot_always_reaches_a_waiter_on_either_worker() {
    // Many short requests through one slot from two workers: a lost wake-up leaves requests
    // queued with nothing in flight until their queue_timeout, a 503.
    let backend = RawBackend::start(|_| {
        std::thread::sleep(Duration::from_millis(5));
        Reply::KeepAlive(ok_response("ok"))
    });
    let config = one_slot_pool(backend.port(), "3s");
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0", "--workers", "2"]);
    let addr = proxy.addr();
    const ROUNDS: usize = 40;
    const CLIENTS: usize = 8;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let gate = Arc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let gate = Arc::clone(&gate);
                std::thread::spawn(move || {
                    let mut stream = connect(addr);
                    gate.wait();
                    let req = format!(
                        "GET /{round}/{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                    );
                    let _ = stream.write_all(req.as_bytes());
                    read_to_close(&mut stream)
                })
            })
            .collect();
        for c in clients {
            let reply = c.join().expect("client");
            assert!(
                reply.starts_with(b"HTTP/1.1 200 "),
                "round {round}, after {:?}: {}",
                started.elapsed(),
                show(&reply)
            );
        }
    }
    assert_eq!(
        metric_count(
            proxy.admin_addr(),
            "goround_queue_timeouts_total{pool=\"p\"}"
        ),
        0
    );
    assert_eq!(backend.requests().len(), ROUNDS * CLIENTS);
}

#[test]
fn queued_requests_whose_clients_left_are_dropped_not_sent_upstream() {
    let served = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&served);
    let backend = RawBackend::start(move |_| {
        std::thread::sleep(Duration::from_millis(300));
        s.fetch_add(1, Ordering::SeqCst);
        Reply::KeepAlive(ok_response("ok"))
    });
    let config = one_slot_pool(backend.port(), "2s");
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0"]);
    let addr = proxy.addr();
    let holder = std::thread::spawn(move || get(addr, "/holder").0);
    backend.wait_requests(1, IO_TIMEOUT);
    // Twenty clients queue behind the holder, then leave (FIN) before any answer.
    let mut leavers: Vec<_> = (0..20)
        .map(|i| {
            let mut s = connect(addr);
            let req = format!("GET /leaver/{i} HTTP/1.1\r\nHost: t\r\n\r\n");
            s.write_all(req.as_bytes()).expect("send");
            s
        })
        .collect();
    let deadline = Instant::now() + IO_TIMEOUT;
    while metric_count(
        proxy.admin_addr(),
        "goround_upstream_queue_length{pool=\"p\"}",
    ) < 20
    {
        assert!(Instant::now() < deadline, "the 20 never queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    leavers.clear();
    // A new client is served right after the holder, not after twenty abandoned requests.
    let started = Instant::now();
    let (status, _) = get(addr, "/newcomer");
    assert_eq!(status, 200, "after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(holder.join().expect("holder"), 200);
    let sent: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r[..r.len().min(20)]).into_owned())
        .collect();
    assert_eq!(sent.len(), 2, "only the holder and the newcomer: {sent:?}");
    assert_eq!(
        metric_count(
            proxy.admin_addr(),
            "goround_upstream_queue_length{pool=\"p\"}"
        ),
        0
    );
}
