//! The live status page in a real browser: headless Chromium loads it before an incident, an
//! upstream is killed and a backend answers a burst of 5xx, and the page, refreshing itself
//! from `/status` and `/status/history` (no reload), shows the row as down, marks the moment in
//! its sparklines and the pool's chart, and draws the burst in the pool's error chart. The
//! browser is driven over the DevTools protocol with a minimal WebSocket client written here.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it). Without it the test
//! is ignored, with the reason (see build.rs), unless `GOROUND_REQUIRE_BROWSER=1` (CI sets it).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The names Chromium goes by on PATH (build.rs looks for the same).
const BROWSERS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// The first Chromium on PATH.
fn browser() -> Option<PathBuf> {
    BROWSERS.iter().find_map(|name| which(name))
}

/// A minimal WebSocket client (RFC 6455): text frames out (masked), frames in (unmasked),
/// continuation frames joined.
struct Ws {
    stream: TcpStream,
    next_id: u64,
}

impl Ws {
    fn connect(url: &str) -> Ws {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (host, path) = rest.split_once('/').expect("a path");
        let mut stream = TcpStream::connect(host).expect("connect to the browser");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let req = format!(
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("the upgrade answer");
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        Ws { stream, next_id: 0 }
    }

    fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    fn receive(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h).expect("a frame");
            let fin = h[0] & 0x80 != 0;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    self.stream.read_exact(&mut l).unwrap();
                    u64::from(u16::from_be_bytes(l))
                }
                127 => {
                    let mut l = [0u8; 8];
                    self.stream.read_exact(&mut l).unwrap();
                    u64::from_be_bytes(l)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).unwrap();
            message.extend_from_slice(&payload);
            if fin {
                return String::from_utf8_lossy(&message).into_owned();
            }
        }
    }

    /// Call `method` with `params` (JSON) and return the reply to it (events are skipped).
    fn call(&mut self, method: &str, params: &str) -> String {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&format!(
            "{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}"
        ));
        let tag = format!("\"id\":{id},");
        loop {
            let m = self.receive();
            if m.starts_with(&format!("{{{tag}")) || m.contains(&tag) && m.contains("\"result\"") {
                return m;
            }
        }
    }

    /// Evaluate a JavaScript expression and return its JSON `value` text.
    fn eval(&mut self, expr: &str) -> String {
        let escaped = expr.replace('\\', "\\\\").replace('"', "\\\"");
        let reply = self.call(
            "Runtime.evaluate",
            &format!("{{\"expression\":\"{escaped}\",\"returnByValue\":true}}"),
        );
        let value = reply.split("\"value\":").nth(1).unwrap_or("");
        if let Some(rest) = value.strip_prefix('"') {
            // A string: up to its closing quote (escaped quotes skipped).
            let mut end = 0;
            let bytes = rest.as_bytes();
            while end < bytes.len() && bytes[end] != b'"' {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            return format!("\"{}\"", &rest[..end.min(rest.len())]);
        }
        value.split(['}', ',']).next().unwrap_or("").to_string()
    }
}

