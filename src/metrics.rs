//! Counters and histograms, always on: each worker writes its own (a plain load and store, no
//! locked instruction, no shared cache line), and a scrape sums them.
//!
//! - [`WorkerStats`]: one per worker: client connections, requests, bytes, the proxy's own
//!   answers by status, access-log lines dropped.
//! - [`UpstreamShard`]: one per upstream per worker: requests, responses by class, the
//!   response-time histogram (request sent → response head received).
//!
//! Shared state that several workers change (alive flags, requests in flight) stays in the
//! upstream's atomics; it is read, not summed.

use std::sync::atomic::{AtomicU64, Ordering};

/// A counter written by one thread only (its worker) and read by any (the admin thread).
///
/// `add` is a load and a store, not a read-modify-write: with one writer nothing is lost, and
/// it costs what a plain increment does.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Add `n` (from the owning thread only).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Back to 0 (a state reused for another upstream, when nothing writes to it).
    #[inline]
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// Subtract `n` (a gauge, from the owning thread only).
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
    }

    /// The value now.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The statuses the proxy answers itself, in the order of [`WorkerStats::local`]: every one
/// it can make, and no other (a series that can never move would say something untrue).
pub const LOCAL_CODES: [u16; 15] = [
    200, 308, 400, 404, 405, 408, 414, 421, 429, 431, 501, 502, 503, 504, 505,
];

/// One worker's client-side counters.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Client connections open now (a gauge: +1 at accept, -1 at close).
    pub open: Counter,
    /// Client connections accepted.
    pub accepted: Counter,
    /// Requests received (complete heads, good or bad).
    pub requests: Counter,
    /// Bytes read from clients.
    pub bytes_received: Counter,
    /// Bytes written to clients.
    pub bytes_sent: Counter,
    /// Answers the proxy made itself, by [`LOCAL_CODES`] index.
    pub local: [Counter; LOCAL_CODES.len()],
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// TLS handshakes that completed.
    pub tls_ok: Counter,
    /// TLS handshakes that failed, by `tls::HandshakeFailure::ALL` index.
    pub tls_failed: [Counter; 7],
    /// Completed handshakes that resumed a session (a ticket).
    pub tls_resumed: Counter,
    /// Handshake times, accept → done: counts per bucket of [`TLS_BUCKETS_US`], and beyond.
    pub tls_buckets: [Counter; TLS_BUCKETS_US.len() + 1],
    /// Sum of the handshake times, µs.
    pub tls_sum_us: Counter,
    /// Per `[[tcp]]` listener, in the order they were bound at start.
    pub tcp: Box<[TcpCounters]>,
}

impl WorkerStats {
    /// A worker's counters, with room for `tcp_listeners` TCP listeners.
    pub fn new(tcp_listeners: usize) -> WorkerStats {
        WorkerStats {
            tcp: (0..tcp_listeners).map(|_| TcpCounters::default()).collect(),
            ..WorkerStats::default()
        }
    }
}

/// One TCP listener's counters in one worker.
#[derive(Debug, Default)]
pub struct TcpCounters {
    /// Connections open now (a gauge: +1 at accept, -1 at close).
    pub open: Counter,
    /// Connections accepted.
    pub accepted: Counter,
    /// Bytes read from its clients (`direction="in"`).
    pub bytes_in: Counter,
    /// Bytes written to its clients (`direction="out"`).
    pub bytes_out: Counter,
}

/// The handshake-time histogram's bucket bounds, µs (a handshake on a LAN takes a few ms at
/// most, one over the internet a round trip or two more).
pub const TLS_BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000,
];

impl WorkerStats {
    /// Count a completed TLS handshake that took `us` µs.
    pub fn tls_handshake(&self, us: u64, resumed: bool) {
        self.tls_ok.add(1);
        if resumed {
            self.tls_resumed.add(1);
        }
        self.tls_buckets[TLS_BUCKETS_US.partition_point(|&b| b < us)].add(1);
        self.tls_sum_us.add(us);
    }

    /// Count a failed TLS handshake.
    pub fn tls_handshake_failed(&self, why: crate::tls::HandshakeFailure) {
        if let Some(i) = crate::tls::HandshakeFailure::ALL
            .iter()
            .position(|&w| w == why)
        {
            self.tls_failed[i].add(1);
        }
    }

    /// Count an answer the proxy made itself with `code` (one of [`LOCAL_CODES`]).
    #[inline]
    pub fn count_local(&self, code: u16) {
        let at = LOCAL_CODES.iter().position(|&c| c == code);
        debug_assert!(at.is_some(), "{code} is not in LOCAL_CODES");
        if let Some(c) = at.and_then(|i| self.local.get(i)) {
            c.add(1);
        }
    }
}

