//! SIGHUP reloads the config file under load: 50 keep-alive clients see no failed request
//! while upstreams are added, removed and reweighted; new requests follow the new file; a bad
//! file changes nothing; a moved `listen` binds the new address before the old one closes.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A config with one pool over `ups` (`(port, weight)`).
fn config(ups: &[(u16, u32)]) -> String {
    let list: Vec<String> = ups
        .iter()
        .map(|(p, w)| format!("{{ address = \"127.0.0.1:{p}\", weight = {w} }}"))
        .collect();
    format!(
        "health_interval = \"200ms\"\n[pools.web]\nupstreams = [{}]\n",
        list.join(", ")
    )
}

#[test]
fn reloads_under_load_lose_no_request_and_new_requests_follow_the_new_file() {
    let d = Dummies::start(3);
    let (a, b, c) = (d.port(0), d.port(1), d.port(2));
    let dir = TempDir::new();
    let path = dir.write("goround.toml", &config(&[(a, 1), (b, 1)]));
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&[
        "--config",
        &path_arg,
        "--workers",
        "2",
        "--admin",
        "127.0.0.1:0",
    ]);
    let addr = proxy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (stop, done, failures) =
                (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failures));
            std::thread::spawn(move || {
                let mut c = ResponseReader::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = c.try_send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") {
                        failures.lock().unwrap().push(format!("send: {e}"));
                        return;
                    }
                    let r = c.read_response("GET");
                    if r.status != 200 {
                        failures.lock().unwrap().push(show(&r.raw));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let step = |proxy: &mut Proxy, ups: &[(u16, u32)]| {
        std::fs::write(&path, config(ups)).unwrap();
        proxy.reload().expect("the new file is taken");
        std::thread::sleep(Duration::from_millis(300));
    };
    std::thread::sleep(Duration::from_millis(300));
    step(&mut proxy, &[(a, 1), (b, 1), (c, 1)]); // add
    step(&mut proxy, &[(b, 3), (c, 1)]); // remove a, reweight b
    std::fs::write(
        &path,
        "[pools.web]\nupstreams = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let refused = proxy.reload().expect_err("a bad file changes nothing");
    assert!(refused.contains(&format!("{path_arg}:2:")), "{refused}");
    std::thread::sleep(Duration::from_millis(200));
    step(&mut proxy, &[(c, 1)]); // only c
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.join().expect("client");
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        done.load(Ordering::Relaxed) > 500,
        "{} requests",
        done.load(Ordering::Relaxed)
    );
    // New requests follow the last file.
    for _ in 0..6 {
        assert_eq!(get_port(proxy.addr()), c);
    }
    let (_, m) = get(proxy.admin_addr(), "/metrics");
    assert!(
        m.contains("goround_config_reloads_total{result=\"ok\"} 3\n"),
        "{m}"
    );
    assert!(
        m.contains("goround_config_reloads_total{result=\"error\"} 1\n"),
        "{m}"
    );
    let reloaded_at = metric_value(&m, "goround_config_last_reload_success_timestamp_seconds")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(reloaded_at > 1.7e9, "a Unix time in seconds: {m}");
    let (_, status) = get(proxy.admin_addr(), "/status");
    assert!(status.contains("\"config_loaded_unix_ms\":"), "{status}");
    assert!(
        !status.contains(&format!("127.0.0.1:{a}")),
        "a is gone: {status}"
    );
}

#[test]
fn an_upstream_kept_across_a_reload_keeps_its_state() {
    let mut d = Dummies::start(2);
    let (a, b) = (d.port(0), d.port(1));
    let dir = TempDir::new();
    let path = dir.write(
        "goround.toml",
        &config(&[(a, 1), (b, 1)]).replace("200ms", "1h"),
    );
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start(&["--config", &path_arg, "--admin", "127.0.0.1:0"]);
    // After the first checks (which would otherwise be the ones to find b gone).
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    d.kill(1);
    for _ in 0..4 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    proxy.wait_for_log(&format!("127.0.0.1:{b}) in pool web is down"), LOG_TIMEOUT);
    // Reweight a: b stays down (no check runs for an hour), its counters stay.
    std::fs::write(&path, config(&[(a, 2), (b, 1)]).replace("200ms", "1h")).unwrap();
    proxy.reload().expect("the new file is taken");
    for _ in 0..4 {
        assert_eq!(get_port(proxy.addr()), a, "b is still known to be down");
    }
    let (_, m) = get(proxy.admin_addr(), "/metrics");
    assert!(
        m.contains(&format!(
            "goround_upstream_up{{pool=\"web\",upstream=\"127.0.0.1:{b}\"}} 0\n"
        )),
        "{m}"
    );
    assert!(m.contains(&format!("goround_upstream_connect_failures_total{{pool=\"web\",upstream=\"127.0.0.1:{b}\"}} 1\n")), "{m}");
}

#[test]
fn a_moved_listen_binds_the_new_address_before_the_old_one_closes() {
    let d = Dummies::start(1);
    let (old, new) = (free_port(), free_port());
    let dir = TempDir::new();
    let text = |port: u16| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nworkers = 1\n[pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n",
            d.port(0)
        )
    };
    let path = dir.write("goround.toml", &text(old));
    let path_arg = path.to_string_lossy().into_owned();
    let mut proxy = Proxy::start_exact(&["--config", &path_arg]);
    assert_eq!(proxy.addr().port(), old);
    // A keep-alive client on the old address.
    let mut kept = ResponseReader::connect(proxy.addr());
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.read_response("GET").status, 200);
    std::fs::write(&path, text(new)).unwrap();
    proxy.reload().expect("the new file is taken");
    let new_addr: std::net::SocketAddr = format!("127.0.0.1:{new}").parse().unwrap();
    assert_eq!(get(new_addr, "/").0, 200);
    // The old listener is gone; the connection made through it is not.
    wait_until_refused(proxy.addr(), LOG_TIMEOUT);
    kept.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(kept.read_response("GET").status, 200);
    // A new address that cannot be bound changes nothing.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::write(&path, text(taken.local_addr().unwrap().port())).unwrap();
    let line = proxy
        .reload()
        .expect_err("an address that cannot be bound is refused");
    assert!(line.contains("cannot listen"), "{line}");
    assert_eq!(get(new_addr, "/").0, 200);
}
