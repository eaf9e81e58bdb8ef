//! The access log's time follows the wall clock when it steps (an NTP correction, a VM
//! resumed), whatever else the proxy's timers do: checked with libfaketime, which moves the
//! process's wall clock while it runs.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[test]
#[cfg_attr(
    not(goround_has_faketime),
    ignore = "needs libfaketime (apt-get install faketime, then touch build.rs)"
)]
fn after_a_clock_step_logged_times_follow_the_new_clock() {
    assert!(Path::new(LIBFAKETIME).exists(), "{LIBFAKETIME} is missing");
    let dummies = Dummies::start(1);
    let dir = TempDir::new();
    let offset = dir.write("offset", "+0\n");
    let log = dir.path().join("access.json");
    let mut cmd = Command::new(PROXY_BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &format!("127.0.0.1:{}", dummies.port(0)),
        "--upstream-idle",
        "0",
        "--access-log",
        &log.to_string_lossy(),
        "--access-log-format",
        "json",
    ])
    .env("LD_PRELOAD", LIBFAKETIME)
    .env("FAKETIME_TIMESTAMP_FILE", &offset)
    .env("FAKETIME_NO_CACHE", "1")
    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    let proxy = Proxy::spawn(cmd);
    assert_eq!(get(proxy.addr(), "/before").0, 200);
    let year_of = |line: &str| -> i32 {
        let at = line.find("\"time\":\"").expect("a time") + 8;
        line[at..at + 4].parse().expect("a year")
    };
    let first = wait_file_lines(&log, 1);
    let before = year_of(&first[0]);
    // Ten years on, as if the clock had been set.
    std::fs::write(&offset, "+3650d\n").expect("step the clock");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        assert_eq!(get(proxy.addr(), "/after").0, 200);
        let lines = wait_file_lines(&log, 2);
        let last = lines.last().expect("a line");
        if year_of(last) >= before + 9 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still logged as {} after the step: {last}",
            year_of(last)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
