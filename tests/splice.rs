//! Long body spans go by splice(2): Content-Length bodies both ways, the data of long chunks
//! both ways, and tunnels while they stream. The bytes, the framing and the failure behaviour
//! are the same as on the copy path, and a worker out of pipes copies instead.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

const BODY: usize = 3 * 1024 * 1024 + 17;

/// `--splice-min` values: off; every span, even five bytes of a chunk; and a threshold the
/// long spans pass and the short ones do not.
const SPLICE_MINS: [&str; 3] = ["0", "1", "64k"];

/// Chunk sizes of the chunked bodies: long ones (spliced at 64k) between short ones (copied).
const CHUNKS: [usize; 6] = [300 * 1024, 5, 1024 * 1024 + 3, 17, 200 * 1024, 70 * 1024];

/// Most pipes one worker lends at once (`MAX_PIPES` in src/worker.rs).
const MAX_PIPES: usize = 64;

/// `len` bytes of every value (CR, LF and NUL included), different for each `seed`.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(131) ^ (i >> 9)) as u8 ^ seed)
        .collect()
}

/// The body after the head in `message`.
#[track_caller]
fn after_head(message: &[u8]) -> &[u8] {
    let end = find(message, b"\r\n\r\n").expect("a complete head") + 4;
    &message[end..]
}

/// `chunks` as a sender might frame them: size lines in upper case, with leading zeros,
/// extensions and whitespace, and a trailer section.
fn sloppy_chunked(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let line = match i % 3 {
            0 => format!("{:X}", c.len()),
            1 => format!("00{:x};name=value", c.len()),
            _ => format!("{:x} ;q=\"a;b\"", c.len()),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    out
}

fn chunk_data(seed: usize) -> Vec<Vec<u8>> {
    CHUNKS
        .iter()
        .enumerate()
        .map(|(i, &n)| bytes(n, (seed * 16 + i) as u8))
        .collect()
}

/// The clean framing the proxy promises: one chunk per received chunk, lower-case sizes.
fn canonical(chunks: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    chunked(&refs)
}

/// Where Content-Length bodies pause (`Reply::KeepAlivePaused`, `send_paused`): past the first
/// buffer's worth, where a request is no longer kept for a replay, and long before the end.
const PAUSE_INTO_BODY: usize = 256 * 1024;

/// Send `body` with a pause `at` bytes into it: the proxy finds the client drained mid-body
/// there, which is when the rest of an upload (or of its current chunk) goes by splice.
fn send_paused(client: &mut ResponseReader, body: &[u8], at: usize) {
    let (first, rest) = body.split_at(at.min(body.len()));
    client.send(first);
    thread::sleep(PACED_PAUSE);
    client.send(rest);
}

/// A 200 answer with `body` framed by Content-Length.
fn ok_with_length(body: &[u8]) -> Vec<u8> {
    let mut reply =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    reply.extend_from_slice(body);
    reply
}

/// A backend that answers `GET /K` with a 200 of `bytes(sizes[K % sizes.len()], K)`, head and
/// body in one write.
fn sized_backend(sizes: &'static [usize]) -> RawBackend {
    RawBackend::start(move |req| {
        let target = req.split(|&b| b == b' ').nth(1).unwrap_or_default();
        let k: usize = String::from_utf8_lossy(target)
            .trim_start_matches('/')
            .parse()
            .unwrap_or(0);
        Reply::KeepAlive(ok_with_length(&bytes(sizes[k % sizes.len()], k as u8)))
    })
}

/// Read the answer to `GET /K` from a [`sized_backend`] of `sizes`: a 200 with its body.
#[track_caller]
fn read_sized_answer(client: &mut ResponseReader, sizes: &[usize], k: usize) {
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200, "answer {k}");
    assert_long_bytes_eq(
        &resp.body,
        &bytes(sizes[k % sizes.len()], k as u8),
        &format!("body {k}"),
    );
}

/// The proxy made pipes (they stay in its pool) only when splicing is on.
#[track_caller]
fn assert_pipes_used(proxy: &Proxy, base: usize, splice_min: &str) {
    let made = open_fds(proxy.pid(), "pipe") - base;
    if splice_min == "0" {
        assert_eq!(made, 0, "pipes made with splicing off");
    } else {
        assert!(made >= 2, "no pipe made with --splice-min {splice_min}");
    }
}

