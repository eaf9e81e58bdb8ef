//! SIGHUP: read the `--config` file again (with the command line the process started with),
//! validate it completely, and swap the snapshot every worker reads. A bad file, or a new
//! `listen` address that cannot be bound, changes nothing; the error is logged as
//! `PATH:LINE:COL: message` and counted.
//!
//! What a reload keeps: every upstream present before and after keeps its state (alive,
//! counters, in flight, idle connections: they hang on its address in the registry), the
//! client limiters whose settings did not change keep their counts, and no client connection
//! is closed. Requests in flight finish on the snapshot they started with. What needs a
//! restart or an upgrade (SIGUSR2): `workers`, `[admin]`, `[access_log]`, `[tls] listen` and
//! the descriptor budgets (`upstream_idle`, `max_connections`), whose change is logged as such.
//! Certificates are loaded again; one that cannot be keeps the pair loaded before.

use super::systemd;
use super::{lock, Control};
use crate::config::{self, Config, ConfigError};
use crate::snapshot::Snapshot;
use log::{error, info, warn};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Reload now (the signal thread calls this on SIGHUP).
pub fn reload(control: &Control) {
    let shared = &control.shared;
    // The resolver thread publishes too: one at a time, each over the other's snapshot.
    let _one_at_a_time = lock(&shared.publishing);
    let (old, _) = shared.current();
    let Some(path) = old.cfg.file.clone() else {
        warn!("SIGHUP: nothing to reload (started without --config)");
        return;
    };
    systemd::notify("RELOADING=1");
    let result = try_reload(control, &old);
    systemd::notify("READY=1");
    match result {
        Ok(summary) => {
            shared.reloads.ok.fetch_add(1, Ordering::Relaxed);
            shared
                .reloads
                .last_success_unix
                .store(crate::upstream::unix_ms() / 1000, Ordering::Relaxed);
            info!("configuration reloaded from {}: {summary}", path.display());
        }
        Err(e) => {
            shared.reloads.error.fetch_add(1, Ordering::Relaxed);
            error!("configuration not reloaded, nothing changed: {e}");
        }
    }
}

fn try_reload(control: &Control, old: &Snapshot) -> Result<String, String> {
    let mut cfg = match config::load_from(std::env::args_os()) {
        Ok(cfg) => cfg,
        Err(ConfigError::File(e)) | Err(ConfigError::Usage(e)) => return Err(e),
        Err(ConfigError::Help(_)) | Err(ConfigError::Checked { .. }) => {
            return Err("the command line asks for help or --check".to_string())
        }
    };
    keep_fixed_settings(&old.cfg, &mut cfg);
    for w in &cfg.warnings {
        warn!("{w}");
    }
    // A new address is bound before the old one is let go; if it cannot be, nothing changes.
    let new_listeners = if (cfg.listen, cfg.dual_stack) != (old.cfg.listen, old.cfg.dual_stack) {
        let bound = crate::listen::bind(cfg.listen, cfg.dual_stack, cfg.workers, cfg.backlog)
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        Some(bound)
    } else {
        None
    };
    if log_level_from_env().is_none() {
        log::set_max_level(cfg.log_level);
    }
    // Names new to this configuration are looked up before its snapshot is built.
    for w in crate::discovery::resolve_new(&cfg, &old.names) {
        warn!("{w}");
    }
    let snap = Snapshot::reloaded(cfg, &control.shared.registry, old)?;
    let summary = format!(
        "{} pools, {} upstreams, {} routes",
        snap.pools.len(),
        snap.upstreams().len(),
        snap.cfg.routes.len()
    );
    if let Some(bound) = new_listeners {
        let mut copies = Vec::with_capacity(bound.len());
        for l in &bound {
            copies.push(
                l.try_clone()
                    .map_err(|e| format!("cannot keep the listener: {e}"))?,
            );
        }
        let addr = bound.first().and_then(|l| l.local_addr().ok());
        *lock(&control.shared.new_listeners) = bound.into_iter().map(Some).collect();
        *lock(&control.listeners) = copies;
        if let Some(a) = addr {
            info!("listening on {a} (moved by a reload)");
        }
    }
    control.shared.publish(Arc::new(snap));
    control.wake_all();
    Ok(summary)
}

/// `RUST_LOG`, which wins over the configured level.
fn log_level_from_env() -> Option<String> {
    std::env::var("RUST_LOG").ok()
}

/// Settings a reload cannot change keep their running values (logged when the file changed
/// them).
fn keep_fixed_settings(old: &Config, new: &mut Config) {
    let note = |what: &str, changed: bool| {
        if changed {
            warn!(
                "reload: {what} changed; it takes effect at the next restart or upgrade (SIGUSR2)"
            );
        }
    };
    note("workers", old.workers != new.workers);
    note("[admin] listen", old.admin != new.admin);
    note("[access_log]", old.access_log != new.access_log);
    note(
        "upstream_idle",
        new.upstream_idle.is_some() && new.upstream_idle != old.upstream_idle,
    );
    note(
        "max_connections",
        new.max_connections.is_some() && new.max_connections != old.max_connections,
    );
    // The HTTPS listener's address (and whether there is one) is bound at start; its
    // certificates, versions, tickets and the rest follow the file.
    let tls_at = |c: &Config| c.tls.as_ref().map(|t| (t.listen, t.dual_stack));
    note("[tls] listen", tls_at(old) != tls_at(new));
    match (&old.tls, &mut new.tls) {
        (Some(o), Some(n)) => {
            n.listen = o.listen;
            n.dual_stack = o.dual_stack;
            n.bound = o.bound;
        }
        (o, n) => *n = o.clone(),
    }
    keep_tcp_listeners(old, new);
    new.workers = old.workers;
    new.admin = old.admin;
    new.access_log = old.access_log.clone();
    new.upstream_idle = old.upstream_idle;
    new.max_connections = old.max_connections;
    new.demo = old.demo;
}

/// The `[[tcp]]` listeners are bound at start: the new file's entries are matched to them by
/// address, so that entry `i` still describes listener `i` (pool, routes, timeouts follow the
/// file). An entry whose address was removed refuses new connections until a restart or an
/// upgrade; one at a new address starts listening then. Both are logged.
fn keep_tcp_listeners(old: &Config, new: &mut Config) {
    let at = |t: &config::TcpSpec| (t.listen, t.dual_stack);
    let mut kept = Vec::with_capacity(old.tcp.len());
    for o in &old.tcp {
        match new.tcp.iter().find(|n| at(n) == at(o)) {
            Some(n) => kept.push(n.clone()),
            None => {
                warn!(
                    "reload: [[tcp]] listen = \"{}\" was removed: it refuses new connections until the next restart or upgrade (SIGUSR2)",
                    o.listen
                );
                kept.push(config::TcpSpec {
                    target: config::TcpTarget::Sni(Vec::new()),
                    ..o.clone()
                });
            }
        }
    }
    for n in &new.tcp {
        if !old.tcp.iter().any(|o| at(o) == at(n)) {
            warn!(
                "reload: new [[tcp]] listen = \"{}\": it takes effect at the next restart or upgrade (SIGUSR2)",
                n.listen
            );
        }
    }
    new.tcp = kept;
}
