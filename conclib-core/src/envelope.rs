//! Type-erased messages in a mailbox, stored without a heap allocation when small,
//! and the reusable slot their handler futures run in.
//!
//! Why this exists: a mailbox holds messages of many types, so they must be erased; the
//! obvious `Box<dyn ...>` costs an allocation per message and another per handler future.
//! Here a message of up to [`INLINE_WORDS`] words (with its reply sender) lives inside the
//! envelope, and handler futures are placed in one buffer per actor that is reused message
//! after message (an actor runs one handler at a time).

use std::alloc::{self, Layout};
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::{Context as TaskContext, Poll};

use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::context::Context;
use crate::error::{AskError, panic_message};
use crate::message::{Handler, Message};

/// How many machine words of message data an envelope stores inline.
pub(crate) const INLINE_WORDS: usize = 3;

pub(crate) type Inline = [MaybeUninit<usize>; INLINE_WORDS];

/// The sender half of an ask's reply.
pub(crate) type ReplyTx<M> =
    oneshot::Sender<Result<<M as Message>::Response, AskError<<M as Message>::Error>>>;

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
}

/// A message for actor `A`, of any type `A` handles.
pub(crate) struct Envelope<A: Actor> {
    data: Inline,
    vtable: &'static VTable<A>,
    /// When it was sent, for the time-in-mailbox metric (0 when metrics are off).
    sent: u64,
}

// SAFETY: the payload is a `(M, Option<ReplyTx<M>>)` with `M: Send`, or a box of one.
unsafe impl<A: Actor> Send for Envelope<A> {}

pub(crate) struct VTable<A: Actor> {
    /// Moves the payload out and places the handling future in the slot.
    handle: for<'a> unsafe fn(
        *const Inline,
        &'a mut A,
        &'a mut Context<A>,
        &'a mut FutureSlot,
    ) -> SlotFuture<'a>,
    /// Drops the payload unhandled.
    drop: unsafe fn(*mut Inline),
    /// The message's wire name, read from the payload (a dynamic request carries its own).
    pub(crate) name: unsafe fn(*const Inline) -> &'static str,
    /// The trace the message is part of (dynamic requests from another process; `None`:
    /// never part of one, so no call per message to say so).
    trace: Option<unsafe fn(*const Inline) -> Option<crate::trace::TraceContext>>,
    /// The message's type says its name (`name` does not read the payload): the vtable's
    /// address stands for the name ([`Envelope::type_key`]).
    named_by_type: bool,
    /// Drops the payload unhandled, answering an ask `MailboxFull` (evicted to make room).
    reject: unsafe fn(*mut Inline),
    /// Keeps `guard` until the ask inside is answered; gives it back for anything else.
    keep: unsafe fn(*const Inline, Kept) -> Option<Kept>,
}

/// Something kept alive until an ask is answered (see [`Envelope::keep_until_answered`]).
pub(crate) type Kept = Box<dyn std::any::Any + Send>;

unsafe fn keep_nothing(_: *const Inline, guard: Kept) -> Option<Kept> {
    Some(guard)
}

/// Whether a `T` fits in an envelope's inline storage.
const fn fits_inline<T>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<Inline>()
        && mem::align_of::<T>() <= mem::align_of::<Inline>()
}

/// Writes `value` into inline storage, boxing it first when it does not fit.
fn store<T>(value: T) -> Inline {
    let mut data: Inline = [MaybeUninit::uninit(); INLINE_WORDS];
    if fits_inline::<T>() {
        // SAFETY: size and alignment checked just above.
        unsafe { ptr::write(data.as_mut_ptr().cast::<T>(), value) };
    } else {
        let boxed = Box::into_raw(Box::new(value));
        // SAFETY: a pointer always fits in one word.
        unsafe { ptr::write(data.as_mut_ptr().cast::<*mut T>(), boxed) };
    }
    data
}

