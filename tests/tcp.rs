//! Raw TCP mode (`[[tcp]]`), seen from outside: bytes relayed exactly both ways (an echo
//! backend, a real redis-server), each half-close passed on, a backend killed mid-stream, the
//! upstream chosen once per connection (connect retries, least_conn over open connections,
//! health checks taking an upstream out and back), TLS passed through by SNI (the client
//! verifies the backend's own certificate), refusals, idle_timeout, PROXY headers both ways,
//! client limits, the graceful stop, the access log and the counters.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What a test backend does with each connection.
#[derive(Clone, Copy)]
enum Mode {
    /// Send back every byte, and close after the client's FIN.
    Echo,
    /// Say `name\n` at once, then echo.
    Greet,
    /// Read to the client's FIN, then say how many bytes came and close.
    CountThenClose,
    /// Send `hello\n`, shut its sending side, then read to the end (recorded).
    SpeakThenListen,
}

/// A backend on an ephemeral port, one thread per connection.
struct Backend {
    addr: SocketAddr,
    /// Per connection: what it received (filled as it goes).
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    /// A second descriptor of the listening socket, to stop it.
    listener: TcpListener,
}

impl Backend {
    fn start(name: &'static str, mode: Mode) -> Backend {
        Backend::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"), name, mode)
    }

    fn start_on(l: TcpListener, name: &'static str, mode: Mode) -> Backend {
        let addr = l.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&received);
        let listener = l.try_clone().expect("clone the listener");
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let slot = {
                    let mut all = lock(&r);
                    all.push(Vec::new());
                    all.len() - 1
                };
                let r = Arc::clone(&r);
                thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    if matches!(mode, Mode::Greet) {
                        let _ = s.write_all(format!("{name}\n").as_bytes());
                    }
                    if matches!(mode, Mode::SpeakThenListen) {
                        let _ = s.write_all(b"hello\n");
                        let _ = s.shutdown(Shutdown::Write);
                    }
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut total = 0usize;
                    loop {
                        let n = match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        total += n;
                        lock(&r)[slot].extend_from_slice(&buf[..n]);
                        if matches!(mode, Mode::Echo | Mode::Greet)
                            && s.write_all(&buf[..n]).is_err()
                        {
                            break;
                        }
                    }
                    if matches!(mode, Mode::CountThenClose) {
                        let _ = s.write_all(format!("got {total} bytes\n").as_bytes());
                    }
                });
            }
        });
        Backend {
            addr,
            received,
            listener,
        }
    }

    /// Stop listening: connects are refused from now on (the accept thread ends).
    fn stop(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: shutdown(2) on a socket this struct keeps open; no memory is touched.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// What its `conn`th connection that sent anything received (health checks connect and
    /// send nothing: they are not counted).
    fn received(&self, conn: usize) -> Vec<u8> {
        lock(&self.received)
            .iter()
            .filter(|r| !r.is_empty())
            .nth(conn)
            .cloned()
            .unwrap_or_default()
    }

    /// How many of its connections sent something.
    fn talked(&self) -> usize {
        lock(&self.received)
            .iter()
            .filter(|r| !r.is_empty())
            .count()
    }
}

/// A proxy whose `[[tcp]]` listeners are `tcp` (TOML, with `{port}` replaced by a free port it
/// returns), over `pools` (TOML), with the admin listener and a JSON access log.
struct Setup {
    proxy: Proxy,
    dir: TempDir,
    port: u16,
}

impl Setup {
    fn start(pools: &str, tcp: &str) -> Setup {
        Setup::start_with(pools, tcp, "")
    }

    fn start_with(pools: &str, tcp: &str, top: &str) -> Setup {
        let port = free_port();
        let dir = TempDir::new();
        let log = dir.path().join("access.log");
        let text = format!(
            "{top}\n[admin]\nlisten = \"127.0.0.1:0\"\n[access_log]\npath = \"{}\"\nformat = \"json\"\n\n{pools}\n\n{}",
            log.display(),
            tcp.replace("{port}", &port.to_string())
        );
        let path = dir.write("goround.toml", &text);
        let path = path.to_string_lossy().into_owned();
        let proxy = Proxy::start(&["--config", &path]);
        proxy.wait_for_log("start] ready", LOG_TIMEOUT);
        Setup { proxy, dir, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).expect("connect to the TCP listener");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s
    }