#[test]
fn spliced_and_copied_bodies_are_identical() {
    // The dummy's /big, with a pause 256 KiB into the body: the proxy then finds the upstream
    // drained mid-body, which is when the rest goes by splice, however loaded the machine is.
    let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n").into_bytes();
    let pause_at = reply.len() + PAUSE_INTO_BODY;
    reply.extend(pattern(BODY));
    let backend = RawBackend::start(move |_| Reply::KeepAlivePaused(reply.clone(), pause_at));
    for splice_min in ["1", "0", "128k"] {
        let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", splice_min]);
        let base = open_fds(proxy.pid(), "pipe");
        // Twice on one connection: the pipe goes back to the pool clean and is reused.
        let mut client = ResponseReader::connect(proxy.addr());
        for _ in 0..2 {
            client.send(format!("GET /big?bytes={BODY} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
            let resp = client.read_response("GET");
            assert_eq!(resp.status, 200);
            assert_eq!(
                resp.header("Content-Length"),
                Some(BODY.to_string().as_str())
            );
            assert!(
                resp.body == pattern(BODY),
                "body differs with --splice-min {splice_min}"
            );
        }
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(client.read_response("GET").status, 200);
        assert_pipes_used(&proxy, base, splice_min);
    }
}

#[test]
fn long_responses_sent_at_once_arrive_whole_at_fast_and_late_readers() {
    // The upstream sends each answer at once: the proxy's first read holds the head and the
    // body's start, more than the client's buffer takes, and the rest of the body goes by
    // splice from there, the pipe filling while those bytes wait (it may take the whole rest
    // before they are out). Bodies around the pipe's size (256 KiB), to a client that reads
    // at once and to one that lets the proxy's output fill first.
    const SIZES: [usize; 4] = [
        100 * 1024 + 1,
        200 * 1024,
        300 * 1024 + 5,
        3 * 1024 * 1024 + 17,
    ];
    let backend = sized_backend(&SIZES);
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "64k"]);
    let base = open_fds(proxy.pid(), "pipe");
    let mut client = ResponseReader::connect(proxy.addr());
    for k in 0..2 * SIZES.len() {
        client.send(format!("GET /{k} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        if k >= SIZES.len() {
            // Late reader: the proxy's writes to it block before the body is through.
            thread::sleep(PACED_PAUSE);
        }
        read_sized_answer(&mut client, &SIZES, k);
    }
    assert_pipes_used(&proxy, base, "64k");
}

#[test]
fn a_long_body_from_a_fast_upstream_goes_by_splice_before_the_client_reads() {
    // The upstream sends head and body at once and the client reads nothing yet: the proxy's
    // first read fills its buffer, more than the client's buffer takes, and the rest of the
    // body goes by splice behind it: a pipe is lent while the client has read nothing, and the
    // client gets the buffered bytes first, then the pipe's. (The copy path forwards a buffer
    // minus the room kept for an answer of our own, so a buffer refilled by each read never
    // empties: a span waiting for an empty buffer began only when the upstream paused.)
    let backend = RawBackend::start(|_| Reply::KeepAlive(ok_with_length(&bytes(BODY, 7))));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "64k"]);
    let base = open_fds(proxy.pid(), "pipe");
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let deadline = Instant::now() + IO_TIMEOUT;
    while open_fds(proxy.pid(), "pipe") < base + 2 {
        assert!(Instant::now() < deadline, "no pipe lent for the body");
        thread::sleep(Duration::from_millis(10));
    }
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200);
    assert_long_bytes_eq(&resp.body, &bytes(BODY, 7), "body");
}

