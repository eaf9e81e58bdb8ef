//! The PROXY protocol, both ways. In (`proxy_protocol`): the header's client is the client for
//! X-Forwarded-For, the access log and the rate limits; `LOCAL` keeps the socket's address; a
//! missing or broken header, or a source outside `proxy_protocol_from`, gets the connection
//! closed with nothing sent upstream. Out (`send_proxy`): every upstream connection starts with
//! the header naming its client, health checks send a `LOCAL`/`UNKNOWN` one, and a connection
//! is reused only for the client connection its header names.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value of `name` in a raw request head.
fn field<'a>(request: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(request).ok()?;
    text.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut h = SIG.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

#[test]
fn the_header_names_the_client_for_forwarding_logs_and_limits() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let config = format!(
        "proxy_protocol = true\nworkers = 1\n\
         [access_log]\npath = \"{}\"\n\
         [client_limits]\nrequests_per_second = 1\nburst = 0\n\
         [pools.p]\nupstreams = [\"127.0.0.1:{}\"]\n",
        log.display(),
        backend.port()
    );
    let (proxy, _config_dir) = Proxy::with_config(&config, &[]);

    // v1, TCP4: forwarded for the header's client; its second request is over its own limit.
    let mut a = ResponseReader::connect(proxy.addr());
    a.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(a.read_response("GET").status, 200);
    a.send(b"GET /a2 HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(a.read_response("GET").status, 429);

    // v2, TCP6 (with a TLV after the addresses): another client, its own budget.
    let mut v2 = SIG.to_vec();
    v2.extend_from_slice(&[0x21, 0x21, 0, 36 + 7]);
    v2.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    v2.extend_from_slice(&[0xdc, 0x04, 0x01, 0xbb]);
    v2.extend_from_slice(&[0x04, 0x00, 0x04, b'n', b'o', b'o', b'p']);
    let mut b = ResponseReader::connect(proxy.addr());
    b.send(&v2);
    b.send(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(b.read_response("GET").status, 200);

    // v2 LOCAL (the layer-4 tier's own check): the socket's address stands.
    let mut local = SIG.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(&local);
    c.send(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);

    let got = backend.wait_requests(3, IO_TIMEOUT);
    assert_eq!(got.len(), 3, "the 429 never went upstream");
    let xff: Vec<Option<&str>> = got.iter().map(|r| field(r, "X-Forwarded-For")).collect();
    assert_eq!(
        xff,
        [Some("203.0.113.7"), Some("2001:db8::7"), Some("127.0.0.1")]
    );
    for r in &got {
        assert!(
            !r.starts_with(b"PROXY") && !r.starts_with(SIG),
            "{}",
            show(r)
        );
    }
    let lines = wait_file_lines(&log, 4);
    let clients: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let client = l.split(' ').next().unwrap_or("");
            let request = l.split('"').nth(1).unwrap_or("");
            (client, request)
        })
        .collect();
    assert_eq!(
        clients,
        [
            ("203.0.113.7", "GET /a HTTP/1.1"),
            ("203.0.113.7", "GET /a2 HTTP/1.1"),
            ("2001:db8::7", "GET /b HTTP/1.1"),
            ("127.0.0.1", "GET /c HTTP/1.1"),
        ]
    );
    assert!(lines[1].contains("\" 429 "), "{}", lines[1]);
}

