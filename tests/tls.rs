//! HTTPS: the `[tls]` listener with certificates made here by a test CA. SNI picks the
//! certificate (exact name, then a one-label wildcard, then the default), a Host the chosen
//! certificate does not cover gets 421, requests reach their pools with X-Forwarded-Proto
//! https; curl, `openssl s_client` (SNI, no SNI, ALPN, each version), Python's ssl module and
//! headless Chromium are served; sessions resume (across an upgrade, and across a fleet sharing
//! a ticket_key_file); certificates reload on SIGHUP and when their files change, a bad file
//! keeping the old pair; reload and upgrade under load fail no handshake and no request; failed
//! handshakes are counted by reason and never logged above debug; `--check` loads the
//! certificates and says what is wrong.

mod common;

use common::*;
use rustls::{HandshakeKind, ProtocolVersion};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A proxy with an HTTPS listener in front of two recording backends, and its certificates:
/// `default.test` (the default), `*.example.com`, and `api.example.com` + `other.org`.
struct Site {
    ca: TestCa,
    dir: TempDir,
    api: RawBackend,
    web: RawBackend,
    proxy: Proxy,
    config: PathBuf,
    /// (cert, key) of the `api.example.com` pair.
    api_pair: (PathBuf, PathBuf),
}

/// The names each certificate of [`Site`] covers.
const DEFAULT_NAMES: [&str; 1] = ["default.test"];
const WILD_NAMES: [&str; 1] = ["*.example.com"];
const API_NAMES: [&str; 2] = ["api.example.com", "other.org"];

/// The configuration of a [`Site`]: `top` goes first, `tls` at the end of `[tls]`.
fn site_config(
    site_dir: &TempDir,
    ca: &TestCa,
    api: u16,
    web: u16,
    top: &str,
    tls: &str,
) -> String {
    let (d_cert, d_key) = ca.issue(&DEFAULT_NAMES, 365).write(site_dir, "default");
    let (w_cert, w_key) = ca.issue(&WILD_NAMES, 365).write(site_dir, "wild");
    let (a_cert, a_key) = ca.issue(&API_NAMES, 365).write(site_dir, "api");
    format!(
        "health_interval = \"1h\"\n{top}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [pools.web]\nupstreams = [\"127.0.0.1:{web}\"]\n\
         [pools.api]\nupstreams = [\"127.0.0.1:{api}\"]\n\
         [[routes]]\nhost = \"api.example.com\"\npool = \"api\"\n\
         [[routes]]\npool = \"web\"\n\
         [tls]\nlisten = \"127.0.0.1:0\"\n\
         certificates = [\n\
           {{ cert = \"{}\", key = \"{}\" }},\n\
           {{ cert = \"{}\", key = \"{}\" }},\n\
           {{ cert = \"{}\", key = \"{}\" }},\n\
         ]\n{tls}\n",
        d_cert.display(),
        d_key.display(),
        w_cert.display(),
        w_key.display(),
        a_cert.display(),
        a_key.display(),
    )
}

fn site_with(top: &str, tls: &str, extra: &[&str]) -> Site {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let api = RawBackend::fixed(&ok_response("api"));
    let web = RawBackend::fixed(&ok_response("web"));
    let text = site_config(&dir, &ca, api.port(), web.port(), top, tls);
    let config = dir.write("goround.toml", &text);
    let config_arg = config.to_string_lossy().into_owned();
    let mut args = vec!["--config", config_arg.as_str()];
    args.extend_from_slice(extra);
    let proxy = Proxy::start(&args);
    proxy.wait_for_log("] ready", LOG_TIMEOUT);
    let api_pair = (dir.path().join("api.pem"), dir.path().join("api.key"));
    Site {
        ca,
        dir,
        api,
        web,
        proxy,
        config,
        api_pair,
    }
}

fn site() -> Site {
    site_with("", "", &[])
}

impl Site {
    fn https(&self) -> SocketAddr {
        self.proxy.https_addr()
    }

    /// `GET /` for `sni` with `Host: host` over a new connection of a fresh client (a full
    /// handshake).
    #[track_caller]
    fn get(&self, sni: &str, host: &str) -> (TlsSeen, ResponseHead, String) {
        let cfg = self.ca.client(&["http/1.1"]);
        match https_get(self.https(), &cfg, sni, host, "/") {
            Ok((seen, head, body)) => (seen, head, String::from_utf8_lossy(&body).into_owned()),
            Err(e) => panic!("GET / for {sni} (Host {host}): {e}"),
        }
    }

    fn metrics(&self) -> String {
        scrape(self.proxy.admin_addr())
    }
}

