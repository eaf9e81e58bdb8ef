//! A pool's retry budget, over counters that exist anyway: the requests its members were sent
//! (each worker's own counters, summed here), sampled once a second by worker 0's sweep. The
//! request path counts nothing for it; only a retry, and the sweep, take the pool's lock.

use super::pool::Pool;
use crate::upstream::RetryBudget;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;

/// The pool's budget, brought up to date with what its members were sent.
fn observed(pool: &Pool) -> (MutexGuard<'_, RetryBudget>, u64) {
    let counts = pool
        .members
        .iter()
        .map(|m| (m.state.id, m.state.requests()));
    let mut b = pool.shared.budget.lock().unwrap_or_else(|p| p.into_inner());
    let sent = b.observe(counts);
    (b, sent)
}

/// Worker 0's sweep, at second `sec`: note what the pool has sent by now.
pub fn sample(pool: &Pool, sec: u64) {
    let (mut b, sent) = observed(pool);
    b.sample(sec, sent);
}

/// May a request of `pool` be retried at second `sec`? Counted either way: a retry made, or
/// one refused (`goround_retries_refused_total`).
pub fn take_retry(pool: &Pool, sec: u64) -> bool {
    let (mut b, sent) = observed(pool);
    let allowed = b.take(sec, sent, pool.retry_budget);
    drop(b);
    if !allowed {
        pool.shared.retries_refused.fetch_add(1, Ordering::Relaxed);
    }
    allowed
}
