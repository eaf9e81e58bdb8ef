//! Command-line flags (clap) → a validated [`Config`]. No sockets here, except name resolution
//! of `--listen` and `--upstream` at start.
//!
//! Every flag value goes through a small pure parser ([`parse_duration`], [`parse_listen`],
//! [`parse_upstream`], …) used as clap's value parser, so a bad value is reported by clap with
//! the flag's name, and [`parse_from`] turns the whole command line into a [`Config`] or one
//! line of error without printing or exiting, which is what the unit tests drive.

use crate::http::rewrite::ForwardedFor;
use crate::http::Limits;
use crate::upstream::Upstream;
use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The ports `--demo` starts `goround-dummy` children on (on 127.0.0.1); they are the upstreams
/// when no `--upstream` is given.
pub const DEMO_PORTS: [u16; 3] = [8081, 8082, 8083];

/// Default `--splice-min` for request bodies and tunnels: below about 128 KiB splicing an upload
/// saves nothing measurable; from 256 KiB it costs 7–28 % less CPU than copying, 56 % at 64 MiB.
pub const SPLICE_MIN: usize = 128 * 1024;

/// Default `--splice-min` for response bodies: on loopback a spliced 1 MiB download costs about
/// 15 % more proxy CPU than a copied one (311 vs 271 µs), 2 MiB about 10 % less and 4 MiB 37 %
/// less; the crossover is near 1.5 MiB.
pub const SPLICE_MIN_RESPONSE: usize = 2 * 1024 * 1024;

/// Descriptors kept aside from the client and upstream budgets: listeners, epoll, wakers,
/// health probes, logs.
pub const RESERVED_FDS: usize = 64;

/// Most idle upstream connections kept by default, whatever the open-files limit: past a few
/// thousand, idle connections only hold descriptors and the upstreams' memory.
pub const MAX_DEFAULT_IDLE: usize = 8192;

/// The default idle-connection budget for an open-files limit of `nofile`: a tenth of the
/// descriptors, so that clients keep at least 90 % of what they could have without pooling.
pub fn default_idle_budget(nofile: usize) -> usize {
    // A tenth of what two-descriptor clients could have, in whole pairs: clients then keep at
    // least 90 % of their connections, rounding included.
    (nofile.saturating_sub(RESERVED_FDS) / 2 / 10 * 2).min(MAX_DEFAULT_IDLE)
}

/// The client-connection limit derived from the open-files limit: each connection may hold two
/// descriptors (client and upstream) besides the idle pool's `idle`.
pub fn default_max_connections(nofile: usize, idle: usize, workers: usize) -> usize {
    (nofile.saturating_sub(RESERVED_FDS + idle) / 2).max(workers)
}

