//! The deploy recipes: the systemd unit has what the README promises and passes
//! `systemd-analyze verify` (ignored, with the reason, where systemd is not installed; see
//! build.rs), the Kubernetes manifest guards the admin pages, and `--help` is a manual.

mod common;

use common::*;
use std::process::Command;

#[test]
fn the_systemd_unit_has_what_it_promises() {
    let unit = include_str!("../deploy/goround-mio.service");
    for line in [
        "Type=notify",
        "NotifyAccess=all",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "{line} missing");
    }
}

#[test]
#[cfg_attr(
    not(goround_has_systemd_analyze),
    ignore = "needs systemd-analyze (apt-get install systemd, then touch build.rs)"
)]
fn the_systemd_unit_and_socket_pass_systemd_analyze_verify() {
    let unit = include_str!("../deploy/goround-mio.service");
    let Some(analyze) = which("systemd-analyze") else {
        panic!("systemd-analyze is required here (apt-get install systemd)");
    };
    // Point the unit at the binary just built, so the check of ExecStart= finds it.
    let dir = TempDir::new();
    let text = unit.replace("/usr/local/bin/goround-mio", PROXY_BIN);
    let path = dir.write("goround-mio.service", &text);
    let socket = include_str!("../deploy/goround-mio.socket");
    dir.write("goround-mio.socket", socket);
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .arg(dir.path().join("goround-mio.socket"))
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without a running systemd (a container), verify still parses and checks every
    // directive; only lines about the missing manager are not ours.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("goround-mio"))
        .filter(|l| !l.contains("Failed to connect") && !l.contains("not booted"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn the_kubernetes_manifest_guards_the_admin_pages_with_a_token() {
    let manifest = include_str!("../deploy/kubernetes.yaml");
    for needle in [
        "token_file = \"/etc/goround/admin/token\"",
        "mountPath: /etc/goround/admin",
        "secretName: goround-admin-token",
        "httpGet: {path: /healthz, port: admin}",
    ] {
        assert!(manifest.contains(needle), "{needle} missing");
    }
}

#[test]
fn help_is_a_manual() {
    let out = Proxy::run(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {:?}", out.stderr);
    let text = out.stdout.join("\n");
    for section in [
        "SIGNALS",
        "SIGHUP",
        "SIGUSR2",
        "ENVIRONMENT",
        "LISTEN_FDS",
        "EXIT STATUS",
        "ADMIN PAGES",
        "--config <PATH>",
    ] {
        assert!(text.contains(section), "{section} missing from --help");
    }
    assert!(text.lines().count() > 120, "{} lines", text.lines().count());
}
