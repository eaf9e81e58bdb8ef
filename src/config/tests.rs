//! The merge of flags and file, and every rule of the file, as unit tests: no sockets (the
//! addresses are IP literals).

use super::build::build;
use super::values::default_workers;
use super::*;
use crate::http::Limits;
use clap::{CommandFactory, FromArgMatches};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    load_from(std::iter::once("goround-mio").chain(args.iter().copied()))
}

fn error(args: &[&str]) -> String {
    match parse(args) {
        Err(ConfigError::Usage(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(a), port))
}

/// Load `text` as the file `t.toml`, with `args` on the command line too.
fn file_with(text: &str, args: &[&str]) -> Result<Config, ConfigError> {
    let mut all = vec!["goround-mio", "--config", "t.toml"];
    all.extend_from_slice(args);
    let matches = flags::Cli::command()
        .try_get_matches_from(all)
        .map_err(|e| ConfigError::Usage(e.to_string()))?;
    let cli =
        flags::Cli::from_arg_matches(&matches).map_err(|e| ConfigError::Usage(e.to_string()))?;
    build(cli, &matches, Some(text))
}

fn file(text: &str) -> Config {
    match file_with(text, &[]) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}\n{text}"),
    }
}

fn file_error(text: &str) -> String {
    match file_with(text, &[]) {
        Err(ConfigError::File(e)) => e,
        other => panic!("expected a file error, got {other:?}\n{text}"),
    }
}

/// A configuration with every kind of pool and route: the one the README shows.
const EXAMPLE: &str = r#"
listen = ":8000"
workers = 2

[pools.web]                       # strategy defaults to round_robin
upstreams = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]

[pools.api]
strategy = "least_conn"           # round_robin | least_conn | ip_hash | hash
upstreams = [
  { address = "127.0.0.1:9001", weight = 3 },
  { address = "127.0.0.1:9002" },
  { address = "127.0.0.1:9009", backup = true },   # only while every other one is down
]
[pools.api.health]
check = "http"                    # tcp (default: the 10 s connect sweep) | http
path = "/healthz"
expect = "200-399"
interval = "2s"
timeout = "1s"
rise = 2
fall = 2

[pools.carts]
strategy = "hash"
hash_key = "cookie:session"       # client_ip | header:NAME | cookie:NAME | path
upstreams = ["127.0.0.1:9101", "127.0.0.1:9102"]

[[routes]]
host = "api.example.com"
pool = "api"

[[routes]]
host = "*.example.com"
path = "/cart"
pool = "carts"

[[routes]]                        # no host and no path: the default route
pool = "web"
"#;

#[test]
fn a_configuration_with_every_kind_of_pool_and_route_loads() {
    let c = file(EXAMPLE);
    assert_eq!(c.workers, 2);
    assert_eq!(c.listen.port(), 8000);
    let names: Vec<&str> = c.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["api", "carts", "web"]);
    let api = &c.pools[0];
    assert_eq!(api.strategy, Strategy::LeastConn);
    assert_eq!(api.upstreams.len(), 3);
    assert_eq!(
        (api.upstreams[0].weight, api.upstreams[2].backup),
        (3, true)
    );
    assert_eq!(api.health.check, Check::Http);
    assert_eq!(api.health.path, "/healthz");
    assert_eq!((api.health.rise, api.health.fall), (2, 2));
    assert_eq!(api.health.interval, Duration::from_secs(2));
    assert_eq!(api.health.timeout, Duration::from_secs(1));
    assert_eq!(api.retries, 2);
    let carts = &c.pools[1];
    assert_eq!(carts.hash_key, Some(HashKey::Cookie("session".into())));
    assert_eq!(carts.retries, 1, "one other upstream");
    let web = &c.pools[2];
    assert_eq!(web.health.check, Check::Tcp);
    assert_eq!(
        web.health.interval,
        Duration::from_secs(10),
        "the top-level default"
    );
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.routes[1].host.as_deref(), Some("*.example.com"));
    assert_eq!(c.routes[1].path.as_deref(), Some("/cart"));
    assert_eq!(c.routes[1].pool, 1);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn the_effective_configuration_reads_back_the_same() {
    let c = file(EXAMPLE);
    let printed = print::effective(&c);
    let again = file(&printed);
    assert_eq!(again.pools, c.pools, "{printed}");
    assert_eq!(again.routes, c.routes);
    assert_eq!(print::effective(&again), printed);
    assert!(printed.contains("connect_timeout = \"4s\""), "{printed}");
    assert!(
        printed.contains("[pools.api.health]\ncheck = \"http\""),
        "{printed}"
    );
}

