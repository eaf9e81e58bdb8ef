//! Passive outlier detection and the retry budget, seen from outside: backends that answer
//! 503, close before answering, or die under load.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A backend answering `GET /health` with 200 and anything else with `status` (shared, so the
/// test can change it), with its name as the body.
fn switchable(name: &'static str, status: Arc<AtomicU16>) -> RawBackend {
    RawBackend::start(move |req| {
        if req.starts_with(b"GET /health ") {
            return Reply::KeepAlive(ok_response("healthy"));
        }
        let code = status.load(Ordering::SeqCst);
        if code == 200 {
            Reply::KeepAlive(ok_response(name))
        } else {
            Reply::KeepAlive(
                format!(
                    "HTTP/1.1 {code} Unavailable\r\nContent-Length: {}\r\n\r\n{name}",
                    name.len()
                )
                .into_bytes(),
            )
        }
    })
}

/// A pool over `ports` with HTTP checks of `/health` far apart (so that only live requests
/// judge the upstreams here) and this `[pools.p.outlier]`.
fn config(ports: &[u16], outlier: &str, pool_extra: &str) -> String {
    let ups: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        "[pools.p]\nupstreams = [{}]\n{pool_extra}\n\n[pools.p.health]\ncheck = \"http\"\npath = \"/health\"\n\
         interval = \"60s\"\ntimeout = \"1s\"\n\n[pools.p.outlier]\n{outlier}\n",
        ups.join(", ")
    )
}

fn status(proxy: &Proxy) -> serde_json::Value {
    let (code, body) = get(proxy.admin_addr(), "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status: {e}: {body}"))
}

/// The `/status` entry of the upstream on `port`.
fn upstream(proxy: &Proxy, port: u16) -> serde_json::Value {
    let s = status(proxy);
    s["pools"][0]["upstreams"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|u| u["address"] == format!("127.0.0.1:{port}"))
                .cloned()
        })
        .unwrap_or_else(|| panic!("no upstream on {port} in {s}"))
}

#[test]
fn a_backend_answering_503_is_ejected_after_3_in_a_row_then_returns_after_ejection() {
    let bad_status = Arc::new(AtomicU16::new(200));
    let bad = switchable("bad", Arc::clone(&bad_status));
    let good = switchable("good", Arc::new(AtomicU16::new(200)));
    let (proxy, _dir) = Proxy::with_config(
        &config(
            &[bad.port(), good.port()],
            "consecutive_5xx = 3\nejection = \"1s\"",
            "",
        ),
        &["--admin", "127.0.0.1:0"],
    );
    bad_status.store(503, Ordering::SeqCst);
    let mark = proxy.log_mark();
    // Round robin: bad, good, bad, good, bad — the third 503 in a row ejects it.
    let codes: Vec<u16> = (0..5).map(|_| get(proxy.addr(), "/").0).collect();
    assert_eq!(codes, [503, 200, 503, 200, 503]);
    proxy.wait_for_log_since(
        mark,
        "is down: 3 responses 502/503/504 in a row, the last 503, ejected for 1s",
        Duration::from_secs(2),
    );
    let ejected = Instant::now();
    let u = upstream(&proxy, bad.port());
    assert!(u["ejected_until"].is_u64() && u["up"] == false, "{u}");
    assert_eq!(u["ejections"]["5xx"], 1);
    assert!(scrape(proxy.admin_addr()).contains(&format!(
        "goround_upstream_ejections_total{{pool=\"p\",upstream=\"127.0.0.1:{}\",reason=\"5xx\"}} 1",
        bad.port()
    )));
    // While it is out, only the other one answers.
    for _ in 0..6 {
        assert_eq!(get(proxy.addr(), "/"), (200, "good".to_string()));
    }
    bad_status.store(200, Ordering::SeqCst);
    proxy.wait_for_log_since(mark, "is up: ejection over", Duration::from_secs(3));
    let back = ejected.elapsed();
    assert!(
        back >= Duration::from_millis(700) && back <= Duration::from_millis(1600),
        "back after {back:?}, ejection = 1s"
    );
    let bodies: Vec<String> = (0..4).map(|_| get(proxy.addr(), "/").1).collect();
    assert!(bodies.iter().any(|b| b == "bad"), "{bodies:?}");
    assert!(upstream(&proxy, bad.port())["ejected_until"].is_null());
}

#[test]
fn a_503_that_never_comes_3_in_a_row_does_not_eject() {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let flaky = RawBackend::start(move |req| {
        if req.starts_with(b"GET /health ") {
            return Reply::KeepAlive(ok_response("healthy"));
        }
        // 503, 503, 200, 503, 503, 200, ...
        if counter.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            Reply::KeepAlive(ok_response("flaky"))
        } else {
            Reply::KeepAlive(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec())
        }
    });
    let (proxy, _dir) = Proxy::with_config(
        &config(
            &[flaky.port()],
            "consecutive_5xx = 3\nejection = \"30s\"",
            "retries = 0",
        ),
        &["--admin", "127.0.0.1:0"],
    );
    let codes: Vec<u16> = (0..30).map(|_| get(proxy.addr(), "/").0).collect();
    assert_eq!(codes.iter().filter(|&&c| c == 503).count(), 20, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 10, "{codes:?}");
    let u = upstream(&proxy, flaky.port());
    assert!(u["ejected_until"].is_null() && u["up"] == true, "{u}");
    assert_eq!(u["ejections"]["5xx"], 0);
}

