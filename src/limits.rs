//! Per-client limits: a request rate (GCRA) and open connections, per client address (IPv4
//! whole, IPv6 by its /64), shared by all workers.
//!
//! GCRA (the generic cell rate algorithm) keeps one number per client, its theoretical arrival
//! time (TAT): with an emission interval `T = 1 / rate` and a tolerance `τ = burst × T`, a
//! request at time `t` is allowed when `max(TAT, t) − t ≤ τ`, and then moves TAT on by `T`.
//! It is exact (no fixed windows to game at their edges) and needs no timer.
//!
//! The table is sharded ([`SHARDS`] mutexes, a client always in the same one): a decision
//! holds one shard's lock for a hash lookup and a few arithmetic instructions, so two workers
//! rarely meet and never wait long. It is bounded (`max_clients` in all): when a shard is full,
//! entries that have refilled (their TAT is past, no connection open) go first, as they carry
//! no information; failing that, the one closest to refilling.
//!
//! A shared limiter (`[client_limits] shared`) also counts, per client, the requests it allowed
//! since its last exchange with the other instances, and lists those clients; the
//! `shared_limits` thread takes them ([`Limiter::take_pending`]) and merges back the fleet's
//! TAT ([`Limiter::merge_fleet`]). The request path never waits for that exchange.

use crate::config::Rate;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

/// Mutexes the table is cut into.
pub const SHARDS: usize = 64;

/// A client's key: an IPv4 address whole, an IPv6 address by its /64 (one subscriber's
/// network: a client rotating through its own /64 is still one client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl std::fmt::Display for ClientKey {
    /// `203.0.113.7`, or `2001:db8:1:2::/64`: the name of the client in the shared store.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 >> 96 == 0 {
            write!(f, "{}", std::net::Ipv4Addr::from(self.0 as u32))
        } else {
            let prefix = (self.0 as u64 as u128) << 64;
            write!(f, "{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

impl ClientKey {
    /// The key of `ip` (an IPv4-mapped IPv6 address is its IPv4 address).
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4))),
            // The /64 prefix, with a bit above IPv4's range so the two never meet.
            IpAddr::V6(v6) => ClientKey((u128::from(v6) >> 64) | (1 << 96)),
        }
    }
}

/// A fast hasher for client keys (they are not attacker-chosen beyond their address space,
/// and a shard's size is bounded, so a multiplicative hash is enough).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u128(&mut self, n: u128) {
        let x = (n as u64) ^ ((n >> 64) as u64).rotate_left(17);
        self.0 = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
}

/// One client's state.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Theoretical arrival time, in ns since the limiter's epoch (0: never limited).
    tat: u64,
    /// Connections open now.
    connections: u32,
    /// Shared limiters: requests allowed since the last exchange with the fleet.
    pending: u32,
}

/// One shard of the table.
#[derive(Debug, Default)]
struct Shard {
    map: HashMap<ClientKey, Entry, BuildHasherDefault<KeyHasher>>,
    /// Shared limiters: the clients with `pending` requests (bounded by twice the shard's
    /// size: a client evicted and seen again may be listed twice).
    dirty: Vec<ClientKey>,
    /// When the last whole-shard sweep ran (ns; see `make_room`).
    swept_ns: u64,
    /// Entries `make_room` has looked at, all calls together: what a flood of new clients
    /// costs (the tests bound it).
    examined: u64,
}

/// Entries a full shard looks at to free one slot between two sweeps.
const EVICTION_SAMPLE: usize = 32;
/// Least time between two sweeps of a whole shard (entries refill with time, so a sweep
/// sooner would mostly find what the last one left).
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

/// What a rate check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on.
    Allow,
    /// Over the limit: try again after this many seconds (at least 1).
    Deny { retry_after_secs: u64 },
}

/// A limiter: one rate (and optionally a connection limit) over a bounded table of clients.
#[derive(Debug)]
pub struct Limiter {
    shards: Box<[Mutex<Shard>]>,
    /// The emission interval `T`, ns.
    interval_ns: u64,
    /// The tolerance `τ = burst × T`, ns.
    tolerance_ns: u64,
    /// The most entries in one shard.
    per_shard: usize,
    /// Whether a rate is enforced (a connection-only limiter has none).
    has_rate: bool,
    /// Whether its counts are shared with other instances (see the module's doc).
    shared: bool,
}

