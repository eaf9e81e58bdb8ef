//! Picking an upstream of a pool: one strategy per file, behind [`Pool::pick`].
//!
//! - `round_robin`: the atomic round-robin index over the eligible members, or smooth
//!   weighted round robin (nginx's) when weights differ or an upstream is ramping up.
//! - `least_conn`: fewest requests in flight relative to weight, ties in rotation.
//! - [`hash`]: a consistent-hash ring (ketama) for `ip_hash` and `hash`.
//!
//! - `member`: a member as the pool sees it; `pool`: the pool the strategies pick from. Both
//!   sit below the strategies, which sit below the dispatch here.
//!
//! Pure over the shared atomics of the members' [`UpstreamState`]s and a worker's own
//! [`Local`] state: no lock, no allocation per pick. A member is *eligible* when it is alive,
//! not yet tried for this request and below its `max_conns`; backups are eligible only while
//! no other member is alive.

pub mod budget;
pub mod hash;
mod least_conn;
mod member;
pub mod outlier;
mod pool;
mod round_robin;

pub use member::{effective_weight, Member};
pub use pool::Pool;

use crate::config::{PoolSpec, Strategy, UpstreamSpec};
use crate::upstream::{PoolShared, Registry, Tried};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// What a pick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// This member.
    Member(usize),
    /// No member is alive (or every alive one was tried and none is left).
    NoneAlive,
    /// Every alive member was tried for this request.
    AllTried,
    /// Every eligible member is at its `max_conns`.
    AllFull,
}

/// A worker's own balancing state, per pool: smooth weighted round robin's current weights.
/// Rebuilt when the configuration changes (see [`Local::fit`]).
#[derive(Debug, Default)]
pub struct Local {
    /// Per pool, per member.
    current: Vec<Vec<i64>>,
}

impl Local {
    /// Make room for `pools` (after a reload, the old weights mean nothing: start afresh).
    pub fn fit(&mut self, pools: &[Pool]) {
        self.current = pools.iter().map(|p| vec![0; p.members.len()]).collect();
    }

    /// Pool `pool`'s state (empty for a pool it was not fitted to).
    #[inline]
    pub fn for_pool(&mut self, pool: usize) -> &mut [i64] {
        self.current
            .get_mut(pool)
            .map_or(&mut [], |v| v.as_mut_slice())
    }
}

impl Pool {
    /// The pool for `spec`, its members bound to their state in `registry`: its static
    /// upstreams, then `discovered` (the addresses its names resolved to). With `pending`, a
    /// discovered address no snapshot lists yet waits for its first health check before it
    /// takes requests.
    pub fn new(
        spec: &PoolSpec,
        discovered: &[UpstreamSpec],
        registry: &Registry,
        pending: bool,
    ) -> Result<Pool, String> {
        let mut members = Vec::with_capacity(spec.upstreams.len() + discovered.len());
        let all = spec.upstreams.iter().map(|u| (u, false));
        for (u, from_dns) in all.chain(discovered.iter().map(|u| (u, true))) {
            let (state, fresh) = registry.get_fresh(u.address.addr, &u.address.name)?;
            // New to the registry, or back before its old state was freed (nothing checked it
            // meanwhile): it waits for a check either way.
            if from_dns && pending && (fresh || !state.is_listed()) {
                state.await_first_check(&spec.name);
            }
            members.push(Member {
                state,
                name: u.address.name.clone(),
                addr: u.address.addr,
                addr_text: u.address.addr.to_string(),
                weight: u.weight,
                backup: u.backup,
                max_conns: u.max_conns.unwrap_or(u32::MAX),
                discovered: from_dns,
            });
        }
        Ok(Pool::from_members(spec, members, registry.pool(&spec.name)))
    }

