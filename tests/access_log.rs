//! The access log: nginx's combined lines byte for byte (the time aside), JSON lines with every
//! field, our own answers without an upstream, and SIGUSR1 reopening the file.

mod common;

use common::*;

/// The combined line without its `[time]`.
fn without_time(line: &str) -> String {
    let open = line.find('[').expect("a time");
    let close = line.find(']').expect("a time");
    format!("{}{}", &line[..open], &line[close + 1..])
}

#[test]
fn combined_lines_are_nginxs() {
    let dummies = Dummies::start(1);
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let log_arg = log.to_string_lossy().into_owned();
    let proxy = Proxy::with_upstreams(&dummies.ports(), &["--access-log", &log_arg]);
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(b"GET /a?b=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: t/1\r\nReferer: http://r.test/\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    c.send(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response("HEAD").status, 200);
    let bad = send_raw(proxy.addr(), b"GET / HTTP/1.1\r\n\r\n");
    assert!(bad.starts_with(b"HTTP/1.1 400 "));
    let got = wait_file_lines(&log, 3);
    let body = format!("Hello from Server {}\n", dummies.port(0)).len();
    assert_eq!(
        without_time(&got[0]),
        format!("127.0.0.1 - -  \"GET /a?b=1 HTTP/1.1\" 200 {body} \"http://r.test/\" \"t/1\"")
    );
    assert_eq!(
        without_time(&got[1]),
        "127.0.0.1 - -  \"HEAD /h HTTP/1.1\" 200 0 \"-\" \"-\""
    );
    assert_eq!(
        without_time(&got[2]),
        "127.0.0.1 - -  \"GET / HTTP/1.1\" 400 16 \"-\" \"-\"",
        "our own 400 (no Host): logged, with its body's bytes"
    );
    // [04/Dec/2026:05:10:00 +0000]
    let time = &got[0][got[0].find('[').unwrap() + 1..got[0].find(']').unwrap()];
    assert_eq!(time.len(), 26, "{time}");
    assert!(
        time.ends_with(" +0000") && time.as_bytes()[2] == b'/' && time.as_bytes()[11] == b':',
        "{time}"
    );
}

#[test]
fn json_lines_have_every_field_and_local_answers_no_upstream() {
    let dummies = Dummies::start(1);
    let port = dummies.port(0);
    let config = format!(
        "[access_log]\npath = \"LOG\"\nformat = \"json\"\n\
         [pools.web]\nupstreams = [\"127.0.0.1:{port}\"]\n\
         [[routes]]\nhost = \"www.test\"\npool = \"web\"\n"
    );
    let dir = TempDir::new();
    let log = dir.path().join("access.json");
    let config = config.replace("LOG", &log.to_string_lossy());
    let (proxy, _cfg) = Proxy::with_config(&config, &[]);
    let mut c = ResponseReader::connect(proxy.addr());
    c.send(b"GET /x HTTP/1.1\r\nHost: www.test\r\nUser-Agent: ua\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 200);
    c.send(b"GET /y HTTP/1.1\r\nHost: nowhere.test\r\n\r\n");
    assert_eq!(c.read_response("GET").status, 404);
    let got = wait_file_lines(&log, 2);
    let ok = &got[0];
    for key in [
        "\"time\":\"20",
        "\"client\":\"127.0.0.1\"",
        "\"method\":\"GET\"",
        "\"target\":\"/x\"",
        "\"version\":\"HTTP/1.1\"",
        "\"host\":\"www.test\"",
        "\"status\":200",
        "\"bytes_sent\":",
        "\"duration_ms\":",
        "\"pool\":\"web\"",
        &format!("\"upstream\":\"127.0.0.1:{port}\""),
        "\"upstream_ms\":",
        "\"user_agent\":\"ua\"",
        "\"referer\":null",
    ] {
        assert!(ok.contains(key), "{key} missing from {ok}");
    }
    assert!(ok.starts_with('{') && ok.ends_with('}'), "{ok}");
    let local = &got[1];
    assert!(local.contains("\"status\":404"), "{local}");
    assert!(
        local.contains("\"pool\":null,\"upstream\":null,\"upstream_ms\":null"),
        "{local}"
    );
}

#[test]
fn sigusr1_reopens_the_file() {
    let dummies = Dummies::start(1);
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log_arg = log.to_string_lossy().into_owned();
    let mut proxy = Proxy::with_upstreams(
        &dummies.ports(),
        &["--access-log", &log_arg, "--access-log-format", "combined"],
    );
    assert_eq!(get(proxy.addr(), "/before").0, 200);
    wait_file_lines(&log, 1);
    std::fs::rename(&log, &rotated).expect("rotate");
    let mark = proxy.log_mark();
    proxy.signal(libc::SIGUSR1);
    proxy.wait_for_log_since(mark, "reopened", LOG_TIMEOUT);
    assert_eq!(get(proxy.addr(), "/after").0, 200);
    let new = wait_file_lines(&log, 1);
    assert!(new[0].contains("GET /after "), "{new:?}");
    let old = std::fs::read_to_string(&rotated).expect("the rotated file");
    assert!(
        old.contains("GET /before ") && !old.contains("/after"),
        "{old}"
    );
}
