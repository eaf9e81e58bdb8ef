//! A graceful stop owes every accepted connection its next answer: a connection whose first
//! request has not arrived yet gets it answered, an idle keep-alive connection that sends one
//! more request gets it answered with `Connection: close`, and those still silent are closed
//! when the drain ends. Three upgrades in a row under load lose no request, even for clients
//! that never retry.

mod common;

use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn a_connection_accepted_before_the_stop_gets_its_first_request_answered() {
    let dummies = Dummies::start(1);
    let mut proxy = Proxy::with_upstreams(
        &dummies.ports(),
        &["--workers", "1", "--shutdown-timeout", "5s"],
    );
    let mut early = connect(proxy.addr());
    // One worker accepts in order: once a later connection is answered, `early` is accepted.
    assert_eq!(get(proxy.addr(), "/").0, 200);
    let mark = proxy.log_mark();
    proxy.sigterm();
    proxy.wait_for_log_since(mark, "shutting down", LOG_TIMEOUT);
    early
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let reply = read_to_close(&mut early);
    assert!(reply.starts_with(b"HTTP/1.1 200 "), "{}", show(&reply));
    let head = String::from_utf8_lossy(&reply).to_ascii_lowercase();
    assert!(
        head.contains("\r\nconnection: close\r\n"),
        "{}",
        show(&reply)
    );
    assert_eq!(proxy.wait_exit(EXIT_TIMEOUT), 0);
}

#[test]
fn an_idle_keep_alive_connection_gets_its_next_request_answered_with_close() {
    let dummies = Dummies::start(1);
    let mut proxy = Proxy::with_upstreams(
        &dummies.ports(),
        &["--workers", "1", "--keepalive-timeout", "60s"],
    );
    let mut busy = ResponseReader::connect(proxy.addr());
    busy.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(busy.read_response("GET").status, 200);
    let mut silent = ResponseReader::connect(proxy.addr());
    silent.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(silent.read_response("GET").status, 200);
    let mark = proxy.log_mark();
    let stopped = Instant::now();
    proxy.sigterm();
    proxy.wait_for_log_since(mark, "shutting down", LOG_TIMEOUT);
    busy.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = busy.read_response("GET");
    assert_eq!(r.status, 200, "{}", show(&r.raw));
    assert!(r.has_token("Connection", "close"), "{}", show(&r.raw));
    busy.expect_close(IO_TIMEOUT);
    // The one that says nothing is closed when the drain ends, well before the keep-alive
    // timeout.
    silent.expect_close(Duration::from_secs(4));
    assert_eq!(proxy.wait_exit(EXIT_TIMEOUT), 0);
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "{:?}",
        stopped.elapsed()
    );
}

/// A keep-alive client that never retries: every request that gets no answer is a failure.
/// A `Connection: close` answer means a fresh connection for the next one.
fn keep_alive_client_without_retries(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let mut conn: Option<ResponseReader> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = conn.get_or_insert_with(|| ResponseReader::connect(addr));
        let result = c
            .try_send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .map_err(|e| e.to_string())
            .and_then(|()| c.try_read_response("GET"));
        match result {
            Ok(r) if r.status == 200 => {
                if r.has_token("Connection", "close") {
                    conn = None;
                }
            }
            Ok(r) => {
                failures.lock().unwrap().push(show(&r.raw));
                conn = None;
            }
            Err(e) => {
                failures.lock().unwrap().push(format!("keep-alive: {e}"));
                conn = None;
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn three_upgrades_under_load_lose_no_request_of_clients_that_never_retry() {
    let d = Dummies::start(2);
    let dir = TempDir::new();
    let path = dir.write(
        "goround.toml",
        &format!(
            "health_interval = \"500ms\"\n[pools.web]\nupstreams = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            d.port(0),
            d.port(1)
        ),
    );
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&["--config", &path_arg, "--workers", "2"]);
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    let addr = proxy.addr();
    let orphans = Orphans::new();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut threads: Vec<_> = (0..30)
        .map(|_| {
            let (s, d, f) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
            std::thread::spawn(move || keep_alive_client_without_retries(addr, s, d, f))
        })
        .collect();
    for _ in 0..2 {
        let (s, d, f) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
        threads.push(std::thread::spawn(move || {
            new_connections(addr, Duration::ZERO, &s, &d, &f)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Every process logs to the same pipe (a new one inherits it).
    let mut current = proxy.pid() as i32;
    for round in 0..3 {
        let mark = proxy.log_mark();
        // SAFETY: a signal to a process this test started (directly or by an upgrade).
        unsafe { libc::kill(current, libc::SIGUSR2) };
        let started = proxy.wait_for_log_since(mark, "upgrade: started", LOG_TIMEOUT);
        let pid = upgraded_pid(&started);
        orphans.adopt(pid);
        proxy.wait_for_log_since(
            mark,
            &format!("upgrade: pid {pid} is ready"),
            Duration::from_secs(10),
        );
        assert!(
            wait_gone(current, Duration::from_secs(15)),
            "round {round}: pid {current} never exited"
        );
        current = pid;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(proxy.wait_exit(Duration::from_secs(1)), 0);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures of {}: {:?}",
        failures.len(),
        done.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
    assert!(done.load(Ordering::Relaxed) > 1000);
}
