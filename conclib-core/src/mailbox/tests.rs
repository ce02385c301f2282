//! The mailbox's unit tests: buffers given back, empty looks, wake-ups, close and drain.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};

use super::{Control, Mailbox, MailboxConfig, Next};
use crate::message::Priority;
use crate::observe::changes::Mark;
use crate::run::envelope::Envelope;
use crate::test_probe::{Probe, Work};

/// Counts its wake-ups.
struct Count(AtomicUsize);
impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Receiver {
    mailbox: Mailbox<Probe>,
    batch: VecDeque<Envelope<Probe>>,
    woken: Arc<Count>,
    waker: Waker,
}

impl Receiver {
    fn new() -> Self {
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        Receiver {
            mailbox: Mailbox::new(MailboxConfig::Unbounded, Mark::new(None)),
            batch: VecDeque::new(),
            waker: Waker::from(woken.clone()),
            woken,
        }
    }
    fn poll(&mut self) -> Poll<Next<Probe>> {
        self.mailbox
            .poll_next(&mut self.batch, &mut TaskContext::from_waker(&self.waker))
    }
    fn tell(&self) {
        assert_eq!(self.mailbox.capacity.try_reserve(), Some(true));
        assert!(
            self.mailbox
                .push_reserved(Envelope::typed(Work::Fine, None), Priority::Normal)
                .is_ok()
        );
    }
    fn wakes(&self) -> usize {
        self.woken.0.load(Ordering::SeqCst)
    }
}

/// A receiver that took a lane of one message looks again without the lock; whatever
/// comes next (a message, a kill, a close) still wakes it, and it finds it.
/// What a burst grew is freed once the actor has nothing to do: a mailbox that held
/// 10,000 messages keeps room for at most `KEPT_IDLE` in each buffer.
#[test]
fn a_burst_s_buffers_go_back_once_the_actor_is_idle() {
    let mut rx = Receiver::new();
    for _ in 0..10_000 {
        rx.tell();
    }
    let mut taken = 0;
    while let Poll::Ready(Next::Message(_)) = rx.poll() {
        taken += 1;
        // Senders keep coming while the actor works: a second, smaller wave.
        if taken == 5_000 {
            for _ in 0..2_000 {
                rx.tell();
            }
        }
    }
    assert_eq!(taken, 12_000);
    assert!(
        rx.batch.capacity() <= super::KEPT_IDLE,
        "{}",
        rx.batch.capacity()
    );
    let lane = rx.mailbox.lock().normal.capacity();
    assert!(lane <= super::KEPT_IDLE, "{lane}");
    // And the mailbox still works: the next message wakes the actor and is taken.
    let woken = rx.wakes();
    rx.tell();
    assert_eq!(rx.wakes(), woken + 1);
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
}

/// A burst of 48 (what an actor slower than its senders for a moment gets) leaves room
/// for at most 16 in each buffer once the actor is idle: 512 bytes each, where
/// `VecDeque`s of 64 would keep 2 KB in every actor that ever had such a burst.
#[test]
fn a_burst_of_48_leaves_room_for_at_most_16_when_idle() {
    let mut rx = Receiver::new();
    for _ in 0..48 {
        rx.tell();
    }
    for _ in 0..48 {
        assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    }
    assert!(rx.poll().is_pending());
    assert!(rx.batch.capacity() <= 16, "{}", rx.batch.capacity());
    let lane = rx.mailbox.lock().normal.capacity();
    assert!(lane <= 16, "{lane}");
}

/// An actor that keeps up keeps its buffers: a batch of about the same size as the last
/// gets the last one's buffer back, with no allocation.
#[test]
fn steady_batches_keep_their_buffers() {
    let mut rx = Receiver::new();
    for _ in 0..200 {
        rx.tell();
    }
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    let grown = rx.batch.capacity();
    assert!(grown >= 200);
    for _ in 0..199 {
        assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    }
    // The next batch, of the same size, comes while the last is done.
    for _ in 0..200 {
        rx.tell();
    }
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    // The lane that had been filled is the batch now; the batch's buffer went back to
    // the senders, still as big.
    assert!(rx.batch.capacity() >= 200);
    assert_eq!(rx.mailbox.lock().normal.capacity(), grown);
}

#[test]
fn an_armed_empty_look_misses_nothing() {
    let mut rx = Receiver::new();
    rx.tell();
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(rx.poll().is_pending());
    assert!(rx.poll().is_pending(), "an empty look again");
    assert_eq!(rx.wakes(), 0);

    rx.tell();
    assert_eq!(rx.wakes(), 1, "the registered waker was woken");
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(rx.poll().is_pending());

    // Two messages in one lane: registered at the empty look instead, woken the same.
    rx.tell();
    rx.tell();
    assert_eq!(rx.wakes(), 2);
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(rx.poll().is_pending());
    rx.tell();
    assert_eq!(rx.wakes(), 3);
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(rx.poll().is_pending());

    assert!(rx.mailbox.push_control(Control::Kill).is_ok());
    assert_eq!(rx.wakes(), 4, "a kill wakes an armed receiver");
    assert!(matches!(
        rx.poll(),
        Poll::Ready(Next::Control(Control::Kill))
    ));
    assert!(rx.poll().is_pending());

    rx.mailbox.close();
    assert_eq!(rx.wakes(), 5, "a close wakes an armed receiver");
    assert!(matches!(rx.poll(), Poll::Ready(Next::Drained)));
}

