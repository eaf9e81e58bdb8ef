//! The command line: a bad flag or address is one line on stderr and exit code 2; `--help`
//! documents every flag.

mod common;

use common::*;

/// Run the proxy with exactly `args` (no harness defaults) and expect the usage-error contract.
#[track_caller]
fn assert_usage_error(args: &[&str]) {
    let done = Proxy::run(args);
    assert_eq!(
        done.status.code(),
        Some(2),
        "{args:?}: exit status {}, stderr {:?}",
        done.status,
        done.stderr
    );
    assert_eq!(
        done.stderr.len(),
        1,
        "{args:?}: stderr must be one line: {:?}",
        done.stderr
    );
    assert!(
        !done.stderr[0].trim().is_empty(),
        "{args:?}: the one line is empty"
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    assert_usage_error(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--bogus",
    ]);
}

#[test]
fn upstream_without_port_is_a_usage_error() {
    assert_usage_error(&["--listen", "127.0.0.1:0", "--upstream", "nohost"]);
}

#[test]
fn listen_port_out_of_range_is_a_usage_error() {
    assert_usage_error(&["--listen", ":99999", "--upstream", "127.0.0.1:9"]);
}

#[test]
fn duration_without_unit_is_a_usage_error() {
    assert_usage_error(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--health-interval",
        "10",
    ]);
}

#[test]
fn help_exits_0_and_names_every_flag() {
    let done = Proxy::run(&["--help"]);
    assert_eq!(done.status.code(), Some(0), "stderr: {:?}", done.stderr);
    let help = done.stdout.join("\n");
    for flag in [
        "--listen",
        "--upstream",
        "--workers",
        "--health-interval",
        "--health-timeout",
        "--connect-timeout",
        "--client-header-timeout",
        "--keepalive-timeout",
        "--read-timeout",
        "--write-timeout",
        "--shutdown-timeout",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn every_duration_flag_accepts_ms_and_s() {
    let dummies = Dummies::start(1);
    let proxy = Proxy::with_upstreams(
        &dummies.ports(),
        &[
            "--health-interval",
            "200ms",
            "--health-timeout",
            "100ms",
            "--connect-timeout",
            "1s",
            "--client-header-timeout",
            "2s",
            "--keepalive-timeout",
            "2s",
            "--read-timeout",
            "2s",
            "--write-timeout",
            "2s",
            "--shutdown-timeout",
            "1s",
        ],
    );
    assert_eq!(get_port(proxy.addr()), dummies.port(0));
}
