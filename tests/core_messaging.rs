//! Core runtime: tell, ask, ordering, priority, backpressure, dynamic refs and envelopes.

mod common;

use common::*;
use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_sender_arrive_in_order() {
    let system = ActorSystem::new("t");
    let r = system.spawn(Recorder::default()).await.unwrap();
    let mut senders = Vec::new();
    for s in 0..4u64 {
        let r = r.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..2_000u64 {
                r.tell(Record(s * 1_000_000 + i)).await.unwrap();
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let seen = r.ask(Seen).await.unwrap();
    assert_eq!(seen.len(), 8_000);
    for s in 0..4u64 {
        let mine: Vec<u64> = seen
            .iter()
            .copied()
            .filter(|v| v / 1_000_000 == s)
            .collect();
        let expected: Vec<u64> = (0..2_000).map(|i| s * 1_000_000 + i).collect();
        assert_eq!(mine, expected, "sender {s} out of order");
    }
}

#[tokio::test]
async fn high_priority_overtakes_queued_normal_messages() {
    let system = ActorSystem::new("t");
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Bounded(16)).await;
    r.tell(Record(1)).await.unwrap();
    r.tell(Record(2)).await.unwrap();
    r.tell(Record(10)).priority(Priority::High).await.unwrap();
    r.tell(Record(11)).priority(Priority::High).await.unwrap();
    r.tell(Record(3)).await.unwrap();
    gate.notify_one();
    assert_eq!(r.ask(Seen).await.unwrap(), vec![10, 11, 1, 2, 3]);
}

#[tokio::test]
async fn full_mailbox_makes_try_tell_fail_and_tell_wait() {
    let system = ActorSystem::new("t");
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Bounded(2)).await;
    r.try_tell(Record(1)).unwrap();
    r.try_tell(Record(2)).unwrap();
    match r.try_tell(Record(3)) {
        Err(SendError::MailboxFull(Record(3))) => {}
        other => panic!("expected MailboxFull with the message back, got {other:?}"),
    }
    assert!(matches!(r.try_ask(Seen).await, Err(AskError::MailboxFull)));
    let seen = r.recipient::<Seen>();
    assert!(matches!(
        seen.try_ask(Seen).await,
        Err(AskError::MailboxFull)
    ));
    // A waiting tell completes once the actor makes room.
    let waiting = tokio::spawn({
        let r = r.clone();
        async move { r.tell(Record(3)).await }
    });
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "tell must wait while the mailbox is full"
    );
    assert_eq!(r.mailbox_len(), 2);
    gate.notify_one();
    waiting.await.unwrap().unwrap();
    assert_eq!(r.ask(Seen).await.unwrap(), vec![1, 2, 3]);
}

/// Notes, at each message, how many user messages its mailbox counts; at message `wait_at`
/// it says so and waits at the gate.
struct Counting {
    seen: Vec<usize>,
    wait_at: u64,
    entered: Option<oneshot::Sender<()>>,
    gate: Arc<Notify>,
}
impl Actor for Counting {}

