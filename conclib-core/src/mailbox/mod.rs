//! An actor's mailbox: a control lane, a high-priority lane and a normal lane behind one
//! lock, a capacity shared by the user lanes, and the receiving end the run loop drains in
//! batches.
//!
//! Why not three tokio channels: each would allocate its first block eagerly (memory per
//! idle actor) and the receiver would poll all three for every message. Here senders take
//! the lock once per message; the receiver takes it once per *batch*: it swaps the whole
//! normal lane out (or pops the one message there) and checks one atomic flag per message
//! for priority traffic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};

use parking_lot::Mutex;

use crate::actor::Actor;
use crate::message::Priority;
use crate::observe::changes::Mark;
use crate::run::envelope::Envelope;

pub(crate) mod capacity;
pub(crate) mod config;
pub(crate) mod control;

pub use capacity::Capacity;
pub(crate) use config::MailboxConfig;
use control::Control;

struct Lanes<A: Actor> {
    /// The control and high lanes, allocated at their first message: most actors never
    /// get one (8 bytes in every actor's cell, not 64).
    priority: Option<Box<PriorityLanes<A>>>,
    normal: VecDeque<Envelope<A>>,
    /// The run loop's waker, registered when it waits for mail (`for_mail`) or while a
    /// handler is pending (a kill wakes it). One slot for both: the run loop is never in
    /// the two at once, and a waker left from waiting for mail does for a handler too.
    waker: Option<Waker>,
    /// The waker is a dormant actor's ([`crate::run::dormant`]): the number of the keeping
    /// (a system's dormant actors on one runtime) it belongs to; 0 for a task's. Set with the
    /// waker, cleared whenever another takes its place or it is taken (in the padding after
    /// the flags: no byte more an actor).
    dormant_on: u32,
    /// The waker is there for mail: a sender takes it. (Without it, only a kill does.)
    /// A dormant actor's ([`crate::run::dormant`]) is, and waking it spawns the task.
    for_mail: bool,
    /// No more user messages (stop was asked for); control still flows.
    closed: bool,
    /// The actor is gone: nothing is taken any more.
    dead: bool,
    /// What the hibernation sweeps saw ([`crate::run::hibernation`]): [`USED`], [`UNUSED`] or
    /// [`ASKED`].
    idle: u8,
}

/// Something was queued since the last sweep (every push sets it).
const USED: u8 = 0;
/// Nothing was queued since the last sweep.
const UNUSED: u8 = 1;
/// Nothing was queued for a whole sweep period: the run loop hibernates at its next empty
/// look ([`Next::Hibernate`]).
const ASKED: u8 = 2;

impl<A: Actor> Lanes<A> {
    /// The control and high lanes, allocated at their first message.
    fn priority_lanes(&mut self) -> &mut PriorityLanes<A> {
        self.priority.get_or_insert_with(PriorityLanes::new)
    }
}

struct PriorityLanes<A: Actor> {
    control: VecDeque<Control>,
    high: VecDeque<Envelope<A>>,
}

impl<A: Actor> PriorityLanes<A> {
    fn new() -> Box<Self> {
        Box::new(PriorityLanes {
            control: VecDeque::new(),
            high: VecDeque::new(),
        })
    }
}

/// The most messages an empty queue keeps room for once its actor has nothing to do: a
/// burst grows both buffers (the lane senders fill and the batch the actor works through)
/// to its size, and they would keep it for as long as the actor lives (a mailbox that once
/// held a million 32-byte envelopes: 64 MB; one that held 48: 2 KB in every actor that
/// ever had such a burst; docs/bench-log.md, "An actor that has run"). A buffer over this is
/// freed when its actor finds nothing more to do: the next burst grows a new one.
const KEPT_IDLE: usize = 16;

/// The most messages a batch's buffer keeps room for when it goes back to the senders while
/// the actor works, beyond four times what the actor takes now: an actor that keeps up
/// with batches of about the same size swaps the same two buffers, with no allocation.
const KEPT_BUSY: usize = 64;

/// An empty queue's buffer, taken out to be freed if it is over [`KEPT_IDLE`].
fn shrunk<T>(queue: &mut VecDeque<T>) -> Option<VecDeque<T>> {
    (queue.capacity() > KEPT_IDLE).then(|| std::mem::take(queue))
}

/// What the receiver got.
pub(crate) enum Next<A: Actor> {
    Control(Control),
    Message(Envelope<A>),
    /// Closed and empty: a graceful stop is due.
    Drained,
    /// Empty, its waker registered, and asked to hibernate ([`crate::run::hibernation`]): the
    /// run loop gives back what it can, and its parts go into a new run loop that waits in
    /// a dormant waker.
    Hibernate,
}

