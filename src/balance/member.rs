//! One upstream of a pool, as the pool sees it, and its weight now.

use crate::upstream::UpstreamState;

/// One upstream of a pool, as the pool sees it.
#[derive(Debug)]
pub struct Member {
    /// The shared state (alive, in flight).
    pub state: &'static UpstreamState,
    /// The address as written in this pool.
    pub name: String,
    /// Where it is (its state's address, fixed for the life of the snapshot: read here on
    /// connects without the state's lock).
    pub addr: std::net::SocketAddr,
    /// `addr` as text, for the access log.
    pub addr_text: String,
    /// Its share relative to the others (at least 1).
    pub weight: u32,
    /// Only while every non-backup member is down.
    pub backup: bool,
    /// Most requests in flight to it (`u32::MAX`: no cap).
    pub max_conns: u32,
    /// Its address came from DNS: the hash ring places it by its address, as several
    /// members share the name written.
    pub discovered: bool,
}

/// The effective weight of a member now, in tenths: its weight, or less while it ramps up
/// after coming back (slow start: from a tenth to all of it over `slow_start_ms`).
#[inline]
pub fn effective_weight(m: &Member, slow_start_ms: u64, now_ms: u64) -> u64 {
    let full = u64::from(m.weight) * 10;
    if slow_start_ms == 0 {
        return full;
    }
    let up = m.state.up_since_ms();
    let elapsed = now_ms.saturating_sub(up);
    if up == 0 || elapsed >= slow_start_ms {
        return full;
    }
    // weight × (0.1 + 0.9 × elapsed / slow_start), in tenths.
    (u64::from(m.weight) * (10 * slow_start_ms + 90 * elapsed) / slow_start_ms / 10).max(1)
}