#[test]
fn without_a_valid_header_the_connection_closes_and_nothing_goes_upstream() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--proxy-protocol"]);
    let get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    let with = |head: &[u8]| [head, &get[..]].concat();
    let mut bad_version = v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    bad_version[12] = 0x11;
    let mut short_v2 = v2_tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    short_v2[15] = 8;
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("no header", get.clone()),
        (
            "v1 without ports",
            with(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
        ),
        (
            "v1 port out of range",
            with(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"),
        ),
        ("v1 bare LF", with(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n")),
        ("v1 family mismatch", with(b"PROXY TCP4 ::1 ::1 1 2\r\n")),
        (
            "v1 too long",
            with(&[&b"PROXY TCP4 "[..], &[b'1'; 120], b"\r\n"].concat()),
        ),
        ("v2 version 1", with(&bad_version)),
        ("v2 addresses short", with(&short_v2)),
        ("cut short", b"PROXY TCP4 1.2.3.4".to_vec()),
    ];
    for (what, bytes) in inputs {
        let mut s = connect(proxy.addr());
        s.write_all(&bytes).expect("write");
        // The cut-short header only ends at our EOF.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let answer = read_to_close(&mut s);
        assert_eq!(show(&answer), "", "{what}: closed without an answer");
    }
    // A good header on the same proxy works, so the closes above were the headers' doing.
    let mut ok = ResponseReader::connect(proxy.addr());
    ok.send(&with(b"PROXY TCP4 198.51.100.1 127.0.0.1 1000 80\r\n"));
    assert_eq!(ok.read_response("GET").status, 200);
    let got = backend.wait_requests(1, IO_TIMEOUT);
    assert_eq!(got.len(), 1, "only the good one reached the upstream");
    assert_eq!(field(&got[0], "X-Forwarded-For"), Some("198.51.100.1"));
}

#[test]
fn only_sources_in_proxy_protocol_from_may_connect() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(
        &[backend.port()],
        &[
            "--proxy-protocol",
            "--proxy-protocol-from",
            "10.0.0.0/8,127.0.0.2/32",
        ],
    );
    let request = b"PROXY TCP4 198.51.100.9 127.0.0.1 1000 80\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut outsider = connect_from("127.0.0.1", proxy.addr());
    let _ = outsider.write_all(request);
    assert_eq!(
        show(&read_to_close(&mut outsider)),
        "",
        "127.0.0.1 is not listed"
    );
    let mut tier = ResponseReader::new(connect_from("127.0.0.2", proxy.addr()));
    tier.send(request);
    assert_eq!(tier.read_response("GET").status, 200);
    let got = backend.wait_requests(1, IO_TIMEOUT);
    assert_eq!(got.len(), 1);
    assert_eq!(field(&got[0], "X-Forwarded-For"), Some("198.51.100.9"));
}

// ---------------------------------------------------------------------------------------------
// send_proxy
// ---------------------------------------------------------------------------------------------

/// What one connection to a [`HeaderBackend`] carried: its PROXY header, then request heads.
#[derive(Debug, Clone, Default)]
struct Carried {
    header: Vec<u8>,
    requests: Vec<String>,
}

/// A backend that expects a PROXY header (v1 or v2) at the start of every connection, as nginx
/// with `listen … proxy_protocol` does, and answers each GET head with 200 `ok`. It reads the
/// header by the specification's framing only (no shared parser with the proxy).
struct HeaderBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Carried>>>,
}