/// The value of the sample `name` (with its labels) in `metrics`, 0 when absent.
fn count(metrics: &str, name: &str) -> u64 {
    metric_value(metrics, name)
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Lines logged since `mark` at warn or error.
fn loud_lines_since(proxy: &Proxy, mark: usize) -> Vec<String> {
    proxy.logs()[mark..]
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .cloned()
        .collect()
}

#[test]
fn sni_picks_the_certificate_and_a_host_it_does_not_cover_gets_421() {
    let s = site();
    // An exact name, on the pool its route names, over TLS 1.3 with ALPN http/1.1.
    let (seen, head, body) = s.get("api.example.com", "api.example.com");
    assert_eq!(seen.names, API_NAMES, "the exact name's certificate");
    assert_eq!(seen.version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(seen.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(seen.kind, Some(HandshakeKind::Full));
    assert_eq!((head.status, body.as_str()), (200, "api"));
    // The other name of the same certificate: covered, so served (by the default route).
    let (seen, head, body) = s.get("api.example.com", "other.org");
    assert_eq!(seen.names, API_NAMES);
    assert_eq!((head.status, body.as_str()), (200, "web"));
    // One label under the wildcard.
    let (seen, head, body) = s.get("www.example.com", "www.example.com");
    assert_eq!(seen.names, WILD_NAMES, "the wildcard's certificate");
    assert_eq!((head.status, body.as_str()), (200, "web"));
    // Two labels, and the bare domain: not the wildcard's; the default certificate, and no 421
    // (it was chosen because nothing matched).
    let cfg = s.ca.client(&["http/1.1"]);
    for name in ["a.b.example.com", "example.com"] {
        let c = TlsClient::connect(s.https(), &cfg, name, true);
        let e = c.err().unwrap_or_else(|| panic!("{name} verified"));
        assert!(e.contains("not valid for name"), "{name}: {e}");
    }
    // A client without SNI gets the default certificate.
    let mut c = TlsClient::connect(s.https(), &cfg, "default.test", false).expect("no SNI");
    assert_eq!(c.seen().names, DEFAULT_NAMES);
    c.send(b"GET /nosni HTTP/1.1\r\nHost: anything.test\r\n\r\n")
        .unwrap();
    let (head, body) = c.read_response().unwrap();
    assert_eq!(
        (head.status, body.as_slice()),
        (200, &b"web"[..]),
        "no 421 on the default"
    );
    // A Host the chosen certificate does not cover: 421, the backends see nothing of it.
    let before = s.web.requests().len() + s.api.requests().len();
    let (_, head, _) = s.get("api.example.com", "www.example.com");
    assert_eq!(head.status, 421);
    let (_, head, _) = s.get("www.example.com", "other.org");
    assert_eq!(head.status, 421);
    assert_eq!(s.web.requests().len() + s.api.requests().len(), before);
    // What the backends saw: X-Forwarded-Proto https.
    let api_seen = s.api.requests();
    let first = String::from_utf8_lossy(&api_seen[0]);
    assert!(
        first.contains("\r\nX-Forwarded-Proto: https\r\n"),
        "{first}"
    );
    let m = s.metrics();
    assert_eq!(
        count(&m, "goround_local_responses_total{code=\"421\"}"),
        2,
        "{m}"
    );
    // Six handshakes completed; for the two refused names the client ended the handshake
    // with a bad_certificate alert.
    assert_eq!(
        count(&m, "goround_tls_handshakes_total{result=\"ok\"}"),
        6,
        "{m}"
    );
    assert_eq!(
        count(
            &m,
            "goround_tls_handshakes_total{result=\"failed\",reason=\"other\"}"
        ),
        2,
        "{m}"
    );
    assert_eq!(count(&m, "goround_tls_resumed_total"), 0, "{m}");
}

#[test]
fn a_session_resumes_with_its_ticket_and_a_keep_alive_connection_serves_many_requests() {
    let s = site();
    let cfg = s.ca.client(&["http/1.1"]);
    let mut c = TlsClient::connect(s.https(), &cfg, "www.example.com", true).unwrap();
    assert_eq!(c.seen().kind, Some(HandshakeKind::Full));
    for i in 0..20 {
        c.send(format!("GET /{i} HTTP/1.1\r\nHost: www.example.com\r\n\r\n").as_bytes())
            .unwrap();
        let (head, body) = c.read_response().unwrap();
        assert_eq!((head.status, body.as_slice()), (200, &b"web"[..]));
    }
    // The ticket arrived with the first response; the same client resumes.
    let (seen, head, _) = https_get(s.https(), &cfg, "www.example.com", "www.example.com", "/")
        .expect("resumed request");
    assert_eq!(seen.kind, Some(HandshakeKind::Resumed));
    assert_eq!(head.status, 200);
    assert_eq!(
        s.web.used_connections(),
        1,
        "one pooled upstream connection"
    );
    let m = s.metrics();
    assert_eq!(count(&m, "goround_tls_resumed_total"), 1, "{m}");
    assert_eq!(
        count(&m, "goround_tls_handshakes_total{result=\"ok\"}"),
        2,
        "{m}"
    );
    assert!(
        count(&m, "goround_tls_handshake_seconds_count") == 2,
        "the histogram counts both: {m}"
    );
}

#[test]
fn failed_handshakes_are_counted_by_reason_and_logged_only_at_debug() {
    let s = site_with(
        "",
        "min_version = \"1.3\"\nhandshake_timeout = \"300ms\"",
        &[],
    );
    let addr = s.https();
    let mark = s.proxy.log_mark();
    // A client that speaks only TLS 1.2 to a 1.3-only listener.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.ca.der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let only12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let e = TlsClient::connect(addr, &Arc::new(only12), "www.example.com", true)
        .err()
        .expect("TLS 1.2 refused");
    assert!(e.contains("ProtocolVersion"), "{e}");
    // A client that offers only h2: the alert RFC 7301 names.
    let e = TlsClient::connect(addr, &s.ca.client(&["h2"]), "www.example.com", true)
        .err()
        .expect("h2 only refused");
    assert!(e.contains("NoApplicationProtocol"), "{e}");
    // Plain HTTP on the HTTPS port.
    let mut plain = connect(addr);
    use std::io::Write;
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        .unwrap();
    let _ = read_until_eof(&mut plain, Duration::from_secs(5)).expect("closed");
    // A connection that says nothing: closed at the handshake timeout.
    let started = Instant::now();
    let mut silent = connect(addr);
    read_until_eof(&mut silent, Duration::from_secs(5)).expect("closed at the timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // A ClientHello cut short by the client's close.
    let mut cut = connect(addr);
    cut.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .unwrap();
    drop(cut);
    let m = s.metrics();
    let reason = |r: &str| {
        count(
            &m,
            &format!("goround_tls_handshakes_total{{result=\"failed\",reason=\"{r}\"}}"),
        )
    };
    // The cut-short hello may still be on its way when the page is read: wait for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut m2 = m.clone();
    while count(
        &m2,
        "goround_tls_handshakes_total{result=\"failed\",reason=\"eof\"}",
    ) < 1
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
        m2 = s.metrics();
    }
    assert_eq!(reason("protocol_version"), 1, "{m}");
    assert_eq!(reason("no_application_protocol"), 1, "{m}");
    assert_eq!(reason("bad_record"), 1, "{m}");
    assert_eq!(reason("timeout"), 1, "{m}");
    assert_eq!(
        count(
            &m2,
            "goround_tls_handshakes_total{result=\"failed\",reason=\"eof\"}"
        ),
        1,
        "{m2}"
    );
    assert_eq!(count(&m2, "goround_tls_handshakes_total{result=\"ok\"}"), 0);
    // Every reason is listed, zero or not.
    for r in [
        "timeout",
        "eof",
        "protocol_version",
        "no_shared_cipher",
        "no_application_protocol",
        "bad_record",
        "other",
    ] {
        let line = format!("goround_tls_handshakes_total{{result=\"failed\",reason=\"{r}\"}} ");
        assert!(m2.contains(&line), "{r} missing: {m2}");
    }
    assert_eq!(loud_lines_since(&s.proxy, mark), Vec::<String>::new());
}

#[test]
fn the_access_log_status_and_metrics_show_tls() {
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let top = format!(
        "[access_log]\npath = \"{}\"\nformat = \"json\"",
        log.display()
    );
    let s = site_with(&top, "hsts = \"max-age=31536000\"", &[]);
    let (_, head, _) = s.get("api.example.com", "api.example.com");
    assert_eq!(head.status, 200);
    let hsts: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("strict-transport-security"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(hsts, ["max-age=31536000"], "HSTS on HTTPS");
    let mut plain = ResponseReader::connect(s.proxy.addr());
    plain.send(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    let r = plain.read_response("GET");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Strict-Transport-Security"),
        None,
        "not on plain HTTP"
    );
    let lines = wait_file_lines(&log, 2);
    let tls_line = lines.iter().find(|l| l.contains("\"tls\"")).cloned();
    let tls_line = tls_line.unwrap_or_else(|| panic!("no tls key in {lines:?}"));
    assert!(tls_line.contains("\"tls\":\"1.3\""), "{tls_line}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("\"tls\"")).count(),
        1,
        "only the HTTPS request: {lines:?}"
    );

    let (status, json) = get(s.proxy.admin_addr(), "/status");
    assert_eq!(status, 200);
    let https = s.https();
    assert!(
        json.contains(&format!(
            "\"tls\":{{\"listen\":\"{https}\",\"certificates\":["
        )),
        "{json}"
    );
    assert!(
        json.contains("{\"names\":[\"api.example.com\",\"other.org\"],\"not_after\":\""),
        "{json}"
    );
    assert!(
        json.contains("\"days_left\":364") || json.contains("\"days_left\":365"),
        "{json}"
    );
    let m = s.metrics();
    for name in ["default.test", "*.example.com", "api.example.com"] {
        let sample = format!("goround_tls_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}");
        let at = count(&m, &sample);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            at > now + 363 * 86_400 && at < now + 366 * 86_400,
            "{sample} = {at}: {m}"
        );
    }
    let (status, page) = get(s.proxy.admin_addr(), "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("api.example.com"),
        "the page lists the certificates"
    );
}

#[test]
fn the_plain_listener_redirects_to_https_with_redirect_http() {
    let s = site_with("", "redirect_http = true", &[]);
    let port = s.https().port();
    let ask = |request: &[u8]| {
        let mut c = ResponseReader::connect(s.proxy.addr());
        c.send(request);
        c.read_response("GET")
    };
    let r = ask(b"GET /a/b?c=1&d HTTP/1.1\r\nHost: www.example.com:8080\r\n\r\n");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("Location"),
        Some(format!("https://www.example.com:{port}/a/b?c=1&d").as_str())
    );
    let r = ask(b"POST /form HTTP/1.1\r\nHost: [::1]\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 308, "a POST too (308 keeps the method)");
    assert_eq!(
        r.header("Location"),
        Some(format!("https://[::1]:{port}/form").as_str())
    );
    assert!(s.web.requests().is_empty() && s.api.requests().is_empty());
    let m = s.metrics();
    assert_eq!(
        count(&m, "goround_local_responses_total{code=\"308\"}"),
        2,
        "{m}"
    );
}

#[test]
fn sighup_reloads_certificates_and_a_bad_file_keeps_the_old_pair() {
    let mut s = site();
    let cfg = s.ca.client(&["http/1.1"]);
    // A connection made before the reloads, used after them.
    let mut early = TlsClient::connect(s.https(), &cfg, "api.example.com", true).unwrap();
    // A broken certificate file: the reload goes through, the old pair stays, the log says why.
    std::fs::write(&s.api_pair.0, "not a certificate\n").unwrap();
    let mark = s.proxy.log_mark();
    s.proxy.reload().expect("reloaded");
    let why = s
        .proxy
        .wait_for_log_since(mark, "the pair loaded before is kept", LOG_TIMEOUT);
    assert!(why.contains(&s.api_pair.0.display().to_string()), "{why}");
    let (seen, head, _) = s.get("api.example.com", "api.example.com");
    assert_eq!(
        (seen.names, head.status),
        (API_NAMES.map(String::from).to_vec(), 200)
    );
    // A key that does not match its certificate: the same.
    let other = s.ca.issue(&["api.example.com"], 30);
    std::fs::write(&s.api_pair.0, &other.chain_pem).unwrap();
    let mark = s.proxy.log_mark();
    s.proxy.reload().expect("reloaded");
    let why = s
        .proxy
        .wait_for_log_since(mark, "does not match the certificate", LOG_TIMEOUT);
    assert!(why.contains("the pair loaded before is kept"), "{why}");
    assert_eq!(
        s.get("api.example.com", "api.example.com").0.names,
        API_NAMES
    );
    // A good new pair: new handshakes get it.
    let renewed = s.ca.issue(&["api.example.com", "renewed.example.net"], 90);
    std::fs::write(&s.api_pair.1, &renewed.key_pem).unwrap();
    std::fs::write(&s.api_pair.0, &renewed.chain_pem).unwrap();
    let mark = s.proxy.log_mark();
    s.proxy.reload().expect("reloaded");
    assert!(
        loud_lines_since(&s.proxy, mark).is_empty(),
        "{:?}",
        s.proxy.logs()
    );
    let (seen, head, _) = s.get("renewed.example.net", "api.example.com");
    assert_eq!(seen.names, ["api.example.com", "renewed.example.net"]);
    assert_eq!(head.status, 200);
    // The connection from before still works, on its first certificate.
    assert_eq!(early.seen().names, API_NAMES);
    early
        .send(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        .unwrap();
    let (head, body) = early.read_response().unwrap();
    assert_eq!((head.status, body.as_slice()), (200, &b"api"[..]));
}

#[test]
fn a_certificate_renewed_on_disk_is_served_without_a_signal() {
    let s = site();
    let renewed = s.ca.issue(&["api.example.com", "renewed.example.net"], 90);
    // Written as certbot does: new files renamed over the old ones.
    let tmp_key = s.dir.write("api.key.new", &renewed.key_pem);
    let tmp_cert = s.dir.write("api.pem.new", &renewed.chain_pem);
    let mark = s.proxy.log_mark();
    std::fs::rename(&tmp_key, &s.api_pair.1).unwrap();
    std::fs::rename(&tmp_cert, &s.api_pair.0).unwrap();
    s.proxy.wait_for_log_since(
        mark,
        "a certificate file changed on disk: reloaded",
        Duration::from_secs(30),
    );
    let (seen, head, _) = s.get("renewed.example.net", "api.example.com");
    assert_eq!(seen.names, ["api.example.com", "renewed.example.net"]);
    assert_eq!(head.status, 200);
}

#[test]
fn a_fleet_sharing_a_ticket_key_file_resumes_each_others_sessions() {
    let keys: Vec<u8> = (0..80u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let keydir = TempDir::new();
    let keyfile = keydir.path().join("tickets.key");
    std::fs::write(&keyfile, &keys).unwrap();
    let tls = format!("ticket_key_file = \"{}\"", keyfile.display());
    let a = site_with("", &tls, &[]);
    // A second proxy from the same file: the same certificates and ticket_key_file.
    let b = Proxy::start(&["--config", &a.config.to_string_lossy()]);
    let cfg = a.ca.client(&["http/1.1"]);
    let (seen, head, _) =
        https_get(a.https(), &cfg, "www.example.com", "www.example.com", "/").unwrap();
    assert_eq!((seen.kind, head.status), (Some(HandshakeKind::Full), 200));
    let (seen, head, _) = https_get(
        b.https_addr(),
        &cfg,
        "www.example.com",
        "www.example.com",
        "/",
    )
    .unwrap();
    assert_eq!(
        (seen.kind, head.status),
        (Some(HandshakeKind::Resumed), 200),
        "the other proxy resumes the session"
    );
}

#[test]
fn a_session_resumes_on_the_process_an_upgrade_started() {
    let mut s = site();
    let cfg = s.ca.client(&["http/1.1"]);
    let (seen, _, _) =
        https_get(s.https(), &cfg, "www.example.com", "www.example.com", "/").unwrap();
    assert_eq!(seen.kind, Some(HandshakeKind::Full));
    let old_pid = s.proxy.pid();
    let orphans = Orphans::new();
    let pid = s.proxy.upgrade(&orphans);
    assert!(wait_gone(old_pid as i32, Duration::from_secs(5)));
    let (seen, head, _) =
        https_get(s.https(), &cfg, "www.example.com", "www.example.com", "/").unwrap();
    assert_eq!(
        (seen.kind, head.status),
        (Some(HandshakeKind::Resumed), 200),
        "the new process ({pid}) resumes a session of the old one"
    );
}

/// Clients making TLS connections until `stop`: every other one a full handshake (a fresh
/// client each time), the rest resumed; each connection carries two requests.
fn tls_load(
    addr: SocketAddr,
    ca: &TestCa,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    let resuming = ca.client(&["http/1.1"]);
    let fresh = ca.client(&["http/1.1"]);
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let cfg = if n % 2 == 0 {
                Arc::clone(&resuming)
            } else {
                let mut c = (*fresh).clone();
                c.resumption = rustls::client::Resumption::disabled();
                Arc::new(c)
            };
            let result =
                TlsClient::connect(addr, &cfg, "www.example.com", true).and_then(|mut c| {
                    c.send(b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")?;
                    let (h1, _) = c
                        .read_response()
                        .map_err(|e| format!("first request: {e}"))?;
                    // A process that stops answers `Connection: close`: no second request then.
                    let closing = h1.headers.iter().any(|(n, v)| {
                        n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
                    });
                    if closing {
                        return Ok((h1.status, 200));
                    }
                    c.send(
                        b"GET / HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n",
                    )?;
                    let (h2, _) = c
                        .read_response()
                        .map_err(|e| format!("second request: {e}"))?;
                    Ok((h1.status, h2.status))
                });
            match result {
                Ok((200, 200)) => {
                    done.fetch_add(2, Ordering::Relaxed);
                }
                Ok(other) => lock(&failures).push(format!("statuses {other:?}")),
                Err(e) => lock(&failures).push(e),
            }
        }
    })
}

#[test]
fn reloads_and_an_upgrade_under_tls_load_fail_no_handshake_and_no_request() {
    let mut s = site();
    let addr = s.https();
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            tls_load(
                addr,
                &s.ca,
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&failures),
            )
        })
        .collect();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(100);
    for _ in 0..3 {
        s.proxy.reload().expect("reloaded");
        let at = done.load(Ordering::Relaxed);
        wait_for(at + 50);
    }
    let orphans = Orphans::new();
    s.proxy.upgrade(&orphans);
    let at = done.load(Ordering::Relaxed);
    wait_for(at + 100);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client");
    }
    let failures = lock(&failures);
    assert!(
        failures.is_empty(),
        "{} failures: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(done.load(Ordering::Relaxed) >= 300, "{done:?} requests");
}