#[test]
fn max_ejected_percent_is_never_passed_with_every_backend_failing() {
    let backends: Vec<RawBackend> = (0..4)
        .map(|_| switchable("x", Arc::new(AtomicU16::new(503))))
        .collect();
    let ports: Vec<u16> = backends.iter().map(|b| b.port()).collect();
    let (proxy, _dir) = Proxy::with_config(
        &config(
            &ports,
            "consecutive_5xx = 2\nejection = \"30s\"\nmax_ejected_percent = 50",
            "retries = 0",
        ),
        &["--admin", "127.0.0.1:0"],
    );
    for _ in 0..40 {
        assert_eq!(get(proxy.addr(), "/").0, 503);
    }
    let s = status(&proxy);
    let ups = s["pools"][0]["upstreams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ejected = ups.iter().filter(|u| u["ejected_until"].is_u64()).count();
    let up = ups.iter().filter(|u| u["up"] == true).count();
    assert_eq!((ejected, up), (2, 2), "{s}");
    let m = scrape(proxy.admin_addr());
    let total: u64 = m
        .lines()
        .filter(|l| l.starts_with("goround_upstream_up{pool=\"p\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 2, "{m}");
}

#[test]
fn a_backend_killed_under_load_costs_no_failed_idempotent_request() {
    let mut dummies = Dummies::start(3);
    let ports = dummies.ports();
    let (proxy, _dir) = Proxy::with_config(&config(&ports, "", ""), &["--workers", "2"]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, at) = (Arc::clone(&stop), proxy.addr());
            thread::spawn(move || {
                let (mut ok, mut failed) = (0u64, Vec::new());
                let mut conn: Option<ResponseReader> = None;
                while !stop.load(Ordering::SeqCst) {
                    let c = conn.get_or_insert_with(|| ResponseReader::connect(at));
                    let r = c
                        .try_send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                        .map_err(|e| e.to_string())
                        .and_then(|_| c.try_read_response("GET"));
                    match r {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => {
                            failed.push(r.status.to_string());
                            conn = None;
                        }
                        Err(e) => {
                            failed.push(e);
                            conn = None;
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(700));
    dummies.kill_hard(1);
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for c in clients {
        let (ok, failed) = c.join().expect("a client");
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 200, "only {total} requests under load");
    assert!(proxy.has_logged(&format!(
        "upstream 127.0.0.1:{} (127.0.0.1:{}) in pool p is down",
        ports[1], ports[1]
    )));
}

#[test]
fn a_retry_storm_stops_at_the_retry_budget() {
    // Every try fails before a response (the backends close at once): without a budget each
    // request would make three connections.
    let a = RawBackend::close_on_accept();
    let b = RawBackend::close_on_accept();
    let c = RawBackend::close_on_accept();
    let (proxy, _dir) = Proxy::with_config(
        &format!(
            "[pools.p]\nupstreams = [\"127.0.0.1:{}\", \"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nretries = 2\n\
             retry_budget = \"20%\"\n\n[pools.p.health]\ninterval = \"60s\"\n\n\
             [pools.p.outlier]\nconsecutive_failures = 0\n",
            a.port(),
            b.port(),
            c.port()
        ),
        &["--admin", "127.0.0.1:0"],
    );
    // Ready once every upstream had its first check: those connections are no tries. A
    // check's connect completes in the kernel, before the backend's accept counts it: wait for
    // the three to be counted.
    proxy.wait_for_log("start] ready", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    let count = || a.connection_count() + b.connection_count() + c.connection_count();
    while count() < 3 {
        assert!(Instant::now() < deadline, "{} checks counted", count());
        std::thread::sleep(Duration::from_millis(5));
    }
    let probes = count();
    assert_eq!(probes, 3, "one check each");
    for _ in 0..100 {
        assert_eq!(get(proxy.addr(), "/").0, 502);
    }
    let tries = count() - probes;
    // 100 first tries; 20 % of them is less than the floor of 3 a second over 10 s: 30.
    assert_eq!(tries, 100 + 30, "connections to the backends");
    assert_eq!(
        metric(
            proxy.admin_addr(),
            "goround_retries_refused_total{pool=\"p\"}"
        )
        .as_deref(),
        Some("85")
    );
}

#[test]
fn a_client_that_stops_sending_its_body_does_not_get_the_upstream_ejected() {
    // The backend waits for the whole body, which never comes.
    let b = RawBackend::start(|_| Reply::KeepAlive(ok_response("done")));
    let (proxy, _dir) = Proxy::with_config(
        &config(&[b.port()], "consecutive_failures = 1", "retries = 0"),
        &["--admin", "127.0.0.1:0", "--read-timeout", "300ms"],
    );
    // Past the request buffer, so that the body streams to the upstream as it comes.
    let mut client = ResponseReader::connect(proxy.addr());
    let mut head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\n".to_vec();
    head.extend(vec![b'x'; 100_000]);
    client.send(&head);
    b.wait_bytes(90_000, Duration::from_secs(5));
    // The timeout passes with the client silent: 504 (the upstream did not answer), and yet
    // the upstream is not blamed, as it never had the whole request.
    assert_eq!(client.read_response("POST").status, 504);
    let u = upstream(&proxy, b.port());
    assert!(u["up"] == true && u["ejected_until"].is_null(), "{u}");
    assert_eq!(u["ejections"]["failures"], 0, "{u}");
    assert_eq!(get(proxy.addr(), "/").0, 200);
}
