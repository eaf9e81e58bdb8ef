//! The config file from the command line: `--check` prints the effective configuration and
//! exits 0 (the shipped example included), a bad file is `PATH:LINE:COL: message` and exit 1,
//! `--upstream` with `--config` is a usage error (exit 2).

mod common;

use common::*;

#[test]
fn the_shipped_example_checks_and_its_effective_form_reads_back_the_same() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/goround.toml");
    let done = Proxy::run(&["--config", example, "--check"]);
    assert_eq!(done.status.code(), Some(0), "{:?}", done.stderr);
    let printed = done.stdout.join("\n") + "\n";
    for key in [
        "listen = \":8000\"",
        "[pools.api]",
        "strategy = \"least_conn\"",
        "[pools.api.health]",
        "rise = 2",
        "hash_key = \"cookie:session\"",
        "[[routes]]",
        "host = \"*.example.com\"",
        "{ address = \"127.0.0.1:9001\", weight = 3, backup = false }",
        "max_conns = 100",
    ] {
        assert!(printed.contains(key), "{key} missing from\n{printed}");
    }
    // The effective configuration is itself a config file that means the same.
    let dir = TempDir::new();
    let path = dir.write("effective.toml", &printed);
    let again = Proxy::run(&["--config", &path.to_string_lossy(), "--check"]);
    assert_eq!(again.status.code(), Some(0), "{:?}", again.stderr);
    assert_eq!(again.stdout.join("\n") + "\n", printed);
}

#[test]
fn check_without_a_file_prints_the_flags_as_a_config() {
    let done = Proxy::run(&[
        "--upstream",
        "127.0.0.1:9000",
        "--connect-timeout",
        "1500ms",
        "--check",
    ]);
    assert_eq!(done.status.code(), Some(0), "{:?}", done.stderr);
    let printed = done.stdout.join("\n");
    assert!(
        printed.contains("connect_timeout = \"1500ms\""),
        "{printed}"
    );
    assert!(printed.contains("[pools.default]"), "{printed}");
    assert!(
        printed.contains("address = \"127.0.0.1:9000\""),
        "{printed}"
    );
}

#[test]
fn a_bad_file_is_path_line_col_and_exit_1() {
    let dir = TempDir::new();
    for (text, want) in [
        (
            "listen = \":0\"\nconect_timeout = \"4s\"\n",
            ":2:1: unknown key `conect_timeout` (did you mean `connect_timeout`?)",
        ),
        (
            "[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[routes]]\npool = \"b\"\n",
            ":4:8: route to pool 'b', which does not exist",
        ),
        (
            "[pools.a]\nupstreams = [{ address = \"127.0.0.1:1\", weight = 0 }]\n",
            ":2:50: weight must be at least 1",
        ),
        ("[pools.a\n", ":1:"),
    ] {
        let path = dir.write("bad.toml", text);
        let path = path.to_string_lossy().into_owned();
        for check in [true, false] {
            let mut args = vec!["--config", path.as_str()];
            if check {
                args.push("--check");
            }
            let done = Proxy::run(&args);
            assert_eq!(done.status.code(), Some(1), "{text}: {:?}", done.stderr);
            assert_eq!(done.stderr.len(), 1, "{:?}", done.stderr);
            let want = format!("{path}{want}");
            assert!(
                done.stderr[0].starts_with(&want),
                "{}\nwant {want}",
                done.stderr[0]
            );
        }
    }
    let done = Proxy::run(&["--config", "/nonexistent/goround.toml"]);
    assert_eq!(done.status.code(), Some(1));
    assert!(
        done.stderr[0].starts_with("/nonexistent/goround.toml:1:1: cannot read the file"),
        "{:?}",
        done.stderr
    );
}

#[test]
fn upstream_flags_and_a_config_file_do_not_mix() {
    let dir = TempDir::new();
    let path = dir.write("a.toml", "[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n");
    let done = Proxy::run(&[
        "--config",
        &path.to_string_lossy(),
        "--upstream",
        "127.0.0.1:2",
    ]);
    assert_eq!(done.status.code(), Some(2), "{:?}", done.stderr);
    assert!(
        done.stderr[0].contains("--upstream cannot be used with --config"),
        "{:?}",
        done.stderr
    );
}

#[test]
fn an_unreached_pool_is_a_warning_at_start() {
    let backend = RawBackend::fixed(&ok_response("ok"));
    let config = format!(
        "[pools.a]\nupstreams = [\"127.0.0.1:{p}\"]\n[pools.b]\nupstreams = [\"127.0.0.1:{p}\"]\n\
         [[routes]]\npool = \"a\"\n",
        p = backend.port()
    );
    let (proxy, _dir) = Proxy::with_config(&config, &[]);
    let line = proxy.wait_for_log("pool 'b' is not reached by any route", LOG_TIMEOUT);
    assert!(
        line.contains("WARN") && line.contains("goround.toml:3:1"),
        "{line}"
    );
    assert_eq!(get(proxy.addr(), "/").0, 200);
}
