//! Flags (clap) and the TOML file (serde) → one validated, immutable [`Config`].
//!
//! - [`values`]: durations, sizes, counts, addresses: pure parsers shared by flags and file.
//! - [`flags`]: the command line.
//! - [`mod@file`]: the file as written, with positions.
//! - [`mod@print`]: the effective configuration back as TOML (`--check`).
//!
//! [`load_from`] merges them: a flag given on the command line wins over the file's key, which
//! wins over the default. Without `--config`, the `--upstream`s form one pool, `default`,
//! reached by a catch-all route. Every error in the file is `PATH:LINE:COL: message`.

pub mod file;
pub mod flags;
pub mod print;
pub mod values;

use crate::http::rewrite::ForwardedFor;
use crate::http::Limits;
use crate::route;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use file::{At, FileError, Source};
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::Value;
pub use values::{parse_duration, parse_size, Address};

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

/// The name of the pool the `--upstream` flags form.
pub const DEFAULT_POOL: &str = "default";

/// Most retries a pool makes by default after the first try.
pub const DEFAULT_RETRIES: usize = 2;

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
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen. For `:PORT` this is `[::]:PORT` with `dual_stack` set.
    pub listen: SocketAddr,
    /// Accept IPv4 too on an IPv6 wildcard listener (`:PORT`).
    pub dual_stack: bool,
    /// Worker threads, each with its own event loop and SO_REUSEPORT listener. At least 1.
    pub workers: usize,
    /// Default time between two health checks of an upstream (a pool may set its own).
    pub health_interval: Duration,
    /// Default health check timeout. Already capped at `health_interval`.
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
    /// From `log_level` or `-v`/`-q` (info by default); `RUST_LOG`, when set, wins.
    pub log_level: log::LevelFilter,
    /// Connections must start with a PROXY protocol header (`proxy_protocol`).
    pub proxy_protocol: bool,
    /// With `proxy_protocol`: the address blocks that may connect (empty: any).
    pub proxy_protocol_from: Vec<crate::proxy_protocol::Cidr>,
    /// The admin listener (`[admin] listen`, `--admin`), if any.
    pub admin: Option<SocketAddr>,
    /// The access log, if any.
    pub access_log: Option<AccessLogSpec>,
    /// Per-client limits for every request (a pool may add its own rate).
    pub client_limits: ClientLimits,
    /// The pools, at least one; routes refer to them by index.
    pub pools: Vec<PoolSpec>,
    /// The routes, as written; `route::Table` orders them by specificity.
    pub routes: Vec<RouteSpec>,
    /// The config file this came from, if any (a reload reads it again).
    pub file: Option<PathBuf>,
    /// Info-level remarks found while parsing, before any logger exists (e.g. a name that
    /// resolved to several addresses). The caller logs them once its logger is set up.
    pub notices: Vec<String>,
    /// Warnings found while validating (e.g. a pool no route reaches), logged the same way.
    pub warnings: Vec<String>,
}

/// A named group of upstreams and how requests are spread over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    /// Its name (`[pools.NAME]`, or `default`).
    pub name: String,
    /// How an upstream is picked.
    pub strategy: Strategy,
    /// The key of the `hash` strategy (`client_ip` for `ip_hash`).
    pub hash_key: Option<HashKey>,
    /// The upstreams, in the order written.
    pub upstreams: Vec<UpstreamSpec>,
    /// How they are checked.
    pub health: HealthSpec,
    /// Most tries after the first for one request (each on another upstream).
    pub retries: usize,
    /// An upstream that comes back ramps from a tenth of its weight to all of it over this
    /// time; zero: at once.
    pub slow_start: Duration,
    /// How long a request waits for a `max_conns` slot when every eligible upstream is full.
    pub queue_timeout: Duration,
    /// The pool's own per-client rate (on top of the global one).
    pub client_rate: Option<Rate>,
    /// Send upstreams a PROXY protocol header of this version (1 or 2) on each connection.
    pub send_proxy: Option<u8>,
}

/// A per-client request rate: GCRA with this sustained rate and this burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second (> 0).
    pub per_second: f64,
    /// Requests allowed at once above the rate.
    pub burst: u32,
}

impl Eq for Rate {}

/// `[client_limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// The rate for every request, if limited.
    pub rate: Option<Rate>,
    /// Open connections per client address, if limited.
    pub connections: Option<u32>,
    /// The most client addresses tracked (the table's bound).
    pub max_clients: usize,
    /// `shared`: the Redis URL the rate counts are shared through (with the other instances
    /// configured alike), if any.
    pub shared: Option<String>,
}

/// The default bound of the client table.
pub const MAX_CLIENTS: usize = 100_000;

/// Default `queue_timeout` of a pool.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how the access log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSpec {
    /// `stdout`, or a file (appended to, reopened on SIGUSR1).
    pub path: LogTarget,
    /// The line format.
    pub format: LogFormat,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// A file.
    File(PathBuf),
}

