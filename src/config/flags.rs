//! The command line (clap). Every flag value goes through a pure parser from
//! [`values`](super::values), so a bad value is reported by clap with the flag's name.

use super::spec::LogFormat;
use super::values::*;

/// Parse an address block for --proxy-protocol-from.
fn parse_cidr(s: &str) -> Result<crate::proxy_protocol::Cidr, String> {
    crate::proxy_protocol::Cidr::parse(s)
}

/// Parse `combined` or `json` for --access-log-format.
fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    LogFormat::parse(s)
}
use crate::http::rewrite::ForwardedFor;
use clap::{ArgAction, Parser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const AFTER_HELP: &str = "\
Durations take a unit: 500ms, 10s, 2m, 1h (1.5s works too).
Sizes are bytes, optionally with k (1024) or m (1048576): 8192, 8k, 32KiB.

Examples:
  goround-mio --upstream 10.0.0.1:8080 --upstream 10.0.0.2:8080
  goround-mio --listen 127.0.0.1:8000 --upstream http://app1:8080 --upstream [::1]:8081 -v
  goround-mio --config /etc/goround/goround.toml
  goround-mio --config goround.toml --check     (print the effective configuration)
  goround-mio --demo        (three local dummy backends on 127.0.0.1:8081-8083)

--help shows the whole manual.";

/// `--help`: the manual (`-h` is the short summary above).
const LONG_ABOUT: &str = "\
goround-mio is an HTTP/1.1 reverse proxy and load balancer: one binary that listens on one
port, reads each request strictly (RFC 9112: anything ambiguous gets a 4xx, never reaches an
upstream), routes it by Host and path to a pool of upstreams, picks one by the pool's strategy
(round robin, smooth weighted round robin, least connections, consistent hashing of the client
address, a header, a cookie or the path), skipping upstreams that health checks or failed
connects took out, and relays the response. Every worker thread runs its own event loop.

Without --config, the --upstream flags form one round-robin pool. With --config, a TOML file
gives pools, routes, health checks (TCP or HTTP with rise/fall), client rate and connection
limits, per-upstream connection caps, the admin pages and the access log; every flag below is
also a key of the file (--connect-timeout is connect_timeout), and a flag given wins.";

/// The end of `--help`: what a man page would add.
const AFTER_LONG_HELP: &str = "\
DURATIONS AND SIZES
  Durations take a unit: 500ms, 10s, 2m, 1h (1.5s works too). Sizes are bytes, optionally
  with k (1024) or m (1048576): 8192, 8k, 32KiB, 1MiB.

SIGNALS
  SIGTERM, SIGINT  Stop gracefully: stop accepting, close idle connections, answer what is in
                   flight with Connection: close, exit 0 (at most --shutdown-timeout). A second
                   signal stops at once.
  SIGHUP           Re-read --config, validate it completely and swap it in every worker;
                   requests in flight finish on the old one, no connection is closed. A bad
                   file changes nothing (logged as PATH:LINE:COL: message).
  SIGUSR2          Binary upgrade: start the binary at this path with these arguments, handing
                   it the listening sockets (LISTEN_FDS); once it is ready, this process stops
                   accepting, drains and exits. If it fails to start, this one keeps serving.
  SIGUSR1          Reopen the access log file (logrotate).

ENVIRONMENT
  RUST_LOG         Log filter (wins over -v, -q and log_level), e.g. RUST_LOG=debug.
  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES
                   Listening sockets handed over by systemd (socket activation) or by an
                   upgrading goround-mio: served at once instead of binding --listen.
  NOTIFY_SOCKET    Set by systemd for Type=notify: READY=1 once the listeners are polled and
                   every upstream had its first health check; RELOADING=1 on SIGHUP.

ADMIN PAGES (--admin ADDR or [admin] listen)
  /metrics (Prometheus), /status (JSON), / (the live status page), /healthz (200, or 503 from
  the start of a graceful stop). /healthz answers anyone; the others want the bearer token of
  [admin] token_file when one is set, and answer loopback clients only when none is.

FILES
  /etc/goround/goround.toml   The usual place of --config; deploy/goround.toml in the sources
                              documents every key. deploy/ also has a systemd unit and socket,
                              Kubernetes manifests and a note on the PROXY protocol.

EXIT STATUS
  0  Stopped gracefully, or --help, --version, --check.
  1  A bad config file (PATH:LINE:COL: message), or a start-up failure (a port in use).
  2  A bad command line.

EXAMPLES
  goround-mio --upstream 10.0.0.1:8080 --upstream 10.0.0.2:8080
  goround-mio --listen 127.0.0.1:8000 --upstream http://app1:8080 --upstream [::1]:8081 -v
  goround-mio --config /etc/goround/goround.toml --check
  goround-mio --config /etc/goround/goround.toml --admin 127.0.0.1:8404
  goround-mio --demo     (three local dummy backends on 127.0.0.1:8081-8083, status page on
                          127.0.0.1:8404)";

/// The flags as clap sees them; `config::load` merges them with the file into a `Config`.
///
/// Every setting that the file also has is named like its key (`connect_timeout` here,
/// `--connect-timeout` on the command line, `connect_timeout = "4s"` in the file): the merge
/// looks the flag up by that name to learn whether it was given.
// The doc comments are the `--help` texts, where `[IPv6]:PORT` is an address form, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Parser, Debug)]
#[command(
    name = "goround-mio",
    version,
    about = "A small, strict, fast HTTP/1.1 reverse proxy and load balancer",
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Read pools, routes and settings from this TOML file (flags given too override its keys)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (every default filled in) as TOML and exit; a bad
    /// file prints PATH:LINE:COL: message and exits 1
    #[arg(long)]
    pub check: bool,

    /// Where to listen: :PORT (all interfaces, IPv4 and IPv6), IP:PORT, [IPv6]:PORT or NAME:PORT
    #[arg(long, value_name = "ADDR", default_value = ":8000", value_parser = parse_listen)]
    pub listen: (SocketAddr, bool),

    /// A backend: HOST:PORT, [IPv6]:PORT or http://HOST:PORT; repeat for several (at least one
    /// unless --demo)
    #[arg(long = "upstream", value_name = "ADDR", value_parser = parse_upstream_noting)]
    pub upstreams: Vec<(Address, Option<String>)>,

    /// Worker threads, one event loop each (default: the number of CPU cores)
    #[arg(long, value_name = "N", default_value_t = default_workers(), value_parser = parse_count)]
    pub workers: usize,

    /// Time between two health sweeps of the upstreams
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub health_interval: Duration,

    /// Connect timeout of one health probe (capped at --health-interval)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_positive_duration)]
    pub health_timeout: Duration,

    /// Connect timeout for a request to an upstream; then the next upstream is tried
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = parse_positive_duration)]
    pub connect_timeout: Duration,

    /// Time a client has to send a complete request head
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub client_header_timeout: Duration,

    /// Time an idle keep-alive client connection is kept open
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_positive_duration)]
    pub keepalive_timeout: Duration,

    /// Longest wait for more bytes of a body or a response
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    pub read_timeout: Duration,

    /// Longest wait for a peer to take more bytes
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_positive_duration)]
    pub write_timeout: Duration,

    /// On SIGINT/SIGTERM, time given to in-flight requests (0s: close at once)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Listen backlog
    #[arg(long, value_name = "N", default_value = "1024", value_parser = parse_backlog)]
    pub backlog: u32,

    /// Longest request line before a 414
    #[arg(long, value_name = "SIZE", default_value = "8192", value_parser = parse_size)]
    pub max_request_line: usize,

    /// Largest request or response head before a 431 (502 for a response)
    #[arg(long, value_name = "SIZE", default_value = "32768", value_parser = parse_head_size)]
    pub max_head: usize,

    /// Most header fields in one head before a 431 (502 for a response)
    #[arg(long, value_name = "N", default_value = "100", value_parser = parse_count)]
    pub max_fields: usize,

    /// Most idle keep-alive upstream connections kept in all (every upstream and worker
    /// together, like nginx's `keepalive`); 0 turns pooling off [default: a tenth of the
    /// open-files limit, at most 8192]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32))]
    pub upstream_idle: Option<u32>,

    /// How long an idle upstream connection is kept; shorter than most backends' own idle
    /// timeout (2-5 s), and shortened further by an upstream's `Keep-Alive: timeout=`
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = parse_positive_duration)]
    pub upstream_idle_timeout: Duration,

    /// Most requests sent on one upstream connection before it is closed
    #[arg(long, value_name = "N", default_value = "1000", value_parser = clap::value_parser!(u32).range(1..))]
    pub upstream_max_requests: u32,

    /// Body spans at least this long (the rest of a Content-Length body, the data of a chunk),
    /// both ways, are moved with splice(2) (zero-copy) instead of through user-space buffers,
    /// and so are tunnels while they stream; 0 turns splicing off [default: 128k for request
    /// bodies and tunnels, 192k for response bodies]
    #[arg(long, value_name = "SIZE", value_parser = parse_size_or_zero)]
    pub splice_min: Option<usize>,

    /// A request body up to this size is read whole, and its framing checked, before an
    /// upstream is chosen (a bad one gets 400 and no upstream sees a byte of it); a longer body
    /// streams once this much is buffered; 0 streams every body at once
    #[arg(long, value_name = "SIZE", default_value = "64k", value_parser = parse_request_buffer)]
    pub request_buffer: usize,

    /// Most client connections open at once; at the limit the proxy stops accepting until one
    /// closes (default: derived from the open-files limit, two descriptors per connection)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub max_connections: Option<usize>,

    /// What to do with a client's X-Forwarded-For: append (keep it and add the client address)
    /// or replace (write only the client address; for an edge proxy)
    #[arg(long, value_name = "MODE", default_value = "append", value_parser = parse_forwarded_for)]
    pub forwarded_for: ForwardedFor,

    /// Forward request header fields whose name contains `_`; by default they are dropped, since
    /// CGI-style backends read `X_Forwarded_For` as `X-Forwarded-For`
    #[arg(long)]
    pub underscores_in_headers: bool,

    /// Serve /metrics, /status, the status page (/) and /healthz on this address (off unless
    /// given; --demo turns it on at 127.0.0.1:8404)
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub admin: Option<(SocketAddr, bool)>,

    /// Serve HTTPS on this address too (needs at least one --tls-cert and --tls-key, or
    /// [tls] certificates in the file)
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    pub tls_listen: Option<(SocketAddr, bool)>,

    /// A certificate chain (PEM, leaf first) for the HTTPS listener; repeatable, each with a
    /// --tls-key in the same order; the first is the default
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Vec<std::path::PathBuf>,

    /// The private key (PEM) of the --tls-cert in the same position
    #[arg(long, value_name = "PATH")]
    pub tls_key: Vec<std::path::PathBuf>,

    /// The plain listener answers 308 to https://HOST[:PORT]/PATH?QUERY
    #[arg(long)]
    pub redirect_http: bool,

    /// Get and renew the HTTPS listener's certificates from an ACME CA (Let's Encrypt by
    /// default), with this contact address
    #[arg(long, value_name = "ADDRESS")]
    pub acme_email: Option<String>,

    /// A domain to get a certificate for (repeatable; default: every exact host routed)
    #[arg(long, value_name = "NAME")]
    pub acme_domain: Vec<String>,

    /// The ACME CA's directory URL (default: Let's Encrypt's production directory)
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,

    /// Write an access log line per request to PATH (or `stdout`); off by default
    #[arg(long, value_name = "PATH")]
    pub access_log: Option<String>,

    /// The access log's format: combined (nginx's, byte for byte) or json
    #[arg(long, value_name = "FORMAT", default_value = "combined", value_parser = parse_log_format)]
    pub access_log_format: LogFormat,

    /// Connections must start with a PROXY protocol header (v1 or v2) carrying the client's
    /// address (behind a layer-4 load balancer)
    #[arg(long)]
    pub proxy_protocol: bool,

    /// With --proxy-protocol: only these address blocks may connect (and must send the
    /// header); repeat or separate with commas, e.g. 10.0.0.0/8,127.0.0.1/32
    #[arg(long, value_name = "CIDR", value_delimiter = ',', value_parser = parse_cidr)]
    pub proxy_protocol_from: Vec<crate::proxy_protocol::Cidr>,

    /// Start three dummy backends on 127.0.0.1:8081-8083; they are the upstreams unless
    /// --upstream is given (then they run alongside, unused unless listed)
    #[arg(long)]
    pub demo: bool,

    /// More logging: -v debug, -vv trace
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Less logging: -q warnings and errors only, -qq errors only, -qqq nothing
    #[arg(short, long, action = ArgAction::Count)]
    pub quiet: u8,
}
