//! `[client_limits] shared`: per-client rate counts shared between instances through a real
//! `redis-server` (a child process on an ephemeral port, no mock). Two instances sharing a
//! limit let a client spraying both through about what one instance would; Redis killed
//! mid-run leaves each instance on its own limit (logged once, `goround_shared_limits_up` 0),
//! and Redis back brings the sharing back.
//!
//! redis-server comes from Debian's `redis-server` package (`.ci/run` installs it). Without it
//! these tests are ignored, with the reason (see build.rs), unless `GOROUND_REQUIRE_REDIS=1`
//! (CI sets it).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The redis-server binary (the tests that call this are ignored where build.rs found none).
fn redis() -> PathBuf {
    match which("redis-server") {
        Some(b) => b,
        None => panic!("redis-server is required here (apt-get install redis-server)"),
    }
}

/// A redis-server child on 127.0.0.1:`port`, without persistence.
struct Redis {
    server: Spawned,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    fn start(binary: &Path, port: u16) -> Redis {
        let dir = TempDir::new();
        let mut cmd = Command::new(binary);
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            // DEBUG SLEEP plays a slow Redis.
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(dir.path());
        let server = spawn(cmd, "redis-server");
        let redis = Redis {
            server,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while redis.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on {port}: {:?}",
                redis.server.stdout.snapshot()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn command(&self, args: &[&str]) -> Option<String> {
        redis_command(self.port, args)
    }

    fn kill(&mut self) {
        self.server.child.signal(libc::SIGKILL);
        let _ = self.server.child.wait_exit(IO_TIMEOUT);
    }
}

/// Send one command to the Redis on `port`; its reply's first line, or the bulk string's
/// value (`None`: no connection, or a nil reply).
fn redis_command(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(out.as_bytes()).ok()?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some(first) = text.split("\r\n").next().filter(|_| text.contains("\r\n")) else {
            continue;
        };
        if first == "$-1" {
            return None;
        }
        if let Some(len) = first.strip_prefix('$') {
            let len: usize = len.parse().ok()?;
            let body = &text[first.len() + 2..];
            if body.len() < len + 2 {
                continue;
            }
            return Some(body[..len].to_string());
        }
        return Some(first.to_string());
    }
}

/// Wait until the sample `name` on `proxy`'s admin listener reads `want`.
#[track_caller]
fn wait_metric(proxy: &Proxy, name: &str, want: &str, timeout: Duration) {
    let admin = proxy.admin_addr();
    let deadline = Instant::now() + timeout;
    loop {
        let got = metric(admin, name);
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {got:?}, want {want}, after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(rate: u32, burst: u32, redis_port: Option<u16>, backend: u16) -> String {
    let shared = redis_port
        .map(|p| format!("shared = \"redis://127.0.0.1:{p}/0\"\n"))
        .unwrap_or_default();
    format!(
        "[client_limits]\nrequests_per_second = {rate}\nburst = {burst}\n{shared}\
         [pools.p]\nupstreams = [\"127.0.0.1:{backend}\"]\n"
    )
}

/// For `secs`, send `per_second` requests a second from one client, alternately to each of
/// `proxies` on a keep-alive connection each; (200s, 429s).
fn spray(proxies: &[&Proxy], per_second: u32, secs: f64) -> (usize, usize) {
    let mut conns: Vec<ResponseReader> = proxies
        .iter()
        .map(|p| ResponseReader::connect(p.addr()))
        .collect();
    let gap = Duration::from_secs_f64(1.0 / f64::from(per_second));
    let (mut ok, mut limited) = (0, 0);
    let start = Instant::now();
    let mut next = start;
    let mut i = 0;
    while start.elapsed().as_secs_f64() < secs {
        let c = &mut conns[i % proxies.len()];
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        match c.read_response("GET").status {
            200 => ok += 1,
            429 => limited += 1,
            other => panic!("status {other}"),
        }
        i += 1;
        next += gap;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    (ok, limited)
}

#[test]
#[cfg_attr(
    not(goround_has_redis),
    ignore = "needs redis-server (apt-get install redis-server, then touch build.rs)"
)]
fn two_instances_sharing_a_limit_let_through_what_one_would() {
    let binary = redis();
    let redis = Redis::start(&binary, free_port());
    let dummies = Dummies::start(1);
    let (rate, burst, secs) = (40u32, 5u32, 4.0);
    let text = config(rate, burst, Some(redis.port), dummies.port(0));
    let (a, _da) = Proxy::with_config(&text, &["--admin", "127.0.0.1:0"]);
    let (b, _db) = Proxy::with_config(&text, &["--admin", "127.0.0.1:0"]);
    for p in [&a, &b] {
        wait_metric(p, "goround_shared_limits_up", "1", STARTUP_TIMEOUT);
        p.wait_for_log(
            "shared limits: exchanging counts with Redis at redis://127.0.0.1:",
            LOG_TIMEOUT,
        );
    }
    // Ten times the rate, half to each instance.
    let (ok, limited) = spray(&[&a, &b], rate * 10, secs);
    let most = f64::from(rate) * secs * 1.1 + f64::from(burst);
    let least = f64::from(rate) * secs * 0.8;
    assert!(
        (ok as f64) <= most && (ok as f64) >= least,
        "{ok} allowed ({limited} limited) in {secs} s at {rate}/s shared: want {least}..={most}"
    );
    // The fleet's count is in Redis under the documented key: a TAT in Unix µs, near now.
    let tat: u64 = redis
        .command(&["GET", "goround:rate:all:127.0.0.1"])
        .and_then(|v| v.parse().ok())
        .expect("the client's key in Redis");
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    assert!(
        tat.abs_diff(now_us) < 5_000_000,
        "TAT {tat} vs now {now_us}"
    );
    for p in [&a, &b] {
        assert_eq!(metric_count(p.admin_addr(), "goround_shared_limits_up"), 1);
        let sent = metric_count(p.admin_addr(), "goround_shared_limits_clients_sent_total");
        assert!(sent >= 10, "{sent} counts sent");
    }

    // The same two instances without sharing let through about twice as many: the figure above
    // is the sharing's doing.
    let text = config(rate, burst, None, dummies.port(0));
    let (c, _dc) = Proxy::with_config(&text, &[]);
    let (d, _dd) = Proxy::with_config(&text, &[]);
    let (alone, _) = spray(&[&c, &d], rate * 10, secs);
    assert!(
        alone as f64 > most * 1.5,
        "unshared: {alone} allowed, shared: {ok}"
    );
}

#[test]
#[cfg_attr(
    not(goround_has_redis),
    ignore = "needs redis-server (apt-get install redis-server, then touch build.rs)"
)]
fn redis_down_leaves_local_limits_and_redis_back_shares_again() {
    let binary = redis();
    let port = free_port();
    let mut redis = Redis::start(&binary, port);
    let dummies = Dummies::start(1);
    let text = config(20, 0, Some(port), dummies.port(0));
    let (proxy, _dir) = Proxy::with_config(&text, &["--admin", "127.0.0.1:0"]);
    wait_metric(&proxy, "goround_shared_limits_up", "1", STARTUP_TIMEOUT);

    redis.kill();
    wait_metric(
        &proxy,
        "goround_shared_limits_up",
        "0",
        Duration::from_secs(5),
    );
    let down = "shared limits: Redis at redis://127.0.0.1:";
    proxy.wait_for_log(down, LOG_TIMEOUT);
    // Still limited, by this instance alone: a quick run of 30 gets 1 or 2 through.
    let mut c = ResponseReader::connect(proxy.addr());
    let mut statuses = Vec::new();
    for _ in 0..30 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        statuses.push(c.read_response("GET").status);
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert!((1..=3).contains(&ok), "{statuses:?}");
    assert_eq!(ok + statuses.iter().filter(|&&s| s == 429).count(), 30);
    // Several reconnection attempts fail (backoff 100 ms, 200 ms, …); the log says it once.
    let failures_before = metric_count(
        proxy.admin_addr(),
        "goround_shared_limits_syncs_total{result=\"error\"}",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let failures = metric_count(
            proxy.admin_addr(),
            "goround_shared_limits_syncs_total{result=\"error\"}",
        );
        if failures >= failures_before + 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnection attempts");
        std::thread::sleep(Duration::from_millis(50));
    }
    let said = proxy
        .logs()
        .iter()
        .filter(|l| l.contains(down) && l.contains("per instance"))
        .count();
    assert_eq!(said, 1, "logged once: {:?}", proxy.logs());

    // Back on the same port: the next attempt (at most BACKOFF_MAX later) shares again.
    let redis = Redis::start(&binary, port);
    wait_metric(
        &proxy,
        "goround_shared_limits_up",
        "1",
        Duration::from_secs(8),
    );
    proxy.wait_for_log("is back, counts are shared again", LOG_TIMEOUT);
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    let deadline = Instant::now() + Duration::from_secs(2);
    while redis
        .command(&["GET", "goround:rate:all:127.0.0.1"])
        .is_none()
    {
        assert!(Instant::now() < deadline, "the count never reached Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[cfg_attr(
    not(goround_has_redis),
    ignore = "needs redis-server (apt-get install redis-server, then touch build.rs)"
)]
fn a_slow_redis_never_holds_a_request() {
    let binary = redis();
    let redis = Redis::start(&binary, free_port());
    let dummies = Dummies::start(1);
    let text = config(1000, 100, Some(redis.port), dummies.port(0));
    let (proxy, _dir) = Proxy::with_config(&text, &["--admin", "127.0.0.1:0"]);
    wait_metric(&proxy, "goround_shared_limits_up", "1", STARTUP_TIMEOUT);
    // Warm the exchange so that the next one is in flight when Redis stalls.
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);

    // Redis answers nothing for 3 s.
    let port = redis.port;
    let stall = std::thread::spawn(move || {
        let reply = redis_command(port, &["DEBUG", "SLEEP", "3"]);
        (reply, Instant::now())
    });
    // The stall has begun once a PING goes unanswered.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", redis.port)).expect("redis accepts");
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let _ = s.write_all(b"PING\r\n");
        if s.read(&mut [0u8; 16]).is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "DEBUG SLEEP did not stall redis");
    }
    // Meanwhile every request is answered, none waiting on Redis: all before the stall ends.
    for _ in 0..50 {
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.read_response("GET").status, 200);
    }
    let answered = Instant::now();
    // The exchange times out (500 ms) while Redis sleeps: the metric says so.
    wait_metric(
        &proxy,
        "goround_shared_limits_up",
        "0",
        Duration::from_secs(3),
    );
    let (reply, stall_end) = stall.join().expect("stall thread");
    assert_eq!(reply.as_deref(), Some("+OK"));
    assert!(answered < stall_end, "requests waited for Redis");
    // And it is back once Redis is.
    wait_metric(
        &proxy,
        "goround_shared_limits_up",
        "1",
        Duration::from_secs(8),
    );
}