impl LogTarget {
    fn parse(s: &str) -> Result<LogTarget, String> {
        match s {
            "" => Err("the access log path is empty".to_string()),
            "stdout" | "-" => Ok(LogTarget::Stdout),
            path => Ok(LogTarget::File(PathBuf::from(path))),
        }
    }

    /// As written.
    pub fn describe(&self) -> String {
        match self {
            LogTarget::Stdout => "stdout".to_string(),
            LogTarget::File(p) => p.display().to_string(),
        }
    }
}

/// The access log's line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// nginx's `combined`, byte for byte.
    Combined,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parse `combined` or `json`.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "combined" => Ok(LogFormat::Combined),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("'{s}' is not one of combined, json")),
        }
    }

    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Combined => "combined",
            LogFormat::Json => "json",
        }
    }
}

/// One upstream of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// Where it is.
    pub address: Address,
    /// Its share relative to the others (at least 1).
    pub weight: u32,
    /// Takes traffic only while every non-backup upstream of the pool is down.
    pub backup: bool,
    /// Most requests in flight to it, across workers (`None`: no cap).
    pub max_conns: Option<u32>,
}

/// How a pool picks an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Round robin; smooth weighted round robin when weights differ.
    RoundRobin,
    /// Fewest requests in flight relative to weight.
    LeastConn,
    /// Consistent hashing of the client address.
    IpHash,
    /// Consistent hashing of `hash_key`.
    Hash,
}

impl Strategy {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConn => "least_conn",
            Strategy::IpHash => "ip_hash",
            Strategy::Hash => "hash",
        }
    }

    fn parse(s: &str) -> Result<Strategy, String> {
        match s {
            "round_robin" => Ok(Strategy::RoundRobin),
            "least_conn" => Ok(Strategy::LeastConn),
            "ip_hash" => Ok(Strategy::IpHash),
            "hash" => Ok(Strategy::Hash),
            _ => Err(format!(
                "unknown strategy '{s}' (use round_robin, least_conn, ip_hash or hash)"
            )),
        }
    }
}

/// What the `hash` strategy hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address.
    ClientIp,
    /// A request header's value (the name in lowercase).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The request path (without the query).
    Path,
}

impl HashKey {
    /// As written in the file.
    pub fn describe(&self) -> String {
        match self {
            HashKey::ClientIp => "client_ip".to_string(),
            HashKey::Header(n) => format!("header:{n}"),
            HashKey::Cookie(n) => format!("cookie:{n}"),
            HashKey::Path => "path".to_string(),
        }
    }

    fn parse(s: &str) -> Result<HashKey, String> {
        let named = |kind: &str, name: &str| -> Result<String, String> {
            if name.is_empty() || !name.bytes().all(crate::http::is_tchar) {
                Err(format!("'{s}': the {kind} name must be a token"))
            } else {
                Ok(name.to_string())
            }
        };
        match s.split_once(':') {
            None if s == "client_ip" => Ok(HashKey::ClientIp),
            None if s == "path" => Ok(HashKey::Path),
            Some(("header", name)) => {
                named("header", name).map(|n| HashKey::Header(n.to_ascii_lowercase()))
            }
            Some(("cookie", name)) => named("cookie", name).map(HashKey::Cookie),
            _ => Err(format!(
                "unknown hash_key '{s}' (use client_ip, header:NAME, cookie:NAME or path)"
            )),
        }
    }
}

/// How a pool's upstreams are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// A TCP connect, or an HTTP request.
    pub check: Check,
    /// The path an HTTP check asks for.
    pub path: String,
    /// The Host an HTTP check sends (`None`: the upstream's address).
    pub host: Option<String>,
    /// The statuses that pass an HTTP check.
    pub expect: StatusRanges,
    /// Time between two checks of one upstream.
    pub interval: Duration,
    /// How long one check may take (capped at the interval).
    pub timeout: Duration,
    /// Consecutive passes that bring a down upstream back.
    pub rise: u32,
    /// Consecutive failures that take an up upstream out.
    pub fall: u32,
    /// The pool's `send_proxy`: an HTTP check starts with a PROXY header too (v2 `LOCAL`, v1
    /// `UNKNOWN`), since an upstream that expects one refuses a connection without it.
    pub send_proxy: Option<u8>,
}

/// The kind of health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// A nonblocking connect.
    Tcp,
    /// `GET path`, judged by its status.
    Http,
}

/// Inclusive ranges of status codes, e.g. `200-399` or `200,204,301-302`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRanges(pub Vec<(u16, u16)>);

impl StatusRanges {
    /// Whether `code` is in one of the ranges.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }

    /// As written in the file.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        parts.join(",")
    }

    /// Parse `200-399`, `200`, `200,204,301-302`.
    pub fn parse(s: &str) -> Result<StatusRanges, String> {
        let code = |t: &str| -> Result<u16, String> {
            match t.trim().parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) && t.trim().len() == 3 => Ok(c),
                _ => Err(format!("'{t}' is not a status code (100-599) in '{s}'")),
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (code(lo)?, code(hi)?),
                None => {
                    let c = code(part)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!("'{part}' is an empty range in '{s}'"));
            }
            ranges.push((lo, hi));
        }
        Ok(StatusRanges(ranges))
    }
}

