//! Type-erased messages in a mailbox, stored without a heap allocation when small, and
//! how one is handled (its future runs in the actor's [`FutureSlot`]).
//!
//! Why this exists: a mailbox holds messages of many types, so they must be erased; the
//! obvious `Box<dyn ...>` costs an allocation per message and another per handler future.
//! Here a message lives inside the envelope when it is small: a tell's message of up to 24
//! bytes, an ask's of up to 16 (beside its reply sender); 8 bytes less each while metrics are
//! on, the send stamp taking the last word.
//!
//! # Safety
//!
//! The unsafe code here (storing a payload in the envelope's words or a box, reading and
//! moving it out through the vtable's functions) rests on one invariant: **an envelope's
//! payload is read only as the type it was stored as, and moved out at most once.** The
//! first half holds because an envelope is only made by `Envelope::build::<P>`, which pairs
//! the payload with `VTableOf::<A, P>`, the vtable made from `P`'s [`Carried`] impl (there is
//! no hand-made vtable), and `into_payload` checks the payload's `TypeId` before it takes it.
//! The second holds because every function that takes the payload (handle, reject, drop,
//! `into_payload`) runs on an envelope wrapped in `ManuallyDrop` or in its `Drop`. `Send`:
//! every `Carried` type is `Send`. What it buys (BENCHMARKS.md, "Unsafe code"):
//! with the payload always boxed, tell 0.88x and ring 0.86x in an alternated A/B. Checked by
//! the tests below and the crate's tests under AddressSanitizer.

use std::any::TypeId;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;
use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::context::Context;
use crate::error::AskError;
use crate::handler::Handler;
use crate::message::Message;
use crate::run::future_slot::Outcome;
use crate::run::future_slot::{FutureSlot, Started};
use crate::run::guarded::{CatchUnwind, Lazy};

/// How many 8-byte words of message data an envelope holds: the payload in all three, or
/// in the first two and the send stamp in the last (recording on), or a box of it.
pub(crate) const INLINE_WORDS: usize = 3;

pub(crate) type Inline = [MaybeUninit<u64>; INLINE_WORDS];

/// The sender half of an ask's reply.
pub(crate) type ReplyTx<M> =
    oneshot::Sender<Result<<M as Message>::Response, AskError<<M as Message>::Error>>>;

/// A message for actor `A`, of any type `A` handles: 32 bytes, so that a mailbox's queue
/// holds two in a cache line (40 bytes with a stamp field of its own: unbounded tell about
/// 12% slower, the backlog's memory being the cost there; docs/bench-log.md).
pub(crate) struct Envelope<A: Actor> {
    data: Inline,
    /// The vtable's address, its lowest bit set when the last word of `data` holds the send
    /// stamp (recording was on when it was sent): the payload then has two words, not three.
    vtable: NonNull<VTable<A>>,
}

// SAFETY: the payload is a `Carried` type (`Send`: a tell's message, an ask's and its reply
// sender, a by-name request), or a box of one; the vtable is `'static` and only read.
unsafe impl<A: Actor> Send for Envelope<A> {}

/// Where an envelope's payload is, for its vtable's functions: inline in its first `words`
/// words (2 or 3), or boxed. Only read through (a payload is moved out with `ptr::read`).
#[derive(Clone, Copy)]
pub(crate) struct Payload {
    data: *const Inline,
    words: usize,
}

impl Payload {
    /// Whether a `T` lies inline in `words` words (else a box of it does). Known when
    /// compiled for every `T` but those of 17 to 24 bytes, which need all three.
    #[inline(always)]
    const fn inline<T>(words: usize) -> bool {
        const WORD: usize = mem::size_of::<u64>();
        if mem::align_of::<T>() > mem::align_of::<Inline>()
            || mem::size_of::<T>() > INLINE_WORDS * WORD
        {
            false
        } else if mem::size_of::<T>() <= (INLINE_WORDS - 1) * WORD {
            true
        } else {
            words == INLINE_WORDS
        }
    }
}

