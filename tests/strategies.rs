//! The strategies with real requests: weighted round robin, least connections against a slow
//! backend, ip_hash and hash keeping a client on one backend (and moving only the keys of a
//! backend that leaves), backups, retries.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// `[pools.p]` with `strategy` (and `extra` lines) over `upstreams` (TOML array items).
fn pool_config(strategy: &str, extra: &str, upstreams: &[String]) -> String {
    format!(
        "health_interval = \"1h\"\n[pools.p]\nstrategy = \"{strategy}\"\n{extra}\nupstreams = [{}]\n",
        upstreams.join(", ")
    )
}

fn addr(port: u16) -> String {
    format!("\"127.0.0.1:{port}\"")
}

/// Which backend (port) answered each of `n` requests on one keep-alive connection, each
/// request with the extra head lines `fields(i)`.
fn answered_by(proxy: &Proxy, n: usize, fields: impl Fn(usize) -> String) -> Vec<u16> {
    let mut c = ResponseReader::connect(proxy.addr());
    (0..n)
        .map(|i| {
            c.send(format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", fields(i)).as_bytes());
            let r = c.read_response("GET");
            assert_eq!(r.status, 200, "{}", show(&r.raw));
            hello_port(&r.body_text())
        })
        .collect()
}

fn counts(ports: &[u16]) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for p in ports {
        *m.entry(*p).or_default() += 1;
    }
    m
}