impl HeaderBackend {
    fn start() -> HeaderBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Carried>>> = Arc::default();
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let idx = {
                    let mut all = record.lock().unwrap();
                    all.push(Carried::default());
                    all.len() - 1
                };
                let record = Arc::clone(&record);
                thread::spawn(move || serve_with_header(stream, idx, &record));
            }
        });
        HeaderBackend { addr, seen }
    }

    /// The connections that carried at least one request, once there are `n` requests in all.
    fn wait(&self, n: usize) -> Vec<Carried> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let all = self.seen.lock().unwrap().clone();
            if all.iter().map(|c| c.requests.len()).sum::<usize>() >= n {
                return all.into_iter().filter(|c| !c.requests.is_empty()).collect();
            }
            assert!(Instant::now() < deadline, "{n} requests wanted: {all:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve_with_header(mut stream: TcpStream, idx: usize, record: &Mutex<Vec<Carried>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut header_len = None;
    loop {
        if header_len.is_none() {
            if buf.starts_with(b"PROXY ") {
                header_len = find(&buf, b"\r\n").map(|i| i + 2);
            } else if buf.len() >= 16 && buf.starts_with(SIG) {
                header_len = Some(16 + usize::from(u16::from_be_bytes([buf[14], buf[15]])));
            } else if buf.len() >= 16 {
                return; // No header: refuse, as nginx does.
            }
            if let Some(len) = header_len {
                if buf.len() < len {
                    header_len = None;
                } else {
                    record.lock().unwrap()[idx].header = buf.drain(..len).collect();
                }
            }
        }
        if header_len.is_some() {
            while let Some(end) = find(&buf, b"\r\n\r\n") {
                let head: Vec<u8> = buf.drain(..end + 4).collect();
                record.lock().unwrap()[idx]
                    .requests
                    .push(String::from_utf8_lossy(&head).into_owned());
                if stream.write_all(&ok_response("ok")).is_err() {
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn send_proxy_names_each_client_and_keeps_its_connection_to_it() {
    let v1 = HeaderBackend::start();
    let v2 = HeaderBackend::start();
    let config = format!(
        "workers = 1\n[pools.one]\nupstreams = [\"{}\"]\nsend_proxy = \"v1\"\n\
         [pools.one.health]\ncheck = \"http\"\npath = \"/healthz\"\ninterval = \"60s\"\n\
         [pools.two]\nupstreams = [\"{}\"]\nsend_proxy = \"v2\"\n\
         [pools.two.health]\ncheck = \"http\"\npath = \"/healthz\"\ninterval = \"60s\"\n\
         [[routes]]\npath = \"/two\"\npool = \"two\"\n\
         [[routes]]\npool = \"one\"\n",
        v1.addr, v2.addr
    );
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let port = proxy.addr().port();

    // The health checks say LOCAL / UNKNOWN: the upstream keeps the check's own address.
    let checks = v1.wait(1);
    assert_eq!(text(&checks[0].header), "PROXY UNKNOWN\r\n");
    assert!(checks[0].requests[0].starts_with("GET /healthz HTTP/1.1\r\n"));
    let checks = v2.wait(1);
    assert_eq!(checks[0].header, [SIG, &[0x20, 0, 0, 0][..]].concat());

    // Two requests from 127.0.0.2 on one connection: one upstream connection, one header.
    let first = connect_from("127.0.0.2", proxy.addr());
    let first_port = first.local_addr().expect("local").port();
    let mut first = ResponseReader::new(first);
    for path in ["/a", "/b"] {
        first.send(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        assert_eq!(first.read_response("GET").status, 200);
    }
    // Another client (127.0.0.1) gets a connection of its own; a second connection from
    // 127.0.0.2 reuses the first client's (its header names the same address).
    let mut other = ResponseReader::new(connect_from("127.0.0.1", proxy.addr()));
    other.send(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(other.read_response("GET").status, 200);
    let mut again = ResponseReader::new(connect_from("127.0.0.2", proxy.addr()));
    again.send(b"GET /d HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(again.read_response("GET").status, 200);

    let conns = v1.wait(1 + 4);
    let data: Vec<(String, Vec<&str>)> = conns[1..]
        .iter()
        .map(|c| {
            let lines = c
                .requests
                .iter()
                .map(|r| r.split("\r\n").next().unwrap_or(""));
            (text(&c.header), lines.collect())
        })
        .collect();
    let other_port = other.stream().local_addr().expect("local").port();
    assert_eq!(
        data,
        [
            (
                format!("PROXY TCP4 127.0.0.2 127.0.0.1 {first_port} {port}\r\n"),
                vec!["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /d HTTP/1.1"]
            ),
            (
                format!("PROXY TCP4 127.0.0.1 127.0.0.1 {other_port} {port}\r\n"),
                vec!["GET /c HTTP/1.1"]
            ),
        ]
    );

    // v2: the binary header, exact.
    first.send(b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(first.read_response("GET").status, 200);
    let conns = v2.wait(2);
    assert_eq!(
        conns[1].header,
        v2_tcp4([127, 0, 0, 2], [127, 0, 0, 1], first_port, port)
    );
    assert_eq!(conns[1].requests.len(), 1);
}

#[test]
fn a_header_received_is_the_header_sent() {
    let backend = HeaderBackend::start();
    let config = format!(
        "proxy_protocol = true\n[pools.p]\nupstreams = [\"{}\"]\nsend_proxy = \"v1\"\n",
        backend.addr
    );
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    let conns = backend.wait(1);
    // The client is the header's; the destination the proxy's own address (as IPv4-mapped
    // IPv6, since the two must be of one family).
    assert_eq!(
        text(&conns[0].header),
        format!(
            "PROXY TCP6 2001:db8::7 ::ffff:127.0.0.1 56324 {}\r\n",
            proxy.addr().port()
        )
    );
    assert_eq!(
        field(conns[0].requests[0].as_bytes(), "X-Forwarded-For"),
        Some("2001:db8::7")
    );
}

#[test]
fn a_header_that_stalls_is_closed_at_the_client_header_timeout() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(
        &[backend.port()],
        &["--proxy-protocol", "--client-header-timeout", "300ms"],
    );
    let mut s = connect(proxy.addr());
    s.write_all(b"PROXY TCP4 198.51.100.1 ").expect("write");
    let start = Instant::now();
    assert_eq!(show(&read_to_close(&mut s)), "");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert!(backend.requests().is_empty());
}

#[test]
fn a_proxy_v1_line_with_its_cr_as_107th_byte_is_refused_at_once() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--proxy-protocol"]);
    // "PROXY TCP4 1.2.3.4 5.6.7.8 1 2" with zeros padding the source port to 106 bytes, then
    // CR: the LF would be the 108th byte, past the 107 the protocol allows.
    let mut line = b"PROXY TCP4 1.2.3.4 5.6.7.8 ".to_vec();
    let pad = 107 - line.len() - b"1 2\r".len();
    line.extend(std::iter::repeat_n(b'0', pad));
    line.extend_from_slice(b"1 2\r");
    assert_eq!(line.len(), 107);
    assert_eq!(line[106], b'\r');
    let mut stream = connect(proxy.addr());
    stream.write_all(&line).expect("send");
    let started = Instant::now();
    assert_eq!(read_to_close(&mut stream), b"");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed only after {:?}",
        started.elapsed()
    );
    assert!(backend.requests().is_empty(), "nothing went upstream");
}