#[test]
fn a_spliced_body_ends_its_exchange_at_once() {
    // Head and body come at once and the span takes the whole rest in one pull, before the
    // bytes read with the head are out: when the pipe's last byte leaves, no socket has more
    // to say. The exchange must end then (here with the close `Connection: close` asks for),
    // not when a read timeout (60 s) finds it. Each read below waits at most IO_TIMEOUT.
    const SIZES: [usize; 3] = [200 * 1024, 300 * 1024 + 5, BODY];
    let backend = sized_backend(&SIZES);
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "64k"]);
    for k in 0..2 * SIZES.len() {
        let mut client = connect(proxy.addr());
        client
            .write_all(
                format!("GET /{k} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .unwrap_or_else(|e| panic!("sending request {k}: {e}"));
        let answer = read_until_eof(&mut client, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("answer {k} did not end with a close: {e}"));
        let body = after_head(&answer);
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "answer {k}");
        assert_long_bytes_eq(
            body,
            &bytes(SIZES[k % SIZES.len()], k as u8),
            &format!("body {k}"),
        );
    }
}

#[test]
fn uploads_with_content_length_are_identical() {
    let backend = RawBackend::start(|_| Reply::KeepAlive(ok_response("stored")));
    for (k, splice_min) in SPLICE_MINS.into_iter().enumerate() {
        let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", splice_min]);
        let base = open_fds(proxy.pid(), "pipe");
        let mut client = ResponseReader::connect(proxy.addr());
        for round in 0..2 {
            let body = bytes(BODY, (k * 2 + round) as u8);
            let before = backend.requests().len();
            let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n");
            client.send(head.as_bytes());
            send_paused(&mut client, &body, PAUSE_INTO_BODY);
            let resp = client.read_response("POST");
            assert_eq!((resp.status, resp.body_text().as_str()), (200, "stored"));
            let got = &backend.wait_requests(before + 1, IO_TIMEOUT)[before];
            assert!(got.starts_with(b"POST /up HTTP/1.1\r\n"), "{}", show(got));
            let what = format!("upload {round} with --splice-min {splice_min}");
            assert_long_bytes_eq(after_head(got), &body, &what);
        }
        // The connection carries on after the spans.
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(client.read_response("GET").status, 200);
        assert_pipes_used(&proxy, base, splice_min);
    }
}

#[test]
fn an_upload_after_100_continue_goes_through_whole() {
    let dummies = Dummies::start(1);
    for splice_min in SPLICE_MINS {
        let proxy = Proxy::with_upstreams(&dummies.ports(), &["--splice-min", splice_min]);
        let mut client = ResponseReader::connect(proxy.addr());
        let head = format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: {BODY}\r\n\r\n"
        );
        client.send(head.as_bytes());
        assert_eq!(client.read_response("POST").status, 100);
        // The echo comes back while the body goes: write from another thread.
        let body = bytes(BODY, 7);
        let mut writer = client
            .stream()
            .try_clone()
            .expect("clone the client socket");
        let sent = body.clone();
        let sender = thread::spawn(move || writer.write_all(&sent));
        let resp = client.read_response("POST");
        sender
            .join()
            .expect("writer thread")
            .expect("send the body");
        assert_eq!(resp.status, 200);
        assert!(resp.body.starts_with(b"POST /echo HTTP/1.1\r\n"));
        let what = format!("echoed body with --splice-min {splice_min}");
        assert_long_bytes_eq(after_head(&resp.body), &body, &what);
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(client.read_response("GET").status, 200);
    }
}