/// One route: requests for `host` (exact or `*.suffix`; any when `None`) whose path starts
/// with `path` on a segment boundary (any when `None`) go to pool `pool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Lowercase, no port, no trailing dot; `*.example.com` for a wildcard.
    pub host: Option<String>,
    /// Normalised like request paths (`route::normalize_path`), no trailing `/` but for `/`.
    pub path: Option<String>,
    /// Index in `Config::pools`.
    pub pool: usize,
}

/// Why [`load_from`] produced no [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: the text to print on stdout, then exit 0.
    Help(String),
    /// `--check` succeeded: the effective configuration to print on stdout, then exit 0.
    Checked(String),
    /// A bad flag or value: one line (no "error:" prefix, no newline); exit 2.
    Usage(String),
    /// A bad config file: `PATH:LINE:COL: message`; exit 1.
    File(String),
}

/// Parse a command line (`args[0]` is the program name) and the config file it names into a
/// [`Config`], without printing or exiting: what [`from_args`] does, minus the side effects.
pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = flags::Cli::command()
        .try_get_matches_from(args)
        .map_err(|e| {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ConfigError::Help(text),
                _ => {
                    let first = text.lines().next().unwrap_or("invalid arguments");
                    ConfigError::Usage(first.strip_prefix("error: ").unwrap_or(first).to_string())
                }
            }
        })?;
    let cli = flags::Cli::from_arg_matches(&matches)
        .map_err(|e| ConfigError::Usage(e.to_string().trim().to_string()))?;
    let check = cli.check;
    let config = build(cli, &matches, None)?;
    if check {
        return Err(ConfigError::Checked(print::effective(&config)));
    }
    Ok(config)
}

/// Parse the process arguments. On a bad flag: one clear line on stderr and exit 2; on a bad
/// file: `PATH:LINE:COL: message` and exit 1. `--help`, `--version` and `--check` print on
/// stdout and exit 0.
pub fn from_args() -> Config {
    match load_from(std::env::args_os()) {
        Ok(config) => config,
        Err(ConfigError::Help(text)) | Err(ConfigError::Checked(text)) => {
            // A closed stdout (`| head`) is no reason to panic; the exit code stays 0.
            let _ = std::io::stdout().write_all(text.as_bytes());
            std::process::exit(0)
        }
        Err(ConfigError::Usage(message)) => {
            eprintln!("goround-mio: error: {message}");
            std::process::exit(2)
        }
        Err(ConfigError::File(message)) => {
            eprintln!("{message}");
            std::process::exit(1)
        }
    }
}

/// Whether the flag whose field is `id` was given on the command line.
fn given(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// The global settings: a flag given wins, then the file's key, then the flag's default.
struct Merge<'a> {
    matches: &'a ArgMatches,
    source: Option<&'a Source>,
}

impl Merge<'_> {
    /// `cli` if the flag `key` was given (or there is no file value), else the file's value
    /// parsed with `parse`.
    fn pick<T>(
        &self,
        key: &str,
        cli: T,
        value: &Option<At<Value>>,
        parse: impl Fn(&Value) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match (given(self.matches, key), value, self.source) {
            (false, Some(v), Some(src)) => parse(v.get_ref())
                .map_err(|e| file_error(src.error(&v.span(), format!("{key}: {e}")))),
            _ => Ok(cli),
        }
    }
}

fn file_error(e: FileError) -> ConfigError {
    ConfigError::File(e.to_string())
}

/// A string value, or an error naming what was expected.
fn as_str(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, found {}", v.type_str()))
}

/// A whole number given as an integer or a string.
fn as_text(v: &Value) -> Result<String, String> {
    match v {
        Value::Integer(i) => Ok(i.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!(
            "expected a number or a string, found {}",
            other.type_str()
        )),
    }
}

fn as_bool(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, found {}", v.type_str()))
}

