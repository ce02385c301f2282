//! The reusable slot an actor's handler futures run in.
//!
//! Why this exists: the obvious `Box<dyn Future>` per handler costs an allocation per
//! message. Handler futures are placed in one buffer per actor instead, reused message after
//! message (an actor runs one handler at a time), and one done at its first poll (most are)
//! is dropped in place where its type is known.
//!
//! # Safety
//!
//! The buffer (`ptr`, `size`, `align`) is always one `alloc::alloc` made with that layout,
//! or dangling with size 0; a future is written at its start only if it fits its size and
//! alignment (`place`), and a `&mut FutureSlot` is held by whoever runs the future in it
//! (`start`, then the [`SlotFuture`] that borrows the slot): so at most one future lives in
//! the buffer, it never moves (pinned in place), and it is dropped exactly once, in `start`
//! when done at its first poll or by the `SlotFuture` otherwise. `SlotFuture::erase` drops
//! that borrow for the run loop, which keeps the same promise by hand (`run/mod.rs`).
//! `Send`: only `Send` futures are placed. What it buys (BENCHMARKS.md, "Unsafe code"): with
//! an allocation a message instead, tell 0.84x, fan-in 0.83x, ring 0.41x. Checked by the
//! tests below and the crate's tests under AddressSanitizer.

use std::alloc::{self, Layout};
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::{Context as TaskContext, Poll};

/// What handling one message came to, for the run loop.
pub(crate) enum Outcome {
    /// Handled; any response was sent.
    Done,
    /// A told message's handler returned an error nobody is waiting for.
    Failed(String),
    /// An ask's handler returned an error; the asker has it.
    Refused(String),
    /// The handler panicked; the asker (if any) was told.
    Panicked(String),
    /// An ask whose asker had already given up (timed out, or dropped its future): the
    /// handler was never started.
    Skipped,
    /// An ask's handler dropped at an `.await` because its asker gave up, at an actor that
    /// opts in ([`Actor::CANCEL_ON_TIMEOUT`](crate::Actor::CANCEL_ON_TIMEOUT)).
    Cancelled,
}

/// The largest buffer an idle actor keeps: most handlers' futures fit (a handler done at
/// once, or waiting on a reply or two), and are placed with no allocation message after
/// message; a larger one (a kilobyte held across an `.await`) costs an allocation each time
/// its actor wakes from idle, and no memory while it sleeps (docs/bench-log.md, "An actor that
/// has run").
const KEPT_IDLE: usize = 256;

/// Bytes held by every slot's buffer in this process (tests only: what an idle actor keeps).
#[cfg(test)]
pub(crate) static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Where an actor's handler futures live: one heap buffer, grown to the largest future
/// seen and reused for every message after that, until the actor is idle
/// ([`shrink_idle`](FutureSlot::shrink_idle)).
pub(crate) struct FutureSlot {
    ptr: NonNull<u8>,
    /// The buffer's size and alignment: 8 bytes, not a `Layout`'s 16 (the slot lives in
    /// every actor's run future).
    size: u32,
    align: u32,
}

// SAFETY: the slot only ever holds `Send` futures, and `SlotFuture` borrows it mutably.
unsafe impl Send for FutureSlot {}

impl FutureSlot {
    pub(crate) const fn new() -> Self {
        FutureSlot {
            ptr: NonNull::dangling(),
            size: 0,
            align: 1,
        }
    }

