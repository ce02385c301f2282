//! An actor's run loop before its first wake-up: a boxed future, not yet a tokio task.
//!
//! Most actors of a large system sit idle most of the time: spawned, named, asked later or
//! never. A tokio task from the first moment costs the task's allocation, its entry in the
//! runtime's list of tasks, a schedule that may wake an idle worker through the kernel, and a
//! first poll that only finds the mailbox empty (on a 2-worker runtime, more than half of a
//! spawn's time went to that hand-over; docs/bench-log.md, "Actors start dormant"). So an actor
//! that has nothing to do when [`spawn`](crate::SpawnBuilder::spawn) returns starts dormant:
//! its run loop waits, boxed, as the waker in its mailbox's slot. Whatever the mailbox would
//! wake the task for (a message, a stop, a kill, a child's news) wakes this instead, which
//! spawns the task there and then, on the runtime the actor was spawned on.
//!
//! Every way into a run loop goes through its mailbox (a stop asked for in `on_start` does
//! not: such an actor starts as a task at once). A dormant actor woken to stop with nothing
//! left to handle (stopped or killed before any message) gets no task of its own either: its
//! last steps (`on_stop`, leaving the registry) run in a [`Keeper`] task, one a worker of
//! the runtime for each system, and only if they wait (children to stop, an `on_stop` that
//! awaits) do they move to a task. (One keeper for a runtime of several workers ran every
//! stop on one worker, where a task for each spread them over all: one a worker, taken in
//! turn, spreads them again; docs/bench-log.md, "Stops without a task, on every runtime".)
//!
//! A runtime that shuts down drops the run loops of its actors' tasks; its keepers do the
//! same for the dormant ones spawned on that runtime, and leave the other runtimes' alone.
//! A system that is dropped (no actor left, no handle) ends its keepers on every runtime.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

use crate::cell::erased::ErasedCell;

/// A run loop, boxed, as it waits to become a task.
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A dormant actor's run loop and where it will run; woken, it spawns the task (or hands
/// a stop to the keeper).
pub(crate) struct Dormant {
    run: Mutex<Option<RunFuture>>,
    keeping: Arc<Keeping>,
    /// For the task's abort handle and the mailbox's state (weak: the cell holds this waker).
    cell: Weak<dyn ErasedCell>,
}

impl Dormant {
    /// A waker that starts `run` on the keeper's runtime when woken; dropped unwoken, it
    /// drops `run`.
    pub(crate) fn waker(
        run: RunFuture,
        keeping: Arc<Keeping>,
        cell: Weak<dyn ErasedCell>,
    ) -> Waker {
        Self::waker_of(Self::new(run, keeping, cell))
    }

    fn new(run: RunFuture, keeping: Arc<Keeping>, cell: Weak<dyn ErasedCell>) -> Arc<Dormant> {
        Arc::new(Dormant {
            run: Mutex::new(Some(run)),
            keeping,
            cell,
        })
    }

    fn waker_of(dormant: Arc<Dormant>) -> Waker {
        Waker::from(dormant)
    }

    fn take_run(&self) -> Option<RunFuture> {
        self.run.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn start(&self) {
        let Some(run) = self.take_run() else { return };
        let cell = self.cell.upgrade();
        // Stopping with nothing to handle: the last steps, in a keeper.
        let run = match &cell {
            Some(cell) if cell.stops_at_once() => match self.keeping.finish(run, &self.cell) {
                Ok(()) => return,
                Err(run) => run,
            },
            _ => run,
        };
        self.keeping.spawn(run, cell.as_deref());
    }
}

// The standard library's waker for an `Arc`: the mailbox, not the waker, says a waker is a
// dormant actor's and which keeping (runtime) it belongs to (`Mailbox::take_dormant`), so no
// vtable of our own is needed to tell them apart.
impl Wake for Dormant {
    fn wake(self: Arc<Self>) {
        self.start();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.start();
    }
}

/// How many run loops were handed to a dormant waker (the tests' count).
#[cfg(test)]
pub(crate) static HIBERNATED: AtomicUsize = AtomicUsize::new(0);

/// What a test runs as the task of the actor whose cell is at the address given is about to
/// hand its run loop over (a message sent then races the hand-over).
#[cfg(test)]
pub(crate) type BeforeHibernating = Option<(usize, Box<dyn FnMut() + Send>)>;

#[cfg(test)]
pub(crate) static BEFORE_HIBERNATING: Mutex<BeforeHibernating> = Mutex::new(None);

#[cfg(test)]
fn before_hibernating(cell: &Arc<dyn ErasedCell>) {
    let mut hook = BEFORE_HIBERNATING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, run)) = hook.as_mut()
        && *at == Arc::as_ptr(cell).cast::<()>() as usize
    {
        run();
    }
}