/// Build the config from the parsed command line and, with `--config`, the file.
/// `text` replaces reading the file (tests).
fn build(cli: flags::Cli, matches: &ArgMatches, text: Option<&str>) -> Result<Config, ConfigError> {
    let (file, source) = match &cli.config {
        Some(path) => {
            if !cli.upstreams.is_empty() {
                return Err(ConfigError::Usage(
                    "--upstream cannot be used with --config: put the upstreams in a pool of the file"
                        .to_string(),
                ));
            }
            let (file, source) = match text {
                Some(text) => {
                    let source = Source {
                        path: path.clone(),
                        text: text.to_string(),
                    };
                    (file::parse(&source).map_err(file_error)?, source)
                }
                None => file::read(path).map_err(file_error)?,
            };
            (file, Some(source))
        }
        None => (file::File::default(), None),
    };
    let m = Merge {
        matches,
        source: source.as_ref(),
    };
    use values::*;
    let positive = |v: &Value| as_str(v).and_then(parse_positive_duration);
    let (listen, dual_stack) = m.pick("listen", cli.listen, &file.listen, |v| {
        as_str(v).and_then(parse_listen)
    })?;
    let workers = m.pick("workers", cli.workers, &file.workers, |v| {
        as_text(v).and_then(|t| parse_count(&t))
    })?;
    let health_interval = m.pick(
        "health_interval",
        cli.health_interval,
        &file.health_interval,
        positive,
    )?;
    let health_timeout = m.pick(
        "health_timeout",
        cli.health_timeout,
        &file.health_timeout,
        positive,
    )?;
    let connect_timeout = m.pick(
        "connect_timeout",
        cli.connect_timeout,
        &file.connect_timeout,
        positive,
    )?;
    let client_header_timeout = m.pick(
        "client_header_timeout",
        cli.client_header_timeout,
        &file.client_header_timeout,
        positive,
    )?;
    let keepalive_timeout = m.pick(
        "keepalive_timeout",
        cli.keepalive_timeout,
        &file.keepalive_timeout,
        positive,
    )?;
    let read_timeout = m.pick(
        "read_timeout",
        cli.read_timeout,
        &file.read_timeout,
        positive,
    )?;
    let write_timeout = m.pick(
        "write_timeout",
        cli.write_timeout,
        &file.write_timeout,
        positive,
    )?;
    let shutdown_timeout = m.pick(
        "shutdown_timeout",
        cli.shutdown_timeout,
        &file.shutdown_timeout,
        |v| as_str(v).and_then(parse_duration),
    )?;
    let backlog = m.pick("backlog", cli.backlog, &file.backlog, |v| {
        as_text(v).and_then(|t| parse_backlog(&t))
    })?;
    let size = |v: &Value| as_text(v).and_then(|t| parse_size(&t));
    let size_or_zero = |v: &Value| as_text(v).and_then(|t| parse_size_or_zero(&t));
    let max_request_line = m.pick(
        "max_request_line",
        cli.max_request_line,
        &file.max_request_line,
        size,
    )?;
    let max_head = m.pick("max_head", cli.max_head, &file.max_head, size)?;
    let max_fields = m.pick("max_fields", cli.max_fields, &file.max_fields, |v| {
        as_text(v).and_then(|t| parse_count(&t))
    })?;
    let upstream_idle = m.pick(
        "upstream_idle",
        cli.upstream_idle,
        &file.upstream_idle,
        |v| {
            as_text(v).and_then(|t| {
                t.parse::<u32>()
                    .map(Some)
                    .map_err(|_| format!("'{t}' is not a whole number"))
            })
        },
    )?;
    let upstream_idle_timeout = m.pick(
        "upstream_idle_timeout",
        cli.upstream_idle_timeout,
        &file.upstream_idle_timeout,
        positive,
    )?;
    let upstream_max_requests = m.pick(
        "upstream_max_requests",
        cli.upstream_max_requests,
        &file.upstream_max_requests,
        |v| {
            as_text(v).and_then(|t| match t.parse::<u32>() {
                Ok(0) | Err(_) => Err(format!("'{t}' is not a whole number of at least 1")),
                Ok(n) => Ok(n),
            })
        },
    )?;
    let splice_min = m.pick("splice_min", cli.splice_min, &file.splice_min, |v| {
        size_or_zero(v).map(Some)
    })?;
    let request_buffer = m.pick(
        "request_buffer",
        cli.request_buffer,
        &file.request_buffer,
        size_or_zero,
    )?;
    let max_connections = m.pick(
        "max_connections",
        cli.max_connections,
        &file.max_connections,
        |v| as_text(v).and_then(|t| parse_count(&t)).map(Some),
    )?;
    let forwarded_for = m.pick(
        "forwarded_for",
        cli.forwarded_for,
        &file.forwarded_for,
        |v| as_str(v).and_then(parse_forwarded_for),
    )?;
    let underscores_in_headers = m.pick(
        "underscores_in_headers",
        cli.underscores_in_headers,
        &file.underscores_in_headers,
        as_bool,
    )?;
    let cli_level = log_level(cli.verbose, cli.quiet);
    let log_level = if cli.verbose > 0 || cli.quiet > 0 {
        cli_level
    } else {
        m.pick("log_level", cli_level, &file.log_level, |v| {
            as_str(v).and_then(parse_log_level)
        })?
    };
    if max_request_line > max_head {
        let message = format!(
            "--max-request-line ({max_request_line}) must not exceed --max-head ({max_head})"
        );
        return Err(match (&source, &file.max_request_line) {
            (Some(src), Some(v)) if !given(matches, "max_request_line") => {
                file_error(src.error(&v.span(), message))
            }
            _ => ConfigError::Usage(message),
        });
    }
    // A probe that outlived the interval would overlap the next one.
    let health_timeout = health_timeout.min(health_interval);
    let proxy_protocol = m.pick(
        "proxy_protocol",
        cli.proxy_protocol,
        &file.proxy_protocol,
        as_bool,
    )?;
    let proxy_protocol_from = match (&file.proxy_protocol_from, &source) {
        (Some(list), Some(src)) if cli.proxy_protocol_from.is_empty() => {
            let mut blocks = Vec::new();
            for c in list.get_ref() {
                blocks.push(
                    crate::proxy_protocol::Cidr::parse(c.get_ref()).map_err(|e| {
                        file_error(src.error(&c.span(), format!("proxy_protocol_from: {e}")))
                    })?,
                );
            }
            blocks
        }
        _ => cli.proxy_protocol_from.clone(),
    };
    let file_admin = file
        .admin
        .as_ref()
        .and_then(|a| a.get_ref().listen.as_ref());
    let admin = match (cli.admin, file_admin, &source) {
        (Some((addr, _)), _, _) => Some(addr),
        (None, Some(v), Some(src)) => Some(
            as_str(v.get_ref())
                .and_then(parse_listen)
                .map(|(a, _)| a)
                .map_err(|e| file_error(src.error(&v.span(), format!("admin listen: {e}"))))?,
        ),
        _ if cli.demo => Some(SocketAddr::from(([127, 0, 0, 1], DEMO_ADMIN_PORT))),
        _ => None,
    };
    let access_log = access_log(&cli, matches, &file, source.as_ref())?;
    let client_limits = match (&file.client_limits, &source) {
        (Some(l), Some(src)) => client_limits(l.get_ref(), src)?,
        _ => ClientLimits {
            rate: None,
            connections: None,
            max_clients: MAX_CLIENTS,
            shared: None,
        },
    };

    let mut notices = Vec::new();
    let mut warnings = Vec::new();
    let defaults = HealthSpec {
        check: Check::Tcp,
        path: "/".to_string(),
        host: None,
        expect: StatusRanges(vec![(200, 399)]),
        interval: health_interval,
        timeout: health_timeout,
        rise: 1,
        fall: 1,
        send_proxy: None,
    };
    let (pools, routes) = match &source {
        Some(src) => pools_and_routes(&file, src, &defaults, &mut notices, &mut warnings)?,
        None => {
            let upstreams: Vec<Address> = if cli.upstreams.is_empty() {
                if !cli.demo {
                    return Err(ConfigError::Usage(
                        "at least one --upstream is required (or --demo, or --config)".to_string(),
                    ));
                }
                DEMO_PORTS
                    .iter()
                    .map(|&port| {
                        let addr = SocketAddr::from(([127, 0, 0, 1], port));
                        Address {
                            name: addr.to_string(),
                            addr,
                        }
                    })
                    .collect()
            } else {
                let mut list = Vec::with_capacity(cli.upstreams.len());
                for (address, notice) in cli.upstreams {
                    notices.extend(notice);
                    list.push(address);
                }
                list
            };
            let count = upstreams.len();
            let pool = PoolSpec {
                name: DEFAULT_POOL.to_string(),
                strategy: Strategy::RoundRobin,
                hash_key: None,
                upstreams: upstreams
                    .into_iter()
                    .map(|address| UpstreamSpec {
                        address,
                        weight: 1,
                        backup: false,
                        max_conns: None,
                    })
                    .collect(),
                health: defaults.clone(),
                retries: default_retries(count),
                slow_start: Duration::ZERO,
                queue_timeout: QUEUE_TIMEOUT,
                client_rate: None,
                send_proxy: None,
            };
            let route = RouteSpec {
                host: None,
                path: None,
                pool: 0,
            };
            (vec![pool], vec![route])
        }
    };

    Ok(Config {
        listen,
        dual_stack,
        workers,
        health_interval,
        health_timeout,
        connect_timeout,
        client_header_timeout,
        keepalive_timeout,
        read_timeout,
        write_timeout,
        shutdown_timeout,
        backlog,
        limits: Limits {
            max_request_line,
            max_head,
            max_fields,
            ..Limits::DEFAULT
        },
        demo: cli.demo,
        upstream_idle: upstream_idle.map(|n| n as usize),
        upstream_idle_timeout,
        upstream_max_requests,
        splice_min: splice_min.unwrap_or(SPLICE_MIN),
        splice_min_response: splice_min.unwrap_or(SPLICE_MIN_RESPONSE),
        request_buffer,
        max_connections,
        forwarded_for,
        underscores_in_headers,
        log_level,
        proxy_protocol,
        proxy_protocol_from,
        admin,
        access_log,
        client_limits,
        pools,
        routes,
        file: cli.config.clone(),
        notices,
        warnings,
    })
}