/// Moves the `T` that [`store`] wrote out of `data`.
///
/// # Safety
/// `data` must hold a `T` written by [`store`] and not yet taken.
unsafe fn take<T>(data: *const Inline) -> T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` is stored inline.
        unsafe { ptr::read(data.cast::<T>()) }
    } else {
        // SAFETY: the caller guarantees a boxed `T` is stored.
        unsafe { *Box::from_raw(ptr::read(data.cast::<*mut T>())) }
    }
}

struct TypedVTable<A, M>(PhantomData<(A, M)>);

impl<A: Handler<M>, M: Message> TypedVTable<A, M> {
    const VTABLE: VTable<A> = VTable {
        handle: handle_typed::<A, M>,
        drop: drop_payload::<(M, Option<ReplyTx<M>>)>,
        name: typed_name::<M>,
        trace: None,
        named_by_type: true,
        reject: reject_typed::<M>,
        keep: keep_nothing,
    };
}

unsafe fn reject_typed<M: Message>(data: *mut Inline) {
    // SAFETY: forwarded from `Envelope::reject`: the payload is an `(M, reply)` not yet taken.
    let (msg, reply) = unsafe { take::<(M, Option<ReplyTx<M>>)>(data) };
    drop(msg);
    if let Some(reply) = reply {
        let _ = reply.send(Err(AskError::MailboxFull));
    }
}

unsafe fn typed_name<M: Message>(_: *const Inline) -> &'static str {
    M::name()
}

unsafe fn drop_payload<T>(data: *mut Inline) {
    // SAFETY: forwarded from `Envelope::drop`: the payload is a `T` not yet taken.
    drop(unsafe { take::<T>(data) });
}

unsafe fn handle_typed<'a, A: Handler<M>, M: Message>(
    data: *const Inline,
    actor: &'a mut A,
    ctx: &'a mut Context<A>,
    slot: &'a mut FutureSlot,
) -> SlotFuture<'a> {
    // SAFETY: this function is only in the vtable of envelopes built by `Envelope::typed::<M>`.
    let (msg, reply) = unsafe { take::<(M, Option<ReplyTx<M>>)>(data) };
    slot.put(Handling::<_, _, M> {
        inner: CatchUnwind(Lazy::Start(move || actor.handle(msg, ctx))),
        reply,
    })
}

impl<A: Actor> Envelope<A> {
    /// Wraps a message and, for an ask, its reply sender.
    pub(crate) fn typed<M: Message>(msg: M, reply: Option<ReplyTx<M>>) -> Self
    where
        A: Handler<M>,
    {
        Envelope {
            data: store((msg, reply)),
            vtable: &TypedVTable::<A, M>::VTABLE,
            sent: crate::metrics::stamp(),
        }
    }

    /// Wraps a payload of type `T` with a hand-made vtable (dynamic requests).
    pub(crate) fn with_vtable<T>(payload: T, vtable: &'static VTable<A>) -> Self {
        Envelope {
            data: store(payload),
            vtable,
            sent: crate::metrics::stamp(),
        }
    }

    /// Takes the message back out of an envelope that was never handled.
    pub(crate) fn into_message<M: Message>(self) -> M
    where
        A: Handler<M>,
    {
        let this = ManuallyDrop::new(self);
        // SAFETY: only called on envelopes just built by `typed::<M>`; `this` is never dropped.
        let (msg, _reply) = unsafe { take::<(M, Option<ReplyTx<M>>)>(&raw const this.data) };
        msg
    }

    /// Takes the payload back out of an envelope built by [`Envelope::with_vtable`] with a `T`.
    ///
    /// # Safety
    /// The envelope must hold a `T`.
    pub(crate) unsafe fn into_payload<T>(self) -> T {
        let this = ManuallyDrop::new(self);
        // SAFETY: the caller guarantees the type; `this` is never dropped.
        unsafe { take::<T>(&raw const this.data) }
    }

    /// When it was sent ([`crate::metrics`]' stamp; 0 when metrics were off).
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Keeps `guard` until the ask inside is answered (a dynamic ask: its answer may come
    /// long after its handler returned, from a relay); gives it back for anything else.
    pub(crate) fn keep_until_answered(&self, guard: Kept) -> Option<Kept> {
        // SAFETY: the envelope still owns its payload.
        unsafe { (self.vtable.keep)(&raw const self.data, guard) }
    }

    /// Drops the message unhandled to make room for another: an ask fails with
    /// `MailboxFull`, a tell is dropped.
    pub(crate) fn reject(self) {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the payload is taken exactly once: `this` is never dropped.
        unsafe { (this.vtable.reject)(&raw mut this.data) }
    }

    /// The trace the message is part of, if any.
    pub(crate) fn trace(&self) -> Option<crate::trace::TraceContext> {
        // SAFETY: the envelope still owns its payload.
        self.vtable
            .trace
            .and_then(|trace| unsafe { trace(&raw const self.data) })
    }

    /// What stands for the message's type in an actor's metrics without asking its name:
    /// the vtable's address when the type alone names the message, else 0. Two envelopes
    /// with the same key hold messages of the same name (the vtable holds the function
    /// that names them; merged vtables are identical ones).
    #[inline]
    pub(crate) fn type_key(&self) -> usize {
        if self.vtable.named_by_type {
            std::ptr::from_ref(self.vtable) as usize
        } else {
            0
        }
    }

    /// The wire name of the message inside.
    pub(crate) fn name(&self) -> &'static str {
        // SAFETY: the envelope still owns its payload.
        unsafe { (self.vtable.name)(&raw const self.data) }
    }

    /// Starts handling the message: the returned future runs the handler in `slot`.
    pub(crate) fn handle<'a>(
        self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        slot: &'a mut FutureSlot,
    ) -> SlotFuture<'a> {
        let this = ManuallyDrop::new(self);
        // SAFETY: the payload is taken exactly once: `this` is never dropped.
        unsafe { (this.vtable.handle)(&raw const this.data, actor, ctx, slot) }
    }
}

/// The signature of a vtable's handle function.
pub(crate) type HandleFn<A> = for<'a> unsafe fn(
    *const Inline,
    &'a mut A,
    &'a mut Context<A>,
    &'a mut FutureSlot,
) -> SlotFuture<'a>;

impl<A: Actor> VTable<A> {
    /// A vtable for payloads of type `T`, handled by `handle`, dropped by `drop` (which must
    /// take the `T` out with [`take_payload`]).
    pub(crate) const fn new(
        handle: HandleFn<A>,
        drop: unsafe fn(*mut Inline),
        name: unsafe fn(*const Inline) -> &'static str,
        trace: unsafe fn(*const Inline) -> Option<crate::trace::TraceContext>,
        reject: unsafe fn(*mut Inline),
        keep: unsafe fn(*const Inline, Kept) -> Option<Kept>,
    ) -> Self {
        VTable {
            handle,
            drop,
            name,
            trace: Some(trace),
            named_by_type: false,
            reject,
            keep,
        }
    }
}

/// Borrows the `T` stored in an envelope payload (for hand-made vtables).
///
/// # Safety
/// `data` must hold a `T` written by [`store`] and not yet taken, and outlive the borrow.
pub(crate) unsafe fn payload_ref<'a, T>(data: *const Inline) -> &'a T {
    if fits_inline::<T>() {
        // SAFETY: the caller guarantees a `T` is stored inline.
        unsafe { &*data.cast::<T>() }
    } else {
        // SAFETY: the caller guarantees a boxed `T` is stored.
        unsafe { &**data.cast::<*const T>() }
    }
}

/// Moves the `T` stored in an envelope payload out (for hand-made vtables).
///
/// # Safety
/// As for [`take`].
pub(crate) unsafe fn take_payload<T>(data: *const Inline) -> T {
    // SAFETY: forwarded.
    unsafe { take::<T>(data) }
}

impl<A: Actor> Drop for Envelope<A> {
    fn drop(&mut self) {
        // SAFETY: an envelope that was not handled still owns its payload.
        unsafe { (self.vtable.drop)(&raw mut self.data) }
    }
}

/// Where an actor's handler futures live: one heap buffer, grown to the largest future
/// seen and reused for every message after that.
pub(crate) struct FutureSlot {
    ptr: NonNull<u8>,
    /// The buffer's size and alignment: 8 bytes, not a `Layout`'s 16 (the slot lives in
    /// every actor's run future).
    size: u32,
    align: u32,
}

// SAFETY: the slot only ever holds `Send` futures, and `SlotFuture` borrows it mutably.
unsafe impl Send for FutureSlot {}
// SAFETY: no shared access to the contents is ever given out.
unsafe impl Sync for FutureSlot {}

impl FutureSlot {
    pub(crate) const fn new() -> Self {
        FutureSlot {
            ptr: NonNull::dangling(),
            size: 0,
            align: 1,
        }
    }

    fn layout(&self) -> Layout {
        // SAFETY: built from a valid layout's size and alignment in `put`.
        unsafe { Layout::from_size_align_unchecked(self.size as usize, self.align as usize) }
    }

    /// Places `fut` in the slot; the returned guard polls it and drops it in place.
    pub(crate) fn put<'a, F>(&'a mut self, fut: F) -> SlotFuture<'a>
    where
        F: Future<Output = Outcome> + Send + 'a,
    {
        let need = Layout::new::<F>();
        let at: *mut F = if need.size() == 0 {
            NonNull::<F>::dangling().as_ptr()
        } else {
            let have = self.layout();
            if need.size() > have.size() || need.align() > have.align() {
                let layout = Layout::from_size_align(
                    need.size().max(have.size()),
                    need.align().max(have.align()),
                )
                .expect("future layout overflow");
                let (Ok(size), Ok(align)) =
                    (u32::try_from(layout.size()), u32::try_from(layout.align()))
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
            }
            self.ptr.as_ptr().cast::<F>()
        };
        // SAFETY: `at` is valid for a write of `F`: big and aligned enough, or dangling for a ZST.
        unsafe { ptr::write(at, fut) };
        let fut: *mut (dyn Future<Output = Outcome> + Send + 'a) = at;
        SlotFuture {
            fut,
            _slot: PhantomData,
        }
    }

    fn release(&mut self) {
        if self.size != 0 {
            // SAFETY: allocated in `put` with this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout()) };
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

/// A handler future running in a [`FutureSlot`]; dropped in place when done or cancelled.
pub(crate) struct SlotFuture<'a> {
    fut: *mut (dyn Future<Output = Outcome> + Send + 'a),
    _slot: PhantomData<&'a mut FutureSlot>,
}

// SAFETY: the future inside is `Send` and owned by this guard.
unsafe impl Send for SlotFuture<'_> {}

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
        // SAFETY: the future was written in `put` and is dropped only here.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ptr::drop_in_place(fut) }));
    }
}

/// Runs one handler: creates its future on the first poll and polls it, catching panics,
/// then sends the result to the asker.
struct Handling<C, F, M: Message> {
    inner: CatchUnwind<Lazy<C, F>>,
    reply: Option<ReplyTx<M>>,
}

impl<C, F, M> Future for Handling<C, F, M>
where
    C: FnOnce() -> F,
    F: Future<Output = Result<M::Response, M::Error>>,
    M: Message,
{
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
        // SAFETY: `inner` is structurally pinned; `reply` is not.
        let this = unsafe { self.get_unchecked_mut() };
        // Nobody waits for the answer any more: do not start the work (one atomic load).
        if this.inner.0.is_unstarted() && this.reply.as_ref().is_some_and(|r| r.is_closed()) {
            this.inner.0 = Lazy::Finished;
            return Poll::Ready(Outcome::Skipped);
        }
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let result = match std::task::ready!(inner.poll(cx)) {
            Ok(result) => result,
            Err(message) => {
                if let Some(reply) = this.reply.take() {
                    let _ = reply.send(Err(AskError::Panicked(message.clone())));
                }
                return Poll::Ready(Outcome::Panicked(message));
            }
        };
        Poll::Ready(match (this.reply.take(), result) {
            (Some(reply), Ok(response)) => {
                // The asker may have given up (timeout); that is not the actor's failure.
                let _ = reply.send(Ok(response));
                Outcome::Done
            }
            (Some(reply), Err(e)) => {
                let error = format!("{e:?}");
                let _ = reply.send(Err(AskError::Handler(e)));
                Outcome::Refused(error)
            }
            (None, Ok(_)) => Outcome::Done,
            (None, Err(e)) => Outcome::Failed(format!("{e:?}")),
        })
    }
}

/// A future created from `C` on its first poll, so that creating it (running the
/// synchronous part of a hook) happens inside the panic guard too.
pub(crate) enum Lazy<C, F> {
    Start(C),
    Running(F),
    Finished,
}

impl<C, F> Lazy<C, F> {
    /// Whether the future has not been created yet.
    pub(crate) fn is_unstarted(&self) -> bool {
        matches!(self, Lazy::Start(_))
    }
}

impl<C: FnOnce() -> F, F: Future> Future for Lazy<C, F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        // SAFETY: `Running(F)` is structurally pinned and never moved out; the closure is not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        if let Lazy::Start(_) = this {
            let Lazy::Start(create) = mem::replace(this, Lazy::Finished) else {
                unreachable!()
            };
            *this = Lazy::Running(create());
        }
        let Lazy::Running(fut) = this else {
            panic!("Lazy polled after completion")
        };
        // SAFETY: see above.
        let out = std::task::ready!(unsafe { Pin::new_unchecked(fut) }.poll(cx));
        *this = Lazy::Finished;
        Poll::Ready(out)
    }
}

/// A future that catches panics of `F`, for lifecycle hooks.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field.
        let fut = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_are_inline_and_large_are_boxed() {
        assert!(fits_inline::<(u64, Option<oneshot::Sender<u64>>)>());
        assert!(!fits_inline::<[u64; 8]>());
        let data = store([7u64; 8]);
        // SAFETY: just stored.
        assert_eq!(unsafe { take::<[u64; 8]>(&raw const data) }, [7u64; 8]);
        let data = store(String::from("x"));
        // SAFETY: just stored.
        assert_eq!(unsafe { take::<String>(&raw const data) }, "x");
    }

    #[test]
    fn slot_grows_and_reuses() {
        let mut slot = FutureSlot::new();
        let small = slot.put(async { Outcome::Done });
        drop(small);
        let big = [0u8; 4096];
        let f = slot.put(async move {
            let _keep = big;
            Outcome::Done
        });
        drop(f);
        assert!(slot.size >= 4096);
        let before = slot.ptr;
        drop(slot.put(async { Outcome::Done }));
        assert_eq!(before, slot.ptr, "a smaller future reuses the buffer");
    }
}
