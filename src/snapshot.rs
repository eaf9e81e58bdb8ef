//! The one immutable snapshot the workers share (`Arc<Snapshot>`): the validated [`Config`],
//! its pools bound to the upstreams' shared state, and its routes ready for lookup. A reload
//! builds a new snapshot and swaps it; a request in flight keeps the one it started with.

use crate::balance::Pool;
use crate::config::Config;
use crate::dns::{table, Names};
use crate::limits::Limiter;
use crate::route;
use crate::tls::{Tls, UpstreamTls};
use crate::upstream::{Registry, UpstreamState};
use std::sync::Arc;

/// What the workers read for every request.
#[derive(Debug)]
pub struct Snapshot {
    /// The settings, pools and routes as configured.
    pub cfg: Config,
    /// The pools, index-parallel to `cfg.pools`.
    pub pools: Vec<Pool>,
    /// The routes, ordered for lookup.
    pub routes: route::Table,
    /// When it was made (Unix ms): `/status`'s `config_loaded_unix_ms`.
    pub loaded_unix_ms: u64,
    /// The global client limits (rate and connections), if any.
    pub limiter: Option<Arc<Limiter>>,
    /// Each pool's own client rate, if any (index-parallel to `pools`).
    pub pool_limiters: Vec<Option<Arc<Limiter>>>,
    /// The HTTPS listener's certificates and ticket keys (one for the process, carried from
    /// snapshot to snapshot), when `[tls]` is on.
    pub tls: Option<Arc<Tls>>,
    /// ACME (`[acme]`): its http-01 tokens and the domains' states (one for the process,
    /// carried from snapshot to snapshot).
    pub acme: Option<Arc<crate::acme::Acme>>,
    /// The rustls configuration new TLS connections use.
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// `Strict-Transport-Security: VALUE` CRLF, for HTTPS responses (`[tls] hsts`).
    pub hsts_line: Option<Box<[u8]>>,
    /// Each pool's TLS to its upstreams, if it has `tls = true` (index-parallel to `pools`).
    pub upstream_tls: Vec<Option<Arc<UpstreamTls>>>,
    /// The names the pools look up and what they resolved to (one table for the process,
    /// carried from snapshot to snapshot; the resolver thread keeps it current).
    pub names: Arc<Names>,
    /// Every upstream the pools list, once each: counted as listed while this snapshot lives,
    /// so that the registry reuses only states no snapshot lists.
    listed: Vec<&'static UpstreamState>,
}

/// `cfg`'s pools bound to their states in `registry`, with the members their names resolved
/// to in `names` (see [`Snapshot::new`] for `pending`). Frees first what nothing can use.
fn bind_pools(
    cfg: &Config,
    names: &Names,
    registry: &Registry,
    pending: bool,
) -> Result<Vec<Pool>, String> {
    registry.prepare();
    cfg.pools
        .iter()
        .map(|p| {
            let found = if p.discovered() {
                table::members(p, names)
            } else {
                Vec::new()
            };
            Pool::new(p, &found, registry, pending)
        })
        .collect()
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        for s in &self.listed {
            s.listed(false);
        }
    }
}