#[test]
fn weights_five_one_one_share_700_requests_within_two_percent() {
    let d = Dummies::start(3);
    let ups: Vec<String> = [5, 1, 1]
        .iter()
        .zip(d.ports())
        .map(|(w, p)| format!("{{ address = \"127.0.0.1:{p}\", weight = {w} }}"))
        .collect();
    let (proxy, _dir) = Proxy::with_config(&pool_config("round_robin", "", &ups), &[]);
    let order = answered_by(&proxy, 700, |_| String::new());
    let c = counts(&order);
    for (i, want) in [(0, 500.0), (1, 100.0), (2, 100.0)] {
        let got = c.get(&d.port(i)).copied().unwrap_or(0) as f64;
        assert!(
            (got - want).abs() <= 14.0,
            "backend {i}: {got} of 700, want {want}"
        );
    }
    // Smooth: never five of the heavy one in a row at the start, it interleaves.
    let first: Vec<usize> = order[..7]
        .iter()
        .map(|p| d.ports().iter().position(|q| q == p).unwrap())
        .collect();
    assert_eq!(first, [0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn least_conn_sends_most_requests_to_the_fast_backend() {
    let d = Dummies::start_each(&[&["--delay", "200ms"], &[]]);
    let ups: Vec<String> = d.ports().into_iter().map(addr).collect();
    let (proxy, _dir) = Proxy::with_config(&pool_config("least_conn", "", &ups), &[]);
    let addr = proxy.addr();
    let tally = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_millis(1500);
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let tally = Arc::clone(&tally);
            thread::spawn(move || {
                let mut c = ResponseReader::connect(addr);
                while Instant::now() < deadline {
                    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
                    let r = c.read_response("GET");
                    assert_eq!(r.status, 200);
                    lock(&tally).push(hello_port(&r.body_text()));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let all = lock(&tally).clone();
    let fast = all.iter().filter(|p| **p == d.port(1)).count();
    assert!(
        fast * 100 > all.len() * 80,
        "the fast backend got {fast} of {} requests",
        all.len()
    );
}

#[test]
fn ip_hash_keeps_a_client_on_one_backend() {
    let d = Dummies::start(3);
    let ups: Vec<String> = d.ports().into_iter().map(addr).collect();
    let (proxy, _dir) = Proxy::with_config(&pool_config("ip_hash", "", &ups), &[]);
    let order = answered_by(&proxy, 30, |_| String::new());
    assert_eq!(
        counts(&order).len(),
        1,
        "one client address, one backend: {order:?}"
    );
}

#[test]
fn hash_on_a_header_keeps_each_key_on_one_backend_and_moves_only_the_keys_of_one_that_leaves() {
    let mut d = Dummies::start(4);
    let ups: Vec<String> = d.ports().into_iter().map(addr).collect();
    let config =
        pool_config("hash", "hash_key = \"header:X-User\"", &ups).replace("\"1h\"", "\"200ms\"");
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let user = |i: usize| format!("X-User: user-{}\r\n", i % 40);
    let before = answered_by(&proxy, 80, user);
    // Each key always lands on the same backend; 40 keys spread over the four.
    for i in 0..40 {
        assert_eq!(before[i], before[i + 40], "key {i} moved between rounds");
    }
    assert_eq!(counts(&before).len(), 4, "{:?}", counts(&before));
    // Backend 1 leaves: only its keys move.
    let gone = d.port(1);
    d.kill(1);
    let during = answered_by(&proxy, 40, user);
    for i in 0..40 {
        if before[i] == gone {
            assert_ne!(during[i], gone);
        } else {
            assert_eq!(
                during[i], before[i],
                "key {i} was not on the backend that left"
            );
        }
    }
    // It comes back at the next health check: its keys return.
    let mark = proxy.log_mark();
    d.restart(1);
    proxy.wait_for_log_since(
        mark,
        &format!("127.0.0.1:{gone}) in pool p is up"),
        LOG_TIMEOUT,
    );
    let after = answered_by(&proxy, 40, user);
    assert_eq!(after, before[..40], "the keys came back");
}

#[test]
fn a_request_without_the_hash_key_falls_back_to_round_robin() {
    let d = Dummies::start(3);
    let ups: Vec<String> = d.ports().into_iter().map(addr).collect();
    let config = pool_config("hash", "hash_key = \"cookie:session\"", &ups);
    let (proxy, _dir) = Proxy::with_config(&config, &["-v"]);
    let spread = answered_by(&proxy, 6, |_| String::new());
    assert_eq!(counts(&spread).len(), 3, "{spread:?}");
    proxy.wait_for_log("no cookie:session in the request: round robin", LOG_TIMEOUT);
    let sticky = answered_by(&proxy, 6, |_| "Cookie: a=1; session=abc\r\n".to_string());
    assert_eq!(counts(&sticky).len(), 1, "{sticky:?}");
}

#[test]
fn a_backup_serves_only_while_every_other_upstream_is_down() {
    let mut d = Dummies::start(2);
    let ups = vec![
        addr(d.port(0)),
        format!("{{ address = \"127.0.0.1:{}\", backup = true }}", d.port(1)),
    ];
    let config = pool_config("round_robin", "", &ups).replace("\"1h\"", "\"200ms\"");
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    assert_eq!(
        counts(&answered_by(&proxy, 6, |_| String::new())).get(&d.port(0)),
        Some(&6)
    );
    d.kill(0);
    // The refused connect takes the primary out at once; the backup answers.
    let during = answered_by(&proxy, 6, |_| String::new());
    assert_eq!(counts(&during).get(&d.port(1)), Some(&6), "{during:?}");
    d.restart(0);
    proxy.wait_for_log(
        &format!("127.0.0.1:{}) in pool p is up", d.port(0)),
        LOG_TIMEOUT,
    );
    let after = answered_by(&proxy, 6, |_| String::new());
    assert_eq!(counts(&after).get(&d.port(0)), Some(&6), "{after:?}");
}

#[test]
fn retries_bound_the_tries_of_one_request() {
    // Three upstreams that accept and close at once (they pass a TCP check), then a good one:
    // with retries = 1 a GET tries two of them and gets 502.
    let good = Dummies::start(1);
    let closers: Vec<RawBackend> = (0..3).map(|_| RawBackend::close_on_accept()).collect();
    let mut ups: Vec<String> = closers.iter().map(|b| addr(b.port())).collect();
    ups.push(addr(good.port(0)));
    let config = pool_config("round_robin", "retries = 1", &ups);
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let probes = |closers: &[RawBackend]| {
        closers
            .iter()
            .map(RawBackend::connection_count)
            .sum::<usize>()
    };
    let deadline = Instant::now() + LOG_TIMEOUT;
    while probes(&closers) < 3 {
        assert!(Instant::now() < deadline, "the first checks never came");
        thread::sleep(Duration::from_millis(5));
    }
    let (status, _) = get(proxy.addr(), "/");
    assert_eq!(status, 502, "two tries, both closed before answering");
    assert_eq!(probes(&closers), 3 + 2, "one try and one retry, no more");
}