/// Tries after the first by default: the number of other upstreams, at most
/// [`DEFAULT_RETRIES`].
fn default_retries(upstreams: usize) -> usize {
    upstreams.saturating_sub(1).min(DEFAULT_RETRIES)
}

/// The pools and routes of the file, validated.
fn pools_and_routes(
    file: &file::File,
    src: &Source,
    defaults: &HealthSpec,
    notices: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<PoolSpec>, Vec<RouteSpec>), ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    if file.pools.is_empty() {
        return Err(file_error(src.error_at(
            0,
            "no pools: add a [pools.NAME] table with its upstreams",
        )));
    }
    let mut pools = Vec::with_capacity(file.pools.len());
    for (name, pool) in &file.pools {
        let at = pool.span();
        let p = pool.get_ref();
        if !valid_name(name) {
            return Err(err(
                at,
                format!("pool name '{name}': use letters, digits, '-' and '_'"),
            ));
        }
        let strategy = match &p.strategy {
            Some(s) => {
                Strategy::parse(s.get_ref()).map_err(|e| err(s.span(), format!("strategy: {e}")))?
            }
            None => Strategy::RoundRobin,
        };
        let hash_key = match (&p.hash_key, strategy) {
            (Some(k), Strategy::Hash) => {
                Some(HashKey::parse(k.get_ref()).map_err(|e| err(k.span(), format!("hash_key: {e}")))?)
            }
            (None, Strategy::Hash) => {
                return Err(err(
                    at,
                    format!("pool '{name}': strategy \"hash\" needs a hash_key (client_ip, header:NAME, cookie:NAME or path)"),
                ))
            }
            (Some(k), other) => {
                return Err(err(
                    k.span(),
                    format!("hash_key is only for strategy \"hash\", not \"{}\"", other.name()),
                ))
            }
            (None, Strategy::IpHash) => Some(HashKey::ClientIp),
            (None, _) => None,
        };
        let entries = &p.upstreams;
        if entries.get_ref().is_empty() {
            return Err(err(
                entries.span(),
                format!("pool '{name}' has no upstreams"),
            ));
        }
        let mut upstreams: Vec<UpstreamSpec> = Vec::with_capacity(entries.get_ref().len());
        for entry in entries.get_ref() {
            let espan = entry.span();
            let (written, aspan, weight, backup, max_conns) = match entry.get_ref() {
                file::UpstreamEntry::Address(a) => (a.clone(), espan.clone(), None, None, None),
                file::UpstreamEntry::Table(t) => (
                    t.address.get_ref().clone(),
                    t.address.span(),
                    t.weight.as_ref(),
                    t.backup.as_ref(),
                    t.max_conns.as_ref(),
                ),
            };
            let (address, notice) = values::parse_upstream_noting(&written)
                .map_err(|e| err(aspan.clone(), format!("upstream: {e}")))?;
            notices.extend(notice);
            let weight = match weight {
                Some(w) => match w.get_ref().as_integer() {
                    Some(0) => return Err(err(w.span(), "weight must be at least 1 (0 would never be picked: remove the upstream, or mark it backup)".to_string())),
                    Some(n) if (1..=1000).contains(&n) => n as u32,
                    _ => return Err(err(w.span(), "weight must be a whole number from 1 to 1000".to_string())),
                },
                None => 1,
            };
            let backup = match backup {
                Some(b) => {
                    as_bool(b.get_ref()).map_err(|e| err(b.span(), format!("backup: {e}")))?
                }
                None => false,
            };
            let max_conns = match max_conns {
                Some(c) => match c.get_ref().as_integer() {
                    Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
                    _ => {
                        return Err(err(
                            c.span(),
                            "max_conns must be a whole number of at least 1".to_string(),
                        ))
                    }
                },
                None => None,
            };
            if upstreams.iter().any(|u| u.address.addr == address.addr) {
                return Err(err(
                    espan,
                    format!("pool '{name}' lists {} twice (as {written})", address.addr),
                ));
            }
            upstreams.push(UpstreamSpec {
                address,
                weight,
                backup,
                max_conns,
            });
        }
        if upstreams.iter().all(|u| u.backup) {
            return Err(err(
                entries.span(),
                format!("pool '{name}': every upstream is a backup; at least one must not be"),
            ));
        }
        let health = match &p.health {
            Some(h) => health_spec(h.get_ref(), src, defaults)?,
            None => defaults.clone(),
        };
        let retries = match &p.retries {
            Some(r) => match r.get_ref().as_integer() {
                Some(n) if (0..=100).contains(&n) => n as usize,
                _ => {
                    return Err(err(
                        r.span(),
                        "retries must be a whole number from 0 to 100".to_string(),
                    ))
                }
            },
            None => default_retries(upstreams.len()),
        };
        let slow_start = match &p.slow_start {
            Some(v) => as_str(v.get_ref())
                .and_then(parse_duration)
                .map_err(|e| err(v.span(), format!("slow_start: {e}")))?,
            None => Duration::ZERO,
        };
        if !slow_start.is_zero() && matches!(strategy, Strategy::IpHash | Strategy::Hash) {
            warnings.push(format!(
                "{}: pool '{name}': slow_start applies to round_robin and least_conn only",
                position(src, &at)
            ));
        }
        let queue_timeout = match &p.queue_timeout {
            Some(v) => as_str(v.get_ref())
                .and_then(values::parse_positive_duration)
                .map_err(|e| err(v.span(), format!("queue_timeout: {e}")))?,
            None => QUEUE_TIMEOUT,
        };
        let client_rate = match &p.client_limits {
            Some(l) => {
                let l = l.get_ref();
                rate(&l.requests_per_second, &l.burst, src)?
            }
            None => None,
        };
        let send_proxy = match &p.send_proxy {
            Some(v) => match v.get_ref().as_str() {
                "v1" => Some(1),
                "v2" => Some(2),
                other => {
                    return Err(err(
                        v.span(),
                        format!("send_proxy: '{other}' is not one of v1, v2"),
                    ))
                }
            },
            None => None,
        };
        let mut health = health;
        health.send_proxy = send_proxy;
        pools.push(PoolSpec {
            send_proxy,
            name: name.clone(),
            strategy,
            hash_key,
            upstreams,
            health,
            retries,
            slow_start,
            queue_timeout,
            client_rate,
        });
    }

    let mut routes: Vec<RouteSpec> = Vec::with_capacity(file.routes.len());
    for r in &file.routes {
        let rr = r.get_ref();
        let pool_name = rr.pool.get_ref();
        let Some(pool) = pools.iter().position(|p| &p.name == pool_name) else {
            let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
            let hint = match file::closest(pool_name, &names) {
                Some(best) => format!(" (did you mean '{best}'?)"),
                None => format!(" (pools: {})", names.join(", ")),
            };
            return Err(err(
                rr.pool.span(),
                format!("route to pool '{pool_name}', which does not exist{hint}"),
            ));
        };
        let host = match &rr.host {
            Some(h) => Some(
                route::normalize_route_host(h.get_ref())
                    .map_err(|e| err(h.span(), format!("host: {e}")))?,
            ),
            None => None,
        };
        let path = match &rr.path {
            Some(p) => Some(
                route::normalize_route_path(p.get_ref())
                    .map_err(|e| err(p.span(), format!("path: {e}")))?,
            ),
            None => None,
        };
        let spec = RouteSpec { host, path, pool };
        if let Some(dup) = routes
            .iter()
            .find(|o| o.host == spec.host && o.path == spec.path)
        {
            return Err(err(
                r.span(),
                format!(
                    "a route for the same host and path already goes to pool '{}'",
                    pools[dup.pool].name
                ),
            ));
        }
        routes.push(spec);
    }
    if routes.is_empty() {
        if pools.len() > 1 {
            return Err(file_error(src.error_at(
                0,
                format!(
                    "{} pools and no [[routes]]: with several pools, routes say which requests go where",
                    pools.len()
                ),
            )));
        }
        routes.push(RouteSpec {
            host: None,
            path: None,
            pool: 0,
        });
    }
    for (i, (pool, at)) in pools.iter().zip(file.pools.values()).enumerate() {
        if !routes.iter().any(|r| r.pool == i) {
            warnings.push(format!(
                "{}: pool '{}' is not reached by any route",
                position(src, &at.span()),
                pool.name
            ));
        }
    }
    // The same address in several pools is one upstream (one alive flag, one check): its
    // checks follow the first pool's settings.
    for (i, p) in pools.iter().enumerate() {
        for u in &p.upstreams {
            if let Some(first) = pools[..i]
                .iter()
                .find(|q| q.upstreams.iter().any(|v| v.address.addr == u.address.addr))
            {
                if first.health != p.health {
                    warnings.push(format!(
                        "{} is in pools '{}' and '{}' with different health checks: it is checked as in '{}'",
                        u.address.addr, first.name, p.name, first.name
                    ));
                }
            }
        }
    }
    Ok((pools, routes))
}