impl Limiter {
    /// A limiter for `rate` (if any) over at most `max_clients` clients; `shared`: its counts
    /// are exchanged with other instances (see the module's doc).
    pub fn new(rate: Option<Rate>, max_clients: usize, shared: bool) -> Limiter {
        let (interval_ns, tolerance_ns) = match rate {
            Some(r) => {
                let t = (1e9 / r.per_second).max(1.0) as u64;
                (t, t.saturating_mul(u64::from(r.burst)))
            }
            None => (0, 0),
        };
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            interval_ns,
            tolerance_ns,
            per_shard: max_clients.div_ceil(SHARDS).max(1),
            has_rate: rate.is_some(),
            shared: shared && rate.is_some(),
        }
    }

    /// Whether its counts are shared with other instances.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The emission interval `T` (ns): the time one request costs.
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns
    }

    fn shard(&self, key: ClientKey) -> &Mutex<Shard> {
        let mut h = KeyHasher::default();
        h.write_u128(key.0);
        &self.shards[(h.finish() >> 58) as usize % SHARDS]
    }

    /// A request from `key` at `now_ns`: allowed (and counted), or denied with how long to
    /// wait.
    pub fn check(&self, key: ClientKey, now_ns: u64) -> Verdict {
        if !self.has_rate {
            return Verdict::Allow;
        }
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let per_shard = self.per_shard;
        let entry = shard.entry_or_make_room(key, now_ns, per_shard);
        let tat = entry.tat.max(now_ns);
        let ahead = tat - now_ns;
        if ahead > self.tolerance_ns {
            // Allowed again once TAT − τ is reached.
            let wait_ns = ahead - self.tolerance_ns;
            return Verdict::Deny {
                retry_after_secs: wait_ns.div_ceil(1_000_000_000).max(1),
            };
        }
        entry.tat = tat.saturating_add(self.interval_ns);
        if self.shared {
            let first = entry.pending == 0;
            entry.pending = entry.pending.saturating_add(1);
            if first && shard.dirty.len() < per_shard * 2 {
                shard.dirty.push(key);
            }
        }
        Verdict::Allow
    }

    /// The clients with requests allowed since the last call, and how many each, appended to
    /// `out`; their counts start again from 0.
    pub fn take_pending(&self, out: &mut Vec<(ClientKey, u32)>) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let shard = &mut *shard;
            for key in shard.dirty.drain(..) {
                if let Some(e) = shard.map.get_mut(&key) {
                    if e.pending > 0 {
                        out.push((key, e.pending));
                        e.pending = 0;
                    }
                }
            }
        }
    }

    /// The fleet's TAT for `key` (ns on this limiter's clock), every instance's requests
    /// counted: this limiter's TAT becomes at least that, plus the requests it allowed since it
    /// reported (they are not in the fleet's figure yet).
    pub fn merge_fleet(&self, key: ClientKey, fleet_tat_ns: u64) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = shard.map.get_mut(&key) {
            let since = u64::from(e.pending).saturating_mul(self.interval_ns);
            e.tat = e.tat.max(fleet_tat_ns.saturating_add(since));
        }
    }

    /// A connection from `key` opens: whether it is within `limit` (it is counted either way,
    /// and [`close`](Limiter::close) must follow).
    pub fn open(&self, key: ClientKey, limit: u32, now_ns: u64) -> bool {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let per_shard = self.per_shard;
        let entry = shard.entry_or_make_room(key, now_ns, per_shard);
        entry.connections = entry.connections.saturating_add(1);
        entry.connections <= limit
    }

    /// A connection from `key` closed.
    pub fn close(&self, key: ClientKey) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = shard.map.get_mut(&key) {
            e.connections = e.connections.saturating_sub(1);
        }
    }

    /// Clients tracked now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |g| g.map.len()))
            .sum()
    }
}

impl Shard {
    /// `key`'s entry, made if needed; a full shard first drops entries that have refilled.
    fn entry_or_make_room(&mut self, key: ClientKey, now_ns: u64, cap: usize) -> &mut Entry {
        if !self.map.contains_key(&key) && self.map.len() >= cap {
            self.make_room(now_ns);
        }
        self.map.entry(key).or_default()
    }

