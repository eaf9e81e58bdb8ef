//! Round robin. With equal weights, the shared atomic index over the eligible members: one
//! `fetch_add` per pick, the k-th eligible member for `k = index % eligible`, so a member that
//! is down does not hand its share to its successor. With different weights, or while a member
//! ramps up (slow start), nginx's smooth weighted round robin, per worker: weights 5:1:1 give
//! a a b a c a a, never five a's in a row.

use super::member::effective_weight;
use super::pool::Pool;
use crate::upstream::Tried;
use std::sync::atomic::Ordering;

/// Pick among the members of tier `backups`.
pub fn pick(
    pool: &Pool,
    tried: &Tried,
    backups: bool,
    current: &mut [i64],
    now_ms: u64,
) -> Option<usize> {
    let ramping = pool.slow_start_ms > 0
        && pool.members.iter().any(|m| {
            m.state.up_since_ms() != 0
                && now_ms.saturating_sub(m.state.up_since_ms()) < pool.slow_start_ms
        });
    if (pool.equal_weights && !ramping) || current.len() != pool.members.len() {
        equal(pool, tried, backups)
    } else {
        smooth(pool, tried, backups, current, now_ms)
    }
}

/// The common case in one pass (at most 64 members, all eligible when alive and untried): the
/// candidates as bits of one word, the k-th lowest picked.
#[inline]
pub fn plain(pool: &Pool, tried: &Tried) -> Option<usize> {
    let n = pool.next.fetch_add(1, Ordering::Relaxed);
    let mut candidates = 0u64;
    for (i, m) in pool.members.iter().enumerate() {
        candidates |= u64::from(m.state.is_alive()) << i;
    }
    candidates &= !tried.first_word();
    let count = candidates.count_ones() as usize;
    if count == 0 {
        return None;
    }
    // Clear the k lowest candidates; the lowest left is the k-th.
    for _ in 0..n % count {
        candidates &= candidates - 1;
    }
    Some(candidates.trailing_zeros() as usize)
}

/// The atomic index over the eligible members.
fn equal(pool: &Pool, tried: &Tried, backups: bool) -> Option<usize> {
    let n = pool.next.fetch_add(1, Ordering::Relaxed);
    let members = &pool.members;
    if members.len() <= 64 && !pool.has_backup && !pool.capped {
        // The common case in one pass: the eligible members as bits of one word.
        let mut candidates = 0u64;
        for (i, m) in members.iter().enumerate() {
            if m.state.is_alive() {
                candidates |= 1 << i;
            }
        }
        candidates &= !tried.first_word();
        let count = candidates.count_ones() as usize;
        if count == 0 {
            return None;
        }
        // Clear the k lowest candidates; the lowest left is the k-th.
        for _ in 0..n % count {
            candidates &= candidates - 1;
        }
        return Some(candidates.trailing_zeros() as usize);
    }
    let eligible = |i: usize| pool.eligible(i, tried, backups);
    let count = (0..members.len()).filter(|&i| eligible(i)).count();
    if count == 0 {
        return None;
    }
    let k = n % count;
    // A flag may flip between the two passes; then the k-th candidate may be missing, and
    // the last candidate seen is as good an answer as any (it was eligible a moment ago).
    let mut last = None;
    for (seen, i) in (0..members.len()).filter(|&i| eligible(i)).enumerate() {
        if seen == k {
            return Some(i);
        }
        last = Some(i);
    }
    last
}

/// Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): every eligible member
/// gains its effective weight; the one with the most is picked and pays back the total.
fn smooth(
    pool: &Pool,
    tried: &Tried,
    backups: bool,
    current: &mut [i64],
    now_ms: u64,
) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut total: i64 = 0;
    for (i, m) in pool.members.iter().enumerate() {
        if !pool.eligible(i, tried, backups) {
            continue;
        }
        let w = effective_weight(m, pool.slow_start_ms, now_ms) as i64;
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{picks, pool, spec};
    use super::super::Choice;
    use crate::config::Strategy;
    use crate::upstream::{ChangedBy, Tried};

    #[test]
    fn equal_weights_rotate_over_the_alive_members() {
        let p = pool(&spec(Strategy::RoundRobin, &[1, 1, 1]));
        let mut local = Vec::new();
        assert_eq!(picks(&p, &mut local, 7), [0, 1, 2, 0, 1, 2, 0].map(Some));
        p.members[1].state.mark_down("p", "x", ChangedBy::Request);
        // No double share for the successor of the member that is down (the index is at 7).
        assert_eq!(picks(&p, &mut local, 6), [2, 0, 2, 0, 2, 0].map(Some));
    }

    #[test]
    fn weights_five_one_one_interleave() {
        let p = pool(&spec(Strategy::RoundRobin, &[5, 1, 1]));
        let mut local = Vec::new();
        assert_eq!(
            picks(&p, &mut local, 7),
            [0, 0, 1, 0, 2, 0, 0].map(Some),
            "nginx's smooth order: a a b a c a a"
        );
    }

    #[test]
    fn weighted_shares_hold_within_two_percent_over_700_requests() {
        let p = pool(&spec(Strategy::RoundRobin, &[5, 1, 1]));
        let mut local = Vec::new();
        let mut counts = [0usize; 3];
        for i in picks(&p, &mut local, 700).into_iter().flatten() {
            counts[i] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
        let p = pool(&spec(Strategy::RoundRobin, &[3, 2, 7, 1]));
        let mut counts = [0usize; 4];
        for i in picks(&p, &mut local, 1300).into_iter().flatten() {
            counts[i] += 1;
        }
        assert_eq!(counts, [300, 200, 700, 100]);
    }

    #[test]
    fn the_one_word_pick_and_the_general_pick_agree() {
        // Up to 64 members take the one-word path, more the two passes: the same rotation
        // either way, with some down and some tried.
        for n in [1, 5, 63, 64, 65, 130] {
            let p = pool(&spec(Strategy::RoundRobin, &vec![1; n]));
            let mut tried = Tried::default();
            for i in (0..n).step_by(3) {
                p.members[i].state.mark_down("p", "x", ChangedBy::Request);
            }
            for i in (1..n).step_by(7) {
                tried.insert(i);
            }
            let want: Vec<usize> = (0..n)
                .filter(|&i| p.members[i].state.is_alive() && !tried.contains(i))
                .collect();
            for round in 0..3 * n {
                let got = p.pick(&tried, None, &mut [], 1);
                let expect = if want.is_empty() {
                    Choice::AllTried
                } else {
                    Choice::Member(want[round % want.len()])
                };
                if want.is_empty() && got == Choice::NoneAlive {
                    continue;
                }
                assert_eq!(got, expect, "{n} members, pick {round}");
            }
        }
    }

    #[test]
    fn concurrent_picks_share_exactly() {
        let p = std::sync::Arc::new(pool(&spec(Strategy::RoundRobin, &[1, 1, 1])));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = std::sync::Arc::clone(&p);
                std::thread::spawn(move || {
                    let mut counts = [0usize; 3];
                    for _ in 0..10_000 {
                        if let Choice::Member(i) = p.pick(&Tried::default(), None, &mut [], 1) {
                            counts[i] += 1;
                        }
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0usize; 3];
        for t in threads {
            for (sum, c) in total.iter_mut().zip(t.join().unwrap()) {
                *sum += c;
            }
        }
        // fetch_add hands out 0..40000 exactly once each.
        assert_eq!(total, [13334, 13333, 13333]);
    }

    #[test]
    fn a_member_coming_back_ramps_up_under_slow_start() {
        let mut s = spec(Strategy::RoundRobin, &[1, 1]);
        s.slow_start = std::time::Duration::from_secs(30);
        let p = pool(&s);
        let m = &p.members[1];
        m.state.mark_down("p", "x", ChangedBy::Request);
        m.state.mark_up("p", "x", ChangedBy::Request);
        let up = m.state.up_since_ms();
        let mut local = vec![0; 2];
        let share = |at: u64, local: &mut Vec<i64>| {
            let mut got = 0;
            for _ in 0..1100 {
                if p.pick(&Tried::default(), None, local, at) == Choice::Member(1) {
                    got += 1;
                }
            }
            got
        };
        // Just back: a tenth of its weight, 1 : 10 → 100 of 1100.
        assert_eq!(share(up, &mut local), 100);
        // Ramped: half and half.
        assert_eq!(share(up + 30_000, &mut local), 550);
    }
}
