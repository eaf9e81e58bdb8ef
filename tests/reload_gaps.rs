//! What a reload changes reaches everything it names: `upstream_max_requests` on the workers'
//! pooled connections, a raised `max_head` on connections kept alive from before, and
//! upstreams a reload removes are freed once drained, so that addresses may come and go for
//! the life of the process.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn upstream_max_requests_follows_a_reload() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let dir = TempDir::new();
    let file = |max: u32| {
        format!(
            "upstream_max_requests = {max}\n[pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n",
            backend.port()
        )
    };
    let path = dir.write("goround.toml", &file(1000));
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&["--config", &path_arg, "--workers", "1"]);
    let mut c = ResponseReader::connect(proxy.addr());
    for _ in 0..6 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response("GET").status, 200);
    }
    // (The TCP health check's connections carry no request.)
    assert_eq!(backend.used_connections(), 1, "one pooled connection");
    std::fs::write(&path, file(2)).expect("write");
    proxy.reload().expect("the new file is taken");
    for _ in 0..6 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response("GET").status, 200);
    }
    // The connection from before the reload had served 6 already: it closes after its next
    // request; then 2 requests per connection.
    assert_eq!(
        backend.used_connections(),
        1 + 3,
        "2 requests per connection now"
    );
}

#[test]
fn a_raised_max_head_reaches_connections_kept_alive_from_before() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let dir = TempDir::new();
    let file = |max_head: &str| {
        format!(
            "max_head = \"{max_head}\"\nclient_header_timeout = \"3s\"\n\
             [pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n",
            backend.port()
        )
    };
    let path = dir.write("goround.toml", &file("64KiB"));
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&["--config", &path_arg, "--workers", "1"]);
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    std::fs::write(&path, file("256KiB")).expect("write");
    proxy.reload().expect("the new file is taken");
    // A 150 KB head: over the old limit, within the new one.
    let field = format!("\r\nX-Big: {}\r\n", "b".repeat(150_000));
    let big = format!("GET /big HTTP/1.1\r\nHost: t{field}\r\n");
    c.send(big.as_bytes());
    let r = c.read_response("GET");
    assert_eq!(r.status, 200, "{}", show(&r.raw[..r.raw.len().min(200)]));
    let got = backend.wait_requests(2, IO_TIMEOUT);
    assert!(
        find(&got[1], field.as_bytes()).is_some(),
        "forwarded whole: {} bytes",
        got[1].len()
    );
}

#[test]
fn upstreams_a_reload_removes_are_freed_so_addresses_can_come_and_go() {
    // 36 reloads of 2,000 new addresses each: 72,000 in the process's life, more than the
    // 65,536 the proxy holds at once.
    let dir = TempDir::new();
    let file = |round: usize| {
        let list: Vec<String> = (0..2000)
            .map(|i| {
                let n = round * 2000 + i;
                format!(
                    "\"127.1.{}.{}:{}\"",
                    n / 65536 % 250,
                    n / 256 % 256,
                    1 + n % 256
                )
            })
            .collect();
        format!(
            "health_interval = \"60s\"\n[pools.web]\nupstreams = [{}]\n",
            list.join(", ")
        )
    };
    let path = dir.write("goround.toml", &file(0));
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&["--config", &path_arg, "--workers", "2"]);
    proxy.wait_for_log("] ready", Duration::from_secs(20));
    for round in 1..36 {
        std::fs::write(&path, file(round)).expect("write");
        if let Err(verdict) = proxy.reload() {
            panic!(
                "round {round} ({} addresses so far): {verdict}",
                (round + 1) * 2000
            );
        }
    }
}
