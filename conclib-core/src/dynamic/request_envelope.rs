//! What a dynamic request is on the actor's side: [`RequestEnvelope`] (what
//! [`Actor::handle_request`](crate::Actor::handle_request) receives) and its responders.
//! The envelope it travels in is [`crate::dynamic::request_carried`].

use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::dynamic::request_cell::Kept;
use crate::dynamic::request_cell::{Answerer, Asking, RequestCell, RequestHead, Waiter};
use crate::error::AskError;
use crate::exposed::remote::ErasedMessage;
use crate::message::{Message, Priority};
use crate::observe::trace::TraceContext;

pub use crate::dynamic::request_cell::ErasedResult;

/// A request that arrived through a [`DynActorRef`](crate::DynActorRef) or a proxy: a message of a type known
/// only at run time, and where to send the answer.
///
/// The actor's [`Actor::handle_request`](crate::Actor::handle_request) looks at it with [`matches`](Self::matches) and
/// [`extract`](Self::extract), then answers through the [`Responder`]. Dropping the envelope
/// or the responder without answering gives the asker [`AskError::NoResponse`] at once.
///
/// ```
/// use conclib_core::{Message, RequestEnvelope};
/// use std::convert::Infallible;
///
/// struct Ping;
/// impl Message for Ping { type Response = &'static str; type Error = Infallible; }
///
/// fn answer(request: RequestEnvelope) {
///     if request.matches::<Ping>() {
///         let (Ping, responder) = request.extract::<Ping>().ok().unwrap();
///         responder.respond(Ok("pong"));
///     } else {
///         request.reject();
///     }
/// }
/// ```
pub struct RequestEnvelope {
    body: Body,
    /// Not `Sync`: the message in the cell is this envelope's alone (see `RequestCell`).
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

/// Where a request's head and message are, and what answers it. Two words, as one `Arc`
/// and one answerer were: the envelope stays within a mailbox slot's inline payload.
enum Body {
    /// In the cell shared with whoever waits for the answer, answered through this answerer
    /// until a responder takes it.
    Answering(Answerer),
    /// In the shared cell, its answerer taken (by a responder, or given up).
    Shared(Arc<RequestCell>),
    /// A tell nobody waits for: what it is and its message, in a box of the envelope's own
    /// (80 bytes, where a cell with its answer's state takes 224 and its initialisation and
    /// drop: docs/bench-log.md, "A second regression").
    Told(Box<Told>),
}

/// A tell nobody waits for.
struct Told {
    head: RequestHead,
    message: Option<ErasedMessage>,
}

impl RequestEnvelope {
    pub(crate) fn new(head: RequestHead, message: ErasedMessage, waiter: Waiter) -> Self {
        let body = match waiter {
            Waiter::Nobody => Body::Told(Box::new(Told {
                head,
                message: Some(message),
            })),
            waiter => Body::Answering(RequestCell::answerer(head, message, waiter)),
        };
        RequestEnvelope {
            body,
            _not_sync: PhantomData,
        }
    }

    /// An ask, with the asker's side of it.
    pub(crate) fn ask(head: RequestHead, message: ErasedMessage) -> (Self, Asking) {
        let answerer = RequestCell::answerer(head, message, Waiter::Asker);
        let asking = Asking::new(answerer.cell().clone());
        let req = RequestEnvelope {
            body: Body::Answering(answerer),
            _not_sync: PhantomData,
        };
        (req, asking)
    }

    /// The request's shared state (for an asker's handle on it): none for a tell nobody
    /// waits for.
    pub(crate) fn cell(&self) -> Option<&Arc<RequestCell>> {
        match &self.body {
            Body::Answering(answerer) => Some(answerer.cell()),
            Body::Shared(cell) => Some(cell),
            Body::Told(_) => None,
        }
    }

    /// What the request is.
    fn head(&self) -> &RequestHead {
        match &self.body {
            Body::Answering(answerer) => &answerer.cell().head,
            Body::Shared(cell) => &cell.head,
            Body::Told(told) => &told.head,
        }
    }

