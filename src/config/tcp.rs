//! `[[tcp]]`: listeners in raw TCP mode, each balancing its connections over a pool, or over
//! several by the TLS ClientHello's server name (passthrough: never decrypted).

use super::error::{file_error, ConfigError};
use super::file::{self, At, Source};
use super::read::{as_bool, as_str};
use super::spec::{HashKey, PoolSpec, RouteSpec, Strategy};
use super::values;
use std::net::SocketAddr;
use std::time::Duration;

/// `idle_timeout` when not written.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// One `[[tcp]]` listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSpec {
    /// Where it listens (`:PORT`: `[::]:PORT` with `dual_stack`).
    pub listen: SocketAddr,
    pub dual_stack: bool,
    /// Where its connections go.
    pub target: TcpTarget,
    /// No byte either way for this long: both sides are closed.
    pub idle_timeout: Duration,
    /// Its clients start with a PROXY protocol header.
    pub proxy_protocol: bool,
}

/// Where a TCP listener's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpTarget {
    /// Every connection to this pool (by index).
    Pool(usize),
    /// By the ClientHello's server name, in the order written: the first route that matches
    /// (an exact name, or `*.suffix`); a route without `sni` takes what no other does (no SNI,
    /// or no match); without one such, those connections are closed.
    Sni(Vec<SniRoute>),
}

/// One SNI route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoute {
    /// The name in normal form (lowercase, `*.suffix` for a wildcard); `None`: the default.
    pub sni: Option<String>,
    pub pool: usize,
}

impl SniRoute {
    /// Whether a ClientHello naming `name` (lowercase, or none) takes this route.
    pub fn matches(&self, name: Option<&str>) -> bool {
        match (&self.sni, name) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(pattern), Some(name)) => match pattern.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => pattern == name,
            },
        }
    }
}

/// The pools the file's `[[tcp]]` listeners name (refused as HTTP's implicit catch-all).
pub(super) fn tcp_pool_names(file: &file::File) -> Vec<String> {
    let mut names = Vec::new();
    for t in &file.tcp {
        let t = t.get_ref();
        names.extend(t.pool.iter().map(|p| p.get_ref().clone()));
        for r in t.routes.iter().flat_map(|r| r.get_ref()) {
            names.push(r.get_ref().pool.get_ref().clone());
        }
    }
    names
}

