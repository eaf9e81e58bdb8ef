//! Upstreams by DNS name: a test DNS server on loopback whose answers and TTLs change while
//! the proxy runs under load. Backends share one port and differ by address (127.0.0.x), as
//! the members of one name do.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A backend on `ip:port` answering every request with its own address; `/slow` after
/// `SLOW`.
fn backend(ip: &str, port: u16) -> RawBackend {
    let me = ip.to_string();
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("an address");
    RawBackend::start_on(addr, move |req| {
        if req.starts_with(b"GET /slow ") {
            thread::sleep(SLOW);
        }
        Reply::KeepAlive(ok_response(&me))
    })
}

const SLOW: Duration = Duration::from_millis(1500);

/// A port free on 127.0.0.1 and, very likely, on the other 127.0.0.x too.
fn shared_port() -> u16 {
    free_port()
}

fn config(dns: SocketAddr, pool: &str) -> String {
    format!(
        "[dns]\nservers = [\"{dns}\"]\ninterval = \"200ms\"\ntimeout = \"500ms\"\n\n\
         [pools.api]\n{pool}\n\n[pools.api.health]\ninterval = \"1s\"\ntimeout = \"500ms\"\n"
    )
}

/// The proxy in front of `api.test:PORT` (`resolve = true`), the name at 127.0.0.1 with a TTL
/// of 1 s, once that address is its member.
fn proxy_for_api_test(dns: &DnsServer, port: u16) -> (Proxy, TempDir) {
    dns.set_a("api.test", &["127.0.0.1"], 1);
    let pool = format!("upstreams = [ {{ address = \"api.test:{port}\", resolve = true }} ]");
    let (proxy, dir) = Proxy::with_config(&config(dns.addr(), &pool), &["--admin", "127.0.0.1:0"]);
    wait_members(
        &proxy,
        &[format!("127.0.0.1:{port}")],
        Duration::from_secs(5),
    );
    (proxy, dir)
}

/// `/status` as JSON.
fn status(proxy: &Proxy) -> serde_json::Value {
    let (code, body) = get(proxy.admin_addr(), "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status: {e}: {body}"))
}

