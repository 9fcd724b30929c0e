//! The pool's bookkeeping as a small synchronous state machine.
//!
//! It decides who gets which server; it never does I/O and never waits. The
//! async wrapper in `pool/mod.rs` holds it behind a short mutex, does the
//! waiting outside the lock, and closes servers after the lock is dropped.
//!
//! Invariant: `idle.len() + active + connecting <= size` except right after
//! a shrinking reload (the surplus closes as servers come back), and a
//! waiter exists only while no idle server exists and no capacity is free
//! (or the pool is paused).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::clock::Tick;

/// What a waiter is handed.
#[derive(Debug)]
pub(crate) enum Grant<S> {
    /// An idle server, now counted as active.
    Server(S),
    /// A connection slot, now counted as connecting: open a new server.
    Connect,
}

/// The immediate outcome of a checkout attempt.
#[derive(Debug)]
pub(crate) enum Step<S> {
    /// An idle server, now active.
    Server(S),
    /// Capacity is free: the caller connects a new server.
    Connect,
    /// Queued; the id removes the entry if the caller gives up.
    Wait(u64, oneshot::Receiver<Grant<S>>),
}

#[derive(Debug)]
struct Waiter<S> {
    id: u64,
    since: Tick,
    tx: oneshot::Sender<Grant<S>>,
}

#[derive(Debug)]
struct Idle<S> {
    server: S,
    since: Tick,
}

/// Per-server facts the state machine needs for expiry decisions.
pub(crate) trait Aging {
    /// When the server connection was opened.
    fn created(&self) -> Tick;
    /// Pool generation when the server was opened (RECONNECT bumps it).
    fn generation(&self) -> u64;
}

/// Counts for SHOW POOLS and /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Servers lent out.
    pub active: usize,
    /// Servers waiting in the pool.
    pub idle: usize,
    /// Servers being opened.
    pub connecting: usize,
    /// Clients waiting for a server.
    pub waiting: usize,
    /// Age of the oldest waiter.
    pub max_wait: Duration,
    /// Whether the pool is paused.
    pub paused: bool,
    /// Configured size.
    pub size: usize,
}

#[derive(Debug)]
pub(crate) struct PoolState<S> {
    idle: Vec<Idle<S>>,
    active: usize,
    connecting: usize,
    waiters: VecDeque<Waiter<S>>,
    next_waiter: u64,
    paused: bool,
    size: usize,
    generation: u64,
}

impl<S: Aging> PoolState<S> {
    pub(crate) fn new(size: usize) -> Self {
        PoolState {
            idle: Vec::with_capacity(size),
            active: 0,
            connecting: 0,
            waiters: VecDeque::new(),
            next_waiter: 0,
            paused: false,
            size,
            generation: 0,
        }
    }

