//! The leak watch: notices a client that holds an open transaction and
//! sends nothing, reports it to insight once it has been idle past
//! `insight.leaked_transaction.idle`, and closes the report when the
//! transaction ends (finished, rolled back by sqlmux, or abandoned by a
//! client that disconnected inside it).
//!
//! The timer is armed only while a transaction is idle, so a busy session
//! pays one flag check per pump round.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use sqlmux_protocol::sql::Fingerprint;

use crate::client::ClientInfo;
use crate::clock::Tick;
use crate::config::LeakAction;
use crate::insight::{Insight, LeakId, LeakState};

/// The leak timer and report of one session.
#[derive(Debug)]
pub struct LeakWatch {
    /// When the current transaction began (first message of the lease).
    xact_started: Option<Tick>,
    /// When the client last sent something or a response completed.
    idle_since: Option<Tick>,
    armed: bool,
    open: Option<LeakId>,
    /// Last statement run in the transaction.
    pub last_fp: Option<Fingerprint>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// `insight.leaked_transaction.idle`.
    pub idle: Duration,
    /// `insight.leaked_transaction.action`.
    pub action: LeakAction,
    /// Set after sqlmux rolled a leaked transaction back: the client's next
    /// request is answered with this idle time.
    pub rolled_back_after: Option<Duration>,
}

impl LeakWatch {
    /// A watch with the current settings.
    pub fn new(idle: Duration, action: LeakAction) -> LeakWatch {
        LeakWatch {
            xact_started: None,
            idle_since: None,
            armed: false,
            open: None,
            last_fp: None,
            sleep: None,
            idle,
            action,
            rolled_back_after: None,
        }
    }

    /// A lease (and so a transaction) begins.
    pub fn begin(&mut self, now: Tick) {
        self.xact_started = Some(now);
        self.idle_since = None;
        self.armed = false;
        self.last_fp = None;
    }

    /// A response completed or the client sent something: idle from now.
    pub fn touch(&mut self, now: Tick) {
        self.idle_since = Some(now);
    }

    /// True while a transaction is under watch.
    pub fn in_transaction(&self) -> bool {
        self.xact_started.is_some()
    }

    /// The transaction went idle: start (or keep) the timer.
    pub fn arm(&mut self, now: Tick) {
        self.idle_since = Some(now);
        if self.armed {
            return;
        }
        self.armed = true;
        let due = now + self.idle;
        match self.sleep.as_mut() {
            Some(s) if s.deadline() <= due.into() && !s.is_elapsed() => {}
            Some(s) => s.as_mut().reset(due.into()),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(due.into()))),
        }
    }

    /// The client sent something: the timer stops and an open report ends
    /// as `Finished` (the client came back).
    pub fn activity(&mut self, insight: &Insight) {
        self.armed = false;
        if let Some(id) = self.open.take() {
            insight.leak_close(id, LeakState::Finished);
        }
    }

    /// Polls the timer. Ready when the transaction has been idle past the
    /// threshold; `idle` says whether it still is (otherwise the timer
    /// stops).
    pub fn poll_due(&mut self, cx: &mut Context<'_>, idle: bool) -> Poll<()> {
        if !self.armed {
            return Poll::Pending;
        }
        let Some(sleep) = self.sleep.as_mut() else {
            return Poll::Pending;
        };
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if !idle {
                self.armed = false;
                return Poll::Pending;
            }
            let now = Tick::now();
            let due = self.idle_since.unwrap_or(now) + self.idle;
            if now >= due {
                return Poll::Ready(());
            }
            sleep
                .as_mut()
                .reset(due.max(now + Duration::from_millis(1)).into());
        }
    }

    /// The timer fired: report the leak (once per transaction). Returns how
    /// long the transaction has been idle.
    pub fn report(&mut self, insight: &Insight, client: &ClientInfo, now: Tick) -> Duration {
        self.armed = false;
        let idle_since = self.idle_since.unwrap_or(now);
        let idle = now.saturating_duration_since(idle_since);
        if self.open.is_none() {
            let started = self.xact_started.unwrap_or(idle_since);
            tracing::warn!(
                client.addr = %client.addr,
                database = %client.database(),
                user = %client.user(),
                idle_s = idle.as_secs_f64(),
                action = self.action.as_str(),
                "transaction left open and idle"
            );
            self.open = Some(insight.leak_open(client, started, idle_since, self.last_fp));
        }
        idle
    }

    /// The transaction ended: an open report closes with `state`.
    pub fn end(&mut self, insight: &Insight, state: LeakState) {
        self.armed = false;
        self.xact_started = None;
        if let Some(id) = self.open.take() {
            insight.leak_close(id, state);
        }
    }

    /// The client disconnected inside its transaction: recorded as
    /// abandoned (closing an open report, or as a new closed one).
    pub fn abandoned(&mut self, insight: &Insight, client: &ClientInfo, now: Tick) {
        match self.open.take() {
            Some(id) => insight.leak_close(id, LeakState::Abandoned),
            None => {
                if let Some(started) = self.xact_started {
                    let idle_since = self.idle_since.unwrap_or(now);
                    insight.leak_abandoned(client, started, idle_since, self.last_fp);
                }
            }
        }
        self.xact_started = None;
        self.armed = false;
    }
}
