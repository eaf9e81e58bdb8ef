//! What the workers of one process share: the configuration snapshot, the upstreams' registry,
//! the counters, the shutdown flag and the reload bookkeeping.

use super::*;

/// What the workers share.
#[derive(Debug)]
pub struct Shared {
    /// Set by the signal thread: stop accepting, finish what is in flight, exit.
    pub shutdown: AtomicBool,
    /// Bumped when a new snapshot is published: a worker compares it once per loop turn (one
    /// relaxed load) and takes the lock only when it moved.
    pub generation: AtomicU64,
    /// The current snapshot.
    pub snapshot: Mutex<Arc<Snapshot>>,
    /// Each worker's client-side counters, by worker id (summed at a scrape).
    pub stats: Box<[WorkerStats]>,
    /// Every upstream and pool state (the admin listener lists them).
    pub registry: Registry,
    /// When the process started serving (Unix ms), for the status page.
    pub started_unix_ms: u64,
    /// Configuration reloads, for the metrics.
    pub reloads: Reloads,
    /// The access log's queue, when it is on.
    pub logger: Option<crate::access_log::Logger>,
    /// Listeners for a new `listen` address (a reload), one per worker, each taken by its
    /// worker with the snapshot published alongside.
    pub new_listeners: Mutex<Vec<Option<std::net::TcpListener>>>,
    /// Every upstream has had its first health check: part of being ready.
    pub checks_done: AtomicBool,
    /// The exchange of rate counts with Redis (`[client_limits] shared`), for the metrics.
    pub shared_limits: crate::shared_limits::Status,
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

impl Shared {
    /// Shared state for `workers` workers starting with `snap`, whose upstreams are in
    /// `registry`.
    pub fn new(
        snap: Arc<Snapshot>,
        registry: Registry,
        workers: usize,
        logger: Option<crate::access_log::Logger>,
    ) -> Self {
        Shared {
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            snapshot: Mutex::new(snap),
            stats: (0..workers.max(1))
                .map(|_| WorkerStats::default())
                .collect(),
            registry,
            started_unix_ms: crate::upstream::unix_ms(),
            reloads: Reloads {
                last_success_unix: AtomicU64::new(crate::upstream::unix_ms() / 1000),
                ..Reloads::default()
            },
            logger,
            new_listeners: Mutex::new(Vec::new()),
            checks_done: AtomicBool::new(false),
            shared_limits: crate::shared_limits::Status::default(),
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
        self.generation.fetch_add(1, Ordering::Release);
    }
}
