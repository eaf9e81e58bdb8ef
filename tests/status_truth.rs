//! The status page tells what happened: an upstream a live request took down says so, apart
//! from what its last health check found, and a connect that failed is not a request it served.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn an_upstream_taken_down_by_a_live_request_says_why_and_counts_no_request() {
    let mut dummies = Dummies::start(2);
    let (a, b) = (dummies.port(0), dummies.port(1));
    let config = format!(
        "[pools.web]\nupstreams = [\"127.0.0.1:{a}\", \"127.0.0.1:{b}\"]\nretries = 1\n\
         [pools.web.health]\ninterval = \"60s\"\n"
    );
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0"]);
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    dummies.kill(1);
    // Round robin: within two requests one goes to b, is refused, and is retried on a.
    let deadline = Instant::now() + IO_TIMEOUT;
    let down = format!("upstream 127.0.0.1:{b} (127.0.0.1:{b}) in pool web is down");
    while !proxy.has_logged(&down) {
        assert!(Instant::now() < deadline, "b never went down");
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    let (_, status) = get(proxy.admin_addr(), "/status");
    let entry = status
        .split("{\"address\":")
        .find(|u| u.starts_with(&format!("\"127.0.0.1:{b}\"")))
        .unwrap_or_else(|| panic!("no entry for b in {status}"));
    assert!(entry.contains("\"up\":false"), "{entry}");
    assert!(
        entry.contains("\"requests\":0,"),
        "a failed connect is no request: {entry}"
    );
    assert!(entry.contains("\"connect_failures\":1"), "{entry}");
    assert!(
        entry.contains(
            "\"last_change\":{\"up\":false,\"by\":\"request\",\"reason\":\"connection refused, ejected for 30s\""
        ),
        "{entry}"
    );
    // The last check still says what it found, at start.
    assert!(entry.contains("\"last_check\":{\"ok\":true"), "{entry}");
    // The page without JavaScript says why it is down, apart from the last check.
    let (_, page) = get(proxy.admin_addr(), "/");
    assert!(
        page.contains("down: connection refused, ejected for 30s (live request, "),
        "{page}"
    );
    std::thread::sleep(Duration::from_millis(1));
}
