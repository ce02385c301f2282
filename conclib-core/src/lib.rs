//! The conclib runtime: actors with names, typed `tell`/`ask` with timeouts, supervision.
//!
//! Most users depend on the `conclib` facade crate, which re-exports this crate and adds the
//! `#[message]`/`#[actor]` macros and the optional Redis proxy.
//!
//! ```
//! use conclib_core::{Actor, ActorSystem, Context, Handler, Message, RequestEnvelope};
//! use std::convert::Infallible;
//!
//! struct Counter { count: u64 }
//!
//! impl Actor for Counter {
//!     // Answers requests by URN (`#[actor]` writes this for you).
//!     async fn handle_request(&mut self, request: RequestEnvelope, ctx: &mut Context<Self>) {
//!         match request.extract::<Increment>() {
//!             Ok((msg, responder)) => responder.respond(self.handle(msg, ctx).await),
//!             Err(request) => request.reject(),
//!         }
//!     }
//! }
//!
//! struct Increment(u64);
//! impl Message for Increment {
//!     type Response = u64;
//!     type Error = Infallible;
//! }
//!
//! impl Handler<Increment> for Counter {
//!     async fn handle(&mut self, msg: Increment, _ctx: &mut Context<Self>) -> Result<u64, Infallible> {
//!         self.count += msg.0;
//!         Ok(self.count)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let system = ActorSystem::new("quickstart");
//! let counter = system.build(Counter { count: 0 }).urn("counter").spawn().await.unwrap();
//! assert_eq!(counter.ask(Increment(2)).await.unwrap(), 2);
//!
//! // Anyone holding the URN can reach it, type-checked at run time.
//! let by_name = system.lookup("counter").unwrap();
//! assert_eq!(by_name.ask(Increment(1)).await.unwrap(), 3);
//! # }
//! ```
//!
//! # Semantics in short
//! - An actor handles one message at a time, with `&mut self`, also across `.await`.
//! - Mailboxes are bounded by default ([`MailboxConfig`]): `tell` waits for room,
//!   `try_tell` fails with [`SendError::MailboxFull`]. Control messages (kill, supervision
//!   events) overtake user messages; [`Priority::High`] overtakes normal ones.
//! - [`ActorRef::stop`] is graceful (queued messages are handled, later ones refused);
//!   [`ActorRef::kill`] stops now: the running handler is dropped at its next `.await`.
//!   Asks to a stopped actor, or left in its mailbox, fail at once with
//!   [`AskError::ActorStopped`]; every ask has a timeout.
//! - An ask whose asker has given up (timed out, or dropped its future) before the actor
//!   takes it is never handled; it is counted ([`ActorRef::asks_skipped`]). Tells always are.
//! - A panic in a handler reaches the asker as [`AskError::Panicked`]; the actor then
//!   follows its [`PanicPolicy`]: stop, resume, or restart with fresh state.
//! - Parents hear about their children ([`SupervisionEvent`]) and stop after them.
//! - An actor sent nothing for a while hibernates: its task and the buffers its messages
//!   grew are freed until its next message ([`ActorSystem::set_hibernate_after`]); its state
//!   stays.
//!
//! # Tracing
//! Each actor runs in a `debug` span named `actor` (system, id, URN, type); each message in
//! a `trace` span named `handle` (message name). With no subscriber, they cost a relaxed load.

mod actor;
mod actor_id;
mod cell;
#[cfg(unix)]
pub mod child;
mod context;
mod dynamic;
mod error;
mod exposed;
mod fence;
mod handler;
mod mailbox;
mod message;
mod messages;
mod observe;
mod pool;
mod registry;
mod run;
mod send;
mod spawn;
mod supervision;
mod system;
#[cfg(test)]
mod test_probe;
mod tight;
#[cfg(test)]
mod uptime_tests;
mod urn;

pub use observe::{metrics, trace};

pub use actor::Actor;
pub use actor_id::ActorId;
pub use context::{Context, TimerHandle};
pub use dynamic::DynActorRef;
pub use dynamic::erased_request::{AskHandle, ErasedRequest, QueuedAsk};
pub use dynamic::exchange::{DynAskFuture, DynTellFuture};
pub use dynamic::request_envelope::{ErasedResponder, ErasedResult, RequestEnvelope, Responder};
pub use error::{AskError, BoxError, LookupError, ProcessExit, SendError, SpawnError, StopReason};
pub use exposed::remote::{ErasedMessage, ExposedMessage};
pub use exposed::wire::{IntoHandlerError, MessageDecl, NoError, RemoteHandler, RemoteReply};
pub use fence::Fence;
pub use handler::Handler;
pub use mailbox::config::{DEFAULT_MAILBOX_CAPACITY, MailboxConfig};
pub use message::{Message, Priority};
pub use messages::StreamId;
pub use observe::snapshot::{
    ActorBrief, ActorSnapshot, ActorState, ExternalProbe, ExternalReport, HANDLING_BUCKETS,
    MAX_BRIEF_ACTORS, MessageTotals, PoolMemberSnapshot, PoolSnapshot, SnapshotChanges,
    SystemSnapshot,
};
pub use observe::urn_journal::{URN_JOURNAL_CAPACITY, UrnChanges};
pub use pool::builder::PoolBuilder;
pub use pool::{MemberLoad, Pool, PoolStats, PoolSupervisor, Routing, WhenFull};
pub use run::hibernation::DEFAULT_HIBERNATE_AFTER;
pub use send::actor_ref::{ActorRef, AskFuture, Recipient, TellFuture};
pub use send::address::{Address, Requester};
pub use send::broadcast::{BroadcastOutcome, Delivery};
pub use send::request::{AskRequest, DeliverAsk, DeliverTell, KeyRouted, SendOptions, TellRequest};
pub use spawn::SpawnBuilder;
pub use supervision::{PanicPolicy, RestartLimit, SupervisionEvent, SupervisionStrategy};
pub use system::{ActorInfo, ActorSystem, DEFAULT_ASK_TIMEOUT, ShutdownTimedOut};
pub use urn::{
    MAX_URN_LEN, Urn, UrnError, validate as validate_urn, validate_const as validate_urn_const,
};

/// Re-exports and helpers for code generated by `conclib-macros`. Not a stable API.
#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private;
