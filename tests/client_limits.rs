//! Per-client limits with real clients: a client at ten times its rate gets about
//! `rate × seconds + burst` answers, another client at the same moment is not touched, a
//! connection over the connection limit gets 429 and a close, and `max_conns` queues requests
//! so that a backend never sees more than its cap.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Send GETs at `per_second` for `secs` on one connection from `from`; (200s, 429s, elapsed).
fn offer(addr: SocketAddr, from: &str, per_second: u32, secs: f64) -> (usize, usize, Duration) {
    let mut c = ResponseReader::new(connect_from(from, addr));
    let gap = Duration::from_secs_f64(1.0 / f64::from(per_second));
    let (mut ok, mut limited) = (0, 0);
    let start = Instant::now();
    let mut next = start;
    while start.elapsed().as_secs_f64() < secs {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.read_response("GET");
        match r.status {
            200 => ok += 1,
            429 => {
                limited += 1;
                let retry = r.header("Retry-After").unwrap_or("");
                assert!(
                    retry.parse::<u64>().is_ok_and(|s| s >= 1),
                    "{}",
                    show(&r.raw)
                );
                assert_eq!(r.body, b"429 Too Many Requests\n");
            }
            other => panic!("status {other}: {}", show(&r.raw)),
        }
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    (ok, limited, start.elapsed())
}

#[test]
fn ten_times_the_rate_gets_rate_times_seconds_plus_burst_and_others_are_untouched() {
    let dummies = Dummies::start(1);
    let (rate, burst) = (50.0, 20.0);
    let config = format!(
        "[client_limits]\nrequests_per_second = {rate}\nburst = {burst}\n\
         [pools.p]\nupstreams = [\"127.0.0.1:{}\"]\n",
        dummies.port(0)
    );
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0"]);
    let addr = proxy.addr();
    let other = std::thread::spawn(move || offer(addr, "127.0.0.2", 10, 3.0));
    let (ok, limited, elapsed) = offer(addr, "127.0.0.1", 500, 3.0);
    let want = rate * elapsed.as_secs_f64() + burst + 1.0;
    assert!(
        (ok as f64 - want).abs() <= want * 0.05,
        "{ok} answered ({limited} limited) in {elapsed:?}; want {want:.0} ± 5 %"
    );
    let (other_ok, other_limited, _) = other.join().expect("the other client");
    assert_eq!(
        other_limited, 0,
        "another client at the same moment is not touched"
    );
    assert!(other_ok >= 25, "{other_ok}");
    let (_, metrics) = get(proxy.admin_addr(), "/metrics");
    let counted: usize = metrics
        .lines()
        .find(|l| l.starts_with("goround_rate_limited_total{pool=\"p\"} "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the counter");
    assert_eq!(counted, limited);
    assert!(metrics.contains(&format!(
        "goround_local_responses_total{{code=\"429\"}} {limited}\n"
    )));
}

#[test]
fn a_pools_own_rate_is_stricter_than_the_global_one() {
    let dummies = Dummies::start(1);
    let port = dummies.port(0);
    let config = format!(
        "[client_limits]\nrequests_per_second = 1000\nburst = 1000\n\
         [pools.open]\nupstreams = [\"127.0.0.1:{port}\"]\n\
         [pools.tight]\nupstreams = [\"127.0.0.1:{port}\"]\n\
         [pools.tight.client_limits]\nrequests_per_second = 1\nburst = 2\n\
         [[routes]]\npath = \"/tight\"\npool = \"tight\"\n\
         [[routes]]\npool = \"open\"\n"
    );
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let statuses: Vec<u16> = (0..5).map(|_| get(proxy.addr(), "/tight").0).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let open: Vec<u16> = (0..5).map(|_| get(proxy.addr(), "/").0).collect();
    assert_eq!(open, [200; 5]);
}

#[test]
fn a_connection_over_the_connection_limit_gets_429_and_a_close() {
    let dummies = Dummies::start(1);
    let config = format!(
        "[client_limits]\nconnections = 2\n[pools.p]\nupstreams = [\"127.0.0.1:{}\"]\n",
        dummies.port(0)
    );
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let mut held: Vec<ResponseReader> = (0..2)
        .map(|_| {
            let mut c = ResponseReader::connect(proxy.addr());
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.read_response("GET").status, 200);
            c
        })
        .collect();
    let third = send_raw(proxy.addr(), b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        third.starts_with(b"HTTP/1.1 429 Too Many Requests\r\n"),
        "{}",
        show(&third)
    );
    assert!(
        find(&third, b"\r\nConnection: close\r\n").is_some(),
        "{}",
        show(&third)
    );
    // Another address is not counted with this one.
    let mut other = ResponseReader::new(connect_from("127.0.0.2", proxy.addr()));
    other.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(other.read_response("GET").status, 200);
    // One closes: a new one fits again.
    drop(held.pop());
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let reply = send_raw(
            proxy.addr(),
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        if reply.starts_with(b"HTTP/1.1 200 ") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", show(&reply));
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn max_conns_queues_requests_and_the_backend_never_sees_more_than_its_cap() {
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (n, m) = (Arc::clone(&now), Arc::clone(&most));
    let backend = RawBackend::start(move |_| {
        let at_once = n.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(at_once, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        n.fetch_sub(1, Ordering::SeqCst);
        Reply::KeepAlive(ok_response("ok"))
    });
    let config = format!(
        "[pools.p]\nupstreams = [{{ address = \"127.0.0.1:{}\", max_conns = 2 }}]\n",
        backend.port()
    );
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0", "--workers", "2"]);
    let addr = proxy.addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || get(addr, "/").0))
        .collect();
    // While they wait, the queue shows in the metrics.
    std::thread::sleep(Duration::from_millis(100));
    let (_, metrics) = get(proxy.admin_addr(), "/metrics");
    let queued: usize = metrics
        .lines()
        .find(|l| l.starts_with("goround_upstream_queue_length{pool=\"p\"} "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the gauge");
    assert!(queued >= 6, "{queued} waiting of 10 with 2 slots");
    let statuses: Vec<u16> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert_eq!(statuses, [200; 10], "all ten answered");
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "never more than max_conns at once"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_request_that_waits_its_queue_timeout_gets_503() {
    let backend = RawBackend::start(|_| {
        std::thread::sleep(Duration::from_millis(800));
        Reply::KeepAlive(ok_response("ok"))
    });
    let config = format!(
        "[pools.p]\nqueue_timeout = \"200ms\"\nupstreams = [{{ address = \"127.0.0.1:{}\", max_conns = 1 }}]\n",
        backend.port()
    );
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0"]);
    let addr = proxy.addr();
    let first = std::thread::spawn(move || get(addr, "/").0);
    backend.wait_bytes(1, IO_TIMEOUT);
    let started = Instant::now();
    let mut c = ResponseReader::connect(addr);
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response("GET");
    assert_eq!(r.status, 503, "{}", show(&r.raw));
    assert!(r.header("Retry-After").is_some());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190) && waited < Duration::from_millis(700),
        "{waited:?}"
    );
    assert_eq!(first.join().expect("first"), 200);
    let (_, metrics) = get(proxy.admin_addr(), "/metrics");
    assert!(
        metrics.contains("goround_queue_timeouts_total{pool=\"p\"} 1\n"),
        "{metrics}"
    );
}