    /// The access log's first `n` lines, as JSON.
    fn log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        wait_file_lines(&self.dir.path().join("access.log"), n)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = get(self.proxy.admin_addr(), "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status: {e}: {body}"))
    }

    /// Wait until `/status` says `n` TCP connections are open.
    fn wait_open(&self, n: u64) {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let s = self.status();
            if s["tcp"][0]["open"] == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "open never became {n}: {}",
                s["tcp"]
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A pool `p` over `ports` with `extra` settings.
fn pool(ports: &[u16], extra: &str) -> String {
    let ups: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!("[pools.p]\nupstreams = [{}]\n{extra}\n", ups.join(", "))
}

const TCP_P: &str = "[[tcp]]\nlisten = \"127.0.0.1:{port}\"\npool = \"p\"\n";

/// Read until the peer's FIN (or an error: `Err`).
fn read_to_end(s: &mut TcpStream) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// The proxy closes `s` (an end of stream or a reset) without a byte, well within the read
/// timeout.
#[track_caller]
fn assert_closed(s: &mut TcpStream) {
    let started = Instant::now();
    match read_to_end(s) {
        Ok(b) => assert!(b.is_empty(), "got {:?} before the close", show(&b)),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "not closed: {e}"
        ),
    }
    assert!(started.elapsed() < IO_TIMEOUT - Duration::from_secs(1));
}

/// Read exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    s.read_exact(&mut out).expect("read");
    out
}

#[test]
fn bytes_cross_exactly_both_ways_and_are_logged_and_counted() {
    let echo = Backend::start("echo", Mode::Echo);
    let setup = Setup::start(&pool(&[echo.port()], ""), TCP_P);
    let mut c = setup.connect();
    let data = pattern(3 << 20);
    let writer = {
        let mut w = c.try_clone().expect("clone");
        let data = data.clone();
        thread::spawn(move || {
            w.write_all(&data).expect("write");
            w.shutdown(Shutdown::Write).expect("shutdown");
        })
    };
    let back = read_to_end(&mut c).expect("read back");
    writer.join().expect("writer");
    assert_long_bytes_eq(&back, &data, "echoed through the relay");
    assert_long_bytes_eq(&echo.received(0), &data, "what the backend got");
    drop(c);
    let line = &setup.log_lines(1)[0];
    assert_eq!(line["mode"], "tcp", "{line}");
    assert_eq!(line["end"], "client_closed", "{line}");
    assert_eq!(line["bytes_in"], 3 << 20, "{line}");
    assert_eq!(line["bytes_out"], 3 << 20, "{line}");
    assert_eq!(line["pool"], "p", "{line}");
    assert_eq!(
        line["upstream"],
        format!("127.0.0.1:{}", echo.port()),
        "{line}"
    );
    assert_eq!(line["listener"], format!("127.0.0.1:{}", setup.port));
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["sni"], serde_json::Value::Null);
    setup.wait_open(0);
    let s = setup.status();
    assert_eq!(s["tcp"][0]["connections"], 1, "{}", s["tcp"]);
    assert_eq!(s["tcp"][0]["bytes_in"], 3 << 20);
    assert_eq!(s["tcp"][0]["bytes_out"], 3 << 20);
    assert_eq!(s["tcp"][0]["pool"], "p");
    let up = &s["pools"][0]["upstreams"][0];
    assert_eq!(up["requests"], 1, "a connection counts as one: {up}");
    assert_eq!(up["active_requests"], 0, "{up}");
    let m = metrics_text(&setup.proxy);
    let listener = format!("listener=\"127.0.0.1:{}\"", setup.port);
    for want in [
        "goround_tcp_connections 0\n".to_string(),
        format!("goround_tcp_connections_total{{{listener}}} 1\n"),
        format!(
            "goround_tcp_bytes_total{{{listener},direction=\"in\"}} {}\n",
            3 << 20
        ),
        format!(
            "goround_tcp_bytes_total{{{listener},direction=\"out\"}} {}\n",
            3 << 20
        ),
    ] {
        assert!(m.contains(&want), "no {want:?} in\n{m}");
    }
}

/// The proxy's /metrics text.
fn metrics_text(proxy: &Proxy) -> String {
    let (code, body) = get(proxy.admin_addr(), "/metrics");
    assert_eq!(code, 200);
    body
}

