//! The capacity of a mailbox's user lanes: how many messages it holds, the limit, and the
//! senders waiting for room.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};

use super::config::MailboxConfig;
use crate::observe::changes::Mark;

/// The capacity of the user lanes and the senders waiting for room. Not generic, so that
/// type-erased refs can wait for room too.
///
/// How the queued messages are counted depends on the mailbox. A bounded one counts a
/// message as its place is reserved (a compare-and-swap against the limit) and uncounts it
/// as it is taken (a `fetch_sub`). An unbounded one has no limit to check, so it counts
/// without read-modify-write instructions: the senders count what they queue under the
/// lanes' lock they take anyway (a plain load and store), the actor's task counts what it
/// takes, alone; the number queued is the difference (two locked instructions less per
/// message; docs/bench-log.md, "Counting an unbounded mailbox"). An unbounded actor that hands its
/// asks on ([`Actor::HANDS_ON`](crate::Actor::HANDS_ON)) counts as a bounded one does: its
/// places are given back wherever its asks are answered, not by its task.
// In this order (`repr(C)`): the waiters' lock (touched only when the mailbox is full)
// first, then everything a send and a take touch, the counts, the limit and the flags,
// within 40 bytes; then the mark's flag, the mark's list last (read when the flag is set
// from clear, once between two looks). See docs/bench-log.md ("Field layout").
#[repr(C)]
pub struct Capacity {
    /// Senders waiting for room; `waiting` mirrors their number so the receiver can skip
    /// the lock. Allocated when a sender first waits (16 bytes in every cell, not 32).
    #[allow(clippy::box_collection)] // on purpose: the box is what most actors never allocate
    waiters: Mutex<Option<Box<Vec<Waker>>>>,
    /// Counted at reservation: user messages queued (including the receiver's local batch),
    /// not yet taken for handling. Counted at push: messages ever queued.
    len: AtomicUsize,
    /// Counted at push only: messages ever taken for handling or dropped unhandled, written
    /// by the actor's task alone.
    taken: AtomicUsize,
    limit: usize,
    waiting: AtomicUsize,
    closed: AtomicBool,
    /// Unbounded, and not [`Actor::HANDS_ON`](crate::Actor::HANDS_ON): see above.
    counted_at_push: bool,
    /// Set when the count changes or the mailbox closes: what a snapshot's look reads of
    /// this actor changed.
    pub(crate) mark: Mark,
}

impl Capacity {
    pub(super) fn new(config: MailboxConfig, mark: Mark, hands_on: bool) -> Self {
        let limit = config.capacity().unwrap_or(usize::MAX).max(1);
        Capacity {
            len: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            mark,
            limit,
            waiting: AtomicUsize::new(0),
            waiters: Mutex::new(None),
            closed: AtomicBool::new(false),
            counted_at_push: config == MailboxConfig::Unbounded && !hands_on,
        }
    }

    /// Waiting senders are woken when the count falls to this.
    fn low_water(&self) -> usize {
        self.limit - (self.limit / 4).max(1)
    }