// In this order (`repr(C)`): the lanes and the capacity's count, which every send and take
// touch, the rarely written flags after them. Left to the compiler, the order changed
// whenever `Capacity` changed size (docs/bench-log.md, "Field layout"). The capacity first
// (its waiters' lock, touched only when the mailbox is full, next to the cell's quiet
// fields) put its count 64 bytes before the lanes' lock, not 88 after: bounded tell 30%
// slower in four alternated rounds ("Every actor 138 bytes smaller").
#[repr(C)]
pub(crate) struct Mailbox<A: Actor> {
    /// `parking_lot`'s lock: no poisoning to check at each lock and unlock (nothing panics
    /// under it), 17 instructions fewer a lock and unlock than the standard library's, two
    /// of them a ring hop (docs/bench-log.md, "Calls the compiler kept apart").
    lanes: Mutex<Lanes<A>>,
    pub(crate) capacity: Capacity,
    /// The control or high lane may be non-empty: the receiver must look under the lock.
    priority_pending: AtomicBool,
    /// A kill was asked for: the running handler is dropped at its next poll.
    killed: AtomicBool,
    /// The receiver's waker is registered and nothing was queued since: its next empty
    /// look returns without the lock (see [`Mailbox::poll_next`]). Set by the receiver
    /// under the lock, cleared under the lock by whoever takes the waker.
    armed: AtomicBool,
    /// The actor is at work: it took a message and has not waited for mail since (a
    /// handler runs or waits, or a batch is under way). Written by the run loop when it
    /// starts on mail and when it waits for more; read by a pool's least-loaded routing,
    /// which counts a member at work as loaded (a long handler, a tell, or an ask whose
    /// asker gave up is in neither the queue nor the pool's own count). Kept for a pool's
    /// members alone ([`WORK_UNTRACKED`] otherwise, which the run loop reads once into its
    /// ledger): other actors pay a branch on a field of their own task a wake-up.
    work: AtomicU8,
}

/// [`Mailbox::work`]'s states.
const WORK_UNTRACKED: u8 = 0;
const WORK_IDLE: u8 = 1;
const WORK_BUSY: u8 = 2;

impl<A: Actor> Mailbox<A> {
    /// `mark`: where the actor lists itself when it changes (see [`crate::observe::changes`]).
    pub(crate) fn new(config: MailboxConfig, mark: Mark) -> Self {
        Mailbox {
            lanes: Mutex::new(Lanes {
                priority: None,
                normal: VecDeque::new(),
                waker: None,
                dormant_on: 0,
                for_mail: false,
                closed: false,
                dead: false,
                idle: USED,
            }),
            priority_pending: AtomicBool::new(false),
            capacity: Capacity::new(config, mark, A::HANDS_ON),
            killed: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            work: AtomicU8::new(WORK_UNTRACKED),
        }
    }

    /// Keeps track of whether the actor is at work (a pool's member, from its spawn).
    pub(crate) fn track_work(&self) {
        self.work.store(WORK_IDLE, Ordering::Relaxed);
    }

    /// Whether [`track_work`](Self::track_work) was called: read once by the run loop.
    pub(crate) fn tracks_work(&self) -> bool {
        self.work.load(Ordering::Relaxed) != WORK_UNTRACKED
    }

    /// Whether the actor is at work (see the field; `false` where untracked); read from
    /// other threads, so only a hint of the moment.
    pub(crate) fn is_working(&self) -> bool {
        self.work.load(Ordering::Relaxed) == WORK_BUSY
    }

    /// The run loop of an actor whose work is tracked: it starts on mail (`true`) or waits
    /// for more (`false`).
    #[inline]
    pub(crate) fn set_working(&self, working: bool) {
        let state = if working { WORK_BUSY } else { WORK_IDLE };
        self.work.store(state, Ordering::Relaxed);
    }

    /// Whether a kill was asked for (checked at every poll of a running handler).
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Registers the run loop's waker while a handler is pending; returns whether a kill
    /// came in meanwhile (checked after registering, so none is missed).
    pub(crate) fn park_handler(&self, waker: &Waker) -> bool {
        // A waker still there for mail stays so: a sender wakes the task once (the handler
        // is polled again, and registers again), as a kill would.
        let mut guard = self.lock();
        let lanes = &mut *guard;
        match &mut lanes.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => {
                *slot = Some(waker.clone());
                lanes.dormant_on = 0;
            }
        }
        drop(guard);
        self.killed.load(Ordering::SeqCst)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Lanes<A>> {
        self.lanes.lock()
    }

