//! One dynamic request's shared state, in one allocation: what the request is (its message's
//! name and type, its lane, its trace), its message until the actor takes it, and its answer
//! until the asker takes it.
//!
//! A dynamic request (an ask or tell by URN, an erased request from the Redis proxy or a
//! process actor's relay: a [`RequestEnvelope`](crate::RequestEnvelope)) travelled in a box of
//! its own, with a reply cell and a oneshot channel beside it: three allocations besides its
//! message and its answer, where a typed ask makes one. Here they are one (docs/bench-log.md,
//! "One allocation for a request by URN").
//!
//! Two sides hold the cell. The actor's side answers through [`Answerer`]s (the envelope's,
//! then its responder's, and the run loop's, which answers a panic); they are counted, so
//! that when the last one goes without answering the asker learns that the actor is gone,
//! as a dropped oneshot sender told it. The asker's side waits with an [`Asking`], which
//! gives the ask up when dropped unanswered, or, for an ask answered by a function
//! ([`Answer`]'s callback), holds the cell to give it up on demand.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};

use parking_lot::{Mutex, MutexGuard};

use crate::error::AskError;
use crate::exposed::remote::ErasedMessage;
use crate::message::Priority;
use crate::observe::trace::TraceContext;

/// Something kept alive until an ask is answered (see
/// [`Envelope::keep_until_answered`](crate::run::envelope::Envelope::keep_until_answered)).
pub(crate) type Kept = Box<dyn std::any::Any + Send>;

/// The result of a type-erased ask: the response, or an error whose handler error is erased.
pub type ErasedResult = Result<ErasedMessage, AskError<ErasedMessage>>;

/// What a request is: set when it is made, never changed.
pub(crate) struct RequestHead {
    /// The message's wire name.
    pub(crate) name: &'static str,
    pub(crate) type_id: TypeId,
    /// The lane it was sent in.
    pub(crate) priority: Priority,
    /// The trace it is part of (from another process's `traceparent`).
    pub(crate) trace: Option<TraceContext>,
    /// A tell whose sender learns when it was handled (its answer says only that).
    pub(crate) acked_tell: bool,
    /// Started only while this is open ([`ErasedRequest::fence`](crate::ErasedRequest::fence)).
    pub(crate) fence: Option<crate::Fence>,
}

impl RequestHead {
    /// A request of a typed `M`, untraced, in `priority`'s lane.
    pub(crate) fn of<M: crate::message::Message>(priority: Priority) -> Self {
        RequestHead {
            name: M::name(),
            type_id: TypeId::of::<M>(),
            priority,
            trace: None,
            acked_tell: false,
            fence: None,
        }
    }

    /// A request of a typed `M` sent now through a dynamic ref: part of the trace its sender
    /// runs in, if any (a span of its own in it), so that what it reaches by URN (a process
    /// actor's relay, a pool, a handler that asks further) continues the chain.
    pub(crate) fn sent<M: crate::message::Message>(priority: Priority) -> Self {
        RequestHead {
            trace: TraceContext::current().map(|t| t.child()),
            ..Self::of::<M>(priority)
        }
    }
}

/// Who waits for a request's answer, when it is made.
pub(crate) enum Waiter {
    /// Nobody: a tell.
    Nobody,
    /// An asker, through the [`Asking`] made with the request.
    Asker,
    /// A function, called with the answer on the actor's task
    /// ([`ErasedRequest::queue_with`](crate::ErasedRequest::queue_with)).
    Callback(Box<dyn FnOnce(ErasedResult) + Send>),
}

/// A request's shared state (see the module's docs).
pub(crate) struct RequestCell {
    pub(crate) head: RequestHead,
    /// The message until the actor takes it, the answer and who waits for it, under `parking_lot`'s lock (no poisoning to check:
    /// nothing panics under it; about 170 instructions fewer an ask by URN than the
    /// standard library's, docs/bench-log.md, "Calls the compiler kept apart").
    answer: Mutex<AnswerState>,
    /// The actor side's [`Answerer`]s not dropped yet, and [`ANSWERED`] once one answered.
    answerers: AtomicUsize,
}

/// Set in `answerers` once the request was answered: the last answerer then has nothing to
/// tell the asker, and takes no lock to find that out.
const ANSWERED: usize = 1 << (usize::BITS - 1);