    /// The buffer's layout (its size and alignment came from one in `grow`).
    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size as usize, self.align as usize)
            .expect("the layout `grow` made")
    }

    /// Places `fut` in the slot and polls it once. A handler done at its first poll (most
    /// are) is dropped in place at once, where its type is known: no call through a vtable
    /// to poll it or to drop it. One that waits stays in the slot, polled and dropped through
    /// the returned [`SlotFuture`].
    #[inline]
    pub(crate) fn start<'a, F>(&'a mut self, fut: F, cx: &mut TaskContext<'_>) -> Started<'a>
    where
        F: Future<Output = Outcome> + Send + 'a,
    {
        let at = self.place::<F>();
        // SAFETY: `at` is valid for a write of `F`: big and aligned enough, or dangling for a
        // ZST.
        unsafe { ptr::write(at, fut) };
        // SAFETY: the future stays where it is until it is dropped, here or by the guard.
        match unsafe { Pin::new_unchecked(&mut *at) }.poll(cx) {
            Poll::Ready(outcome) => {
                if matches!(outcome, Outcome::Panicked(_)) {
                    // What the panic left may panic again as it drops: not through the run
                    // loop.
                    // SAFETY: written above, done, and dropped only here.
                    let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ptr::drop_in_place(at) }));
                } else {
                    // A handler done without a panic holds nothing whose drop runs user code
                    // (`Handling` and `GuardedRequest` have dropped the handler's future and
                    // sent or dropped the reply).
                    // SAFETY: as above.
                    unsafe { ptr::drop_in_place(at) };
                }
                Started::Done(outcome)
            }
            Poll::Pending => {
                let fut: *mut (dyn Future<Output = Outcome> + Send + 'a) = at;
                Started::Waiting(SlotFuture {
                    fut,
                    _slot: PhantomData,
                })
            }
        }
    }

    /// Where an `F` goes: the buffer, grown first if `F` does not fit (dangling for a ZST).
    #[inline]
    fn place<F>(&mut self) -> *mut F {
        let need = Layout::new::<F>();
        if need.size() == 0 {
            return NonNull::<F>::dangling().as_ptr();
        }
        if need.size() > self.size as usize || need.align() > self.align as usize {
            self.grow(need);
        }
        self.ptr.as_ptr().cast::<F>()
    }

    /// Makes the buffer big and aligned enough for `need` (out of line: once per actor and
    /// size of future, not once per message).
    #[inline(never)]
    fn grow(&mut self, need: Layout) {
        let have = self.layout();
        let layout =
            Layout::from_size_align(need.size().max(have.size()), need.align().max(have.align()))
                .expect("future layout overflow");
        let (Ok(size), Ok(align)) = (u32::try_from(layout.size()), u32::try_from(layout.align()))
        else {
            panic!("a handler's future of {} bytes", layout.size())
        };
        self.release();
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        self.ptr = ptr;
        self.size = size;
        self.align = align;
        #[cfg(test)]
        HELD.fetch_add(size as usize, std::sync::atomic::Ordering::Relaxed);
    }

    /// The actor has nothing to do: a buffer grown past [`KEPT_IDLE`] goes back (the next
    /// handler that large makes a new one). Without this, an actor that once ran one large
    /// handler would keep its buffer for life.
    #[inline]
    pub(crate) fn shrink_idle(&mut self) {
        if self.size as usize > KEPT_IDLE {
            self.release();
        }
    }

    /// Frees the buffer, whatever its size (an actor that hibernates).
    pub(crate) fn release(&mut self) {
        if self.size != 0 {
            // SAFETY: allocated in `grow` with this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout()) };
            #[cfg(test)]
            HELD.fetch_sub(self.size as usize, std::sync::atomic::Ordering::Relaxed);
            // Field by field: assigning a whole slot would drop (and release) this one.
            self.ptr = NonNull::dangling();
            self.size = 0;
            self.align = 1;
        }
    }
}

impl Drop for FutureSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// What a handler's first poll came to ([`FutureSlot::start`]).
pub(crate) enum Started<'a> {
    /// Done at its first poll, and dropped already.
    Done(Outcome),
    /// It waits, in the slot.
    Waiting(SlotFuture<'a>),
}

/// A handler future running in a [`FutureSlot`]; dropped in place when done or cancelled.
pub(crate) struct SlotFuture<'a> {
    fut: *mut (dyn Future<Output = Outcome> + Send + 'a),
    _slot: PhantomData<&'a mut FutureSlot>,
}

// SAFETY: the future inside is `Send` and owned by this guard.
unsafe impl Send for SlotFuture<'_> {}