/// Everything the engine needs, validated.
#[derive(Debug)]
pub struct Config {
    /// Where to listen. For `:PORT` this is `[::]:PORT` with `dual_stack` set.
    pub listen: SocketAddr,
    /// Accept IPv4 too on an IPv6 wildcard listener (`:PORT`).
    pub dual_stack: bool,
    /// The backends in rotation order: the `--upstream`s as given, or the demo dummies.
    pub upstreams: Vec<Upstream>,
    /// Worker threads, each with its own event loop and SO_REUSEPORT listener. At least 1.
    pub workers: usize,
    /// Time between two health sweeps. Greater than zero.
    pub health_interval: Duration,
    /// How long one health probe's connect may take. Already capped at `health_interval`.
    pub health_timeout: Duration,
    /// How long a connect to an upstream may take before we try the next one.
    pub connect_timeout: Duration,
    /// How long a client may take to send a complete request head.
    pub client_header_timeout: Duration,
    /// How long an idle keep-alive client connection is kept between requests.
    pub keepalive_timeout: Duration,
    /// Longest wait for the next byte of a body or response once a request is under way.
    pub read_timeout: Duration,
    /// Longest wait for a socket to accept more bytes we have to send.
    pub write_timeout: Duration,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish. Zero closes at once.
    pub shutdown_timeout: Duration,
    /// The listen backlog passed to listen(2).
    pub backlog: u32,
    /// Head size limits; chunk-extension and trailer limits stay at [`Limits::DEFAULT`].
    pub limits: Limits,
    /// `--demo`: start goround-dummy children on [`DEMO_PORTS`] (the default upstreams then).
    pub demo: bool,
    /// `--upstream-idle`: idle upstream connections kept in all, every upstream and every
    /// worker together (0: no pooling); `None` means derived from RLIMIT_NOFILE at start
    /// ([`default_idle_budget`]).
    pub upstream_idle: Option<usize>,
    /// `--upstream-idle-timeout`.
    pub upstream_idle_timeout: Duration,
    /// `--upstream-max-requests`.
    pub upstream_max_requests: u32,
    /// `--splice-min`: request body spans this long or longer (what is left of a Content-Length
    /// body, or of a chunk's data) go by splice(2), and so do tunnels while they stream; 0:
    /// never.
    pub splice_min: usize,
    /// The same for response body spans (`--splice-min` when given, else
    /// [`SPLICE_MIN_RESPONSE`]).
    pub splice_min_response: usize,
    /// `--request-buffer`: a request body up to this long is read (and its framing checked)
    /// before an upstream is chosen; a longer one streams once this much is buffered. 0: every
    /// body streams from its first byte.
    pub request_buffer: usize,
    /// `--max-connections`; `None` means derived from RLIMIT_NOFILE at start.
    pub max_connections: Option<usize>,
    /// `--forwarded-for`: keep and append to the client's X-Forwarded-For, or replace it.
    pub forwarded_for: ForwardedFor,
    /// `--underscores-in-headers`: forward request fields whose name contains `_` (by default
    /// they are dropped).
    pub underscores_in_headers: bool,
    /// From `-v`/`-q` (info by default); `RUST_LOG`, when set, wins.
    pub log_level: log::LevelFilter,
    /// Info-level remarks found while parsing, before any logger exists (e.g. a name that
    /// resolved to several addresses). The caller logs them once its logger is set up.
    pub notices: Vec<String>,
}

/// Why [`parse_from`] produced no [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: the text to print on stdout, then exit 0.
    Help(String),
    /// A bad flag or value: one line (no "error:" prefix, no newline); exit 2.
    Error(String),
}

const AFTER_HELP: &str = "\
Durations take a unit: 500ms, 10s, 2m, 1h (1.5s works too).
Sizes are bytes, optionally with k (1024) or m (1048576): 8192, 8k, 32KiB.

Examples:
  goround-mio --upstream 10.0.0.1:8080 --upstream 10.0.0.2:8080
  goround-mio --listen 127.0.0.1:8000 --upstream http://app1:8080 --upstream [::1]:8081 -v
  goround-mio --demo        (three local dummy backends on 127.0.0.1:8081-8083)";