#[test]
fn chunked_uploads_are_identical() {
    let backend = RawBackend::start(|_| Reply::KeepAlive(ok_response("stored")));
    for (k, splice_min) in SPLICE_MINS.into_iter().enumerate() {
        let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", splice_min]);
        let base = open_fds(proxy.pid(), "pipe");
        let mut client = ResponseReader::connect(proxy.addr());
        for round in 0..2 {
            let chunks = chunk_data(k * 2 + round);
            let before = backend.requests().len();
            client.send(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
            // Halfway into the 1 MiB chunk: most of a chunk still to come.
            let at = CHUNKS[0] + CHUNKS[1] + CHUNKS[2] / 2;
            send_paused(&mut client, &sloppy_chunked(&chunks), at);
            let resp = client.read_response("POST");
            assert_eq!((resp.status, resp.body_text().as_str()), (200, "stored"));
            let got = &backend.wait_requests(before + 1, IO_TIMEOUT)[before];
            let what = format!("chunked upload {round} with --splice-min {splice_min}");
            assert_long_bytes_eq(after_head(got), &canonical(&chunks), &what);
        }
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(client.read_response("GET").status, 200);
        assert_pipes_used(&proxy, base, splice_min);
    }
}

#[test]
fn chunked_downloads_are_identical() {
    let chunks = chunk_data(5);
    let data = chunks.concat();
    let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    // A pause 10 KiB into the first chunk (300 KiB): whatever the machine's load, the proxy
    // then finds the upstream drained with most of a chunk to come, which is when a span of it
    // goes by splice. Sent in one piece, a proxy slower than the backend could copy it all.
    let pause_at = reply.len() + 10 * 1024;
    const _: () = assert!(CHUNKS[0] > 10 * 1024 + (64 << 10));
    reply.extend(sloppy_chunked(&chunks));
    let backend = RawBackend::start(move |_| Reply::KeepAlivePaused(reply.clone(), pause_at));
    for splice_min in SPLICE_MINS {
        let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", splice_min]);
        let base = open_fds(proxy.pid(), "pipe");
        // HTTP/1.1: re-chunked; twice on one connection.
        let mut client = ResponseReader::connect(proxy.addr());
        for round in 0..2 {
            client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let resp = client.read_response("GET");
            assert_eq!(resp.framing, BodyFraming::Chunked, "{}", show(resp.head()));
            let what = format!("download {round} with --splice-min {splice_min}");
            assert_long_bytes_eq(&resp.raw[resp.head_len..], &canonical(&chunks), &what);
        }
        // HTTP/1.0: de-chunked, then a close.
        let mut client = ResponseReader::connect(proxy.addr());
        client.send(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n");
        let resp = client.read_response("GET");
        assert_eq!(resp.framing, BodyFraming::Close, "{}", show(resp.head()));
        let what = format!("HTTP/1.0 download with --splice-min {splice_min}");
        assert_long_bytes_eq(&resp.body, &data, &what);
        assert_pipes_used(&proxy, base, splice_min);
    }
}

#[test]
fn tunnels_carry_megabytes_both_ways() {
    let dummies = Dummies::start(1);
    for splice_min in SPLICE_MINS {
        let proxy = Proxy::with_upstreams(&dummies.ports(), &["--splice-min", splice_min]);
        let base = open_fds(proxy.pid(), "pipe");
        let mut client = ResponseReader::connect(proxy.addr());
        client.send(UPGRADE_REQUEST);
        assert_eq!(client.read_response("GET").status, 101);
        client.send(b"ping");
        assert_eq!(client.read_bytes(4), b"ping");
        // Bursts and small writes mixed, while the echo streams back.
        let data = bytes(4 * 1024 * 1024 + 5, 11);
        let mut writer = client
            .stream()
            .try_clone()
            .expect("clone the client socket");
        let sent = data.clone();
        let sender = thread::spawn(move || {
            let mut at = 0;
            for size in [1, 100, 1 << 20, 7, 300 * 1024, 64 * 1024, 3]
                .iter()
                .cycle()
            {
                let end = (at + size).min(sent.len());
                writer.write_all(&sent[at..end])?;
                at = end;
                if at == sent.len() {
                    return Ok(());
                }
            }
            Ok::<(), std::io::Error>(())
        });
        let echoed = client.read_bytes(data.len());
        sender
            .join()
            .expect("writer thread")
            .expect("write into the tunnel");
        assert_long_bytes_eq(
            &echoed,
            &data,
            &format!("echo with --splice-min {splice_min}"),
        );
        // A small message after the bursts.
        client.send(b"pong");
        assert_eq!(client.read_bytes(4), b"pong");
        assert_pipes_used(&proxy, base, splice_min);
        let _ = client.stream().shutdown(Shutdown::Write);
        client.expect_close(IO_TIMEOUT);
    }
}

#[test]
fn an_upstream_that_stops_short_mid_splice_closes_the_client() {
    // The head promises 1 MiB, 300 KiB come, then the upstream closes.
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n".to_vec();
    reply.extend(pattern(300 * 1024));
    let backend = RawBackend::start(move |_| Reply::Close(reply.clone()));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "64k"]);
    let mut stream = std::net::TcpStream::connect(proxy.addr()).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let got = read_to_close(&mut stream);
    let head_end = find(&got, b"\r\n\r\n").expect("a head") + 4;
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        show(&got[..head_end])
    );
    assert_eq!(
        got.len() - head_end,
        300 * 1024,
        "every byte received, then a close"
    );
    // The proxy itself is fine: the next request gets the same treatment.
    let mut stream = std::net::TcpStream::connect(proxy.addr()).expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    assert_eq!(read_to_close(&mut stream).len(), got.len());
}

