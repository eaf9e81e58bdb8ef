//! The keys of a worker's timer wheel: what each stands for, packed into the wheel's u64 so
//! that a session's generation can never spill into the kind's bits.

use crate::health::StartTimer;

// Timer wheel keys: the kind in the top two bits (see `TimerKey`).
pub(super) const KIND_SHIFT: u32 = 62;
pub(super) const KIND_SESSION: u64 = 0;
pub(super) const KIND_PROBE_DEADLINE: u64 = 1;
pub(super) const KIND_PROBE_START: u64 = 2;
pub(super) const KIND_WORKER: u64 = 3;
pub(super) const WORKER_SHUTDOWN: u64 = 0;
pub(super) const WORKER_ACCEPT: u64 = 1;
pub(super) const WORKER_IDLE_SWEEP: u64 = 2;
/// A session's wheel key: its slab key in the low 32 bits, its timer generation in the 30 bits
/// above, the kind (`KIND_SESSION`) in the top two. The generation wraps within its 30 bits, so
/// it can never reach the kind's bits.
pub(super) const SESSION_KEY_BITS: u32 = 32;
/// Mask of a session timer generation.
pub(super) const GEN_MASK: u32 = (1 << (KIND_SHIFT - SESSION_KEY_BITS)) - 1;
/// Set in a key (of the dirty list, of a session timer) that names a TCP relay, not a session:
/// the top bit of the key's `SESSION_KEY_BITS`.
pub(super) const RELAY_KEY: usize = 1 << (SESSION_KEY_BITS - 1);
/// The most sessions (and relays) a worker may hold: their slab keys must fit below
/// [`RELAY_KEY`].
pub(super) const MAX_SESSIONS: usize = RELAY_KEY - 1;

/// What a wheel key stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerKey {
    /// A session's deadline, valid while its generation is current.
    Session { key: usize, gen: u32 },
    /// A health check's deadline, for upstream id `.0`.
    ProbeDeadline(u64),
    /// The next health check of an upstream.
    ProbeStart(StartTimer),
    /// One of the worker's own timers (`WORKER_*`).
    Worker(u64),
}

impl TimerKey {
    pub(super) fn pack(self) -> u64 {
        match self {
            TimerKey::Session { key, gen } => {
                (KIND_SESSION << KIND_SHIFT)
                    | (u64::from(gen & GEN_MASK) << SESSION_KEY_BITS)
                    | (key as u64 & ((1 << SESSION_KEY_BITS) - 1))
            }
            TimerKey::ProbeDeadline(i) => {
                (KIND_PROBE_DEADLINE << KIND_SHIFT) | (i & ((1 << KIND_SHIFT) - 1))
            }
            TimerKey::ProbeStart(t) => {
                (KIND_PROBE_START << KIND_SHIFT)
                    | (u64::from(t.gen & GEN_MASK) << SESSION_KEY_BITS)
                    | (t.id as u64 & ((1 << SESSION_KEY_BITS) - 1))
            }
            TimerKey::Worker(w) => (KIND_WORKER << KIND_SHIFT) | (w & ((1 << KIND_SHIFT) - 1)),
        }
    }

    pub(super) fn unpack(k: u64) -> TimerKey {
        let low = k & ((1 << KIND_SHIFT) - 1);
        match k >> KIND_SHIFT {
            KIND_SESSION => TimerKey::Session {
                key: (low & ((1 << SESSION_KEY_BITS) - 1)) as usize,
                gen: (low >> SESSION_KEY_BITS) as u32,
            },
            KIND_PROBE_DEADLINE => TimerKey::ProbeDeadline(low),
            KIND_PROBE_START => TimerKey::ProbeStart(StartTimer {
                id: (low & ((1 << SESSION_KEY_BITS) - 1)) as usize,
                gen: (low >> SESSION_KEY_BITS) as u32,
            }),
            _ => TimerKey::Worker(low),
        }
    }
}

/// The generation after `gen`, wrapping within `GEN_MASK`.
pub(super) fn next_gen(gen: u32) -> u32 {
    gen.wrapping_add(1) & GEN_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_round_trip_and_never_collide_across_the_generation_boundary() {
        let max_key = MAX_SESSIONS;
        let gens = [0, 1, GEN_MASK - 1, GEN_MASK, next_gen(GEN_MASK)];
        assert_eq!(
            next_gen(GEN_MASK),
            0,
            "the generation wraps within its bits"
        );
        let mut seen = std::collections::HashSet::new();
        for key in [0, 1, 7, 0xffff, max_key - 1, max_key] {
            for gen in gens {
                let k = TimerKey::Session { key, gen };
                let packed = k.pack();
                assert_eq!(
                    packed >> KIND_SHIFT,
                    KIND_SESSION,
                    "{k:?}: kind bits untouched"
                );
                assert_eq!(TimerKey::unpack(packed), k);
                seen.insert(packed);
            }
        }
        // The generations above wrap to 0 once: five values, four distinct.
        assert_eq!(seen.len(), 6 * 4);
        for k in [
            TimerKey::ProbeDeadline(0),
            TimerKey::ProbeDeadline(12345),
            TimerKey::ProbeStart(StartTimer { id: 3, gen: 7 }),
            TimerKey::Worker(WORKER_SHUTDOWN),
            TimerKey::Worker(WORKER_ACCEPT),
            TimerKey::Worker(WORKER_IDLE_SWEEP),
        ] {
            assert_eq!(TimerKey::unpack(k.pack()), k);
            assert!(
                !seen.contains(&k.pack()),
                "{k:?} collides with a session key"
            );
        }
        // What the old packing did: a generation past 2^30 shifted into the kind's bits made a
        // session key read as a probe, a sweep or a worker timer.
        let old = (u64::from(1u32 << 30) << 32) | 5;
        let start = TimerKey::ProbeStart(StartTimer {
            id: 65_535,
            gen: GEN_MASK,
        });
        assert_eq!(TimerKey::unpack(start.pack()), start);
        assert_ne!(old >> KIND_SHIFT, KIND_SESSION);
        let mut gen = GEN_MASK - 2;
        for _ in 0..5 {
            gen = next_gen(gen);
            let packed = TimerKey::Session { key: 5, gen }.pack();
            assert_eq!(packed >> KIND_SHIFT, KIND_SESSION);
        }
    }
}
