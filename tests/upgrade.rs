//! SIGUSR2 upgrades the binary under load: 50 keep-alive clients and a stream of new
//! connections see no failed request and no refused connection while the new process takes the
//! listening sockets and the old one drains and exits. A new process that cannot start leaves
//! the old one serving.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One keep-alive client: a request answered, or retried once on a fresh connection when the
/// kept connection was closed before any byte of the answer (what browsers and curl do for an
/// idempotent request); a `Connection: close` answer means a fresh connection next time.
fn keep_alive_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let mut conn: Option<ResponseReader> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut answered = false;
        for attempt in 0..2 {
            let fresh = conn.is_none();
            let c = conn.get_or_insert_with(|| ResponseReader::connect(addr));
            let sent = c.try_send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let result = sent
                .map_err(|e| e.to_string())
                .and_then(|()| c.try_read_response("GET"));
            match result {
                Ok(r) if r.status == 200 => {
                    if r.header("Connection") == Some("close") {
                        conn = None;
                    }
                    answered = true;
                    break;
                }
                Ok(r) => {
                    failures.lock().unwrap().push(show(&r.raw));
                    conn = None;
                    answered = true;
                    break;
                }
                Err(e) if !fresh && attempt == 0 && !e.contains("received: \"H") => conn = None,
                Err(e) => {
                    failures.lock().unwrap().push(e);
                    conn = None;
                    answered = true;
                    break;
                }
            }
        }
        if answered {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn an_upgrade_under_load_fails_no_request_and_refuses_no_connection() {
    let d = Dummies::start(2);
    let dir = TempDir::new();
    let path = dir.write(
        "goround.toml",
        &format!(
            "workers = 2\nhealth_interval = \"500ms\"\n[pools.web]\nupstreams = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            d.port(0),
            d.port(1)
        ),
    );
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&[
        "--config",
        &path_arg,
        "--workers",
        "2",
        "--admin",
        "127.0.0.1:0",
    ]);
    let admin = proxy.admin_addr();
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    let addr = proxy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut threads: Vec<_> = (0..50)
        .map(|_| {
            let (s, d, f) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
            std::thread::spawn(move || keep_alive_client(addr, s, d, f))
        })
        .collect();
    for _ in 0..2 {
        let (s, d, f) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
        threads.push(std::thread::spawn(move || {
            new_connections(addr, Duration::from_millis(2), &s, &d, &f)
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mark = proxy.log_mark();
    proxy.signal(libc::SIGUSR2);
    let started = proxy.wait_for_log_since(mark, "upgrade: started", LOG_TIMEOUT);
    let pid = upgraded_pid(&started);
    let orphans = Orphans::new();
    orphans.adopt(pid);
    proxy.wait_for_log_since(
        mark,
        &format!("upgrade: pid {pid} is ready"),
        Duration::from_secs(10),
    );
    assert_eq!(
        proxy.wait_exit(Duration::from_secs(15)),
        0,
        "the old process drains and exits"
    );
    // Load goes on against the new process alone for a while.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        done.load(Ordering::Relaxed) > 1000,
        "{} requests",
        done.load(Ordering::Relaxed)
    );
    // The new process serves the same address and the admin pages.
    assert_eq!(get(addr, "/").0, 200);
    let (status, body) = get(admin, "/healthz");
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "the new process's admin listener"
    );
}

#[test]
fn a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let d = Dummies::start(1);
    let dir = TempDir::new();
    let path = dir.write(
        "goround.toml",
        &format!("[pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n", d.port(0)),
    );
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&["--config", &path_arg]);
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    // The new process reads the file at start: a broken file stops it.
    std::fs::write(&path, "[pools.web]\nupstreams = []\n").unwrap();
    let mark = proxy.log_mark();
    proxy.signal(libc::SIGUSR2);
    let line = proxy.wait_for_log_since(
        mark,
        "upgrade failed, still serving",
        Duration::from_secs(10),
    );
    assert!(line.contains("exited before it was ready"), "{line}");
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(proxy.is_running());
}