#[test]
fn bytes_past_a_spliced_body_keep_the_upstream_connection_from_reuse() {
    // A span takes exactly the body's length: what the upstream sent beyond it (here a
    // response nobody asked for) stays in its socket, and must not answer the next request.
    // The whole answer arrives at once, so no readiness event comes after the span: only a
    // look into the socket finds the stray bytes.
    let body = bytes(200 * 1024, 6);
    let mut reply = ok_with_length(&body);
    reply.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!");
    let backend = RawBackend::start(move |_| Reply::KeepAlive(reply.clone()));
    for splice_min in SPLICE_MINS {
        let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", splice_min]);
        let mut client = ResponseReader::connect(proxy.addr());
        for round in 0..3 {
            client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let resp = client.read_response("GET");
            let what = format!("response {round} with --splice-min {splice_min}");
            assert_eq!(resp.status, 200, "{what}");
            assert_long_bytes_eq(&resp.body, &body, &what);
        }
    }
}

#[test]
fn an_upstream_that_stops_short_mid_chunk_closes_the_client() {
    // A 1 MiB chunk of which 300 KiB come, then the upstream closes.
    let data = bytes(300 * 1024, 3);
    let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n".to_vec();
    reply.extend_from_slice(b"0100000;x=y\r\n");
    reply.extend_from_slice(&data);
    let backend = RawBackend::start(move |_| Reply::Close(reply.clone()));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "64k"]);
    let mut stream = connect(proxy.addr());
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let got = read_to_close(&mut stream);
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", show(&got));
    // Every byte received, in clean framing, and no last chunk: the client sees the cut.
    let mut want = b"5\r\nfirst\r\n100000\r\n".to_vec();
    want.extend_from_slice(&data);
    assert_long_bytes_eq(after_head(&got), &want, "truncated chunked body");
}

#[test]
fn a_client_that_stops_short_mid_splice_leaves_the_upstream_a_short_body() {
    let backend = RawBackend::start(|_| Reply::KeepAlive(ok_response("unexpected")));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "64k"]);
    let data = bytes(300 * 1024, 4);
    let cases: [(&[u8], &[u8]); 2] = [
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n",
            b"",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n",
            b"100000\r\n",
        ),
    ];
    for (head, framing) in cases {
        let mark = backend.connection_count();
        let mut stream = connect(proxy.addr());
        stream.write_all(head).expect("send the head");
        stream.write_all(&data).expect("send the body");
        stream.shutdown(Shutdown::Write).expect("shutdown");
        // Nobody to answer a request cut short: the proxy closes.
        assert_eq!(read_to_close(&mut stream), b"", "{}", show(head));
        // The backend may not have accepted the connection yet when the client sees the close.
        let deadline = Instant::now() + IO_TIMEOUT;
        let got = loop {
            let records = backend.connections();
            let post = records[mark..].iter().find(|r| r.starts_with(b"POST"));
            if let Some(got) = post {
                assert!(
                    backend.wait_ended_since(mark, IO_TIMEOUT),
                    "upstream still open"
                );
                break backend.connections()[mark..]
                    .iter()
                    .find(|r| r.starts_with(b"POST"))
                    .cloned()
                    .unwrap_or_else(|| got.clone());
            }
            assert!(
                Instant::now() < deadline,
                "no request upstream: {}",
                show(head)
            );
            thread::sleep(Duration::from_millis(5));
        };
        // Every byte the client sent, then a close: the body stops short of its framing.
        let mut want = framing.to_vec();
        want.extend_from_slice(&data);
        assert_long_bytes_eq(after_head(&got), &want, "truncated upload");
        assert!(backend.requests().is_empty(), "a complete request was seen");
    }
}

