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

#[cfg(test)]
mod tests {
    use super::*;

    /// The first wait yields without a timer (the ask is polled again at once: an answer by
    /// then never needs one); the second arms it; the ask ends at its timeout, counted from
    /// the second wait.
    #[tokio::test(start_paused = true)]
    async fn the_timer_is_armed_only_at_the_second_wait() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut timer = std::pin::pin!(AskTimer::new(Duration::from_secs(5)));
        assert!(timer.as_mut().poll_expired(&mut cx).is_pending());
        assert!(timer.sleep.is_none(), "no timer at the first wait");
        assert!(timer.as_mut().poll_expired(&mut cx).is_pending());
        assert!(timer.sleep.is_some(), "a timer at the second");

        let mut timer = std::pin::pin!(AskTimer::new(Duration::from_secs(5)));
        assert!(timer.as_mut().poll_expired(&mut cx).is_pending());
        let second_wait = tokio::time::Instant::now();
        std::future::poll_fn(|cx| timer.as_mut().poll_expired(cx)).await;
        assert_eq!(second_wait.elapsed(), Duration::from_secs(5));
    }
}