/// Hands a run loop that hibernates ([`crate::run::hibernation`]) to a dormant waker in its
/// mailbox, in place of the waker of the task it ran in (which ends). If something came
/// since the run loop looked, the mailbox refuses, and the dormant waker is woken at once:
/// the run loop goes on in a task of its own, as it would at that message.
pub(crate) fn hibernate(run: RunFuture, keeping: Arc<Keeping>, cell: &Arc<dyn ErasedCell>) {
    let dormant = Dormant::new(run, keeping, Arc::downgrade(cell));
    // The ending task's abort handle goes first: kept in the cell, it would keep the task's
    // memory. The next task's is set when the dormant waker spawns it, which can only be
    // once the waker is in the mailbox (or woken below).
    let abort = cell.core().take_abort();
    #[cfg(test)]
    before_hibernating(cell);
    let on = dormant.keeping.number;
    match cell.hibernate(Dormant::waker_of(dormant.clone()), on) {
        Ok(()) => {
            #[cfg(test)]
            HIBERNATED.fetch_add(1, Ordering::Relaxed);
        }
        Err(waker) => {
            drop(waker);
            dormant.start();
        }
    }
    drop(abort);
}

/// What a system's dormant actors on one runtime share: the runtime, and the stops its
/// [`Keeper`] tasks run.
pub(crate) struct Keeping {
    runtime: tokio::runtime::Handle,
    /// What the mailboxes of its dormant actors say they belong to ([`Keeping::number`]).
    number: u32,
    /// A queue of stops for each keeper, one a worker.
    queues: Box<[Mutex<Queue>]>,
    /// The queue the next stop goes to, taken in turn.
    next: AtomicUsize,
}

#[derive(Default)]
struct Queue {
    stops: Vec<(RunFuture, Weak<dyn ErasedCell>)>,
    /// The keeper task's waker, while it waits for stops.
    waker: Option<Waker>,
    /// The keeper is gone (its runtime shut down; stops go to `runtime.spawn`, which drops
    /// them), or going (its system is gone).
    closed: bool,
}

/// The most stops a keeper runs in one poll before it lets the runtime's other tasks run.
const STOPS_A_POLL: usize = 64;

impl Keeping {
    /// A number for a new keeping, unique in the process (1 or more; 0 stands for a task's
    /// waker in a mailbox): what a dormant actor's mailbox names its keeping by, in the 4
    /// bytes its flags leave free.
    pub(crate) fn next_number() -> u32 {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .expect("more than 4 billion keepings (system and runtime pairs) in one process")
    }

    /// The keeping's number ([`Keeping::next_number`]).
    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    /// Starts the keepers of a system's dormant actors on `runtime`, one a worker; once all
    /// of them are gone (the runtime shut down, or [`end`](Self::end) ended them), `on_drop`
    /// runs.
    pub(crate) fn start(
        runtime: tokio::runtime::Handle,
        number: u32,
        on_drop: Box<dyn FnOnce() + Send + Sync>,
    ) -> Arc<Keeping> {
        let workers = runtime.metrics().num_workers().max(1);
        let keeping = Arc::new(Keeping {
            runtime,
            number,
            queues: (0..workers).map(|_| Mutex::default()).collect(),
            next: AtomicUsize::new(0),
        });
        let dropped = Arc::new(OnDrop(Some(on_drop)));
        for queue in 0..workers {
            keeping.runtime.spawn(Keeper {
                keeping: keeping.clone(),
                queue,
                _dropped: dropped.clone(),
            });
        }
        keeping
    }