#[test]
fn an_upstream_that_stops_reading_mid_splice_still_answers() {
    // It reads the head and some of a 4 MiB body, answers 413 and closes with bytes unread
    // (a reset): the proxy's next splice into it fails.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut got = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            // Health probes connect and close: wait for a connection with a request.
            while got.len() < 300 * 1024 {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
            if got.len() >= 300 * 1024 {
                let _ = stream.write_all(
                    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbig!",
                );
                return;
            }
        }
    });
    let proxy = Proxy::with_upstreams(&[port], &["--splice-min", "64k"]);
    let mut client = ResponseReader::connect(proxy.addr());
    let len = 4 * 1024 * 1024;
    client.send(format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {len}\r\n\r\n").as_bytes());
    let body = bytes(len, 5);
    let mut writer = client
        .stream()
        .try_clone()
        .expect("clone the client socket");
    let sender = thread::spawn(move || writer.write_all(&body));
    let resp = client.read_response("POST");
    assert_eq!((resp.status, resp.body.as_slice()), (413, &b"big!"[..]));
    // The rest of the body is read and dropped, not left to stall the client.
    sender
        .join()
        .expect("writer thread")
        .expect("the whole body is taken");
    server.join().expect("server thread");
}

#[test]
fn a_worker_out_of_pipes_copies_instead() {
    const CLIENTS: usize = MAX_PIPES + 6;
    const HALF: usize = 200 * 1024;
    let backend = RawBackend::start(|_| Reply::KeepAlive(ok_response("stored")));
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--splice-min", "4k"]);
    let base = open_fds(proxy.pid(), "pipe");
    // Every upload stops half-way, its span waiting for the client with a pipe lent.
    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        let body = bytes(2 * HALF, k as u8);
        let mut client = ResponseReader::connect(proxy.addr());
        let head = format!(
            "POST /up/{k} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            2 * HALF
        );
        client.send(head.as_bytes());
        client.send(&body[..HALF]);
        clients.push((client, body));
    }
    // All the pipes are lent, and no more: the uploads beyond go by copy.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let lent = (open_fds(proxy.pid(), "pipe") - base) / 2;
        assert!(lent <= MAX_PIPES, "{lent} pipes");
        if lent == MAX_PIPES {
            break;
        }
        assert!(Instant::now() < deadline, "only {lent} pipes lent");
        thread::sleep(Duration::from_millis(10));
    }
    for (client, body) in &mut clients {
        client.send(&body[HALF..]);
    }
    for (client, _) in &mut clients {
        let resp = client.read_response("POST");
        assert_eq!((resp.status, resp.body_text().as_str()), (200, "stored"));
    }
    let requests = backend.wait_requests(CLIENTS, IO_TIMEOUT);
    assert_eq!(requests.len(), CLIENTS);
    for got in &requests {
        let target = got.split(|&b| b == b' ').nth(1).expect("a request line");
        let k: usize = String::from_utf8_lossy(target)
            .trim_start_matches("/up/")
            .parse()
            .expect("a client number");
        let what = format!("upload of client {k}");
        assert_long_bytes_eq(after_head(got), &bytes(2 * HALF, k as u8), &what);
    }
}

/// Read from `stream` until `buf` holds at least `n` bytes, each read waiting at most
/// `IO_TIMEOUT`.
fn read_at_least(
    stream: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
) -> Result<(), String> {
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut chunk = vec![0u8; 64 * 1024];
    while buf.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) => return Err(format!("closed after {} of {n} bytes", buf.len())),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) => return Err(format!("{e} after {} of {n} bytes", buf.len())),
        }
    }
    Ok(())
}

/// Read a request head (through its blank line) from `conn`.
fn read_request_head(conn: &mut std::net::TcpStream) -> Result<Vec<u8>, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(format!("closed after {} bytes of a head", head.len())),
            Err(e) => return Err(format!("reading a head: {e}")),
        }
    }
    Ok(head)
}