impl SlotFuture<'_> {
    /// The same guard, with its borrows no longer tracked.
    ///
    /// # Safety
    /// What the future borrows (the actor, its context, the slot) must stay in place and go
    /// unused by anything else until the guard is dropped.
    pub(crate) unsafe fn erase(self) -> SlotFuture<'static> {
        let this = ManuallyDrop::new(self);
        // SAFETY: the caller keeps the borrows valid; only the lifetime changes.
        let fut: *mut (dyn Future<Output = Outcome> + Send + 'static) =
            unsafe { mem::transmute(this.fut) };
        SlotFuture {
            fut,
            _slot: PhantomData,
        }
    }
}

impl Future for SlotFuture<'_> {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
        // SAFETY: the future never moves: it stays in the slot until this guard drops it.
        let fut = self.fut;
        unsafe { Pin::new_unchecked(&mut *fut) }.poll(cx)
    }
}

impl Drop for SlotFuture<'_> {
    fn drop(&mut self) {
        // A panic in a future's destructor must not unwind through the run loop.
        let fut = self.fut;
        // SAFETY: the future was written in `start`, has not finished, and is dropped only here.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ptr::drop_in_place(fut) }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops.
    struct Count(Arc<AtomicUsize>);

    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn slot_grows_and_reuses() {
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        let mut slot = FutureSlot::new();
        assert!(matches!(
            slot.start(async { Outcome::Done }, &mut cx),
            Started::Done(Outcome::Done)
        ));
        let big = [0u8; 4096];
        let started = slot.start(
            async move {
                let _keep = big;
                std::future::pending::<()>().await;
                Outcome::Done
            },
            &mut cx,
        );
        assert!(matches!(started, Started::Waiting(_)));
        drop(started);
        assert!(slot.size >= 4096);
        let before = slot.ptr;
        assert!(matches!(
            slot.start(async { Outcome::Done }, &mut cx),
            Started::Done(_)
        ));
        assert_eq!(before, slot.ptr, "a smaller future reuses the buffer");
    }

    /// Starts, in `slot`, a handler done at once whose future holds `bytes`.
    fn done_holding<const N: usize>(slot: &mut FutureSlot, bytes: [u8; N]) {
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        let started = slot.start(
            async move {
                let _keep = bytes;
                Outcome::Done
            },
            &mut cx,
        );
        assert!(matches!(started, Started::Done(Outcome::Done)));
    }

    /// An idle actor keeps a small buffer and gives back one a large future grew.
    #[test]
    fn an_idle_slot_keeps_a_small_buffer_and_gives_back_a_large_one() {
        let mut slot = FutureSlot::new();
        done_holding(&mut slot, [1u8; 64]);
        let kept = slot.ptr;
        slot.shrink_idle();
        assert!(slot.size >= 64);
        assert_eq!(slot.ptr, kept, "a small buffer stays");
        done_holding(&mut slot, [2u8; 4096]);
        assert!(slot.size >= 4096);
        slot.shrink_idle();
        assert_eq!(slot.size, 0, "a large buffer goes back");
        // And the slot still works.
        done_holding(&mut slot, [3u8; 8]);
    }

    #[test]
    fn a_handler_done_at_once_is_dropped_at_once_one_that_waits_by_its_guard() {
        let mut cx = TaskContext::from_waker(std::task::Waker::noop());
        let mut slot = FutureSlot::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let count = Count(drops.clone());
        let started = slot.start(
            async move {
                let _count = count;
                Outcome::Done
            },
            &mut cx,
        );
        assert!(matches!(started, Started::Done(Outcome::Done)));
        drop(started);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        let count = Count(drops.clone());
        let started = slot.start(
            async move {
                let _count = count;
                std::future::pending::<()>().await;
                Outcome::Done
            },
            &mut cx,
        );
        let Started::Waiting(mut waiting) = started else {
            panic!("a pending future is done")
        };
        assert!(Pin::new(&mut waiting).poll(&mut cx).is_pending());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(waiting);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }
}