struct Note(u64);
impl Message for Note {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Note> for Counting {
    async fn handle(&mut self, Note(i): Note, ctx: &mut Context<Self>) -> Result<(), Infallible> {
        self.seen.push(ctx.myself().mailbox_len());
        if i == self.wait_at {
            if let Some(entered) = self.entered.take() {
                let _ = entered.send(());
            }
            self.gate.notified().await;
        }
        Ok(())
    }
}

/// A `Counting` actor with this mailbox, holding message 0 at its gate (open it with the
/// gate returned).
async fn counting_at_its_gate(
    system: &ActorSystem,
    mailbox: MailboxConfig,
) -> (ActorRef<Counting>, Arc<Notify>) {
    let (entered, entered_rx) = oneshot::channel();
    let gate = Arc::new(Notify::new());
    let r = system
        .build(Counting {
            seen: Vec::new(),
            wait_at: 0,
            entered: Some(entered),
            gate: gate.clone(),
        })
        .mailbox(mailbox)
        .spawn()
        .await
        .unwrap();
    r.try_tell(Note(0)).unwrap();
    entered_rx.await.unwrap();
    (r, gate)
}

struct Counts;
impl Message for Counts {
    type Response = Vec<usize>;
    type Error = Infallible;
}
impl Handler<Counts> for Counting {
    async fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> Result<Vec<usize>, Infallible> {
        Ok(std::mem::take(&mut self.seen))
    }
}

/// An actor gives the places of the messages it took back in groups while it runs through a
/// batch (so that it and the senders do not trade the count's cache line at every message),
/// and all of them before it waits: what a waiting actor's mailbox counts is exact, what a
/// running one's counts is at most 64 over (a sixteenth of its capacity at most).
// One thread: the test runs only once the actor's task has returned from its poll, so it
// looks at a waiting actor, not one on its way to wait.
#[tokio::test]
async fn places_come_back_in_groups_while_running_and_all_before_waiting() {
    for (capacity, most) in [(1024usize, 64usize), (160, 10), (8, 1)] {
        let system = ActorSystem::new("t");
        let queued = capacity as u64 - 1;
        // Message 0 holds the actor at its gate while the others queue: one batch of them.
        let (r, gate) = counting_at_its_gate(&system, MailboxConfig::Bounded(capacity)).await;
        for i in 1..=queued {
            r.try_tell(Note(i)).unwrap();
        }
        assert_eq!(r.mailbox_len(), queued as usize, "capacity {capacity}");
        // At message `wait_at` (two thirds through) it waits again, having given back every
        // place it took: the count is exact.
        let wait_at = queued * 2 / 3;
        let (entered, entered_rx) = oneshot::channel();
        r.tell(SetWait(wait_at, entered))
            .priority(Priority::High)
            .await
            .unwrap();
        gate.notify_one();
        tokio::time::timeout(Duration::from_secs(10), entered_rx)
            .await
            .expect("the actor reached its second gate")
            .unwrap();
        assert_eq!(
            r.mailbox_len(),
            (queued - wait_at) as usize,
            "capacity {capacity}: a waiting actor owes no places"
        );
        // Senders find exactly the room that is free.
        let free = capacity - (queued - wait_at) as usize;
        for _ in 0..free {
            r.try_tell(Note(u64::MAX)).unwrap();
        }
        assert!(
            matches!(r.try_tell(Note(u64::MAX)), Err(SendError::MailboxFull(_))),
            "capacity {capacity}: full"
        );
        gate.notify_one();
        let seen = r.ask(Counts).await.unwrap();
        assert_eq!(
            r.mailbox_len(),
            0,
            "capacity {capacity}: everything given back"
        );
        assert_eq!(seen.len(), queued as usize + 1 + free);
        // `seen[0]` was taken alone; then message i of the batch saw the messages after it
        // queued, plus those it took and had not given back yet: fewer than `most`.
        for (i, &counted) in seen.iter().enumerate().take(queued as usize + 1).skip(1) {
            let mut still_queued = (queued - i as u64) as usize;
            if i as u64 > wait_at {
                still_queued += free;
            }
            assert!(
                counted >= still_queued && counted < still_queued + most,
                "capacity {capacity}: message {i} saw {counted}, {still_queued} queued after it"
            );
        }
    }
}

/// Moves the gate of a [`Counting`] actor (sent ahead of its queue, as a high-priority tell).
struct SetWait(u64, oneshot::Sender<()>);
impl Message for SetWait {
    type Response = ();
    type Error = Infallible;
}
impl Handler<SetWait> for Counting {
    async fn handle(
        &mut self,
        SetWait(at, entered): SetWait,
        _: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        self.wait_at = at;
        self.entered = Some(entered);
        Ok(())
    }
}

/// An unbounded mailbox counts without atomic read-modify-writes: its senders count what
/// they queue under the lanes' lock, its task what it takes (see `mailbox::Capacity`). The
/// count stays exact with senders on two workers at once, a refused send (closed) counts
/// nothing, and messages dropped unhandled by a kill leave nothing counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbounded_mailbox_counts_what_it_holds() {
    const SENDERS: u64 = 4;
    const EACH: u64 = 2_500;
    let total = (SENDERS * EACH) as usize;
    let system = ActorSystem::new("t");
    let (r, gate) = counting_at_its_gate(&system, MailboxConfig::Unbounded).await;
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let r = r.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    r.try_tell(Note(1 + s * EACH + i)).unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(r.mailbox_len(), total, "every message counted, none twice");
    gate.notify_one();
    let seen = r.ask(Counts).await.unwrap();
    assert_eq!(seen.len(), total + 1);
    assert_eq!(r.mailbox_len(), 0, "a waiting actor owes nothing");
    // Message p of the batch saw the messages after it, plus those it took and had not
    // counted as taken yet (fewer than 64), plus the ask above once it was queued.
    for (p, &counted) in seen.iter().enumerate().skip(1) {
        let after = total - p;
        assert!(
            counted >= after && counted <= after + 64,
            "message {p} saw {counted}, {after} queued after it"
        );
    }