    /// The pool for `spec` with these members (tests bind detached states).
    pub fn from_members(
        spec: &PoolSpec,
        members: Vec<Member>,
        shared: &'static PoolShared,
    ) -> Pool {
        let equal_weights = members.windows(2).all(|w| w[0].weight == w[1].weight);
        let has_backup = members.iter().any(|m| m.backup);
        let capped = members.iter().any(|m| m.max_conns != u32::MAX);
        let rings = matches!(spec.strategy, Strategy::IpHash | Strategy::Hash).then(|| {
            (
                hash::Ring::new(&members, |m| !m.backup),
                hash::Ring::new(&members, |m| m.backup),
            )
        });
        let plain = spec.strategy == Strategy::RoundRobin
            && equal_weights
            && !has_backup
            && !capped
            && spec.slow_start.is_zero()
            && members.len() <= 64;
        Pool {
            plain,
            name: spec.name.clone(),
            strategy: spec.strategy,
            hash_key: spec.hash_key.clone(),
            members,
            retries: spec.retries,
            slow_start_ms: duration_ms(spec.slow_start),
            equal_weights,
            has_backup,
            capped,
            next: AtomicUsize::new(0),
            rings,
            shared,
            outlier: spec.outlier.clone(),
            retry_budget: spec.retry_budget,
        }
    }

    /// Whether the backups are the candidates now: there are some, and no other member is
    /// alive.
    #[inline]
    fn tier(&self) -> bool {
        self.has_backup && !self.members.iter().any(|m| !m.backup && m.state.is_alive())
    }

    /// Why nothing was eligible.
    fn why_none(&self, tried: &Tried, backups: bool) -> Choice {
        let alive = |m: &Member| m.backup == backups && m.state.is_alive();
        if !self.members.iter().any(alive) {
            Choice::NoneAlive
        } else if self
            .members
            .iter()
            .enumerate()
            .any(|(i, m)| alive(m) && !tried.contains(i))
        {
            Choice::AllFull
        } else {
            Choice::AllTried
        }
    }

    /// Pick a member for a request: `key` is its hash key's hash (hash strategies; `None`
    /// falls back to round robin), `tried` the members it already tried. Always inlined: with
    /// a second caller (TCP mode's relay) LLVM stopped inlining it into the request path's
    /// `connect_next`, +40 instructions per request.
    #[inline(always)]
    pub fn pick(&self, tried: &Tried, key: Option<u64>, local: &mut [i64], now_ms: u64) -> Choice {
        if self.plain {
            return match round_robin::plain(self, tried) {
                Some(i) => Choice::Member(i),
                None => self.why_none(tried, false),
            };
        }
        let backups = self.tier();
        let found = match (self.strategy, key, &self.rings) {
            (Strategy::LeastConn, _, _) => least_conn::pick(self, tried, backups, now_ms),
            (Strategy::IpHash | Strategy::Hash, Some(k), Some((main, spare))) => {
                let ring = if backups { spare } else { main };
                ring.pick(k, |i| self.eligible(i, tried, backups))
            }
            _ => round_robin::pick(self, tried, backups, local, now_ms),
        };
        match found {
            Some(i) => Choice::Member(i),
            None => self.why_none(tried, backups),
        }
    }

    /// Whether some member is alive (any tier).
    pub fn any_alive(&self) -> bool {
        self.members.iter().any(|m| m.state.is_alive())
    }
}