struct VTable<A: Actor> {
    /// Moves the payload out and places the handling future in the slot.
    handle: HandleFn<A>,
    /// Drops the payload unhandled.
    drop: unsafe fn(Payload),
    /// The message's wire name, read from the payload (a dynamic request carries its own).
    name: unsafe fn(Payload) -> &'static str,
    /// The trace the message is part of (dynamic requests from another process; `None`:
    /// never part of one, so no call per message to say so).
    trace: Option<unsafe fn(Payload) -> Option<crate::observe::trace::TraceContext>>,
    /// The message's type says its name (`name` does not read the payload): the vtable's
    /// address stands for the name ([`Envelope::type_key`]).
    named_by_type: bool,
    /// Drops the payload unhandled, answering an ask `MailboxFull` (evicted to make room).
    reject: unsafe fn(Payload),
    /// Keeps `guard` until the ask inside is answered; gives it back for anything else.
    keep: unsafe fn(Payload, Kept) -> Option<Kept>,
    /// The payload's type, to take it back out ([`Envelope::into_payload`]).
    payload_type: fn() -> TypeId,
}

pub(crate) use crate::dynamic::request_cell::Kept;

/// What an envelope carries for actor `A`: a tell's message ([`TellOf`]), an ask's
/// ([`AskOf`]) or a dynamic request. Its vtable ([`VTableOf`]) is made from this trait, one
/// per payload type, so an envelope's payload is only ever read as the type it was stored
/// as: the one invariant the unsafe code below relies on.
pub(crate) trait Carried<A: Actor>: Send + Sized + 'static {
    /// The type alone names the message: [`name`](Self::name) reads nothing.
    const NAMED_BY_TYPE: bool;
    /// The payload may be part of a trace ([`trace`](Self::trace) is asked).
    const TRACED: bool;
    /// The message's wire name.
    fn name(&self) -> &'static str;
    /// The trace the message is part of.
    fn trace(&self) -> Option<crate::observe::trace::TraceContext> {
        None
    }
    /// Keeps `guard` until the ask inside is answered; gives it back for anything else.
    fn keep(&self, guard: Kept) -> Option<Kept> {
        Some(guard)
    }
    /// Dropped unhandled: the actor is gone.
    fn drop_unhandled(self) {}
    /// Dropped unhandled to make room: an ask hears `MailboxFull`.
    fn reject(self);
    /// Starts handling: the handler runs in `slot`, polled once with `cx`.
    fn handle<'a>(
        self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        slot: &'a mut FutureSlot,
        cx: &mut TaskContext<'_>,
    ) -> Started<'a>;
}

/// A tell's payload: the message.
pub(crate) struct TellOf<M>(M);

/// An ask's payload: the message and the sender of its answer.
pub(crate) struct AskOf<M: Message>(M, ReplyTx<M>);

impl<A: Handler<M>, M: Message> Carried<A> for TellOf<M> {
    const NAMED_BY_TYPE: bool = true;
    const TRACED: bool = false;
    fn name(&self) -> &'static str {
        M::name()
    }
    fn reject(self) {}
    #[inline(always)]
    fn handle<'a>(
        self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        slot: &'a mut FutureSlot,
        cx: &mut TaskContext<'_>,
    ) -> Started<'a> {
        handle_typed(self.0, None, actor, ctx, slot, cx)
    }
}

impl<A: Handler<M>, M: Message> Carried<A> for AskOf<M> {
    const NAMED_BY_TYPE: bool = true;
    const TRACED: bool = false;
    fn name(&self) -> &'static str {
        M::name()
    }
    fn reject(self) {
        let _ = self.1.send(Err(AskError::MailboxFull));
    }
    #[inline(always)]
    fn handle<'a>(
        self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        slot: &'a mut FutureSlot,
        cx: &mut TaskContext<'_>,
    ) -> Started<'a> {
        handle_typed(self.0, Some(self.1), actor, ctx, slot, cx)
    }
}

#[inline(always)]
fn handle_typed<'a, A: Handler<M>, M: Message>(
    msg: M,
    reply: Option<ReplyTx<M>>,
    actor: &'a mut A,
    ctx: &'a mut Context<A>,
    slot: &'a mut FutureSlot,
    cx: &mut TaskContext<'_>,
) -> Started<'a> {
    slot.start(
        Handling::<_, _, M, A> {
            inner: CatchUnwind::new(Lazy::Start {
                create: move || actor.handle(msg, ctx),
            }),
            reply,
            actor: PhantomData,
        },
        cx,
    )
}