/// The port `--demo` serves the admin pages on (127.0.0.1).
pub const DEMO_ADMIN_PORT: u16 = 8404;

/// The access log from `--access-log`/`--access-log-format` over `[access_log]`.
fn access_log(
    cli: &flags::Cli,
    matches: &ArgMatches,
    file: &file::File,
    source: Option<&Source>,
) -> Result<Option<AccessLogSpec>, ConfigError> {
    let section = file.access_log.as_ref().map(|a| a.get_ref());
    let path = match (
        &cli.access_log,
        section.and_then(|a| a.path.as_ref()),
        source,
    ) {
        (Some(p), _, _) => Some(LogTarget::parse(p).map_err(ConfigError::Usage)?),
        (None, Some(v), Some(src)) => Some(
            as_str(v.get_ref())
                .and_then(LogTarget::parse)
                .map_err(|e| file_error(src.error(&v.span(), format!("access_log path: {e}"))))?,
        ),
        _ => None,
    };
    let format = match (section.and_then(|a| a.format.as_ref()), source) {
        (Some(v), Some(src)) if !given(matches, "access_log_format") => as_str(v.get_ref())
            .and_then(LogFormat::parse)
            .map_err(|e| file_error(src.error(&v.span(), format!("access_log format: {e}"))))?,
        _ => cli.access_log_format,
    };
    if path.is_none() {
        if let (Some(a), Some(src)) = (&file.access_log, source) {
            return Err(file_error(src.error(
                &a.span(),
                "[access_log] needs a path (\"stdout\" or a file)",
            )));
        }
    }
    Ok(path.map(|path| AccessLogSpec { path, format }))
}

