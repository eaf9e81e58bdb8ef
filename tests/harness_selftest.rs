//! The harness tested against itself: the raw client against the raw recorder, the chunked
//! scanner, the log waiter, the process helpers. No proxy involved, so these pass on their own
//! and a red proxy test can be trusted to be about the proxy.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn raw_client_reads_a_content_length_response_and_the_recorder_keeps_the_exact_request() {
    let backend = RawBackend::fixed(&ok_response("hi"));
    let mut client = ResponseReader::connect(backend.addr());
    let request = b"GET /x HTTP/1.1\r\nHost: h\r\nX-A:  spaced \r\n\r\n";
    client.send(request);
    let resp = client.read_response("GET");
    assert_eq!(resp.version, "HTTP/1.1");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.reason, "OK");
    assert_eq!(resp.framing, BodyFraming::Length(2));
    assert_eq!(resp.body, b"hi");
    assert_eq!(resp.raw, ok_response("hi"));
    assert_eq!(resp.head(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    assert_eq!(resp.header("content-length"), Some("2"));
    let requests = backend.wait_requests(1, IO_TIMEOUT);
    assert_bytes_eq(&requests[0], request, "recorded request");
    // The connection stays open after a KeepAlive reply.
    client.expect_open_and_quiet(Duration::from_millis(50));
}

#[test]
fn recorder_cuts_pipelined_requests_and_client_reads_responses_in_order() {
    let backend = RawBackend::start(|req| {
        let line = String::from_utf8_lossy(req)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        Reply::KeepAlive(ok_response(&line))
    });
    let mut client = ResponseReader::connect(backend.addr());
    let post = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let chunked_post = b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
        .to_vec();
    let get = b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
    client.send(&[post.clone(), chunked_post.clone(), get.clone()].concat());
    for line in ["POST /a HTTP/1.1", "POST /b HTTP/1.1", "GET /c HTTP/1.1"] {
        assert_eq!(client.read_response("GET").body_text(), line);
    }
    let requests = backend.wait_requests(3, IO_TIMEOUT);
    assert_eq!(requests, vec![post, chunked_post, get]);
    assert_eq!(backend.connections().len(), 1);
}

#[test]
fn client_decodes_a_chunked_response_with_extensions_and_trailers() {
    let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        4;a=b\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n";
    let backend = RawBackend::fixed(wire);
    let mut client = ResponseReader::connect(backend.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(resp.framing, BodyFraming::Chunked);
    assert_eq!(resp.body, b"Wikipedia");
    assert_eq!(resp.raw, wire.to_vec());
}

#[test]
fn client_reads_a_close_delimited_body_to_the_end() {
    let backend =
        RawBackend::start(|_| Reply::Close(b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec()));
    let mut client = ResponseReader::connect(backend.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!(resp.framing, BodyFraming::Close);
    assert_eq!(resp.body, b"until close");
}

#[test]
fn client_knows_head_204_and_304_have_no_body() {
    let backend = RawBackend::start(|req| {
        let reply: &[u8] = if req.starts_with(b"HEAD") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        } else if req.starts_with(b"GET /204") {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else if req.starts_with(b"GET /304") {
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
        };
        Reply::KeepAlive(reply.to_vec())
    });
    let mut client = ResponseReader::connect(backend.addr());
    client.send(
        b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /204 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /304 HTTP/1.1\r\nHost: h\r\n\r\nGET /n HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    let head = client.read_response("HEAD");
    assert_eq!((head.status, head.framing), (200, BodyFraming::None));
    assert_eq!(client.read_response("GET").status, 204);
    assert_eq!(client.read_response("GET").status, 304);
    assert_eq!(client.read_response("GET").body, b"next");
}

#[test]
fn client_returns_interim_responses_one_by_one() {
    let backend = RawBackend::fixed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let mut client = ResponseReader::connect(backend.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        client.read_response("GET").raw,
        b"HTTP/1.1 100 Continue\r\n\r\n"
    );
    let early = client.read_response("GET");
    assert_eq!((early.status, early.header("link")), (103, Some("</a>")));
    assert_eq!(client.read_response("GET").body, b"ok");
}

#[test]
fn never_reply_times_out_the_client_read() {
    let backend = RawBackend::start(|_| Reply::Never);
    let mut client = ResponseReader::connect(backend.addr());
    let _ = client
        .stream()
        .set_read_timeout(Some(Duration::from_millis(100)));
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    let started = Instant::now();
    assert!(client.try_read_response("GET").is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    backend.wait_requests(1, IO_TIMEOUT);
}

#[test]
fn close_on_accept_gives_an_empty_answer() {
    let backend = RawBackend::close_on_accept();
    assert_eq!(
        send_raw(backend.addr(), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        b""
    );
    let mut client = ResponseReader::connect(backend.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    // EOF or a reset, depending on whether our request was already in its buffer.
    assert!(client.try_read_response("GET").is_err());
    assert!(backend.requests().is_empty());
}

#[test]
fn close_reply_sends_then_closes() {
    let backend = RawBackend::start(|_| Reply::Close(b"bye".to_vec()));
    assert_eq!(
        send_raw(backend.addr(), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        b"bye"
    );
    let backend = RawBackend::start(|_| Reply::Close(ok_response("x")));
    let mut client = ResponseReader::connect(backend.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.read_response("GET").body, b"x");
    client.expect_close(IO_TIMEOUT);
}

#[test]
fn close_silently_closes_after_reading_the_request() {
    let backend = RawBackend::start(|_| Reply::CloseSilently);
    assert_eq!(
        send_raw(backend.addr(), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
        b""
    );
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn upgrade_echo_answers_then_echoes_and_records() {
    let backend = RawBackend::start(|_| {
        Reply::UpgradeEcho(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec(),
        )
    });
    let mut client = ResponseReader::connect(backend.addr());
    client.send(b"GET /ws HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!((resp.status, resp.framing), (101, BodyFraming::None));
    client.send(b"ping");
    assert_eq!(client.read_bytes(4), b"ping");
    backend.wait_bytes(b"GET /ws HTTP/1.1\r\nHost: h\r\n\r\nping".len(), IO_TIMEOUT);
    assert!(backend.connections()[0].ends_with(b"\r\n\r\nping"));
}

#[test]
fn send_raw_survives_a_server_that_answers_and_closes_before_reading_everything() {
    // The 431 situation: the client is still writing when the server answers and closes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut first = [0u8; 10];
        std::io::Read::read_exact(&mut s, &mut first).unwrap();
        s.write_all(b"answer").unwrap();
    });
    let got = send_raw(addr, &vec![b'x'; 4 * 1024 * 1024]);
    server.join().unwrap();
    assert_eq!(got, b"answer");
}

#[test]
fn chunked_scanner_reports_completion_extensions_trailers_and_errors() {
    let plain = chunked(&[b"hello", b" world"]);
    assert_eq!(plain, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let body = parse_chunked(&plain).unwrap().unwrap();
    assert_eq!(body.data, b"hello world");
    assert_eq!(body.wire_len, plain.len());
    assert!(body.is_canonical());
    // Every proper prefix is incomplete, never an error.
    for cut in 0..plain.len() {
        assert_eq!(
            parse_chunked(&plain[..cut]),
            Ok(None),
            "prefix of {cut} bytes"
        );
    }
    let fancy = b"5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\nextra";
    let body = parse_chunked(fancy).unwrap().unwrap();
    assert_eq!(body.data, b"hello");
    assert_eq!(body.trailers, b"T: 1\r\n");
    assert_eq!(body.wire_len, fancy.len() - 5);
    assert!(!body.is_canonical());
    assert!(!parse_chunked(b"05\r\nhello\r\n0\r\n\r\n")
        .unwrap()
        .unwrap()
        .is_canonical());
    assert!(parse_chunked(b"zz\r\n").is_err());
    assert!(parse_chunked(b"2\r\nabXY").is_err());
}

#[test]
fn request_length_uses_content_length_then_chunked_then_nothing() {
    assert_eq!(request_length(b"GET / HTTP/1.1\r\n\r\nNEXT"), Some(18));
    assert_eq!(
        request_length(b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nab"),
        None
    );
    assert_eq!(
        request_length(b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcd"),
        Some(41)
    );
    let c = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n";
    assert_eq!(request_length(c), Some(c.len()));
    assert_eq!(request_length(&c[..c.len() - 1]), None);
    assert_eq!(request_length(b"GET / HTTP/1.1\r\n"), None);
}

#[test]
fn response_head_parser_rejects_garbage() {
    assert!(parse_response_head(b"NOT HTTP\r\n\r\n").is_err());
    assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nbad line\r\n\r\n").is_err());
    let head = parse_response_head(b"HTTP/1.1 404 Not Found\r\nA: 1\r\nB:2 \r\n\r\n").unwrap();
    assert_eq!(
        (head.version.as_str(), head.status, head.reason.as_str()),
        ("HTTP/1.1", 404, "Not Found")
    );
    assert_eq!(
        head.headers,
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string())
        ]
    );
}

#[test]
fn log_waiter_finds_lines_times_out_and_notices_exit() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "echo one >&2; echo '[x INFO  w] listening on 127.0.0.1:4242' >&2; read _",
    ]);
    // stdin is /dev/null: `read` returns at once and the shell exits.
    let mut spawned = spawn(cmd, "sh");
    let line = spawned
        .stderr
        .wait_for(0, "listening on ", IO_TIMEOUT)
        .unwrap();
    assert_eq!(parse_listening(&line), "127.0.0.1:4242".parse().unwrap());
    assert!(spawned.child.wait_exit(IO_TIMEOUT).is_some());
    let started = Instant::now();
    let err = spawned.stderr.wait_for(2, "one", IO_TIMEOUT).unwrap_err();
    assert!(err.contains("exited"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // A mark skips older lines: "one" is line 0.
    assert!(spawned
        .stderr
        .wait_for(1, "one", Duration::from_millis(10))
        .is_err());

    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let mut sleeper = spawn(cmd, "sleep");
    let started = Instant::now();
    let err = sleeper
        .stderr
        .wait_for(0, "never", Duration::from_millis(100))
        .unwrap_err();
    assert!(err.contains("within"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    sleeper.child.signal(libc::SIGTERM);
    let status = sleeper
        .child
        .wait_exit(IO_TIMEOUT)
        .expect("sleep exits on SIGTERM");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGTERM)
    );
}

#[test]
fn run_with_timeout_collects_exit_code_and_lines() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo out; echo err1 >&2; echo err2 >&2; exit 2"]);
    let done = run_with_timeout(cmd, "sh", IO_TIMEOUT);
    assert_eq!(done.status.code(), Some(2));
    assert_eq!(done.stdout, vec!["out"]);
    assert_eq!(done.stderr, vec!["err1", "err2"]);
}

#[test]
fn blackhole_listener_makes_connects_time_out() {
    // The failover test relies on this to produce a connect timeout on 127.0.0.1.
    let (_socket, _filler, port) = blackhole_listener();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let err = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn free_port_refuses_connections() {
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let err = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn small_helpers() {
    assert_eq!(hello_port("Hello from Server 8081\n"), 8081);
    assert_eq!(&pattern(28)[..], b"abcdefghijklmnopqrstuvwxyzab");
    assert!(vm_rss_kib(std::process::id()) > 0);
    assert!(vm_hwm_kib(std::process::id()) >= vm_rss_kib(std::process::id()) / 2);
    assert_eq!(
        down_line(1),
        "upstream 127.0.0.1:1 (127.0.0.1:1) in pool default is down"
    );
    assert_eq!(
        up_line(1),
        "upstream 127.0.0.1:1 (127.0.0.1:1) in pool default is up"
    );
}

#[test]
fn local_answers_are_spelled_as_the_proxy_sends_them() {
    assert_bytes_eq(
        &local_answer(502, true),
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\
          Connection: close\r\n\r\n502 Bad Gateway\n",
        "502, closing",
    );
    assert_bytes_eq(
        &local_answer(504, false),
        b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n\
          504 Gateway Timeout\n",
        "504, kept",
    );
    let allow = local_answer(405, true);
    assert!(
        find(&allow, b"\r\nAllow: GET, HEAD, POST").is_some(),
        "{}",
        show(&allow)
    );
}

#[test]
fn long_byte_strings_that_differ_are_reported_by_their_first_difference() {
    assert_long_bytes_eq(&pattern(100_000), &pattern(100_000), "same");
    let mut other = pattern(100_000);
    other[70_000] = b'!';
    let message = std::panic::catch_unwind(|| assert_long_bytes_eq(&other, &pattern(100_000), "t"))
        .expect_err("the bytes differ");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(
        message.contains("first difference at byte 70000"),
        "{message}"
    );
    assert!(message.len() < 1_000, "{message}");
}

#[test]
fn connect_from_binds_the_local_address_it_is_given() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = connect_from("127.0.0.2", listener.local_addr().unwrap());
    let (_server, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), client.local_addr().unwrap().ip());
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
}

#[test]
fn read_until_eof_returns_what_came_or_says_it_did_not_end() {
    let closing = RawBackend::start(|_| Reply::Close(ok_response("bye")));
    let mut stream = connect(closing.addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_until_eof(&mut stream, IO_TIMEOUT),
        Ok(ok_response("bye"))
    );
    let silent = RawBackend::start(|_| Reply::Never);
    let mut stream = connect(silent.addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let err = read_until_eof(&mut stream, Duration::from_millis(100)).unwrap_err();
    assert!(err.contains("no EOF within"), "{err}");
}

#[test]
fn wait_until_refused_returns_once_the_listener_is_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    wait_until_refused(addr, IO_TIMEOUT);
}

#[test]
fn orphans_get_sigterm_on_drop_and_wait_gone_sees_them_go() {
    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let spawned = spawn(cmd, "sleep");
    let pid = i32::try_from(spawned.child.pid()).unwrap();
    {
        let orphans = Orphans::new();
        orphans.adopt(pid);
        assert!(!wait_gone(pid, Duration::from_millis(50)), "sleep 30 ended");
    }
    assert!(wait_gone(pid, IO_TIMEOUT), "SIGTERM did not end it");
}

#[test]
fn files_tools_pids_and_descriptors() {
    let dir = TempDir::new();
    let path = dir.write("log", "one\ntwo\n");
    assert_eq!(wait_file_lines(&path, 2), vec!["one", "two"]);
    assert!(which("sh").is_some());
    assert!(which("no-such-tool-anywhere").is_none());
    assert_eq!(
        upgraded_pid(
            "[2025-01-01T00:00:00Z INFO  main] upgrade: started /usr/bin/goround-mio \
             (pid 4242), handing it 1 listening socket"
        ),
        4242
    );
    let _listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(open_fds(std::process::id(), "socket") >= 1);
}