    /// Takes a place without waiting. `None`: closed.
    #[inline]
    pub(crate) fn try_reserve(&self) -> Option<bool> {
        // SeqCst: see `close` (on x86 the same plain load as Acquire).
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        if self.limit == usize::MAX {
            self.reserve_past_limit();
            return Some(true);
        }
        // A CAS loop rather than add-then-undo: a temporary overshoot would make other
        // senders fail (and sleep) while there is room.
        let mut len = self.len.load(Ordering::SeqCst);
        loop {
            if len >= self.limit {
                return Some(false);
            }
            match self
                .len
                .compare_exchange_weak(len, len + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    self.mark.set();
                    return Some(true);
                }
                Err(now) => len = now,
            }
        }
    }

    /// Takes a place, registering `cx` to be woken when one frees up.
    ///
    /// An unbounded mailbox never makes its sender wait for room: a send to one spends a unit
    /// of the sending task's cooperative budget instead (tokio's, as its own channels' sends
    /// and receives do), so that a task sending in a loop yields now and then. Without it,
    /// such a loop kept its worker until it ended: the actor, woken into that worker's slot
    /// for the next task, which no other worker takes, ran only after it, with the whole
    /// backlog queued (two million messages, 64 MB; docs/bench-log.md, "An unbounded mailbox's
    /// sends yield").
    ///
    /// Always inlined into the tell or ask that reserves (a call of its own cost about 17
    /// instructions a message: docs/bench-log.md, "Calls the compiler kept apart").
    #[inline(always)]
    pub(crate) fn poll_reserve(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Closed>> {
        if self.limit == usize::MAX {
            std::task::ready!(tokio::task::coop::poll_proceed(cx)).made_progress();
        }
        match self.try_reserve() {
            None => Poll::Ready(Err(Closed)),
            Some(true) => Poll::Ready(Ok(())),
            Some(false) => self.wait_for_room(cx),
        }
    }

    /// [`poll_reserve`](Self::poll_reserve) found the mailbox full: registers `cx`, then
    /// looks again (out of line: the rare path).
    #[inline(never)]
    fn wait_for_room(&self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Closed>> {
        {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            let waiters = waiters.get_or_insert_with(Box::default);
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
                self.waiting.store(waiters.len(), Ordering::SeqCst);
            }
        }
        // Try again now that the receiver is sure to see us waiting.
        match self.try_reserve() {
            None => Poll::Ready(Err(Closed)),
            Some(true) => Poll::Ready(Ok(())),
            Some(false) => Poll::Pending,
        }
    }

    /// Gives back `n` places counted at reservation (messages taken for handling, in groups:
    /// see `runner::Ledger`; messages dropped unhandled; a reservation that was not used;
    /// an ask handed on, answered).
    ///
    /// Waiting senders are woken once the queue has drained to the low-water mark, all at
    /// once, rather than one per freed place: a sender that outpaces its actor then sends in
    /// bursts instead of paying a wake-up per message.
    pub(crate) fn give_back(&self, n: usize) {
        let prev = self.len.fetch_sub(n, Ordering::SeqCst);
        self.mark.set();
        if self.waiting.load(Ordering::SeqCst) > 0 && prev - n <= self.low_water() {
            self.wake_all();
        }
    }

    /// The actor's task took `n` messages for handling or dropped them unhandled (its run
    /// loop only: counted at push, it is the one writer of `taken`).
    #[inline]
    pub(crate) fn taken_by_actor(&self, n: usize) {
        if self.counted_at_push {
            let taken = self.taken.load(Ordering::Relaxed) + n;
            // Release: a reader that sees this count sees the pushes of what it counts.
            self.taken.store(taken, Ordering::Release);
            self.mark.set();
        } else {
            self.give_back(n);
        }
    }

    /// A reserved place was not used (the mailbox closed before the push): given back, if
    /// it was counted.
    pub(super) fn unreserve(&self) {
        if !self.counted_at_push {
            self.give_back(1);
        }
    }

    /// A message was queued: counted now if counted at push. Under the lanes' lock, which
    /// orders the senders: a plain load and store.
    #[inline]
    pub(super) fn count_push(&self) {
        if self.counted_at_push {
            let len = self.len.load(Ordering::Relaxed) + 1;
            self.len.store(len, Ordering::Release);
        }
    }

    /// After [`count_push`](Self::count_push), once the lanes' lock is released: the count
    /// changed, for the next snapshot's look (a count at reservation marked it there).
    #[inline]
    pub(super) fn mark_pushed(&self) {
        if self.counted_at_push {
            self.mark.set();
        }
    }

    /// Whether the capacity is closed (no more user messages).
    #[inline]
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Takes a place whatever the limit (an unbounded mailbox; an actor's message to itself,
    /// which bypasses it): counted now, unless counted at push.
    #[inline]
    pub(super) fn reserve_past_limit(&self) {
        if !self.counted_at_push {
            self.len.fetch_add(1, Ordering::Relaxed);
            self.mark.set();
        }
    }

    fn wake_all(&self) {
        let waiters = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            self.waiting.store(0, Ordering::SeqCst);
            waiters
                .as_deref_mut()
                .map(std::mem::take)
                .unwrap_or_default()
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Closes the capacity and wakes the senders waiting for room, once: a sender that
    /// registers after the first close finds it closed on its second look, so a stop that
    /// closes again (the seal after a graceful stop) has no one to wake. With no sender
    /// waiting, the waiters' lock is not taken (most actors stop so): a sender counts itself
    /// in `waiting` before its second look at `closed`, and the close sets `closed` before
    /// it reads `waiting`, all four `SeqCst`, so either the sender sees the mailbox closed
    /// or the close sees the sender waiting.
    pub(super) fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.mark.set();
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake_all();
        }
    }

    /// User messages queued (including the receiver's local batch), not yet taken.
    pub(crate) fn len(&self) -> usize {
        if self.counted_at_push {
            // `taken` first: what it counts was queued before it was taken, so the count of
            // pushes read after it is at least as large.
            let taken = self.taken.load(Ordering::Acquire);
            self.len.load(Ordering::Acquire).saturating_sub(taken)
        } else {
            self.len.load(Ordering::Relaxed)
        }
    }

    /// The most user messages queued (`usize::MAX`: unbounded).
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// The mailbox no longer takes user messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;