    /// Spawns a run loop's task, whose abort handle its cell keeps (for a shutdown that
    /// times out). On a runtime that shut down, tokio drops `run` at once (as it did the
    /// tasks).
    fn spawn(&self, run: RunFuture, cell: Option<&dyn ErasedCell>) {
        let task = self.runtime.spawn(run);
        if let Some(cell) = cell {
            cell.core().set_abort(task.abort_handle());
        }
    }

    /// Queues a run loop that only has its last steps to run, for the keepers in turn;
    /// gives it back if that keeper is gone.
    fn finish(&self, run: RunFuture, cell: &Weak<dyn ErasedCell>) -> Result<(), RunFuture> {
        let at = match self.queues.len() {
            1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        let mut queue = self.lock(at);
        if queue.closed {
            return Err(run);
        }
        queue.stops.push((run, cell.clone()));
        let waker = queue.waker.take();
        drop(queue);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Ends the keepers: their system is gone. (No stop can come any more: every actor,
    /// dormant or queued here, holds its system.) Without this, a system made and dropped
    /// on a runtime that lives on would leave its keepers there for as long as it does.
    pub(crate) fn end(&self) {
        for at in 0..self.queues.len() {
            let waker = {
                let mut queue = self.lock(at);
                queue.closed = true;
                queue.waker.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    fn lock(&self, queue: usize) -> std::sync::MutexGuard<'_, Queue> {
        self.queues[queue].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs its function when dropped: what the last of a runtime's keepers to go does.
struct OnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A task, one a worker for each system and runtime, that runs the last steps of actors
/// stopped while dormant; when the runtime (shutting down) has dropped them all, the run
/// loops of the system's dormant actors on that runtime are dropped, as the runtime drops
/// those of its tasks: an actor's state (its sockets, files, children) goes with its
/// runtime, woken or not.
struct Keeper {
    keeping: Arc<Keeping>,
    /// Its queue in `keeping.queues`.
    queue: usize,
    /// Shared by the runtime's keepers: the last one dropped runs it.
    _dropped: Arc<OnDrop>,
}

impl Future for Keeper {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let stops = {
            let mut queue = self.keeping.lock(self.queue);
            if queue.stops.is_empty() {
                if queue.closed {
                    // Its system is gone (`Keeping::end`): the task ends.
                    return Poll::Ready(());
                }
                // A spike of stops is over: its room goes back (32 bytes a stop, 2 MiB
                // after 100,000 dormant actors stopped at once on two workers).
                if queue.stops.capacity() > 16 * STOPS_A_POLL {
                    queue.stops.shrink_to(STOPS_A_POLL);
                }
                match &mut queue.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            let from = queue.stops.len().saturating_sub(STOPS_A_POLL);
            queue.stops.split_off(from)
        };
        // Polled with a waker that does nothing: a run loop that waits goes to a task of its
        // own, whose first poll looks at everything again and registers the task's waker.
        let mut noop = Context::from_waker(Waker::noop());
        for (mut run, cell) in stops {
            let poll = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut unconstrained = tokio::task::coop::unconstrained(run.as_mut());
                Pin::new(&mut unconstrained).poll(&mut noop)
            }));
            match poll {
                Ok(Poll::Pending) => {
                    let cell = cell.upgrade();
                    if let Some(cell) = &cell {
                        cell.forget_waker();
                    }
                    self.keeping.spawn(run, cell.as_deref());
                }
                // Done, or it panicked (the run loop catches the actor's panics; one that got
                // out ends this actor as it would have ended its task).
                Ok(Poll::Ready(())) | Err(_) => {}
            }
        }
        // More may have come: look again after the runtime's other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let stops = {
            let mut queue = self.keeping.lock(self.queue);
            queue.closed = true;
            queue.waker = None;
            std::mem::take(&mut queue.stops)
        };
        drop(stops);
    }
}