#[test]
fn a_clients_fin_reaches_the_backend_which_still_answers() {
    let backend = Backend::start("count", Mode::CountThenClose);
    let setup = Setup::start(&pool(&[backend.port()], ""), TCP_P);
    let mut c = setup.connect();
    c.write_all(&pattern(100_000)).expect("write");
    c.shutdown(Shutdown::Write).expect("half-close");
    // The backend saw the end of the stream (it only answers then), and its answer still came
    // back on the half that stayed open, followed by its own FIN.
    assert_eq!(read_to_end(&mut c).expect("answer"), b"got 100000 bytes\n");
    assert_eq!(setup.log_lines(1)[0]["end"], "client_closed");
}

#[test]
fn a_backends_fin_reaches_the_client_which_still_sends() {
    let backend = Backend::start("speak", Mode::SpeakThenListen);
    let setup = Setup::start(&pool(&[backend.port()], ""), TCP_P);
    let mut c = setup.connect();
    // Hello, then the backend's FIN: the client reads to the end of stream...
    let mut got = Vec::new();
    let mut chunk = [0u8; 64];
    loop {
        let n = c.read(&mut chunk).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got, b"hello\n");
    // ...and its own bytes still reach the backend afterwards.
    c.write_all(b"after the backend's FIN").expect("write");
    c.shutdown(Shutdown::Write).expect("half-close");
    let deadline = Instant::now() + IO_TIMEOUT;
    while backend.received(0) != b"after the backend's FIN" {
        assert!(
            Instant::now() < deadline,
            "backend got {:?}",
            show(&backend.received(0))
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(setup.log_lines(1)[0]["end"], "upstream_closed");
    setup.wait_open(0);
}

#[cfg_attr(
    not(goround_has_redis),
    ignore = "needs redis-server (apt-get install redis-server, then touch build.rs)"
)]
#[test]
fn redis_server_behind_a_tcp_listener() {
    let redis_port = free_port();
    let dir = TempDir::new();
    let mut cmd = std::process::Command::new(which("redis-server").expect("redis-server"));
    cmd.args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path());
    let _redis = spawn(cmd, "redis-server");
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        thread::sleep(Duration::from_millis(20));
    }
    let setup = Setup::start(&pool(&[redis_port], ""), TCP_P);
    let mut c = setup.connect();
    // 200 commands pipelined in one write, a 1 MiB value among them.
    let value = pattern(1 << 20);
    let mut out = Vec::new();
    let resp = |args: &[&[u8]], out: &mut Vec<u8>| {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    };
    for i in 0..199 {
        resp(&[b"INCR", b"counter"], &mut out);
        let _ = i;
    }
    resp(&[b"SET", b"big", &value], &mut out);
    resp(&[b"GET", b"big"], &mut out);
    c.write_all(&out).expect("write");
    let mut want = Vec::new();
    for i in 1..=199 {
        want.extend_from_slice(format!(":{i}\r\n").as_bytes());
    }
    want.extend_from_slice(b"+OK\r\n");
    want.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\n");
    let got = read_n(&mut c, want.len());
    assert_long_bytes_eq(&got, &want, "redis replies through the relay");
    // What went through is in the server: read it back without the proxy.
    let mut direct = TcpStream::connect(("127.0.0.1", redis_port)).expect("redis");
    direct.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    direct
        .write_all(b"*2\r\n$3\r\nGET\r\n$7\r\ncounter\r\n")
        .expect("write");
    assert_eq!(read_n(&mut direct, 9), b"$3\r\n199\r\n");
    // redis-cli, when there is one, through the proxy.
    if let Some(cli) = which("redis-cli") {
        let out = std::process::Command::new(cli)
            .args(["-p", &setup.port.to_string(), "GET", "counter"])
            .output()
            .expect("redis-cli");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "199\n");
    }
}