#[test]
fn check_loads_the_certificates_and_says_what_is_wrong() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let (cert, key) = ca.issue(&["good.test"], 365).write(&dir, "good");
    let (soon, soon_key) = ca.issue(&["soon.test"], 5).write(&dir, "soon");
    let (old, old_key) = ca.issue(&["old.test"], -3).write(&dir, "old");
    let (_, other_key) = ca.issue(&["other.test"], 365).write(&dir, "other");
    let check = |tls: &str| {
        let text = format!(
            "[pools.web]\nupstreams = [\"127.0.0.1:9\"]\n\
             [[routes]]\nhost = \"good.test\"\npool = \"web\"\n\
             [[routes]]\nhost = \"nobody.test\"\npool = \"web\"\n\
             [tls]\nlisten = \"127.0.0.1:0\"\n{tls}\n"
        );
        let path = dir.write("check.toml", &text);
        let out = Proxy::run(&["--config", &path.to_string_lossy(), "--check"]);
        (out.status.code(), out.stderr.join("\n"), path)
    };
    let pair = |c: &PathBuf, k: &PathBuf| {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            c.display(),
            k.display()
        )
    };
    // Good, soon, expired: valid, with warnings.
    let (code, stderr, _) = check(&format!(
        "certificates = [{}, {}, {}]",
        pair(&cert, &key),
        pair(&soon, &soon_key),
        pair(&old, &old_key)
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: the certificate expires in 4 days",
            soon.display()
        )) || stderr.contains(&format!(
            "{}: the certificate expires in 5 days",
            soon.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: the certificate has expired", old.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("no certificate covers nobody.test, which a route names"),
        "{stderr}"
    );
    assert!(!stderr.contains("good.test,"), "{stderr}");
    // A key that is not the certificate's.
    let (code, stderr, _) = check(&format!("certificates = [{}]", pair(&cert, &other_key)));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: does not match the certificate {}",
            other_key.display(),
            cert.display()
        )),
        "{stderr}"
    );
    // A file that is not PEM, one that is not there.
    let junk = dir.write("junk.pem", "-----BEGIN CERTIFICATE-----\n!!!\n");
    let (code, stderr, _) = check(&format!("certificates = [{}]", pair(&junk, &key)));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: ", junk.display())),
        "{stderr}"
    );
    let missing = dir.path().join("missing.pem");
    let (code, stderr, _) = check(&format!("certificates = [{}]", pair(&missing, &key)));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot read", missing.display())),
        "{stderr}"
    );
    // A certificate_dir with nothing usable.
    let empty = TempDir::new();
    let (code, stderr, _) = check(&format!("certificate_dir = \"{}\"", empty.path().display()));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: no usable certificate (*.pem) in it",
            empty.path().display()
        )),
        "{stderr}"
    );
    // A value the configuration gets wrong: PATH:LINE:COL.
    let (code, stderr, path) = check(&format!(
        "certificates = [{}]\nmin_version = \"1.1\"",
        pair(&cert, &key)
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("min_version"))
        .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:{line}:15: ", path.display()))
            && stderr.contains("min_version must be \"1.2\" or \"1.3\""),
        "{stderr}"
    );
}

