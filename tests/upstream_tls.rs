//! TLS to upstreams (`tls = true` on a pool): requests reach a TLS backend over pooled
//! keep-alive connections (one handshake for many requests), verified against `tls_ca` and the
//! name `tls_server_name` (or the upstream's host) names; a certificate that does not verify
//! is a failed connect that takes the upstream down with its reason, for requests and health
//! checks alike; `tls_verify = false` serves anyway and warns.

mod common;

use common::*;
use std::time::Duration;

/// A proxy whose pool `api` reaches `backend` over TLS with the pool settings `tls`.
fn proxy_for(port: u16, upstream_host: &str, tls: &str, health: &str) -> (Proxy, TempDir) {
    let (proxy, dir) = Proxy::with_config(
        &format!(
            "health_interval = \"1h\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [pools.api]\nupstreams = [\"{upstream_host}:{port}\"]\ntls = true\n{tls}\n{health}\n"
        ),
        &[],
    );
    // Ready once the first health check is done: its connection comes before any request's.
    proxy.wait_for_log("start] ready", LOG_TIMEOUT);
    (proxy, dir)
}

/// `n` requests on one keep-alive client connection: their statuses and bodies.
fn requests(proxy: &Proxy, n: usize) -> Vec<(u16, String)> {
    let mut c = ResponseReader::connect(proxy.addr());
    (0..n)
        .map(|i| {
            c.send(format!("GET /r{i} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes());
            let r = c.read_response("GET");
            (r.status, r.body_text())
        })
        .collect()
}

#[test]
fn requests_go_over_one_pooled_tls_connection_verified_against_the_pool_ca() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let backend = TlsBackend::start(&ca.issue(&["backend.test"], 365), "over tls");
    let ca_file = dir.write("ca.pem", &ca.pem());
    let (proxy, _d) = proxy_for(
        backend.port(),
        "127.0.0.1",
        &format!(
            "tls_server_name = \"backend.test\"\ntls_ca = \"{}\"",
            ca_file.display()
        ),
        "",
    );
    let got = requests(&proxy, 20);
    assert!(
        got.iter().all(|(s, b)| *s == 200 && b == "over tls"),
        "{got:?}"
    );
    // A second client connection: the idle upstream connection serves it too.
    assert_eq!(requests(&proxy, 1), [(200, "over tls".to_string())]);
    // The first health check's handshake (a TCP check on a TLS pool makes one), then one
    // connection for all the requests; both with the configured name as SNI.
    assert_eq!(
        backend.connections(),
        [
            Some("backend.test".to_string()),
            Some("backend.test".to_string())
        ]
    );
    assert_eq!(backend.requests_per_connection(), [0, 21]);
    let heads = backend.requests();
    assert_eq!(heads.len(), 21);
    assert!(
        heads[0].starts_with("GET /r0 HTTP/1.1\r\nHost: app.test\r\n"),
        "{}",
        heads[0]
    );
}

#[test]
fn the_upstream_host_is_the_name_verified_when_no_server_name_is_set() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let backend = TlsBackend::start(&ca.issue(&["localhost"], 365), "by host");
    let ca_file = dir.write("ca.pem", &ca.pem());
    let (proxy, _d) = proxy_for(
        backend.port(),
        "localhost",
        &format!("tls_ca = \"{}\"", ca_file.display()),
        "",
    );
    assert_eq!(requests(&proxy, 2), vec![(200, "by host".to_string()); 2]);
    assert_eq!(
        backend.connections(),
        [Some("localhost".to_string()), Some("localhost".to_string())]
    );
}

/// Health settings under which one failed check does not take an upstream down.
const FALL_TWO: &str = "[pools.api.health]\nfall = 2";

#[test]
fn a_certificate_that_does_not_verify_is_a_failed_connect_with_its_reason() {
    let ca = TestCa::new();
    let other_ca = TestCa::new();
    let dir = TempDir::new();
    let wrong_name = TlsBackend::start(&ca.issue(&["wrong.test"], 365), "x");
    let ca_file = dir.write("ca.pem", &ca.pem());
    let (proxy, _d) = proxy_for(
        wrong_name.port(),
        "127.0.0.1",
        &format!(
            "tls_server_name = \"backend.test\"\ntls_ca = \"{}\"",
            ca_file.display()
        ),
        // The first health check, which makes the same handshake, must not take the
        // upstream down before the request does: it takes two failed checks.
        FALL_TWO,
    );
    assert_eq!(requests(&proxy, 1)[0].0, 503, "its only upstream went down");
    let line = proxy.wait_for_log("TLS handshake with 127.0.0.1:", LOG_TIMEOUT);
    assert!(line.contains("failed: invalid peer certificate"), "{line}");
    assert!(line.contains(" WARN "), "{line}");
    let down = proxy.wait_for_log("is down", LOG_TIMEOUT);
    assert!(down.contains("TLS: invalid peer certificate"), "{down}");
    let m = scrape(proxy.admin_addr());
    assert!(
        m.contains(&format!(
            "goround_upstream_connect_failures_total{{pool=\"api\",upstream=\"127.0.0.1:{}\"}} 1",
            wrong_name.port()
        )),
        "{m}"
    );
    assert!(wrong_name.requests().is_empty(), "nothing was sent");

    // A certificate from a CA the pool does not trust.
    let untrusted = TlsBackend::start(&other_ca.issue(&["backend.test"], 365), "x");
    let (proxy, _d) = proxy_for(
        untrusted.port(),
        "127.0.0.1",
        &format!(
            "tls_server_name = \"backend.test\"\ntls_ca = \"{}\"",
            ca_file.display()
        ),
        FALL_TWO,
    );
    assert_eq!(requests(&proxy, 1)[0].0, 503);
    let line = proxy.wait_for_log("TLS handshake with", LOG_TIMEOUT);
    assert!(line.contains("UnknownIssuer"), "{line}");
}

