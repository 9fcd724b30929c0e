//! The reply watch: notices a lent server that owes a reply and sends
//! nothing for `pool.query_timeout`, a server on a path that silently
//! swallows packets (or one that is stuck). The session then ends the
//! client with an error and the server is closed, never reused.
//!
//! The watch costs nothing while the limit is zero (the default). With a
//! limit, the timer restarts whenever server bytes arrive and stops while
//! the server owes nothing (the client's turn).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::clock::Tick;

/// The silence timer of one session's lent server.
#[derive(Debug, Default)]
pub struct ReplyWatch {
    /// Since when the server has owed a reply without sending a byte.
    since: Option<Tick>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ReplyWatch {
    /// Server bytes arrived: the silence starts over.
    pub fn heard(&mut self) {
        self.since = None;
    }

    /// Polls the timer. `owed`: the server owes a reply now; `limit`: the
    /// pool's `query_timeout` (zero = no limit). Ready when the server has
    /// owed a reply and stayed silent for `limit`.
    pub fn poll_due(&mut self, cx: &mut Context<'_>, owed: bool, limit: Duration) -> Poll<()> {
        if limit.is_zero() || !owed {
            self.since = None;
            return Poll::Pending;
        }
        let Some(due) = self.check(true, limit, Tick::now()) else {
            return Poll::Ready(());
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
        if sleep.deadline() != due.into() {
            sleep.as_mut().reset(due.into());
        }
        if sleep.as_mut().poll(cx).is_ready() {
            self.since = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// The clock side of [`ReplyWatch::poll_due`]: `None` when the limit
    /// has passed at `now` (the watch starts over), else when it will.
    fn check(&mut self, owed: bool, limit: Duration, now: Tick) -> Option<Tick> {
        if limit.is_zero() || !owed {
            self.since = None;
            return Some(now + Duration::from_secs(3600));
        }
        let due = *self.since.get_or_insert(now) + limit;
        if now >= due {
            self.since = None;
            return None;
        }
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_only_after_the_limit_of_silence_while_a_reply_is_owed() {
        let limit = Duration::from_secs(2);
        let t0 = Tick::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut w = ReplyWatch::default();
        assert_eq!(w.check(true, limit, at(0)), Some(at(2000)));
        assert_eq!(w.check(true, limit, at(1000)), Some(at(2000)));
        // Bytes arrive: a new silence starts.
        w.heard();
        assert_eq!(w.check(true, limit, at(1500)), Some(at(3500)));
        assert_eq!(w.check(true, limit, at(3400)), Some(at(3500)));
        assert_eq!(w.check(true, limit, at(3500)), None);
        // And starts over after firing.
        assert_eq!(w.check(true, limit, at(3600)), Some(at(5600)));
    }

    #[test]
    fn never_fires_without_a_limit_or_while_nothing_is_owed() {
        let t0 = Tick::now();
        let mut w = ReplyWatch::default();
        for s in 0..10 {
            let now = t0 + Duration::from_secs(s);
            assert!(w.check(true, Duration::ZERO, now).is_some());
            assert!(w.check(false, Duration::from_secs(1), now).is_some());
        }
        // Owed again: the silence counts from now, not from before.
        let now = t0 + Duration::from_secs(10);
        assert_eq!(
            w.check(true, Duration::from_secs(1), now),
            Some(now + Duration::from_secs(1))
        );
    }
}
