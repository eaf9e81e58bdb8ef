//! ACME against a real ACME server: Let's Encrypt's test server `pebble`, whose validation
//! (with `pebble-challtestsrv` answering its DNS with 127.0.0.1) connects to the proxy's own
//! listeners. Both challenge types get a certificate that curl and rustls verify against
//! pebble's root; a restart reuses what is stored; a stored certificate near its expiry is
//! served, renewed without dropping an open connection, and kept when the CA is down, with
//! the failure in `/metrics` and `/status`.

mod common;

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// How long an order may take here (pebble validates at once with PEBBLE_VA_NOSLEEP).
const ORDER_TIMEOUT: Duration = Duration::from_secs(30);

/// The name the certificates are ordered for; challtestsrv resolves every name to 127.0.0.1.
const DOMAIN: &str = "acme.test";

/// pebble and its DNS, validating against the proxy's plain and HTTPS ports.
struct Pebble {
    _dns: Spawned,
    server: Option<Spawned>,
    /// The CA of pebble's own HTTPS listener (the proxy's `ca_bundle`).
    https_ca: std::path::PathBuf,
    https_ca_pem: String,
    directory: String,
    management: SocketAddr,
}

impl Pebble {
    /// Start pebble (directory on an ephemeral port) to validate names at 127.0.0.1 on
    /// `http_port` (http-01) and `tls_port` (tls-alpn-01).
    fn start(dir: &TempDir, http_port: u16, tls_port: u16) -> Pebble {
        let ca = TestCa::new();
        let (cert, key) = ca
            .issue(&["localhost", "127.0.0.1"], 30)
            .write(dir, "pebble");
        let https_ca = dir.write("pebble-ca.pem", &ca.pem());
        let dns = free_port();
        let mut cts = Command::new("pebble-challtestsrv");
        cts.args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())]);
        let dns_server = spawn(cts, "pebble-challtestsrv");
        wait_started(&dns_server, "Starting challenge servers");
        let (port, management) = (free_port(), free_port());
        let config = dir.write(
            "pebble.json",
            &format!(
                r#"{{"pebble":{{"listenAddress":"127.0.0.1:{port}",
                "managementListenAddress":"127.0.0.1:{management}",
                "certificate":"{}","privateKey":"{}","httpPort":{http_port},"tlsPort":{tls_port},
                "ocspResponderURL":"","externalAccountBindingRequired":false}}}}"#,
                cert.display(),
                key.display()
            ),
        );
        let mut p = Pebble {
            _dns: dns_server,
            server: None,
            https_ca,
            https_ca_pem: ca.pem(),
            directory: format!("https://127.0.0.1:{port}/dir"),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
        };
        p.run(&config, dns);
        p
    }

    fn run(&mut self, config: &std::path::Path, dns: u16) {
        let mut cmd = Command::new("pebble");
        cmd.args(["-config", &config.to_string_lossy()])
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // Validate at once (no random sleep); the default 5 % of refused nonces stays, so
            // that the client's badNonce retry is exercised.
            .env("PEBBLE_VA_NOSLEEP", "1");
        let server = spawn(cmd, "pebble");
        wait_started(&server, "ACME directory available");
        self.server = Some(server);
    }

    /// Stop the CA (a CA outage).
    fn stop(&mut self) {
        self.server = None;
    }

    /// The root pebble issues under (made at its start): what clients trust.
    fn root(&self) -> String {
        let cfg = trusting(&self.https_ca_pem);
        let mut c = TlsClient::connect(self.management, &cfg, "localhost", true).expect("pebble");
        c.send(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("send");
        let (head, body) = c.read_response().expect("the root");
        assert_eq!(head.status, 200);
        String::from_utf8(body).expect("PEM")
    }
}

/// Wait for `needle` in what `child` writes (pebble's tools log to stdout).
fn wait_started(child: &Spawned, needle: &str) {
    if let Err(e) = child.stdout.wait_for(0, needle, IO_TIMEOUT) {
        panic!("not started: {e}; stderr: {:?}", child.stderr.snapshot());
    }
}

