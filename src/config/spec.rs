//! The validated configuration: what the engine reads, and nothing of how it was written.

use super::values::Address;
use crate::http::rewrite::ForwardedFor;
use crate::http::Limits;
pub use crate::route::RouteSpec;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// `--demo`: start goround-dummy children on [`DEMO_PORTS`](super::defaults::DEMO_PORTS) (the default upstreams then).
    pub demo: bool,
    /// `--upstream-idle`: idle upstream connections kept in all, every upstream and every
    /// worker together (0: no pooling); `None` means derived from RLIMIT_NOFILE at start
    /// ([`default_idle_budget`](super::defaults::default_idle_budget)).
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
    /// [`SPLICE_MIN_RESPONSE`](super::defaults::SPLICE_MIN_RESPONSE)).
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
    /// The HTTPS listener (`[tls]`, `--tls-listen`), if any.
    pub tls: Option<TlsSpec>,
    /// Certificates from an ACME CA (`[acme]`, `--acme-*`), if any.
    pub acme: Option<AcmeSpec>,
    /// The admin listener (`[admin] listen`, `--admin`), if any.
    pub admin: Option<SocketAddr>,
    /// `[admin] token_file`: where the admin pages' bearer token was read from, and the
    /// token. Without one the pages answer loopback clients only (`/healthz` answers all).
    pub admin_token: Option<(std::path::PathBuf, String)>,
    /// The access log, if any.
    pub access_log: Option<AccessLogSpec>,
    /// Per-client limits for every request (a pool may add its own rate).
    pub client_limits: ClientLimits,
    /// The pools, at least one; routes refer to them by index.
    pub pools: Vec<PoolSpec>,
    /// How upstream names are looked up (`[dns]`).
    pub dns: DnsSpec,
    /// The raw TCP listeners (`[[tcp]]`).
    pub tcp: Vec<super::TcpSpec>,
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
    /// Connect to the upstreams with TLS (`tls = true`).
    pub tls: Option<UpstreamTlsSpec>,
    /// Names whose every address is a member (`resolve = true`), looked up again as their
    /// TTLs run out.
    pub names: Vec<NamedUpstream>,
    /// The whole pool from SRV records (`discover = "srv:NAME"`).
    pub discover: Option<SrvSpec>,
    /// Passive outlier detection (`[pools.NAME.outlier]`).
    pub outlier: OutlierSpec,
    /// Retries may add at most this share, in percent, of the pool's first tries over the
    /// last 10 s (`retry_budget`), and at least [`RETRY_BUDGET_FLOOR`](super::defaults::RETRY_BUDGET_FLOOR) per second.
    pub retry_budget: u32,
}

impl PoolSpec {
    /// The pool's members come from DNS, all or some of them.
    pub fn discovered(&self) -> bool {
        !self.names.is_empty() || self.discover.is_some()
    }
}

/// An upstream given by a name whose every A and AAAA address becomes a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedUpstream {
    /// `host:port` as written: the members' `upstream` label and the TLS name's source.
    pub name: String,
    /// The name looked up.
    pub host: String,
    /// The port of every address.
    pub port: u16,
    /// Each member's weight, backup flag and cap, as for a static upstream.
    pub weight: u32,
    pub backup: bool,
    pub max_conns: Option<u32>,
    /// Where it is written (`PATH:LINE:COL`), for `--check`'s error when it does not resolve.
    pub at: String,
}

/// A pool whose members are the targets of SRV records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvSpec {
    /// The SRV name (`_http._tcp.api.service.consul`).
    pub name: String,
    /// Where it is written (`PATH:LINE:COL`).
    pub at: String,
}

/// Passive outlier detection: upstreams that fail live requests leave the rotation for a
/// while (Envoy's shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSpec {
    /// Connect errors, resets and timeouts before a response head in a row that eject; 0: off.
    pub consecutive_failures: u32,
    /// 502/503/504 responses in a row that eject; 0: off.
    pub consecutive_5xx: u32,
    /// The first ejection's length; the n-th lasts n times this.
    pub ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// Never more than this share of the pool ejected at once, in percent (at least one
    /// upstream may always go).
    pub max_ejected_percent: u32,
}

