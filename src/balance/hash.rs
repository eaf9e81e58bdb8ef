//! Consistent hashing for `ip_hash` and `hash`: a ketama ring. Each member owns
//! [`POINTS_PER_WEIGHT`] × weight points on a ring of 64-bit hashes; a key goes to the owner
//! of the first point at or after its hash, or, when that member is not eligible (down, tried,
//! full), to the next eligible owner along the ring.
//!
//! So when a member leaves, only the keys that were on it move (each to the next point's
//! owner), and when it comes back they return; the others never move. Ketama rather than
//! Maglev for exactly that: Maglev's table rebuild moves some keys of members that stayed.
//!
//! The hash is FNV-1a over the bytes, finished with the SplitMix64 mixer: the same in every
//! process and on every machine, so a fleet of instances agrees on where a key goes.

use super::member::Member;
use crate::config::HashKey;
use std::net::IpAddr;

/// Ring points per unit of weight: enough that 4 equal members each get within a few percent
/// of a quarter of the keys.
pub const POINTS_PER_WEIGHT: usize = 160;

/// The most points one ring holds (16 MiB of points): 6,553 units of weight at full density.
pub const MAX_POINTS: usize = 1 << 20;

/// A ring over some members of a pool.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// (point, member index), sorted by point.
    points: Vec<(u64, u32)>,
    /// The members with points, each once.
    members: Vec<u32>,
}

impl Ring {
    /// The ring of the members that `include` selects.
    pub fn new(members: &[Member], include: impl Fn(&Member) -> bool) -> Ring {
        // Members and weights from DNS can be many: the ring keeps at most MAX_POINTS, with
        // fewer points per unit of weight when it would hold more.
        let total: usize = members
            .iter()
            .filter(|m| include(m))
            .map(|m| m.weight as usize)
            .sum();
        let per_weight = POINTS_PER_WEIGHT.min(MAX_POINTS / total.max(1)).max(1);
        let mut points = Vec::new();
        let mut owners = Vec::new();
        for (i, m) in members.iter().enumerate() {
            if !include(m) {
                continue;
            }
            owners.push(i as u32);
            // Points from the address as written, not the member's position: reordering or
            // adding members in the file keeps every other member's points.
            // A member from DNS by its address: the name is its entry's, shared.
            let base = if m.discovered { &m.addr_text } else { &m.name };
            for p in 0..per_weight * m.weight as usize {
                let label = format!("{base}#{p}");
                points.push((hash64(label.as_bytes()), i as u32));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            members: owners,
        }
    }

    /// The first eligible member at or after `key` along the ring.
    ///
    /// The walk is bounded by the members, not the points: after as many refusals as there
    /// are members, every member is asked once, and when none is eligible the walk ends there
    /// instead of visiting all `POINTS_PER_WEIGHT` × weight points.
    pub fn pick(&self, key: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < key);
        let mut last_rejected = u32::MAX;
        let mut refusals = 0;
        for k in 0..n {
            let (_, member) = self.points[(start + k) % n];
            // Consecutive points of one member are common: ask once.
            if member == last_rejected {
                continue;
            }
            if eligible(member as usize) {
                return Some(member as usize);
            }
            last_rejected = member;
            refusals += 1;
            if refusals == self.members.len() && !self.members.iter().any(|&m| eligible(m as usize))
            {
                return None;
            }
        }
        None
    }
}

/// FNV-1a, then SplitMix64's finaliser (FNV alone mixes short inputs poorly in the high bits).
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The hash of a client address (an IPv4-mapped IPv6 address as the IPv4 one).
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash64(&v4.octets()),
        IpAddr::V6(v6) => hash64(&v6.octets()),
    }
}

/// The hash of a request's key, or `None` when the request does not carry it (no such header
/// or cookie): the caller falls back to round robin.
pub fn key_of(
    key: &HashKey,
    client: IpAddr,
    headers: &[httparse::Header<'_>],
    target: &str,
) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(hash_ip(client)),
        HashKey::Path => Some(hash64(crate::route::normalize_path(target).as_bytes())),
        HashKey::Header(name) => headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| hash64(h.value)),
        HashKey::Cookie(name) => headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
            .find_map(|h| cookie(h.value, name.as_bytes()))
            .map(hash64),
    }
}