/// The flags as clap sees them; [`parse_from`] turns them into a [`Config`].
#[derive(Parser, Debug)]
#[command(
    name = "goround-mio",
    version,
    about = "A small, strict, fast HTTP/1.1 round-robin reverse proxy",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Where to listen: :PORT (all interfaces, IPv4 and IPv6), IP:PORT, [IPv6]:PORT or NAME:PORT
    #[arg(long, value_name = "ADDR", default_value = ":8000", value_parser = parse_listen)]
    listen: (SocketAddr, bool),

    /// A backend: HOST:PORT, [IPv6]:PORT or http://HOST:PORT; repeat for several (at least one
    /// unless --demo)
    #[arg(long = "upstream", value_name = "ADDR", value_parser = parse_upstream_noting)]
    upstreams: Vec<(Upstream, Option<String>)>,

    /// Worker threads, one event loop each (default: the number of CPU cores)
    #[arg(long, value_name = "N", default_value_t = default_workers(), value_parser = parse_count)]
    workers: usize,

    /// Time between two health sweeps of the upstreams
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    health_interval: Duration,

    /// Connect timeout of one health probe (capped at --health-interval)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_positive_duration)]
    health_timeout: Duration,

    /// Connect timeout for a request to an upstream; then the next upstream is tried
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = parse_positive_duration)]
    connect_timeout: Duration,

    /// Time a client has to send a complete request head
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    client_header_timeout: Duration,

    /// Time an idle keep-alive client connection is kept open
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_positive_duration)]
    keepalive_timeout: Duration,

    /// Longest wait for more bytes of a body or a response
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    read_timeout: Duration,

    /// Longest wait for a peer to take more bytes
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    write_timeout: Duration,

    /// On SIGINT/SIGTERM, time given to in-flight requests (0s: close at once)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    shutdown_timeout: Duration,

    /// Listen backlog
    #[arg(long, value_name = "N", default_value = "1024", value_parser = parse_backlog)]
    backlog: u32,

    /// Longest request line before a 414
    #[arg(long, value_name = "SIZE", default_value = "8192", value_parser = parse_size)]
    max_request_line: usize,

    /// Largest request or response head before a 431 (502 for a response)
    #[arg(long, value_name = "SIZE", default_value = "32768", value_parser = parse_size)]
    max_head: usize,

    /// Most header fields in one head before a 431 (502 for a response)
    #[arg(long, value_name = "N", default_value = "100", value_parser = parse_count)]
    max_fields: usize,

    /// Most idle keep-alive upstream connections kept in all (every upstream and worker
    /// together, like nginx's `keepalive`); 0 turns pooling off [default: a tenth of the
    /// open-files limit, at most 8192]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32))]
    upstream_idle: Option<u32>,

    /// How long an idle upstream connection is kept; shorter than most backends' own idle
    /// timeout (2-5 s), and shortened further by an upstream's `Keep-Alive: timeout=`
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = parse_positive_duration)]
    upstream_idle_timeout: Duration,

    /// Most requests sent on one upstream connection before it is closed
    #[arg(long, value_name = "N", default_value = "1000", value_parser = clap::value_parser!(u32).range(1..))]
    upstream_max_requests: u32,

    /// Body spans at least this long (the rest of a Content-Length body, the data of a chunk),
    /// both ways, are moved with splice(2) (zero-copy) instead of through user-space buffers,
    /// and so are tunnels while they stream; 0 turns splicing off [default: 128k for request
    /// bodies and tunnels, 2m for response bodies]
    #[arg(long, value_name = "SIZE", value_parser = parse_size_or_zero)]
    splice_min: Option<usize>,

    /// A request body up to this size is read whole, and its framing checked, before an
    /// upstream is chosen (a bad one gets 400 and no upstream sees a byte of it); a longer body
    /// streams once this much is buffered; 0 streams every body at once
    #[arg(long, value_name = "SIZE", default_value = "64k", value_parser = parse_size_or_zero)]
    request_buffer: usize,

    /// Most client connections open at once; at the limit the proxy stops accepting until one
    /// closes (default: derived from the open-files limit, two descriptors per connection)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    max_connections: Option<usize>,

    /// What to do with a client's X-Forwarded-For: append (keep it and add the client address)
    /// or replace (write only the client address; for an edge proxy)
    #[arg(long, value_name = "MODE", default_value = "append", value_parser = parse_forwarded_for)]
    forwarded_for: ForwardedFor,

    /// Forward request header fields whose name contains `_`; by default they are dropped, since
    /// CGI-style backends read `X_Forwarded_For` as `X-Forwarded-For`
    #[arg(long)]
    underscores_in_headers: bool,

    /// Start three dummy backends on 127.0.0.1:8081-8083; they are the upstreams unless
    /// --upstream is given (then they run alongside, unused unless listed)
    #[arg(long)]
    demo: bool,

    /// More logging: -v debug, -vv trace
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,

    /// Less logging: -q warnings and errors only, -qq errors only, -qqq nothing
    #[arg(short, long, action = ArgAction::Count)]
    quiet: u8,
}

/// A size like [`parse_size`], where 0 (off) is allowed too.
fn parse_size_or_zero(s: &str) -> Result<usize, String> {
    if s.trim() == "0" {
        Ok(0)
    } else {
        parse_size(s)
    }
}

/// Parse `append` or `replace` for --forwarded-for.
fn parse_forwarded_for(s: &str) -> Result<ForwardedFor, String> {
    match s {
        "append" => Ok(ForwardedFor::Append),
        "replace" => Ok(ForwardedFor::Replace),
        _ => Err(format!("'{s}' is not one of append, replace")),
    }
}