    /// Free a slot. At most once per `SWEEP_EVERY_NS`, drop every entry that carries no
    /// information (refilled, no connection open): under a flood of new addresses that frees
    /// a good share of the shard at once. Otherwise, or when that freed nothing, drop the entry
    /// closest to refilling without a connection open among `EVICTION_SAMPLE` entries: a flood
    /// of clients that all stay over their rate costs a bounded look per new client, not a
    /// scan of the shard.
    fn make_room(&mut self, now_ns: u64) {
        if now_ns >= self.swept_ns.saturating_add(SWEEP_EVERY_NS) || self.swept_ns == 0 {
            self.swept_ns = now_ns.max(1);
            let before = self.map.len();
            self.examined += before as u64;
            self.map.retain(|_, e| e.connections > 0 || e.tat > now_ns);
            if self.map.len() < before {
                return;
            }
        }
        self.examined += self.map.len().min(EVICTION_SAMPLE) as u64;
        let victim = self
            .map
            .iter()
            .take(EVICTION_SAMPLE)
            .filter(|(_, e)| e.connections == 0)
            .min_by_key(|(_, e)| e.tat)
            .map(|(k, _)| *k);
        if let Some(k) = victim {
            self.map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn ip(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap())
    }

    #[test]
    fn a_flood_of_new_clients_over_their_rate_costs_a_bounded_look_each() {
        // One request a minute: every client stays over its rate for the whole test, so no
        // entry ever refills and a full table has nothing it may simply drop.
        let rate = Rate {
            per_second: 1.0 / 60.0,
            burst: 0,
        };
        let l = Limiter::new(Some(rate), SHARDS * 512, false);
        let clients = 60_000u32;
        for n in 0..clients {
            let key = ClientKey::of(std::net::IpAddr::from(n.to_be_bytes()));
            assert_eq!(l.check(key, SEC + u64::from(n) * 1_000), Verdict::Allow);
        }
        let (examined, held): (u64, usize) = l
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                (s.examined, s.map.len())
            })
            .fold((0, 0), |(e, h), (se, sh)| (e + se, h + sh));
        assert!(held <= SHARDS * 512, "{held} entries");
        // Two whole-shard scans per new client would be 1,024 per client once the table is
        // full; the sample is 32, and a sweep runs once per shard in these simulated 60 ms.
        assert!(
            examined <= u64::from(clients) * EVICTION_SAMPLE as u64 + (SHARDS * 512) as u64,
            "{examined} entries examined for {clients} clients"
        );
    }

    #[test]
    fn keys_are_ipv4_whole_and_ipv6_by_its_64() {
        assert_eq!(ip("192.0.2.1"), ip("::ffff:192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_ne!(ip("0.0.0.1"), ip("::1"));
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limiter::new(
            Some(Rate {
                per_second: 10.0,
                burst: 5,
            }),
            100,
            false,
        );
        let k = ip("192.0.2.1");
        // burst + 1 at once.
        for i in 0..6 {
            assert_eq!(l.check(k, SEC), Verdict::Allow, "{i}");
        }
        assert_eq!(
            l.check(k, SEC),
            Verdict::Deny {
                retry_after_secs: 1
            }
        );
        // 100 ms later, one more.
        assert_eq!(l.check(k, SEC + SEC / 10), Verdict::Allow);
        assert!(matches!(l.check(k, SEC + SEC / 10), Verdict::Deny { .. }));
        // Another client is not touched.
        assert_eq!(l.check(ip("192.0.2.2"), SEC), Verdict::Allow);
    }

    #[test]
    fn ten_times_the_rate_for_ten_seconds_gets_rate_times_seconds_plus_burst() {
        let (rate, burst) = (50.0, 100);
        let l = Limiter::new(
            Some(Rate {
                per_second: rate,
                burst,
            }),
            100,
            false,
        );
        let k = ip("192.0.2.1");
        let mut allowed = 0;
        // 500 requests a second for 10 s, evenly spaced.
        for i in 0..5000u64 {
            if l.check(k, SEC + i * SEC / 500) == Verdict::Allow {
                allowed += 1;
            }
        }
        let want = rate * 10.0 + f64::from(burst);
        assert!(
            (f64::from(allowed) - want).abs() <= want * 0.05,
            "{allowed} allowed, want {want}"
        );
    }

    #[test]
    fn retry_after_says_when() {
        let l = Limiter::new(
            Some(Rate {
                per_second: 0.5,
                burst: 0,
            }),
            100,
            false,
        );
        let k = ip("192.0.2.1");
        assert_eq!(l.check(k, SEC), Verdict::Allow);
        assert_eq!(
            l.check(k, SEC),
            Verdict::Deny {
                retry_after_secs: 2
            }
        );
        assert_eq!(
            l.check(k, 2 * SEC),
            Verdict::Deny {
                retry_after_secs: 1
            }
        );
        assert_eq!(l.check(k, 3 * SEC), Verdict::Allow);
    }

    #[test]
    fn connections_are_counted_per_client() {
        let l = Limiter::new(None, 100, false);
        let k = ip("192.0.2.1");
        assert!(l.open(k, 2, SEC));
        assert!(l.open(k, 2, SEC));
        assert!(!l.open(k, 2, SEC));
        l.close(k);
        l.close(k);
        assert!(l.open(k, 2, SEC));
        assert_eq!(l.check(k, SEC), Verdict::Allow, "no rate: always allowed");
    }

    #[test]
    fn a_million_distinct_clients_keep_the_table_bounded() {
        let max = 10_000;
        let l = Limiter::new(
            Some(Rate {
                per_second: 1.0,
                burst: 0,
            }),
            max,
            false,
        );
        let bound = max.div_ceil(SHARDS) * SHARDS;
        for i in 0..1_000_000u32 {
            // A flood: each new address makes one request (and is then limited for a second).
            let k = ClientKey::of(IpAddr::V4(i.into()));
            assert_eq!(l.check(k, SEC + u64::from(i) * 1000), Verdict::Allow);
            if i % 50_000 == 0 {
                assert!(l.len() <= bound, "{} entries after {i} clients", l.len());
            }
        }
        assert!(l.len() <= bound);
        // A client with a connection open is never dropped, and still counted right.
        let held = ip("198.51.100.7");
        assert!(l.open(held, 1, 2 * SEC));
        for i in 0..200_000u32 {
            l.check(ClientKey::of(IpAddr::V4((i + 2_000_000).into())), 3 * SEC);
        }
        assert!(!l.open(held, 1, 4 * SEC), "its connection is still counted");
    }

    #[test]
    fn a_shared_limiter_reports_what_it_allowed_and_takes_the_fleets_view() {
        let rate = Rate {
            per_second: 10.0,
            burst: 0,
        };
        let l = Limiter::new(Some(rate), 100, true);
        let (a, b) = (ip("192.0.2.1"), ip("2001:db8:1:2::9"));
        assert_eq!(l.check(a, SEC), Verdict::Allow);
        assert_eq!(l.check(b, SEC), Verdict::Allow);
        assert_eq!(l.check(a, SEC + SEC / 10), Verdict::Allow);
        let mut out = Vec::new();
        l.take_pending(&mut out);
        out.sort_by_key(|(k, _)| k.to_string());
        assert_eq!(out, [(a, 2), (b, 1)]);
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("192.0.2.1".into(), "2001:db8:1:2::/64".into())
        );
        out.clear();
        l.take_pending(&mut out);
        assert!(out.is_empty(), "counts start again from 0");
        // Another instance allowed 5 more for `a`: the fleet's TAT is 5 intervals further on.
        // One more allowed here since the report stays on top of it.
        let t = l.interval_ns();
        assert_eq!(l.check(a, SEC + 2 * SEC / 10), Verdict::Allow);
        l.merge_fleet(a, SEC + 3 * t + 5 * t);
        assert!(matches!(l.check(a, SEC + 3 * t), Verdict::Deny { .. }));
        assert_eq!(l.check(a, SEC + 9 * t), Verdict::Allow);
        // Unshared limiters keep no such count.
        let alone = Limiter::new(Some(rate), 100, false);
        assert_eq!(alone.check(a, SEC), Verdict::Allow);
        out.clear();
        alone.take_pending(&mut out);
        assert!(out.is_empty());
    }
}