/// Writes `value` into the first `words` words of `data`, boxing it first when it does not
/// fit.
fn store<T>(data: &mut Inline, words: usize, value: T) {
    if Payload::inline::<T>(words) {
        // SAFETY: size and alignment checked just above.
        unsafe { ptr::write(data.as_mut_ptr().cast::<T>(), value) };
    } else {
        let boxed = Box::into_raw(Box::new(value));
        // SAFETY: a pointer always fits in one 8-byte word.
        unsafe { ptr::write(data.as_mut_ptr().cast::<*mut T>(), boxed) };
    }
}

/// Moves the `T` that [`store`] wrote out of `at`.
///
/// # Safety
/// `at` must hold a `T` written by [`store`] with its number of words, not yet taken.
unsafe fn take<T>(at: Payload) -> T {
    if Payload::inline::<T>(at.words) {
        // SAFETY: the caller guarantees a `T` is stored inline.
        unsafe { ptr::read(at.data.cast::<T>()) }
    } else {
        // SAFETY: the caller guarantees a boxed `T` is stored.
        unsafe { *Box::from_raw(ptr::read(at.data.cast::<*mut T>())) }
    }
}

/// The vtable of payloads of type `P`.
struct VTableOf<A, P>(PhantomData<(A, P)>);

impl<A: Actor, P: Carried<A>> VTableOf<A, P> {
    const VTABLE: VTable<A> = VTable {
        handle: handle_as::<A, P>,
        drop: drop_as::<A, P>,
        name: name_as::<A, P>,
        trace: if P::TRACED {
            Some(trace_as::<A, P>)
        } else {
            None
        },
        named_by_type: P::NAMED_BY_TYPE,
        reject: reject_as::<A, P>,
        keep: keep_as::<A, P>,
        payload_type: TypeId::of::<P>,
    };
}

// The vtable's functions. # Safety (all of them): `at` holds a `P` stored by `store` and not
// yet taken: true of an envelope built by `Envelope::build::<P>` with `VTableOf::<A, P>`,
// the only way one is made, as long as the envelope owns its payload (each function that
// takes it is called once, on an envelope that is then forgotten).

/// # Safety
/// See above.
unsafe fn handle_as<'a, A: Actor, P: Carried<A>>(
    at: Payload,
    actor: &'a mut A,
    ctx: &'a mut Context<A>,
    slot: &'a mut FutureSlot,
    cx: &mut TaskContext<'_>,
) -> Started<'a> {
    // SAFETY: see above.
    unsafe { take::<P>(at) }.handle(actor, ctx, slot, cx)
}

/// # Safety
/// See above.
unsafe fn drop_as<A: Actor, P: Carried<A>>(at: Payload) {
    // SAFETY: see above.
    unsafe { take::<P>(at) }.drop_unhandled();
}

/// # Safety
/// See above.
unsafe fn reject_as<A: Actor, P: Carried<A>>(at: Payload) {
    // SAFETY: see above.
    unsafe { take::<P>(at) }.reject();
}

/// # Safety
/// See above; the payload outlives the call.
unsafe fn name_as<A: Actor, P: Carried<A>>(at: Payload) -> &'static str {
    // SAFETY: see above.
    unsafe { payload_ref::<P>(at) }.name()
}

/// # Safety
/// See above; the payload outlives the call.
unsafe fn trace_as<A: Actor, P: Carried<A>>(
    at: Payload,
) -> Option<crate::observe::trace::TraceContext> {
    // SAFETY: see above.
    unsafe { payload_ref::<P>(at) }.trace()
}

/// # Safety
/// See above; the payload outlives the call.
unsafe fn keep_as<A: Actor, P: Carried<A>>(at: Payload, guard: Kept) -> Option<Kept> {
    // SAFETY: see above.
    unsafe { payload_ref::<P>(at) }.keep(guard)
}

impl<A: Actor> Envelope<A> {
    /// Wraps a message and, for an ask, its reply sender.
    #[inline]
    pub(crate) fn typed<M: Message>(msg: M, reply: Option<ReplyTx<M>>) -> Self
    where
        A: Handler<M>,
    {
        Self::typed_at(msg, reply, crate::observe::metrics::stamp())
    }