/// `[dns]`: how names of upstreams are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSpec {
    /// The servers asked, in order (empty: the nameservers of /etc/resolv.conf).
    pub servers: Vec<SocketAddr>,
    /// The floor between two lookups of a name (a longer TTL wins).
    pub interval: Duration,
    /// How long one query may take.
    pub timeout: Duration,
}

/// A pool's TLS to its upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsSpec {
    /// The name sent as SNI and verified (`tls_server_name`); `None`: each upstream's host.
    pub server_name: Option<String>,
    /// The CA certificates (PEM) upstream certificates are verified against (`tls_ca`);
    /// `None`: the system's trust store.
    pub ca: Option<std::path::PathBuf>,
    /// Verify the upstream's certificate and name (`tls_verify`, default true).
    pub verify: bool,
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
    pub(super) fn parse(s: &str) -> Result<LogTarget, String> {
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

    pub(super) fn parse(s: &str) -> Result<Strategy, String> {
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

    pub(super) fn parse(s: &str) -> Result<HashKey, String> {
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
    /// The pool's upstreams speak TLS: a check makes the handshake (and verifies as requests
    /// do) before it is judged.
    pub tls: bool,
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

/// The lowest TLS version the HTTPS listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl TlsVersion {
    /// As written in the file: `1.2` or `1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }
    }
}

/// `[tls]`: the HTTPS listener and its certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// Where it listens.
    pub listen: SocketAddr,
    /// `listen` was `:PORT`: IPv4 and IPv6 both.
    pub dual_stack: bool,
    /// (certificate chain, private key) PEM files, in order: the first is the default.
    pub certificates: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// Every `*.pem` there too (after `certificates`).
    pub certificate_dir: Option<std::path::PathBuf>,
    /// The lowest version accepted.
    pub min_version: TlsVersion,
    /// How long a handshake may take, from the accept.
    pub handshake_timeout: std::time::Duration,
    /// Issue session tickets (resumption).
    pub session_tickets: bool,
    /// The tickets' keys from this file (80 bytes each, as nginx's), for a fleet.
    pub ticket_key_file: Option<std::path::PathBuf>,
    /// The plain listener answers 308 to the same URL over HTTPS.
    pub redirect_http: bool,
    /// `Strict-Transport-Security` on HTTPS responses.
    pub hsts: Option<String>,
    /// Where the listener was bound, once it is (its port when `listen` asked for port 0):
    /// what redirects and the status pages name. A reload keeps it.
    pub bound: Option<SocketAddr>,
}

/// How the CA is shown that we control a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A token served by the plain listener (RFC 8555 §8.3).
    Http01,
    /// A certificate served by the HTTPS listener for ALPN `acme-tls/1` (RFC 8737).
    TlsAlpn01,
}

impl AcmeChallenge {
    /// Its name in the configuration and in ACME.
    pub fn name(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// `[acme]`: certificates ordered from an ACME CA (RFC 8555) and renewed before they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSpec {
    /// The account's contact.
    pub email: Option<String>,
    /// The CA's directory URL (https).
    pub directory: String,
    /// The names to get certificates for (one certificate each), lowercase.
    pub domains: Vec<String>,
    /// Where the account key, the certificates and their keys are kept (files 0600).
    pub storage: std::path::PathBuf,
    /// How control of a domain is proven.
    pub challenge: AcmeChallenge,
    /// Renew this long before expiry.
    pub renew_before: std::time::Duration,
    /// CA certificates (PEM) the directory is verified against instead of the system's.
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl TlsSpec {
    /// The HTTPS listener's port: the bound one once bound.
    pub fn port(&self) -> u16 {
        self.bound.unwrap_or(self.listen).port()
    }
}

impl Config {
    /// The exact hosts the routes name (not wildcards): what certificates should cover.
    pub fn routed_hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = self
            .routes
            .iter()
            .filter_map(|r| r.host.as_deref())
            .filter(|h| !h.starts_with("*."))
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        hosts
    }
}