struct AnswerState {
    /// The message, until the actor takes it (under the answer's lock: one uncontended lock
    /// an ask by URN, where an `UnsafeCell` needed a hand-written `Sync`).
    message: Option<ErasedMessage>,
    answer: Answer,
    /// The actor side's waker in [`RequestCell::poll_closed`], woken when the asker gives up.
    closed: Option<Waker>,
    /// The handler's error, when it answered with one (for the actor's statistics).
    error: Option<String>,
    /// Kept until the answer is sent (a pool's count of the asks in flight at a member, a
    /// relay's place in its mailbox).
    kept: Vec<Kept>,
    /// The actor took the request for handling ([`RequestCell::begin`]): an asker giving
    /// up from now on does not stop it.
    started: bool,
}

enum Answer {
    /// An asker waits (with its waker once it polled).
    Awaited(Option<Waker>),
    /// A function waits.
    Callback(Box<dyn FnOnce(ErasedResult) + Send>),
    /// Answered; the asker has not read it yet.
    Sent(ErasedResult),
    /// Every answerer went without answering: the actor is gone.
    Abandoned,
    /// Nobody waits: a tell, an asker that gave up, an answer read or handed to its function.
    Closed,
}

impl RequestCell {
    /// A request, with one [`Answerer`] for the actor's side unless nobody waits.
    #[cfg(test)]
    pub(crate) fn new(
        head: RequestHead,
        message: ErasedMessage,
        waiter: Waiter,
    ) -> (Arc<Self>, Option<Answerer>) {
        let cell = Self::make(head, message, waiter);
        let answerer =
            (cell.answerers.load(Ordering::Relaxed) == 1).then(|| Answerer(cell.clone()));
        (cell, answerer)
    }

    /// A request somebody waits for (`waiter` is not [`Waiter::Nobody`]): its one
    /// [`Answerer`], which holds the cell ([`Answerer::cell`]).
    pub(crate) fn answerer(head: RequestHead, message: ErasedMessage, waiter: Waiter) -> Answerer {
        debug_assert!(!matches!(waiter, Waiter::Nobody), "nobody would answer");
        Answerer(Self::make(head, message, waiter))
    }

    fn make(head: RequestHead, message: ErasedMessage, waiter: Waiter) -> Arc<Self> {
        let (answer, answerers) = match waiter {
            Waiter::Nobody => (Answer::Closed, 0),
            Waiter::Asker => (Answer::Awaited(None), 1),
            Waiter::Callback(answer) => (Answer::Callback(answer), 1),
        };
        Arc::new(RequestCell {
            head,
            answer: Mutex::new(AnswerState {
                message: Some(message),
                answer,
                closed: None,
                error: None,
                kept: Vec::new(),
                started: false,
            }),
            answerers: AtomicUsize::new(answerers),
        })
    }

