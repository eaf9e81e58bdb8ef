//! The TOML file as written: serde structures that keep every value's position, so that each
//! error, syntax or meaning, is reported as `PATH:LINE:COL: message`.
//!
//! Nothing here checks meaning (the loader in `config/mod.rs` does); this module only reads
//! the structure: unknown keys are refused here, with the closest known key suggested.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::{Spanned, Value};

/// A value with the byte range it was read from.
pub type At<T> = Spanned<T>;

/// The whole file. Global settings are kept as raw values: the loader parses them with the
/// same functions as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub listen: Option<At<Value>>,
    pub workers: Option<At<Value>>,
    pub health_interval: Option<At<Value>>,
    pub health_timeout: Option<At<Value>>,
    pub connect_timeout: Option<At<Value>>,
    pub client_header_timeout: Option<At<Value>>,
    pub keepalive_timeout: Option<At<Value>>,
    pub read_timeout: Option<At<Value>>,
    pub write_timeout: Option<At<Value>>,
    pub shutdown_timeout: Option<At<Value>>,
    pub backlog: Option<At<Value>>,
    pub max_request_line: Option<At<Value>>,
    pub max_head: Option<At<Value>>,
    pub max_fields: Option<At<Value>>,
    pub upstream_idle: Option<At<Value>>,
    pub upstream_idle_timeout: Option<At<Value>>,
    pub upstream_max_requests: Option<At<Value>>,
    pub splice_min: Option<At<Value>>,
    pub max_connections: Option<At<Value>>,
    pub forwarded_for: Option<At<Value>>,
    pub underscores_in_headers: Option<At<Value>>,
    pub request_buffer: Option<At<Value>>,
    pub log_level: Option<At<Value>>,
    pub proxy_protocol: Option<At<Value>>,
    pub proxy_protocol_from: Option<At<Vec<At<String>>>>,
    /// `[admin]`: the admin listener.
    pub admin: Option<At<AdminFile>>,
    /// `[access_log]`.
    pub access_log: Option<At<AccessLogFile>>,
    /// `[client_limits]`: per-client rate and connection limits.
    pub client_limits: Option<At<LimitsFile>>,
    /// `[tls]`: the HTTPS listener.
    pub tls: Option<At<TlsFile>>,
    /// `[acme]`: certificates ordered and renewed from an ACME CA.
    pub acme: Option<At<AcmeFile>>,
    /// `[dns]`: how upstream names are looked up.
    pub dns: Option<At<DnsFile>>,
    /// Raw TCP listeners.
    #[serde(default)]
    pub tcp: Vec<At<TcpFile>>,
    /// Named pools of upstreams.
    #[serde(default)]
    pub pools: BTreeMap<String, At<PoolFile>>,
    /// Routes, in the order written (the order does not decide: specificity does).
    #[serde(default)]
    pub routes: Vec<At<RouteFile>>,
}

/// `[pools.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolFile {
    pub strategy: Option<At<String>>,
    pub hash_key: Option<At<String>>,
    pub upstreams: Option<At<Vec<At<UpstreamEntry>>>>,
    /// `srv:NAME`: the members from SRV records.
    pub discover: Option<At<Value>>,
    pub health: Option<At<HealthFile>>,
    /// Passive outlier detection.
    pub outlier: Option<At<OutlierFile>>,
    pub retry_budget: Option<At<Value>>,
    pub retries: Option<At<Value>>,
    pub slow_start: Option<At<Value>>,
    pub queue_timeout: Option<At<Value>>,
    pub send_proxy: Option<At<String>>,
    /// TLS to the upstreams.
    pub tls: Option<At<Value>>,
    pub tls_server_name: Option<At<Value>>,
    pub tls_ca: Option<At<Value>>,
    pub tls_verify: Option<At<Value>>,
    /// A pool's own, stricter, rate limit.
    pub client_limits: Option<At<PoolLimitsFile>>,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub listen: Option<At<Value>>,
    pub certificates: Option<At<Vec<At<CertFile>>>>,
    pub certificate_dir: Option<At<Value>>,
    pub min_version: Option<At<Value>>,
    pub handshake_timeout: Option<At<Value>>,
    pub session_tickets: Option<At<Value>>,
    pub ticket_key_file: Option<At<Value>>,
    pub redirect_http: Option<At<Value>>,
    pub hsts: Option<At<Value>>,
}