    /// [`typed`](Self::typed), with this send stamp (0: none).
    #[inline]
    pub(crate) fn typed_at<M: Message>(msg: M, reply: Option<ReplyTx<M>>, stamp: u64) -> Self
    where
        A: Handler<M>,
    {
        match reply {
            None => Self::build(TellOf(msg), stamp),
            Some(reply) => Self::build(AskOf(msg, reply), stamp),
        }
    }

    /// Wraps another kind of payload (a dynamic request).
    pub(crate) fn carrying<P: Carried<A>>(payload: P) -> Self {
        Self::build(payload, crate::observe::metrics::stamp())
    }

    /// A payload with its vtable and the send stamp (0: none, recording was off): in three
    /// words without one, in two beside one.
    #[inline]
    fn build<P: Carried<A>>(payload: P, stamp: u64) -> Self {
        let mut data: Inline = [MaybeUninit::uninit(); INLINE_WORDS];
        let vtable = NonNull::from(&VTableOf::<A, P>::VTABLE);
        let vtable = if stamp == 0 {
            store(&mut data, INLINE_WORDS, payload);
            vtable
        } else {
            store(&mut data, INLINE_WORDS - 1, payload);
            data[INLINE_WORDS - 1] = MaybeUninit::new(stamp);
            vtable.map_addr(|a| a | 1)
        };
        Envelope { data, vtable }
    }

    /// The vtable.
    #[inline]
    fn vtable(&self) -> &'static VTable<A> {
        // SAFETY: built from a `&'static VTable<A>` (its address aligned, so the tag bit
        // was 0).
        unsafe { &*self.vtable.as_ptr().map_addr(|a| a & !1) }
    }

    /// Whether the last word holds the send stamp.
    #[inline]
    fn stamped(&self) -> bool {
        self.vtable.addr().get() & 1 != 0
    }

    /// Where the payload is.
    #[inline]
    fn payload(&self) -> Payload {
        Payload {
            data: &raw const self.data,
            words: INLINE_WORDS - usize::from(self.stamped()),
        }
    }

    /// Takes the message back out of an envelope that was never handled.
    pub(crate) fn into_message<M: Message>(self) -> M
    where
        A: Handler<M>,
    {
        match self.into_payload::<TellOf<M>>() {
            Ok(TellOf(msg)) => msg,
            Err(env) => match env.into_payload::<AskOf<M>>() {
                Ok(AskOf(msg, _)) => msg,
                Err(_) => unreachable!("an envelope of {} holds another message", M::name()),
            },
        }
    }

    /// Takes the payload back out if it is a `P`; gives the envelope back otherwise.
    pub(crate) fn into_payload<P: Carried<A>>(self) -> Result<P, Self> {
        if (self.vtable().payload_type)() != TypeId::of::<P>() {
            return Err(self);
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: the vtable is `VTableOf::<A, P>`'s (its payload type is `P`): the payload
        // is a `P`, not yet taken; `this` is never dropped.
        Ok(unsafe { take::<P>(this.payload()) })
    }

    /// When it was sent ([`crate::metrics`]' stamp; 0 when metrics were off).
    #[inline]
    pub(crate) fn sent(&self) -> u64 {
        if self.stamped() {
            // SAFETY: a stamped envelope's last word was written with the stamp.
            unsafe { self.data[INLINE_WORDS - 1].assume_init() }
        } else {
            0
        }
    }

    /// Keeps `guard` until the ask inside is answered (a dynamic ask: its answer may come
    /// long after its handler returned, from a relay); gives it back for anything else.
    pub(crate) fn keep_until_answered(&self, guard: Kept) -> Option<Kept> {
        // SAFETY: the envelope still owns its payload.
        unsafe { (self.vtable().keep)(self.payload(), guard) }
    }

    /// Drops the message unhandled to make room for another: an ask fails with
    /// `MailboxFull`, a tell is dropped.
    pub(crate) fn reject(self) {
        let this = ManuallyDrop::new(self);
        let at = this.payload();
        // SAFETY: the payload is taken exactly once: `this` is never dropped.
        unsafe { (this.vtable().reject)(at) }
    }

    /// The trace the message is part of, if any.
    #[inline]
    pub(crate) fn trace(&self) -> Option<crate::observe::trace::TraceContext> {
        // SAFETY: the envelope still owns its payload.
        self.vtable()
            .trace
            .and_then(|trace| unsafe { trace(self.payload()) })
    }

    /// What stands for the message's type in an actor's metrics without asking its name:
    /// the vtable's address when the type alone names the message, else 0. Two envelopes
    /// with the same key hold messages of the same name (the vtable holds the function
    /// that names them; merged vtables are identical ones).
    #[inline]
    pub(crate) fn type_key(&self) -> usize {
        let vtable = self.vtable();
        if vtable.named_by_type {
            std::ptr::from_ref(vtable) as usize
        } else {
            0
        }
    }

    /// The wire name of the message inside.
    pub(crate) fn name(&self) -> &'static str {
        // SAFETY: the envelope still owns its payload.
        unsafe { (self.vtable().name)(self.payload()) }
    }

    /// Starts handling the message: its handler runs in `slot`, polled once here with `cx`
    /// (see [`FutureSlot::start`]).
    #[inline]
    pub(crate) fn handle<'a>(
        self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        slot: &'a mut FutureSlot,
        cx: &mut TaskContext<'_>,
    ) -> Started<'a> {
        let this = ManuallyDrop::new(self);
        let at = this.payload();
        // SAFETY: the payload is taken exactly once: `this` is never dropped.
        unsafe { (this.vtable().handle)(at, actor, ctx, slot, cx) }
    }
}