/// A plain HTTP GET to the browser's DevTools endpoint.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the DevTools endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// Standard base64 (the screenshot comes that way).
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n =
            chunk.iter().fold(0u32, |acc, &d| (acc << 6) | u32::from(d)) << (6 * (4 - chunk.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// The browser process, killed on drop.
struct Browser(std::process::Child, TempDir);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_browser(path: &Path) -> (Browser, u16) {
    let profile = TempDir::new();
    let child = Command::new(path)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let browser = Browser(child, profile);
    let port_file = browser.1.path().join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(20);
    let port = loop {
        if let Ok(f) = std::fs::File::open(&port_file) {
            let mut line = String::new();
            let _ = BufReader::new(f).read_line(&mut line);
            if let Ok(p) = line.trim().parse() {
                break p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not open its DevTools port"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (browser, port)
}

#[test]
#[cfg_attr(
    not(goround_has_chromium),
    ignore = "needs Chromium (apt-get install chromium, then touch build.rs)"
)]
fn the_page_opened_before_an_incident_shows_it_in_its_tables_and_charts() {
    let Some(path) = browser() else {
        panic!("Chromium is required here (apt-get install chromium)");
    };
    let mut dummies = Dummies::start(3);
    let victim = dummies.port(1);
    let proxy = Proxy::with_upstreams(
        &dummies.ports(),
        &["--admin", "127.0.0.1:0", "--health-interval", "300ms"],
    );
    for _ in 0..9 {
        assert_eq!(get(proxy.addr(), "/").0, 200);
    }
    let admin = proxy.admin_addr();
    let (_browser, port) = start_browser(&path);
    let list = http_get(port, "/json/list");
    let ws_url = list
        .split("\"webSocketDebuggerUrl\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no page target in {list}"))
        .to_string();
    let mut ws = Ws::connect(&ws_url);
    ws.call("Page.enable", "{}");
    ws.call("Page.navigate", &format!("{{\"url\":\"http://{admin}/\"}}"));
    let loaded = |ws: &mut Ws| ws.eval("document.readyState") == "\"complete\"";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !loaded(&mut ws) {
        assert!(Instant::now() < deadline, "the page never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let row =
        format!("document.querySelector('tr[data-upstream=\\\"127.0.0.1:{victim}\\\"]').className");
    assert_eq!(ws.eval(&row), "\"up\"", "rendered by the server, all up");
    assert_eq!(ws.eval("document.querySelectorAll('tr.up').length"), "3");
    // A mark the page keeps only if it is never reloaded.
    ws.eval("window.__kept = 7");
    // The script drew the last hour: the clients' chart, the pool's, two sparklines a row.
    let drawn = |ws: &mut Ws| {
        ws.eval("document.querySelectorAll('svg.chart[data-clients]').length") == "1"
            && ws.eval("document.querySelectorAll('svg.chart[data-pool=\\\"default\\\"]').length")
                == "1"
            && ws.eval("document.querySelectorAll('svg.spark').length") == "6"
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !drawn(&mut ws) {
        assert!(Instant::now() < deadline, "the charts were never drawn");
        std::thread::sleep(Duration::from_millis(100));
    }
    let chart = "document.querySelector('svg.chart[data-pool=\\\"default\\\"]')";
    assert_eq!(
        ws.eval(&format!("{chart}.getAttribute('data-error-peak')")),
        "\"0\"",
        "no error yet"
    );
    let marks = |ws: &mut Ws, scope: &str| {
        ws.eval(&format!(
            "document.querySelectorAll('{scope} line.mark-down').length"
        ))
    };
    assert_eq!(marks(&mut ws, ""), "0");

    // The incident: an upstream dies.
    dummies.kill(1);
    proxy.wait_for_log(&down_line(victim), LOG_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ws.eval(&row) != "\"down\"" {
        assert!(
            Instant::now() < deadline,
            "the page never showed the row as down"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Within two refreshes of the one that showed the row down, both its sparklines mark the
    // moment, and so does the pool's chart; no other row has a mark.
    let victim_row = format!("tr[data-upstream=\\\"127.0.0.1:{victim}\\\"]");
    let updated = |ws: &mut Ws| ws.eval("document.getElementById('updated').textContent");
    let mut refreshes = 0;
    let mut seen = updated(&mut ws);
    let deadline = Instant::now() + Duration::from_secs(20);
    while marks(&mut ws, &victim_row) != "2" {
        assert!(Instant::now() < deadline, "the page stopped refreshing");
        let now = updated(&mut ws);
        if now != seen {
            seen = now;
            refreshes += 1;
            assert!(
                refreshes <= 2 || marks(&mut ws, &victim_row) == "2",
                "two refreshes and the sparklines do not mark the upstream going down"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        marks(&mut ws, "svg.chart"),
        "1",
        "the pool's chart marks it"
    );
    assert_eq!(marks(&mut ws, ""), "3", "and nothing else");
    assert_eq!(
        ws.eval("window.__kept"),
        "7",
        "refreshed in place, not reloaded"
    );
    assert_eq!(ws.eval("document.querySelectorAll('tr.down').length"), "1");
    let colour = ws.eval(&format!(
        "getComputedStyle(document.querySelector('tr[data-upstream=\\\"127.0.0.1:{victim}\\\"]')).backgroundColor"
    ));
    assert_eq!(colour, "\"rgb(253, 226, 225)\"", "down rows stand out");

    // A burst of 5xx from the backends shows in the pool's error chart.
    for _ in 0..20 {
        assert_eq!(get(proxy.addr(), "/status/500").0, 500);
    }
    let peak = |ws: &mut Ws| -> f64 {
        ws.eval(&format!("{chart}.getAttribute('data-error-peak')"))
            .trim_matches('"')
            .parse()
            .unwrap_or(-1.0)
    };
    // 20 of the 29 responses so far, all in the open bucket or two (the 9 before may sit in
    // an older one): at least 20/29 once the page has read the whole burst.
    let deadline = Instant::now() + Duration::from_secs(10);
    while peak(&mut ws) < 0.68 {
        assert!(
            Instant::now() < deadline,
            "the error chart never showed the 5xx: peak {}",
            peak(&mut ws)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let share = peak(&mut ws);
    assert!(share <= 1.0, "error share {share}");
    // The error line rises above the chart's floor (its y is under 89 of 90 somewhere).
    let d = ws.eval(&format!(
        "{chart}.querySelector('path.errors').getAttribute('d')"
    ));
    let ys: Vec<f64> = d
        .trim_matches('"')
        .split(['M', 'L'])
        .filter_map(|pt| pt.split_whitespace().nth(1)?.parse().ok())
        .collect();
    assert!(ys.iter().any(|&y| y < 45.0), "the error line: {d}");

    // A pool the operator folded stays folded across refreshes.
    let pool = "document.querySelector('details[data-pool=\\\"default\\\"]')";
    assert_eq!(ws.eval(&format!("{pool}.open")), "true");
    ws.eval(&format!("{pool}.open = false"));
    let before = updated(&mut ws);
    let deadline = Instant::now() + Duration::from_secs(6);
    while updated(&mut ws) == before {
        assert!(Instant::now() < deadline, "the page stopped refreshing");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ws.eval(&format!("{pool}.open")), "false");
    ws.eval(&format!("{pool}.open = true"));

    // The screenshot the README shows.
    let shot = ws.call("Page.captureScreenshot", "{\"format\":\"png\"}");
    let data = shot
        .split("\"data\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("image data");
    let png = base64_decode(data);
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", out.display());
}
