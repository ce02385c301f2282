//! An ask's timeout, armed only when the answer does not come at once.
//!
//! Most answers come within one turn of the scheduler: the actor, woken by the ask, runs
//! next on the asker's worker. Arming a tokio timer (registering it in the timer wheel, and
//! taking it out again when the answer comes) costs about 1,000 instructions, more than a
//! whole local exchange; so the ask yields once first, and arms its timeout only if the
//! answer has not come by its next poll. The deadline is then the timeout from that poll,
//! one scheduler turn after the ask started.
//!
//! The yield wakes the ask's own task, which puts it back in its worker's queue, where
//! another worker can take it. Deferring it instead (as `tokio::task::yield_now` does: polled
//! again when its worker runs out of tasks) was cheaper (bench ask p50 1.12x → 1.05x raw
//! tokio's, docs/bench-log.md), but an ask whose actor then blocked that worker in its handler
//! waited for the handler instead of ending at its timeout (test
//! `an_ask_ends_at_its_timeout_while_the_handler_blocks_the_thread`).
//!
//! Not for an actor that hands its asks on ([`Actor::false`](crate::Actor::false), a
//! process actor's relay): its answer comes from another process, never within the turn,
//! and on a multi-thread runtime the yield made each ask by URN to a process actor pass
//! between the runtime's workers (11 µs to 23-50 µs a round trip in `process_bench`, against
//! 11 µs on one worker): its ask arms the timeout at once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::AskError;
use crate::observe::metrics::MeasuredActor;

pin_project! {
    /// The timeout of one ask: see the [module](self).
    pub(crate) struct AskTimer {
        timeout: Duration,
        // Whether the ask already yielded once without a timer.
        yielded: bool,
        // Started the second time the ask has to wait.
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl AskTimer {
    /// The timeout `timeout` of an ask to an actor that hands its asks on (`hands_on`: the
    /// timer is armed at the first wait) or not.
    pub(crate) fn new(timeout: Duration, hands_on: bool) -> Self {
        AskTimer {
            timeout,
            yielded: hands_on,
            sleep: None,
        }
    }

    /// Called when the ask found no answer: `Ready` once its timeout has passed. The first
    /// call only asks to be polled again (one turn of the scheduler, no timer).
    pub(crate) fn poll_expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if !*this.yielded {
            *this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => unreachable!("set just above"),
        }
    }

    /// [`poll_expired`](Self::poll_expired) for an ask to the actor of `core`: its
    /// [`AskError::Timeout`] once expired, counted in the actor's metrics.
    pub(crate) fn poll_timeout<E>(
        self: Pin<&mut Self>,
        core: &impl MeasuredActor,
        cx: &mut Context<'_>,
    ) -> Poll<AskError<E>> {
        let timeout = self.timeout;
        ready!(self.poll_expired(cx));
        crate::observe::metrics::count(core, "conclib_ask_timeouts_total");
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
        let mut timer = std::pin::pin!(AskTimer::new(Duration::from_secs(5), false));
        assert!(timer.as_mut().poll_expired(&mut cx).is_pending());
        assert!(timer.sleep.is_none(), "no timer at the first wait");
        assert!(timer.as_mut().poll_expired(&mut cx).is_pending());
        assert!(timer.sleep.is_some(), "a timer at the second");

        let mut timer = std::pin::pin!(AskTimer::new(Duration::from_secs(5), false));
        assert!(timer.as_mut().poll_expired(&mut cx).is_pending());
        let second_wait = tokio::time::Instant::now();
        std::future::poll_fn(|cx| timer.as_mut().poll_expired(cx)).await;
        assert_eq!(second_wait.elapsed(), Duration::from_secs(5));
    }

    /// An ask to an actor that hands its asks on arms its timer at its first wait.
    #[tokio::test(start_paused = true)]
    async fn an_ask_handed_on_arms_its_timer_at_once() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut timer = std::pin::pin!(AskTimer::new(Duration::from_secs(5), true));
        assert!(timer.as_mut().poll_expired(&mut cx).is_pending());
        assert!(timer.sleep.is_some(), "a timer at the first wait");
    }
}