#[test]
fn a_certificate_dir_serves_each_pem_with_its_key_beside_or_inside() {
    let ca = TestCa::new();
    let certs = TempDir::new();
    // a.pem with a.key beside it; b.pem holding its key too.
    ca.issue(&["a.test"], 365).write(&certs, "a");
    let b = ca.issue(&["b.test"], 365);
    certs.write("b.pem", &format!("{}{}", b.chain_pem, b.key_pem));
    let web = RawBackend::fixed(&ok_response("web"));
    let (proxy, _dir) = Proxy::with_config(
        &format!(
            "[pools.web]\nupstreams = [\"127.0.0.1:{}\"]\n\
             [tls]\nlisten = \"127.0.0.1:0\"\ncertificate_dir = \"{}\"\n",
            web.port(),
            certs.path().display()
        ),
        &[],
    );
    let cfg = ca.client(&["http/1.1"]);
    for name in ["a.test", "b.test"] {
        let (seen, head, body) = https_get(proxy.https_addr(), &cfg, name, name, "/").unwrap();
        assert_eq!(seen.names, [name]);
        assert_eq!((head.status, body.as_slice()), (200, &b"web"[..]));
    }
}

/// A proxy in front of `upstream` made by flags alone, HTTPS with the pair (cert, key).
fn flags_proxy(
    upstream: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    extra: &[&str],
) -> Proxy {
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut args = vec![
        "--upstream",
        upstream,
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    args.extend_from_slice(extra);
    Proxy::start(&args)
}

#[test]
fn the_flags_alone_make_an_https_listener() {
    let ca = TestCa::new();
    let dir = TempDir::new();
    let (cert, key) = ca.issue(&["flags.test"], 365).write(&dir, "flags");
    let web = RawBackend::fixed(&ok_response("web"));
    let upstream = format!("127.0.0.1:{}", web.port());
    let proxy = flags_proxy(&upstream, &cert, &key, &["--redirect-http"]);
    let cfg = ca.client(&["http/1.1"]);
    let https = proxy.https_addr();
    let (seen, head, body) = https_get(https, &cfg, "flags.test", "flags.test", "/x").unwrap();
    assert_eq!(seen.names, ["flags.test"]);
    assert_eq!((head.status, body.as_slice()), (200, &b"web"[..]));
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(b"GET /x HTTP/1.1\r\nHost: flags.test\r\n\r\n");
    let r = c.read_response("GET");
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("Location"),
        Some(format!("https://flags.test:{}/x", https.port()).as_str())
    );
    // Unpaired flags are a usage error.
    let out = Proxy::run(&[
        "--upstream",
        &upstream,
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert.to_string_lossy(),
    ]);
    let stderr = out.stderr.join("\n");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("go in pairs"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Other clients: curl, openssl s_client, Python, Chromium
// ---------------------------------------------------------------------------------------------

/// Run `cmd` with `input` on its stdin, within 20 s: (exit code, stdout, stderr).
fn run_tool(mut cmd: Command, input: &[u8]) -> (Option<i32>, String, String) {
    use std::io::Write;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let pid = child.id() as i32;
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        // SAFETY: kill(2) on a pid of ours; at worst it has exited (ESRCH).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    drop(watchdog);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(
    not(goround_has_curl),
    ignore = "needs curl (apt-get install curl, then touch build.rs)"
)]
fn curl_follows_the_redirect_to_https_and_verifies_the_certificate() {
    let s = site_with("", "redirect_http = true\nhsts = \"max-age=600\"", &[]);
    let ca = s.dir.write("ca.pem", &s.ca.pem());
    let (plain, https) = (s.proxy.addr().port(), s.https().port());
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-L", "-D", "-", "--cacert"])
        .arg(&ca)
        .arg("--resolve")
        .arg(format!("api.example.com:{plain}:127.0.0.1"))
        .arg("--resolve")
        .arg(format!("api.example.com:{https}:127.0.0.1"))
        .arg(format!("http://api.example.com:{plain}/p?q=1"));
    let (code, out, err) = run_tool(cmd, b"");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "\r\nLocation: https://api.example.com:{https}/p?q=1\r\n"
        )),
        "{out}"
    );
    let second = format!("{}\r\n", out.split("\r\n\r\n").nth(1).unwrap_or(""));
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(
        second.contains("\r\nStrict-Transport-Security: max-age=600\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\napi"), "{out}");
    let seen = s.api.requests();
    assert_eq!(seen.len(), 1);
    let req = String::from_utf8_lossy(&seen[0]);
    assert!(req.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nX-Forwarded-Proto: https\r\n"), "{req}");
}