impl Snapshot {
    /// Bind `cfg` to the upstream states in `registry` (an address already there keeps its
    /// state: alive, in flight, counters), with the members its names resolved to in
    /// `names`. With `pending`, an address from DNS new to the registry takes no request
    /// before its first health check passes (at start every address is taken as up, as
    /// static ones are).
    pub fn new(
        cfg: Config,
        registry: &Registry,
        tls: Option<Arc<Tls>>,
        acme: Option<Arc<crate::acme::Acme>>,
        names: Arc<Names>,
        pending: bool,
    ) -> Result<Snapshot, String> {
        let alpn_challenges = cfg
            .acme
            .as_ref()
            .is_some_and(|a| a.challenge == crate::config::AcmeChallenge::TlsAlpn01);
        let tls_server = match (&tls, &cfg.tls) {
            (Some(t), Some(spec)) => Some(t.server_config(spec, alpn_challenges)?),
            _ => None,
        };
        let hsts_line = cfg.tls.as_ref().and_then(|t| t.hsts.as_ref()).map(|v| {
            format!("Strict-Transport-Security: {v}\r\n")
                .into_bytes()
                .into()
        });
        let pools = bind_pools(&cfg, &names, registry, pending)?;
        let upstream_tls = cfg
            .pools
            .iter()
            .map(|p| {
                p.tls
                    .as_ref()
                    .map(|t| {
                        UpstreamTls::new(t)
                            .map(Arc::new)
                            .map_err(|e| format!("pool '{}': {e}", p.name))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let routes = route::Table::new(&cfg.routes);
        let limits = &cfg.client_limits;
        let shared = limits.shared.is_some();
        let limiter = (limits.rate.is_some() || limits.connections.is_some())
            .then(|| Arc::new(Limiter::new(limits.rate, limits.max_clients, shared)));
        let pool_limiters = cfg
            .pools
            .iter()
            .map(|p| {
                p.client_rate
                    .map(|r| Arc::new(Limiter::new(Some(r), limits.max_clients, shared)))
            })
            .collect();
        let mut snap = Snapshot {
            cfg,
            pools,
            routes,
            loaded_unix_ms: crate::upstream::unix_ms(),
            limiter,
            pool_limiters,
            hsts_line,
            upstream_tls,
            tls,
            acme,
            tls_server,
            names,
            listed: Vec::new(),
        };
        snap.list();
        Ok(snap)
    }

    /// Count its upstreams as listed while it lives.
    fn list(&mut self) {
        self.listed = self.upstreams().into_iter().map(|(s, _)| s).collect();
        for s in &self.listed {
            s.listed(true);
        }
    }

    /// The snapshot for a reloaded `cfg`: as [`new`](Snapshot::new), and the client limiters
    /// whose settings did not change are `prev`'s, counts and all.
    /// The certificates are loaded again; a file that cannot be keeps its old pair, and the
    /// problems are logged.
    pub fn reloaded(cfg: Config, registry: &Registry, prev: &Snapshot) -> Result<Snapshot, String> {
        // The pools' TLS to their upstreams is made again (its CA file, or the system's
        // store, read anew); the HTTPS certificates are loaded again only once the rest of
        // the file proved good, so that a refused reload changes nothing.
        let snap = Snapshot::carried(cfg, registry, prev)?;
        if let (Some(t), Some(spec)) = (&prev.tls, &snap.cfg.tls) {
            for problem in t.reload(spec) {
                log::warn!("TLS: {problem}");
            }
        }
        match (&prev.acme, &snap.cfg.acme) {
            (Some(a), Some(spec)) => a.update(spec),
            (None, Some(_)) => log::warn!("ACME: [acme] takes effect at the next start or upgrade"),
            (Some(_), None) => log::warn!(
                "ACME: [acme] was removed: the ordered certificates stay in service until the \
                 next start or upgrade"
            ),
            (None, None) => {}
        }
        Ok(snap)
    }

    /// The snapshot of the same configuration with the members its names resolve to now
    /// (the resolver thread, when an answer changed): only the pools are bound again; the
    /// TLS configurations (and their session caches), limiters and routes are `prev`'s, and
    /// it was loaded when `prev` was.
    pub fn rediscovered(registry: &Registry, prev: &Snapshot) -> Result<Snapshot, String> {
        let pools = bind_pools(&prev.cfg, &prev.names, registry, true)?;
        let mut snap = Snapshot {
            cfg: prev.cfg.clone(),
            pools,
            routes: prev.routes.clone(),
            loaded_unix_ms: prev.loaded_unix_ms,
            limiter: prev.limiter.clone(),
            pool_limiters: prev.pool_limiters.clone(),
            tls: prev.tls.clone(),
            acme: prev.acme.clone(),
            tls_server: prev.tls_server.clone(),
            hsts_line: prev.hsts_line.clone(),
            upstream_tls: prev.upstream_tls.clone(),
            names: Arc::clone(&prev.names),
            listed: Vec::new(),
        };
        snap.list();
        Ok(snap)
    }

    /// A snapshot of `cfg` that carries over from `prev` what a reload keeps: the TLS and
    /// ACME state, the names' table, the client limiters whose settings did not change.
    fn carried(cfg: Config, registry: &Registry, prev: &Snapshot) -> Result<Snapshot, String> {
        let mut snap = Snapshot::new(
            cfg,
            registry,
            prev.tls.clone(),
            prev.acme.clone(),
            Arc::clone(&prev.names),
            true,
        )?;
        let (old, new) = (&prev.cfg.client_limits, &snap.cfg.client_limits);
        if old == new {
            snap.limiter.clone_from(&prev.limiter);
        }
        for (i, pool) in snap.cfg.pools.iter().enumerate() {
            let same = prev.cfg.pools.iter().position(|p| {
                p.name == pool.name
                    && p.client_rate == pool.client_rate
                    && old.max_clients == new.max_clients
                    && old.shared == new.shared
            });
            if let Some(j) = same {
                snap.pool_limiters[i].clone_from(&prev.pool_limiters[j]);
            }
        }
        Ok(snap)
    }

    /// Every upstream of every pool, once each, with the first pool that lists it (whose
    /// health check it gets).
    pub fn upstreams(&self) -> Vec<(&'static UpstreamState, usize)> {
        let mut ids = std::collections::HashSet::new();
        let mut seen: Vec<(&'static UpstreamState, usize)> = Vec::new();
        for (p, pool) in self.pools.iter().enumerate() {
            for m in &pool.members {
                if ids.insert(m.state.id) {
                    seen.push((m.state, p));
                }
            }
        }
        seen
    }
}
