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
//! loops of its actors' tasks; a [`Keeper`] task (one a system and runtime) does the same
//! for the dormant ones spawned on that runtime, and leaves the other runtimes' alone.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

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
    /// A waker that spawns `run` on `runtime` when woken; dropped unwoken, it drops `run`.
    pub(crate) fn waker(
        run: RunFuture,
        runtime: tokio::runtime::Handle,
        cell: Weak<dyn ErasedCell>,
    ) -> Waker {
        let dormant = Arc::new(Dormant {
            run: Mutex::new(Some(run)),
            runtime,
            cell,
        });
        let raw = RawWaker::new(Arc::into_raw(dormant).cast(), &VTABLE);
        // SAFETY: `VTABLE`'s functions treat the pointer as the `Arc` it came from.
        unsafe { Waker::from_raw(raw) }
    }

    /// Whether `waker` is a dormant actor's whose runtime is `runtime`.
    pub(crate) fn runs_on(waker: &Waker, runtime: tokio::runtime::Id) -> bool {
        std::ptr::eq(waker.vtable(), &VTABLE)
            // SAFETY: a waker with this vtable holds an `Arc<Dormant>` (see `waker`).
            && unsafe { &*waker.data().cast::<Dormant>() }.runtime.id() == runtime
    }

    fn start(&self) {
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

// A vtable of our own (not `Wake`'s), so that a keeper can tell a dormant actor's waker from
// a task's and see its runtime (`Dormant::runs_on`).
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

unsafe fn clone(data: *const ()) -> RawWaker {
    // SAFETY: `data` is an `Arc<Dormant>`'s (see `Dormant::waker`); the clone owns one count.
    unsafe { Arc::increment_strong_count(data.cast::<Dormant>()) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: as in `clone`; waking consumes the waker's count.
    let dormant = unsafe { Arc::from_raw(data.cast::<Dormant>()) };
    dormant.start();
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: as in `clone`; the waker keeps its count.
    unsafe { &*data.cast::<Dormant>() }.start();
}

unsafe fn drop_waker(data: *const ()) {
    // SAFETY: as in `clone`; dropping the waker gives its count back.
    drop(unsafe { Arc::from_raw(data.cast::<Dormant>()) });
}

/// A number for a runtime's id, for a quick comparison in an atomic: the id's own (tokio's
/// `Id` hashes as the `u64` it holds).
pub(crate) fn runtime_number(id: tokio::runtime::Id) -> u64 {
    struct Number(u64);
    impl Hasher for Number {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }
    let mut number = Number(0);
    id.hash(&mut number);
    number.0
}

/// A task that never completes, whose drop (its runtime shutting down) drops the run loops
/// of the system's dormant actors on that runtime, as the runtime drops those of its tasks:
/// an actor's state (its sockets, files, children) goes with its runtime, woken or not.
pub(crate) struct Keeper {
    /// Called when the runtime drops this task.
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
