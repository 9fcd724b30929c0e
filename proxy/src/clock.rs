//! The session clock: monotonic time as whole nanoseconds.
//!
//! A transaction reads the clock two or three times and takes a dozen
//! differences from those readings (wait, transaction and query times,
//! statement latency, the N+1 window, SHOW CLIENTS timestamps).
//! `std::time::Instant` keeps seconds and nanoseconds apart, so each
//! difference is a borrow-checked subtraction and a 128-bit conversion;
//! a [`Tick`] is one `u64` (the same `CLOCK_MONOTONIC` reading), so a
//! difference is one subtraction.
//!
//! Ticks become tokio deadlines ([`From<Tick>`] for
//! `tokio::time::Instant`) and Unix times ([`Tick::unix_us`]) through one
//! anchor taken at first use; both conversions are off the hot path.

use std::ops::{Add, Sub};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// A point in monotonic time, in nanoseconds since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(u64);

impl Tick {
    /// Now, from `CLOCK_MONOTONIC` (what `Instant::now` reads on Linux).
    #[inline]
    pub fn now() -> Tick {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is
        // always available on the platforms sqlmux runs on.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Tick(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }

    /// Whole microseconds from `earlier` to `self` (0 if `earlier` is
    /// later): the hot path's one subtraction and one division.
    #[inline]
    pub fn micros_since(self, earlier: Tick) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    #[inline]
    pub fn saturating_duration_since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// The time since `self`.
    pub fn elapsed(self) -> Duration {
        Tick::now().saturating_duration_since(self)
    }

    /// Microseconds since the Unix epoch at this tick.
    pub fn unix_us(self) -> i64 {
        let a = anchor();
        a.unix_us + (self.0 as i64 - a.tick.0 as i64) / 1_000
    }
}

impl Add<Duration> for Tick {
    type Output = Tick;

    fn add(self, d: Duration) -> Tick {
        Tick(self.0.saturating_add(nanos(d)))
    }
}

impl Sub<Duration> for Tick {
    type Output = Tick;

    fn sub(self, d: Duration) -> Tick {
        Tick(self.0.saturating_sub(nanos(d)))
    }
}

/// A duration in whole nanoseconds, saturating (585 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl From<Tick> for tokio::time::Instant {
    /// The tokio deadline at this tick (for `sleep_until`).
    fn from(t: Tick) -> tokio::time::Instant {
        let a = anchor();
        if t >= a.tick {
            a.instant + t.saturating_duration_since(a.tick)
        } else {
            a.instant
                .checked_sub(a.tick.saturating_duration_since(t))
                .unwrap_or(a.instant)
        }
    }
}

/// One reading of the three clocks, taken together at first use.
struct Anchor {
    tick: Tick,
    instant: tokio::time::Instant,
    unix_us: i64,
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| Anchor {
        tick: Tick::now(),
        instant: tokio::time::Instant::now(),
        unix_us: crate::pool::unix_us(SystemTime::now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_exact_and_saturate() {
        let t0 = Tick::now();
        let t1 = t0 + Duration::from_micros(1_500);
        assert_eq!(t1.micros_since(t0), 1_500);
        assert_eq!(t0.micros_since(t1), 0);
        assert_eq!(
            t1.saturating_duration_since(t0),
            Duration::from_micros(1_500)
        );
        assert_eq!(t0.saturating_duration_since(t1), Duration::ZERO);
        assert_eq!(t1 - Duration::from_micros(1_500), t0);
        assert!(t1 > t0 && t0.max(t1) == t1);
    }

    #[test]
    fn ticks_follow_the_std_clock() {
        let (i0, t0) = (std::time::Instant::now(), Tick::now());
        std::thread::sleep(Duration::from_millis(20));
        let (t1, i1) = (Tick::now(), std::time::Instant::now());
        let ticked = t1.saturating_duration_since(t0);
        assert!(ticked >= Duration::from_millis(20));
        assert!(ticked <= i1.duration_since(i0));
    }

    #[test]
    fn conversions_agree_with_the_other_clocks() {
        let t = Tick::now();
        let wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        // The anchor was read within moments of `t`; allow for a slow
        // machine, not for a wrong unit or sign.
        assert!((t.unix_us() - wall).abs() < 5_000_000);
        let later = t + Duration::from_secs(3);
        // Each conversion truncates to whole microseconds.
        let moved = later.unix_us() - t.unix_us();
        assert!((moved - 3_000_000).abs() <= 1, "unix time moved {moved} us");
        let deadline: tokio::time::Instant = later.into();
        let d = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(d > Duration::from_secs(1) && d <= Duration::from_secs(3));
    }
}