/// The number of CPU cores, or 1 when it cannot be told.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parse a duration like `10s`, `500ms`, `2m`, `1h`; a decimal fraction (`1.5s`) is allowed.
/// Zero is allowed here; flags that need a positive value check that themselves.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" if number.is_empty() => return Err("empty duration".to_string()),
        "" => {
            return Err(format!(
                "missing unit in duration '{s}' (use ms, s, m or h)"
            ))
        }
        _ => {
            return Err(format!(
                "unknown unit in duration '{s}' (use ms, s, m or h)"
            ))
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || number.ends_with('.') {
        return Err(format!("invalid number in duration '{s}'"));
    }
    let too_large = || format!("duration '{s}' is too large");
    if whole.len() > 20 {
        return Err(too_large());
    }
    if fraction.len() > 9 {
        return Err(format!("duration '{s}' has more than 9 decimals"));
    }
    // At most 20 and 9 digits: the parts fit in u128, and so do the products below.
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut nanos = whole * unit_nanos;
    if !fraction.is_empty() {
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = fraction.parse().map_err(|_| too_large())?;
        nanos += fraction * unit_nanos / scale;
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// [`parse_duration`], refusing zero: a zero timeout would expire everything at once.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        Duration::ZERO => Err(format!("duration '{s}' must be greater than zero")),
        d => Ok(d),
    }
}

/// Parse a byte size: `8192`, `8k`, `32KiB`, `1m`, `1MiB` (k = 1024, m = 1024²). Must be > 0.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: usize = match suffix {
        "" => 1,
        "k" | "K" | "KiB" | "kiB" => 1024,
        "m" | "M" | "MiB" => 1024 * 1024,
        _ => {
            return Err(format!(
                "invalid size '{s}' (use a number of bytes, optionally with k or m)"
            ))
        }
    };
    let bad = || format!("invalid size '{s}' (use a number of bytes, optionally with k or m)");
    let n: usize = number.parse().map_err(|_| bad())?;
    let size = n
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size '{s}' is too large"))?;
    if size == 0 {
        return Err(format!("size '{s}' must be greater than zero"));
    }
    Ok(size)
}

/// A plain count of at least 1 (workers, fields).
fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// The listen backlog: 1 to u32::MAX (the kernel caps it at somaxconn anyway).
fn parse_backlog(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number up to {}", u32::MAX)),
    }
}

/// Split `host:port` or `[v6]:port` into the host (brackets removed) and the port text.
/// `whole` is what the user wrote, for the error messages.
fn split_host_port<'a>(s: &'a str, whole: &str) -> Result<(&'a str, &'a str), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in '{whole}'"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address '{host}' in '{whole}'"));
        }
        match after.strip_prefix(':') {
            Some(port) => Ok((host, port)),
            None if after.is_empty() => Err(format!("missing port in '{whole}'")),
            None => Err(format!("unexpected '{after}' after ']' in '{whole}'")),
        }
    } else {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("missing port in '{whole}'"))?;
        if host.contains(':') {
            return Err(format!(
                "IPv6 addresses need brackets: '[{host}]:PORT' (in '{whole}')"
            ));
        }
        if host.is_empty() {
            return Err(format!("missing host in '{whole}'"));
        }
        Ok((host, port))
    }
}

/// Parse a port; `allow_zero` for a listener (port 0: the kernel picks one, handy in tests).
fn parse_port(port: &str, whole: &str, allow_zero: bool) -> Result<u16, String> {
    if port.is_empty() {
        return Err(format!("missing port in '{whole}'"));
    }
    match port.parse::<u16>() {
        Ok(0) if !allow_zero => Err(format!("invalid port '0' in '{whole}'")),
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("invalid port '{port}' in '{whole}'")),
    }
}

/// Resolve `host` (an IP literal or a name) with `port`; the first address of a name wins.
/// Returns the address and, when the name had several, a notice saying which one was taken.
fn resolve(host: &str, port: u16) -> Result<(SocketAddr, Option<String>), String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((SocketAddr::new(ip, port), None));
    }
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?;
    let first = addrs
        .next()
        .ok_or_else(|| format!("cannot resolve '{host}': no address"))?;
    let others = addrs.count();
    let notice = (others > 0).then(|| {
        format!(
            "'{host}' resolves to {} addresses; using the first, {first}",
            others + 1
        )
    });
    Ok((first, notice))
}

