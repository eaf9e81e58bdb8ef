//! Least connections: the eligible member with the fewest requests in flight relative to its
//! (effective) weight. The in-flight counts are the members' shared atomics, so two workers see
//! the same counts, not one count per worker. Ties go in rotation from the pool's shared index,
//! so an idle pool still spreads its requests.

use super::member::effective_weight;
use super::pool::Pool;
use crate::upstream::Tried;
use std::sync::atomic::Ordering;

/// Pick among the members of tier `backups`.
pub fn pick(pool: &Pool, tried: &Tried, backups: bool, now_ms: u64) -> Option<usize> {
    let n = pool.members.len();
    if n == 0 {
        return None;
    }
    let start = pool.next.fetch_add(1, Ordering::Relaxed) % n;
    // (in flight, weight) of the best so far; a/b < c/d ⇔ a·d < c·b.
    let mut best: Option<(usize, u64, u64)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        if !pool.eligible(i, tried, backups) {
            continue;
        }
        let m = &pool.members[i];
        let load = u64::from(m.state.in_flight());
        let weight = effective_weight(m, pool.slow_start_ms, now_ms);
        let better = match best {
            None => true,
            Some((_, bl, bw)) => load * bw < bl * weight,
        };
        if better {
            best = Some((i, load, weight));
        }
    }
    best.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{picks, pool, spec};
    use crate::config::Strategy;

    #[test]
    fn the_least_loaded_member_wins_relative_to_weight() {
        let p = pool(&spec(Strategy::LeastConn, &[1, 1, 2]));
        let mut local = Vec::new();
        // Idle: ties rotate.
        assert_eq!(picks(&p, &mut local, 3), [0, 1, 2].map(Some));
        let _a = p.members[0].state.begin_request();
        let _b = p.members[1].state.begin_request();
        let _c = p.members[2].state.begin_request();
        // 1/1, 1/1, 1/2: the heavier one.
        assert_eq!(picks(&p, &mut local, 2), [2, 2].map(Some));
        let _d = p.members[2].state.begin_request();
        // 1/1, 1/1, 2/2: a tie of three, in rotation.
        let got = picks(&p, &mut local, 3);
        let mut sorted: Vec<_> = got.iter().flatten().copied().collect();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2]);
    }

    #[test]
    fn a_slow_member_gets_fewer_requests() {
        // Requests to member 0 stay in flight (slow); member 1's end at once (fast).
        let p = pool(&spec(Strategy::LeastConn, &[1, 1]));
        let mut local = Vec::new();
        let mut held = Vec::new();
        let mut counts = [0; 2];
        for _ in 0..100 {
            let i = picks(&p, &mut local, 1)[0].unwrap();
            counts[i] += 1;
            let guard = p.members[i].state.begin_request();
            if i == 0 {
                held.push(guard);
            }
        }
        assert!(counts[1] > 90, "{counts:?}");
    }
}