/// The signature of a vtable's handle function.
type HandleFn<A> = for<'a, 'c, 'w> unsafe fn(
    Payload,
    &'a mut A,
    &'a mut Context<A>,
    &'a mut FutureSlot,
    &'c mut TaskContext<'w>,
) -> Started<'a>;

/// Borrows the `T` that [`store`] wrote at `at`.
///
/// # Safety
/// `at` must hold a `T` written by [`store`] with its number of words, not yet taken, that
/// outlives the borrow.
unsafe fn payload_ref<'a, T>(at: Payload) -> &'a T {
    if Payload::inline::<T>(at.words) {
        // SAFETY: the caller guarantees a `T` is stored inline.
        unsafe { &*at.data.cast::<T>() }
    } else {
        // SAFETY: the caller guarantees a boxed `T` is stored.
        unsafe { &**at.data.cast::<*const T>() }
    }
}

impl<A: Actor> Drop for Envelope<A> {
    fn drop(&mut self) {
        let at = self.payload();
        // SAFETY: an envelope that was not handled still owns its payload.
        unsafe { (self.vtable().drop)(at) }
    }
}

pin_project! {
    /// Runs one handler: creates its future on the first poll and polls it, catching
    /// panics, then sends the result to the asker. When `A` opts in
    /// ([`Actor::CANCEL_ON_TIMEOUT`]), an ask's handler is dropped once its asker gave up.
    struct Handling<C, F, M: Message, A> {
        #[pin]
        inner: CatchUnwind<Lazy<C, F>>,
        reply: Option<ReplyTx<M>>,
        actor: PhantomData<fn() -> A>,
    }
}

impl<C, F, M, A: Actor> Future for Handling<C, F, M, A>
where
    C: FnOnce() -> F,
    F: Future<Output = Result<M::Response, M::Error>>,
    M: Message,
{
    type Output = Outcome;

    // Always inlined into the first poll (`FutureSlot::start`), where most handlers finish:
    // a handler that waits is polled later through the slot's vtable, a copy of its own.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
        let mut this = self.project();
        // Nobody waits for the answer any more: do not start the work (one atomic load).
        if this.inner.fut.is_unstarted() && this.reply.as_ref().is_some_and(|r| r.is_closed()) {
            this.inner.as_mut().project().fut.set(Lazy::Finished);
            return Poll::Ready(Outcome::Skipped);
        }
        let polled = this.inner.as_mut().poll(cx);
        // Known when compiled: nothing of this for an actor that does not opt in.
        if A::CANCEL_ON_TIMEOUT
            && polled.is_pending()
            && let Some(reply) = this.reply.as_mut()
            // Also registers the actor's waker: the asker's giving up wakes the handler.
            && reply.poll_closed(cx).is_ready()
        {
            // The asker gave up (its answer is `Timeout` already): the handler is dropped
            // where it waits, its state as it left it there.
            this.inner.as_mut().project().fut.set(Lazy::Finished);
            *this.reply = None;
            return Poll::Ready(Outcome::Cancelled);
        }
        let result = match std::task::ready!(polled) {
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

#[cfg(test)]
mod tests;
