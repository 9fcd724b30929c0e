//! A growing delay for repeated failed logins from one address, for both
//! front ends (PostgreSQL's auth_delay, made progressive).
//!
//! The n-th consecutive failure from an address is answered after
//! `BASE × 2^(n-1)`, at most `general.auth_failure_delay` (0 disables the
//! delay). A success from the address, or `QUIET` without a failure, ends
//! the burst. The first failure of a burst is logged; later ones are
//! counted and summarised when the burst ends, never with a password.
//!
//! Concurrency: the delay is a sleep in the failing connection's own task,
//! taken after the proof was checked and before the error is sent, when
//! that task holds no server connection; other clients never wait for it.
//! The map of addresses is behind a short lock and holds at most
//! `MAX_TRACKED` addresses, so spraying from many addresses cannot make it
//! grow without bound (the stalest burst is forgotten first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Refusal;

/// Delay of the first failure of a burst.
pub const BASE: Duration = Duration::from_millis(100);
/// A burst ends after this long without a failure from its address.
pub const QUIET: Duration = Duration::from_secs(60);
/// Addresses tracked at most.
pub const MAX_TRACKED: usize = 4096;

/// One address's current burst of failures.
#[derive(Debug, Clone, Copy)]
struct Burst {
    failures: u32,
    last: Instant,
    delay: Duration,
}

/// Failed-login bursts per client address.
#[derive(Debug, Default)]
pub struct AuthDelay {
    bursts: Mutex<HashMap<IpAddr, Burst>>,
    /// Failed logins answered with a delay, since start.
    pub delayed: AtomicU64,
}

impl AuthDelay {
    /// Records a failed login from `ip` and returns how long to wait
    /// before answering it (at most `cap`).
    pub fn failed(&self, ip: IpAddr, user: &str, cap: Duration) -> Duration {
        let now = Instant::now();
        let mut map = self.bursts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(&ip).copied()
            && now.duration_since(b.last) > QUIET
        {
            summarise(ip, &b);
            map.remove(&ip);
        }
        if !map.contains_key(&ip) && map.len() >= MAX_TRACKED {
            make_room(&mut map, now);
        }
        let b = map.entry(ip).or_insert(Burst {
            failures: 0,
            last: now,
            delay: Duration::ZERO,
        });
        b.failures = b.failures.saturating_add(1);
        b.last = now;
        b.delay = delay_for(b.failures, cap);
        if b.failures == 1 {
            tracing::warn!(client.addr = %ip, user, "failed login; further failures from this address are counted until it succeeds or stays quiet");
        }
        if !b.delay.is_zero() {
            self.delayed.fetch_add(1, Ordering::Relaxed);
        }
        b.delay
    }

    /// A successful login from `ip` ends its burst.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.bursts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.remove(&ip) {
            summarise(ip, &b);
        }
    }

    /// The delay the last failure from `ip` got (zero when its burst ended
    /// or it never failed).
    pub fn current(&self, ip: IpAddr) -> Duration {
        let map = self.bursts.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ip)
            .filter(|b| b.last.elapsed() <= QUIET)
            .map_or(Duration::ZERO, |b| b.delay)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.bursts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// `BASE × 2^(n-1)`, at most `cap`.
fn delay_for(failures: u32, cap: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(20);
    (BASE * (1u32 << shift)).min(cap)
}

/// Forgets ended bursts; when none ended, the stalest one.
fn make_room(map: &mut HashMap<IpAddr, Burst>, now: Instant) {
    map.retain(|_, b| now.duration_since(b.last) <= QUIET);
    if map.len() < MAX_TRACKED {
        return;
    }
    if let Some(oldest) = map.iter().min_by_key(|(_, b)| b.last).map(|(ip, _)| *ip) {
        map.remove(&oldest);
    }
}

/// Logs the end of a burst that had more than its first failure.
fn summarise(ip: IpAddr, b: &Burst) {
    if b.failures > 1 {
        tracing::warn!(client.addr = %ip, failures = b.failures, last_delay_ms = b.delay.as_millis() as u64, "burst of failed logins from this address ended");
    }
}

/// Whether a login refusal is a failed login (wrong password or unknown
/// user) rather than a protocol or capacity problem.
pub fn is_failed_login(r: &Refusal) -> bool {
    matches!(r, Refusal::BadPassword { .. } | Refusal::UnknownUser { .. })
}

/// Records a failed login from `ip` and waits the delay it earned.
pub async fn delay_failure(shared: &crate::Shared, ip: IpAddr, user: &str) {
    let cap = shared.config.load().general.auth_failure_delay;
    let d = shared.auth_delay.failed(ip, user, cap);
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(2);

    #[test]
    fn delay_doubles_up_to_the_cap_and_success_resets_it() {
        let d = AuthDelay::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let got: Vec<u64> = (0..7)
            .map(|_| d.failed(ip, "u", CAP).as_millis() as u64)
            .collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(d.current(ip), CAP);
        d.succeeded(ip);
        assert_eq!(d.current(ip), Duration::ZERO);
        assert_eq!(d.failed(ip, "u", CAP), BASE);
    }

    /// A writer into a shared buffer, for capturing the log.
    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_burst_is_logged_once_and_summarised_when_it_ends() {
        let log = Capture::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let d = AuthDelay::default();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                d.failed(ip, "mallory", CAP);
            }
            d.succeeded(ip);
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("failed login;").count(), 1, "{text}");
        assert_eq!(text.matches("burst of failed logins").count(), 1, "{text}");
        assert!(text.contains("failures=5"), "{text}");
        assert!(text.contains("user=\"mallory\""), "{text}");
    }

    #[test]
    fn zero_cap_disables_the_delay() {
        let d = AuthDelay::default();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(d.failed(ip, "u", Duration::ZERO), Duration::ZERO);
        }
        assert_eq!(d.delayed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn addresses_are_independent_and_the_map_stays_bounded() {
        let d = AuthDelay::default();
        let a: IpAddr = "10.0.0.3".parse().unwrap();
        d.failed(a, "u", CAP);
        assert_eq!(d.failed(a, "u", CAP), BASE * 2);
        let other: IpAddr = "10.0.0.4".parse().unwrap();
        assert_eq!(
            d.failed(other, "u", CAP),
            BASE,
            "another address starts afresh"
        );
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let ip = IpAddr::from((0x0b00_0000u32 + i).to_be_bytes());
            d.failed(ip, "u", CAP);
        }
        assert_eq!(d.tracked(), MAX_TRACKED);
        let last = IpAddr::from((0x0b00_0000u32 + MAX_TRACKED as u32 + 99).to_be_bytes());
        assert_eq!(d.current(last), BASE);
    }
}
