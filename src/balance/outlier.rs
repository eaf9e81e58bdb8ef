//! Passive outlier detection's one decision that needs the whole pool: may this member be
//! ejected without passing the pool's `max_ejected_percent`? The count of ejected members
//! and the ejection are one step under the pool's lock (ejections are rare; the request path
//! never takes it otherwise).

use super::pool::Pool;
use crate::upstream::Ejection;

/// Eject member `idx` of `pool` for `why` (`detail` for the log), unless that would eject
/// more than the pool's `max_ejected_percent` of its members (at least one may always go).
/// True when it was ejected now.
pub fn eject(pool: &Pool, idx: usize, why: Ejection, detail: &str) -> bool {
    let Some(member) = pool.members.get(idx) else {
        return false;
    };
    if member.state.is_ejected() {
        return false;
    }
    let _held = pool
        .shared
        .ejecting
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let ejected = pool.members.iter().filter(|m| m.state.is_ejected()).count();
    if ejected >= cap(pool.members.len(), pool.outlier.max_ejected_percent) {
        log::debug!(
            "upstream {} in pool {} not ejected ({detail}): {ejected} of {} are, max_ejected_percent = {}",
            member.name,
            pool.name,
            pool.members.len(),
            pool.outlier.max_ejected_percent
        );
        return false;
    }
    member.state.eject(&pool.name, why, detail, &pool.outlier)
}

/// A live connection or request to member `idx` of `pool` failed before any answer (`detail`
/// says how): counted, and the upstream ejected at the pool's `consecutive_failures` in a row.
#[cold]
pub fn count_failure(pool: &Pool, idx: usize, detail: &str) {
    let Some(member) = pool.members.get(idx) else {
        return;
    };
    let n = member.state.count_failure();
    let most = pool.outlier.consecutive_failures;
    if most > 0 && n >= most {
        let why = format!("{n} failures in a row, the last: {detail}");
        eject(pool, idx, Ejection::Failures, &why);
    }
}

/// How many of `members` may be ejected at once: `percent` of them, at least one.
pub fn cap(members: usize, percent: u32) -> usize {
    (members * percent as usize / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::tests::{pool, spec};
    use crate::config::Strategy;

    #[test]
    fn never_past_the_share_and_at_least_one() {
        assert_eq!(
            (cap(4, 50), cap(3, 50), cap(1, 0), cap(10, 100)),
            (2, 1, 1, 10)
        );
        let mut s = spec(Strategy::RoundRobin, &[1, 1, 1, 1]);
        s.outlier.max_ejected_percent = 50;
        let p = pool(&s);
        let ejected = (0..4)
            .filter(|&i| eject(&p, i, Ejection::Errors5xx, "test"))
            .count();
        assert_eq!(ejected, 2);
        assert_eq!(p.members.iter().filter(|m| m.state.is_alive()).count(), 2);
    }
}