/// A duration in whole milliseconds (saturating).
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{HashKey, HealthSpec, StatusRanges, UpstreamSpec};
    use crate::upstream::{ChangedBy, UpstreamState};
    use std::net::SocketAddr;

    /// A pool spec with `weights.len()` upstreams on 127.0.0.1:9000+i.
    pub fn spec(strategy: Strategy, weights: &[u32]) -> PoolSpec {
        PoolSpec {
            name: "p".to_string(),
            strategy,
            hash_key: matches!(strategy, Strategy::IpHash | Strategy::Hash)
                .then_some(HashKey::ClientIp),
            upstreams: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let addr = SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16));
                    UpstreamSpec {
                        address: crate::config::Address {
                            name: addr.to_string(),
                            addr,
                        },
                        weight: w,
                        backup: false,
                        max_conns: None,
                    }
                })
                .collect(),
            health: HealthSpec {
                check: crate::config::Check::Tcp,
                path: "/".into(),
                host: None,
                expect: StatusRanges(vec![(200, 399)]),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                rise: 1,
                fall: 1,
                send_proxy: None,
                tls: false,
            },
            retries: 2,
            slow_start: Duration::ZERO,
            queue_timeout: Duration::from_secs(5),
            client_rate: None,
            send_proxy: None,
            tls: None,
            names: Vec::new(),
            discover: None,
            outlier: crate::config::OUTLIER,
            retry_budget: crate::config::RETRY_BUDGET,
        }
    }

    /// A pool for `spec` on fresh, detached states (each test its own).
    pub fn pool(spec: &PoolSpec) -> Pool {
        let members = spec
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| Member {
                state: UpstreamState::detached(i, u.address.addr),
                name: u.address.name.clone(),
                addr: u.address.addr,
                addr_text: u.address.addr.to_string(),
                weight: u.weight,
                backup: u.backup,
                max_conns: u.max_conns.unwrap_or(u32::MAX),
                discovered: false,
            })
            .collect();
        let registry: &'static Registry = Box::leak(Box::new(Registry::new(1)));
        Pool::from_members(spec, members, registry.pool(&spec.name))
    }

    /// `n` picks with nothing tried; `None` for no member.
    pub fn picks(p: &Pool, local: &mut Vec<i64>, n: usize) -> Vec<Option<usize>> {
        if local.len() != p.members.len() {
            *local = vec![0; p.members.len()];
        }
        (0..n)
            .map(|_| match p.pick(&Tried::default(), None, local, 1) {
                Choice::Member(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn backups_serve_only_while_every_other_member_is_down() {
        let mut s = spec(Strategy::RoundRobin, &[1, 1, 1]);
        s.upstreams[2].backup = true;
        let p = pool(&s);
        let mut local = Vec::new();
        assert_eq!(picks(&p, &mut local, 4), [0, 1, 0, 1].map(Some));
        p.members[0]
            .state
            .mark_down("p", "test", ChangedBy::Request);
        assert_eq!(picks(&p, &mut local, 2), [1, 1].map(Some));
        p.members[1]
            .state
            .mark_down("p", "test", ChangedBy::Request);
        assert_eq!(picks(&p, &mut local, 2), [2, 2].map(Some));
        p.members[2]
            .state
            .mark_down("p", "test", ChangedBy::Request);
        assert_eq!(
            p.pick(&Tried::default(), None, &mut local, 1),
            Choice::NoneAlive
        );
        p.members[1].state.mark_up("p", "test", ChangedBy::Request);
        assert_eq!(picks(&p, &mut local, 2), [1, 1].map(Some));
    }

    #[test]
    fn tried_and_full_members_are_skipped_and_said_so() {
        let mut s = spec(Strategy::RoundRobin, &[1, 1]);
        s.upstreams[1].max_conns = Some(1);
        let p = pool(&s);
        let mut local = vec![0; 2];
        let mut tried = Tried::default();
        tried.insert(0);
        assert_eq!(p.pick(&tried, None, &mut local, 1), Choice::Member(1));
        let held = p.members[1].state.begin_request();
        assert_eq!(p.pick(&tried, None, &mut local, 1), Choice::AllFull);
        tried.insert(1);
        assert_eq!(p.pick(&tried, None, &mut local, 1), Choice::AllTried);
        drop(held);
        assert!(matches!(
            p.pick(&Tried::default(), None, &mut local, 1),
            Choice::Member(_)
        ));
    }

    #[test]
    fn slow_start_ramps_from_a_tenth_to_the_whole_weight() {
        let s = spec(Strategy::RoundRobin, &[5]);
        let p = pool(&s);
        let m = &p.members[0];
        assert_eq!(effective_weight(m, 0, 1000), 50);
        assert_eq!(
            effective_weight(m, 30_000, 1000),
            50,
            "up since the start: no ramp"
        );
        m.state.mark_down("p", "t", ChangedBy::Request);
        m.state.mark_up("p", "t", ChangedBy::Request);
        let up = m.state.up_since_ms();
        assert_eq!(effective_weight(m, 30_000, up), 5, "a tenth at first");
        assert_eq!(
            effective_weight(m, 30_000, up + 15_000),
            27,
            "0.55 half-way"
        );
        assert_eq!(effective_weight(m, 30_000, up + 30_000), 50);
    }
}
