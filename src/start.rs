//! Start-up: signals, inherited or new listening sockets, the budgets derived from the
//! open-files limit, the shared state, the admin listener, the workers, the signal and
//! shared-limits threads; then readiness, and the wait for the workers to finish.

use crate::{
    access_log, admin, config, control, discovery, listen, shared_limits, snapshot, state,
    upstream, worker,
};
use log::{error, info, warn};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Start the workers on `cfg` and run until a graceful stop (SIGINT, SIGTERM, or a finished
/// upgrade) ends. Returns an error message for a start-up failure (the caller exits non-zero).
pub fn run(mut cfg: config::Config) -> Result<(), String> {
    // Before anything can report "listening": a signal from then on must find our handler,
    // not the default action.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP, SIGUSR2])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let ready_pipe = control::upgrade::claim_ready_pipe();
    let nofile = listen::raise_nofile_limit();
    // Sockets handed over by systemd or by the process we upgrade: they serve at once.
    let inherited = control::systemd::inherited();
    let (inherited_admin, inherited): (Vec<_>, Vec<_>) =
        inherited.into_iter().partition(|s| s.name == "admin");
    let (inherited_https, inherited): (Vec<_>, Vec<_>) =
        inherited.into_iter().partition(|s| s.name == "https");
    let (inherited_tcp, inherited_http): (Vec<_>, Vec<_>) =
        inherited.into_iter().partition(|s| is_tcp_name(&s.name));
    let workers = cfg.workers.max(1).max(inherited_http.len());
    cfg.workers = workers;
    // One budget of idle upstream connections for every upstream and worker (nginx's
    // `keepalive`): a tenth of the descriptors by default, so that adding upstreams or workers
    // does not take descriptors from clients. Clients get what is left, two descriptors each.
    let max_idle = config::default_idle_budget(nofile);
    let idle = match cfg.upstream_idle {
        Some(n) if n > max_idle && cfg.max_connections.is_none() => {
            warn!(
                "--upstream-idle {n} would leave clients under 90 % of the {nofile} open files: \
                 keeping {max_idle} idle connections"
            );
            max_idle
        }
        Some(n) => n,
        None => max_idle,
    };
    cfg.upstream_idle = Some(idle);
    let max_connections = cfg
        .max_connections
        .unwrap_or_else(|| config::default_max_connections(nofile, idle, workers));
    cfg.max_connections = Some(max_connections);
    let listeners = if inherited_http.is_empty() {
        listen::bind(cfg.listen, cfg.dual_stack, workers, cfg.backlog)
            .map_err(|e| format!("cannot listen: {e}"))?
    } else {
        // As many as there are workers: a worker without a socket of its own polls a copy.
        let given: Vec<std::net::TcpListener> =
            inherited_http.into_iter().map(|s| s.listener).collect();
        let mut all = Vec::with_capacity(workers);
        for i in 0..workers {
            let copy = given[i % given.len()]
                .try_clone()
                .map_err(|e| format!("cannot use an inherited socket: {e}"))?;
            all.push(copy);
        }
        info!("serving on {} inherited listening socket(s)", given.len());
        all
    };
    let local = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .ok_or("cannot listen: no listener")?;
    let copies = listeners
        .iter()
        .map(|l| l.try_clone())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot keep the listeners: {e}"))?;
    // The HTTPS listeners, the same way: handed over, or bound here.
    let tls_listeners: Vec<std::net::TcpListener> = match &cfg.tls {
        None => Vec::new(),
        Some(_) if !inherited_https.is_empty() => {
            let given: Vec<std::net::TcpListener> =
                inherited_https.into_iter().map(|s| s.listener).collect();
            let mut all = Vec::with_capacity(workers);
            for i in 0..workers {
                all.push(
                    given[i % given.len()]
                        .try_clone()
                        .map_err(|e| format!("cannot use an inherited socket: {e}"))?,
                );
            }
            all
        }
        Some(t) => listen::bind(t.listen, t.dual_stack, workers, cfg.backlog)
            .map_err(|e| format!("cannot listen on {} (HTTPS): {e}", t.listen))?,
    };
    let tls_local = tls_listeners.first().and_then(|l| l.local_addr().ok());
    if let Some(spec) = cfg.tls.as_mut() {
        spec.bound = tls_local;
    }
    let tls_copies = tls_listeners
        .iter()
        .map(|l| l.try_clone())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot keep the listeners: {e}"))?;
    // The TCP listeners, per `[[tcp]]` entry one per worker: handed over, or bound here.
    let tcp_listeners = tcp_listeners(&cfg, inherited_tcp, workers)?;
    let tcp_bound: Vec<std::net::SocketAddr> = tcp_listeners
        .iter()
        .zip(&cfg.tcp)
        .map(|(ls, t)| {
            ls.first()
                .and_then(|l| l.local_addr().ok())
                .unwrap_or(t.listen)
        })
        .collect();
    let mut tcp_copies = Vec::new();
    for (i, ls) in tcp_listeners.iter().enumerate() {
        for l in ls {
            let copy = l
                .try_clone()
                .map_err(|e| format!("cannot keep the listeners: {e}"))?;
            tcp_copies.push((i, copy));
        }
    }
    // Each worker polls one socket of each.
    let mut tcp_per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    for ls in tcp_listeners {
        for (w, l) in ls.into_iter().enumerate() {
            if let Some(v) = tcp_per_worker.get_mut(w) {
                v.push(l);
            }
        }
    }
    let reopen_log = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let logger = match &cfg.access_log {
        Some(spec) => Some(
            access_log::start(spec, Arc::clone(&reopen_log))
                .map_err(|e| format!("cannot open the access log: {e}"))?,
        ),
        None => None,
    };
    let admin = cfg.admin;
    let demo = cfg.demo;
    let registry = upstream::Registry::new(workers);
    let tls = match &cfg.tls {
        Some(spec) => Some(crate::tls::Tls::start(
            spec,
            &cfg.routed_hosts(),
            control::upgrade::claim_ticket_keys().as_deref(),
        )?),
        None => None,
    };
    let acme = match (&cfg.acme, &tls) {
        (Some(spec), Some(t)) => Some(crate::acme::Acme::start(spec, Arc::clone(t))?),
        _ => None,
    };
    // Every name is looked up once before the first snapshot; one that does not resolve
    // leaves its pool without its members until it does.
    let names = Arc::new(crate::dns::Names::default());
    for w in discovery::resolve_new(&cfg, &names) {
        warn!("{w}");
    }
    let snap = Arc::new(snapshot::Snapshot::new(
        cfg, &registry, tls, acme, names, false,
    )?);
    let (pools, upstreams) = (snap.pools.len(), snap.upstreams().len());
    let shared = Arc::new(state::Shared::new(
        snap,
        registry,
        workers,
        logger,
        tcp_bound.clone(),
    ));
    let admin_copy = match (inherited_admin.into_iter().next(), admin) {
        (Some(given), _) => Some(given.listener),
        (None, Some(addr)) => Some(
            listen::plain_listener(addr, false, 128)
                .map_err(|e| format!("cannot start the admin listener on {addr}: {e}"))?,
        ),
        (None, None) => None,
    };
    let admin_copy = match admin_copy {
        Some(l) => {
            let copy = l
                .try_clone()
                .map_err(|e| format!("cannot keep the admin listener: {e}"))?;
            let bound = admin::serve(l, Arc::clone(&shared))
                .map_err(|e| format!("cannot start the admin listener: {e}"))?;
            info!("admin pages on http://{bound}/ (metrics: /metrics, JSON: /status)");
            if demo {
                println!("status page: http://{bound}/");
            }
            Some(copy)
        }
        None => None,
    };

    let mut wakers = Vec::with_capacity(workers);
    let mut ready = Vec::with_capacity(workers);
    let mut tls_listeners = tls_listeners.into_iter();
    let mut tcp_per_worker = tcp_per_worker.into_iter();
    for (id, l) in listeners.into_iter().enumerate() {
        let tcp = tcp_per_worker.next().unwrap_or_default();
        let (w, waker) = worker::Worker::new(id, l, tls_listeners.next(), tcp, Arc::clone(&shared))
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        wakers.push(waker);
        ready.push(w);
    }
    // Every worker's waker, for the signal thread and for the wake-ups of queued requests
    // (installed before any worker runs).
    let wakers = Arc::new(wakers);
    upstream::install_mailboxes(Arc::clone(&wakers));
    let mut handles = Vec::with_capacity(workers);
    for (id, w) in ready.into_iter().enumerate() {
        let h = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || worker::report(id, w.run()))
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        handles.push(h);
    }
    if let Some(a) = tls_local {
        info!("HTTPS on {a}");
    }
    for a in &tcp_bound {
        info!("TCP on {a}");
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    info!(
        "listening on {local} ({workers} worker{}, {upstreams} upstream{} in {pools} pool{}, at most {max_connections} connections)",
        plural(workers),
        plural(upstreams),
        plural(pools),
    );

    let control = Arc::new(control::Control {
        shared: Arc::clone(&shared),
        wakers,
        listeners: std::sync::Mutex::new(copies),
        tls_listeners: std::sync::Mutex::new(tls_copies),
        tcp_listeners: std::sync::Mutex::new(tcp_copies),
        admin: std::sync::Mutex::new(admin_copy),
        reopen_log,
        upgrading: std::sync::atomic::AtomicBool::new(false),
    });
    let signal_control = Arc::clone(&control);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || signal_control.run_signals(signals))
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    shared_limits::spawn(Arc::clone(&shared))
        .map_err(|e| format!("cannot start the shared-limits thread: {e}"))?;
    discovery::spawn(Arc::clone(&shared), Arc::clone(&control.wakers))
        .map_err(|e| format!("cannot start the resolver thread: {e}"))?;
    if shared.current().0.tls.is_some() {
        watch_certificates(Arc::clone(&shared))
            .map_err(|e| format!("cannot start the certificate watcher: {e}"))?;
    }

    // Ready once the listeners are polled (the workers run) and every upstream has had its
    // first health check, so that an upgraded process starts with a true view of them.
    let checks_by = std::time::Instant::now()
        + shared
            .current()
            .0
            .cfg
            .pools
            .iter()
            .map(|p| p.health.timeout)
            .max()
            .unwrap_or_default()
        + std::time::Duration::from_secs(1);
    while !shared.checks_done.load(Ordering::Acquire) && std::time::Instant::now() < checks_by {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    control::upgrade::announce_ready(ready_pipe);
    info!("ready");

    let mut failed = false;
    for h in handles {
        if h.join().is_err() {
            error!("a worker panicked");
            failed = true;
        }
    }
    // The workers handed their last lines over as they finished: in the file before we exit.
    if let Some(logger) = &shared.logger {
        logger.drain(std::time::Duration::from_secs(2));
    }
    if failed {
        return Err("a worker failed".into());
    }
    info!("shutdown complete");
    Ok(())
}

/// The `[[tcp]]` listeners, `workers` sockets each: taken from `inherited` (named `tcpN` by
/// the process that handed them over; matched by entry and port, so that an edited file keeps
/// the sockets of the addresses it still lists), or bound here.
fn tcp_listeners(
    cfg: &config::Config,
    inherited: Vec<control::systemd::Inherited>,
    workers: usize,
) -> Result<Vec<Vec<std::net::TcpListener>>, String> {
    // Handed-over sockets by name, in order.
    let mut groups: Vec<(String, Vec<std::net::TcpListener>)> = Vec::new();
    for s in inherited {
        match groups.iter_mut().find(|(n, _)| *n == s.name) {
            Some((_, v)) => v.push(s.listener),
            None => groups.push((s.name, vec![s.listener])),
        }
    }
    let addr_of = |v: &[std::net::TcpListener]| v.first().and_then(|l| l.local_addr().ok());
    let mut all = Vec::with_capacity(cfg.tcp.len());
    for (i, t) in cfg.tcp.iter().enumerate() {
        // The socket bound for this entry: its very address (with the port the kernel chose
        // for port 0, under the name the entry had).
        let fits = |v: &[std::net::TcpListener]| {
            addr_of(v).is_some_and(|a| {
                let same_ip = a.ip() == t.listen.ip()
                    || (a.ip().is_unspecified() && t.listen.ip().is_unspecified());
                same_ip && (t.listen.port() == 0 || a.port() == t.listen.port())
            })
        };
        let by_name = groups
            .iter()
            .position(|(n, v)| *n == format!("tcp{i}") && fits(v));
        let by_addr = || {
            groups
                .iter()
                .position(|(_, v)| t.listen.port() != 0 && fits(v))
        };
        match by_name.or_else(by_addr) {
            Some(g) => {
                let (_, given) = groups.swap_remove(g);
                let mut copies = Vec::with_capacity(workers);
                for w in 0..workers {
                    copies.push(
                        given[w % given.len()]
                            .try_clone()
                            .map_err(|e| format!("cannot use an inherited socket: {e}"))?,
                    );
                }
                all.push(copies);
            }
            None => all.push(
                listen::bind(t.listen, t.dual_stack, workers, cfg.backlog)
                    .map_err(|e| format!("cannot listen on {} (TCP): {e}", t.listen))?,
            ),
        }
    }
    for (name, v) in groups {
        if let Some(a) = v.first().and_then(|l| l.local_addr().ok()) {
            info!("inherited socket {name} on {a}: no [[tcp]] listener lists it any more, closed");
        }
    }
    Ok(all)
}

/// Whether an inherited socket's name is one a TCP listener was handed over under (`tcpN`).
fn is_tcp_name(name: &str) -> bool {
    name.strip_prefix("tcp")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `--check`'s look at what the configuration names outside itself: the certificate and key
/// files load, and every upstream name resolves. Warnings come back; the first error stops.
pub fn check_files(cfg: &config::Config) -> Result<Vec<String>, String> {
    let warnings = crate::tls::check_files(cfg)?;
    discovery::check_names(cfg)?;
    Ok(warnings)
}

/// How often the certificate files are looked at: a renewal on disk (certbot, cert-manager)
/// is served within this, with no signal.
const CERT_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// A thread that reloads the HTTPS listener's certificates when a file of theirs changes on
/// disk. New handshakes get the new ones; those in flight keep theirs.
fn watch_certificates(shared: Arc<state::Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cert-watch".into())
        .spawn(move || loop {
            std::thread::sleep(CERT_WATCH_EVERY);
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let Some(tls) = shared.current().0.tls.clone() else {
                return;
            };
            if let Some(problems) = tls.reload_if_changed() {
                if problems.is_empty() {
                    info!("TLS: a certificate file changed on disk: reloaded");
                }
                for p in problems {
                    warn!("TLS: {p}");
                }
            }
        })
        .map(|_| ())
}
