//! HTTP health checks with rise/fall: an upstream whose `/healthz` fails `fall` times in a row
//! leaves the rotation, one that passes `rise` times comes back, and every change is logged
//! with the pool, the reason and how long the old state lasted.

mod common;

use common::*;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A backend whose `/healthz` answers the status in `health` (0: never answers) and whose
/// other paths answer `name`; it counts the checks it gets.
fn checked_backend(
    name: &'static str,
    health: Arc<AtomicU16>,
    checks: Arc<AtomicUsize>,
) -> RawBackend {
    RawBackend::start(move |req| {
        if req.starts_with(b"GET /healthz ") {
            checks.fetch_add(1, Ordering::SeqCst);
            return match health.load(Ordering::SeqCst) {
                0 => Reply::Never,
                code => Reply::Close(
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .into_bytes(),
                ),
            };
        }
        Reply::KeepAlive(ok_response(name))
    })
}

const CONFIG: &str = r#"
[pools.app]
upstreams = ["127.0.0.1:PORT_A", "127.0.0.1:PORT_B"]
[pools.app.health]
check = "http"
path = "/healthz"
expect = "200-399"
interval = "150ms"
timeout = "100ms"
rise = 2
fall = 2
"#;

fn answers(proxy: &Proxy, n: usize) -> Vec<String> {
    let mut c = ResponseReader::connect(proxy.addr());
    (0..n)
        .map(|_| {
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let r = c.read_response("GET");
            assert_eq!(r.status, 200);
            r.body_text()
        })
        .collect()
}

#[test]
fn an_http_check_takes_an_upstream_out_after_fall_failures_and_back_after_rise_passes() {
    let health_b = Arc::new(AtomicU16::new(200));
    let checks_b = Arc::new(AtomicUsize::new(0));
    let a = checked_backend(
        "a",
        Arc::new(AtomicU16::new(200)),
        Arc::new(AtomicUsize::new(0)),
    );
    let b = checked_backend("b", Arc::clone(&health_b), Arc::clone(&checks_b));
    let config = CONFIG
        .replace("PORT_A", &a.port().to_string())
        .replace("PORT_B", &b.port().to_string());
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let both = answers(&proxy, 4);
    assert!(
        both.contains(&"a".to_string()) && both.contains(&"b".to_string()),
        "{both:?}"
    );
    // The check is a GET of the path with Host set to the upstream's address. (Not always
    // b's first request: on a loaded machine the first check can time out, and a proxied GET
    // reach b before the next one.)
    let deadline = Instant::now() + IO_TIMEOUT;
    let req = loop {
        let got = b.requests();
        if let Some(check) = got.iter().find(|r| r.starts_with(b"GET /healthz ")) {
            break check.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no check reached b; it got {:?}",
            got.iter().map(|r| show(r)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let want = format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", b.port());
    assert!(req.starts_with(want.as_bytes()), "{}", show(&req));

    // B starts failing: after two failures in a row it is out.
    let mark = proxy.log_mark();
    let failing_since = checks_b.load(Ordering::SeqCst);
    health_b.store(500, Ordering::SeqCst);
    let line = proxy.wait_for_log_since(
        mark,
        &format!("127.0.0.1:{}) in pool app is down: health check: HTTP 500 (expected 200-399) (2 failures in a row) (was up", b.port()),
        LOG_TIMEOUT,
    );
    assert!(line.contains("INFO"), "{line}");
    assert!(
        checks_b.load(Ordering::SeqCst) >= failing_since + 2,
        "fall = 2: two checks at least"
    );
    assert_eq!(answers(&proxy, 6), vec!["a"; 6]);

    // B answers again: back after two passes.
    let mark = proxy.log_mark();
    health_b.store(204, Ordering::SeqCst);
    proxy.wait_for_log_since(
        mark,
        &format!(
            "127.0.0.1:{}) in pool app is up: health check: HTTP 204 (2 passes in a row) (was down",
            b.port()
        ),
        LOG_TIMEOUT,
    );
    let back = answers(&proxy, 4);
    assert_eq!(back.iter().filter(|x| *x == "b").count(), 2, "{back:?}");
}

#[test]
fn a_check_that_times_out_fails_and_never_two_run_at_once() {
    let health = Arc::new(AtomicU16::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let a = checked_backend(
        "a",
        Arc::new(AtomicU16::new(200)),
        Arc::new(AtomicUsize::new(0)),
    );
    let b = checked_backend("b", Arc::clone(&health), Arc::clone(&checks));
    let config = CONFIG
        .replace("PORT_A", &a.port().to_string())
        .replace("PORT_B", &b.port().to_string());
    let started = Instant::now();
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    proxy.wait_for_log(
        &format!(
            "127.0.0.1:{}) in pool app is down: health check: timed out (2 failures in a row)",
            b.port()
        ),
        LOG_TIMEOUT,
    );
    // Each check waits its 100 ms timeout within a 150 ms interval: one at a time, so the
    // backend never holds more open check connections than the checks started.
    let elapsed = started.elapsed();
    let per_interval = elapsed.as_millis() as usize / 150 + 2;
    assert!(
        checks.load(Ordering::SeqCst) <= per_interval,
        "{} checks in {elapsed:?}",
        checks.load(Ordering::SeqCst)
    );
    assert_eq!(answers(&proxy, 3), vec!["a"; 3]);
    let _ = Duration::ZERO;
}