/// The run loop's one waker slot, while a handler is pending: a waker left from waiting
/// for mail wakes the task at the next message (once), then the handler's own
/// registration is woken by a kill only, never by the messages that follow.
#[test]
fn a_pending_handler_is_woken_by_a_kill_not_by_every_message() {
    let mut rx = Receiver::new();
    rx.tell();
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    // The lane held one message: registered for mail. The handler parks on the same waker.
    assert!(!rx.mailbox.park_handler(&rx.waker));
    rx.tell();
    assert_eq!(
        rx.wakes(),
        1,
        "the waker left for mail is woken by a message"
    );
    // Polled again, the handler registers its own.
    assert!(!rx.mailbox.park_handler(&rx.waker));
    rx.tell();
    rx.tell();
    assert_eq!(rx.wakes(), 1, "messages do not wake a pending handler");
    assert!(rx.mailbox.push_control(Control::Kill).is_ok());
    assert_eq!(rx.wakes(), 2, "a kill does");
    assert!(
        rx.mailbox.park_handler(&rx.waker),
        "and the handler sees it"
    );
}

/// A sender waiting for room is woken by the close and finds the mailbox closed; a close
/// with nobody waiting (which skips the waiters' lock) leaves a later sender refused at
/// once, never waiting.
#[test]
fn a_close_wakes_a_sender_waiting_for_room() {
    let mailbox: Mailbox<Probe> = Mailbox::new(MailboxConfig::Bounded(1), Mark::new(None));
    let woken = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(woken.clone());
    let mut cx = TaskContext::from_waker(&waker);
    assert!(
        mailbox.capacity.poll_reserve(&mut cx).is_ready(),
        "room for one"
    );
    assert!(
        mailbox.capacity.poll_reserve(&mut cx).is_pending(),
        "full: waits"
    );
    mailbox.close();
    assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the close woke it");
    assert!(matches!(
        mailbox.capacity.poll_reserve(&mut cx),
        Poll::Ready(Err(super::capacity::Closed))
    ));

    let quiet: Mailbox<Probe> = Mailbox::new(MailboxConfig::Bounded(1), Mark::new(None));
    quiet.close();
    assert!(matches!(
        quiet.capacity.poll_reserve(&mut cx),
        Poll::Ready(Err(super::capacity::Closed))
    ));
    assert_eq!(woken.0.load(Ordering::SeqCst), 1);
}

/// Senders racing for room on other threads while the mailbox closes: every one of them
/// returns (none is left waiting for a wake-up the close skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_racing_a_close_all_return() {
    for _ in 0..200 {
        let mailbox: Arc<Mailbox<Probe>> =
            Arc::new(Mailbox::new(MailboxConfig::Bounded(1), Mark::new(None)));
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let mailbox = mailbox.clone();
                tokio::spawn(async move {
                    // Take a place until refused; never give one back: the others wait.
                    while std::future::poll_fn(|cx| mailbox.capacity.poll_reserve(cx))
                        .await
                        .is_ok()
                    {}
                })
            })
            .collect();
        tokio::task::yield_now().await;
        mailbox.close();
        for sender in senders {
            tokio::time::timeout(std::time::Duration::from_secs(10), sender)
                .await
                .expect("a sender still waits after the close")
                .expect("the sender panicked");
        }
    }
}

/// A mailbox closed before the receiver took its last message: the look after it finds
/// the mailbox drained (an armed look would wait for ever: no close is left to wake it).
#[test]
fn a_lane_taken_after_the_close_is_followed_by_drained() {
    let mut rx = Receiver::new();
    rx.tell();
    rx.mailbox.close();
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(matches!(rx.poll(), Poll::Ready(Next::Drained)));
}

/// A lone message is taken straight from the lane: the lane keeps its buffer, the batch
/// is not touched (in a ring of actors, every hop is such a message).
#[test]
fn a_lone_message_is_popped_from_the_lane() {
    let mut rx = Receiver::new();
    for _ in 0..3 {
        rx.tell();
        let lane = rx.mailbox.lock().normal.capacity();
        assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
        assert_eq!(rx.batch.capacity(), 0, "the batch never got a buffer");
        assert_eq!(
            rx.mailbox.lock().normal.capacity(),
            lane,
            "the lane kept its own"
        );
        assert!(rx.poll().is_pending());
    }
    assert_eq!(
        rx.wakes(),
        2,
        "each later message woke the waiting receiver"
    );
}

/// An actor sent a message at a time keeps room for one (32 bytes), not the four a
/// `VecDeque` makes room for at its first push; a second message queued behind the
/// first grows the lane as usual, and both are taken.
#[test]
fn a_lane_sent_one_at_a_time_keeps_room_for_one() {
    let mut rx = Receiver::new();
    for _ in 0..3 {
        rx.tell();
        assert_eq!(rx.mailbox.lock().normal.capacity(), 1);
        assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
        assert!(rx.poll().is_pending());
    }
    rx.tell();
    rx.tell();
    assert!(rx.mailbox.lock().normal.capacity() >= 2);
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(rx.poll().is_pending());
}

/// A message queued while the receiver handles the one it took wakes it (it armed
/// when it took the lane), and it is taken at the next look.
#[test]
fn a_message_queued_during_handling_is_taken_next() {
    let mut rx = Receiver::new();
    rx.tell();
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    rx.tell();
    assert_eq!(rx.wakes(), 1);
    assert!(matches!(rx.poll(), Poll::Ready(Next::Message(_))));
    assert!(rx.poll().is_pending());
    assert_eq!(rx.mailbox.capacity.len(), 2, "nothing given back here");
}