    /// Takes the receiver's waker out, to wake it once the lock is released.
    fn take_receiver(&self, lanes: &mut Lanes<A>) -> Option<Waker> {
        if !lanes.for_mail {
            return None;
        }
        lanes.for_mail = false;
        self.armed.store(false, Ordering::Release);
        lanes.dormant_on = 0;
        lanes.waker.take()
    }

    /// Leaves a dormant actor's waker ([`crate::run::dormant`]) where the run loop's would be, for
    /// the first sender (or stop, or kill) to take. Gives it back if the actor has something
    /// to do already (its `on_start` sent it a message, or it was asked to stop): it must
    /// start now.
    pub(crate) fn register_dormant(&self, waker: Waker, on: u32) -> Result<(), Waker> {
        let mut lanes = self.lock();
        if lanes.closed
            || lanes.waker.is_some()
            || !lanes.normal.is_empty()
            || self.priority_pending.load(Ordering::Acquire)
            || self.killed.load(Ordering::Acquire)
        {
            return Err(waker);
        }
        lanes.waker = Some(waker);
        lanes.dormant_on = on;
        lanes.for_mail = true;
        // Not armed: the task's first look takes the lock and registers its own waker.
        Ok(())
    }

    /// A dormant actor was woken to stop with nothing left to handle: killed, or closed
    /// with no message queued (a closed mailbox takes none). Its run loop only has its last
    /// steps to run ([`crate::run::dormant`]).
    pub(crate) fn stops_at_once(&self) -> bool {
        if self.killed.load(Ordering::Acquire) {
            return true;
        }
        let lanes = self.lock();
        lanes.closed
            && lanes.normal.is_empty()
            && lanes
                .priority
                .as_deref()
                .is_none_or(|p| p.high.is_empty() && p.control.is_empty())
    }

    /// Drops whatever waker the run loop left (the keeper's, which does nothing) as it
    /// moves to a task of its own: that task's first look then takes the lock and registers
    /// its waker, rather than finding the mailbox armed for the old one.
    pub(crate) fn forget_waker(&self) {
        let mut lanes = self.lock();
        let waker = self.take_waker(&mut lanes);
        drop(lanes);
        drop(waker);
    }

    /// A hibernation sweep's look ([`crate::run::hibernation`]): asks a run loop that waits for
    /// mail, and was sent nothing since the last sweep, to hibernate (it is woken to do
    /// so); marks the others unused for the next sweep. Returns whether it asked.
    pub(crate) fn sweep(&self) -> bool {
        let mut lanes = self.lock();
        let unused = std::mem::replace(&mut lanes.idle, UNUSED) != USED;
        if !(unused && self.task_waits_for_mail(&lanes)) {
            return false;
        }
        lanes.idle = ASKED;
        let receiver = self.take_receiver(&mut lanes);
        drop(lanes);
        if let Some(w) = receiver {
            w.wake();
        }
        true
    }

    /// Whether the actor's task waits for mail with nothing queued: its waker (not a
    /// dormant actor's) registered for mail, which whoever queues anything takes.
    fn task_waits_for_mail(&self, lanes: &Lanes<A>) -> bool {
        lanes.for_mail
            && !lanes.closed
            && lanes.normal.is_empty()
            && !self.priority_pending.load(Ordering::Acquire)
            && !self.killed.load(Ordering::Acquire)
            && lanes.waker.is_some()
            && lanes.dormant_on == 0
    }

    /// Puts a dormant actor's waker ([`crate::run::dormant`]) in place of its task's, if that is
    /// still there waiting for mail with nothing queued (registered by the run loop's last
    /// look, which found the mailbox empty; whoever queues anything takes it): the task may
    /// end, and the next message spawns another. Gives `dormant` back otherwise (something
    /// came since the run loop looked).
    pub(crate) fn hibernate(&self, dormant: Waker, on: u32) -> Result<(), Waker> {
        let mut lanes = self.lock();
        if !self.task_waits_for_mail(&lanes) {
            return Err(dormant);
        }
        let old = lanes.waker.replace(dormant);
        lanes.dormant_on = on;
        // Not armed: the next task's first look takes the lock and registers its own waker.
        self.armed.store(false, Ordering::Release);
        drop(lanes);
        drop(old);
        Ok(())
    }

    /// Whether the actor is dormant: its run loop waits in a dormant waker, with no task.
    #[cfg(test)]
    pub(crate) fn is_dormant(&self) -> bool {
        let lanes = self.lock();
        lanes.waker.is_some() && lanes.dormant_on != 0
    }