/// A rustls client configuration that trusts the certificates of `pem`.
fn trusting(pem: &str) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(c.expect("a PEM certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The proxy's configuration: the HTTPS listener on the port pebble validates (the plain one
/// is given by --listen), one pool, `[acme]` with `acme` appended.
fn config(
    tls_port: u16,
    backend: u16,
    pebble: &Pebble,
    storage: &std::path::Path,
    acme: &str,
    tls: &str,
) -> String {
    format!(
        "health_interval = \"1h\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [pools.web]\nupstreams = [\"127.0.0.1:{backend}\"]\n\
         [[routes]]\npool = \"web\"\n\
         [tls]\nlisten = \"127.0.0.1:{tls_port}\"\n{tls}\n\
         [acme]\nemail = \"ops@example.com\"\ndirectory = \"{}\"\ndomains = [\"{DOMAIN}\"]\n\
         storage = \"{}\"\nca_bundle = \"{}\"\n{acme}\n",
        pebble.directory,
        storage.display(),
        pebble.https_ca.display()
    )
}

/// A backend answering every request with 200 and `body`.
fn backend(body: &str) -> RawBackend {
    RawBackend::fixed(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

/// `/status`'s ACME domain, as JSON text.
fn acme_status(admin: SocketAddr) -> String {
    let (status, body) = get(admin, "/status");
    assert_eq!(status, 200);
    let at = body.find("\"acme\":").expect("an acme object in /status");
    body[at..].to_string()
}

/// GET / over HTTPS for DOMAIN with `cfg`'s trust: the body, or why it failed.
fn https_hello(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Result<String, String> {
    let (_, head, body) = https_get(addr, cfg, DOMAIN, DOMAIN, "/")?;
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Get a certificate with `challenge`; `tls` goes into `[tls]`. Returns the proxy, its
/// directories and pebble, with the certificate served and checked.
fn issued(challenge: &str, tls: &str) -> (Proxy, TempDir, Pebble, u16, u16, RawBackend) {
    let dir = TempDir::new();
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(&dir, http_port, tls_port);
    let web = backend("hello from the backend");
    let storage = dir.path().join("acme");
    let text = config(
        tls_port,
        web.port(),
        &pebble,
        &storage,
        &format!("challenge = \"{challenge}\""),
        tls,
    );
    let listen = format!("127.0.0.1:{http_port}");
    let (proxy, conf_dir) = Proxy::with_config(&text, &["--listen", &listen]);
    proxy.wait_for_log(
        &format!("no certificate for {DOMAIN} yet: its handshakes get a self-signed placeholder"),
        LOG_TIMEOUT,
    );
    proxy.wait_for_log(
        &format!("certificate for {DOMAIN} issued, valid until"),
        ORDER_TIMEOUT,
    );
    let root = pebble.root();
    let addr = proxy.https_addr();
    assert_eq!(
        https_hello(addr, &trusting(&root)).as_deref(),
        Ok("hello from the backend"),
        "the issued certificate verifies against pebble's root"
    );
    assert!(
        https_hello(addr, &trusting(&pebble.https_ca_pem)).is_err(),
        "not the placeholder or another certificate"
    );
    let admin = proxy.admin_addr();
    assert_eq!(
        metric(admin, "goround_acme_orders_total{result=\"ok\"}").as_deref(),
        Some("1")
    );
    assert!(acme_status(admin).contains(&format!("{{\"name\":\"{DOMAIN}\",\"state\":\"valid\"")));
    drop(conf_dir);
    (proxy, dir, pebble, http_port, tls_port, web)
}

#[test]
#[cfg_attr(not(goround_has_pebble), ignore = "needs pebble (apt install pebble)")]
fn http_01_gets_a_certificate_curl_verifies_even_with_redirect_http_and_a_restart_reuses_it() {
    let (mut proxy, dir, pebble, http_port, tls_port, _web) =
        issued("http-01", "redirect_http = true");
    // A token ACME is not validating is no answer of ours: it goes where any request goes
    // (here the redirect; a backend may answer its own challenges).
    let (status, _) = get(proxy.addr(), "/.well-known/acme-challenge/unknown-token");
    assert_eq!(status, 308);
    let (status, _) = get(proxy.addr(), "/elsewhere");
    assert_eq!(status, 308, "everything else is redirected");
    let root_path = dir.write("root.pem", &pebble.root());
    #[cfg(goround_has_curl)]
    {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&root_path)
            .args([
                "--resolve",
                &format!("{DOMAIN}:{tls_port}:127.0.0.1"),
                &format!("https://{DOMAIN}:{tls_port}/"),
            ])
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from the backend"
        );
    }
    let _ = root_path;
    // A restart finds the certificate in storage and orders nothing.
    let stored = std::fs::read(dir.path().join("acme/certs").join(format!("{DOMAIN}.crt")))
        .expect("the stored chain");
    let mode = std::fs::metadata(dir.path().join("acme/certs").join(format!("{DOMAIN}.key")))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("the stored key");
    assert_eq!(mode, 0o600);
    proxy.signal(libc::SIGTERM);
    proxy.wait_exit(IO_TIMEOUT);
    let again_web = backend("hello again");
    let text = config(
        tls_port,
        again_web.port(),
        &pebble,
        &dir.path().join("acme"),
        "",
        "",
    );
    let listen = format!("127.0.0.1:{http_port}");
    let (again, _conf) = Proxy::with_config(&text, &["--listen", &listen]);
    again.wait_for_log("ready", LOG_TIMEOUT);
    let admin = again.admin_addr();
    assert!(acme_status(admin).contains("\"state\":\"valid\""));
    assert!(
        !again.has_logged("ordering a certificate"),
        "{:?}",
        again.logs()
    );
    assert!(!again.has_logged("placeholder"));
    let cfg = trusting(&pebble.root());
    let mut c = TlsClient::connect(again.https_addr(), &cfg, DOMAIN, true).expect("handshake");
    c.send(format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send");
    let (head, body) = c.read_response().expect("response");
    assert_eq!((head.status, &body[..]), (200, &b"hello again"[..]));
    let first = CertificateDer::pem_slice_iter(&stored)
        .next()
        .expect("a certificate")
        .expect("PEM");
    assert_eq!(
        c.peer_leaf().as_deref(),
        Some(first.as_ref()),
        "the stored certificate"
    );
    assert_eq!(
        metric(admin, "goround_acme_orders_total{result=\"ok\"}").as_deref(),
        Some("0")
    );
}

#[test]
#[cfg_attr(not(goround_has_pebble), ignore = "needs pebble (apt install pebble)")]
fn tls_alpn_01_gets_a_certificate_and_answers_acme_tls_only_while_validating() {
    let (proxy, _dir, pebble, _, _, _web) = issued("tls-alpn-01", "");
    // No validation under way: a client offering only acme-tls/1 gets no certificate.
    let mut cfg = (*trusting(&pebble.root())).clone();
    cfg.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    assert!(TlsClient::connect(proxy.https_addr(), &Arc::new(cfg), DOMAIN, true).is_err());
    // And http/1.1 clients are served as before.
    assert!(https_hello(proxy.https_addr(), &trusting(&pebble.root())).is_ok());
}

#[test]
#[cfg_attr(not(goround_has_pebble), ignore = "needs pebble (apt install pebble)")]
fn a_certificate_near_expiry_is_served_kept_through_a_ca_outage_and_renewed_without_a_dropped_connection(
) {
    let dir = TempDir::new();
    let (http_port, tls_port) = (free_port(), free_port());
    let mut pebble = Pebble::start(&dir, http_port, tls_port);
    let web = backend("hello");
    // A certificate from another CA, two days from its end: due for renewal (30 days before).
    let old_ca = TestCa::new();
    let storage = dir.path().join("acme");
    std::fs::create_dir_all(storage.join("certs")).expect("storage");
    let old = old_ca.issue(&[DOMAIN], 2);
    std::fs::write(storage.join("certs/acme.test.crt"), &old.chain_pem).expect("write");
    std::fs::write(storage.join("certs/acme.test.key"), &old.key_pem).expect("write");
    // The CA is down: the directory is a port nothing listens on.
    let down = format!("https://127.0.0.1:{}/dir", free_port());
    let good = config(tls_port, web.port(), &pebble, &storage, "", "");
    let listen = format!("127.0.0.1:{http_port}");
    let (mut proxy, conf) = Proxy::with_config(
        &good.replace(&pebble.directory, &down),
        &["--listen", &listen],
    );
    proxy.wait_for_log(
        &format!("the order for {DOMAIN} failed (1 in a row)"),
        ORDER_TIMEOUT,
    );
    assert!(
        !proxy.has_logged("placeholder"),
        "the stored certificate is served"
    );
    let admin = proxy.admin_addr();
    assert_eq!(
        metric(admin, "goround_acme_orders_total{result=\"failed\"}").as_deref(),
        Some("1")
    );
    let status = acme_status(admin);
    assert!(status.contains("\"state\":\"failing\""), "{status}");
    assert!(status.contains("cannot connect"), "the reason: {status}");
    let old_trust = old_ca.client(&["http/1.1"]);
    let addr = proxy.https_addr();
    assert_eq!(https_hello(addr, &old_trust).as_deref(), Ok("hello"));
    // A keep-alive connection on the old certificate, open across the renewal.
    let mut open = TlsClient::connect(addr, &old_trust, DOMAIN, true).expect("handshake");
    let ask = format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\n\r\n");
    open.send(ask.as_bytes()).expect("send");
    assert_eq!(open.read_response().expect("response").0.status, 200);
    // The CA is back (the settings point at it): renewed at once.
    let path = conf.path().join("goround.toml");
    std::fs::write(&path, &good).expect("config");
    proxy.reload().expect("reloaded");
    proxy.wait_for_log(
        &format!("certificate for {DOMAIN} issued, valid until"),
        ORDER_TIMEOUT,
    );
    let new_trust = trusting(&pebble.root());
    assert_eq!(https_hello(addr, &new_trust).as_deref(), Ok("hello"));
    // A client with no session to resume (a resumed one proves nothing about certificates).
    assert!(
        https_hello(addr, &trusting(&old_ca.pem())).is_err(),
        "new handshakes get the new certificate"
    );
    open.send(ask.as_bytes())
        .expect("send on the open connection");
    assert_eq!(
        open.read_response()
            .expect("the open connection still serves")
            .0
            .status,
        200
    );
    assert!(acme_status(admin).contains("\"state\":\"valid\""));
    // The CA stops, and a renewal is due (renew_before beyond the certificate's life): the
    // order fails, the certificate in service stays, and /metrics counts the failure.
    pebble.stop();
    let due = good.replace("[acme]\n", "[acme]\nrenew_before = \"3650d\"\n");
    std::fs::write(&path, due).expect("config");
    let mark = proxy.log_mark();
    proxy.reload().expect("reloaded");
    proxy.wait_for_log_since(mark, "the certificate in service stays", ORDER_TIMEOUT);
    assert_eq!(
        metric(admin, "goround_acme_orders_total{result=\"failed\"}").as_deref(),
        Some("2")
    );
    assert_eq!(https_hello(addr, &new_trust).as_deref(), Ok("hello"));
    let status = acme_status(admin);
    assert!(status.contains("\"state\":\"failing\""), "{status}");
}

#[test]
fn check_refuses_acme_without_https_and_names_it_cannot_order() {
    let dir = TempDir::new();
    let base = "[pools.web]\nupstreams = [\"127.0.0.1:9\"]\n[[routes]]\npool = \"web\"\n";
    for (acme, tls, wanted) in [
        (
            "[acme]\ndomains = [\"a.example\"]\n",
            "",
            "[acme] needs the HTTPS listener",
        ),
        (
            "[acme]\ndomains = [\"*.example.com\"]\n",
            "[tls]\nlisten = \"127.0.0.1:0\"\n",
            "a wildcard needs the dns-01 challenge",
        ),
        (
            "[acme]\nchallenge = \"dns-01\"\ndomains = [\"a.example\"]\n",
            "[tls]\nlisten = \"127.0.0.1:0\"\n",
            "challenge: 'dns-01' is not http-01 or tls-alpn-01",
        ),
        (
            "[acme]\n",
            "[tls]\nlisten = \"127.0.0.1:0\"\n",
            "[acme] has no domain",
        ),
        (
            "[acme]\ndomains = [\"a.example\"]\nrenew_before = \"30\"\n",
            "[tls]\nlisten = \"127.0.0.1:0\"\n",
            "renew_before: missing unit",
        ),
    ] {
        let path = dir.write("c.toml", &format!("{base}{tls}{acme}"));
        let out = Proxy::run(&["--config", &path.to_string_lossy(), "--check"]);
        let stderr = out.stderr.join("\n");
        assert!(!out.status.success(), "{acme}");
        assert!(stderr.contains(wanted), "{acme}: {stderr}");
    }
    // [tls] needs nothing but listen with [acme], and routed hosts are the default domains.
    let ok = "[pools.web]\nupstreams = [\"127.0.0.1:9\"]\n[[routes]]\nhost = \"www.example.org\"\n\
              pool = \"web\"\n[tls]\nlisten = \"127.0.0.1:0\"\n[acme]\nemail = \"a@example.org\"\n";
    let path = dir.write("ok.toml", ok);
    let out = Proxy::run(&["--config", &path.to_string_lossy(), "--check"]);
    assert!(out.status.success(), "{}", out.stderr.join("\n"));
}