/// `openssl s_client` against the HTTPS listener with `args`, sending `request`.
fn s_client(addr: SocketAddr, ca: &std::path::Path, args: &[&str], request: &[u8]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(["-ign_eof"])
        .args(args);
    let (_, out, err) = run_tool(cmd, request);
    format!("{out}\n{err}")
}

#[test]
#[cfg_attr(
    not(goround_has_openssl),
    ignore = "needs the openssl command (apt-get install openssl, then touch build.rs)"
)]
fn openssl_s_client_sni_alpn_and_each_version() {
    let s = site();
    let ca = s.dir.write("ca.pem", &s.ca.pem());
    let addr = s.https();
    let request = b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n";
    for (version, shown) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let out = s_client(
            addr,
            &ca,
            &[
                version,
                "-servername",
                "api.example.com",
                "-alpn",
                "http/1.1",
            ],
            request,
        );
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{version}: {out}"
        );
        assert!(out.contains("ALPN protocol: http/1.1"), "{version}: {out}");
        assert!(
            out.contains(&format!("Protocol  : {shown}")) || out.contains(&format!("New, {shown}")),
            "{version}: {out}"
        );
        assert!(
            out.contains("subject=CN=api.example.com")
                || out.contains("subject=CN = api.example.com"),
            "{version}: {out}"
        );
        assert!(out.contains("HTTP/1.1 200 OK\r\n"), "{version}: {out}");
        assert!(out.contains("\r\n\r\napi"), "{version}: {out}");
    }
    // No SNI: the default certificate.
    let out = s_client(addr, &ca, &["-noservername"], b"");
    assert!(
        out.contains("CN=default.test") || out.contains("CN = default.test"),
        "{out}"
    );
    // A wildcard name.
    let out = s_client(addr, &ca, &["-servername", "shop.example.com"], b"");
    assert!(
        out.contains("CN=*.example.com") || out.contains("CN = *.example.com"),
        "{out}"
    );
    // TLS 1.1 and 1.0 are refused; so is an ALPN offer without http/1.1.
    let old = s_client(
        addr,
        &ca,
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        b"",
    );
    // rustls ends a ClientHello without TLS 1.2 or 1.3 with handshake_failure.
    assert!(
        old.contains("alert handshake failure") || old.contains("alert protocol version"),
        "{old}"
    );
    let h2 = s_client(
        addr,
        &ca,
        &["-alpn", "h2", "-servername", "api.example.com"],
        b"",
    );
    assert!(h2.contains("no application protocol"), "{h2}");
    let m = s.metrics();
    assert!(
        count(
            &m,
            "goround_tls_handshakes_total{result=\"failed\",reason=\"protocol_version\"}"
        ) >= 1,
        "{m}"
    );
    assert_eq!(
        count(
            &m,
            "goround_tls_handshakes_total{result=\"failed\",reason=\"no_application_protocol\"}"
        ),
        1,
        "{m}"
    );
}