    // A stopping actor refuses new messages and counts none of them; what it holds is
    // still counted until handled.
    let (entered, entered_rx) = oneshot::channel();
    r.tell(SetWait(u64::MAX - 1, entered)).await.unwrap();
    r.try_tell(Note(u64::MAX - 1)).unwrap();
    entered_rx.await.unwrap();
    for i in 0..10 {
        r.try_tell(Note(i)).unwrap();
    }
    r.stop();
    assert!(matches!(
        r.try_tell(Note(0)),
        Err(SendError::ActorStopped(_))
    ));
    assert_eq!(r.mailbox_len(), 10);
    // Killed with them queued: dropped unhandled, no longer counted.
    r.kill();
    assert_eq!(r.wait_for_stop().await, StopReason::Killed);
    assert_eq!(r.mailbox_len(), 0);
}

#[tokio::test]
async fn unbounded_mailbox_never_refuses() {
    let system = ActorSystem::new("t");
    let (r, gate) = blocked_recorder(&system, MailboxConfig::Unbounded).await;
    for i in 0..5_000 {
        r.try_tell(Record(i)).unwrap();
    }
    gate.notify_one();
    assert_eq!(r.ask(Seen).await.unwrap().len(), 5_000);
}

struct Slow;
impl Message for Slow {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Slow> for Recorder {
    async fn handle(&mut self, _: Slow, _: &mut Context<Self>) -> Result<(), Infallible> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn ask_times_out_with_the_given_timeout() {
    let system = ActorSystem::new("t");
    let r = system
        .build(Recorder::default())
        .ask_timeout(Duration::from_secs(3))
        .spawn()
        .await
        .unwrap();
    assert_eq!(
        r.ask(Slow).timeout(Duration::from_millis(50)).await,
        Err(AskError::Timeout(Duration::from_millis(50)))
    );
    // The default timeout of this actor applies when none is given.
    assert_eq!(
        r.ask(Seen).await,
        Err(AskError::Timeout(Duration::from_secs(3)))
    );
}

/// A handler that blocks its thread (`std::thread::sleep`: a bug, but one that happens).
struct Stuck(Duration);
impl Message for Stuck {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Stuck> for Recorder {
    async fn handle(&mut self, Stuck(d): Stuck, _: &mut Context<Self>) -> Result<(), Infallible> {
        std::thread::sleep(d);
        Ok(())
    }
}

/// An ask to an actor whose handler blocks the asker's own worker still ends at its
/// timeout on a runtime with another worker: the asker waits where that worker can take
/// it (an ask that first waits for the answer is polled again from the runtime's queue,
/// not from a list only its own, blocked, worker reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_ends_at_its_timeout_while_the_handler_blocks_the_thread() {
    let system = ActorSystem::new("t");
    let r = system.spawn(Recorder::default()).await.unwrap();
    let blocked = Duration::from_secs(2);
    // Asked from a task of the runtime's (a test's own body runs outside its workers): the
    // actor, woken by the ask, runs next on the asker's worker.
    let (answer, took) = tokio::spawn(async move {
        let asked = std::time::Instant::now();
        let answer = r
            .ask(Stuck(blocked))
            .timeout(Duration::from_millis(100))
            .await;
        (answer, asked.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(answer, Err(AskError::Timeout(Duration::from_millis(100))));
    assert!(
        took < blocked,
        "the ask ended after {took:?}, with the handler"
    );
}

#[tokio::test(start_paused = true)]
async fn ask_timeout_counts_the_wait_for_room() {
    let system = ActorSystem::new("t");
    let (r, _gate) = blocked_recorder(&system, MailboxConfig::Bounded(1)).await;
    r.tell(Record(1)).await.unwrap();
    assert_eq!(
        r.ask(Seen).timeout(Duration::from_millis(20)).await,
        Err(AskError::Timeout(Duration::from_millis(20)))
    );
}

/// An actor whose handler fails on odd numbers.
struct Picky;
impl Actor for Picky {}
#[derive(Debug, PartialEq)]
struct Odd(u64);
struct Check(u64);
impl Message for Check {
    type Response = u64;
    type Error = Odd;
}
impl Handler<Check> for Picky {
    async fn handle(&mut self, Check(n): Check, _: &mut Context<Self>) -> Result<u64, Odd> {
        if n % 2 == 1 { Err(Odd(n)) } else { Ok(n) }
    }
}

#[tokio::test]
async fn handler_errors_reach_the_asker_and_the_actor_goes_on() {
    let system = ActorSystem::new("t");
    let p = system.spawn(Picky).await.unwrap();
    assert_eq!(p.ask(Check(3)).await, Err(AskError::Handler(Odd(3))));
    p.tell(Check(5)).await.unwrap(); // logged, not fatal
    assert_eq!(p.ask(Check(4)).await, Ok(4));
    assert!(p.is_alive());
}

#[tokio::test]
async fn recipient_erases_the_actor_type() {
    let system = ActorSystem::new("t");
    let r = system.spawn(Recorder::default()).await.unwrap();
    let recipient: Recipient<Record> = r.recipient();
    recipient.tell(Record(7)).await.unwrap();
    recipient.try_tell(Record(8)).unwrap();
    assert_eq!(r.ask(Seen).await.unwrap(), vec![7, 8]);
    assert_eq!(recipient.id(), r.id());
}

/// A hand-written actor answering dynamic requests with the seed's matches/extract/respond.
struct Dyn {
    total: u64,
}
impl Actor for Dyn {
    fn accepts(message: std::any::TypeId) -> bool {
        message == std::any::TypeId::of::<Check>() || message == std::any::TypeId::of::<Silent>()
    }
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        if req.matches::<Check>() {
            let (Check(n), responder) = req.extract::<Check>().unwrap();
            self.total += n;
            responder.respond(if n == 13 { Err(Odd(n)) } else { Ok(self.total) });
        } else if req.matches::<Silent>() {
            // Dropped without answering.
            drop(req);
        } else {
            req.reject();
        }
    }
}
struct Silent;
impl Message for Silent {
    type Response = ();
    type Error = Infallible;
}

#[tokio::test]
async fn dynamic_refs_check_messages_at_run_time() {
    let system = ActorSystem::new("t");
    system
        .build(Dyn { total: 0 })
        .urn("dyn")
        .spawn()
        .await
        .unwrap();
    let d = system.lookup("dyn").unwrap();
    assert_eq!(d.urn().map(Urn::as_str), Some("dyn"));
    assert_eq!(d.ask(Check(2)).await, Ok(2));
    d.tell(Check(3)).await.unwrap();
    assert_eq!(d.ask(Check(0)).await, Ok(5));
    assert_eq!(d.ask(Check(13)).await, Err(AskError::Handler(Odd(13))));
    // Not accepted: refused before sending, for ask and tell alike.
    match d.ask(Seen).await {
        Err(AskError::UnknownMessage { actor, message }) => {
            assert_eq!(actor, "dyn");
            assert!(message.ends_with("Seen"), "{message}");
        }
        other => panic!("expected UnknownMessage, got {other:?}"),
    }
    assert!(matches!(
        d.tell(Record(1)).await,
        Err(SendError::UnknownMessage { .. })
    ));
    // Dropped without a response: NoResponse at once, not a timeout.
    assert_eq!(
        d.ask(Silent).timeout(Duration::from_secs(30)).await,
        Err(AskError::NoResponse)
    );
    // Typed view of the same actor.
    assert!(d.downcast::<Dyn>().is_some());
    assert!(d.downcast::<Recorder>().is_none());
    assert!(matches!(
        system.lookup_typed::<Recorder>("dyn"),
        Err(LookupError::WrongType { .. })
    ));
}

/// Holds the actor (a handler that waits) until the gate opens.
struct Gate(Arc<Notify>, Option<oneshot::Sender<()>>);
impl Message for Gate {
    type Response = ();
    type Error = Infallible;
}

/// Takes `Gate` and `Check` by URN only; answers a `Check` with the sum so far.
#[derive(Default)]
struct DynSum {
    seen: Vec<u64>,
}
impl Actor for DynSum {
    fn accepts(message: std::any::TypeId) -> bool {
        message == std::any::TypeId::of::<Gate>() || message == std::any::TypeId::of::<Check>()
    }
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        let req = match req.extract::<Gate>() {
            Ok((Gate(gate, entered), responder)) => {
                if let Some(entered) = entered {
                    let _ = entered.send(());
                }
                gate.notified().await;
                return responder.respond(Ok(()));
            }
            Err(req) => req,
        };
        match req.extract::<Check>() {
            Ok((Check(n), responder)) => {
                self.seen.push(n);
                responder.respond(Ok(self.seen.iter().sum()));
            }
            Err(req) => req.reject(),
        }
    }
}

/// A full mailbox: an ask by URN waits for room as long as its timeout allows (and is never
/// queued if none comes), `try_ask` does not wait, a tell by URN waits for room; once the
/// actor stopped, a tell gives its message back and an ask ends at once.
#[tokio::test]
async fn requests_by_urn_wait_for_room_and_end_when_the_actor_stops() {
    let system = ActorSystem::new("t");
    system
        .build(DynSum::default())
        .urn("sum")
        .mailbox(MailboxConfig::Bounded(1))
        .spawn()
        .await
        .unwrap();
    let d = system.lookup("sum").unwrap();
    let gate = Arc::new(Notify::new());
    let (entered, is_in) = oneshot::channel();
    d.tell(Gate(gate.clone(), Some(entered))).await.unwrap();
    is_in.await.unwrap();
    d.tell(Check(2)).await.unwrap();
    assert_eq!(d.mailbox_len(), 1, "the one place is taken");
    assert_eq!(
        d.ask(Check(100)).timeout(Duration::from_millis(20)).await,
        Err(AskError::Timeout(Duration::from_millis(20)))
    );
    let refused = tokio::time::timeout(Duration::from_secs(10), d.try_ask(Check(200))).await;
    assert_eq!(refused, Ok(Err(AskError::MailboxFull)), "refused at once");
    let ask = tokio::spawn({
        let d = d.clone();
        async move { d.ask(Check(4)).timeout(Duration::from_secs(3600)).await }
    });
    let tell = tokio::spawn({
        let d = d.clone();
        async move { d.tell(Check(8)).await }
    });
    // Both run up to their wait for room (one thread: they run when this test yields).
    tokio::task::yield_now().await;
    assert!(
        !ask.is_finished() && !tell.is_finished(),
        "no room: both wait"
    );
    gate.notify_one();
    let answered = tokio::time::timeout(Duration::from_secs(10), ask).await;
    assert!(matches!(answered, Ok(Ok(Ok(6 | 14)))), "{answered:?}");
    tokio::time::timeout(Duration::from_secs(10), tell)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The asks that found no room were never queued: 2 + 4 + 8.
    assert_eq!(d.ask(Check(0)).await, Ok(14));
    assert_eq!(d.asks_skipped(), 0);
    d.stop();
    d.wait_for_stop().await;
    match d.tell(Check(16)).await {
        Err(SendError::ActorStopped(Check(16))) => {}
        other => panic!("expected the message back, got {other:?}"),
    }
    assert_eq!(d.ask(Check(32)).await, Err(AskError::ActorStopped));
}

/// Answers every `Check` with a `String`, not the `u64` the message promises.
struct WrongType;
impl Actor for WrongType {
    fn accepts(message: std::any::TypeId) -> bool {
        message == std::any::TypeId::of::<Check>()
    }
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        let (_, responder) = req.into_erased();
        responder.respond(Ok(Box::new(String::from("not a number"))));
    }
}

/// The answer to an ask by URN is checked against the message's response type: a wrong one
/// is `NoResponse` for the asker (and logged), and the actor goes on.
#[tokio::test]
async fn an_answer_of_the_wrong_type_is_no_response() {
    let system = ActorSystem::new("t");
    let liar = system.spawn(WrongType).await.unwrap().to_dyn();
    assert_eq!(liar.ask(Check(2)).await, Err(AskError::NoResponse));
    assert_eq!(liar.ask(Check(4)).await, Err(AskError::NoResponse));
    assert!(liar.is_alive());
}

/// Hands each request's responder to a thread that panics holding it: dropped while its
/// thread unwinds, the responder sends nothing.
struct LosesResponders;
impl Actor for LosesResponders {
    fn accepts(message: std::any::TypeId) -> bool {
        message == std::any::TypeId::of::<Check>()
    }
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        let (_, responder) = req.into_erased();
        let lost = std::thread::spawn(move || {
            let _held = responder;
            panic!("a thread lost with the responder");
        });
        assert!(lost.join().is_err());
    }
}

/// Once the actor's side of an ask by URN is gone without answering (its responder dropped
/// while unwinding sends nothing, and the handler returned), the asker learns at once that
/// the actor is gone, rather than at its timeout: a typed ask by URN and an erased one (what
/// the Redis proxy sends) alike; the actor goes on.
#[tokio::test]
async fn an_ask_whose_responder_is_lost_ends_at_once() {
    let system = ActorSystem::new("t");
    let d = system.spawn(LosesResponders).await.unwrap().to_dyn();
    let hour = Duration::from_secs(3600);
    let asked = tokio::time::timeout(Duration::from_secs(10), d.ask(Check(1)).timeout(hour)).await;
    assert_eq!(asked, Ok(Err(AskError::ActorStopped)));
    let erased = d
        .erased(
            <Check as Message>::name(),
            std::any::TypeId::of::<Check>(),
            Box::new(Check(2)),
        )
        .timeout(hour)
        .ask();
    let asked = tokio::time::timeout(Duration::from_secs(10), erased).await;
    assert!(
        matches!(asked, Ok(Err(AskError::ActorStopped))),
        "{asked:?}"
    );
    assert!(d.is_alive());
}

#[tokio::test]
async fn hand_written_actor_without_dispatch_rejects_dynamic_asks() {
    let system = ActorSystem::new("t");
    system
        .build(Recorder::default())
        .urn("rec")
        .spawn()
        .await
        .unwrap();
    let d = system.lookup("rec").unwrap();
    assert!(matches!(
        d.ask(Seen).await,
        Err(AskError::UnknownMessage { .. })
    ));
}

struct Relay;
impl Actor for Relay {}
impl Handler<Record> for Relay {
    async fn handle(&mut self, msg: Record, ctx: &mut Context<Self>) -> Result<(), Infallible> {
        // Ask another actor while holding &mut self across the await.
        let target = ctx.system().lookup_typed::<Recorder>("sink").unwrap();
        target.ask(Record(msg.0 * 10)).await.unwrap();
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_can_await_other_actors() {
    let system = ActorSystem::new("t");
    let sink = system
        .build(Recorder::default())
        .urn("sink")
        .spawn()
        .await
        .unwrap();
    let relay = system.spawn(Relay).await.unwrap();
    for i in 1..=3 {
        relay.ask(Record(i)).await.unwrap();
    }
    assert_eq!(sink.ask(Seen).await.unwrap(), vec![10, 20, 30]);
}
