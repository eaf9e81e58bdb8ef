//! The defaults of the settings that have one, and those derived from the open-files limit.

use std::time::Duration;

/// The ports `--demo` starts `goround-dummy` children on (on 127.0.0.1); they are the upstreams
/// when no `--upstream` is given.
pub const DEMO_PORTS: [u16; 3] = [8081, 8082, 8083];

/// Default `--splice-min` for request bodies and tunnels: below about 128 KiB splicing an upload
/// saves nothing measurable; from 256 KiB it costs 7–28 % less CPU than copying, 56 % at 64 MiB.
pub const SPLICE_MIN: usize = 128 * 1024;

/// Default `--splice-min` for response bodies (the part not yet read when the span would begin:
/// a response's first read takes up to 64 KiB with its head). With nginx backends, the proxy
/// pinned to its own core and 16 keep-alive clients (`benches/splice_sizes.py`, 2026-12-07,
/// spans acknowledged at once, medians of 3-4 rounds, three runs), a spliced response cost as
/// much proxy CPU as a copied one at 128 and 192 KiB (1.04×, 0.97×) and less from 256 KiB
/// (0.62×, 0.71×, 0.82×; 0.78-0.80× at 512 KiB), the cheaper in every round at 256 KiB; so
/// from 192 KiB still to read, which a 256 KiB response has. (Before its spans were
/// acknowledged at once, 256 KiB had measured 0.89-1.0× and the default was 384 KiB; an older kernel on
/// other hardware had put the crossover near 1.5 MiB.)
pub const SPLICE_MIN_RESPONSE: usize = 192 * 1024;

/// Descriptors kept aside from the client and upstream budgets: listeners, epoll, wakers,
/// health probes, logs.
pub const RESERVED_FDS: usize = 64;

/// Most idle upstream connections kept by default, whatever the open-files limit: past a few
/// thousand, idle connections only hold descriptors and the upstreams' memory.
pub const MAX_DEFAULT_IDLE: usize = 8192;

/// The name of the pool the `--upstream` flags form.
pub const DEFAULT_POOL: &str = "default";

/// Most retries a pool makes by default after the first try.
pub const DEFAULT_RETRIES: usize = 2;

/// The default idle-connection budget for an open-files limit of `nofile`: a tenth of the
/// descriptors, so that clients keep at least 90 % of what they could have without pooling.
pub fn default_idle_budget(nofile: usize) -> usize {
    // A tenth of what two-descriptor clients could have, in whole pairs: clients then keep at
    // least 90 % of their connections, rounding included.
    (nofile.saturating_sub(RESERVED_FDS) / 2 / 10 * 2).min(MAX_DEFAULT_IDLE)
}

/// The client-connection limit derived from the open-files limit: each connection may hold two
/// descriptors (client and upstream) besides the idle pool's `idle`.
pub fn default_max_connections(nofile: usize, idle: usize, workers: usize) -> usize {
    (nofile.saturating_sub(RESERVED_FDS + idle) / 2).max(workers)
}

/// The port `--demo` serves the admin pages on (127.0.0.1).
pub const DEMO_ADMIN_PORT: u16 = 8404;

/// The default bound of the client table.
pub const MAX_CLIENTS: usize = 100_000;

/// Default `queue_timeout` of a pool.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Tries after the first by default: the number of other upstreams, at most
/// [`DEFAULT_RETRIES`].
pub fn default_retries(upstreams: usize) -> usize {
    upstreams.saturating_sub(1).min(DEFAULT_RETRIES)
}

/// `[dns] interval`: the floor between two lookups of a name.
pub const DNS_INTERVAL: Duration = Duration::from_secs(5);

/// `[dns] timeout`: how long one query may take.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// `[pools.NAME.outlier]` when not written: Envoy's defaults, 5xx counting off.
pub const OUTLIER: crate::config::OutlierSpec = crate::config::OutlierSpec {
    consecutive_failures: 5,
    consecutive_5xx: 0,
    ejection: Duration::from_secs(30),
    max_ejection: Duration::from_secs(300),
    max_ejected_percent: 50,
};

/// `retry_budget` when not written, in percent of the first tries.
pub const RETRY_BUDGET: u32 = 20;

/// Retries allowed per second whatever the budget: a pool with little traffic can still
/// retry.
pub const RETRY_BUDGET_FLOOR: u64 = 3;

/// The window a retry budget is counted over, in seconds.
pub const RETRY_BUDGET_WINDOW_S: u64 = 10;
