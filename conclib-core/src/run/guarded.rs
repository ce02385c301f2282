//! Futures that run user code (handlers, lifecycle hooks) under a panic guard: created
//! lazily, inside the guard, so that the synchronous part of a hook is guarded too.
//!
//! Their `poll`s are `#[inline]`: every handled message goes through them, and without it
//! the compiler placed them in a codegen unit of their own, apart from the handling that
//! calls them: 47 instructions more a ring hop (docs/bench-log.md, "Moving code costs
//! instructions"). `CatchUnwind`'s is `#[inline(always)]`: left to the compiler it stayed a
//! call of its own (12 instructions a ring hop, 27 a tell: "Calls the compiler kept
//! apart").

use std::future::Future;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use crate::error::panic_message;

/// A future created from `C` on its first poll, so that creating it (running the
/// synchronous part of a hook) happens inside the panic guard too.
pub(crate) enum Lazy<C, F> {
    Start(C),
    Running(F),
    Finished,
}

impl<C, F> Lazy<C, F> {
    /// Whether the future has not been created yet.
    #[inline]
    pub(crate) fn is_unstarted(&self) -> bool {
        matches!(self, Lazy::Start(_))
    }
}

impl<C: FnOnce() -> F, F: Future> Future for Lazy<C, F> {
    type Output = F::Output;
    #[inline]
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
    #[inline(always)]
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