#[test]
fn pythons_ssl_client_is_served() {
    let s = site();
    let ca = s.dir.write("ca.pem", &s.ca.pem());
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile={ca:?})
ctx.set_alpn_protocols(["http/1.1"])
with socket.create_connection(("127.0.0.1", {port})) as raw:
    with ctx.wrap_socket(raw, server_hostname="www.example.com") as tls:
        tls.sendall(b"GET /py HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
        print(tls.version(), tls.selected_alpn_protocol(), ",".join(names))
        print(data.decode())
"#,
        ca = ca.to_string_lossy(),
        port = s.https().port()
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    let (code, out, err) = run_tool(cmd, b"");
    assert_eq!(code, Some(0), "{out}{err}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("TLSv1.3 http/1.1 *.example.com"),
        "{out}"
    );
    assert!(
        out.contains("HTTP/1.1 200 OK\r\n") && out.contains("\r\n\r\nweb"),
        "{out}"
    );
}

#[test]
#[cfg_attr(
    not(goround_has_chromium),
    ignore = "needs Chromium (apt-get install chromium, then touch build.rs)"
)]
fn headless_chromium_loads_a_page_over_https() {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| which(b))
        .expect("Chromium is required here (apt-get install chromium)");
    let ca = TestCa::new();
    let dir = TempDir::new();
    let leaf = ca.issue(&["app.example.com"], 365);
    let (cert, key) = leaf.write(&dir, "app");
    let page = "<!doctype html><title>t</title><p id=\"x\">served over TLS</p>";
    let web = RawBackend::fixed(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
        )
        .as_bytes(),
    );
    let proxy = flags_proxy(&format!("127.0.0.1:{}", web.port()), &cert, &key, &[]);
    let port = proxy.https_addr().port();
    let profile = TempDir::new();
    let mut cmd = Command::new(browser);
    // The test CA is not in the system's store: its leaf's key is pinned instead, which
    // Chromium accepts only for a certificate that otherwise verifies by name and date.
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP app.example.com 127.0.0.1",
        "--dump-dom",
    ])
    .arg(format!(
        "--ignore-certificate-errors-spki-list={}",
        leaf.spki_sha256_base64()
    ))
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("https://app.example.com:{port}/index.html"));
    let (code, out, err) = run_tool(cmd, b"");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("<p id=\"x\">served over TLS</p>"),
        "{out}{err}"
    );
    let seen = web.requests();
    assert!(!seen.is_empty());
    let req = String::from_utf8_lossy(&seen[0]);
    assert!(req.starts_with("GET /index.html HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\r\nX-Forwarded-Proto: https\r\n"), "{req}");
    assert!(req.contains("\r\nHost: app.example.com:"), "{req}");
}