/// Parse `:PORT`, `HOST:PORT`, `[V6]:PORT` for --listen. Returns (addr, dual_stack).
///
/// Only `:PORT` is dual-stack (`[::]:PORT` accepting IPv4 too); an explicit `[::]:PORT` means
/// IPv6 only, and `0.0.0.0:PORT` IPv4 only. A name is resolved now and its first address used.
pub fn parse_listen(s: &str) -> Result<(SocketAddr, bool), String> {
    if let Some(port) = s.strip_prefix(':') {
        let port = parse_port(port, s, true)?;
        return Ok((SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), true));
    }
    let (host, port) = split_host_port(s, s)?;
    let port = parse_port(port, s, true)?;
    let (addr, _) = resolve(host, port)?;
    Ok((addr, false))
}

/// Parse and resolve `host:port`, `[v6]:port` or `http://host:port` for --upstream.
///
/// The name is kept as written, for logs. A name resolving to several addresses uses the first
/// one ([`parse_from`] records a notice about it).
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    parse_upstream_noting(s).map(|(upstream, _)| upstream)
}

/// [`parse_upstream`], also returning the notice about a name with several addresses.
fn parse_upstream_noting(s: &str) -> Result<(Upstream, Option<String>), String> {
    let authority = match s.split_once("://") {
        None => s,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err("https upstreams are not supported".to_string())
        }
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme '{scheme}' in '{s}' (use http:// or none)"
            ))
        }
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "'{s}' must be just a host and port (no path, query or user)"
        ));
    }
    let (host, port) = split_host_port(authority, s)?;
    let port = parse_port(port, s, false)?;
    let (addr, notice) = resolve(host, port)?;
    let notice = notice.map(|n| format!("upstream {s}: {n}"));
    Ok((
        Upstream {
            name: s.to_string(),
            addr,
        },
        notice,
    ))
}

/// The log level for `verbose` `-v`s and `quiet` `-q`s (they offset each other).
fn log_level(verbose: u8, quiet: u8) -> log::LevelFilter {
    use log::LevelFilter::*;
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-3 => Off,
        -2 => Error,
        -1 => Warn,
        0 => Info,
        1 => Debug,
        _ => Trace,
    }
}

/// Parse a command line (`args[0]` is the program name) into a [`Config`], without printing or
/// exiting: what [`from_args`] does, minus the side effects.
pub fn parse_from<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind;
        let text = e.render().to_string();
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ConfigError::Help(text),
            _ => {
                let first = text.lines().next().unwrap_or("invalid arguments");
                ConfigError::Error(first.strip_prefix("error: ").unwrap_or(first).to_string())
            }
        }
    })?;
    validate(cli).map_err(ConfigError::Error)
}

/// The checks that span several flags, and the demo defaults.
fn validate(cli: Cli) -> Result<Config, String> {
    let mut notices = Vec::new();
    let upstreams = if cli.upstreams.is_empty() {
        if !cli.demo {
            return Err("at least one --upstream is required (or --demo)".to_string());
        }
        DEMO_PORTS
            .iter()
            .map(|&port| {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                Upstream {
                    name: addr.to_string(),
                    addr,
                }
            })
            .collect()
    } else {
        let mut upstreams = Vec::with_capacity(cli.upstreams.len());
        for (upstream, notice) in cli.upstreams {
            notices.extend(notice);
            upstreams.push(upstream);
        }
        upstreams
    };
    if cli.max_request_line > cli.max_head {
        return Err(format!(
            "--max-request-line ({}) must not exceed --max-head ({})",
            cli.max_request_line, cli.max_head
        ));
    }
    let (listen, dual_stack) = cli.listen;
    Ok(Config {
        listen,
        dual_stack,
        upstreams,
        workers: cli.workers,
        health_interval: cli.health_interval,
        // A probe that outlived the interval would overlap the next sweep's probe.
        health_timeout: cli.health_timeout.min(cli.health_interval),
        connect_timeout: cli.connect_timeout,
        client_header_timeout: cli.client_header_timeout,
        keepalive_timeout: cli.keepalive_timeout,
        read_timeout: cli.read_timeout,
        write_timeout: cli.write_timeout,
        shutdown_timeout: cli.shutdown_timeout,
        backlog: cli.backlog,
        limits: Limits {
            max_request_line: cli.max_request_line,
            max_head: cli.max_head,
            max_fields: cli.max_fields,
            ..Limits::DEFAULT
        },
        demo: cli.demo,
        forwarded_for: cli.forwarded_for,
        underscores_in_headers: cli.underscores_in_headers,
        max_connections: cli.max_connections,
        request_buffer: cli.request_buffer,
        splice_min: cli.splice_min.unwrap_or(SPLICE_MIN),
        splice_min_response: cli.splice_min.unwrap_or(SPLICE_MIN_RESPONSE),
        upstream_idle: cli.upstream_idle.map(|n| n as usize),
        upstream_idle_timeout: cli.upstream_idle_timeout,
        upstream_max_requests: cli.upstream_max_requests,
        log_level: log_level(cli.verbose, cli.quiet),
        notices,
    })
}

