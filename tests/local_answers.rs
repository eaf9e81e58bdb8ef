//! `goround_local_responses_total` lists exactly the statuses the proxy answers itself, and
//! each of them moves when the proxy gives that answer.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn every_local_answer_is_counted_under_its_own_code_and_no_other_code_is_listed() {
    let ok = RawBackend::fixed(&ok_response("ok"));
    let garbled = RawBackend::fixed(b"NOT HTTP\r\n\r\n");
    let silent = RawBackend::start(|_| Reply::Never);
    let config = format!(
        "read_timeout = \"300ms\"\nclient_header_timeout = \"300ms\"\n\
         [client_limits]\nrequests_per_second = 1\n\
         [pools.ok]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [pools.garbled]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [pools.silent]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [pools.dead]\nupstreams = [\"127.0.0.1:{}\"]\n\
         [[routes]]\nhost = \"ok\"\npool = \"ok\"\n\
         [[routes]]\nhost = \"garbled\"\npool = \"garbled\"\n\
         [[routes]]\nhost = \"silent\"\npool = \"silent\"\n\
         [[routes]]\nhost = \"dead\"\npool = \"dead\"\n",
        ok.port(),
        garbled.port(),
        silent.port(),
        free_port()
    );
    let (proxy, _dir) = Proxy::with_config(&config, &["--admin", "127.0.0.1:0"]);
    let addr = proxy.addr();
    // Each client comes from its own address: the rate of one request per second is per client.
    let mut from = 1;
    let mut ask = |request: &[u8], want: u16| {
        from += 1;
        let reply = send_from(addr, &format!("127.0.9.{from}"), request);
        assert!(
            reply.starts_with(format!("HTTP/1.1 {want} ").as_bytes()),
            "want {want}: {}",
            show(&reply)
        );
    };
    ask(b"GET / HTTP/1.1\r\n\r\n", 400);
    ask(
        b"GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: close\r\n\r\n",
        404,
    );
    ask(b"CONNECT ok:443 HTTP/1.1\r\nHost: ok\r\n\r\n", 405);
    ask(b"GET / HTTP/1.1\r\nHost: ok\r\n", 408);
    let long = format!("GET /{} HTTP/1.1\r\nHost: ok\r\n\r\n", "u".repeat(9000));
    ask(long.as_bytes(), 414);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: ok\r\nX-Big: {}\r\n\r\n",
        "h".repeat(40_000)
    );
    ask(huge.as_bytes(), 431);
    ask(
        b"POST / HTTP/1.1\r\nHost: ok\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    );
    ask(b"GET / HTTP/2.0\r\nHost: ok\r\n\r\n", 505);
    ask(
        b"GET / HTTP/1.1\r\nHost: garbled\r\nConnection: close\r\n\r\n",
        502,
    );
    ask(
        b"GET / HTTP/1.1\r\nHost: silent\r\nConnection: close\r\n\r\n",
        504,
    );
    ask(
        b"GET / HTTP/1.1\r\nHost: dead\r\nConnection: close\r\n\r\n",
        503,
    );
    // Two requests from one client within a second: the second is over the rate.
    let mut c = ResponseReader::new(connect_from("127.0.9.200", addr));
    c.send(b"GET / HTTP/1.1\r\nHost: ok\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    c.send(b"GET / HTTP/1.1\r\nHost: ok\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 429);
    std::thread::sleep(Duration::from_millis(50));

    let (_, metrics) = get(proxy.admin_addr(), "/metrics");
    let listed: Vec<(u16, u64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("goround_local_responses_total{code=\""))
        .filter_map(|l| {
            let (code, rest) = l.split_once("\"} ")?;
            Some((code.parse().ok()?, rest.parse().ok()?))
        })
        .collect();
    // 308 and 421 are answers of the HTTPS listener only (tests/tls.rs counts them there), 200
    // ACME's http-01 tokens (tests/acme.rs).
    let want: Vec<(u16, u64)> = [
        200, 308, 400, 404, 405, 408, 414, 421, 429, 431, 501, 502, 503, 504, 505,
    ]
    .into_iter()
    .map(|c| (c, u64::from(c != 200 && c != 308 && c != 421)))
    .collect();
    assert_eq!(listed, want, "{metrics}");
}

/// Send `request` from `from` and read to the close.
fn send_from(addr: std::net::SocketAddr, from: &str, request: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut s = connect_from(from, addr);
    let _ = s.write_all(request);
    read_to_close(&mut s)
}