/// The pool's members as (address, up).
fn members(proxy: &Proxy) -> Vec<(String, bool)> {
    let s = status(proxy);
    s["pools"][0]["upstreams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| {
                    (
                        u["address"].as_str().unwrap_or("").to_string(),
                        u["up"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wait until the pool's members are exactly `want` (address list, all up), up to `timeout`;
/// returns how long it took.
#[track_caller]
fn wait_members(proxy: &Proxy, want: &[String], timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut want: Vec<String> = want.to_vec();
    want.sort();
    loop {
        let mut now = members(proxy);
        now.sort();
        let addrs: Vec<String> = now.iter().map(|(a, _)| a.clone()).collect();
        if addrs == want && now.iter().all(|(_, up)| *up) {
            return start.elapsed();
        }
        if start.elapsed() > timeout {
            panic!("members {now:?}, want {want:?} (all up) within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Clients sending `GET /` on keep-alive connections until stopped; every answer recorded.
struct Load {
    stop: Arc<AtomicBool>,
    failed: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<Vec<(Instant, String)>>>,
    ok: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(proxy: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let ok = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, failed, answers, ok) = (
                    Arc::clone(&stop),
                    Arc::clone(&failed),
                    Arc::clone(&answers),
                    Arc::clone(&ok),
                );
                thread::spawn(move || {
                    let mut conn: Option<ResponseReader> = None;
                    while !stop.load(Ordering::SeqCst) {
                        let c = conn.get_or_insert_with(|| ResponseReader::connect(proxy));
                        let sent = c.try_send(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n");
                        match sent
                            .map_err(|e| e.to_string())
                            .and_then(|_| c.try_read_response("GET"))
                        {
                            Ok(r) if r.status == 200 => {
                                ok.fetch_add(1, Ordering::SeqCst);
                                lock(&answers).push((Instant::now(), r.body_text()));
                                if r.has_token("connection", "close") {
                                    conn = None;
                                }
                            }
                            Ok(r) => {
                                lock(&failed).push(format!("{} {}", r.status, r.body_text()));
                                conn = None;
                            }
                            Err(e) => {
                                lock(&failed).push(e);
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            failed,
            answers,
            ok,
            threads,
        }
    }

    /// The first answer from `who` after `since`.
    fn first_from(&self, who: &str, since: Instant) -> Option<Instant> {
        lock(&self.answers)
            .iter()
            .find(|(t, b)| *t >= since && b == who)
            .map(|(t, _)| *t)
    }

    fn stop(mut self) -> (u64, Vec<String>, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (
            self.ok.load(Ordering::SeqCst),
            lock(&self.failed).clone(),
            lock(&self.answers).clone(),
        )
    }
}

#[test]
fn a_backend_moved_to_a_new_address_under_load_fails_no_request() {
    let dns = DnsServer::start();
    let port = shared_port();
    let old = backend("127.0.0.1", port);
    let new = backend("127.0.0.2", port);
    let (proxy, _dir) = proxy_for_api_test(&dns, port);
    let load = Load::start(proxy.addr(), 4);
    thread::sleep(Duration::from_millis(500));
    let moved = Instant::now();
    dns.set_a("api.test", &["127.0.0.2"], 1);
    // The new address within the TTL (1 s) plus 1 s.
    let deadline = moved + Duration::from_secs(2);
    while load.first_from("127.0.0.2", moved).is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let first = load.first_from("127.0.0.2", moved);
    assert!(
        first.is_some_and(|t| t <= deadline),
        "no answer from the new address within TTL + 1 s"
    );
    // The old backend goes away once the move is due, while the load goes on.
    wait_members(
        &proxy,
        &[format!("127.0.0.2:{port}")],
        Duration::from_secs(3),
    );
    drop(old);
    thread::sleep(Duration::from_millis(700));
    let (ok, failed, answers) = load.stop();
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 100, "only {ok} requests under load");
    let last: Vec<&String> = answers.iter().rev().take(50).map(|(_, b)| b).collect();
    assert!(
        last.iter().all(|b| *b == "127.0.0.2"),
        "the last answers still come from the old address: {last:?}"
    );
    assert!(proxy.has_logged("DNS: 'api.test' now resolves to 127.0.0.2 (was 127.0.0.1)"));
    drop(new);
}

#[test]
fn a_pool_scales_3_to_10_to_3_within_one_ttl_and_drained_addresses_finish() {
    let dns = DnsServer::start();
    let port = shared_port();
    let ips: Vec<String> = (1..=10).map(|i| format!("127.0.0.{i}")).collect();
    let _backends: Vec<RawBackend> = ips.iter().map(|ip| backend(ip, port)).collect();
    let addrs =
        |n: usize| -> Vec<String> { ips[..n].iter().map(|ip| format!("{ip}:{port}")).collect() };
    let set = |n: usize| {
        let list: Vec<&str> = ips[..n].iter().map(String::as_str).collect();
        dns.set_a("api.test", &list, 1);
    };
    set(3);
    let pool = format!(
        "strategy = \"least_conn\"\nupstreams = [ {{ address = \"api.test:{port}\", resolve = true }} ]"
    );
    let (proxy, _dir) = Proxy::with_config(&config(dns.addr(), &pool), &["--admin", "127.0.0.1:0"]);
    wait_members(&proxy, &addrs(3), Duration::from_secs(5));
    set(10);
    let took = wait_members(&proxy, &addrs(10), Duration::from_secs(4));
    assert!(took <= Duration::from_millis(2500), "3 → 10 took {took:?}");
    // Ten slow requests at once: least_conn spreads them over the ten.
    let slow: Vec<_> = (0..10)
        .map(|_| {
            let at = proxy.addr();
            thread::spawn(move || get(at, "/slow"))
        })
        .collect();
    let spread = Instant::now() + Duration::from_secs(2);
    while status(&proxy)["pools"][0]["upstreams"]
        .as_array()
        .map_or(0, |a| {
            a.iter().filter(|u| u["active_requests"] == 1).count()
        })
        < 10
    {
        assert!(
            Instant::now() < spread,
            "the slow requests did not spread: {}",
            status(&proxy)
        );
        thread::sleep(Duration::from_millis(10));
    }
    let shrunk = Instant::now();
    set(3);
    let took = wait_members(&proxy, &addrs(3), Duration::from_secs(4));
    assert!(took <= Duration::from_millis(2500), "10 → 3 took {took:?}");
    for t in slow {
        let (code, body) = t.join().expect("a slow request");
        assert_eq!(
            code, 200,
            "a drained address did not finish its request: {body}"
        );
    }
    assert!(
        shrunk.elapsed() >= SLOW - Duration::from_millis(400),
        "the slow requests were cut short"
    );
    // The drained addresses are gone from the metrics too.
    let m = scrape(proxy.admin_addr());
    assert!(!m.contains(&format!("127.0.0.4:{port}")), "{m}");
    assert!(m.contains(&format!(
        "goround_upstream_up{{pool=\"api\",upstream=\"api.test:{port}\",address=\"127.0.0.3:{port}\"}} 1"
    )), "{m}");
}

#[test]
fn the_dns_server_gone_keeps_the_last_good_set_and_says_so_once() {
    let dns = DnsServer::start();
    let port = shared_port();
    let _b = backend("127.0.0.1", port);
    let (proxy, _dir) = proxy_for_api_test(&dns, port);
    dns.set_mode(DnsMode::ServFail);
    let mark = proxy.log_mark();
    proxy.wait_for_log_since(
        mark,
        "DNS: lookup of 'api.test' failed: ",
        Duration::from_secs(3),
    );
    drop(dns);
    // Several failed lookups later (one a second at this TTL): still served, logged once.
    let failed = "goround_dns_lookups_total{name=\"api.test\",result=\"failed\"}";
    let until = Instant::now() + Duration::from_secs(6);
    while metric(proxy.admin_addr(), failed)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        < 3
    {
        assert!(
            Instant::now() < until,
            "no third failed lookup: {}",
            scrape(proxy.admin_addr())
        );
        thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..20 {
        assert_eq!(get(proxy.addr(), "/"), (200, "127.0.0.1".to_string()));
    }
    let logged = proxy
        .logs()
        .iter()
        .filter(|l| l.contains("DNS: lookup of 'api.test' failed"))
        .count();
    assert_eq!(logged, 1, "one line per outage");
    let s = status(&proxy);
    let name = &s["dns"][0];
    assert_eq!(name["name"], "api.test");
    assert_eq!(name["addresses"], serde_json::json!(["127.0.0.1"]));
    assert!(
        name["error"].is_string() && name["last_success_unix_ms"].is_u64(),
        "{name}"
    );
    assert!(scrape(proxy.admin_addr())
        .contains("goround_dns_last_success_timestamp_seconds{name=\"api.test\"} "));
}

#[test]
fn srv_records_give_the_pool_its_hosts_ports_weights_and_backups() {
    let dns = DnsServer::start();
    let heavy = RawBackend::start(|_| Reply::KeepAlive(ok_response("heavy")));
    let light = RawBackend::start(|_| Reply::KeepAlive(ok_response("light")));
    let spare = RawBackend::start(|_| Reply::KeepAlive(ok_response("spare")));
    dns.set_srv(
        "_http._tcp.api.test",
        &[
            (10, 3, heavy.port(), "a.test"),
            (10, 1, light.port(), "b.test"),
            (20, 1, spare.port(), "c.test"),
        ],
        30,
    );
    for n in ["a.test", "b.test", "c.test"] {
        dns.set_a(n, &["127.0.0.1"], 30);
    }
    let pool = "discover = \"srv:_http._tcp.api.test\"";
    let (proxy, _dir) = Proxy::with_config(&config(dns.addr(), pool), &["--admin", "127.0.0.1:0"]);
    let mut seen = std::collections::HashMap::new();
    for _ in 0..40 {
        let (code, body) = get(proxy.addr(), "/");
        assert_eq!(code, 200);
        *seen.entry(body).or_insert(0) += 1;
    }
    assert_eq!(seen.get("heavy"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("light"), Some(&10), "{seen:?}");
    assert_eq!(
        seen.get("spare"),
        None,
        "a later priority is a backup: {seen:?}"
    );
    let s = status(&proxy);
    let ups = s["pools"][0]["upstreams"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let c = ups
        .iter()
        .find(|u| u["name"] == format!("c.test:{}", spare.port()))
        .unwrap_or_else(|| panic!("no c.test in {s}"));
    assert_eq!(
        (c["backup"].as_bool(), c["discovered"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(s["dns"][0]["type"], "SRV");
}

#[test]
fn a_name_that_does_not_resolve_is_an_error_for_check_and_a_wait_at_start() {
    let dns = DnsServer::start();
    let b = RawBackend::start(|_| Reply::KeepAlive(ok_response("late")));
    let pool = format!(
        "upstreams = [ {{ address = \"late.test:{}\", resolve = true }} ]",
        b.port()
    );
    let dir = TempDir::new();
    let path = dir.write("goround.toml", &config(dns.addr(), &pool));
    let path = path.to_string_lossy().into_owned();
    let checked = Proxy::run(&["--config", &path, "--check"]);
    let stderr = checked.stderr.join("\n");
    assert_eq!(checked.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "{path}:7:27: upstream late.test:{}: cannot resolve 'late.test': no address",
            b.port()
        )
    );
    // At start: a warning, an empty pool (503), then the members as soon as it resolves.
    let proxy = Proxy::start(&["--config", &path, "--admin", "127.0.0.1:0"]);
    assert!(proxy.has_logged(
        "DNS: 'late.test' does not resolve (no address): no member from it until it does"
    ));
    assert_eq!(get(proxy.addr(), "/").0, 503);
    dns.set_a("late.test", &["127.0.0.1"], 1);
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let (code, body) = get(proxy.addr(), "/");
        if code == 200 {
            assert_eq!(body, "late");
            break;
        }
        assert!(
            Instant::now() < until,
            "still {code} after the name resolved"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_address_that_comes_back_waits_for_its_check_again() {
    let dns = DnsServer::start();
    let port = shared_port();
    let first = backend("127.0.0.1", port);
    let _second = backend("127.0.0.2", port);
    let (proxy, _dir) = proxy_for_api_test(&dns, port);
    dns.set_a("api.test", &["127.0.0.2"], 1);
    wait_members(
        &proxy,
        &[format!("127.0.0.2:{port}")],
        Duration::from_secs(4),
    );
    // The first address dies while out of the pool, then DNS gives it back: it is not taken
    // as up from before, its check finds it down.
    drop(first);
    dns.set_a("api.test", &["127.0.0.1"], 1);
    let until = Instant::now() + Duration::from_secs(4);
    loop {
        let now = members(&proxy);
        if now == [(format!("127.0.0.1:{port}"), false)] {
            break;
        }
        assert!(
            !now.contains(&(format!("127.0.0.1:{port}"), true)),
            "the dead address came back as up: {now:?}"
        );
        assert!(Instant::now() < until, "members {now:?}");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(proxy.addr(), "/").0, 503);
}