    /// What answers the request, until a responder takes it; `None` for a tell nobody
    /// waits for.
    pub(crate) fn answerer(&self) -> Option<&Answerer> {
        match &self.body {
            Body::Answering(answerer) => Some(answerer),
            _ => None,
        }
    }

    /// Takes the answerer out (the cell stays, for the head and the message).
    fn take_answerer(&mut self) -> Option<Answerer> {
        let Body::Answering(answerer) = &self.body else {
            return None;
        };
        let cell = answerer.cell().clone();
        match std::mem::replace(&mut self.body, Body::Shared(cell)) {
            Body::Answering(answerer) => Some(answerer),
            _ => unreachable!("matched above"),
        }
    }

    /// Calls `f` with the message, unless taken.
    fn with_message<R>(&self, f: impl FnOnce(&ErasedMessage) -> R) -> Option<R> {
        let cell = match &self.body {
            Body::Answering(answerer) => answerer.cell(),
            Body::Shared(cell) => cell,
            Body::Told(told) => return told.message.as_ref().map(f),
        };
        cell.with_message(f)
    }

    /// Takes the message out (`None` once taken).
    pub(crate) fn take_message(&mut self) -> Option<ErasedMessage> {
        let cell = match &mut self.body {
            Body::Answering(answerer) => answerer.cell(),
            Body::Shared(cell) => &*cell,
            Body::Told(told) => return told.message.take(),
        };
        cell.take_message()
    }

    /// Stops answering: the request goes back to its sender unqueued, who learns it from the
    /// error it gets (its waiter must not hear of it).
    pub(crate) fn disarm(&mut self) {
        if let Some(reply) = self.take_answerer() {
            reply.cell().give_up();
            // The asker gave up above: the last answerer's drop has nothing to tell.
            drop(reply);
        }
    }

    fn acked_tell(&self) -> bool {
        self.head().acked_tell
    }

    /// The lane the request was sent in.
    #[must_use]
    pub fn priority(&self) -> Priority {
        self.head().priority
    }

    /// Takes the message out, still erased, with the responder to answer it: for an actor
    /// that forwards requests elsewhere without knowing their types (a relay to an actor in
    /// another process), which encodes the message and decodes the answer through the
    /// [`ExposedMessage`](crate::ExposedMessage) of its [`message_name`](Self::message_name).
    pub fn into_erased(mut self) -> (ErasedMessage, ErasedResponder) {
        let message = self
            .take_message()
            .expect("an envelope's message is taken once");
        let responder = ErasedResponder {
            reply: self.take_answerer(),
            acked_tell: self.acked_tell(),
        };
        (message, responder)
    }

    /// The trace the request is part of, if its sender passed one on.
    #[must_use]
    pub fn trace(&self) -> Option<TraceContext> {
        self.head().trace
    }

    /// The message's wire name ([`Message::name`]).
    #[must_use]
    pub fn message_name(&self) -> &'static str {
        self.head().name
    }

    /// Whether the request holds an `M`.
    #[must_use]
    pub fn matches<M: Message>(&self) -> bool {
        self.matches_type(std::any::TypeId::of::<M>())
    }

    /// Keeps `guard` until the request is answered (or given up, or dropped), beside what
    /// was kept before. Gives it back for a tell nobody waits for.
    pub(crate) fn keep_until_answered(&self, guard: Kept) -> Option<Kept> {
        match self.answerer() {
            Some(reply) if !self.acked_tell() => {
                reply.keep(guard);
                None
            }
            _ => Some(guard),
        }
    }

    /// Drops what [`keep_until_answered`](Self::keep_until_answered) kept.
    pub(crate) fn drop_kept(&self) {
        if let Some(reply) = self.answerer() {
            reply.drop_kept();
        }
    }

