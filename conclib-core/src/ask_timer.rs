//! An ask's timeout, armed only when the answer does not come at once.
//!
//! Most answers come within one turn of the scheduler: the actor, woken by the ask, runs
//! next on the asker's worker. Arming a tokio timer (registering it in the timer wheel, and
//! taking it out again when the answer comes) costs about 1,000 instructions, more than a
//! whole local exchange; so the ask yields once first, and arms its timeout only if the
//! answer has not come by its next poll. The deadline is then the timeout from that poll,
//! one scheduler turn after the ask started.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::Sleep;

use crate::cell::CellCore;
use crate::error::AskError;

/// The timeout of one ask: see the [module](self).
pub(crate) struct AskTimer {
    timeout: Duration,
    /// Whether the ask already yielded once without a timer.
    yielded: bool,
    /// Started the second time the ask has to wait.
    sleep: Option<Sleep>,
}

impl AskTimer {
    pub(crate) fn new(timeout: Duration) -> Self {
        AskTimer {
            timeout,
            yielded: false,
            sleep: None,
        }
    }

    /// The timeout it was made with.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Called when the ask found no answer: `Ready` once its timeout has passed. The first
    /// call only asks to be polled again (one turn of the scheduler, no timer).
    pub(crate) fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: only `sleep` is structurally pinned; it is never moved out while set.
        let this = unsafe { self.get_unchecked_mut() };
        if !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| tokio::time::sleep(timeout));
        // SAFETY: `sleep` lives in this pinned timer and is never moved.
        unsafe { Pin::new_unchecked(sleep) }.poll(cx)
    }

    /// [`poll_expired`](Self::poll_expired) for an ask to the actor of `core`: its
    /// [`AskError::Timeout`] once expired, counted in the actor's metrics.
    pub(crate) fn poll_timeout<E>(
        self: Pin<&mut Self>,
        core: &CellCore,
        cx: &mut Context<'_>,
    ) -> Poll<AskError<E>> {
        let timeout = self.timeout;
        ready!(self.poll_expired(cx));
        crate::metrics::count(core, "conclib_ask_timeouts_total");
        Poll::Ready(AskError::Timeout(timeout))
    }
}

/// `future`, or `Err(timeout)` once its [`AskTimer`] expired.
pub(crate) struct Timed<F> {
    future: F,
    timer: AskTimer,
}

impl<F: Future> Timed<F> {
    pub(crate) fn new(future: F, timeout: Duration) -> Self {
        Timed {
            future,
            timer: AskTimer::new(timeout),
        }
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = Result<F::Output, Duration>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: both fields are structurally pinned and never moved out.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        if let Poll::Ready(out) = unsafe { Pin::new_unchecked(&mut this.future) }.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        // SAFETY: as above.
        let timer = unsafe { Pin::new_unchecked(&mut this.timer) };
        let timeout = timer.timeout();
        timer.poll_expired(cx).map(|()| Err(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first wait yields without a timer (the future is polled again at once); the
    /// second arms it; an answer by the second poll never needs one; with none, the ask
    /// ends at its timeout, counted from the second poll.
    #[tokio::test(start_paused = true)]
    async fn the_timer_is_armed_only_at_the_second_wait() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut timed = std::pin::pin!(Timed::new(
            std::future::pending::<()>(),
            Duration::from_secs(5)
        ));
        assert!(timed.as_mut().poll(&mut cx).is_pending());
        assert!(timed.timer.sleep.is_none(), "no timer at the first wait");
        assert!(timed.as_mut().poll(&mut cx).is_pending());
        assert!(timed.timer.sleep.is_some(), "a timer at the second");

        let mut polls = 0;
        let answered_at_second_poll = std::future::poll_fn(|_| {
            polls += 1;
            if polls == 2 {
                Poll::Ready(7)
            } else {
                Poll::Pending
            }
        });
        let mut answered =
            std::pin::pin!(Timed::new(answered_at_second_poll, Duration::from_secs(5)));
        assert!(answered.as_mut().poll(&mut cx).is_pending());
        assert_eq!(answered.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
        assert!(answered.timer.sleep.is_none());

        let started = tokio::time::Instant::now();
        let never = Timed::new(std::future::pending::<()>(), Duration::from_secs(5));
        assert_eq!(never.await, Err(Duration::from_secs(5)));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