/// `[acme]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeFile {
    pub email: Option<At<Value>>,
    pub directory: Option<At<Value>>,
    pub domains: Option<At<Vec<At<Value>>>>,
    pub storage: Option<At<Value>>,
    pub challenge: Option<At<Value>>,
    pub renew_before: Option<At<Value>>,
    pub ca_bundle: Option<At<Value>>,
}

/// One of `[tls] certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertFile {
    pub cert: At<String>,
    pub key: At<String>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<At<Value>>,
    pub token_file: Option<At<Value>>,
}

/// `[access_log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    pub path: Option<At<Value>>,
    pub format: Option<At<Value>>,
}

/// `[client_limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub requests_per_second: Option<At<Value>>,
    pub burst: Option<At<Value>>,
    pub connections: Option<At<Value>>,
    pub max_clients: Option<At<Value>>,
    pub shared: Option<At<String>>,
}

/// `[pools.NAME.client_limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolLimitsFile {
    pub requests_per_second: Option<At<Value>>,
    pub burst: Option<At<Value>>,
}

/// One entry of a pool's `upstreams`: `"host:port"` or `{ address = "host:port", ... }`.
#[derive(Debug)]
pub enum UpstreamEntry {
    /// Just the address.
    Address(String),
    /// The address and its options.
    Table(Box<UpstreamTable>),
}

/// `{ address = …, weight = …, backup = …, max_conns = … }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTable {
    pub address: At<String>,
    pub weight: Option<At<Value>>,
    pub backup: Option<At<Value>>,
    pub max_conns: Option<At<Value>>,
    /// Every address of the name is a member, looked up again as its TTL runs out.
    pub resolve: Option<At<Value>>,
}

/// `[[tcp]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFile {
    pub listen: Option<At<Value>>,
    pub pool: Option<At<String>>,
    pub routes: Option<At<Vec<At<SniRouteFile>>>>,
    pub idle_timeout: Option<At<Value>>,
    pub proxy_protocol: Option<At<Value>>,
}

/// One of `[[tcp]] routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniRouteFile {
    pub sni: Option<At<String>>,
    pub pool: At<String>,
}

/// `[pools.NAME.outlier]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierFile {
    pub consecutive_failures: Option<At<Value>>,
    pub consecutive_5xx: Option<At<Value>>,
    pub ejection: Option<At<Value>>,
    pub max_ejection: Option<At<Value>>,
    pub max_ejected_percent: Option<At<Value>>,
}

/// `[dns]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    pub servers: Option<At<Vec<At<Value>>>>,
    pub interval: Option<At<Value>>,
    pub timeout: Option<At<Value>>,
}