/// A rate from `requests_per_second` and `burst` (none without a rate; a burst alone is an
/// error).
fn rate(
    per_second: &Option<At<Value>>,
    burst: &Option<At<Value>>,
    src: &Source,
) -> Result<Option<Rate>, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    let Some(r) = per_second else {
        if let Some(b) = burst {
            return Err(err(
                b.span(),
                "burst without requests_per_second".to_string(),
            ));
        }
        return Ok(None);
    };
    let per_second = match r.get_ref() {
        Value::Integer(n) if *n > 0 => *n as f64,
        Value::Float(f) if *f > 0.0 && f.is_finite() => *f,
        _ => {
            return Err(err(
                r.span(),
                "requests_per_second must be a number above 0".to_string(),
            ))
        }
    };
    if per_second > 1e9 {
        return Err(err(
            r.span(),
            "requests_per_second is too large".to_string(),
        ));
    }
    let burst = match burst {
        Some(b) => match b.get_ref().as_integer() {
            Some(n) if (0..=1_000_000).contains(&n) => n as u32,
            _ => {
                return Err(err(
                    b.span(),
                    "burst must be a whole number from 0 to 1000000".to_string(),
                ))
            }
        },
        None => 0,
    };
    Ok(Some(Rate { per_second, burst }))
}

