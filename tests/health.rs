//! Health: a backend that dies leaves the rotation without costing a request, and comes back
//! after the health sweep sees it again. All down: 503 at once.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The sweep interval for these tests: short, so a restarted backend is back within 200 ms.
const HEALTH_INTERVAL: &str = "200ms";
/// Client threads of the chaos tests.
const LOAD_THREADS: usize = 8;
/// Hard stop for the load threads even if the test forgets to stop them.
const LOAD_MAX: Duration = Duration::from_secs(20);
/// How long the load may take to reach each milestone (thousands of requests take well under a
/// second on a debug build; this only bounds a stuck proxy).
const LOAD_WAIT: Duration = Duration::from_secs(8);

/// What the load threads have seen.
#[derive(Default)]
struct Tally {
    /// Responses per dummy port.
    by_port: HashMap<u16, u64>,
    /// Successful (200 + dummy hello) responses.
    ok: u64,
    /// Every non-200, malformed body or transport error.
    failed: u64,
    /// The first few failures, described.
    failures: Vec<String>,
}

/// How many failure descriptions to keep: enough to diagnose, short enough to read.
const FAILURES_KEPT: usize = 10;

/// Client threads looping keep-alive GETs through the proxy.
struct Load {
    tally: Arc<(Mutex<Tally>, Condvar)>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let tally = Arc::new((Mutex::new(Tally::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..LOAD_THREADS)
            .map(|_| {
                let tally = Arc::clone(&tally);
                let stop = Arc::clone(&stop);
                thread::spawn(move || load_loop(addr, &tally, &stop))
            })
            .collect();
        Load {
            tally,
            stop,
            threads,
        }
    }

    fn ok(&self) -> u64 {
        self.tally.0.lock().map(|t| t.ok).unwrap_or(0)
    }

    fn count(&self, port: u16) -> u64 {
        self.tally
            .0
            .lock()
            .map(|t| t.by_port.get(&port).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Wait until `done(tally)` holds, failing after `timeout`.
    #[track_caller]
    fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&Tally) -> bool) {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.tally;
        let mut t = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !done(&t) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "load: {what} not reached within {timeout:?} ({} ok, by port {:?}, {} failed, e.g. {:?})",
                t.ok,
                t.by_port,
                t.failed,
                t.failures
            );
            t = cv
                .wait_timeout(t, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait for `n` more good answers than now.
    #[track_caller]
    fn wait_more(&self, n: u64) {
        let target = self.ok() + n;
        self.wait_until(&format!("{target} good answers"), LOAD_WAIT, |t| {
            t.ok >= target
        });
    }

    fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let (lock, _) = &*self.tally;
        std::mem::take(&mut *lock.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn load_loop(addr: SocketAddr, tally: &(Mutex<Tally>, Condvar), stop: &AtomicBool) {
    let started = Instant::now();
    let mut conn: Option<ResponseReader> = None;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < LOAD_MAX {
        let outcome = one_request(addr, &mut conn);
        let (lock, cv) = tally;
        let mut t = lock.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(port) => {
                t.ok += 1;
                *t.by_port.entry(port).or_default() += 1;
            }
            Err(e) => {
                t.failed += 1;
                if t.failures.len() < FAILURES_KEPT {
                    t.failures.push(e);
                }
            }
        }
        drop(t);
        cv.notify_all();
    }
}

/// One GET on the kept connection (a new one when there is none): the answering port.
fn one_request(addr: SocketAddr, conn: &mut Option<ResponseReader>) -> Result<u16, String> {
    if conn.is_none() {
        let stream =
            TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        *conn = Some(ResponseReader::new(stream));
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let result = c
        .try_send(b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n")
        .map_err(|e| format!("write: {e}"))
        .and_then(|()| c.try_read_response("GET"));
    match result {
        Ok(resp) => {
            if resp.has_token("Connection", "close") {
                *conn = None; // the proxy said so: not an error, just reconnect
            }
            let body = resp.body_text();
            let port = body
                .strip_prefix("Hello from Server ")
                .and_then(|r| r.strip_suffix('\n'))
                .and_then(|p| p.parse().ok());
            match (resp.status, port) {
                (200, Some(port)) => Ok(port),
                _ => Err(format!("unexpected response: {}", show(&resp.raw))),
            }
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

/// The chaos story: under load from 8 keep-alive clients, backend B dies (by `signal`) and is
/// restarted; not one request may fail, and B must take traffic again once it is up.
fn chaos(signal: libc::c_int) {
    let mut dummies = Dummies::start(3);
    let b = dummies.port(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--health-interval", HEALTH_INTERVAL]);
    let load = Load::start(proxy.addr());
    load.wait_more(500);

    let mark = proxy.log_mark();
    if signal == libc::SIGKILL {
        dummies.kill_hard(1);
    } else {
        dummies.kill(1);
    }
    proxy.wait_for_log_since(mark, &down_line(b), LOG_TIMEOUT);
    // Long enough for many health sweeps and round-robin laps without B.
    load.wait_more(2000);

    let mark = proxy.log_mark();
    dummies.restart(1);
    proxy.wait_for_log_since(mark, &up_line(b), LOG_TIMEOUT);
    let b_back = load.count(b);
    load.wait_until("B serving again", LOAD_WAIT, |t| {
        t.by_port.get(&b).copied().unwrap_or(0) >= b_back + 300
    });

    let tally = load.stop();
    assert_eq!(
        tally.failed, 0,
        "{} failed next to {} good answers, e.g. {:?}",
        tally.failed, tally.ok, tally.failures
    );
    // With the load stopped, plain sequential requests reach B again.
    let seen: Vec<u16> = (0..6).map(|_| get_port(proxy.addr())).collect();
    assert!(
        seen.contains(&b),
        "B missing from sequential answers: {seen:?}"
    );

    let logs = proxy.logs();
    let down = logs.iter().position(|l| l.contains(&down_line(b)));
    let up = logs.iter().rposition(|l| l.contains(&up_line(b)));
    assert!(
        matches!((down, up), (Some(d), Some(u)) if d < u),
        "the log must show B down, then up"
    );
}

#[test]
fn sigterm_of_a_backend_under_load_loses_no_request() {
    chaos(libc::SIGTERM);
}

#[test]
fn sigkill_of_a_backend_under_load_loses_no_request() {
    chaos(libc::SIGKILL);
}

#[test]
fn dead_backend_leaves_the_rotation_and_rejoins_after_restart() {
    let mut dummies = Dummies::start(3);
    let (a, b, c) = (dummies.port(0), dummies.port(1), dummies.port(2));
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--health-interval", HEALTH_INTERVAL]);
    dummies.kill(1);
    proxy.wait_for_log(&down_line(b), LOG_TIMEOUT);

    let seen: Vec<u16> = (0..10).map(|_| get_port(proxy.addr())).collect();
    assert!(seen.iter().all(|p| *p == a || *p == c), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] != w[1]),
        "A and C must alternate strictly: {seen:?} (A={a}, C={c})"
    );

    let mark = proxy.log_mark();
    dummies.restart(1);
    proxy.wait_for_log_since(mark, &up_line(b), LOG_TIMEOUT);
    let mut seen: Vec<u16> = (0..6).map(|_| get_port(proxy.addr())).collect();
    assert!(seen.contains(&b), "B is not back in the rotation: {seen:?}");
    seen.sort_unstable();
    seen.dedup();
    let mut all = vec![a, b, c];
    all.sort_unstable();
    assert_eq!(seen, all);
}

#[test]
fn all_down_answers_503_at_once_and_recovers() {
    let mut dummies = Dummies::start(2);
    let (a, b) = (dummies.port(0), dummies.port(1));
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--health-interval", HEALTH_INTERVAL]);
    let mark = proxy.log_mark();
    dummies.kill(0);
    dummies.kill(1);
    // Live requests eject at most half of the pool (max_ejected_percent); the checks take
    // every dead one out.
    proxy.wait_for_log_since(mark, &down_line(a), LOG_TIMEOUT);
    proxy.wait_for_log_since(mark, &down_line(b), LOG_TIMEOUT);

    let started = Instant::now();
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n");
    let resp = client.read_response("GET");
    let elapsed = started.elapsed();
    assert_eq!(resp.status, 503, "{}", show(&resp.raw));
    assert_eq!(resp.body, b"503 Service Unavailable\n");
    let retry_after = resp.header("Retry-After").unwrap_or("");
    assert!(
        !retry_after.is_empty() && retry_after.bytes().all(|b| b.is_ascii_digit()),
        "Retry-After must be delta-seconds: {}",
        show(&resp.raw)
    );
    assert!(elapsed < Duration::from_secs(1), "503 took {elapsed:?}");

    let mark = proxy.log_mark();
    dummies.restart(0);
    proxy.wait_for_log_since(mark, &up_line(a), LOG_TIMEOUT);
    assert_eq!(
        get(proxy.addr(), "/"),
        (200, format!("Hello from Server {a}\n"))
    );
}
