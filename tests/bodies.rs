//! Large bodies stream through the proxy intact and without being buffered whole.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::thread;
use std::time::Duration;

/// The body size of these tests.
const BODY: usize = 10 * 1024 * 1024;
/// Absolute ceiling for the proxy's peak RSS: a debug build with one worker idles at a few MiB.
const MAX_RSS_KIB: u64 = 64 * 1024;
/// How much the peak RSS may grow while one 10 MiB body passes: well below the body size, so a
/// proxy that holds the whole body (or lets an unbounded buffer fill behind a slow reader)
/// fails, while fixed per-connection buffers (tens or hundreds of KiB) pass easily.
const MAX_RSS_GROWTH_KIB: u64 = 8 * 1024;

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// Start a proxy in front of one dummy and warm it up with a request, so its per-connection
/// buffers exist before the baseline is taken. Returns the proxy, the dummies and the baseline.
fn warm_proxy() -> (Proxy, Dummies, u64) {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(&dummies.ports(), &[]);
    assert_eq!(get(proxy.addr(), "/big?bytes=100000").0, 200);
    let baseline = vm_hwm_kib(proxy.pid());
    (proxy, dummies, baseline)
}

#[track_caller]
fn assert_memory_bounded(proxy: &Proxy, baseline_kib: u64) {
    let peak = vm_hwm_kib(proxy.pid());
    assert!(
        peak < MAX_RSS_KIB,
        "peak RSS {peak} KiB over the {MAX_RSS_KIB} KiB bound"
    );
    assert!(
        peak.saturating_sub(baseline_kib) < MAX_RSS_GROWTH_KIB,
        "peak RSS grew from {baseline_kib} to {peak} KiB while a {} KiB body passed: buffered?",
        BODY / 1024
    );
}

#[test]
fn ten_mib_upload_is_echoed_intact() {
    let (proxy, _dummies, baseline) = warm_proxy();
    // Not the dummy's pattern: a byte-shuffling bug must not cancel out.
    let body: Vec<u8> = (0..BODY as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let expected = sha256(&body);

    let mut client = ResponseReader::connect(proxy.addr());
    let mut writer = client
        .stream()
        .try_clone()
        .expect("clone the client socket");
    let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n");
    // The echo streams back while we upload: write and read at the same time.
    let sender = thread::spawn(move || {
        writer.write_all(head.as_bytes())?;
        for piece in body.chunks(64 * 1024) {
            writer.write_all(piece)?;
        }
        Ok::<(), std::io::Error>(())
    });
    let resp = client.read_response("POST");
    sender.join().expect("writer thread").expect("upload");
    assert_eq!(resp.status, 200);
    assert!(resp.body.len() >= BODY, "echo of {} bytes", resp.body.len());
    let (echo_head, echo_body) = resp.body.split_at(resp.body.len() - BODY);
    assert!(
        echo_head.starts_with(b"POST /echo HTTP/1.1\r\n"),
        "{}",
        show(echo_head)
    );
    assert!(echo_head.ends_with(format!("\r\nContent-Length: {BODY}\r\n\r\n").as_bytes()));
    assert!(
        sha256(echo_body) == expected,
        "the echoed upload differs (sha256)"
    );
    assert_memory_bounded(&proxy, baseline);
}

#[test]
fn ten_mib_download_is_intact_behind_a_slow_starting_reader() {
    let (proxy, _dummies, baseline) = warm_proxy();
    let mut client = ResponseReader::connect(proxy.addr());
    client.send(format!("GET /big?bytes={BODY} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    // Loopback moves 10 MiB in milliseconds: if the proxy read the upstream without regard for
    // this client, the whole body would pile up in its memory during this pause.
    thread::sleep(Duration::from_millis(200));
    let resp = client.read_response("GET");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), BODY);
    assert!(
        sha256(&resp.body) == sha256(&pattern(BODY)),
        "download differs (sha256)"
    );
    assert_memory_bounded(&proxy, baseline);
}