#[test]
fn the_https_listener_reads_a_proxy_header_before_the_client_hello() {
    let s = site_with("proxy_protocol = true", "", &[]);
    let cfg = s.ca.client(&["http/1.1"]);
    let name = rustls::pki_types::ServerName::try_from("api.example.com").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).unwrap();
    let mut tcp = connect(s.https());
    use std::io::Write;
    tcp.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 443\r\n")
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    use std::io::Read;
    tls.read_to_end(&mut got)
        .expect("a response, then close_notify");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("api"),
        "{text}"
    );
    let seen = s.api.requests();
    let req = String::from_utf8_lossy(&seen[0]);
    assert!(
        req.contains("\r\nX-Forwarded-For: 203.0.113.9\r\n"),
        "{req}"
    );
    assert!(req.contains("\r\nX-Forwarded-Proto: https\r\n"), "{req}");
}

#[test]
fn a_redirect_needs_a_host_and_a_hostless_request_is_not_misdirected() {
    let s = site_with("", "redirect_http = true", &[]);
    let got = send_raw(s.proxy.addr(), b"GET /x HTTP/1.0\r\n\r\n");
    assert!(got.starts_with(b"HTTP/1.1 400 "), "{}", show(&got));
    // Over TLS with a certificate SNI chose, a request without Host is served.
    let cfg = s.ca.client(&["http/1.1"]);
    let mut c = TlsClient::connect(s.https(), &cfg, "api.example.com", true).unwrap();
    c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let (head, body) = c.read_response().unwrap();
    assert_eq!((head.status, body.as_slice()), (200, &b"web"[..]));
}

#[test]
fn a_refused_reload_leaves_the_certificates_as_they_were() {
    let mut s = site();
    let renewed = s.ca.issue(&["api.example.com", "renewed.example.net"], 90);
    std::fs::write(&s.api_pair.1, &renewed.key_pem).unwrap();
    std::fs::write(&s.api_pair.0, &renewed.chain_pem).unwrap();
    // The same file with a pool that cannot be: the reload is refused.
    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        text.replace("[pools.api]\n", "[pools.api]\nstrategy = \"nonsense\"\n"),
    )
    .unwrap();
    let why = s.proxy.reload().expect_err("refused");
    assert!(why.contains("strategy"), "{why}");
    assert_eq!(
        s.get("api.example.com", "api.example.com").0.names,
        API_NAMES
    );
}