    /// Calls `f` with the message, still erased (for routing by key), unless taken.
    pub(crate) fn with_message_ref<R>(
        &self,
        f: impl FnOnce(&(dyn std::any::Any + Send)) -> R,
    ) -> Option<R> {
        self.with_message(|m| f(&**m))
    }

    /// Whether the request holds a message of this type.
    pub(crate) fn matches_type(&self, type_id: std::any::TypeId) -> bool {
        self.head().type_id == type_id
    }

    /// Whether the sender waits for an answer (an ask rather than a tell).
    #[must_use]
    pub fn expects_response(&self) -> bool {
        self.answerer().is_some() && !self.acked_tell()
    }

    /// Takes the message out if it is an `M`, with the responder to answer it; otherwise
    /// gives the envelope back untouched.
    ///
    /// # Errors
    /// The envelope itself when it does not hold an `M`.
    pub fn extract<M: Message>(mut self) -> Result<(M, Responder<M>), RequestEnvelope> {
        if !self.matches::<M>() {
            return Err(self);
        }
        let message = self
            .take_message()
            .expect("an envelope's message is taken once");
        let msg = *message.downcast::<M>().expect("type id checked above");
        let responder = Responder {
            reply: self.take_answerer(),
            acked_tell: self.acked_tell(),
            _message: PhantomData,
        };
        Ok((msg, responder))
    }

    /// Answers that the actor does not handle this message
    /// ([`AskError::UnknownMessage`]); a tell is logged and dropped.
    pub fn reject(mut self) {
        let name = self.message_name();
        let unknown = || AskError::UnknownMessage {
            actor: String::new(),
            message: name.to_owned(),
        };
        match self.take_answerer() {
            Some(reply) if !self.acked_tell() => reply.send(Err(unknown())),
            reply => {
                tracing::warn!(
                    message = name,
                    "dropped a told message the actor does not handle"
                );
                if let Some(reply) = reply {
                    reply.send(Err(unknown()));
                }
            }
        }
    }

    pub(crate) fn fail(mut self, error: AskError<ErasedMessage>) {
        if let Some(reply) = self.take_answerer() {
            reply.send(Err(error));
        }
    }
}

impl fmt::Debug for RequestEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestEnvelope")
            .field("message", &self.message_name())
            .field("expects_response", &self.answerer().is_some())
            .finish()
    }
}

impl Drop for RequestEnvelope {
    fn drop(&mut self) {
        // While unwinding, the run loop answers `Panicked` with the panic's message.
        if let Some(reply) = self.take_answerer()
            && !std::thread::panicking()
        {
            reply.send(Err(AskError::NoResponse));
        }
        // Dropped here, with the envelope, not with the cell's last handle (the asker's).
        drop(self.take_message());
    }
}

/// Answers one dynamic request whose type is known only at run time; from
/// [`RequestEnvelope::into_erased`]. Dropping it without answering gives the asker
/// [`AskError::NoResponse`].
#[must_use = "dropping a responder answers NoResponse"]
pub struct ErasedResponder {
    reply: Option<Answerer>,
    acked_tell: bool,
}

impl fmt::Debug for ErasedResponder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasedResponder")
            .field("expects_response", &self.expects_response())
            .field("wants_ack", &self.wants_ack())
            .finish()
    }
}

impl ErasedResponder {
    /// Sends the result to the asker: the response or handler error must be of the
    /// message's types (boxed), as [`ExposedMessage::decode_response`](crate::ExposedMessage::decode_response) and
    /// [`ExposedMessage::decode_error`](crate::ExposedMessage::decode_error) give them. For a tell it only says it was handled.
    pub fn respond(mut self, result: ErasedResult) {
        if let Some(reply) = self.reply.take() {
            if let Err(AskError::Handler(_)) = &result {
                reply.set_error(|| "the handler returned an error".to_owned());
            }
            reply.send(result);
        }
    }

    /// Whether the sender waits for an answer (an ask rather than a tell).
    #[must_use]
    pub fn expects_response(&self) -> bool {
        self.reply.is_some() && !self.acked_tell
    }