#[test]
fn a_backend_killed_mid_stream_closes_the_clients_connection() {
    // A real process streaming forever, killed while the client reads.
    let port = free_port();
    let script = [
        "import socket",
        "s = socket.socket()",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        &format!("s.bind(('127.0.0.1', {port}))"),
        "s.listen(8)",
        "print('ready', flush=True)",
        "while True:",
        "    c, _ = s.accept()",
        "    try:",
        "        while True:",
        "            c.sendall(b'x' * 65536)",
        "    except OSError:",
        "        c.close()",
    ]
    .join("\n");
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", &script]);
    let mut streamer = spawn(cmd, "python3 streamer");
    streamer
        .stdout
        .wait_for(0, "ready", STARTUP_TIMEOUT)
        .expect("streamer ready");
    let setup = Setup::start(&pool(&[port], "[pools.p.health]\ninterval = \"1h\""), TCP_P);
    let mut c = setup.connect();
    let mut got = 0usize;
    let mut chunk = vec![0u8; 65536];
    while got < 4 << 20 {
        match c.read(&mut chunk).expect("read") {
            0 => panic!("closed after {got} bytes, before the backend was killed"),
            n => got += n,
        }
    }
    streamer.child.signal(libc::SIGKILL);
    // The client reads what was under way, then the end of the stream or a reset: never a hang
    // (the read timeout is IO_TIMEOUT).
    let started = Instant::now();
    loop {
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the client's connection did not close: {e}"),
        }
    }
    assert!(started.elapsed() < IO_TIMEOUT);
    drop(c);
    setup.wait_open(0);
    let line = &setup.log_lines(1)[0];
    assert_eq!(line["end"], "upstream_closed", "{line}");
}

#[test]
fn a_failed_connect_tries_the_next_upstream_before_any_byte() {
    let live = Backend::start("live", Mode::Greet);
    let dead = free_port();
    let setup = Setup::start(
        &pool(
            &[dead, live.port()],
            "retries = 1\n[pools.p.health]\ninterval = \"1h\"",
        ),
        TCP_P,
    );
    for _ in 0..4 {
        let mut c = setup.connect();
        assert_eq!(read_n(&mut c, 5), b"live\n");
        c.write_all(b"ping").expect("write");
        assert_eq!(read_n(&mut c, 4), b"ping");
    }
    assert_eq!(live.talked(), 4);
    assert_eq!(
        live.received(0),
        b"ping",
        "no byte was lost to the failed try"
    );
}

#[test]
fn least_conn_counts_open_connections() {
    let a = Backend::start("a", Mode::Greet);
    let b = Backend::start("b", Mode::Greet);
    let setup = Setup::start(
        &pool(&[a.port(), b.port()], "strategy = \"least_conn\""),
        TCP_P,
    );
    let name = |c: &mut TcpStream| String::from_utf8(read_n(c, 2)).expect("name");
    let mut held: Vec<(String, TcpStream)> = Vec::new();
    for _ in 0..3 {
        let mut c = setup.connect();
        held.push((name(&mut c), c));
    }
    let count = |held: &[(String, TcpStream)], n: &str| held.iter().filter(|(m, _)| m == n).count();
    let fewer = if count(&held, "a\n") < count(&held, "b\n") {
        "a\n"
    } else {
        "b\n"
    };
    assert_eq!(
        count(&held, "a\n").abs_diff(count(&held, "b\n")),
        1,
        "3 open connections spread 2:1"
    );
    let mut fourth = setup.connect();
    assert_eq!(
        name(&mut fourth),
        fewer,
        "the fourth goes where fewer are open"
    );
    let s = setup.status();
    let active: Vec<u64> = s["pools"][0]["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .map(|u| u["active_requests"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(active, [2, 2], "active_requests counts open connections");
}

#[test]
fn health_checks_take_a_tcp_upstream_out_and_back() {
    let port_a = free_port();
    let a = Backend::start_on(
        TcpListener::bind(("127.0.0.1", port_a)).expect("bind a"),
        "a",
        Mode::Greet,
    );
    let b = Backend::start("b", Mode::Greet);
    let setup = Setup::start(
        &pool(
            &[port_a, b.port()],
            "[pools.p.health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nfall = 1\nrise = 1",
        ),
        TCP_P,
    );
    let names = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let mut c = setup.connect();
                String::from_utf8(read_n(&mut c, 2)).expect("name")
            })
            .collect()
    };
    let both = names(4);
    assert!(both.contains(&"a\n".to_string()) && both.contains(&"b\n".to_string()));
    // Backend a goes away (its listener closed): its checks fail and it leaves.
    let mark = setup.proxy.log_mark();
    a.stop();
    setup.proxy.wait_for_log_since(
        mark,
        &format!("upstream 127.0.0.1:{port_a} (127.0.0.1:{port_a}) in pool p is down"),
        LOG_TIMEOUT,
    );
    assert_eq!(names(4), vec!["b\n"; 4]);
    // Back on the same port: its checks bring it back.
    drop(a);
    let mark = setup.proxy.log_mark();
    let _a = Backend::start_on(
        TcpListener::bind(("127.0.0.1", port_a)).expect("bind a again"),
        "a",
        Mode::Greet,
    );
    setup.proxy.wait_for_log_since(
        mark,
        &format!("upstream 127.0.0.1:{port_a} (127.0.0.1:{port_a}) in pool p is up"),
        LOG_TIMEOUT,
    );
    assert!(names(4).contains(&"a\n".to_string()));
}