impl<'de> Deserialize<'de> for UpstreamEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = UpstreamEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address (\"host:port\") or a table with `address`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<UpstreamEntry, E> {
                Ok(UpstreamEntry::Address(s.to_string()))
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<UpstreamEntry, M::Error> {
                UpstreamTable::deserialize(de::value::MapAccessDeserializer::new(m))
                    .map(|t| UpstreamEntry::Table(Box::new(t)))
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// `[pools.NAME.health]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthFile {
    pub check: Option<At<String>>,
    pub path: Option<At<String>>,
    pub host: Option<At<String>>,
    pub expect: Option<At<Value>>,
    pub interval: Option<At<Value>>,
    pub timeout: Option<At<Value>>,
    pub rise: Option<At<Value>>,
    pub fall: Option<At<Value>>,
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub host: Option<At<String>>,
    pub path: Option<At<String>>,
    pub pool: At<String>,
}

/// Where something is in the file, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file as named on the command line.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, one line.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// A file's text and name, to turn byte offsets into `PATH:LINE:COL`.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as named on the command line.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

impl Source {
    /// An error at byte offset `at`.
    pub fn error_at(&self, at: usize, message: impl Into<String>) -> FileError {
        let (line, col) = line_col(&self.text, at);
        FileError {
            path: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// An error at the start of `span`.
    pub fn error(&self, span: &Range<usize>, message: impl Into<String>) -> FileError {
        self.error_at(span.start, message)
    }
}

/// The 1-based line and column (in characters) of byte offset `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Read and parse `path`. Errors come as `PATH:LINE:COL: message` (line 1, column 1 when the
/// file cannot be read at all).
pub fn read(path: &Path) -> Result<(File, Source), FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        path: path.to_path_buf(),
        line: 1,
        col: 1,
        message: format!("cannot read the file: {e}"),
    })?;
    let source = Source {
        path: path.to_path_buf(),
        text,
    };
    let file = parse(&source)?;
    Ok((file, source))
}

/// Parse the text of `source`.
pub fn parse(source: &Source) -> Result<File, FileError> {
    toml::from_str::<File>(&source.text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        source.error_at(at, explain(e.message()))
    })
}

/// Make a parser message read like ours: an unknown key is named, with the closest known key
/// suggested when there is one.
fn explain(message: &str) -> String {
    let message = message.trim_end().trim_end_matches('.');
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((key, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let known: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    match closest(key, &known) {
        Some(best) => format!("unknown key `{key}` (did you mean `{best}`?)"),
        None if known.is_empty() => format!("unknown key `{key}`"),
        None => format!(
            "unknown key `{key}` (known keys here: {})",
            known.join(", ")
        ),
    }
}

/// The known key closest to `key` by edit distance, when it is close enough to be a typo.
pub fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edit distance over characters, a swap of two neighbours counting as one edit (optimal
/// string alignment): `wbe` is one typo away from `web`. Keys are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            path: PathBuf::from("t.toml"),
            text: text.to_string(),
        }
    }

    fn error(text: &str) -> String {
        match parse(&source(text)) {
            Err(e) => e.to_string(),
            Ok(f) => panic!("parsed: {f:?}"),
        }
    }

    #[test]
    fn positions_are_lines_and_characters() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("abc\ndef", 5), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("éx", 2), (1, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn unknown_keys_are_named_with_the_closest_match() {
        assert_eq!(
            error("listen = \":1\"\nconect_timeout = \"4s\"\n"),
            "t.toml:2:1: unknown key `conect_timeout` (did you mean `connect_timeout`?)"
        );
        assert_eq!(
            error("[pools.a]\nupstreams = [{ address = \"x:1\", wieght = 2 }]\n"),
            "t.toml:2:33: unknown key `wieght` (did you mean `weight`?)"
        );
        let e = error("[pools.a]\nupstreams = [\"x:1\"]\n[pools.a.health]\nzzz = 1\n");
        assert!(
            e.starts_with("t.toml:4:1: unknown key `zzz` (known keys here: check, "),
            "{e}"
        );
    }

    #[test]
    fn syntax_and_type_errors_have_positions() {
        let e = error("listen = \n");
        assert!(e.starts_with("t.toml:1:"), "{e}");
        let e = error("[pools.a]\nupstreams = [\"x:1\", 5]\n");
        assert!(e.starts_with("t.toml:2:21: "), "{e}");
        assert!(e.contains("an address"), "{e}");
        let e = error("[[routes]]\nhost = \"a\"\n");
        assert!(e.starts_with("t.toml:1:1: missing field `pool`"), "{e}");
    }

    #[test]
    fn typos_are_close_and_strangers_are_not() {
        let known = ["connect_timeout", "read_timeout", "workers"];
        assert_eq!(closest("conect_timeout", &known), Some("connect_timeout"));
        assert_eq!(closest("worker", &known), Some("workers"));
        assert_eq!(closest("banana", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("wbe", "web"), 1);
    }
}
