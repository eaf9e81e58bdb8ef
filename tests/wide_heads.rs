//! Health checks and the admin listener read heads of up to `max_fields` fields, as the
//! proxy's own parsers do.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// A head with `n` extra field lines.
fn fields(n: usize) -> String {
    (0..n).map(|i| format!("X-Field-{i}: {i}\r\n")).collect()
}

#[test]
fn a_health_check_answer_with_eighty_fields_passes() {
    let extra = fields(80);
    let backend = RawBackend::start(move |req| {
        if req.starts_with(b"GET /healthz ") {
            return Reply::Close(
                format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
                    .into_bytes(),
            );
        }
        Reply::KeepAlive(ok_response("ok"))
    });
    let config = format!(
        "[pools.app]\nupstreams = [\"127.0.0.1:{}\"]\n[pools.app.health]\ncheck = \"http\"\n\
         path = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"500ms\"\nfall = 1\n",
        backend.port()
    );
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        assert_eq!(get(proxy.addr(), "/").0, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !proxy.has_logged(&format!(
            "127.0.0.1:{}) in pool app is down",
            backend.port()
        )),
        "{:?}",
        proxy.logs()
    );
}

#[test]
fn the_admin_listener_reads_heads_of_eighty_fields() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--admin", "127.0.0.1:0"]);
    let reply = send_raw(
        proxy.admin_addr(),
        format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{}\r\n", fields(80)).as_bytes(),
    );
    assert!(reply.starts_with(b"HTTP/1.1 200 "), "{}", show(&reply));
}