/// Upper bounds of the response-time histogram, in microseconds: 1 ms … 10 s.
pub const BUCKETS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// One upstream's counters kept by one worker.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct UpstreamShard {
    /// Requests sent (or about to be sent).
    pub requests: Counter,
    /// Final responses received, by class: 1xx (a 101), 2xx, 3xx, 4xx, 5xx.
    pub responses: [Counter; 5],
    /// Response times: counts per bucket of [`BUCKETS_US`] (not cumulative), and beyond.
    pub buckets: [Counter; BUCKETS_US.len() + 1],
    /// Sum of the response times, in microseconds.
    pub sum_us: Counter,
    /// Responses 502, 503 and 504 (counted apart from the request path's own counting, only
    /// when one comes: outlier detection tells them from the other heads).
    pub gateway_errors: Counter,
}

impl UpstreamShard {
    /// Every count back to 0.
    pub fn reset(&self) {
        self.requests.reset();
        self.sum_us.reset();
        self.gateway_errors.reset();
        for c in self.responses.iter().chain(self.buckets.iter()) {
            c.reset();
        }
    }

    /// Count a final response with status `code` that took `us` microseconds from the request
    /// being sent to its head being received.
    #[inline]
    pub fn response(&self, code: u16, us: u64) {
        let class = usize::from(code / 100).clamp(1, 5) - 1;
        self.responses[class].add(1);
        let bucket = BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[bucket].add(1);
        self.sum_us.add(us);
    }
}

/// A histogram summed over shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Counts per bucket of [`BUCKETS_US`], and beyond (not cumulative).
    pub buckets: [u64; BUCKETS_US.len() + 1],
    /// Sum of the observations, µs.
    pub sum_us: u64,
}

impl Histogram {
    /// Add a shard's histogram.
    pub fn add(&mut self, s: &UpstreamShard) {
        for (b, c) in self.buckets.iter_mut().zip(&s.buckets) {
            *b += c.get();
        }
        self.sum_us += s.sum_us.get();
    }

    /// What was observed after `before` was read (an earlier reading of the same counters).
    pub fn since(&self, before: &Histogram) -> Histogram {
        let mut h = self.clone();
        for (b, was) in h.buckets.iter_mut().zip(&before.buckets) {
            *b = b.saturating_sub(*was);
        }
        h.sum_us = h.sum_us.saturating_sub(before.sum_us);
        h
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `q` quantile (0–1) in milliseconds, interpolated linearly inside its bucket (as
    /// Prometheus's `histogram_quantile` does); `None` without observations. Beyond the last
    /// bound it answers that bound.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BUCKETS_US[i - 1] };
                let Some(&hi) = BUCKETS_US.get(i) else {
                    return Some(lo as f64 / 1000.0);
                };
                let within = (rank - below as f64) / n as f64;
                return Some((lo as f64 + within * (hi - lo) as f64) / 1000.0);
            }
            below += n;
        }
        Some(BUCKETS_US[BUCKETS_US.len() - 1] as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_gauges_go_both_ways() {
        let c = Counter::default();
        c.add(3);
        c.sub(1);
        assert_eq!(c.get(), 2);
        let w = WorkerStats::default();
        w.count_local(429);
        w.count_local(505);
        let counts: Vec<u64> = w.local.iter().map(Counter::get).collect();
        assert_eq!(counts, [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn responses_land_in_their_class_and_bucket() {
        let s = UpstreamShard::default();
        s.response(200, 500);
        s.response(204, 1_000);
        s.response(503, 1_001);
        s.response(101, 20_000_000);
        assert_eq!(
            s.responses.iter().map(Counter::get).collect::<Vec<_>>(),
            [1, 2, 0, 0, 1]
        );
        assert_eq!(s.buckets[0].get(), 2, "≤ 1 ms, the bound included");
        assert_eq!(s.buckets[1].get(), 1);
        assert_eq!(s.buckets[13].get(), 1, "beyond 10 s");
        assert_eq!(s.sum_us.get(), 20_002_501);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        let s = UpstreamShard::default();
        for _ in 0..100 {
            s.response(200, 3_000); // the 2.5–5 ms bucket
        }
        h.add(&s);
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_ms(0.5), Some(3.75));
        assert_eq!(h.quantile_ms(0.99), Some(4.975));
        for _ in 0..100 {
            s.response(200, 30_000_000);
        }
        let mut h = Histogram::default();
        h.add(&s);
        assert_eq!(h.quantile_ms(0.99), Some(10_000.0), "beyond the last bound");
    }
}
