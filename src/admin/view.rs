//! One consistent-enough reading of every counter, taken at a scrape: what `/metrics`,
//! `/status` and `/` render. Collecting reads atomics (the workers' own counters, summed) and
//! takes no lock a worker ever waits on.

use crate::config::Strategy;
use crate::dns::table::Found;
use crate::metrics::{Histogram, LOCAL_CODES};
use crate::state::Shared;
use crate::upstream::{LastChange, LastCheck};

/// Everything the admin pages show.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The package version.
    pub version: &'static str,
    /// Seconds since the start.
    pub uptime_seconds: u64,
    /// When the configuration in force was loaded (Unix ms).
    pub config_loaded_unix_ms: u64,
    /// The pools, in configuration order.
    pub pools: Vec<PoolView>,
    /// Client connections open now.
    pub open: u64,
    /// Client connections accepted.
    pub accepted: u64,
    /// Requests received.
    pub requests: u64,
    /// Client bytes in and out.
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Answers the proxy made itself, by [`LOCAL_CODES`] index.
    pub local: [u64; LOCAL_CODES.len()],
    /// Access-log lines dropped.
    pub access_log_dropped: u64,
    /// The proxy is stopping (SIGTERM): `/healthz` says 503.
    pub shutting_down: bool,
    /// Configuration reloads: ok, error, last success (Unix s).
    pub reloads_ok: u64,
    pub reloads_error: u64,
    pub last_reload_success_unix: u64,
    /// The exchange with Redis, when `[client_limits] shared` is configured.
    pub shared_limits: Option<SharedLimitsView>,
    /// The HTTPS listener, when `[tls]` is on.
    pub tls: Option<TlsView>,
    /// ACME, when `[acme]` is on.
    pub acme: Option<AcmeView>,
    /// The names the pools look up, and what each resolved to.
    pub dns: Vec<DnsView>,
    /// The `[[tcp]]` listeners.
    pub tcp: Vec<TcpView>,
}

