//! A pool ready to pick from: its members bound to their shared state, and what its strategy
//! precomputes.

use super::hash;
use super::member::Member;
use crate::config::{HashKey, Strategy};
use crate::upstream::{PoolShared, Tried};
use std::sync::atomic::AtomicUsize;

/// A pool ready to pick from: its members bound to their shared state, and what its strategy
/// precomputes.
#[derive(Debug)]
pub struct Pool {
    /// Its name, for logs and metrics.
    pub name: String,
    /// How an upstream is picked.
    pub strategy: Strategy,
    /// What `hash` hashes (`client_ip` for `ip_hash`).
    pub hash_key: Option<HashKey>,
    /// The members, in the order written.
    pub members: Vec<Member>,
    /// Most tries after the first for one request.
    pub retries: usize,
    /// Ramp-up time of an upstream that comes back, in ms (0: none).
    pub slow_start_ms: u64,
    /// Every member has the same weight: plain round robin needs no per-worker state.
    pub equal_weights: bool,
    /// Some member is a backup.
    pub has_backup: bool,
    /// Some member has a `max_conns`.
    pub capped: bool,
    /// Plain round robin over at most 64 members, no weights, backups, caps or slow start:
    /// the pick is one word of candidate bits ([`round_robin::plain`]).
    pub(super) plain: bool,
    /// The shared round-robin index (also the tie-breaker of `least_conn`).
    pub(crate) next: AtomicUsize,
    /// The hash ring of the non-backup members, and of the backups (hash strategies only).
    pub(crate) rings: Option<(hash::Ring, hash::Ring)>,
    /// What the workers share about this pool by name (counters, the `max_conns` queue).
    pub shared: &'static PoolShared,
    /// Passive outlier detection's settings.
    pub outlier: crate::config::OutlierSpec,
    /// Retries may add this share (percent) of the first tries.
    pub retry_budget: u32,
}

impl Pool {
    /// Whether member `i` may take this request, in the tier `backups`.
    #[inline]
    pub(super) fn eligible(&self, i: usize, tried: &Tried, backups: bool) -> bool {
        let m = &self.members[i];
        m.backup == backups
            && m.state.is_alive()
            && !tried.contains(i)
            && m.state.in_flight() < m.max_conns
    }
}