#[test]
fn flags_override_the_file_and_defaults_fill_the_rest() {
    let text = "connect_timeout = \"9s\"\nworkers = 3\nmax_head = \"64KiB\"\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n";
    let c = file_with(text, &["--workers", "5"]).unwrap();
    assert_eq!(c.workers, 5, "the flag wins");
    assert_eq!(c.connect_timeout, Duration::from_secs(9), "the file's key");
    assert_eq!(c.limits.max_head, 64 << 10);
    assert_eq!(c.read_timeout, Duration::from_secs(60), "the default");
    assert_eq!(
        c.routes,
        vec![RouteSpec {
            host: None,
            path: None,
            pool: 0
        }],
        "implied catch-all"
    );
    let c = file_with(
        "max_head = 40000\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n",
        &[],
    )
    .unwrap();
    assert_eq!(c.limits.max_head, 40000, "sizes as integers too");
}

#[test]
fn upstream_flags_with_a_config_file_are_a_usage_error() {
    match file_with(
        "[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n",
        &["--upstream", "127.0.0.1:2"],
    ) {
        Err(ConfigError::Usage(e)) => assert!(e.contains("--upstream"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_rule_of_the_file_has_a_positioned_error() {
    let cases: &[(&str, &str)] = &[
        ("conect_timeout = \"4s\"\n", "t.toml:1:1: unknown key `conect_timeout` (did you mean `connect_timeout`?)"),
        ("connect_timeout = \"4\"\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:1:19: connect_timeout: missing unit in duration '4' (use ms, s, m, h or d)"),
        ("workers = 0\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:1:11: workers: must be at least 1"),
        ("[pools.a]\nupstreams = []\n", "t.toml:2:13: pool 'a' has no upstreams"),
        ("[pools.a]\nupstreams = [{ address = \"127.0.0.1:1\", weight = 0 }]\n", "t.toml:2:50: weight must be at least 1"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\", \"http://127.0.0.1:1\"]\n", "t.toml:2:29: pool 'a' lists 127.0.0.1:1 twice (as http://127.0.0.1:1)"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[routes]]\npool = \"b\"\n", "t.toml:4:8: route to pool 'b', which does not exist"),
        ("[pools.web]\nupstreams = [\"127.0.0.1:1\"]\n[[routes]]\npool = \"wbe\"\n", "t.toml:4:8: route to pool 'wbe', which does not exist (did you mean 'web'?)"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[pools.b]\nupstreams = [\"127.0.0.1:2\"]\n", "t.toml:1:1: 2 pools and no [[routes]]"),
        ("[pools.a]\nstrategy = \"fastest\"\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:2:12: strategy: unknown strategy 'fastest'"),
        ("[pools.a]\nstrategy = \"hash\"\nupstreams = [\"127.0.0.1:1\"]\n", "strategy \"hash\" needs a hash_key"),
        ("[pools.a]\nhash_key = \"path\"\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:2:12: hash_key is only for strategy \"hash\""),
        ("[pools.a]\nstrategy = \"hash\"\nhash_key = \"body\"\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:3:12: hash_key: unknown hash_key 'body'"),
        ("[pools.a]\nupstreams = [\"127.0.0.1\"]\n", "t.toml:2:14: upstream: missing port in '127.0.0.1'"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[pools.a.health]\ncheck = \"icmp\"\n", "t.toml:4:9: check: unknown check 'icmp'"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[pools.a.health]\nexpect = \"200-1000\"\n", "t.toml:4:10: expect: '1000' is not a status code"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[pools.a.health]\nrise = 0\n", "t.toml:4:8: rise must be a whole number from 1 to 100"),
        ("[pools.a]\nupstreams = [{ address = \"127.0.0.1:1\", backup = true }]\n", "every upstream is a backup"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[routes]]\nhost = \"a:80\"\npool = \"a\"\n", "t.toml:4:8: host: 'a:80' is not a host name"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[routes]]\npath = \"cart\"\npool = \"a\"\n", "t.toml:4:8: path: 'cart' must start with '/'"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[routes]]\npool = \"a\"\n[[routes]]\npool = \"a\"\n", "t.toml:5:1: a route for the same host and path already goes to pool 'a'"),
        ("[pools.\"a b\"]\nupstreams = [\"127.0.0.1:1\"]\n", "pool name 'a b'"),
        ("", "t.toml:1:1: no pools"),
        ("listen = 80\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:1:10: listen: expected a string, found integer"),
        ("max_request_line = \"64k\"\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:1:20: --max-request-line (65536) must not exceed --max-head (32768)"),
        ("[client_limits]\nshared = \"http://r:6379\"\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:2:10: shared: 'http://r:6379' is not a Redis URL"),
        ("[client_limits]\nshared = \"rediss://r:6380\"\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:2:10: shared: TLS (rediss://) is not supported"),
        ("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\nsend_proxy = \"v3\"\n", "t.toml:3:14: send_proxy: 'v3' is not one of v1, v2"),
        ("proxy_protocol_from = [\"10.0.0.0/33\"]\n[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n", "t.toml:1:24: proxy_protocol_from: "),
    ];
    for (text, want) in cases {
        let got = file_error(text);
        assert!(
            got.starts_with(want) || (!want.starts_with("t.toml") && got.contains(want)),
            "{text}\n  got:  {got}\n  want: {want}"
        );
    }
}

#[test]
fn unreached_pools_and_shared_upstreams_are_warnings() {
    let c = file("[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[pools.b]\nupstreams = [\"127.0.0.1:1\"]\n[pools.b.health]\nrise = 3\n[[routes]]\npool = \"a\"\n");
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].starts_with("t.toml:3:1: pool 'b' is not reached by any route"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings[1].contains("with different health checks"),
        "{:?}",
        c.warnings
    );
}

#[test]
fn status_ranges() {
    let r = StatusRanges::parse("200,204,301-302").unwrap();
    assert!(r.contains(200) && r.contains(302) && !r.contains(201) && !r.contains(303));
    assert_eq!(r.describe(), "200,204,301-302");
    for bad in ["", "2xx", "399-200", "99", "600", "200-"] {
        assert!(StatusRanges::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn defaults() {
    let c = parse(&["--upstream", "127.0.0.1:9000"]).unwrap();
    assert_eq!(c.listen, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8000)));
    assert!(c.dual_stack);
    assert_eq!(c.pools.len(), 1);
    assert_eq!(c.pools[0].name, "default");
    assert_eq!(
        c.pools[0].upstreams[0].address,
        Address {
            name: "127.0.0.1:9000".to_string(),
            addr: v4([127, 0, 0, 1], 9000)
        }
    );
    assert_eq!(
        c.routes,
        vec![RouteSpec {
            host: None,
            path: None,
            pool: 0
        }]
    );
    assert_eq!(c.workers, default_workers());
    assert!(c.workers >= 1);
    assert_eq!(c.health_interval, Duration::from_secs(10));
    assert_eq!(c.health_timeout, Duration::from_secs(2));
    assert_eq!(c.connect_timeout, Duration::from_secs(4));
    assert_eq!(c.client_header_timeout, Duration::from_secs(10));
    assert_eq!(c.keepalive_timeout, Duration::from_secs(15));
    assert_eq!(c.read_timeout, Duration::from_secs(60));
    assert_eq!(c.write_timeout, Duration::from_secs(60));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(c.backlog, 1024);
    assert_eq!(c.limits, Limits::DEFAULT);
    assert!(!c.demo);
    assert!(!c.underscores_in_headers);
    assert_eq!(c.log_level, log::LevelFilter::Info);
    assert!(c.notices.is_empty());
    assert_eq!(c.upstream_idle, None);
    assert_eq!(c.request_buffer, 64 << 10);
    assert_eq!(
        (c.splice_min, c.splice_min_response),
        (128 << 10, 192 << 10)
    );
}

#[test]
fn the_idle_budget_leaves_clients_ninety_percent_of_the_descriptors() {
    for nofile in [0, 1, 64, 65, 1024, 4096, 20_000, 65_536, 1 << 20] {
        let idle = default_idle_budget(nofile);
        assert!(idle <= MAX_DEFAULT_IDLE);
        let clients = default_max_connections(nofile, idle, 1);
        let without_pool = nofile.saturating_sub(RESERVED_FDS) / 2;
        assert!(
            clients * 10 >= without_pool * 9,
            "{nofile}: {clients} of {without_pool}"
        );
        assert!(
            2 * clients + idle + RESERVED_FDS <= nofile.max(RESERVED_FDS + 2),
            "{nofile}"
        );
    }
    assert_eq!(default_idle_budget(20_000), 1992);
    assert_eq!(default_max_connections(20_000, 1992, 2), 8972);
}

#[test]
fn an_explicit_splice_min_sets_both_directions() {
    for (arg, want) in [("64k", 64 << 10), ("0", 0), ("4m", 4 << 20)] {
        let c = parse(&["--upstream", "127.0.0.1:9000", "--splice-min", arg]).unwrap();
        assert_eq!((c.splice_min, c.splice_min_response), (want, want), "{arg}");
    }
}

#[test]
fn every_flag() {
    let c = parse(&[
        "--listen=127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9001/",
        "--upstream",
        "[::1]:9002",
        "--workers",
        "3",
        "--health-interval",
        "5s",
        "--health-timeout",
        "500ms",
        "--connect-timeout",
        "1s",
        "--client-header-timeout",
        "2s",
        "--keepalive-timeout",
        "3s",
        "--read-timeout",
        "4s",
        "--write-timeout",
        "5s",
        "--shutdown-timeout",
        "0s",
        "--backlog",
        "64",
        "--max-request-line",
        "4k",
        "--max-head",
        "16KiB",
        "--max-fields",
        "50",
        "--underscores-in-headers",
    ])
    .unwrap();
    assert_eq!((c.listen, c.dual_stack), (v4([127, 0, 0, 1], 0), false));
    let addrs: Vec<_> = c.pools[0]
        .upstreams
        .iter()
        .map(|u| u.address.addr)
        .collect();
    assert_eq!(
        addrs,
        [
            v4([127, 0, 0, 1], 9001),
            SocketAddr::from((Ipv6Addr::LOCALHOST, 9002))
        ]
    );
    assert_eq!(c.workers, 3);
    assert_eq!(c.health_interval, Duration::from_secs(5));
    assert_eq!(c.health_timeout, Duration::from_millis(500));
    assert_eq!(c.connect_timeout, Duration::from_secs(1));
    assert_eq!(c.client_header_timeout, Duration::from_secs(2));
    assert_eq!(c.keepalive_timeout, Duration::from_secs(3));
    assert_eq!(c.read_timeout, Duration::from_secs(4));
    assert_eq!(c.write_timeout, Duration::from_secs(5));
    assert_eq!(c.shutdown_timeout, Duration::ZERO);
    assert_eq!(c.backlog, 64);
    assert_eq!(
        c.limits,
        Limits {
            max_request_line: 4096,
            max_head: 16384,
            max_fields: 50,
            ..Limits::DEFAULT
        }
    );
    assert!(c.underscores_in_headers);
}

#[test]
fn health_timeout_is_capped_at_the_interval() {
    let c = parse(&["--upstream", "127.0.0.1:1", "--health-interval", "1s"]).unwrap();
    assert_eq!(c.health_interval, Duration::from_secs(1));
    assert_eq!(c.health_timeout, Duration::from_secs(1));
    let c = parse(&["--upstream", "127.0.0.1:1", "--health-interval", "300ms"]).unwrap();
    assert_eq!(c.health_timeout, Duration::from_millis(300));
}

#[test]
fn log_levels() {
    let level = |flags: &[&str]| {
        let mut args = vec!["--upstream", "127.0.0.1:1"];
        args.extend_from_slice(flags);
        parse(&args).unwrap().log_level
    };
    use log::LevelFilter::*;
    assert_eq!(level(&[]), Info);
    assert_eq!(level(&["-v"]), Debug);
    assert_eq!(level(&["-vv"]), Trace);
    assert_eq!(level(&["-v", "-v", "-v"]), Trace);
    assert_eq!(level(&["-q"]), Warn);
    assert_eq!(level(&["-qq"]), Error);
    assert_eq!(level(&["--quiet", "-qq"]), Off);
    assert_eq!(level(&["-vq"]), Info);
    assert_eq!(level(&["--verbose"]), Debug);
}

#[test]
fn demo_upstreams() {
    let c = parse(&["--demo"]).unwrap();
    assert!(c.demo);
    let names: Vec<_> = c.pools[0]
        .upstreams
        .iter()
        .map(|u| u.address.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]
    );
    assert_eq!(
        c.pools[0].upstreams[2].address.addr,
        v4([127, 0, 0, 1], 8083)
    );
    // Given upstreams win; the dummies still start.
    let c = parse(&["--demo", "--upstream", "127.0.0.1:9000"]).unwrap();
    assert!(c.demo);
    assert_eq!(c.pools[0].upstreams.len(), 1);
    assert_eq!(
        c.pools[0].upstreams[0].address.addr,
        v4([127, 0, 0, 1], 9000)
    );
}

#[test]
fn error_lines() {
    assert_eq!(
        error(&[]),
        "at least one --upstream is required (or --demo, or --config)"
    );
    assert_eq!(
        error(&["--upstream", "127.0.0.1:1", "--health-interval", "10"]),
        "invalid value '10' for '--health-interval <DURATION>': \
         missing unit in duration '10' (use ms, s, m, h or d)"
    );
    assert_eq!(
        error(&["--upstream", "https://x:443"]),
        "invalid value 'https://x:443' for '--upstream <ADDR>': \
         https upstreams are not supported"
    );
    assert_eq!(
        error(&["--upstream", "127.0.0.1:1", "--bogus"]),
        "unexpected argument '--bogus' found"
    );
    assert_eq!(
        error(&["--demo", "--workers", "0"]),
        "invalid value '0' for '--workers <N>': must be at least 1"
    );
    assert_eq!(
        error(&["--demo", "--connect-timeout", "0s"]),
        "invalid value '0s' for '--connect-timeout <DURATION>': \
         duration '0s' must be greater than zero"
    );
    assert_eq!(
        error(&["--demo", "--max-request-line", "64k"]),
        "--max-request-line (65536) must not exceed --max-head (32768)"
    );
    for args in [
        &["--demo", "--backlog", "x"][..],
        &["--listen"],
        &["--demo", "-x"],
    ] {
        let e = error(args);
        assert!(!e.contains('\n') && !e.starts_with("error:"), "{e:?}");
    }
}

#[test]
fn help_and_version() {
    match parse(&["--help"]) {
        Err(ConfigError::Help(text)) => {
            assert!(text.contains("--health-timeout <DURATION>"), "{text}");
            assert!(text.contains("[default: 2s]"), "{text}");
            assert!(text.contains("[default: :8000]"), "{text}");
            assert!(text.contains("\nEXAMPLES\n"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    match parse(&["--version"]) {
        Err(ConfigError::Help(text)) => {
            assert_eq!(text, format!("goround-mio {}\n", env!("CARGO_PKG_VERSION")))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tcp_listeners_route_by_pool_or_by_sni_and_refuse_what_tcp_cannot_do() {
    let base = r#"
[pools.web]
upstreams = ["127.0.0.1:8081"]
[pools.pg]
upstreams = ["127.0.0.1:5433"]
[pools.tls_db]
upstreams = ["127.0.0.1:5434"]
[pools.tls_web]
strategy = "ip_hash"
upstreams = ["127.0.0.1:8443"]
[[tcp]]
listen = ":5432"
pool = "pg"
idle_timeout = "2m"
[[tcp]]
listen = "127.0.0.1:9443"
routes = [ { sni = "DB.example.com", pool = "tls_db" }, { sni = "*.example.com", pool = "tls_web" }, { pool = "tls_db" } ]
"#;
    let c = file(base);
    assert_eq!(c.routes.len(), 1, "the one HTTP pool gets the catch-all");
    assert_eq!(c.pools[c.routes[0].pool].name, "web");
    assert_eq!(c.tcp.len(), 2);
    assert_eq!(
        c.tcp[0].listen,
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 5432))
    );
    assert!(c.tcp[0].dual_stack);
    assert_eq!(c.tcp[0].idle_timeout, Duration::from_secs(120));
    assert_eq!(c.tcp[1].idle_timeout, TCP_IDLE_TIMEOUT);
    let TcpTarget::Sni(routes) = &c.tcp[1].target else {
        panic!("{:?}", c.tcp[1].target)
    };
    assert_eq!(routes[0].sni.as_deref(), Some("db.example.com"));
    assert!(routes[1].matches(Some("www.example.com")) && routes[2].sni.is_none());
    // --check's output reads back to the same listeners.
    let printed = super::print::effective(&c);
    assert!(
        printed.contains("[[tcp]]\nlisten = \":5432\"\npool = \"pg\""),
        "{printed}"
    );
    assert_eq!(file(&printed).tcp, c.tcp);
    let refused = [
        (
            "[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[routes]]\npool = \"a\"\n[[tcp]]\nlisten = \":1\"\npool = \"a\"\n",
            "a pool serves HTTP or TCP, not both",
        ),
        (
            "[pools.a]\nstrategy = \"hash\"\nhash_key = \"header:x\"\nupstreams = [\"127.0.0.1:1\"]\n[[tcp]]\nlisten = \":1\"\npool = \"a\"\n",
            "hashes on header:x",
        ),
        (
            "[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[tcp]]\nlisten = \":1\"\npool = \"a\"\nroutes = [ { pool = \"a\" } ]\n",
            "both pool and routes",
        ),
        (
            "[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[tcp]]\nlisten = \":8000\"\npool = \"a\"\n",
            "port 8000 is already used",
        ),
        (
            "[pools.a]\nupstreams = [\"127.0.0.1:1\"]\n[[tcp]]\nlisten = \":1\"\nroutes = [ { pool = \"a\" }, { pool = \"a\" } ]\n",
            "one default only",
        ),
    ];
    for (text, want) in refused {
        let e = file_error(text);
        assert!(e.contains(want) && e.starts_with("t.toml:"), "{e}");
    }
}