/// One `[[tcp]]` listener.
#[derive(Debug, Clone, Default)]
pub struct TcpView {
    /// Its address as bound.
    pub listen: String,
    /// Its pool, or its SNI routes (`None`: the default route) with their pools.
    pub pool: Option<String>,
    pub routes: Vec<(Option<String>, String)>,
    /// Connections open now, accepted so far, bytes from and to its clients.
    pub open: u64,
    pub accepted: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One name the pools look up.
#[derive(Debug, Clone, Default)]
pub struct DnsView {
    /// The name.
    pub name: String,
    /// `A/AAAA` or `SRV`.
    pub kind: &'static str,
    /// The addresses of the last good answer (`ip`, or `host:port ip` for SRV targets).
    pub addresses: Vec<String>,
    /// Lookups that succeeded and failed.
    pub ok: u64,
    pub failed: u64,
    /// When it last resolved (Unix ms; 0: never).
    pub last_success_unix_ms: u64,
    /// The last answer's TTL (seconds; `None` from /etc/hosts or before any answer).
    pub ttl: Option<u32>,
    /// Why its lookups fail now, during an outage.
    pub error: Option<String>,
}

/// ACME: the CA, the orders, each domain's state.
#[derive(Debug, Clone, Default)]
pub struct AcmeView {
    pub directory: String,
    pub orders_ok: u64,
    pub orders_failed: u64,
    pub domains: Vec<crate::acme::DomainStatus>,
}

/// The HTTPS listener: its handshakes and certificates.
#[derive(Debug, Clone, Default)]
pub struct TlsView {
    /// Where it listens (the bound address; `:PORT` for both IPv4 and IPv6).
    pub listen: String,
    /// Handshakes completed.
    pub ok: u64,
    /// Handshakes failed, by `tls::HandshakeFailure::ALL` index.
    pub failed: [u64; 7],
    /// Completed handshakes that resumed a session.
    pub resumed: u64,
    /// Handshake times: counts per bucket of `metrics::TLS_BUCKETS_US`, and beyond; their sum.
    pub buckets: [u64; crate::metrics::TLS_BUCKETS_US.len() + 1],
    pub sum_us: u64,
    /// The certificates in force: their names, and when each expires (Unix s).
    pub certificates: Vec<(Vec<String>, i64)>,
}

/// The exchange of rate counts with Redis.
#[derive(Debug, Clone, Copy, Default)]
pub struct SharedLimitsView {
    pub up: bool,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    pub clients_sent: u64,
}

/// One pool.
#[derive(Debug, Clone)]
pub struct PoolView {
    pub name: String,
    pub strategy: Strategy,
    pub upstreams: Vec<UpstreamView>,
    /// Requests refused by a client rate limit.
    pub rate_limited: u64,
    /// Requests waiting for a `max_conns` slot now.
    pub queued: u64,
    /// Requests that waited their `queue_timeout` and got 503.
    pub queue_timeouts: u64,
    /// Retries refused by the retry budget.
    pub retries_refused: u64,
    /// 5xx answered by the proxy itself for the pool's requests.
    pub local_5xx: u64,
}

/// One upstream of a pool.
#[derive(Debug, Clone)]
pub struct UpstreamView {
    /// `host:port` as resolved.
    pub address: String,
    /// As written in the configuration.
    pub name: String,
    pub up: bool,
    pub weight: u32,
    pub backup: bool,
    /// `max_conns`, if any.
    pub max_conns: Option<u32>,
    pub active_requests: u32,
    pub requests: u64,
    pub connect_failures: u64,
    /// Responses by class, 1xx … 5xx.
    pub responses: [u64; 5],
    /// Health checks passed and failed.
    pub checks: (u64, u64),
    pub last_check: Option<LastCheck>,
    /// The last time it went down or came back, and why.
    pub last_change: Option<LastChange>,
    /// Response times.
    pub histogram: Histogram,
    /// This pool is the one whose metrics carry this upstream (the first that lists it): an
    /// upstream in several pools is counted once.
    pub primary: bool,
    /// Its address came from DNS (`name` is the name looked up, with the port).
    pub discovered: bool,
    /// Ejected by outlier detection until then (Unix ms).
    pub ejected_until_unix_ms: Option<u64>,
    /// Ejections so far: for failures in a row, for 5xx in a row.
    pub ejections: (u64, u64),
    /// Up, and still in its pool's slow start for this long.
    pub slow_start_left_ms: Option<u64>,
}

/// How long `s`, up when read (`up`), stays in its pool's slow start (`None`: not in one).
fn slow_start_left(
    slow_start_ms: u64,
    s: &crate::upstream::UpstreamState,
    up: bool,
) -> Option<u64> {
    let since = s.up_since_ms();
    if slow_start_ms == 0 || since == 0 || !up {
        return None;
    }
    let elapsed = crate::upstream::mono_ms().saturating_sub(since);
    (elapsed < slow_start_ms).then(|| slow_start_ms - elapsed)
}

/// Read everything now.
pub fn collect(shared: &Shared) -> View {
    let (snap, _) = shared.current();
    let mut seen = Vec::new();
    let pools = snap
        .pools
        .iter()
        .map(|p| PoolView {
            name: p.name.clone(),
            strategy: p.strategy,
            rate_limited: p
                .shared
                .rate_limited
                .load(std::sync::atomic::Ordering::Relaxed),
            queued: p.shared.queued.load(std::sync::atomic::Ordering::Relaxed) as u64,
            queue_timeouts: p
                .shared
                .queue_timeouts
                .load(std::sync::atomic::Ordering::Relaxed),
            retries_refused: p
                .shared
                .retries_refused
                .load(std::sync::atomic::Ordering::Relaxed),
            local_5xx: p
                .shared
                .local_5xx
                .load(std::sync::atomic::Ordering::Relaxed),
            upstreams: p
                .members
                .iter()
                .map(|m| {
                    let s = m.state;
                    let primary = !seen.contains(&s.id);
                    seen.push(s.id);
                    let (up, last_change, ejected_until_unix_ms) = s.transition_view();
                    UpstreamView {
                        address: s.addr().to_string(),
                        name: m.name.clone(),
                        up,
                        weight: m.weight,
                        backup: m.backup,
                        max_conns: (m.max_conns != u32::MAX).then_some(m.max_conns),
                        active_requests: s.in_flight(),
                        requests: s.requests(),
                        connect_failures: s.connect_failures(),
                        responses: s.responses(),
                        checks: s.checks(),
                        last_check: s.last_check(),
                        last_change,
                        histogram: s.histogram(),
                        primary,
                        discovered: m.discovered,
                        ejected_until_unix_ms,
                        ejections: s.ejections(),
                        slow_start_left_ms: slow_start_left(p.slow_start_ms, s, up),
                    }
                })
                .collect(),
        })
        .collect();
    let mut v = View {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: crate::upstream::unix_ms().saturating_sub(shared.started_unix_ms) / 1000,
        config_loaded_unix_ms: snap.loaded_unix_ms,
        pools,
        shutting_down: shared.shutdown.load(std::sync::atomic::Ordering::Relaxed),
        shared_limits: snap.cfg.client_limits.shared.as_ref().map(|_| {
            let s = &shared.shared_limits;
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            SharedLimitsView {
                up: s.up.load(relaxed),
                syncs_ok: s.syncs_ok.load(relaxed),
                syncs_failed: s.syncs_failed.load(relaxed),
                clients_sent: s.clients_sent.load(relaxed),
            }
        }),
        ..View::default()
    };
    v.dns = snap
        .names
        .all()
        .iter()
        .map(|e| {
            let st = e.state();
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            let (kind, addresses) = match &st.found {
                Found::Addrs(a) => ("A/AAAA", a.iter().map(|ip| ip.to_string()).collect()),
                Found::Srv(targets) => (
                    "SRV",
                    targets
                        .iter()
                        .flat_map(|t| {
                            t.addrs
                                .iter()
                                .map(move |ip| format!("{}:{} {ip}", t.host, t.port))
                        })
                        .collect(),
                ),
            };
            DnsView {
                name: e.key.name().to_string(),
                kind,
                addresses,
                ok: e.ok.load(relaxed),
                failed: e.failed.load(relaxed),
                last_success_unix_ms: e.last_success_unix_ms.load(relaxed),
                ttl: st.ttl,
                error: st.failing.clone(),
            }
        })
        .collect();
    v.acme = snap.acme.as_ref().map(|a| AcmeView {
        directory: a.directory(),
        orders_ok: a.orders_ok.load(std::sync::atomic::Ordering::Relaxed),
        orders_failed: a.orders_failed.load(std::sync::atomic::Ordering::Relaxed),
        domains: a.domains(),
    });
    v.tls = snap
        .tls
        .as_ref()
        .zip(snap.cfg.tls.as_ref())
        .map(|(t, spec)| {
            let mut tv = TlsView {
                listen: match (spec.dual_stack, spec.bound) {
                    (true, _) => format!(":{}", spec.port()),
                    (false, Some(bound)) => bound.to_string(),
                    (false, None) => spec.listen.to_string(),
                },
                // A placeholder (ACME, until the order completes) is no certificate to watch.
                certificates: t
                    .certs()
                    .certs
                    .iter()
                    .filter(|c| !c.placeholder)
                    .map(|c| (c.names.clone(), c.not_after))
                    .collect(),
                ..TlsView::default()
            };
            for w in shared.stats.iter() {
                tv.ok += w.tls_ok.get();
                tv.resumed += w.tls_resumed.get();
                tv.sum_us += w.tls_sum_us.get();
                for (sum, c) in tv.failed.iter_mut().zip(&w.tls_failed) {
                    *sum += c.get();
                }
                for (sum, c) in tv.buckets.iter_mut().zip(&w.tls_buckets) {
                    *sum += c.get();
                }
            }
            tv
        });
    for w in shared.stats.iter() {
        v.open += w.open.get();
        v.accepted += w.accepted.get();
        v.requests += w.requests.get();
        v.bytes_received += w.bytes_received.get();
        v.bytes_sent += w.bytes_sent.get();
        v.access_log_dropped += w.access_log_dropped.get();
        for (sum, c) in v.local.iter_mut().zip(&w.local) {
            *sum += c.get();
        }
    }
    v.tcp = shared
        .tcp_listeners
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let name = |p: usize| {
                snap.cfg
                    .pools
                    .get(p)
                    .map_or(String::new(), |p| p.name.clone())
            };
            let mut t = TcpView {
                listen: addr.to_string(),
                ..TcpView::default()
            };
            match snap.cfg.tcp.get(i).map(|s| &s.target) {
                Some(crate::config::TcpTarget::Pool(p)) => t.pool = Some(name(*p)),
                Some(crate::config::TcpTarget::Sni(routes)) => {
                    t.routes = routes
                        .iter()
                        .map(|r| (r.sni.clone(), name(r.pool)))
                        .collect()
                }
                None => {}
            }
            for w in shared.stats.iter() {
                if let Some(c) = w.tcp.get(i) {
                    t.open += c.open.get();
                    t.accepted += c.accepted.get();
                    t.bytes_in += c.bytes_in.get();
                    t.bytes_out += c.bytes_out.get();
                }
            }
            t
        })
        .collect();
    let r = &shared.reloads;
    v.reloads_ok = r.ok.load(std::sync::atomic::Ordering::Relaxed);
    v.reloads_error = r.error.load(std::sync::atomic::Ordering::Relaxed);
    v.last_reload_success_unix = r
        .last_success_unix
        .load(std::sync::atomic::Ordering::Relaxed);
    v
}

