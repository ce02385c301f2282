//! An actor's run loop before its first wake-up: a boxed future, not yet a tokio task.
//!
//! Most actors of a large system sit idle most of the time: spawned, named, asked later or
//! never. A tokio task from the first moment costs the task's allocation, its entry in the
//! runtime's list of tasks, a schedule that may wake an idle worker through the kernel, and a
//! first poll that only finds the mailbox empty (on a 2-worker runtime, about half of a
//! spawn's time went to that hand-over; BENCHMARKS.md, "Actors start dormant"). So an actor
//! that has nothing to do when [`spawn`](crate::SpawnBuilder::spawn) returns starts dormant:
//! its run loop waits, boxed, as the waker in its mailbox's slot. Whatever the mailbox would
//! wake the task for (a message, a stop, a kill, a child's news) wakes this instead, which
//! spawns the task there and then, on the runtime the actor was spawned on.
//!
//! Every way into a run loop goes through its mailbox (a stop asked for in `on_start` does
//! not: such an actor starts as a task at once). A runtime that shuts down drops the run
//! loops of its actors' tasks; a [`Keeper`] task does the same for the dormant ones.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use crate::cell::ErasedCell;

/// A run loop, boxed, as it waits to become a task.
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A dormant actor's run loop and where it will run; woken, it spawns the task.
pub(crate) struct Dormant {
    run: Mutex<Option<RunFuture>>,
    runtime: tokio::runtime::Handle,
    /// For the task's abort handle (weak: the cell holds this waker).
    cell: Weak<dyn ErasedCell>,
}

impl Dormant {
    /// A waker that spawns `run` on the current runtime when woken; dropped unwoken, it
    /// drops `run`.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub(crate) fn waker(run: RunFuture, cell: Weak<dyn ErasedCell>) -> Waker {
        Waker::from(Arc::new(Dormant {
            run: Mutex::new(Some(run)),
            runtime: tokio::runtime::Handle::current(),
            cell,
        }))
    }
}

impl Wake for Dormant {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let run = self.run.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(run) = run {
            // On a runtime that shut down, tokio drops `run` at once (as it did the tasks).
            let task = self.runtime.spawn(run);
            if let Some(cell) = self.cell.upgrade() {
                cell.core().set_abort(task.abort_handle());
            }
        }
    }
}

/// A task that never completes, whose drop (its runtime shutting down) drops the run loops
/// of the system's dormant actors, as the runtime drops those of its tasks: an actor's state
/// (its sockets, files, children) goes with the runtime, woken or not.
pub(crate) struct Keeper {
    /// Called with the system's dormant actors when the runtime drops this task.
    pub(crate) on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl Future for Keeper {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}