/// `[client_limits]`.
fn client_limits(l: &file::LimitsFile, src: &Source) -> Result<ClientLimits, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    let rate = rate(&l.requests_per_second, &l.burst, src)?;
    let connections = match &l.connections {
        Some(c) => match c.get_ref().as_integer() {
            Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
            _ => {
                return Err(err(
                    c.span(),
                    "connections must be a whole number of at least 1".to_string(),
                ))
            }
        },
        None => None,
    };
    let max_clients = match &l.max_clients {
        Some(m) => match m.get_ref().as_integer() {
            Some(n) if (1..=100_000_000).contains(&n) => n as usize,
            _ => {
                return Err(err(
                    m.span(),
                    "max_clients must be a whole number from 1 to 100000000".to_string(),
                ))
            }
        },
        None => MAX_CLIENTS,
    };
    let shared = match &l.shared {
        Some(url) => {
            crate::shared_limits::check_url(url.get_ref())
                .map_err(|e| err(url.span(), format!("shared: {e}")))?;
            Some(url.get_ref().clone())
        }
        None => None,
    };
    Ok(ClientLimits {
        rate,
        connections,
        max_clients,
        shared,
    })
}

/// `PATH:LINE:COL` of a span, for warnings.
fn position(src: &Source, span: &std::ops::Range<usize>) -> String {
    let (line, col) = file::line_col(&src.text, span.start);
    format!("{}:{line}:{col}", src.path.display())
}

/// A pool name: what can go in a metric label and a URL without quoting.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `[pools.NAME.health]` over the defaults.
fn health_spec(
    h: &file::HealthFile,
    src: &Source,
    defaults: &HealthSpec,
) -> Result<HealthSpec, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    let mut spec = defaults.clone();
    if let Some(c) = &h.check {
        spec.check = match c.get_ref().as_str() {
            "tcp" => Check::Tcp,
            "http" => Check::Http,
            other => {
                return Err(err(
                    c.span(),
                    format!("check: unknown check '{other}' (use tcp or http)"),
                ))
            }
        };
    }
    if let Some(p) = &h.path {
        let path = p.get_ref();
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                p.span(),
                format!(
                    "path: '{path}' must start with '/' and have no spaces or control characters"
                ),
            ));
        }
        spec.path = path.clone();
    }
    if let Some(host) = &h.host {
        let value = host.get_ref();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                host.span(),
                format!("host: '{value}' is not a valid Host value"),
            ));
        }
        spec.host = Some(value.clone());
    }
    if let Some(e) = &h.expect {
        let text = as_text(e.get_ref()).map_err(|m| err(e.span(), format!("expect: {m}")))?;
        spec.expect =
            StatusRanges::parse(&text).map_err(|m| err(e.span(), format!("expect: {m}")))?;
    }
    let duration = |v: &At<Value>, key: &str| {
        as_str(v.get_ref())
            .and_then(values::parse_positive_duration)
            .map_err(|m| err(v.span(), format!("{key}: {m}")))
    };
    if let Some(i) = &h.interval {
        spec.interval = duration(i, "interval")?;
        if h.timeout.is_none() {
            spec.timeout = defaults.timeout;
        }
    }
    if let Some(t) = &h.timeout {
        spec.timeout = duration(t, "timeout")?;
    }
    spec.timeout = spec.timeout.min(spec.interval);
    let count = |v: &At<Value>, key: &str| match v.get_ref().as_integer() {
        Some(n) if (1..=100).contains(&n) => Ok(n as u32),
        _ => Err(err(
            v.span(),
            format!("{key} must be a whole number from 1 to 100"),
        )),
    };
    if let Some(r) = &h.rise {
        spec.rise = count(r, "rise")?;
    }
    if let Some(f) = &h.fall {
        spec.fall = count(f, "fall")?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests;
