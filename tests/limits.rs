//! Resource limits under hostile or broken peers: slow heads, idle connections, slow
//! upstreams, clients that never read, abrupt resets, the connection limit. Each test checks
//! that the bad peer is cut off in time and that everyone else is unaffected: latency, memory,
//! file descriptors.

mod common;

use common::*;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A health interval long enough that no probe runs during a test after the first sweep:
/// probe sockets would show up in descriptor counts.
/// No health probes and no idle upstream pool: the proxy's socket count then moves only with
/// the connections a test makes, so leaks show as a count that does not come back.
const NO_PROBES: [&str; 4] = ["--health-interval", "1h", "--upstream-idle", "0"];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The sockets `pid` has open (pipes are left out: the proxy keeps a pool of pipes for
/// splice(2) once it has used them, which is not a leak).
#[track_caller]
fn fd_count(pid: u32) -> usize {
    open_fds(pid, "socket")
}

/// Wait until `pid` has exactly `want` sockets open; panics past `timeout` with the count.
#[track_caller]
fn wait_fd_count(pid: u32, want: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = fd_count(pid);
        if n == want {
            return;
        }
        if Instant::now() >= deadline {
            panic!("the proxy has {n} descriptors open {timeout:?} later, {want} before");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The descriptor count once it has not changed for 100 ms (the proxy is idle).
fn settled_fd_count(pid: u32) -> usize {
    let mut last = fd_count(pid);
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stable_since.elapsed() < Duration::from_millis(100) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        let n = fd_count(pid);
        if n != last {
            last = n;
            stable_since = Instant::now();
        }
    }
    last
}

/// The bytes `pid` has written so far (`wchar` of /proc/PID/io): it stops growing when the
/// process stops writing.
#[track_caller]
fn bytes_written(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/io");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => panic!("{path}: {e}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wchar in {path}"))
}

/// Close `stream` with a reset instead of a FIN (SO_LINGER 0).
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// One `GET path` on a kept connection; panics unless it is a 200.
#[track_caller]
fn get_ok(client: &mut ResponseReader, path: &str) {
    client.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
}

/// The `p`-th percentile (0..=100) of `samples`, sorted in place.
fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort_unstable();
    let idx = (samples.len() * p).div_ceil(100).saturating_sub(1);
    samples[idx.min(samples.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// Slowloris
// ---------------------------------------------------------------------------------------------

/// What happened to one dribbling connection.
struct Dribble {
    /// When its connect completed.
    connected: Instant,
    /// When the first response byte, or the close, arrived.
    cut: Option<Instant>,
    /// Everything it received.
    received: Vec<u8>,
    /// The proxy closed the connection (EOF or reset).
    closed: bool,
    /// Bytes of head it managed to send.
    sent: usize,
}

/// Open `n` connections and dribble `head` into each, one byte per `every`, from this one
/// thread with nonblocking sockets, until each is closed by the proxy or `give_up` passes.
/// `connected` counts the connections made, for the caller to start measuring once all are.
fn dribble(
    addr: SocketAddr,
    n: usize,
    head: &[u8],
    every: Duration,
    give_up: Duration,
    connected: &AtomicUsize,
) -> Vec<Dribble> {
    let mut socks = Vec::with_capacity(n);
    let mut state = Vec::with_capacity(n);
    for _ in 0..n {
        let s = connect(addr);
        let connected = Instant::now();
        s.set_nonblocking(true).expect("nonblocking");
        socks.push(Some(s));
        state.push(Dribble {
            connected,
            cut: None,
            received: Vec::new(),
            closed: false,
            sent: 0,
        });
    }
    connected.fetch_add(n, Ordering::SeqCst);
    let start = Instant::now();
    let mut next_byte = start;
    let mut chunk = [0u8; 4096];
    while socks.iter().any(Option::is_some) && start.elapsed() < give_up {
        let send_now = Instant::now() >= next_byte;
        if send_now {
            next_byte += every;
        }
        for (slot, d) in socks.iter_mut().zip(state.iter_mut()) {
            let Some(s) = slot else { continue };
            if send_now && d.sent < head.len() {
                // A failed write means the proxy has answered and shut its side: the read
                // below sees it.
                if let Ok(1) = s.write(&head[d.sent..d.sent + 1]) {
                    d.sent += 1;
                }
            }
            loop {
                match s.read(&mut chunk) {
                    Ok(0) => {
                        d.cut.get_or_insert_with(Instant::now);
                        d.closed = true;
                        *slot = None;
                        break;
                    }
                    Ok(k) => {
                        d.cut.get_or_insert_with(Instant::now);
                        d.received.extend_from_slice(&chunk[..k]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        d.cut.get_or_insert_with(Instant::now);
                        d.closed = true;
                        *slot = None;
                        break;
                    }
                }
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    state
}

#[test]
fn slowloris_is_cut_at_the_header_deadline_while_other_clients_stay_fast() {
    const DRIBBLERS: usize = 300;
    const THREADS: usize = 3;
    let header_timeout = Duration::from_secs(1);
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--client-header-timeout", "1s"]);
    let addr = proxy.addr();
    // A head that would take 30 s to arrive at 10 bytes a second.
    let mut head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Padding: ".to_vec();
    head.resize(300, b'p');
    head.extend_from_slice(b"\r\n\r\n");

    let connected = Arc::new(AtomicUsize::new(0));
    let dribblers: Vec<_> = (0..THREADS)
        .map(|_| {
            let head = head.clone();
            let connected = Arc::clone(&connected);
            thread::spawn(move || {
                dribble(
                    addr,
                    DRIBBLERS / THREADS,
                    &head,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                    &connected,
                )
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while connected.load(Ordering::SeqCst) < DRIBBLERS {
        assert!(Instant::now() < deadline, "the dribblers could not connect");
        thread::sleep(Duration::from_millis(1));
    }

    // Normal clients, one request per new connection, all through the attack and past the
    // moment the dribblers are cut off.
    let attack_started = Instant::now();
    let mut latencies = Vec::new();
    while attack_started.elapsed() < Duration::from_millis(1500) {
        let t = Instant::now();
        let (status, body) = get(addr, "/");
        latencies.push(t.elapsed());
        assert_eq!(status, 200, "a normal request during the attack: {body:?}");
        thread::sleep(Duration::from_millis(5));
    }

    let results: Vec<Dribble> = dribblers
        .into_iter()
        .flat_map(|t| t.join().expect("dribbler thread"))
        .collect();
    let samples = latencies.len();
    let p50 = percentile(&mut latencies, 50);
    let p99 = percentile(&mut latencies, 99);
    let max = percentile(&mut latencies, 100);
    println!(
        "slowloris: {DRIBBLERS} dribblers; {samples} normal requests: p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    assert!(
        p99 < Duration::from_millis(200),
        "p99 latency of normal requests during the attack: {p99:?}"
    );

    let mut cut_after: Vec<Duration> = Vec::new();
    for (i, d) in results.iter().enumerate() {
        let Some(cut) = d.cut else {
            panic!("dribbler {i} was never cut off (sent {} bytes)", d.sent);
        };
        assert!(
            d.closed,
            "dribbler {i} got {} but no close",
            show(&d.received)
        );
        assert!(
            d.received.is_empty() || d.received == local_answer(408, true),
            "dribbler {i} received: {}",
            show(&d.received)
        );
        let after = cut - d.connected;
        assert!(
            after >= header_timeout - Duration::from_millis(50)
                && after <= header_timeout + Duration::from_millis(750),
            "dribbler {i} was cut {after:?} after connecting, for a {header_timeout:?} header timeout"
        );
        cut_after.push(after);
    }
    let answered = results.iter().filter(|d| !d.received.is_empty()).count();
    println!(
        "slowloris: dribblers cut after {:?}..{:?}; {answered} got the 408, the rest a close",
        percentile(&mut cut_after, 0),
        percentile(&mut cut_after, 100)
    );
}

// ---------------------------------------------------------------------------------------------
// Idle and slow peers
// ---------------------------------------------------------------------------------------------

#[test]
fn idle_keep_alive_connection_closes_at_the_timeout_and_a_busy_one_stays() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--keepalive-timeout", "300ms"]);
    let addr = proxy.addr();

    // A connection that sends a request every 150 ms outlives the 300 ms timeout many times.
    let busy = thread::spawn(move || {
        let mut client = ResponseReader::connect(addr);
        let started = Instant::now();
        for i in 0..8 {
            get_ok(&mut client, &format!("/busy/{i}"));
            thread::sleep(Duration::from_millis(150));
        }
        started.elapsed()
    });

    let mut idle = ResponseReader::connect(addr);
    get_ok(&mut idle, "/idle");
    let idle_since = Instant::now();
    idle.expect_close(Duration::from_secs(3));
    let idle_for = idle_since.elapsed();
    assert!(
        idle_for >= Duration::from_millis(250) && idle_for <= Duration::from_millis(800),
        "an idle connection closed after {idle_for:?} for a 300 ms keep-alive timeout"
    );
    let busy_for = busy.join().expect("busy client");
    assert!(busy_for >= Duration::from_millis(1200), "{busy_for:?}");
}

#[test]
fn slow_upstream_gets_504_at_the_read_timeout_and_the_connection_stays_usable() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--read-timeout", "300ms"]);
    let mut client = ResponseReader::connect(proxy.addr());
    let started = Instant::now();
    client.send(b"GET /slow?ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = client.read_response("GET");
    let elapsed = started.elapsed();
    assert_bytes_eq(&resp.raw, &local_answer(504, false), "the answer");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed <= Duration::from_millis(1000),
        "504 after {elapsed:?} for a 300 ms read timeout"
    );
    // The request was complete and the 504 did not say close: the connection is reusable.
    get_ok(&mut client, "/");
}

#[test]
fn upstream_stalling_after_the_response_head_closes_the_client_connection() {
    let partial_cl: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
    let partial_chunked: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n";
    for (what, reply) in [("content-length", partial_cl), ("chunked", partial_chunked)] {
        // The backend sends the head and part of the body, then nothing more (it waits for a
        // next request that never comes).
        let backend = RawBackend::fixed(reply);
        let proxy = Proxy::with_upstreams(&[backend.port()], &["--read-timeout", "300ms"]);
        let mut stream = connect(proxy.addr());
        let started = Instant::now();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("send");
        let got = read_until_eof(&mut stream, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("{what}: not closed: {e}"));
        let elapsed = started.elapsed();
        // Exactly what the upstream sent (the head rewritten the same), and nothing that
        // would complete it.
        assert_bytes_eq(&got, reply, what);
        assert!(
            elapsed >= Duration::from_millis(250) && elapsed <= Duration::from_millis(1000),
            "{what}: closed after {elapsed:?} for a 300 ms read timeout"
        );
    }
}

#[test]
fn client_that_never_reads_is_closed_at_the_write_timeout_with_bounded_memory() {
    const BYTES: usize = 100 * 1024 * 1024;
    let write_timeout = Duration::from_millis(500);
    let dummies = Dummies::start(1);
    let mut args = vec!["--write-timeout", "500ms"];
    args.extend(NO_PROBES);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &args);
    let pid = proxy.pid();
    // Warm up (buffers allocated once), then the baselines.
    assert_eq!(get(proxy.addr(), "/").0, 200);
    let fds = settled_fd_count(pid);
    let rss_before = vm_rss_kib(pid);

    let mut stream = connect(proxy.addr());
    let sent = Instant::now();
    stream
        .write_all(format!("GET /big?bytes={BYTES} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .expect("send");
    // Watch the proxy stop writing (the kernel buffers towards us are full), then close.
    let mut last_written = bytes_written(pid);
    let mut stalled_at = Instant::now();
    let mut rss_peak = rss_before;
    let deadline = sent + Duration::from_secs(10);
    let closed_at = loop {
        thread::sleep(Duration::from_millis(10));
        let now = Instant::now();
        rss_peak = rss_peak.max(vm_rss_kib(pid));
        let written = bytes_written(pid);
        if written != last_written {
            last_written = written;
            stalled_at = now;
        }
        if fd_count(pid) == fds {
            break now;
        }
        assert!(
            now < deadline,
            "the proxy still holds the connection 10 s later"
        );
    };
    let rss_after = vm_rss_kib(pid);
    let stalled = stalled_at - sent;
    let closed_after_stall = closed_at - stalled_at;
    println!(
        "never-reading client: proxy writes stalled {stalled:?} after the request, closed \
         {closed_after_stall:?} later; RSS before {rss_before} KiB, peak {rss_peak} KiB, \
         after {rss_after} KiB"
    );
    assert!(
        closed_after_stall >= write_timeout - Duration::from_millis(150)
            && closed_after_stall <= write_timeout + Duration::from_millis(750),
        "closed {closed_after_stall:?} after the last write, for a {write_timeout:?} write timeout"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB"
    );

    // What was in flight still arrives, then EOF: a response that is visibly incomplete.
    let got = read_until_eof(&mut stream, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    let head_end = find(&got, b"\r\n\r\n").map_or(0, |i| i + 4);
    let head = parse_response_head(&got[..head_end]).unwrap_or_else(|e| panic!("{e}"));
    let length = format!("{BYTES}");
    assert_eq!(
        (
            head.status,
            head.headers.iter().find(|(n, _)| n == "Content-Length")
        ),
        (200, Some(&("Content-Length".to_string(), length))),
        "{}",
        show(&got[..head_end])
    );
    assert!(
        got.len() < BYTES,
        "the whole body arrived ({} bytes)",
        got.len()
    );
    assert_eq!(get(proxy.addr(), "/").0, 200);
}

#[test]
fn idle_websocket_tunnel_is_closed_at_the_read_timeout() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--read-timeout", "300ms"]);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(UPGRADE_REQUEST);
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 101, "{}", show(&resp.raw));
    // Traffic every 150 ms keeps it open well past 300 ms.
    for i in 0..5 {
        let msg = format!("ping {i}");
        client.send(msg.as_bytes());
        assert_eq!(client.read_bytes(msg.len()), msg.as_bytes());
        thread::sleep(Duration::from_millis(150));
    }
    // Then silence: closed at the read timeout, counted from the last byte (the echo above,
    // 150 ms ago).
    let quiet_since = Instant::now();
    client.expect_close(Duration::from_secs(3));
    let quiet = quiet_since.elapsed();
    assert!(
        quiet >= Duration::from_millis(100) && quiet <= Duration::from_millis(800),
        "an idle tunnel closed {quiet:?} after the last byte + 150 ms, for a 300 ms read timeout"
    );
}

// ---------------------------------------------------------------------------------------------
// Resets and descriptors
// ---------------------------------------------------------------------------------------------

#[test]
fn two_thousand_abrupt_resets_leak_no_file_descriptors() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &NO_PROBES);
    let pid = proxy.pid();
    assert_eq!(get(proxy.addr(), "/").0, 200);
    let fds = settled_fd_count(pid);

    let started = Instant::now();
    for i in 0..2000 {
        let mut s = connect(proxy.addr());
        let bytes: &[u8] = match i % 6 {
            0 => b"",
            1 => b"GET / HTTP/1.1\r\nHo",
            2 => b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            // The upstream is still working when the client goes.
            3 => b"GET /slow?ms=50 HTTP/1.1\r\nHost: t\r\n\r\n",
            // A body that never comes.
            4 => b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc",
            // A response larger than the socket buffers, abandoned.
            _ => b"GET /big?bytes=4000000 HTTP/1.1\r\nHost: t\r\n\r\n",
        };
        let _ = s.write_all(bytes);
        if i % 12 == 2 {
            // Sometimes let the proxy get going first.
            thread::sleep(Duration::from_millis(1));
        }
        reset(s);
    }
    let resets_took = started.elapsed();
    let settle = Instant::now();
    wait_fd_count(pid, fds, Duration::from_secs(10));
    println!(
        "resets: 2000 in {resets_took:?}; descriptors back to {fds} after {:?}",
        settle.elapsed()
    );
    assert_eq!(get(proxy.addr(), "/").0, 200);
    assert!(proxy.logs().iter().all(|l| !l.contains("panicked")));
}

#[test]
fn clients_vanishing_mid_upload_and_mid_download_leave_the_proxy_healthy() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &NO_PROBES);
    let pid = proxy.pid();
    assert_eq!(get(proxy.addr(), "/").0, 200);
    let fds = settled_fd_count(pid);

    // Mid-upload: 1 MiB of a 10 MiB body, then a reset.
    let mut up = connect(proxy.addr());
    up.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n")
        .expect("send the head");
    let mib = vec![b'u'; 1024 * 1024];
    up.write_all(&mib).expect("send 1 MiB of body");
    reset(up);

    // Mid-download: 1 MiB of a 50 MB body, then a reset.
    let mut down = connect(proxy.addr());
    down.write_all(b"GET /big?bytes=50000000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let mut got = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    while got < 1024 * 1024 {
        match down.read(&mut chunk) {
            Ok(0) => panic!("closed after {got} bytes"),
            Ok(n) => got += n,
            Err(e) => panic!("read after {got} bytes: {e}"),
        }
    }
    reset(down);

    wait_fd_count(pid, fds, Duration::from_secs(5));
    assert_eq!(get(proxy.addr(), "/").0, 200);
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    let resp = client.read_response("POST");
    // The dummy's /echo answers with the request as it received it, body last.
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    assert!(resp.body.ends_with(b"\r\n\r\nhello"), "{}", show(&resp.raw));
}

#[test]
fn a_client_that_resets_while_its_first_request_waits_lets_the_upstream_request_go() {
    // A new connection's client socket joins the epoll set only once the session waits for it,
    // or after a few milliseconds of waiting on the upstream: a client that gives up on a slow
    // first request must still be noticed, and its upstream connection closed, long before
    // the read timeout.
    let backend = RawBackend::start(|_| Reply::Never);
    let proxy = Proxy::with_upstreams(&[backend.port()], &["--read-timeout", "30s"]);
    for (i, close) in ["Connection: close\r\n", ""].into_iter().enumerate() {
        let mut client = connect(proxy.addr());
        let head = format!("GET /slow HTTP/1.1\r\nHost: t\r\n{close}\r\n");
        client.write_all(head.as_bytes()).expect("send the request");
        backend.wait_requests(i + 1, Duration::from_secs(5));
        let started = Instant::now();
        reset(client);
        assert!(
            backend.wait_ended_since(0, Duration::from_secs(3)),
            "request {i}: the upstream connection is still open {:?} after the client reset",
            started.elapsed()
        );
    }
    assert!(proxy.logs().iter().all(|l| !l.contains("panicked")));
}

// ---------------------------------------------------------------------------------------------
// The connection limit
// ---------------------------------------------------------------------------------------------

#[test]
fn accepting_pauses_at_max_connections_and_resumes_when_some_close() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--max-connections", "50"]);
    let mark = proxy.log_mark();
    // 50 kept-alive connections, each with a request answered.
    let mut open: Vec<ResponseReader> = (0..50)
        .map(|i| {
            let mut c = ResponseReader::connect(proxy.addr());
            get_ok(&mut c, &format!("/keep/{i}"));
            c
        })
        .collect();

    // The 51st: the kernel completes the handshake (backlog), the proxy does not accept it.
    let mut extra = ResponseReader::connect(proxy.addr());
    extra.send(b"GET /51 HTTP/1.1\r\nHost: t\r\n\r\n");
    extra.expect_open_and_quiet(Duration::from_millis(300));
    let line = proxy.wait_for_log_since(
        mark,
        "connections open, the limit: accepting paused",
        LOG_TIMEOUT,
    );
    assert!(line.contains("WARN"), "not a warning: {line}");

    // Ten close: the 51st is accepted and answered at once.
    for c in open.drain(..10) {
        let _ = c.stream().shutdown(Shutdown::Both);
    }
    let closed = Instant::now();
    let resp = extra.read_response("GET");
    let waited = closed.elapsed();
    assert_eq!(resp.status, 200, "{}", show(&resp.raw));
    assert!(
        waited < Duration::from_millis(500),
        "the 51st was answered {waited:?} after connections closed"
    );
    // The 40 still open are still served.
    for (i, c) in open.iter_mut().enumerate() {
        get_ok(c, &format!("/again/{i}"));
    }
}

/// The open-files hard limit the proxy will raise itself to (it inherits ours).
fn nofile_hard_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    usize::try_from(lim.rlim_max).unwrap_or(usize::MAX)
}

#[test]
fn fifty_upstreams_and_two_workers_leave_clients_ninety_percent_of_the_descriptors() {
    let backends: Vec<RawBackend> = (0..50)
        .map(|_| RawBackend::fixed(&ok_response("ok")))
        .collect();
    let ports: Vec<u16> = backends.iter().map(RawBackend::port).collect();
    let proxy = Proxy::with_upstreams(&ports, &["--workers", "2", "--health-interval", "1h"]);
    let line = proxy.wait_for_log("listening on", LOG_TIMEOUT);
    let limit: usize = line
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no connection limit in {line:?}"));
    // Without any idle pool, each client could have two descriptors of what is left after
    // the reserve (64): the default must leave clients at least 90 % of that.
    let without_pool = nofile_hard_limit().min(1 << 30).saturating_sub(64) / 2;
    assert!(
        limit * 10 >= without_pool * 9,
        "{limit} client connections of a possible {without_pool}: {line}"
    );
    // And the pool still works across all fifty: two rounds, the second on reused connections.
    let mut client = ResponseReader::connect(proxy.addr());
    for i in 0..100 {
        get_ok(&mut client, &format!("/{i}"));
    }
    let connections: usize = backends.iter().map(RawBackend::connection_count).sum();
    // 50 probes at start, and at most one connection per upstream for the requests (one client,
    // one request at a time: each connection goes back to the pool before the next pick).
    assert!(
        connections <= 100,
        "{connections} connections for 100 requests"
    );
}

#[test]
fn a_worker_hovering_at_the_limit_logs_each_resume_only_after_a_logged_pause() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--max-connections", "4"]);
    let mark = proxy.log_mark();
    let addr = proxy.addr();
    let deadline = Instant::now() + Duration::from_millis(800);
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let served = Arc::clone(&served);
            thread::spawn(move || {
                while Instant::now() < deadline {
                    let reply = send_raw(
                        addr,
                        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    );
                    if reply.starts_with(b"HTTP/1.1 200") {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    assert!(
        served.load(Ordering::Relaxed) > 50,
        "the clients were served"
    );
    let logs = proxy.logs();
    let since = &logs[mark..];
    let paused = since
        .iter()
        .filter(|l| l.contains("accepting paused"))
        .count();
    let resumed = since
        .iter()
        .filter(|l| l.contains("accepting again"))
        .count();
    assert!(paused >= 1, "16 clients over a limit of 4 paused accepting");
    assert!(
        resumed <= paused,
        "{resumed} 'accepting again' lines for {paused} warnings"
    );
}