#[test]
fn sni_passthrough_routes_by_name_and_the_client_verifies_the_backends_own_certificate() {
    let ca = TestCa::new();
    let db = TlsBackend::start(&ca.issue(&["db.example.test"], 30), "db");
    let web = TlsBackend::start(&ca.issue(&["*.example.test"], 30), "web");
    let fallback = TlsBackend::start(&ca.issue(&["fallback.test"], 30), "fallback");
    let pools = format!(
        "{}[pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n[pools.other]\nupstreams = [\"127.0.0.1:{}\"]\n",
        pool(&[db.port()], ""),
        web.port(),
        fallback.port()
    );
    let setup = Setup::start(
        &pools,
        "[[tcp]]\nlisten = \"127.0.0.1:{port}\"\nroutes = [\n  { sni = \"db.example.test\", pool = \"p\" },\n  \
         { sni = \"*.example.test\", pool = \"web\" },\n  { pool = \"other\" },\n]\n",
    );
    let client = ca.client(&[]);
    let get_body = |name: &str, send_sni: bool| -> (Vec<String>, String) {
        let mut c = TlsClient::connect(setup.addr(), &client, name, send_sni)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        c.send(format!("GET / HTTP/1.1\r\nHost: {name}\r\n\r\n").as_bytes())
            .expect("send");
        let (head, body) = c.read_response().expect("response");
        assert_eq!(head.status, 200);
        (c.seen().names, String::from_utf8_lossy(&body).to_string())
    };
    // The handshake is the backend's own: the client verified its certificate for the name.
    assert_eq!(
        get_body("db.example.test", true),
        (vec!["db.example.test".to_string()], "db".to_string())
    );
    assert_eq!(
        get_body("api.example.test", true),
        (vec!["*.example.test".to_string()], "web".to_string())
    );
    // No SNI, and a name no route has: the default route.
    assert_eq!(get_body("fallback.test", false).1, "fallback");
    assert_eq!(get_body("fallback.test", true).1, "fallback");
    // The backends got the ClientHello as sent, SNI included.
    assert_eq!(db.connections(), [Some("db.example.test".to_string())]);
    assert_eq!(web.connections(), [Some("api.example.test".to_string())]);
    let lines = setup.log_lines(4);
    let snis: Vec<&serde_json::Value> = lines.iter().map(|l| &l["sni"]).collect();
    assert_eq!(
        snis,
        [
            &serde_json::json!("db.example.test"),
            &serde_json::json!("api.example.test"),
            &serde_json::Value::Null,
            &serde_json::json!("fallback.test"),
        ]
    );
    assert_eq!(lines[1]["pool"], "web");
}

