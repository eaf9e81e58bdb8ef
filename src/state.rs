//! What the whole process shares: the configuration snapshot, the upstreams' registry, the
//! counters, the shutdown flag and the reload bookkeeping. The workers, the admin listener, the
//! control plane and the shared-limits thread each hold it in an `Arc`.

use crate::access_log::Logger;
use crate::metrics::WorkerStats;
use crate::snapshot::Snapshot;
use crate::upstream::{unix_ms, Registry};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the workers (and the threads beside them) share.
#[derive(Debug)]
pub struct Shared {
    /// Set by the signal thread: stop accepting, finish what is in flight, exit.
    pub shutdown: AtomicBool,
    /// Bumped when a new snapshot is published: a worker compares it once per loop turn (one
    /// relaxed load) and takes the lock only when it moved.
    pub generation: AtomicU64,
    /// The current snapshot.
    pub snapshot: Mutex<Arc<Snapshot>>,
    /// Held from reading the snapshot in force to publishing the next one, by a reload and
    /// by the resolver thread: neither builds on a snapshot the other is replacing.
    pub publishing: Mutex<()>,
    /// Each worker's client-side counters, by worker id (summed at a scrape).
    pub stats: Box<[WorkerStats]>,
    /// Every upstream and pool state (the admin listener lists them).
    pub registry: Registry,
    /// When the process started serving (Unix ms), for the status page.
    pub started_unix_ms: u64,
    /// Configuration reloads, for the metrics.
    pub reloads: Reloads,
    /// The access log's queue, when it is on.
    pub logger: Option<Logger>,
    /// Listeners for a new `listen` address (a reload), one per worker, each taken by its
    /// worker with the snapshot published alongside.
    pub new_listeners: Mutex<Vec<Option<std::net::TcpListener>>>,
    /// Every upstream has had its first health check: part of being ready.
    pub checks_done: AtomicBool,
    /// The exchange of rate counts with Redis (`[client_limits] shared`), for the metrics.
    pub shared_limits: SharedLimitsStatus,
    /// The `[[tcp]]` listeners' addresses as bound at start (their counters are each worker's
    /// `stats[w].tcp[i]`; a reload keeps the set, see `control::reload`).
    pub tcp_listeners: Vec<std::net::SocketAddr>,
}

/// Counts of configuration reloads (SIGHUP).
#[derive(Debug, Default)]
pub struct Reloads {
    /// Reloads that swapped the configuration.
    pub ok: AtomicU64,
    /// Reloads refused (a bad file, a failed bind): nothing changed.
    pub error: AtomicU64,
    /// When the configuration was last loaded successfully, Unix seconds (the start counts).
    pub last_success_unix: AtomicU64,
}

/// What the metrics show of the exchange of rate counts with Redis (the shared-limits thread
/// writes it).
#[derive(Debug, Default)]
pub struct SharedLimitsStatus {
    /// Whether the last exchange (or connection attempt) succeeded.
    pub up: AtomicBool,
    /// Exchanges (script calls) that succeeded.
    pub syncs_ok: AtomicU64,
    /// Exchanges or connection attempts that failed.
    pub syncs_failed: AtomicU64,
    /// Client counts sent to Redis.
    pub clients_sent: AtomicU64,
}

impl Shared {
    /// Shared state for `workers` workers starting with `snap`, whose upstreams are in
    /// `registry`.
    pub fn new(
        snap: Arc<Snapshot>,
        registry: Registry,
        workers: usize,
        logger: Option<Logger>,
        tcp_listeners: Vec<std::net::SocketAddr>,
    ) -> Self {
        Shared {
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            snapshot: Mutex::new(snap),
            publishing: Mutex::new(()),
            stats: (0..workers.max(1))
                .map(|_| WorkerStats::new(tcp_listeners.len()))
                .collect(),
            registry,
            started_unix_ms: unix_ms(),
            reloads: Reloads {
                last_success_unix: AtomicU64::new(unix_ms() / 1000),
                ..Reloads::default()
            },
            logger,
            new_listeners: Mutex::new(Vec::new()),
            checks_done: AtomicBool::new(false),
            shared_limits: SharedLimitsStatus::default(),
            tcp_listeners,
        }
    }

    /// The current snapshot and its generation.
    pub fn current(&self) -> (Arc<Snapshot>, u64) {
        let snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        (Arc::clone(&snap), self.generation.load(Ordering::Acquire))
    }

    /// Publish `snap` to every worker (they pick it up at their next loop turn; wake them).
    pub fn publish(&self, snap: Arc<Snapshot>) {
        let mut cur = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        *cur = snap;
        let generation = self.generation.fetch_add(1, Ordering::Release) + 1;
        self.registry.published(generation);
    }
}
