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
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;

use crate::error::panic_message;

pin_project! {
    /// A future created from `C` on its first poll, so that creating it (running the
    /// synchronous part of a hook) happens inside the panic guard too.
    #[project = LazyProj]
    #[project_replace = LazyReplace]
    pub(crate) enum Lazy<C, F> {
        Start { create: C },
        Running { #[pin] fut: F },
        Finished,
    }
}

impl<C, F> Lazy<C, F> {
    /// Whether the future has not been created yet.
    #[inline]
    pub(crate) fn is_unstarted(&self) -> bool {
        matches!(self, Lazy::Start { .. })
    }
}

impl<C: FnOnce() -> F, F: Future> Future for Lazy<C, F> {
    type Output = F::Output;
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        if let LazyProj::Start { .. } = self.as_mut().project() {
            let LazyReplace::Start { create } = self.as_mut().project_replace(Lazy::Finished)
            else {
                unreachable!()
            };
            self.as_mut().set(Lazy::Running { fut: create() });
        }
        let LazyProj::Running { fut } = self.as_mut().project() else {
            panic!("Lazy polled after completion")
        };
        let out = std::task::ready!(fut.poll(cx));
        self.set(Lazy::Finished);
        Poll::Ready(out)
    }
}

pin_project! {
    /// A future that catches panics of `F`, for lifecycle hooks.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        pub(crate) fut: F,
    }
}

impl<F> CatchUnwind<F> {
    /// `fut`, its panics caught.
    pub(crate) fn new(fut: F) -> Self {
        CatchUnwind { fut }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let fut = self.project().fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}