    fn total(&self) -> usize {
        self.idle.len() + self.active + self.connecting
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn counts(&self, now: Tick) -> Counts {
        Counts {
            active: self.active,
            idle: self.idle.len(),
            connecting: self.connecting,
            waiting: self.waiters.len(),
            max_wait: self
                .waiters
                .front()
                .map(|w| now.saturating_duration_since(w.since))
                .unwrap_or_default(),
            paused: self.paused,
            size: self.size,
        }
    }

    /// Takes the most recently used idle server, or a connect slot, or queues.
    pub(crate) fn checkout(&mut self, now: Tick) -> Step<S> {
        if !self.paused && self.waiters.is_empty() {
            if let Some(idle) = self.idle.pop() {
                self.active += 1;
                return Step::Server(idle.server);
            }
            if self.total() < self.size {
                self.connecting += 1;
                return Step::Connect;
            }
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        let (tx, rx) = oneshot::channel();
        self.waiters.push_back(Waiter { id, since: now, tx });
        Step::Wait(id, rx)
    }

    /// Takes an idle server without queueing (the fast path); None when
    /// the caller must go through [`PoolState::checkout`].
    pub(crate) fn take_idle(&mut self) -> Option<S> {
        if self.paused || !self.waiters.is_empty() {
            return None;
        }
        let idle = self.idle.pop()?;
        self.active += 1;
        Some(idle.server)
    }

    /// A connect slot became a server (it is active now).
    pub(crate) fn connected(&mut self) {
        self.connecting -= 1;
        self.active += 1;
    }

    /// A connect slot failed; the capacity may go to the next waiter.
    pub(crate) fn connect_failed(&mut self) {
        self.connecting -= 1;
        self.grant_capacity();
    }

    /// An active server comes back. Returns the server if it must be closed
    /// (not reusable, too old, from an older generation, or surplus).
    pub(crate) fn release(
        &mut self,
        server: S,
        reusable: bool,
        now: Tick,
        max_lifetime: Duration,
    ) -> Option<S> {
        self.active -= 1;
        let expired = !max_lifetime.is_zero()
            && now.saturating_duration_since(server.created()) >= max_lifetime;
        let keep = reusable
            && !expired
            && server.generation() == self.generation
            && self.total() < self.size;
        if !keep {
            self.grant_capacity();
            return Some(server);
        }
        if self.paused {
            self.idle.push(Idle { server, since: now });
            return None;
        }
        match self.hand_to_waiter(server) {
            Some(server) => {
                self.idle.push(Idle { server, since: now });
                None
            }
            None => None,
        }
    }

    /// Gives `server` to the first waiter still listening; returns it if
    /// nobody took it.
    fn hand_to_waiter(&mut self, mut server: S) -> Option<S> {
        while let Some(w) = self.waiters.pop_front() {
            self.active += 1;
            match w.tx.send(Grant::Server(server)) {
                Ok(()) => return None,
                Err(Grant::Server(back)) => {
                    self.active -= 1;
                    server = back;
                }
                Err(Grant::Connect) => unreachable!("sent a server"),
            }
        }
        Some(server)
    }

    /// Lets waiters use free capacity (after a close or a failed connect).
    fn grant_capacity(&mut self) {
        if self.paused {
            return;
        }
        while self.total() < self.size {
            let Some(w) = self.waiters.pop_front() else {
                return;
            };
            self.connecting += 1;
            if w.tx.send(Grant::Connect).is_err() {
                self.connecting -= 1;
            }
        }
    }

    /// Removes a waiter that gave up. Returns false if it was already
    /// granted (the grant is then in its channel and must be handed back).
    pub(crate) fn cancel_wait(&mut self, id: u64) -> bool {
        match self.waiters.iter().position(|w| w.id == id) {
            Some(i) => {
                self.waiters.remove(i);
                true
            }
            None => false,
        }
    }

    /// Returns a grant that a waiter received but will not use.
    pub(crate) fn return_grant(
        &mut self,
        grant: Grant<S>,
        now: Tick,
        max_lifetime: Duration,
    ) -> Option<S> {
        match grant {
            Grant::Server(s) => self.release(s, true, now, max_lifetime),
            Grant::Connect => {
                self.connect_failed();
                None
            }
        }
    }

    /// Stops lending servers; returns the idle ones to close.
    pub(crate) fn pause(&mut self) -> Vec<S> {
        self.paused = true;
        self.idle.drain(..).map(|i| i.server).collect()
    }

    /// Lends servers again, serving the queue first.
    pub(crate) fn resume(&mut self) {
        self.paused = false;
        while let Some(idle) = self.idle.pop() {
            if let Some(server) = self.hand_to_waiter(idle.server) {
                self.idle.push(Idle {
                    server,
                    since: Tick::now(),
                });
                break;
            }
        }
        self.grant_capacity();
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused
    }

    pub(crate) fn active(&self) -> usize {
        self.active
    }

    /// Marks every current server as stale (closed at release) and returns
    /// the idle ones to close now.
    pub(crate) fn reconnect(&mut self) -> Vec<S> {
        self.generation += 1;
        let closed: Vec<S> = self.idle.drain(..).map(|i| i.server).collect();
        self.grant_capacity();
        closed
    }

    /// Changes the size (RELOAD). Surplus servers close as they come back.
    pub(crate) fn set_size(&mut self, size: usize) -> Vec<S> {
        self.size = size;
        let mut closed = Vec::new();
        while self.total() > self.size {
            // Close the least recently used idle servers first.
            if self.idle.is_empty() {
                break;
            }
            closed.push(self.idle.remove(0).server);
        }
        self.grant_capacity();
        closed
    }

    /// Closes idle servers past `idle_timeout` (keeping `min_idle`) or past
    /// `max_lifetime`; returns them and how many new servers to open to
    /// reach `min_idle` (their slots are counted as connecting already).
    pub(crate) fn maintain(
        &mut self,
        now: Tick,
        idle_timeout: Duration,
        max_lifetime: Duration,
        min_idle: usize,
    ) -> (Vec<S>, usize) {
        let mut closed = Vec::new();
        // Oldest-used servers are at the front.
        let mut i = 0;
        while i < self.idle.len() {
            let it = &self.idle[i];
            let too_old = !max_lifetime.is_zero()
                && now.saturating_duration_since(it.server.created()) >= max_lifetime;
            let too_idle = !idle_timeout.is_zero()
                && now.saturating_duration_since(it.since) >= idle_timeout
                && self.idle.len() > min_idle;
            if too_old || too_idle {
                closed.push(self.idle.remove(i).server);
            } else {
                i += 1;
            }
        }
        let mut to_open = 0;
        if !self.paused {
            while self.idle.len() + self.connecting < min_idle && self.total() < self.size {
                self.connecting += 1;
                to_open += 1;
            }
        }
        self.grant_capacity();
        (closed, to_open)
    }

    /// A warm-up connection finished: park it as idle (or hand it out).
    pub(crate) fn warmed(&mut self, server: S, now: Tick) {
        self.connecting -= 1;
        if self.paused {
            self.idle.push(Idle { server, since: now });
            return;
        }
        self.active += 1;
        if let Some(s) = self.hand_to_waiter_counted(server) {
            self.idle.push(Idle {
                server: s,
                since: now,
            });
        }
    }

    fn hand_to_waiter_counted(&mut self, server: S) -> Option<S> {
        // `server` is counted as active by the caller; undo if nobody takes it.
        self.active -= 1;
        self.hand_to_waiter(server)
    }

    /// Takes every idle server (shutdown, KILL).
    pub(crate) fn drain_idle(&mut self) -> Vec<S> {
        self.idle.drain(..).map(|i| i.server).collect()
    }

    /// Drops every waiter (their checkouts fail as closed).
    pub(crate) fn drop_waiters(&mut self) {
        self.waiters.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Fake {
        id: u32,
        created: Tick,
        generation: u64,
    }

    impl Aging for Fake {
        fn created(&self) -> Tick {
            self.created
        }
        fn generation(&self) -> u64 {
            self.generation
        }
    }

    fn fake(id: u32) -> Fake {
        Fake {
            id,
            created: Tick::now(),
            generation: 0,
        }
    }

    const LIFE: Duration = Duration::from_secs(3600);

    #[test]
    fn connects_up_to_size_then_queues() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(2);
        assert!(matches!(st.checkout(now), Step::Connect));
        assert!(matches!(st.checkout(now), Step::Connect));
        assert!(matches!(st.checkout(now), Step::Wait(..)));
        let c = st.counts(now);
        assert_eq!((c.connecting, c.waiting), (2, 1));
    }

    #[test]
    fn released_server_goes_to_first_waiter_fifo() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(1);
        assert!(matches!(st.checkout(now), Step::Connect));
        st.connected();
        let Step::Wait(_, mut rx1) = st.checkout(now) else {
            panic!()
        };
        let Step::Wait(_, mut rx2) = st.checkout(now) else {
            panic!()
        };
        assert!(st.release(fake(7), true, now, LIFE).is_none());
        assert!(matches!(
            rx1.try_recv(),
            Ok(Grant::Server(Fake { id: 7, .. }))
        ));
        assert!(rx2.try_recv().is_err());
        assert_eq!(st.counts(now).active, 1);
        assert_eq!(st.counts(now).waiting, 1);
    }

    #[test]
    fn abandoned_waiter_is_skipped() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(1);
        let _ = st.checkout(now);
        st.connected();
        let Step::Wait(_, rx1) = st.checkout(now) else {
            panic!()
        };
        drop(rx1);
        assert!(st.release(fake(1), true, now, LIFE).is_none());
        let c = st.counts(now);
        assert_eq!((c.active, c.idle, c.waiting), (0, 1, 0));
    }