    fn lock(&self) -> MutexGuard<'_, AnswerState> {
        self.answer.lock()
    }

    /// Takes the message out (`None` once taken).
    pub(crate) fn take_message(&self) -> Option<ErasedMessage> {
        self.lock().message.take()
    }

    /// Calls `f` with the message, unless taken.
    pub(crate) fn with_message<R>(&self, f: impl FnOnce(&ErasedMessage) -> R) -> Option<R> {
        self.lock().message.as_ref().map(f)
    }

    /// Whether nobody waits for the answer any more (the asker gave up, or it was sent).
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        !matches!(self.lock().answer, Answer::Awaited(_) | Answer::Callback(_))
    }

    /// Sends the answer; only the first counts. Drops what was kept until then.
    fn send(&self, result: ErasedResult) {
        self.answerers.fetch_or(ANSWERED, Ordering::Relaxed);
        let mut state = self.lock();
        let kept = mem::take(&mut state.kept);
        state.closed = None;
        match mem::replace(&mut state.answer, Answer::Closed) {
            Answer::Awaited(waker) => {
                state.answer = Answer::Sent(result);
                drop(state);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Answer::Callback(answer) => {
                drop(state);
                answer(result);
            }
            // Answered before, given up, or a tell: not the asker's business.
            earlier => {
                state.answer = earlier;
                drop(state);
            }
        }
        drop(kept);
    }

    /// The asker gives up: nothing is called, and the request is not started if it has not
    /// been yet (the actor side waiting in `poll_closed` is woken). Returns whether it had
    /// not: the actor will skip it (or drop it, if it stops first).
    pub(crate) fn give_up(&self) -> bool {
        let mut state = self.lock();
        let given_up = match &state.answer {
            Answer::Closed => return false,
            _ => mem::replace(&mut state.answer, Answer::Closed),
        };
        // Answered, or abandoned by the actor: not started now, but not skipped either.
        let unstarted =
            matches!(given_up, Answer::Awaited(_) | Answer::Callback(_)) && !state.started;
        let closed = state.closed.take();
        drop(state);
        drop(given_up);
        if let Some(closed) = closed {
            closed.wake();
        }
        unstarted
    }

    /// The actor takes the request for handling: `false` if nobody waits for its answer any
    /// more (the actor skips it), else it is marked started, under the lock
    /// [`give_up`](Self::give_up) takes, so that the two agree on which came first.
    fn begin(&self) -> bool {
        let mut state = self.lock();
        let waited_for = matches!(state.answer, Answer::Awaited(_) | Answer::Callback(_));
        if waited_for && self.head.fence.as_ref().is_some_and(|f| !f.is_open()) {
            // Its fence closed: not started; whoever waits learns why (not `started`, so
            // the answer below is not taken for a handler's).
            drop(state);
            self.send(Err(crate::AskError::Fenced));
            return false;
        }
        state.started |= waited_for;
        waited_for
    }

    /// `Ready` once nobody waits for the answer any more; otherwise `cx` is woken when the
    /// asker gives up.
    fn poll_closed(&self, cx: &TaskContext<'_>) -> Poll<()> {
        let mut state = self.lock();
        match state.answer {
            Answer::Awaited(_) | Answer::Callback(_) => {
                if !state
                    .closed
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    state.closed = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// `Ready` once the asker gave up (not once the request was answered: a handler that
    /// answered through its responder and works on is not the asker's to stop); otherwise
    /// `cx` is woken when it does, as in [`poll_closed`](Self::poll_closed).
    fn poll_given_up(&self, cx: &TaskContext<'_>) -> Poll<()> {
        // `send` marks the request answered before it takes the lock `poll_closed` takes:
        // an answer seen there is seen here.
        match self.poll_closed(cx) {
            Poll::Ready(()) if self.answerers.load(Ordering::Relaxed) & ANSWERED == 0 => {
                Poll::Ready(())
            }
            _ => Poll::Pending,
        }
    }

    /// The last answerer went: an asker still waiting learns the actor is gone (a function
    /// waiting is dropped uncalled, as before the cell).
    fn abandon(&self) {
        let mut state = self.lock();
        let kept = mem::take(&mut state.kept);
        let gone = match &state.answer {
            Answer::Awaited(_) => mem::replace(&mut state.answer, Answer::Abandoned),
            Answer::Callback(_) => mem::replace(&mut state.answer, Answer::Closed),
            _ => Answer::Closed,
        };
        drop(state);
        if let Answer::Awaited(Some(waker)) = &gone {
            waker.wake_by_ref();
        }
        drop(gone);
        drop(kept);
    }
}

/// The actor's side of a request: answers it (the first answer counts). When the last one of
/// a request is dropped without answering, the asker learns that the actor is gone.
pub(crate) struct Answerer(Arc<RequestCell>);

impl Answerer {
    /// The request's cell.
    pub(crate) fn cell(&self) -> &Arc<RequestCell> {
        &self.0
    }

    /// Sends the answer to whoever waits (nothing happens if nobody does any more).
    pub(crate) fn send(&self, result: ErasedResult) {
        self.0.send(result);
    }

    /// Whether nobody waits for the answer any more (see [`RequestCell::is_closed`]).
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The actor takes the request for handling; `false`: nobody waits for the answer any
    /// more, skip it (see [`RequestCell::begin`]).
    pub(crate) fn begin(&self) -> bool {
        self.0.begin()
    }

    /// See [`RequestCell::poll_closed`].
    pub(crate) fn poll_closed(&self, cx: &TaskContext<'_>) -> Poll<()> {
        self.0.poll_closed(cx)
    }

    /// See [`RequestCell::poll_given_up`].
    pub(crate) fn poll_given_up(&self, cx: &TaskContext<'_>) -> Poll<()> {
        self.0.poll_given_up(cx)
    }

    /// Records the handler's error (the first one), for the actor's statistics.
    pub(crate) fn set_error(&self, error: impl FnOnce() -> String) {
        let mut state = self.0.lock();
        if state.error.is_none() {
            state.error = Some(error());
        }
    }

    /// The handler's error, if it answered with one.
    pub(crate) fn error(&self) -> Option<String> {
        self.0.lock().error.clone()
    }

    /// Keeps `guard` until the answer is sent (or the request is given up by every answerer).
    pub(crate) fn keep(&self, guard: Kept) {
        self.0.lock().kept.push(guard);
    }

    /// Drops what [`keep`](Self::keep) kept.
    pub(crate) fn drop_kept(&self) {
        drop(mem::take(&mut self.0.lock().kept));
    }
}

impl Clone for Answerer {
    fn clone(&self) -> Self {
        // As `Arc`'s own count: a new handle is made from one alive.
        self.0.answerers.fetch_add(1, Ordering::Relaxed);
        Answerer(self.0.clone())
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        // `AcqRel`: the last one sees every other's sends (as `Arc`'s drop does).
        if self.0.answerers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.abandon();
        }
    }
}

/// The asker's side of a request: a future of its answer, `None` if the actor went without
/// answering. Dropped before the answer came, it gives the ask up.
pub(crate) struct Asking {
    cell: Arc<RequestCell>,
    /// The answer was read (nothing to give up).
    done: bool,
}

impl Asking {
    /// The asker's side of `cell`, made with [`Waiter::Asker`].
    pub(crate) fn new(cell: Arc<RequestCell>) -> Self {
        Asking { cell, done: false }
    }
}

impl Future for Asking {
    type Output = Option<ErasedResult>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut state = self.cell.lock();
        match &mut state.answer {
            Answer::Awaited(waker) => {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Answer::Sent(_) => {
                let Answer::Sent(answer) = mem::replace(&mut state.answer, Answer::Closed) else {
                    unreachable!("matched above")
                };
                drop(state);
                self.done = true;
                Poll::Ready(Some(answer))
            }
            // Abandoned (or read before: polled after its end).
            _ => {
                state.answer = Answer::Closed;
                drop(state);
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        if !self.done {
            self.cell.give_up();
        }
    }
}

impl fmt::Debug for Asking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asking")
            .field("message", &self.cell.head.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::task::Wake;

    /// A message for the tests (any message does).
    struct Probe;
    impl crate::message::Message for Probe {
        type Response = ();
        type Error = std::convert::Infallible;
    }

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        (flag.clone(), Waker::from(flag))
    }

    fn request(waiter: Waiter) -> (Arc<RequestCell>, Answerer) {
        let (cell, answerer) = RequestCell::new(
            RequestHead::of::<Probe>(Priority::Normal),
            Box::new(()),
            waiter,
        );
        (cell, answerer.expect("somebody waits"))
    }

    fn poll(asking: &mut Asking, waker: &Waker) -> Poll<Option<ErasedResult>> {
        Pin::new(asking).poll(&mut TaskContext::from_waker(waker))
    }

    fn answer(n: u32) -> ErasedResult {
        Ok(Box::new(n))
    }

    fn read(answer: Poll<Option<ErasedResult>>) -> u32 {
        match answer {
            Poll::Ready(Some(Ok(n))) => *n.downcast::<u32>().unwrap(),
            _ => panic!("no answer"),
        }
    }

    #[test]
    fn the_asker_is_woken_with_the_first_answer() {
        let (cell, answerer) = request(Waiter::Asker);
        let mut asking = Asking::new(cell);
        let (woken, waker) = flag();
        assert!(poll(&mut asking, &waker).is_pending());
        let other = answerer.clone();
        answerer.send(answer(1));
        assert!(woken.0.load(Ordering::SeqCst));
        other.send(answer(2));
        drop((answerer, other));
        assert_eq!(read(poll(&mut asking, &waker)), 1);
    }

    #[test]
    fn the_last_answerer_gone_unanswered_ends_the_ask() {
        let (cell, answerer) = request(Waiter::Asker);
        let kept = Arc::new(());
        answerer.keep(Box::new(kept.clone()));
        let mut asking = Asking::new(cell);
        let (woken, waker) = flag();
        assert!(poll(&mut asking, &waker).is_pending());
        let other = answerer.clone();
        drop(answerer);
        assert!(
            poll(&mut asking, &waker).is_pending(),
            "one answerer is left"
        );
        drop(other);
        assert!(woken.0.load(Ordering::SeqCst));
        assert_eq!(Arc::strong_count(&kept), 1, "what was kept is dropped");
        assert!(matches!(poll(&mut asking, &waker), Poll::Ready(None)));
    }

    #[test]
    fn giving_up_wakes_the_actor_side_and_drops_a_later_answer() {
        let (cell, answerer) = request(Waiter::Asker);
        let asking = Asking::new(cell.clone());
        let (woken, waker) = flag();
        let cx = TaskContext::from_waker(&waker);
        assert!(answerer.poll_closed(&cx).is_pending());
        assert!(!answerer.is_closed());
        drop(asking);
        assert!(woken.0.load(Ordering::SeqCst));
        assert!(answerer.is_closed());
        assert!(answerer.poll_closed(&cx).is_ready());
        answerer.send(answer(3));
        assert!(
            matches!(cell.lock().answer, Answer::Closed),
            "not kept for nobody"
        );
    }

    #[test]
    fn given_up_is_told_from_answered() {
        let (woken, waker) = flag();
        let cx = TaskContext::from_waker(&waker);
        // Given up: ready, and the actor side waiting was woken.
        let (cell, answerer) = request(Waiter::Asker);
        let asking = Asking::new(cell);
        assert!(answerer.begin());
        assert!(answerer.poll_given_up(&cx).is_pending());
        drop(asking);
        assert!(woken.0.load(Ordering::SeqCst));
        assert!(answerer.poll_given_up(&cx).is_ready());
        // Answered (and read): never given up, whatever the asker does next.
        let (cell, answerer) = request(Waiter::Asker);
        let mut asking = Asking::new(cell);
        answerer.send(answer(4));
        assert!(answerer.poll_given_up(&cx).is_pending());
        assert_eq!(read(poll(&mut asking, &waker)), 4);
        drop(asking);
        assert!(answerer.poll_given_up(&cx).is_pending());
    }

    #[test]
    fn a_function_is_called_once_unless_given_up() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = |calls: &Arc<AtomicUsize>| {
            let calls = calls.clone();
            Waiter::Callback(Box::new(move |_| {
                calls.fetch_add(1, Ordering::SeqCst);
            }))
        };
        let (_, answerer) = request(counted(&calls));
        answerer.send(answer(1));
        answerer.send(answer(2));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let (cell, answerer) = request(counted(&calls));
        cell.give_up();
        answerer.send(answer(3));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn giving_up_says_whether_the_actor_had_begun() {
        // Given up first: the actor does not begin it, and the asker learns it never will.
        let (cell, answerer) = request(Waiter::Callback(Box::new(|_| {})));
        assert!(cell.give_up(), "given up before the actor began: skipped");
        assert!(!answerer.begin(), "the actor skips it");
        assert!(!cell.give_up(), "given up twice: said once");
        // Begun first: giving up does not stop it, and says so.
        let (cell, answerer) = request(Waiter::Callback(Box::new(|_| {})));
        assert!(answerer.begin());
        assert!(!cell.give_up(), "the handler runs already");
        // Answered first: nothing to skip.
        let (cell, answerer) = request(Waiter::Asker);
        answerer.send(answer(1));
        assert!(!cell.give_up());
    }

    #[test]
    fn a_request_whose_fence_closed_is_not_begun_and_its_asker_learns_why() {
        let fenced = |fence: &crate::Fence| {
            let mut head = RequestHead::of::<Probe>(Priority::Normal);
            head.fence = Some(fence.clone());
            let got = Arc::new(Mutex::new(None));
            let seen = got.clone();
            let waiter = Waiter::Callback(Box::new(move |r: ErasedResult| {
                *seen.lock() = Some(r.err());
            }));
            let (_, answerer) = RequestCell::new(head, Box::new(()), waiter);
            (answerer.expect("somebody waits"), got)
        };
        let fence =
            crate::Fence::new(std::time::Instant::now() + std::time::Duration::from_secs(60));
        let (open, got) = fenced(&fence);
        assert!(open.begin(), "an open fence: begun");
        assert!(got.lock().is_none(), "not answered by the fence");
        let (closed, got) = fenced(&fence);
        fence.close();
        assert!(!closed.begin(), "a closed fence: skipped");
        assert!(matches!(*got.lock(), Some(Some(crate::AskError::Fenced))));
        // What began before the fence closed runs on: its answer is the handler's.
        open.send(answer(7));
    }
}
