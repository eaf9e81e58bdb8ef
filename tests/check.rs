//! `--check` as an operator uses it before a deploy: it shows the warnings a start would log,
//! lists every section with its default, and refuses values past their bounds, naming the bound.

mod common;

use common::*;

#[test]
fn check_prints_the_warnings_on_stderr() {
    let dir = TempDir::new();
    let path = dir.write(
        "goround.toml",
        "[pools.web]\nupstreams = [\"127.0.0.1:9001\"]\n\
         [pools.spare]\nupstreams = [\"127.0.0.1:9001\"]\n\
         [pools.spare.health]\ncheck = \"http\"\npath = \"/ping\"\n\
         [[routes]]\npool = \"web\"\n",
    );
    let path_arg = path.to_string_lossy().into_owned();
    let done = Proxy::run(&["--config", &path_arg, "--check"]);
    assert_eq!(done.status.code(), Some(0), "{:?}", done.stderr);
    let stderr = done.stderr.join("\n");
    assert!(
        stderr.contains("pool 'spare' is not reached by any route"),
        "{stderr}"
    );
    assert!(
        stderr.contains("in pools 'spare' and 'web' with different health checks"),
        "{stderr}"
    );
    assert!(
        done.stderr.iter().all(|l| l.contains("warning")),
        "each line says what it is: {stderr}"
    );
    // The effective configuration is still the whole of stdout.
    assert!(done.stdout.join("\n").contains("[pools.spare]"));
}

#[test]
fn check_lists_every_section_even_when_unset() {
    let done = Proxy::run(&["--upstream", "127.0.0.1:9", "--check"]);
    assert_eq!(done.status.code(), Some(0), "{:?}", done.stderr);
    let printed = done.stdout.join("\n");
    for section in ["[admin]", "[access_log]", "[client_limits]"] {
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with('#') && l.contains(section)),
            "{section} missing from\n{printed}"
        );
    }
}

#[test]
fn sizes_past_their_bound_are_refused_with_the_bound_in_the_message() {
    for (flag, value, bound) in [
        ("--max-head", "5000m", "1MiB"),
        ("--request-buffer", "3000m", "16MiB"),
    ] {
        let done = Proxy::run(&["--upstream", "127.0.0.1:9", flag, value, "--check"]);
        assert_eq!(
            done.status.code(),
            Some(2),
            "{flag} {value}: {:?}",
            done.stderr
        );
        let stderr = done.stderr.join("\n");
        assert!(stderr.contains(bound), "{flag} {value}: {stderr}");
    }
    let dir = TempDir::new();
    let path = dir.write(
        "big.toml",
        "max_head = \"2MiB\"\n[pools.web]\nupstreams = [\"127.0.0.1:9\"]\n",
    );
    let done = Proxy::run(&["--config", &path.to_string_lossy(), "--check"]);
    assert_eq!(done.status.code(), Some(1), "{:?}", done.stderr);
    let stderr = done.stderr.join("\n");
    assert!(
        stderr.contains("big.toml:1:12:") && stderr.contains("1MiB"),
        "{stderr}"
    );
}

#[test]
fn a_rate_too_small_to_count_is_refused_with_the_bound_in_the_message() {
    let dir = TempDir::new();
    let path = dir.write(
        "slow.toml",
        "[client_limits]\nrequests_per_second = 0.0000000001\n[pools.web]\nupstreams = [\"127.0.0.1:9\"]\n",
    );
    let done = Proxy::run(&["--config", &path.to_string_lossy(), "--check"]);
    assert_eq!(done.status.code(), Some(1), "{:?}", done.stderr);
    let stderr = done.stderr.join("\n");
    assert!(
        stderr.contains("slow.toml:2:23:") && stderr.contains("0.001"),
        "{stderr}"
    );
}