    /// Whether the sender waits to learn that a tell was handled (then answer once it was).
    #[must_use]
    pub fn wants_ack(&self) -> bool {
        self.reply.is_some() && self.acked_tell
    }

    /// Resolves once nobody waits for the answer any more (the asker timed out or dropped
    /// its future), or at once if nobody waited: the moment to give the work up.
    pub async fn closed(&mut self) {
        poll_fn(|cx| self.poll_closed(cx)).await;
    }

    /// [`closed`](Self::closed) as a poll: `Ready` once nobody waits for the answer any
    /// more; otherwise `cx`'s waker is woken when that happens. The waker need not be a
    /// task's: one that gives the work up when woken watches an ask without a task of its
    /// own (a relay to another process does this).
    pub fn poll_closed(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match &self.reply {
            Some(reply) => reply.poll_closed(cx),
            None => std::task::Poll::Ready(()),
        }
    }
}

impl Drop for ErasedResponder {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take()
            && !std::thread::panicking()
        {
            reply.send(Err(AskError::NoResponse));
        }
    }
}

/// Answers one dynamic request of message type `M`; from [`RequestEnvelope::extract`].
#[must_use = "dropping a responder answers NoResponse"]
pub struct Responder<M: Message> {
    reply: Option<Answerer>,
    acked_tell: bool,
    _message: PhantomData<fn(M)>,
}

impl<M: Message> Responder<M> {
    /// Sends the handler's result to the asker (nothing happens for a tell).
    pub fn respond(mut self, result: Result<M::Response, M::Error>) {
        if self.acked_tell
            && let Err(e) = &result
        {
            tracing::warn!(error = ?e, "a told message's handler returned an error");
        }
        if let Some(reply) = self.reply.take() {
            reply.send(match result {
                Ok(r) => Ok(Box::new(r)),
                Err(e) => {
                    reply.set_error(|| format!("{e:?}"));
                    Err(AskError::Handler(Box::new(e)))
                }
            });
        }
    }

    /// Whether the sender waits for an answer.
    #[must_use]
    pub fn expects_response(&self) -> bool {
        self.reply.is_some() && !self.acked_tell
    }
}

impl<M: Message> Drop for Responder<M> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take()
            && !std::thread::panicking()
        {
            reply.send(Err(AskError::NoResponse));
        }
    }
}

impl<M: Message> fmt::Debug for Responder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("message", &M::name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message for the tests (any message does).
    struct Probe;
    impl crate::message::Message for Probe {
        type Response = ();
        type Error = std::convert::Infallible;
    }

    /// Two words: within a mailbox slot's inline payload with a send stamp beside it
    /// (metrics on), so that no dynamic request needs a box for its envelope.
    #[test]
    fn an_envelope_is_two_words() {
        assert_eq!(
            std::mem::size_of::<RequestEnvelope>(),
            2 * std::mem::size_of::<usize>()
        );
    }

    /// A tell nobody waits for keeps its head and message in a box of its own (no cell);
    /// taken apart as an ask's, it has no answerer and counts as a tell.
    #[test]
    fn a_tell_nobody_waits_for_has_no_cell() {
        let head = RequestHead::of::<Probe>(Priority::High);
        let mut told = RequestEnvelope::new(head, Box::new(5u32), Waiter::Nobody);
        assert!(told.cell().is_none());
        assert!(!told.expects_response());
        assert_eq!(told.priority(), Priority::High);
        assert!(told.matches::<Probe>());
        assert_eq!(*told.take_message().unwrap().downcast::<u32>().unwrap(), 5);
        assert!(told.take_message().is_none(), "taken once");

        let head = RequestHead::of::<Probe>(Priority::Normal);
        let (asked, _asking) = RequestEnvelope::ask(head, Box::new(6u32));
        assert!(asked.cell().is_some());
        assert!(asked.expects_response());
    }
}