/// The value of cookie `name` in a Cookie field value (`a=1; b=2`).
pub fn cookie<'v>(value: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    value.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (n, v) = (&pair[..eq], &pair[eq + 1..]);
        (n == name).then(|| {
            // A quoted value's quotes are not part of it (RFC 6265 §4.1.1).
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pool, spec};
    use super::super::Choice;
    use super::*;
    use crate::config::Strategy;
    use crate::upstream::ChangedBy;
    use crate::upstream::Tried;

    fn owner(p: &super::super::Pool, key: u64) -> Option<usize> {
        match p.pick(&Tried::default(), Some(key), &mut [], 1) {
            Choice::Member(i) => Some(i),
            _ => None,
        }
    }

    fn keys() -> Vec<u64> {
        (0..10_000u32)
            .map(|k| hash64(format!("key-{k}").as_bytes()))
            .collect()
    }

    #[test]
    fn four_equal_members_get_a_quarter_each_within_ten_percent() {
        let p = pool(&spec(Strategy::Hash, &[1, 1, 1, 1]));
        let mut counts = [0usize; 4];
        for k in keys() {
            counts[owner(&p, k).unwrap()] += 1;
        }
        for c in counts {
            assert!((2250..=2750).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn only_the_keys_of_a_member_that_leaves_move_and_they_come_back() {
        let p = pool(&spec(Strategy::Hash, &[1, 1, 1, 1]));
        let before: Vec<_> = keys().into_iter().map(|k| owner(&p, k)).collect();
        p.members[2].state.mark_down("p", "x", ChangedBy::Request);
        let during: Vec<_> = keys().into_iter().map(|k| owner(&p, k)).collect();
        for (b, d) in before.iter().zip(&during) {
            if *b == Some(2) {
                assert_ne!(*d, Some(2));
            } else {
                assert_eq!(b, d, "a key that was not on the member that left moved");
            }
        }
        p.members[2].state.mark_up("p", "x", ChangedBy::Request);
        let after: Vec<_> = keys().into_iter().map(|k| owner(&p, k)).collect();
        assert_eq!(before, after, "they return");
    }

    #[test]
    fn weights_scale_the_share_and_tried_members_are_passed_over() {
        let p = pool(&spec(Strategy::Hash, &[3, 1]));
        let mut counts = [0usize; 2];
        for k in keys() {
            counts[owner(&p, k).unwrap()] += 1;
        }
        assert!((7000..=8000).contains(&counts[0]), "{counts:?}");
        let mut tried = Tried::default();
        tried.insert(0);
        for k in keys().into_iter().take(100) {
            assert_eq!(p.pick(&tried, Some(k), &mut [], 1), Choice::Member(1));
        }
    }

    #[test]
    fn a_ring_with_no_eligible_member_is_given_up_after_one_question_per_member() {
        let p = pool(&spec(Strategy::Hash, &[5, 5, 5, 5, 5, 5, 5, 5]));
        let ring = Ring::new(&p.members, |_| true);
        assert_eq!(ring.points.len(), 8 * 5 * POINTS_PER_WEIGHT);
        for k in keys().into_iter().take(200) {
            let asked = std::cell::Cell::new(0);
            let none = ring.pick(k, |_| {
                asked.set(asked.get() + 1);
                false
            });
            assert_eq!(none, None);
            // At most one refusal per member on the walk, then one question per member.
            assert!(asked.get() <= 2 * 8, "{} questions", asked.get());
            // And with one member eligible, it is found.
            assert_eq!(ring.pick(k, |m| m == 6), Some(6));
        }
    }

    #[test]
    fn keys_come_from_the_request() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(hash_ip(ip), hash_ip(mapped));
        let headers = [
            httparse::Header {
                name: "Cookie",
                value: b"a=1; session=\"abc\"; z=2",
            },
            httparse::Header {
                name: "X-User",
                value: b"alice",
            },
        ];
        let k = |key: HashKey, target: &str| key_of(&key, ip, &headers, target);
        assert_eq!(k(HashKey::ClientIp, "/"), Some(hash_ip(ip)));
        assert_eq!(
            k(HashKey::Cookie("session".into()), "/"),
            Some(hash64(b"abc"))
        );
        assert_eq!(k(HashKey::Cookie("nope".into()), "/"), None);
        assert_eq!(
            k(HashKey::Header("x-user".into()), "/"),
            Some(hash64(b"alice"))
        );
        assert_eq!(k(HashKey::Header("x-none".into()), "/"), None);
        assert_eq!(k(HashKey::Path, "/a/../b?q=1"), Some(hash64(b"/b")));
        assert_eq!(cookie(b"a=1;b=2", b"b"), Some(&b"2"[..]));
        assert_eq!(cookie(b"ab=1", b"a"), None);
        // Stable across processes and machines.
        assert_eq!(hash64(b""), 0xf52a_15e9_a9b5_e89b);
    }
}