#[test]
fn a_slow_upstream_body_reaches_the_client_as_it_comes() {
    // While a long body comes fast, the proxy's reads of it wait for a batch of bytes; an
    // upstream that sends a little, then waits, must not have those bytes held back for the
    // rest of the batch. Each piece below goes only once the client has the one before, so a
    // piece held until more comes stalls this test (the proxy's read timeout is 60 s, each read
    // here waits IO_TIMEOUT). Then the rest at once, and a short answer on the same upstream
    // connection: its socket reports the next head at its first byte again.
    const PIECE: usize = 1000;
    const PIECES: usize = 4;
    let body = bytes(BODY, 9);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local address").port();
    let (got_piece, piece_seen) = std::sync::mpsc::channel::<usize>();
    let sent = body.clone();
    let upstream = thread::spawn(move || -> Result<(), String> {
        // The proxy may probe the upstream first: a connection that closes without a byte.
        let mut conn = loop {
            let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
            conn.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(|e| e.to_string())?;
            conn.set_nodelay(true).map_err(|e| e.to_string())?;
            match read_request_head(&mut conn) {
                Ok(_) => break conn,
                Err(e) if e.starts_with("closed after 0 ") => continue,
                Err(e) => return Err(e),
            }
        };
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", sent.len());
        conn.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        for i in 0..PIECES {
            conn.write_all(&sent[i * PIECE..(i + 1) * PIECE])
                .map_err(|e| e.to_string())?;
            match piece_seen.recv_timeout(IO_TIMEOUT) {
                Ok(k) if k == i => {}
                other => return Err(format!("piece {i}: the client said {other:?}")),
            }
        }
        conn.write_all(&sent[PIECES * PIECE..])
            .map_err(|e| e.to_string())?;
        let second = read_request_head(&mut conn)?;
        if !second.starts_with(b"GET /second ") {
            return Err(format!(
                "second request: {}",
                String::from_utf8_lossy(&second)
            ));
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    let proxy = Proxy::with_upstreams(&[port], &[]);
    let mut client = connect(proxy.addr());
    client
        .write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("request");
    let mut got = Vec::new();
    let head_len = loop {
        if let Some(i) = find(&got, b"\r\n\r\n") {
            break i + 4;
        }
        let want = got.len() + 1;
        read_at_least(&mut client, &mut got, want).expect("a head");
    };
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", show(&got));
    for i in 0..PIECES {
        let asked = Instant::now();
        read_at_least(&mut client, &mut got, head_len + (i + 1) * PIECE)
            .unwrap_or_else(|e| panic!("piece {i} of the slow body: {e}"));
        // Held at most the batch wait (20 ms) and a timer tick; a second is room for a
        // loaded machine, far below the read timeout a forgotten batch would last until.
        let took = asked.elapsed();
        assert!(took < Duration::from_secs(1), "piece {i} took {took:?}");
        got_piece.send(i).expect("the upstream waits");
    }
    read_at_least(&mut client, &mut got, head_len + BODY).expect("the rest of the body");
    assert_long_bytes_eq(&got[head_len..], &body, "slow body");
    let mut client = ResponseReader::new(client);
    client.send(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response("GET");
    assert_eq!((resp.status, resp.body_text().as_str()), (200, "ok"));
    upstream
        .join()
        .expect("the upstream thread")
        .unwrap_or_else(|e| panic!("upstream: {e}"));
}

#[test]
fn a_batched_body_leaves_its_upstream_connection_ready_for_the_next_head() {
    // A long body sent at once is read in batches; before its last bytes the socket's mark is
    // back to one byte, so a five-byte answer on the same upstream connection comes at once
    // (a mark left behind would hold it until the read timeout).
    const SIZES: [usize; 3] = [1024 * 1024 + 3, 5, BODY];
    let backend = sized_backend(&SIZES);
    let proxy = Proxy::with_upstreams(&[backend.port()], &[]);
    let mut client = ResponseReader::connect(proxy.addr());
    for k in 0..2 * SIZES.len() {
        client.send(format!("GET /{k} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        read_sized_answer(&mut client, &SIZES, k);
    }
    assert_eq!(backend.used_connections(), 1, "upstream connections used");
}
