//! The clock of the data path: a [`Tick`] is a moment on the monotonic clock as one integer.
//!
//! `std::time::Instant` is 16 bytes, and each sum or difference of two normalises seconds and
//! nanoseconds with an overflow check; the workers do a few per request (deadlines, response
//! times) and a session keeps several. A tick is 8 bytes (an `Option<Tick>` too), its sums
//! and differences one integer operation, and it is the same count the rate limits and the
//! upstream timestamps use.

use std::num::NonZeroU64;
use std::ops::Add;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A moment: nanoseconds since the process first read the clock, plus one (never 0, so that
/// 0 is free to mean "never" where a tick is stored in an atomic, and an `Option<Tick>` takes
/// no more room than a tick). 2^64 ns is 584 years: sums saturate rather than wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(NonZeroU64);

/// The clock's origin, read once by the first caller.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// `d` in nanoseconds, saturated at `u64::MAX`.
pub fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

impl Tick {
    /// The clock now.
    pub fn now() -> Tick {
        Tick::at(Instant::now())
    }

    /// The tick of `t` (an instant before the origin is the origin).
    pub fn at(t: Instant) -> Tick {
        Tick::from_ns(nanos(t.saturating_duration_since(origin())))
    }

    /// The tick `ns` nanoseconds after the origin.
    pub fn from_ns(ns: u64) -> Tick {
        Tick(NonZeroU64::MIN.saturating_add(ns))
    }

    /// Nanoseconds since the origin, plus one: never 0.
    pub fn ns(self) -> u64 {
        self.0.get()
    }

    /// Time from `earlier` to this tick, zero if `earlier` is later.
    pub fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.ns().saturating_sub(earlier.ns()))
    }

    /// Whole microseconds from `earlier` to this tick, 0 if `earlier` is later.
    pub fn micros_since(self, earlier: Tick) -> u64 {
        self.ns().saturating_sub(earlier.ns()) / 1_000
    }

    /// Milliseconds from `earlier` to this tick, rounded up, 0 if `earlier` is later.
    pub fn millis_ceil_since(self, earlier: Tick) -> u64 {
        self.ns().saturating_sub(earlier.ns()).div_ceil(1_000_000)
    }
}

/// Milliseconds since the Unix epoch, read from the wall clock now (a vDSO call).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall clock derived from ticks: Unix milliseconds of a tick, from an offset read now and
/// then (a worker reads it again every idle sweep, so a step of the wall clock shows within
/// that). The access log stamps each request with it instead of reading the clock per request.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ms: u64,
}

impl WallClock {
    /// The offset between the wall clock and the ticks, now.
    pub fn read() -> WallClock {
        let tick_ms = Tick::now().ns() / 1_000_000;
        WallClock {
            offset_ms: unix_ms().saturating_sub(tick_ms),
        }
    }

    /// Unix milliseconds at `t`.
    pub fn unix_ms(self, t: Tick) -> u64 {
        self.offset_ms.saturating_add(t.ns() / 1_000_000)
    }
}

impl Add<Duration> for Tick {
    type Output = Tick;

    /// Saturating: a timeout of `Duration::MAX` is a deadline that never comes.
    fn add(self, d: Duration) -> Tick {
        Tick(self.0.saturating_add(nanos(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_follow_instants() {
        let a = Instant::now();
        let b = a + Duration::from_millis(1500);
        let (ta, tb) = (Tick::at(a), Tick::at(b));
        assert!(ta < tb);
        assert_eq!(tb.since(ta), Duration::from_millis(1500));
        assert_eq!(ta.since(tb), Duration::ZERO);
        assert_eq!(tb.micros_since(ta), 1_500_000);
        assert_eq!(tb.millis_ceil_since(ta), 1500);
        assert_eq!(ta + Duration::from_millis(1500), tb);
    }

    #[test]
    fn the_wall_clock_follows_ticks() {
        let wall = WallClock::read();
        let t = Tick::now();
        let direct = unix_ms();
        // Within a few ms of a direct reading (two clocks read at slightly different times).
        assert!(
            wall.unix_ms(t).abs_diff(direct) < 50,
            "{} {direct}",
            wall.unix_ms(t)
        );
        assert_eq!(
            wall.unix_ms(t + Duration::from_millis(1500)),
            wall.unix_ms(t) + 1500
        );
    }

    #[test]
    fn never_zero_and_saturating() {
        assert_eq!(Tick::from_ns(0).ns(), 1);
        assert_eq!(Tick::from_ns(u64::MAX).ns(), u64::MAX);
        let t = Tick::from_ns(5);
        assert_eq!((t + Duration::MAX).ns(), u64::MAX);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(nanos(Duration::new(2, 7)), 2_000_000_007);
        // Before the origin: the origin.
        let early = origin()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(origin());
        assert_eq!(Tick::at(early), Tick::from_ns(0));
        assert_eq!(
            (t + Duration::from_nanos(1_500_001)).millis_ceil_since(t),
            2
        );
        assert_eq!(std::mem::size_of::<Option<Tick>>(), 8);
    }
}
