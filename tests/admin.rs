//! The admin listener: exact counters after known traffic, the JSON status, a pool's own 5xx,
//! slow start and the history over HTTP, /healthz through a graceful stop, only its paths, and
//! scrapers that cannot hold it or the workers up.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The value of the sample line that starts with `prefix` (a metric name with its labels).
fn sample(metrics: &str, prefix: &str) -> f64 {
    metric_value(metrics, prefix)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{metrics}"))
}

#[test]
fn counters_are_exact_after_known_traffic() {
    let dummies = Dummies::start(2);
    let (a, b) = (dummies.port(0), dummies.port(1));
    let proxy = Proxy::with_upstreams(
        &dummies.ports(),
        &["--admin", "127.0.0.1:0", "--health-interval", "1h"],
    );
    // 10 requests on one keep-alive connection, 10 on ten connections of their own, then a
    // bad one (400) on its own connection.
    let mut c = ResponseReader::connect(proxy.addr());
    for _ in 0..10 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response("GET").status, 200);
    }
    for _ in 0..10 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    let bad = send_raw(proxy.addr(), b"GET / HTTP/1.1\r\n\r\n");
    assert!(bad.starts_with(b"HTTP/1.1 400 "), "{}", show(&bad));
    drop(c);
    // The connections' ends reach the counters when the worker closes them.
    let deadline = Instant::now() + LOG_TIMEOUT;
    let m = loop {
        let m = scrape(proxy.admin_addr());
        if sample(&m, "goround_client_connections") == 0.0 || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let up = |port: u16, name: &str| {
        sample(
            &m,
            &format!("{name}{{pool=\"default\",upstream=\"127.0.0.1:{port}\"}}"),
        )
    };
    assert_eq!(
        up(a, "goround_upstream_requests_total") + up(b, "goround_upstream_requests_total"),
        20.0
    );
    assert_eq!(
        up(a, "goround_upstream_requests_total"),
        10.0,
        "round robin: half each"
    );
    let class = |port: u16, code: &str| {
        sample(&m, &format!("goround_upstream_responses_total{{pool=\"default\",upstream=\"127.0.0.1:{port}\",code=\"{code}\"}}"))
    };
    assert_eq!(class(a, "2xx") + class(b, "2xx"), 20.0);
    assert_eq!(class(a, "5xx"), 0.0);
    assert_eq!(
        up(a, "goround_upstream_response_seconds_count")
            + up(b, "goround_upstream_response_seconds_count"),
        20.0
    );
    assert_eq!(up(a, "goround_upstream_up"), 1.0);
    assert_eq!(up(a, "goround_upstream_active_requests"), 0.0);
    assert_eq!(sample(&m, "goround_client_requests_total"), 21.0);
    assert_eq!(sample(&m, "goround_client_connections_total"), 12.0);
    assert_eq!(sample(&m, "goround_client_connections"), 0.0);
    assert_eq!(
        sample(&m, "goround_local_responses_total{code=\"400\"}"),
        1.0
    );
    assert_eq!(
        sample(&m, "goround_local_responses_total{code=\"503\"}"),
        0.0
    );
    assert!(sample(&m, "goround_bytes_received_total") > 20.0 * 26.0);
    assert!(sample(&m, "goround_bytes_sent_total") > 20.0 * 60.0);
    assert_eq!(
        sample(
            &m,
            &format!(
                "goround_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    // The access log is off: nothing dropped. Every upstream passed its first health check
    // (the proxy is ready only after it).
    assert_eq!(sample(&m, "goround_access_log_dropped_total"), 0.0);
    for port in [a, b] {
        let passes = sample(&m, &format!("goround_upstream_health_checks_total{{pool=\"default\",upstream=\"127.0.0.1:{port}\",result=\"pass\"}}"));
        assert!(passes >= 1.0, "{port}: {passes} passes");
    }
    // The admin's own requests are not traffic.
    let m2 = scrape(proxy.admin_addr());
    assert_eq!(sample(&m2, "goround_client_requests_total"), 21.0);

    // A connect failure is counted against its upstream, and takes it down.
    let mut dummies = dummies;
    dummies.kill(1);
    for _ in 0..4 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    let m = scrape(proxy.admin_addr());
    let failures = sample(&m, &format!("goround_upstream_connect_failures_total{{pool=\"default\",upstream=\"127.0.0.1:{b}\"}}"));
    assert_eq!(
        failures, 1.0,
        "one refused connect, then it is out of the rotation"
    );
    assert_eq!(
        sample(
            &m,
            &format!("goround_upstream_up{{pool=\"default\",upstream=\"127.0.0.1:{b}\"}}")
        ),
        0.0
    );
}

#[test]
fn status_json_has_every_documented_key() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--admin", "127.0.0.1:0"]);
    assert_eq!(get(proxy.addr(), "/").0, 200);
    let port = dummies.port(0);
    // The first health check's result shows up within its interval.
    let deadline = Instant::now() + LOG_TIMEOUT;
    let body = loop {
        let (status, body) = get(proxy.admin_addr(), "/status");
        assert_eq!(status, 200);
        if body.contains("\"last_check\":{") || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for key in [
        format!("\"version\":\"{}\"", env!("CARGO_PKG_VERSION")),
        "\"uptime_seconds\":".to_string(),
        "\"pools\":[{\"name\":\"default\",\"strategy\":\"round_robin\"".to_string(),
        format!("\"address\":\"127.0.0.1:{port}\""),
        "\"up\":true,\"weight\":1,\"backup\":false".to_string(),
        "\"active_requests\":0,\"requests\":1,\"connect_failures\":0".to_string(),
        "\"responses\":{\"2xx\":1,\"3xx\":0,\"4xx\":0,\"5xx\":0}".to_string(),
        "\"last_check\":{\"ok\":true,\"unix_ms\":".to_string(),
        "\"detail\":\"connected\"".to_string(),
        "\"clients\":{\"open\":".to_string(),
        "\"accepted\":1,\"requests\":1".to_string(),
        "\"rate_limited\":0".to_string(),
        "\"config_loaded_unix_ms\":".to_string(),
    ] {
        assert!(body.contains(&key), "{key} missing from {body}");
    }
}

#[test]
fn only_four_paths_are_served_and_nothing_is_proxied() {
    let backend = RawBackend::fixed(&ok_response("backend"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_addr();
    let (status, body) = get(admin, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, page) = get(admin, "/");
    assert_eq!(status, 200);
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<table>"),
        "{page}"
    );
    for path in ["/other", "/metrics/", "/status.json", "/../metrics"] {
        assert_eq!(get(admin, path).0, 404, "{path}");
    }
    let post = send_raw(
        admin,
        b"POST /status HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with(b"HTTP/1.1 405 "), "{}", show(&post));
    assert!(
        backend.requests().is_empty(),
        "the admin listener never proxies"
    );
}

#[test]
fn healthz_says_503_from_the_moment_a_graceful_stop_begins() {
    let backend = RawBackend::start(|req| {
        if req.starts_with(b"GET /slow") {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Reply::KeepAlive(ok_response("ok"))
    });
    let mut proxy = Proxy::with_upstreams(&[backend.port()], &["--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_addr();
    assert_eq!(get(admin, "/healthz").0, 200);
    // A request in flight keeps the proxy draining for a while after SIGTERM.
    let addr = proxy.addr();
    let slow = std::thread::spawn(move || get(addr, "/slow"));
    backend.wait_bytes(1, IO_TIMEOUT);
    proxy.sigterm();
    proxy.wait_for_log("shutting down", LOG_TIMEOUT);
    let (status, body) = get(admin, "/healthz");
    assert_eq!((status, body.as_str()), (503, "stopping\n"));
    assert_eq!(
        slow.join().expect("slow client").0,
        200,
        "the request in flight still finished"
    );
    assert_eq!(proxy.wait_exit(EXIT_TIMEOUT), 0);
}

#[test]
fn slow_scrapers_and_a_flood_of_admin_connections_do_not_hold_anything_up() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_addr();
    // More connections than the admin keeps, each sending half a request and waiting.
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = connect(admin);
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n");
            s
        })
        .collect();
    // The proxy's traffic is not affected at all.
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Once the stalled ones are dropped, the admin answers again at once.
    idle.clear();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = ResponseReader::connect(admin);
        c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        if c.read_response("GET").status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the admin listener never recovered"
        );
    }
}

#[test]
fn local_5xx_slow_start_and_the_history_are_served() {
    let mut dummies = Dummies::start(1);
    let port = dummies.port(0);
    let config = format!(
        "[pools.web]\nupstreams = [\"127.0.0.1:{port}\"]\nslow_start = \"1h\"\n\
         [pools.web.health]\ninterval = \"100ms\"\nfall = 50\n"
    );
    // (Checks every 100 ms bring it back quickly; `fall = 50`: they do not take it out
    // before the requests find it gone.)
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0"]);
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    assert_eq!(get(proxy.addr(), "/").0, 200);
    dummies.kill(0);
    // With its only upstream gone, the pool's requests get the proxy's own 502 (refused) or
    // 503 (none up): each one counts.
    for _ in 0..3 {
        let (status, _) = get(proxy.addr(), "/");
        assert!(status == 502 || status == 503, "{status}");
    }
    let m = scrape(proxy.admin_addr());
    assert_eq!(sample(&m, "goround_local_5xx_total{pool=\"web\"}"), 3.0);
    let (_, status) = get(proxy.admin_addr(), "/status");
    assert!(status.contains("\"name\":\"web\""), "{status}");
    assert!(status.contains("\"local_5xx\":3,"), "{status}");
    assert!(status.contains("\"slow_start_left_ms\":null"), "{status}");

    // The history has the change once the admin thread has read it (it reads every second).
    let address = format!("\"address\":\"127.0.0.1:{port}\"");
    // (A refused live request takes it out for the outlier ejection's time.)
    let down = format!(
        "\"pool\":\"web\",{address},\"state\":\"ejected\",\"by\":\"request\",\
         \"reason\":\"connection refused, ejected for 30s\""
    );
    let deadline = Instant::now() + IO_TIMEOUT;
    while !get(proxy.admin_addr(), "/status/history").1.contains(&down) {
        assert!(
            Instant::now() < deadline,
            "no ejection in the history: {}",
            get(proxy.admin_addr(), "/status/history").1
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Back: the health check brings it up, ramping for the pool's slow_start.
    dummies.restart(0);
    let deadline = Instant::now() + IO_TIMEOUT;
    let left = loop {
        let (_, status) = get(proxy.admin_addr(), "/status");
        let left = status
            .split("\"slow_start_left_ms\":")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(left) = left {
            assert!(status.contains("\"up\":true"), "{status}");
            break left;
        }
        assert!(Instant::now() < deadline, "never in slow start: {status}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(left > 3_500_000 && left <= 3_600_000, "{left} ms left");

    // The history has the pool's 5xx and both changes; `since` keeps only what is newer.
    let back =
        format!("\"pool\":\"web\",{address},\"state\":\"slow_start\",\"by\":\"health_check\"");
    let deadline = Instant::now() + IO_TIMEOUT;
    let history = loop {
        let (code, history) = get(proxy.admin_addr(), "/status/history");
        assert_eq!(code, 200, "{history}");
        if history.contains(&down) && history.contains(&back) {
            break history;
        }
        assert!(Instant::now() < deadline, "changes missing: {history}");
        std::thread::sleep(Duration::from_millis(50));
    };
    // However many buckets the seconds fell into (the first ends at the next 10 s mark).
    let pool = history
        .split("{\"name\":\"web\",")
        .nth(1)
        .unwrap_or_else(|| panic!("no pool web: {history}"));
    let local_5xx: u64 = pool
        .split("\"local_5xx\":[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no local_5xx: {history}"))
        .split(',')
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum();
    assert_eq!(local_5xx, 3, "{history}");
    let later = format!("/status/history?since={}", unix_ms() + 3_600_000);
    let (code, none) = get(proxy.admin_addr(), &later);
    assert_eq!(code, 200);
    assert!(none.contains("\"events\":[]"), "{none}");
    assert_eq!(get(proxy.admin_addr(), "/status/history?since=soon").0, 400);
}

/// Now, in Unix milliseconds.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