/// The file's `[[tcp]]` listeners over `pools`; `routes` are HTTP's (a pool serves one mode),
/// `taken` the addresses the HTTP and HTTPS listeners use.
pub(super) fn tcp_listeners(
    file: &file::File,
    src: &Source,
    pools: &[PoolSpec],
    routes: &[RouteSpec],
    taken: &[SocketAddr],
) -> Result<Vec<TcpSpec>, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    if let Some(extra) = file.tcp.get(crate::net::MAX_TCP_LISTENERS) {
        return Err(err(
            extra.span(),
            format!(
                "more than {} [[tcp]] listeners",
                crate::net::MAX_TCP_LISTENERS
            ),
        ));
    }
    let pool_index = |name: &At<String>| -> Result<usize, ConfigError> {
        let i = pools
            .iter()
            .position(|p| &p.name == name.get_ref())
            .ok_or_else(|| {
                err(
                    name.span(),
                    format!("pool '{}' does not exist", name.get_ref()),
                )
            })?;
        if routes.iter().any(|r| r.pool == i) {
            return Err(err(
                name.span(),
                format!(
                    "pool '{}' is used by [[routes]] too: a pool serves HTTP or TCP, not both",
                    name.get_ref()
                ),
            ));
        }
        let p = &pools[i];
        if let Some(k @ (HashKey::Header(_) | HashKey::Cookie(_) | HashKey::Path)) = &p.hash_key {
            return Err(err(
                name.span(),
                format!(
                    "pool '{}' hashes on {}, which a TCP connection does not have (use client_ip)",
                    p.name,
                    k.describe()
                ),
            ));
        }
        if p.strategy == Strategy::Hash && p.hash_key.is_none() {
            return Err(err(
                name.span(),
                format!("pool '{}' has no hash_key", p.name),
            ));
        }
        if p.tls.is_some() {
            return Err(err(
                name.span(),
                format!(
                    "pool '{}' has tls = true: TCP mode passes bytes as they are (TLS passthrough needs no tls on the pool)",
                    p.name
                ),
            ));
        }
        Ok(i)
    };
    let mut out: Vec<TcpSpec> = Vec::new();
    for t in &file.tcp {
        let span = t.span();
        let t = t.get_ref();
        let (listen, dual_stack) = match &t.listen {
            Some(v) => as_str(v.get_ref())
                .and_then(values::parse_listen)
                .map_err(|e| err(v.span(), format!("listen: {e}")))?,
            None => return Err(err(span, "[[tcp]] needs a listen address".to_string())),
        };
        let clash = taken.iter().chain(out.iter().map(|o| &o.listen)).any(|a| {
            a.port() == listen.port()
                && (a.ip() == listen.ip()
                    || a.ip().is_unspecified()
                    || listen.ip().is_unspecified())
        });
        if clash {
            let at = t.listen.as_ref().map_or(span.clone(), |v| v.span());
            return Err(err(
                at,
                format!(
                    "listen: port {} is already used by another listener",
                    listen.port()
                ),
            ));
        }
        let target = match (&t.pool, &t.routes) {
            (Some(p), None) => TcpTarget::Pool(pool_index(p)?),
            (None, Some(list)) => {
                let mut routes = Vec::new();
                for r in list.get_ref() {
                    let rs = r.get_ref();
                    let sni = match &rs.sni {
                        Some(s) => Some(
                            crate::route::normalize_route_host(s.get_ref())
                                .map_err(|e| err(s.span(), format!("sni: {e}")))?,
                        ),
                        None => None,
                    };
                    if routes.iter().any(|o: &SniRoute| o.sni == sni) {
                        return Err(err(
                            r.span(),
                            match &sni {
                                Some(s) => format!("sni '{s}' is routed twice"),
                                None => "two routes without sni: one default only".to_string(),
                            },
                        ));
                    }
                    routes.push(SniRoute {
                        sni,
                        pool: pool_index(&rs.pool)?,
                    });
                }
                if routes.is_empty() {
                    return Err(err(list.span(), "routes is empty".to_string()));
                }
                TcpTarget::Sni(routes)
            }
            (Some(p), Some(_)) => {
                return Err(err(
                    p.span(),
                    "[[tcp]] has both pool and routes: use one".to_string(),
                ))
            }
            (None, None) => return Err(err(span, "[[tcp]] needs a pool or routes".to_string())),
        };
        let idle_timeout = match &t.idle_timeout {
            Some(v) => as_str(v.get_ref())
                .and_then(values::parse_positive_duration)
                .map_err(|e| err(v.span(), format!("idle_timeout: {e}")))?,
            None => TCP_IDLE_TIMEOUT,
        };
        let proxy_protocol = match &t.proxy_protocol {
            Some(v) => {
                as_bool(v.get_ref()).map_err(|e| err(v.span(), format!("proxy_protocol: {e}")))?
            }
            None => false,
        };
        out.push(TcpSpec {
            listen,
            dual_stack,
            target,
            idle_timeout,
            proxy_protocol,
        });
    }
    Ok(out)
}

/// Read a value as written, for `--check`'s output.
pub(super) fn describe(t: &TcpSpec, pools: &[PoolSpec]) -> String {
    use std::fmt::Write;
    let mut o = String::from("\n[[tcp]]\n");
    let listen = if t.dual_stack {
        format!(":{}", t.listen.port())
    } else {
        t.listen.to_string()
    };
    let _ = writeln!(o, "listen = \"{listen}\"");
    match &t.target {
        TcpTarget::Pool(p) => {
            let _ = writeln!(o, "pool = \"{}\"", pools[*p].name);
        }
        TcpTarget::Sni(routes) => {
            let _ = writeln!(o, "routes = [");
            for r in routes {
                match &r.sni {
                    Some(s) => {
                        let _ = writeln!(
                            o,
                            "  {{ sni = \"{s}\", pool = \"{}\" }},",
                            pools[r.pool].name
                        );
                    }
                    None => {
                        let _ = writeln!(o, "  {{ pool = \"{}\" }},", pools[r.pool].name);
                    }
                }
            }
            let _ = writeln!(o, "]");
        }
    }
    let _ = writeln!(
        o,
        "idle_timeout = \"{}\"",
        values::format_duration(t.idle_timeout)
    );
    let _ = writeln!(o, "proxy_protocol = {}", t.proxy_protocol);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_routes_match_exact_names_and_wildcards() {
        let r = |s: Option<&str>| SniRoute {
            sni: s.map(str::to_string),
            pool: 0,
        };
        assert!(r(Some("db.example.com")).matches(Some("db.example.com")));
        assert!(!r(Some("db.example.com")).matches(Some("xdb.example.com")));
        assert!(r(Some("*.example.com")).matches(Some("a.example.com")));
        assert!(r(Some("*.example.com")).matches(Some("a.b.example.com")));
        assert!(!r(Some("*.example.com")).matches(Some("example.com")));
        assert!(!r(Some("*.example.com")).matches(Some("badexample.com")));
        assert!(!r(Some("*.example.com")).matches(None));
        assert!(r(None).matches(None) && r(None).matches(Some("any.test")));
    }
}
