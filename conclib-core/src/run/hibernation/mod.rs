//! Hibernation: an actor sent nothing for a while goes back to being dormant.
//!
//! An actor starts dormant ([`crate::run::dormant`]): its run loop boxed, no tokio task. Its first
//! message spawns the task, which then waits for mail for as long as the actor lives, with
//! what its messages grew: tokio's task (128 bytes, 128-aligned), the buffer its handlers'
//! futures run in, its mailbox's buffers, and (metrics on) what it measures with. Most actors
//! of a large system handle a message now and then and wait in between: an actor asked once
//! cost about 1,060 bytes against 744 for one never asked (docs/bench-log.md, "An actor that has
//! run"). So a sweep, every [`ActorSystem::set_hibernate_after`] period (by default
//! [`DEFAULT_HIBERNATE_AFTER`]), looks at every actor of the system: one that waits for mail
//! and was sent nothing since the sweep before is woken to hibernate. Its run loop gives
//! those buffers back (and gives the recorder what its metrics measured), the actor, its context and
//! its options go into a new run loop that waits in a dormant waker in the mailbox, the task
//! ends, and the actor costs what a dormant one does again. The next message (or stop, or kill, or child's news) spawns a task, as the first
//! one did: about 0.3 µs more on that one message than on one to an awake actor (2.4 µs with
//! metrics on, whose handles are registered again; docs/bench-log.md, "Idle actors hibernate").
//!
//! An actor hibernates only while it waits for mail with nothing queued: not while a
//! handler waits (on a timer, on another actor), not while it stops. A message that comes as
//! it hibernates is not lost: the dormant waker takes the task's place only if that is still
//! in the mailbox, waiting for mail, with nothing queued, all under the mailbox's lock (a
//! sender takes the waker under that lock); otherwise the new run loop starts at once in a
//! task of its own. An actor hibernates only in a poll of its task that had nothing to do (a
//! sweep that found it inside a handler is ignored until the next). Its state, its context
//! (timers, streams, children) and its statistics stay as they were.
//!
//! A sweep costs about 75 ns of CPU an actor (its mailbox's lock and a look): 7.5 ms over
//! 100,000 actors, every 30 s by default (docs/bench-log.md, `ran_bytes`).
//!
//! [`ActorSystem::set_hibernate_after`]: crate::ActorSystem::set_hibernate_after

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How long an actor waits for mail before it hibernates, by default: from this to twice this
/// after its last message (see
/// [`ActorSystem::set_hibernate_after`](crate::ActorSystem::set_hibernate_after)).
pub const DEFAULT_HIBERNATE_AFTER: Duration = Duration::from_secs(30);

/// A system's hibernation setting and its sweeper task.
pub(crate) struct Hibernation {
    /// The sweep period in nanoseconds; 0: never.
    after_ns: AtomicU64,
    /// The setting changed: the sweeper starts its wait again.
    changed: Notify,
    /// The sweeper task, started with the system's keepers on the first runtime its actors
    /// run on (and again with those of the next runtime it starts keepers on, if that one
    /// has shut down by then); aborted when the system is dropped.
    sweeper: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Hibernation {
    pub(crate) fn new() -> Arc<Self> {
        let hibernation = Hibernation {
            after_ns: AtomicU64::new(0),
            changed: Notify::new(),
            sweeper: Mutex::new(None),
        };
        hibernation.set(Some(DEFAULT_HIBERNATE_AFTER));
        Arc::new(hibernation)
    }

    pub(crate) fn set(&self, after: Option<Duration>) {
        let ns = after.map_or(0, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        self.after_ns.store(ns, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn after(&self) -> Option<Duration> {
        match self.after_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Starts the sweeper on `runtime` if it is not running (the system's first keepers, or
    /// the runtime it ran on shut down): the task `sweeper` makes, the system's (in
    /// `crate::system`: a sweep after each [`period`](Self::period) for as long as the
    /// system lives).
    pub(crate) fn start<F: Future<Output = ()> + Send + 'static>(
        &self,
        runtime: &tokio::runtime::Handle,
        sweeper: impl FnOnce() -> F,
    ) {
        let mut running = self.lock();
        if running.as_ref().is_some_and(|s| !s.is_finished()) {
            return;
        }
        let task = runtime.spawn(sweeper());
        *running = Some(task.abort_handle());
    }

    /// Waits out one sweep period: returns once a whole period passed with the setting
    /// unchanged (a change starts the wait again; `None` waits for a change).
    pub(crate) async fn period(&self) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let Some(after) = self.after() else {
                changed.await;
                continue;
            };
            if tokio::time::timeout(after, changed).await.is_ok() {
                // A new period: wait for it from now.
                continue;
            }
            return;
        }
    }

    /// Ends the sweeper: its system is gone.
    pub(crate) fn end(&self) {
        if let Some(sweeper) = self.lock().take() {
            sweeper.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::AbortHandle>> {
        self.sweeper.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