/// A view of two pools (one upstream down, one in both pools) for the renderers' tests.
#[cfg(test)]
pub fn sample() -> View {
    use crate::metrics::UpstreamShard;
    let shard = UpstreamShard::default();
    for _ in 0..10 {
        shard.response(200, 3_000);
    }
    let mut histogram = Histogram::default();
    histogram.add(&shard);
    let up = |address: &str, up: bool, primary: bool| UpstreamView {
        address: address.to_string(),
        name: address.to_string(),
        up,
        weight: 1,
        backup: false,
        max_conns: None,
        active_requests: 1,
        requests: 10,
        connect_failures: 2,
        responses: [0, 10, 0, 0, 0],
        checks: (5, 1),
        last_check: None,
        last_change: None,
        histogram: histogram.clone(),
        primary,
        discovered: false,
        ejected_until_unix_ms: None,
        ejections: (0, 0),
        slow_start_left_ms: None,
    };
    View {
        version: "0.1.0",
        uptime_seconds: 12,
        pools: vec![
            PoolView {
                name: "web".into(),
                strategy: Strategy::RoundRobin,
                upstreams: vec![
                    up("127.0.0.1:8081", true, true),
                    up("127.0.0.1:8082", false, true),
                ],
                rate_limited: 3,
                queued: 0,
                queue_timeouts: 0,
                retries_refused: 0,
                local_5xx: 0,
            },
            PoolView {
                name: "api\"x".into(),
                strategy: Strategy::LeastConn,
                upstreams: vec![up("127.0.0.1:8081", true, false)],
                rate_limited: 0,
                queued: 1,
                queue_timeouts: 4,
                retries_refused: 0,
                local_5xx: 0,
            },
        ],
        open: 2,
        accepted: 7,
        requests: 20,
        ..View::default()
    }
}