    #[test]
    fn dirty_server_closes_and_frees_capacity_for_waiter() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(1);
        let _ = st.checkout(now);
        st.connected();
        let Step::Wait(_, mut rx) = st.checkout(now) else {
            panic!()
        };
        let closed = st.release(fake(1), false, now, LIFE);
        assert_eq!(closed.map(|f| f.id), Some(1));
        assert!(matches!(rx.try_recv(), Ok(Grant::Connect)));
        assert_eq!(st.counts(now).connecting, 1);
    }

    #[test]
    fn expired_or_stale_generation_server_is_closed_on_release() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(2);
        let _ = st.checkout(now);
        st.connected();
        let old = Fake {
            id: 1,
            created: now - Duration::from_secs(10),
            generation: 0,
        };
        assert!(st.release(old, true, now, Duration::from_secs(5)).is_some());
        let _ = st.checkout(now);
        st.connected();
        assert!(st.reconnect().is_empty());
        assert!(st.release(fake(2), true, now, LIFE).is_some());
    }

    #[test]
    fn cancel_wait_and_return_grant_keep_counts_consistent() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(1);
        let _ = st.checkout(now);
        st.connected();
        let Step::Wait(id, mut rx) = st.checkout(now) else {
            panic!()
        };
        // Granted before the waiter noticed its timeout.
        assert!(st.release(fake(3), true, now, LIFE).is_none());
        assert!(!st.cancel_wait(id));
        let grant = rx.try_recv().unwrap();
        assert!(st.return_grant(grant, now, LIFE).is_none());
        let c = st.counts(now);
        assert_eq!((c.active, c.idle, c.waiting), (0, 1, 0));
    }

    #[test]
    fn pause_holds_checkouts_until_resume() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(2);
        let _ = st.checkout(now);
        st.connected();
        assert!(st.release(fake(1), true, now, LIFE).is_none());
        let closed = st.pause();
        assert_eq!(closed.len(), 1);
        let Step::Wait(_, mut rx) = st.checkout(now) else {
            panic!("paused pool must queue")
        };
        st.resume();
        assert!(matches!(rx.try_recv(), Ok(Grant::Connect)));
    }

    #[test]
    fn maintain_closes_idle_and_warms_min_idle() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(3);
        let _ = st.checkout(now);
        st.connected();
        let _ = st.checkout(now);
        st.connected();
        let earlier = now - Duration::from_secs(100);
        assert!(st.release(fake(1), true, earlier, LIFE).is_none());
        assert!(st.release(fake(2), true, earlier, LIFE).is_none());
        let (closed, open) = st.maintain(now, Duration::from_secs(10), LIFE, 1);
        assert_eq!(closed.len(), 1, "one idle server kept for min_idle");
        assert_eq!(open, 0);
        let (closed, open) = st.maintain(now, Duration::from_secs(10), LIFE, 2);
        assert!(closed.is_empty());
        assert_eq!(open, 1);
        st.warmed(fake(9), now);
        assert_eq!(st.counts(now).idle, 2);
    }

    #[test]
    fn shrinking_closes_surplus_idle() {
        let now = Tick::now();
        let mut st = PoolState::<Fake>::new(3);
        for i in 0..3 {
            let _ = st.checkout(now);
            st.connected();
            let _ = i;
        }
        for i in 0..3 {
            assert!(st.release(fake(i), true, now, LIFE).is_none());
        }
        assert_eq!(st.set_size(1).len(), 2);
        assert_eq!(st.counts(now).idle, 1);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        #[derive(Debug, Clone)]
        enum Op {
            Checkout,
            FinishConnect(bool),
            Release(usize, bool),
            DropWaiter(usize),
            TakeGrant(usize),
            Pause,
            Resume,
            Reconnect,
            Maintain(u8),
            SetSize(u8),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => Just(Op::Checkout),
                3 => any::<bool>().prop_map(Op::FinishConnect),
                4 => (any::<usize>(), any::<bool>()).prop_map(|(i, r)| Op::Release(i, r)),
                1 => any::<usize>().prop_map(Op::DropWaiter),
                3 => any::<usize>().prop_map(Op::TakeGrant),
                1 => Just(Op::Pause),
                1 => Just(Op::Resume),
                1 => Just(Op::Reconnect),
                1 => (0u8..3).prop_map(Op::Maintain),
                1 => (1u8..6).prop_map(Op::SetSize),
            ]
        }

        proptest! {
            /// Whatever the order of checkouts, releases, cancellations,
            /// pauses and resizes: no server is lost or duplicated, counts
            /// match what the callers hold, and the pool never holds more
            /// servers than its size once surplus has drained.
            #[test]
            fn pool_state_machine_keeps_its_invariants(ops in proptest::collection::vec(op(), 1..200)) {
                let now = Tick::now();
                let mut st = PoolState::<Fake>::new(3);
                let mut next_id = 0u32;
                let mut held: Vec<Fake> = Vec::new();         // active, held by "clients"
                let mut connecting = 0usize;                    // slots we were told to open
                let mut waiters: Vec<(u64, oneshot::Receiver<Grant<Fake>>)> = Vec::new();
                let mut closed: BTreeSet<u32> = BTreeSet::new();
                let mut size = 3usize;
                let new_server = |next_id: &mut u32, generation: u64| {
                    *next_id += 1;
                    Fake { id: *next_id, created: now, generation }
                };
                for op in ops {
                    match op {
                        Op::Checkout => match st.checkout(now) {
                            Step::Server(s) => held.push(s),
                            Step::Connect => connecting += 1,
                            Step::Wait(id, rx) => waiters.push((id, rx)),
                        },
                        Op::FinishConnect(ok) => {
                            if connecting > 0 {
                                connecting -= 1;
                                if ok {
                                    st.connected();
                                    let g = st.generation();
                                    held.push(new_server(&mut next_id, g));
                                } else {
                                    st.connect_failed();
                                }
                            }
                        }
                        Op::Release(i, reusable) => {
                            if !held.is_empty() {
                                let s = held.swap_remove(i % held.len());
                                if let Some(c) = st.release(s, reusable, now, LIFE) {
                                    prop_assert!(closed.insert(c.id), "server closed twice");
                                }
                            }
                        }
                        Op::DropWaiter(i) => {
                            if !waiters.is_empty() {
                                let (id, mut rx) = waiters.swap_remove(i % waiters.len());
                                if !st.cancel_wait(id)
                                    && let Ok(g) = rx.try_recv()
                                    && let Some(c) = st.return_grant(g, now, LIFE)
                                {
                                    prop_assert!(closed.insert(c.id));
                                }
                            }
                        }
                        Op::TakeGrant(i) => {
                            if !waiters.is_empty() {
                                let k = i % waiters.len();
                                if let Ok(g) = waiters[k].1.try_recv() {
                                    waiters.swap_remove(k);
                                    match g {
                                        Grant::Server(s) => held.push(s),
                                        Grant::Connect => connecting += 1,
                                    }
                                }
                            }
                        }
                        Op::Pause => {
                            for c in st.pause() {
                                prop_assert!(closed.insert(c.id));
                            }
                        }
                        Op::Resume => st.resume(),
                        Op::Reconnect => {
                            for c in st.reconnect() {
                                prop_assert!(closed.insert(c.id));
                            }
                        }
                        Op::Maintain(min_idle) => {
                            let (cl, open) = st.maintain(now, Duration::ZERO, LIFE, usize::from(min_idle).min(size));
                            for c in cl {
                                prop_assert!(closed.insert(c.id));
                            }
                            for _ in 0..open {
                                let g = st.generation();
                                let s = new_server(&mut next_id, g);
                                st.warmed(s, now);
                            }
                        }
                        Op::SetSize(n) => {
                            size = usize::from(n);
                            for c in st.set_size(size) {
                                prop_assert!(closed.insert(c.id));
                            }
                        }
                    }
                    let c = st.counts(now);
                    // What the state machine counts as lent or opening is
                    // exactly what callers hold or were granted.
                    prop_assert!(c.active >= held.len(), "active {} < held {}", c.active, held.len());
                    prop_assert!(c.connecting >= connecting);
                    prop_assert!(c.waiting <= waiters.len());
                    for s in &held {
                        prop_assert!(!closed.contains(&s.id), "a held server was closed");
                    }
                }
                // Drain: collect pending grants, release everything.
                for (id, mut rx) in waiters.drain(..) {
                    if !st.cancel_wait(id)
                        && let Ok(g) = rx.try_recv()
                    {
                        match g {
                            Grant::Server(s) => held.push(s),
                            Grant::Connect => connecting += 1,
                        }
                    }
                }
                for _ in 0..connecting {
                    st.connect_failed();
                }
                for s in held.drain(..) {
                    if let Some(c) = st.release(s, true, now, LIFE) {
                        prop_assert!(closed.insert(c.id));
                    }
                }
                let c = st.counts(now);
                prop_assert_eq!(c.active, 0);
                prop_assert_eq!(c.connecting, 0);
                prop_assert!(c.idle <= size, "idle {} > size {}", c.idle, size);
                prop_assert_eq!(c.idle + closed.len(), next_id as usize, "servers lost");
            }
        }
    }
}
