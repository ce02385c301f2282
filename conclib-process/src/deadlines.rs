//! The deadlines of a link's asks, kept by one timer for all of them.
//!
//! An ask to a process actor always waits (its answer crosses two processes), so a timer
//! of its own would be armed on every ask (a `tokio::time::timeout`: an entry in the timer
//! wheel, registered and removed; 321 instructions an ask more than this, by callgrind, in
//! docs/bench-log.md). Instead each ask writes its deadline into its entry in the link's pending
//! map, and one sweeper task per link sleeps until the earliest deadline it was told of.
//! When it wakes it fails the asks whose deadline passed (and cancels them in the child, as
//! an asker that gives up does) and sleeps until the earliest deadline still pending.
//! An ask tells the sweeper only of a deadline earlier than the one it sleeps until: with
//! one timeout for every ask, that is the first ask after the link was idle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::error::ProcessExit;

/// What a sweeper sweeps: a link's asks ([`crate::link::Link`]). A trait so that the timer
/// does not import the link that holds it.
pub(crate) trait Swept: Send + Sync + 'static {
    /// The link's timer.
    fn deadlines(&self) -> &Arc<Deadlines>;
    /// Its process's exit, once seen.
    fn exit(&self) -> &watch::Receiver<Option<ProcessExit>>;
    /// Fails the asks whose deadline is `now` or earlier and arms the next deadline.
    fn time_out(&self, now: u64);
}

/// The sweeper's timer: the earliest deadline it sleeps until.
pub(crate) struct Deadlines {
    /// What the nanoseconds below count from.
    origin: Instant,
    /// The deadline the sweeper sleeps until, in nanoseconds after `origin`; `u64::MAX`: it
    /// sleeps until told. Written under the link's pending lock (see [`Deadlines::note`]).
    armed: AtomicU64,
    rearm: Notify,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Deadlines {
            origin: Instant::now(),
            armed: AtomicU64::new(u64::MAX),
            rearm: Notify::new(),
        }
    }

    /// The deadline `timeout` from now, as the sweeper counts (`u64::MAX`: none, for a
    /// timeout too long to count).
    pub(crate) fn after(&self, timeout: Duration) -> u64 {
        let at = self.origin.elapsed().saturating_add(timeout);
        u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
    }

    /// An ask with `deadline` was registered. Called under the link's pending lock, as the
    /// sweeper's look is: either the sweeper's look saw this ask, or this sees the deadline
    /// the sweeper set after it.
    pub(crate) fn note(&self, deadline: u64) {
        if deadline < self.armed.load(Ordering::Acquire) {
            self.armed.fetch_min(deadline, Ordering::AcqRel);
            self.rearm.notify_one();
        }
    }

    /// Sets the next deadline to sleep until (under the link's pending lock).
    pub(crate) fn arm(&self, deadline: u64) {
        self.armed.store(deadline, Ordering::Release);
    }

    /// Nanoseconds after `origin`, now.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The sweeper of one link: ends with the link (its process's exit answers what is left).
pub(crate) async fn sweep<L: Swept>(link: Weak<L>) {
    let (deadlines, mut exit) = {
        let Some(l) = link.upgrade() else { return };
        (l.deadlines().clone(), l.exit().clone())
    };
    loop {
        if exit.borrow().is_some() {
            return;
        }
        let armed = deadlines.armed.load(Ordering::Acquire);
        let rearmed = deadlines.rearm.notified();
        if armed == u64::MAX {
            tokio::select! {
                () = rearmed => continue,
                changed = exit.changed() => if changed.is_err() { return } else { continue },
            }
        }
        let at = deadlines.origin + Duration::from_nanos(armed);
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {}
            () = rearmed => continue,
            changed = exit.changed() => if changed.is_err() { return } else { continue },
        }
        let Some(link) = link.upgrade() else { return };
        link.time_out(deadlines.now());
    }
}
