//! The `[pools.NAME]` and `[[routes]]` tables of the file, and each pool's health checks,
//! validated.

use super::defaults::*;
use super::error::{file_error, ConfigError};
use super::file::{self, At, Source};
use super::read::{as_bool, as_str, as_text, position, rate};
use super::spec::*;
use super::values::{self, parse_duration};
use crate::route;
use std::time::Duration;
use toml::Value;

/// The pools and routes of the file, validated.
pub(super) fn pools_and_routes(
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
        let discover = match (&p.discover, &p.upstreams) {
            (Some(d), None) => {
                let text = as_str(d.get_ref()).map_err(|e| err(d.span(), format!("discover: {e}")))?;
                let srv = text
                    .strip_prefix("srv:")
                    .ok_or_else(|| err(d.span(), format!("discover: '{text}' must be srv:NAME (e.g. srv:_http._tcp.api.service.consul)")))?;
                let srv = values::parse_dns_name(srv)
                    .map_err(|e| err(d.span(), format!("discover: {e}")))?;
                Some(SrvSpec { name: srv, at: position(src, &d.span()) })
            }
            (Some(d), Some(_)) => {
                return Err(err(
                    d.span(),
                    format!("pool '{name}' has both upstreams and discover: use one (discover brings the whole pool)"),
                ))
            }
            (None, _) => None,
        };
        let no_entries = Vec::new();
        let entries = p.upstreams.as_ref().map_or(&no_entries, |e| e.get_ref());
        let entries_span = p.upstreams.as_ref().map_or(at.clone(), |e| e.span());
        if entries.is_empty() && discover.is_none() {
            return Err(err(entries_span, format!("pool '{name}' has no upstreams")));
        }
        let mut upstreams: Vec<UpstreamSpec> = Vec::with_capacity(entries.len());
        let mut names: Vec<NamedUpstream> = Vec::new();
        for entry in entries {
            let espan = entry.span();
            let (written, aspan, weight, backup, max_conns, resolve) = match entry.get_ref() {
                file::UpstreamEntry::Address(a) => {
                    (a.clone(), espan.clone(), None, None, None, None)
                }
                file::UpstreamEntry::Table(t) => (
                    t.address.get_ref().clone(),
                    t.address.span(),
                    t.weight.as_ref(),
                    t.backup.as_ref(),
                    t.max_conns.as_ref(),
                    t.resolve.as_ref(),
                ),
            };
            let resolve = match resolve {
                Some(r) => {
                    as_bool(r.get_ref()).map_err(|e| err(r.span(), format!("resolve: {e}")))?
                }
                None => false,
            };
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
            if resolve {
                let (host, port) = values::parse_upstream_name(&written)
                    .map_err(|e| err(aspan.clone(), format!("upstream: {e}")))?;
                if names
                    .iter()
                    .any(|n| n.host.eq_ignore_ascii_case(&host) && n.port == port)
                {
                    return Err(err(espan, format!("pool '{name}' lists {written} twice")));
                }
                names.push(NamedUpstream {
                    name: written,
                    host,
                    port,
                    weight,
                    backup,
                    max_conns,
                    at: position(src, &aspan),
                });
                continue;
            }
            let (address, notice) = values::parse_upstream_noting(&written)
                .map_err(|e| err(aspan.clone(), format!("upstream: {e}")))?;
            notices.extend(notice);
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
        if discover.is_none()
            && upstreams.iter().all(|u| u.backup)
            && names.iter().all(|n| n.backup)
        {
            return Err(err(
                entries_span,
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
            // Members that come from DNS are not counted yet: as many retries as by default.
            None if !names.is_empty() || discover.is_some() => DEFAULT_RETRIES,
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
        let tls = upstream_tls(p, name, src, warnings)?;
        let outlier = match &p.outlier {
            Some(o) => outlier_spec(o.get_ref(), src)?,
            None => OUTLIER,
        };
        let retry_budget = match &p.retry_budget {
            Some(v) => as_str(v.get_ref())
                .and_then(values::parse_percent)
                .map_err(|e| err(v.span(), format!("retry_budget: {e}")))?,
            None => RETRY_BUDGET,
        };
        let mut health = health;
        health.send_proxy = send_proxy;
        health.tls = tls.is_some();
        pools.push(PoolSpec {
            send_proxy,
            tls,
            name: name.clone(),
            strategy,
            hash_key,
            upstreams,
            health,
            retries,
            slow_start,
            queue_timeout,
            client_rate,
            names,
            discover,
            outlier,
            retry_budget,
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
    // Pools a [[tcp]] listener uses serve TCP only: not HTTP's catch-all, not "unreached".
    let tcp = super::tcp::tcp_pool_names(file);
    let http_pools: Vec<usize> = (0..pools.len())
        .filter(|&i| !tcp.contains(&pools[i].name))
        .collect();
    if routes.is_empty() {
        if http_pools.len() > 1 {
            return Err(file_error(src.error_at(
                0,
                format!(
                    "{} pools and no [[routes]]: with several pools, routes say which requests go where",
                    http_pools.len()
                ),
            )));
        }
        if let Some(&only) = http_pools.first() {
            routes.push(RouteSpec {
                host: None,
                path: None,
                pool: only,
            });
        }
    }
    for (i, (pool, at)) in pools.iter().zip(file.pools.values()).enumerate() {
        if !routes.iter().any(|r| r.pool == i) && !tcp.contains(&pool.name) {
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

/// `[pools.NAME.outlier]` over the defaults.
fn outlier_spec(o: &file::OutlierFile, src: &Source) -> Result<OutlierSpec, ConfigError> {
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    let mut spec = OUTLIER;
    let count = |v: &At<Value>, key: &str, most: i64| -> Result<u32, ConfigError> {
        match v.get_ref().as_integer() {
            Some(n) if (0..=most).contains(&n) => Ok(n as u32),
            _ => Err(err(
                v.span(),
                format!("{key} must be a whole number from 0 to {most}"),
            )),
        }
    };
    if let Some(v) = &o.consecutive_failures {
        spec.consecutive_failures = count(v, "consecutive_failures", 1000)?;
    }
    if let Some(v) = &o.consecutive_5xx {
        spec.consecutive_5xx = count(v, "consecutive_5xx", 1000)?;
    }
    if let Some(v) = &o.max_ejected_percent {
        spec.max_ejected_percent = count(v, "max_ejected_percent", 100)?;
    }
    let duration = |v: &At<Value>, key: &str| {
        as_str(v.get_ref())
            .and_then(values::parse_positive_duration)
            .and_then(|d| at_most(d, DAY))
            .map_err(|e| err(v.span(), format!("{key}: {e}")))
    };
    if let Some(v) = &o.ejection {
        spec.ejection = duration(v, "ejection")?;
    }
    if let Some(v) = &o.max_ejection {
        spec.max_ejection = duration(v, "max_ejection")?;
    }
    if spec.max_ejection < spec.ejection {
        let span = o
            .max_ejection
            .as_ref()
            .or(o.ejection.as_ref())
            .map_or(0..0, |v| v.span());
        return Err(err(
            span,
            format!(
                "max_ejection ({}) is shorter than ejection ({})",
                values::format_duration(spec.max_ejection),
                values::format_duration(spec.ejection)
            ),
        ));
    }
    Ok(spec)
}

/// `[dns]` over the defaults.
pub(super) fn dns_spec(
    d: Option<&At<file::DnsFile>>,
    src: Option<&Source>,
) -> Result<DnsSpec, ConfigError> {
    let mut spec = DnsSpec {
        servers: Vec::new(),
        interval: DNS_INTERVAL,
        timeout: DNS_TIMEOUT,
    };
    let (Some(d), Some(src)) = (d, src) else {
        return Ok(spec);
    };
    let err = |span: std::ops::Range<usize>, message: String| file_error(src.error(&span, message));
    let d = d.get_ref();
    if let Some(list) = &d.servers {
        for s in list.get_ref() {
            let text = as_str(s.get_ref()).map_err(|e| err(s.span(), format!("servers: {e}")))?;
            let addr = values::parse_dns_server(text)
                .map_err(|e| err(s.span(), format!("servers: {e}")))?;
            spec.servers.push(addr);
        }
    }
    if let Some(v) = &d.interval {
        spec.interval = as_str(v.get_ref())
            .and_then(values::parse_positive_duration)
            .and_then(|d| at_most(d, DAY))
            .map_err(|e| err(v.span(), format!("interval: {e}")))?;
    }
    if let Some(v) = &d.timeout {
        spec.timeout = as_str(v.get_ref())
            .and_then(values::parse_positive_duration)
            .and_then(|d| at_most(d, Duration::from_secs(60)))
            .map_err(|e| err(v.span(), format!("timeout: {e}")))?;
    }
    Ok(spec)
}

/// A day: the longest ejection and DNS interval.
const DAY: Duration = Duration::from_secs(86_400);

/// `d`, unless it is longer than `most`.
fn at_most(d: Duration, most: Duration) -> Result<Duration, String> {
    if d > most {
        Err(format!("at most {}", values::format_duration(most)))
    } else {
        Ok(d)
    }
}

/// A pool name: what can go in a metric label and a URL without quoting.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `[pools.NAME.health]` over the defaults.
pub(super) fn health_spec(
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

/// A pool's `tls`, `tls_server_name`, `tls_ca` and `tls_verify`: the settings of TLS to its
/// upstreams, or `None` without `tls = true` (the others then are an error: they would be
/// silently unused).
fn upstream_tls(
    p: &file::PoolFile,
    name: &str,
    src: &Source,
    warnings: &mut Vec<String>,
) -> Result<Option<UpstreamTlsSpec>, ConfigError> {
    let err = |span: std::ops::Range<usize>, m: String| file_error(src.error(&span, m));
    let on = match &p.tls {
        Some(v) => as_bool(v.get_ref()).map_err(|e| err(v.span(), format!("tls: {e}")))?,
        None => false,
    };
    if !on {
        for (key, v) in [
            ("tls_server_name", &p.tls_server_name),
            ("tls_ca", &p.tls_ca),
            ("tls_verify", &p.tls_verify),
        ] {
            if let Some(v) = v {
                return Err(err(
                    v.span(),
                    format!("{key} needs tls = true in this pool"),
                ));
            }
        }
        return Ok(None);
    }
    let server_name = match &p.tls_server_name {
        Some(v) => {
            let n =
                as_str(v.get_ref()).map_err(|e| err(v.span(), format!("tls_server_name: {e}")))?;
            if is_server_name(n) {
                Some(n.to_string())
            } else {
                return Err(err(
                    v.span(),
                    format!("tls_server_name: '{n}' is not a DNS name or an IP address"),
                ));
            }
        }
        None => None,
    };
    let ca = match &p.tls_ca {
        Some(v) => Some(std::path::PathBuf::from(
            as_str(v.get_ref()).map_err(|e| err(v.span(), format!("tls_ca: {e}")))?,
        )),
        None => None,
    };
    let verify = match &p.tls_verify {
        Some(v) => as_bool(v.get_ref()).map_err(|e| err(v.span(), format!("tls_verify: {e}")))?,
        None => true,
    };
    if !verify {
        warnings.push(format!(
            "{}: pool '{name}': tls_verify = false: its upstreams' certificates are not \
             verified, so anyone on the path can read and change its traffic",
            p.tls_verify
                .as_ref()
                .map_or_else(String::new, |v| position(src, &v.span()))
        ));
    }
    Ok(Some(UpstreamTlsSpec {
        server_name,
        ca,
        verify,
    }))
}

/// Whether `n` can be a TLS server name: an IP address, or a DNS name of letters, digits,
/// hyphens and dots (RFC 1123), 253 bytes at most.
fn is_server_name(n: &str) -> bool {
    if n.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !n.is_empty()
        && n.len() <= 253
        && n.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
