//! Which of the tools some black-box tests need this machine has. A test that needs a missing
//! tool is compiled `#[ignore]`d with the reason (`cfg_attr(not(goround_has_TOOL), ignore =
//! "...")`), so that `cargo test`'s own summary counts it as ignored and says why, instead of
//! a test that passes having checked nothing. `GOROUND_REQUIRE_TOOL=1` (CI sets them) keeps
//! such a test in whatever is found: without the tool it then fails.
//!
//! The search runs when this script does (a fresh build, or one of the variables below
//! changed): after installing a tool, `touch build.rs` to have the tests that need it run.

use std::env;
use std::path::Path;

/// (cfg, the variable that requires it, where the tool may be: a command on PATH or a path)
const TOOLS: &[(&str, &str, &[&str])] = &[
    (
        "goround_has_redis",
        "GOROUND_REQUIRE_REDIS",
        &["redis-server"],
    ),
    (
        "goround_has_chromium",
        "GOROUND_REQUIRE_BROWSER",
        &["chromium", "chromium-browser", "google-chrome"],
    ),
    (
        "goround_has_faketime",
        "GOROUND_REQUIRE_FAKETIME",
        &["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"],
    ),
    ("goround_has_curl", "GOROUND_REQUIRE_CURL", &["curl"]),
    (
        "goround_has_pebble",
        "GOROUND_REQUIRE_PEBBLE",
        &["pebble-challtestsrv"],
    ),
    (
        "goround_has_openssl",
        "GOROUND_REQUIRE_OPENSSL",
        &["openssl"],
    ),
    (
        "goround_has_systemd_analyze",
        "GOROUND_REQUIRE_SYSTEMD",
        &["systemd-analyze"],
    ),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    let path = env::var_os("PATH").unwrap_or_default();
    for (cfg, require, candidates) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={require}");
        let found = candidates.iter().any(|c| {
            if c.starts_with('/') {
                Path::new(c).exists()
            } else {
                env::split_paths(&path).any(|dir| dir.join(c).is_file())
            }
        });
        if found || env::var_os(require).is_some() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