/// Parse the process arguments. On a bad flag: one clear line on stderr and exit 2.
/// `--help` and `--version` print on stdout and exit 0.
pub fn from_args() -> Config {
    match parse_from(std::env::args_os()) {
        Ok(config) => config,
        Err(ConfigError::Help(text)) => {
            // A closed stdout (`| head`) is no reason to panic; the exit code stays 0.
            let _ = std::io::stdout().write_all(text.as_bytes());
            std::process::exit(0)
        }
        Err(ConfigError::Error(message)) => {
            eprintln!("goround-mio: error: {message}");
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        parse_from(std::iter::once("goround-mio").chain(args.iter().copied()))
    }

    fn error(args: &[&str]) -> String {
        match parse(args) {
            Err(ConfigError::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::from(a), port))
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("10"),
            Err("missing unit in duration '10' (use ms, s, m or h)".to_string())
        );
        assert_eq!(
            parse_duration("10d"),
            Err("unknown unit in duration '10d' (use ms, s, m or h)".to_string())
        );
        assert_eq!(parse_duration(""), Err("empty duration".to_string()));
        for bad in ["s", ".5s", "1.s", "1..5s", "-1s", "1 s", " 1s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("99999999999999999999999h").is_err());
        assert!(parse_duration("1.0000000001s").is_err());
        assert_eq!(
            parse_positive_duration("0ms"),
            Err("duration '0ms' must be greater than zero".to_string())
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8192"), Ok(8192));
        assert_eq!(parse_size("8k"), Ok(8192));
        assert_eq!(parse_size("32K"), Ok(32768));
        assert_eq!(parse_size("32KiB"), Ok(32768));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(
            parse_size("8kb"),
            Err("invalid size '8kb' (use a number of bytes, optionally with k or m)".to_string())
        );
        for bad in ["", "k", "-1", "1.5k", "0", "0k", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_forms() {
        let any6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8000));
        assert_eq!(parse_listen(":8000"), Ok((any6, true)));
        assert_eq!(
            parse_listen("127.0.0.1:8000"),
            Ok((v4([127, 0, 0, 1], 8000), false))
        );
        assert_eq!(
            parse_listen("0.0.0.0:80"),
            Ok((v4([0, 0, 0, 0], 80), false))
        );
        assert_eq!(
            parse_listen("[::1]:8000"),
            Ok((SocketAddr::from((Ipv6Addr::LOCALHOST, 8000)), false))
        );
        assert_eq!(parse_listen("[::]:8000"), Ok((any6, false)));
        assert_eq!(parse_listen(":0").map(|(a, _)| a.port()), Ok(0));
        let (local, dual) = parse_listen("localhost:8000").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8000 && !dual);
        assert_eq!(
            parse_listen("8000"),
            Err("missing port in '8000'".to_string())
        );
        assert_eq!(parse_listen(":"), Err("missing port in ':'".to_string()));
        assert_eq!(
            parse_listen(":http"),
            Err("invalid port 'http' in ':http'".to_string())
        );
        assert_eq!(
            parse_listen(":65536"),
            Err("invalid port '65536' in ':65536'".to_string())
        );
        assert_eq!(
            parse_listen(":+80"),
            Err("invalid port '+80' in ':+80'".to_string())
        );
        assert!(parse_listen("::1:8000").is_err());
        assert!(parse_listen("[::1]").is_err());
        assert!(parse_listen("[nope]:80").is_err());
    }

    #[test]
    fn upstream_forms() {
        let up = |s: &str| parse_upstream(s).map(|u| (u.name, u.addr));
        let a = v4([10, 0, 0, 1], 8080);
        assert_eq!(up("10.0.0.1:8080"), Ok(("10.0.0.1:8080".to_string(), a)));
        assert_eq!(
            up("http://10.0.0.1:8080"),
            Ok(("http://10.0.0.1:8080".to_string(), a))
        );
        assert_eq!(up("HTTP://10.0.0.1:8080/").map(|(_, a)| a), Ok(a));
        assert_eq!(
            up("[::1]:80").map(|(_, a)| a),
            Ok(SocketAddr::from((Ipv6Addr::LOCALHOST, 80)))
        );
        assert_eq!(
            up("http://[::1]:80/").map(|(_, a)| a),
            Ok(SocketAddr::from((Ipv6Addr::LOCALHOST, 80)))
        );
        let (name, addr) = up("localhost:9000").unwrap();
        assert_eq!(name, "localhost:9000");
        assert!(addr.ip().is_loopback() && addr.port() == 9000);
    }

    #[test]
    fn upstream_errors() {
        let err = |s: &str| parse_upstream(s).map(|u| u.addr).unwrap_err();
        assert_eq!(
            err("https://10.0.0.1:443"),
            "https upstreams are not supported"
        );
        assert_eq!(err("HTTPS://x:443"), "https upstreams are not supported");
        assert_eq!(err("10.0.0.1"), "missing port in '10.0.0.1'");
        assert_eq!(err("http://10.0.0.1"), "missing port in 'http://10.0.0.1'");
        assert_eq!(err("10.0.0.1:"), "missing port in '10.0.0.1:'");
        assert_eq!(err("10.0.0.1:0"), "invalid port '0' in '10.0.0.1:0'");
        assert_eq!(
            err("10.0.0.1:99999"),
            "invalid port '99999' in '10.0.0.1:99999'"
        );
        assert_eq!(err("10.0.0.1:x"), "invalid port 'x' in '10.0.0.1:x'");
        assert_eq!(err("[::1]"), "missing port in '[::1]'");
        assert_eq!(
            err("::1:80"),
            "IPv6 addresses need brackets: '[::1]:PORT' (in '::1:80')"
        );
        assert_eq!(err(":80"), "missing host in ':80'");
        assert_eq!(
            err("ftp://x:21"),
            "unsupported scheme 'ftp' in 'ftp://x:21' (use http:// or none)"
        );
        assert_eq!(
            err("http://x:80/api"),
            "'http://x:80/api' must be just a host and port (no path, query or user)"
        );
        assert!(
            err("no-such-host.invalid:80").starts_with("cannot resolve 'no-such-host.invalid': ")
        );
    }

    #[test]
    fn defaults() {
        let c = parse(&["--upstream", "127.0.0.1:9000"]).unwrap();
        assert_eq!(c.listen, SocketAddr::from((Ipv6Addr::UNSPECIFIED, 8000)));
        assert!(c.dual_stack);
        assert_eq!(
            c.upstreams,
            vec![Upstream {
                name: "127.0.0.1:9000".to_string(),
                addr: v4([127, 0, 0, 1], 9000)
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
        assert_eq!((c.splice_min, c.splice_min_response), (128 << 10, 2 << 20));
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
        let addrs: Vec<_> = c.upstreams.iter().map(|u| u.addr).collect();
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
        let names: Vec<_> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"]
        );
        assert_eq!(c.upstreams[2].addr, v4([127, 0, 0, 1], 8083));
        // Given upstreams win; the dummies still start.
        let c = parse(&["--demo", "--upstream", "127.0.0.1:9000"]).unwrap();
        assert!(c.demo);
        assert_eq!(c.upstreams.len(), 1);
        assert_eq!(c.upstreams[0].addr, v4([127, 0, 0, 1], 9000));
    }

    #[test]
    fn error_lines() {
        assert_eq!(
            error(&[]),
            "at least one --upstream is required (or --demo)"
        );
        assert_eq!(
            error(&["--upstream", "127.0.0.1:1", "--health-interval", "10"]),
            "invalid value '10' for '--health-interval <DURATION>': \
             missing unit in duration '10' (use ms, s, m or h)"
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
                assert!(text.contains("Examples:"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&["--version"]).map(|_| ()),
            Err(ConfigError::Help(format!(
                "goround-mio {}\n",
                env!("CARGO_PKG_VERSION")
            )))
        );
    }
}