    /// Takes a dormant actor's waker out, unwoken, if it runs on `runtime` (which shut
    /// down): dropped, it drops the run loop.
    pub(crate) fn take_dormant(&self, on: u32) -> Option<Waker> {
        let mut lanes = self.lock();
        if lanes.waker.is_some() && lanes.dormant_on == on {
            self.take_receiver(&mut lanes)
        } else {
            None
        }
    }

    /// Takes the run loop's waker out, whatever it waits for (a kill).
    fn take_waker(&self, lanes: &mut Lanes<A>) -> Option<Waker> {
        let waker = self.take_receiver(lanes).or_else(|| lanes.waker.take());
        lanes.dormant_on = 0;
        waker
    }

    /// Registers the receiver's waker (a clone only if another is there) and arms the
    /// empty look.
    fn register_receiver(&self, lanes: &mut Lanes<A>, waker: &Waker) {
        match &mut lanes.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => {
                *slot = Some(waker.clone());
                lanes.dormant_on = 0;
            }
        }
        lanes.for_mail = true;
        self.armed.store(true, Ordering::Release);
    }

    /// Queues a user message whose place was reserved. Gives it back if the mailbox closed.
    ///
    /// Always inlined (into each tell and ask): left to the compiler it stayed a call of its
    /// own, whose entry and exit cost about 20 instructions a message (docs/bench-log.md, "Calls
    /// the compiler kept apart").
    #[inline(always)]
    pub(crate) fn push_reserved(
        &self,
        env: Envelope<A>,
        priority: Priority,
    ) -> Result<(), Envelope<A>> {
        let mut lanes = self.lock();
        if lanes.closed {
            drop(lanes);
            self.capacity.unreserve();
            return Err(env);
        }
        self.capacity.count_push();
        lanes.idle = USED;
        match priority {
            // Room for one at first (see `tight`).
            Priority::Normal => crate::tight::push_back(&mut lanes.normal, env),
            Priority::High => {
                lanes.priority_lanes().high.push_back(env);
                self.priority_pending.store(true, Ordering::Release);
            }
        }
        let receiver = self.take_receiver(&mut lanes);
        drop(lanes);
        self.capacity.mark_pushed();
        if let Some(w) = receiver {
            w.wake();
        }
        Ok(())
    }

    /// Takes the oldest normal-lane message still in the shared queue out, to make room for
    /// another (its place in the capacity passes to the newcomer). `None` if there is none:
    /// the receiver has taken every queued message into its current batch, or they are
    /// all high-priority (never evicted).
    pub(crate) fn evict_oldest(&self) -> Option<Envelope<A>> {
        let mut lanes = self.lock();
        if lanes.closed {
            return None;
        }
        lanes.normal.pop_front()
    }

    /// Queues a user message past the capacity limit (an actor's message to itself, which
    /// must never wait on its own mailbox).
    pub(crate) fn push_forced(
        &self,
        env: Envelope<A>,
        priority: Priority,
    ) -> Result<(), Envelope<A>> {
        if self.capacity.is_closed() {
            return Err(env);
        }
        self.capacity.reserve_past_limit();
        self.push_reserved(env, priority)
    }

    /// Queues a control message. `false` if the actor is gone. A kill also interrupts the
    /// running handler at its next `.await`.
    pub(crate) fn push_control(&self, c: Control) -> Result<(), Control> {
        let mut lanes = self.lock();
        if lanes.dead {
            return Err(c);
        }
        let waker = if matches!(c, Control::Kill) {
            self.killed.store(true, Ordering::SeqCst);
            self.take_waker(&mut lanes)
        } else {
            self.take_receiver(&mut lanes)
        };
        lanes.priority_lanes().control.push_back(c);
        lanes.idle = USED;
        self.priority_pending.store(true, Ordering::Release);
        drop(lanes);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Refuses new user messages; queued ones will still be handled.
    pub(crate) fn close(&self) {
        let receiver = {
            let mut lanes = self.lock();
            if lanes.closed {
                return;
            }
            lanes.closed = true;
            self.take_receiver(&mut lanes)
        };
        self.capacity.close();
        if let Some(w) = receiver {
            w.wake();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.capacity.is_closed()
    }

    /// Marks the actor gone and returns everything still queued, to be dropped by the caller
    /// (outside the lock: dropping fails pending asks).
    pub(crate) fn seal(&self, batch: &mut VecDeque<Envelope<A>>) -> Vec<Envelope<A>> {
        let mut lanes = self.lock();
        lanes.closed = true;
        lanes.dead = true;
        // Most actors stop with nothing queued: no draining then (about 130 instructions).
        let mut left: Vec<Envelope<A>> = Vec::new();
        if !batch.is_empty() {
            left.extend(batch.drain(..));
        }
        if let Some(priority) = lanes.priority.as_deref_mut() {
            left.extend(priority.high.drain(..));
            priority.control.clear();
        }
        if !lanes.normal.is_empty() {
            left.extend(lanes.normal.drain(..));
        }
        drop(self.take_receiver(&mut lanes));
        drop(lanes);
        self.capacity.close();
        left
    }

    /// The receiver's side: the next control message, then high, then normal.
    /// `batch` is the run loop's local queue of normal messages taken in one go.
    ///
    /// One task polls this, always with its own waker: the empty look that finds the
    /// mailbox armed returns without the lock, relying on the waker registered earlier.
    /// The receiver registers when it finds nothing, and also when it takes a lane that
    /// held one message (a request and its answer, a token passed around a ring: the
    /// next look is most likely empty, and registering now, under the lock it holds
    /// anyway, saves taking it again). A sender that queues anything takes the waker and
    /// disarms the look under the same lock, so no message is missed: either the look
    /// sees the flag cleared, or the sender's wake-up follows and the task polls again.
    #[inline]
    pub(crate) fn poll_next(
        &self,
        batch: &mut VecDeque<Envelope<A>>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Next<A>> {
        if !self.priority_pending.load(Ordering::Acquire) {
            if let Some(env) = batch.pop_front() {
                return Poll::Ready(Next::Message(env));
            }
            if self.armed.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        self.poll_lanes(batch, cx)
    }

    /// [`poll_next`](Self::poll_next) under the lock: priority traffic, or the batch is
    /// done. Inlined into the run loop: an actor that keeps up (a ring's token, a request
    /// and its answer) comes here once a message, and the call cost 7 instructions a ring
    /// hop, with a tell 11 fewer besides (docs/bench-log.md, "Calls the compiler kept apart").
    #[inline]
    fn poll_lanes(
        &self,
        batch: &mut VecDeque<Envelope<A>>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Next<A>> {
        let mut lanes = self.lock();
        if let Some(priority) = lanes.priority.as_deref_mut() {
            if let Some(c) = priority.control.pop_front() {
                self.priority_pending.store(
                    !priority.control.is_empty() || !priority.high.is_empty(),
                    Ordering::Release,
                );
                return Poll::Ready(Next::Control(c));
            }
            if let Some(env) = priority.high.pop_front() {
                self.priority_pending
                    .store(!priority.high.is_empty(), Ordering::Release);
                return Poll::Ready(Next::Message(env));
            }
            // Only set with a priority lane there (which is never freed).
            self.priority_pending.store(false, Ordering::Release);
        }
        if let Some(env) = batch.pop_front() {
            return Poll::Ready(Next::Message(env));
        }
        if lanes.normal.len() == 1 {
            // One message (an actor that keeps up): taken straight from the lane, whose
            // buffer the senders write; the batch's stays as it is.
            let env = lanes.normal.pop_front().expect("one message queued");
            if !lanes.closed {
                self.register_receiver(&mut lanes, cx.waker());
            }
            return Poll::Ready(Next::Message(env));
        }
        if !lanes.normal.is_empty() {
            // The batch's buffer goes to the senders: not one a burst grew far past what
            // comes now (see `KEPT_BUSY`).
            let spare = (batch.capacity() > KEPT_BUSY.max(4 * lanes.normal.len()))
                .then(|| std::mem::take(batch));
            std::mem::swap(batch, &mut lanes.normal);
            // Not once closed: the next look must find the mailbox drained.
            if batch.len() == 1 && !lanes.closed {
                self.register_receiver(&mut lanes, cx.waker());
            }
            drop(lanes);
            drop(spare);
            let env = batch.pop_front().expect("swapped a non-empty lane");
            return Poll::Ready(Next::Message(env));
        }
        if lanes.closed {
            return Poll::Ready(Next::Drained);
        }
        self.register_receiver(&mut lanes, cx.waker());
        if lanes.idle == ASKED {
            // Hibernating: both buffers go back, whatever their size.
            lanes.idle = UNUSED;
            let spare = (std::mem::take(batch), std::mem::take(&mut lanes.normal));
            drop(lanes);
            drop(spare);
            return Poll::Ready(Next::Hibernate);
        }
        // Nothing to do: what a burst grew goes back, freed outside the lock.
        let spare = (shrunk(batch), shrunk(&mut lanes.normal));
        drop(lanes);
        drop(spare);
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