#[test]
fn what_cannot_be_routed_by_sni_is_refused() {
    let ca = TestCa::new();
    let db = TlsBackend::start(&ca.issue(&["db.example.test"], 30), "db");
    let setup = Setup::start_with(
        &pool(&[db.port()], ""),
        "[[tcp]]\nlisten = \"127.0.0.1:{port}\"\nroutes = [ { sni = \"db.example.test\", pool = \"p\" } ]\n",
        "client_header_timeout = \"500ms\"",
    );
    // Not TLS at all.
    let mut c = setup.connect();
    c.write_all(b"GET / HTTP/1.1\r\nHost: db.example.test\r\n\r\n")
        .expect("write");
    assert_closed(&mut c);
    // A name no route takes, with no default route.
    let other = TlsClient::connect(setup.addr(), &ca.client(&[]), "other.example.test", true);
    assert!(other.is_err(), "an unrouted name must be closed");
    // A ClientHello over 16 KiB: records of a handshake that never ends within the bound.
    let mut c = setup.connect();
    let mut big = Vec::new();
    // A handshake header announcing a 20,000-byte ClientHello, over two records.
    let mut hs = vec![1u8, 0, 0x4e, 0x20];
    hs.extend(std::iter::repeat_n(0u8, 16_000));
    big.extend_from_slice(&[22, 3, 1]);
    big.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    big.extend_from_slice(&hs);
    big.extend_from_slice(&[22, 3, 1, 0x10, 0]);
    big.extend(std::iter::repeat_n(0u8, 4096));
    let _ = c.write_all(&big);
    assert_closed(&mut c);
    // Nothing at all within client_header_timeout.
    let mut c = setup.connect();
    let started = Instant::now();
    assert_closed(&mut c);
    assert!(started.elapsed() >= Duration::from_millis(450));
    let lines = setup.log_lines(4);
    let ends: Vec<&str> = lines
        .iter()
        .map(|l| l["end"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        ends,
        ["refused", "refused", "refused", "idle_timeout"],
        "{lines:?}"
    );
    assert_eq!(lines[1]["sni"], "other.example.test");
    assert_eq!(db.connections().len(), 0, "nothing reached the backend");
}

#[test]
fn idle_timeout_closes_both_sides() {
    let echo = Backend::start("echo", Mode::Echo);
    let setup = Setup::start(
        &pool(&[echo.port()], ""),
        "[[tcp]]\nlisten = \"127.0.0.1:{port}\"\npool = \"p\"\nidle_timeout = \"400ms\"\n",
    );
    let mut c = setup.connect();
    // Traffic keeps it open past the timeout...
    let mut started = Instant::now();
    for _ in 0..6 {
        thread::sleep(Duration::from_millis(150));
        c.write_all(b"tick").expect("write");
        assert_eq!(read_n(&mut c, 4), b"tick");
        started = Instant::now();
    }
    // ...silence closes it.
    assert_eq!(read_to_end(&mut c).expect("closed"), b"");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(setup.log_lines(1)[0]["end"], "idle_timeout");
}

#[test]
fn proxy_headers_in_from_clients_and_out_to_the_upstream() {
    let backend = Backend::start("count", Mode::CountThenClose);
    let setup = Setup::start(
        &pool(&[backend.port()], "send_proxy = \"v1\""),
        "[[tcp]]\nlisten = \"127.0.0.1:{port}\"\npool = \"p\"\nproxy_protocol = true\n",
    );
    let mut c = setup.connect();
    // The header and 200 KB behind it in one write: the first read fills the whole buffer,
    // and the header for the upstream still goes out first, with every byte after it.
    let payload = pattern(200_000);
    let mut first = b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 5432\r\n".to_vec();
    first.extend_from_slice(&payload);
    c.write_all(&first).expect("write");
    c.shutdown(Shutdown::Write).expect("half-close");
    let answer = read_to_end(&mut c).expect("answer");
    let got = backend.received(0);
    let mut want =
        format!("PROXY TCP4 203.0.113.9 127.0.0.1 40000 {}\r\n", setup.port).into_bytes();
    want.extend_from_slice(&payload);
    assert_long_bytes_eq(&got, &want, "what the upstream got");
    assert_eq!(answer, format!("got {} bytes\n", want.len()).as_bytes());
    assert_eq!(setup.log_lines(1)[0]["client"], "203.0.113.9");
    // Without the header it promised, a connection is refused.
    let mut c = setup.connect();
    c.write_all(b"payload without a header").expect("write");
    assert_closed(&mut c);
    assert_eq!(setup.log_lines(2)[1]["end"], "refused");
    assert_eq!(backend.talked(), 1);
}

#[test]
fn client_connection_limit_applies_to_tcp_connections() {
    let echo = Backend::start("echo", Mode::Echo);
    let setup = Setup::start_with(
        &pool(&[echo.port()], ""),
        TCP_P,
        "[client_limits]\nconnections = 2",
    );
    let mut held: Vec<TcpStream> = (0..2).map(|_| setup.connect()).collect();
    for c in &mut held {
        c.write_all(b"x").expect("write");
        assert_eq!(read_n(c, 1), b"x");
    }
    let mut third = setup.connect();
    let _ = third.write_all(b"x");
    assert_closed(&mut third);
    assert_eq!(setup.log_lines(1)[0]["end"], "refused");
    // One closes: a new one fits again.
    drop(held.pop());
    setup.wait_open(1);
    let mut again = setup.connect();
    again.write_all(b"y").expect("write");
    assert_eq!(read_n(&mut again, 1), b"y");
}

#[test]
fn a_graceful_stop_gives_open_connections_shutdown_timeout_then_closes_them() {
    let echo = Backend::start("echo", Mode::Echo);
    let mut setup = Setup::start_with(
        &pool(&[echo.port()], ""),
        TCP_P,
        "shutdown_timeout = \"1s\"",
    );
    let mut c = setup.connect();
    c.write_all(b"before").expect("write");
    assert_eq!(read_n(&mut c, 6), b"before");
    let mark = setup.proxy.log_mark();
    setup.proxy.sigterm();
    // The worker's own line: its listener is closed by then.
    setup
        .proxy
        .wait_for_log_since(mark, "worker 0: shutting down", LOG_TIMEOUT);
    // Still relaying during the grace...
    c.write_all(b"during").expect("write");
    assert_eq!(read_n(&mut c, 6), b"during");
    // ...no new connection...
    let refused = TcpStream::connect(setup.addr());
    assert!(refused.is_err(), "the listener is closed");
    // ...then closed, and the process exits.
    assert_closed(&mut c);
    assert_eq!(setup.proxy.wait_exit(EXIT_TIMEOUT), 0);
    assert_eq!(setup.log_lines(1)[0]["end"], "shutdown");
}

#[test]
fn an_upgrade_hands_the_listener_over_and_open_connections_end_on_the_old_process() {
    let echo = Backend::start("echo", Mode::Echo);
    let orphans = Orphans::new();
    let mut setup = Setup::start_with(
        &pool(&[echo.port()], ""),
        TCP_P,
        "shutdown_timeout = \"20s\"",
    );
    let mut old = setup.connect();
    old.write_all(b"old").expect("write");
    assert_eq!(read_n(&mut old, 3), b"old");
    let mark = setup.proxy.log_mark();
    setup.proxy.signal(libc::SIGUSR2);
    let started = setup
        .proxy
        .wait_for_log_since(mark, "upgrade: started", LOG_TIMEOUT);
    let pid = upgraded_pid(&started);
    orphans.adopt(pid);
    setup.proxy.wait_for_log_since(
        mark,
        &format!("upgrade: pid {pid} is ready"),
        Duration::from_secs(15),
    );
    // The old process stops accepting (its worker closes its copy of the listener)...
    setup
        .proxy
        .wait_for_log_since(mark, "worker 0: shutting down", LOG_TIMEOUT);
    // ...and the new one serves new connections on the same port...
    for _ in 0..5 {
        let mut c = setup.connect();
        c.write_all(b"new").expect("write");
        assert_eq!(read_n(&mut c, 3), b"new");
    }
    // ...while the connection the old one had keeps working there, and it exits once that ends.
    old.write_all(b"still").expect("write");
    assert_eq!(read_n(&mut old, 5), b"still");
    assert!(
        setup.proxy.is_running(),
        "the old process waits for its connection"
    );
    drop(old);
    assert_eq!(setup.proxy.wait_exit(EXIT_TIMEOUT), 0);
    let mut after = setup.connect();
    after.write_all(b"after").expect("write");
    assert_eq!(read_n(&mut after, 5), b"after");
    // The new process (alone on the admin listener now) served all six.
    assert_eq!(setup.status()["tcp"][0]["connections"], 6);
}

#[test]
fn a_reload_moves_a_listener_to_another_pool_and_keeps_open_connections() {
    let a = Backend::start("a", Mode::Greet);
    let b = Backend::start("b", Mode::Greet);
    let pools = format!(
        "[pools.pa]\nupstreams = [\"127.0.0.1:{}\"]\n[pools.pb]\nupstreams = [\"127.0.0.1:{}\"]\n",
        a.port(),
        b.port()
    );
    let mut setup = Setup::start(
        &pools,
        "[[tcp]]\nlisten = \"127.0.0.1:{port}\"\npool = \"pa\"\n",
    );
    let mut before = setup.connect();
    assert_eq!(read_n(&mut before, 2), b"a\n");
    let path = setup.dir.path().join("goround.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, text.replace("pool = \"pa\"", "pool = \"pb\"")).expect("write");
    setup.proxy.reload().expect("reload");
    let mut after = setup.connect();
    assert_eq!(read_n(&mut after, 2), b"b\n");
    // The connection opened before keeps its upstream.
    before.write_all(b"ping").expect("write");
    assert_eq!(read_n(&mut before, 4), b"ping");
    assert_eq!(setup.status()["tcp"][0]["pool"], "pb");
}
