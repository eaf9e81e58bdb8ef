//! The admin listener under exposure: a flood of silent connections does not keep `/healthz`
//! from answering, a token guards the pages (never `/healthz`), and the edge settings that
//! trust a client's word say so or stop trusting it.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn healthz_answers_within_a_second_under_a_flood_of_silent_connections() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--admin", "127.0.0.1:0"]);
    let admin = proxy.admin_addr();
    let flood: Vec<_> = (0..200).map(|_| connect(admin)).collect();
    let started = Instant::now();
    let mut c = ResponseReader::connect(admin);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response("GET");
    assert_eq!(r.status, 200, "{}", show(&r.raw));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(flood);
}

#[test]
fn a_token_guards_every_admin_page_but_healthz() {
    let dummies = Dummies::start(1);
    let dir = TempDir::new();
    let token = dir.write("token", "s3cret-t0ken-0123456789\n");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n\
         [pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n",
        token.to_string_lossy(),
        dummies.port(0)
    );
    let (proxy, _cfg) = Proxy::with_config(&config, &[]);
    let admin = proxy.admin_addr();
    for path in ["/metrics", "/status", "/"] {
        let reply = send_raw(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        );
        assert!(
            reply.starts_with(b"HTTP/1.1 401 "),
            "{path}: {}",
            show(&reply)
        );
        assert!(
            find(&reply, b"\r\nWWW-Authenticate: Bearer").is_some(),
            "{}",
            show(&reply)
        );
        let wrong = send_raw(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer nope\r\n\r\n")
                .as_bytes(),
        );
        assert!(
            wrong.starts_with(b"HTTP/1.1 401 "),
            "{path}: {}",
            show(&wrong)
        );
        let right = send_raw(
            admin,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret-t0ken-0123456789\r\n\r\n")
                .as_bytes(),
        );
        assert!(
            right.starts_with(b"HTTP/1.1 200 "),
            "{path}: {}",
            show(&right)
        );
    }
    let health = send_raw(admin, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(health.starts_with(b"HTTP/1.1 200 "), "{}", show(&health));
}

#[test]
fn proxy_protocol_without_a_trusted_source_list_is_a_warning() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--proxy-protocol"]);
    let line = proxy.wait_for_log("proxy_protocol_from", LOG_TIMEOUT);
    assert!(line.contains("WARN"), "{line}");
}

#[test]
fn forwarded_for_replace_drops_the_clients_own_forwarding_fields() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--forwarded-for", "replace"]);
    let reply = send_raw(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\
          X-Real-IP: 6.6.6.6\r\nConnection: close\r\n\r\n",
    );
    assert!(reply.starts_with(b"HTTP/1.1 200 "), "{}", show(&reply));
    let got = backend.wait_requests(1, IO_TIMEOUT);
    let head = String::from_utf8_lossy(&got[0]).to_ascii_lowercase();
    assert!(!head.contains("6.6.6.6"), "{head}");
    assert!(
        head.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
}