#[test]
fn tls_verify_false_serves_any_certificate_and_warns() {
    let ca = TestCa::new();
    let backend = TlsBackend::start(&ca.issue(&["whatever.test"], 365), "unverified");
    let (proxy, _d) = proxy_for(backend.port(), "127.0.0.1", "tls_verify = false", "");
    let line = proxy.wait_for_log("tls_verify = false", LOG_TIMEOUT);
    assert!(
        line.contains(" WARN ") && line.contains("pool 'api'"),
        "{line}"
    );
    assert_eq!(
        requests(&proxy, 3),
        vec![(200, "unverified".to_string()); 3]
    );
}

#[test]
fn health_checks_make_the_handshake_and_verify() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let ca_file = dir.write("ca.pem", &ca.pem());
    let tls = format!(
        "tls_server_name = \"backend.test\"\ntls_ca = \"{}\"",
        ca_file.display()
    );
    let http_check =
        "[pools.api.health]\ncheck = \"http\"\npath = \"/healthz\"\ninterval = \"200ms\"";
    // A good backend: the HTTP check passes over TLS.
    let good = TlsBackend::start(&ca.issue(&["backend.test"], 365), "ok");
    let (proxy, _d) = proxy_for(good.port(), "127.0.0.1", &tls, http_check);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !good
        .requests()
        .iter()
        .any(|h| h.starts_with("GET /healthz "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no check reached the backend"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, status) = get(proxy.admin_addr(), "/status");
    assert!(status.contains("\"detail\":\"HTTP 200\""), "{status}");
    // A backend whose certificate names another host: the checks fail and say why.
    let bad = TlsBackend::start(&ca.issue(&["other.test"], 365), "bad");
    let (proxy, _d) = proxy_for(bad.port(), "127.0.0.1", &tls, http_check);
    proxy.wait_for_log(&format!("upstream 127.0.0.1:{}", bad.port()), LOG_TIMEOUT);
    let (_, status) = get(proxy.admin_addr(), "/status");
    assert!(status.contains("\"up\":false"), "{status}");
    assert!(status.contains("TLS: invalid peer certificate"), "{status}");
    assert!(bad.requests().is_empty());
    // A plain HTTP backend on a TLS pool: the TCP check's handshake fails.
    let plain = RawBackend::fixed(&ok_response("plain"));
    let (proxy, _d) = proxy_for(plain.port(), "127.0.0.1", &tls, "");
    proxy.wait_for_log(&format!("upstream 127.0.0.1:{}", plain.port()), LOG_TIMEOUT);
    let (_, status) = get(proxy.admin_addr(), "/status");
    assert!(status.contains("\"up\":false"), "{status}");
}

#[test]
fn the_pool_settings_are_checked() {
    let dir = TempDir::new();
    let run = |pool: &str| {
        let path = dir.write(
            "t.toml",
            &format!("[pools.api]\nupstreams = [\"127.0.0.1:9\"]\n{pool}\n"),
        );
        let out = Proxy::run(&["--config", &path.to_string_lossy(), "--check"]);
        (out.status.code(), out.stderr.join("\n"), path)
    };
    let (code, err, path) = run("tls_ca = \"/nowhere/ca.pem\"");
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "{}:3:10: tls_ca needs tls = true in this pool",
            path.display()
        )),
        "{err}"
    );
    let (code, err, _) = run("tls = true\ntls_ca = \"/nowhere/ca.pem\"");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("pool 'api': /nowhere/ca.pem: cannot read"),
        "{err}"
    );
    let (code, err, path) = run("tls = true\ntls_server_name = \"not a name\"");
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "{}:4:19: tls_server_name: 'not a name'",
            path.display()
        )),
        "{err}"
    );
    let (code, err, path) = run("tls = true\ntls_verify = false");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{}:4:14: pool 'api': tls_verify = false",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn large_bodies_cross_tls_on_both_sides_byte_exact() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let backend = TlsBackend::start(&ca.issue(&["backend.test"], 365), "ok");
    let (cert, key) = ca.issue(&["front.test"], 365).write(&dir, "front");
    let ca_file = dir.write("ca.pem", &ca.pem());
    let (proxy, _d) = Proxy::with_config(
        &format!(
            "health_interval = \"1h\"\n\
             [pools.api]\nupstreams = [\"127.0.0.1:{}\"]\ntls = true\n\
             tls_server_name = \"backend.test\"\ntls_ca = \"{}\"\n\
             [tls]\nlisten = \"127.0.0.1:0\"\n\
             certificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
            backend.port(),
            ca_file.display(),
            cert.display(),
            key.display()
        ),
        &[],
    );
    let cfg = ca.client(&["http/1.1"]);
    let mut c = TlsClient::connect(proxy.https_addr(), &cfg, "front.test", true).unwrap();
    // 3 MiB up: rustls on both legs, the proxy's buffers in between.
    let body = pattern(3 << 20);
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let mut request = format!(
        "POST /up HTTP/1.1\r\nHost: front.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    c.send(&request).unwrap();
    let (head, got) = c.read_response().unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("len={} sum={sum}", body.len())
    );
    // 5 MiB down, on the same connections.
    c.send(b"GET /big/5242880 HTTP/1.1\r\nHost: front.test\r\n\r\n")
        .unwrap();
    let (head, got) = c.read_response().unwrap();
    assert_eq!(head.status, 200);
    assert_long_bytes_eq(&got, &pattern(5 << 20), "the 5 MiB body");
    assert_eq!(backend.requests_per_connection(), [0, 2]);
}
