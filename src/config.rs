//! Command-line flags (clap) → a validated [`Config`]. No sockets here, except name resolution
//! of `--upstream` at start. STUB: interface only.

use crate::http::Limits;
use crate::upstream::Upstream;
use std::net::SocketAddr;
use std::time::Duration;

/// Everything the engine needs, validated.
#[derive(Debug)]
pub struct Config {
    /// Where to listen. For `:PORT` this is `[::]:PORT` with `dual_stack` set.
    pub listen: SocketAddr,
    /// Accept IPv4 too on an IPv6 wildcard listener (`:PORT`).
    pub dual_stack: bool,
    pub upstreams: Vec<Upstream>,
    pub workers: usize,
    pub health_interval: Duration,
    /// Already capped at `health_interval`.
    pub health_timeout: Duration,
    pub connect_timeout: Duration,
    pub client_header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub backlog: u32,
    pub limits: Limits,
    /// `--demo`: start goround-dummy children on 8081-8083 (the default upstreams then).
    pub demo: bool,
    /// From `-v`/`-q` (info by default); `RUST_LOG`, when set, wins.
    pub log_level: log::LevelFilter,
}

/// Parse a duration like `10s`, `500ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let _ = s;
    todo!()
}

/// Parse `:PORT`, `HOST:PORT`, `[V6]:PORT` for --listen. Returns (addr, dual_stack).
pub fn parse_listen(s: &str) -> Result<(SocketAddr, bool), String> {
    let _ = s;
    todo!()
}

/// Parse and resolve `host:port`, `[v6]:port` or `http://host:port` for --upstream.
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let _ = s;
    todo!()
}

/// Parse the process arguments. On a bad flag: one clear line on stderr and exit 2.
pub fn from_args() -> Config {
    todo!()
}
