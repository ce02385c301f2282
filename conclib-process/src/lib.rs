//! Actors in their own OS process, behind a typed ref: all of a machine's cores for
//! CPU-bound work, and a crash, leak or hang that takes down one worker, not the service.
//!
//! ```no_run
//! use conclib_core::{Actor, Context, Handler, Message, MessageDecl, NoError, RemoteHandler, ExposedMessage};
//! use serde::{Deserialize, Serialize};
//! use std::convert::Infallible;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hasher { rounds: u32 }
//!
//! #[derive(Serialize, Deserialize)]
//! struct Hash(u64);
//! impl Message for Hash { type Response = u64; type Error = Infallible; }
//! impl MessageDecl for Hash { type WireError = NoError; } // `#[message]` writes this
//!
//! impl Actor for Hasher {
//!     const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of_infallible::<Hash>()];
//!     async fn handle_request(&mut self, req: conclib_core::RequestEnvelope, ctx: &mut Context<Self>) {
//!         match req.extract::<Hash>() {
//!             Ok((msg, r)) => r.respond(self.handle(msg, ctx).await),
//!             Err(req) => req.reject(),
//!         }
//!     }
//! }
//! impl Handler<Hash> for Hasher {
//!     async fn handle(&mut self, Hash(n): Hash, _: &mut Context<Self>) -> Result<u64, Infallible> {
//!         Ok((0..self.rounds).fold(n, |h, _| h.wrapping_mul(31).wrapping_add(7)))
//!     }
//! }
//! impl RemoteHandler<Hash> for Hasher {} // `#[handle(remote)]` writes this
//!
//! fn main() {
//!     // First line: in a process started as a process actor, this runs the actor and exits.
//!     conclib_process::init(conclib_process::Registry::new().actor::<Hasher>());
//!     tokio::runtime::Runtime::new().unwrap().block_on(async {
//!         let hasher = conclib_process::build(Hasher { rounds: 1_000 }).spawn().await.unwrap();
//!         let h = hasher.ask(Hash(1)).await.unwrap();
//!         println!("{h} from process {}", hasher.pid());
//!     });
//! }
//! ```
//!
//! # How it works
//! - **Re-exec, never fork.** [`build`]`(..).spawn()` starts this same executable again
//!   with the environment variable `CONCLIB_PROCESS_FD` naming an inherited Unix socket;
//!   [`init`], the first line of `main`, sees it and runs the worker role instead of the
//!   program. The actor's type is looked up by name in the [`Registry`] given to `init`,
//!   its initial state sent serialized (serde, bincode 2), and it runs as an ordinary actor
//!   of an actor system in the child (a `Context`, timers, streams, children).
//! - **The link**: two inherited Unix socket pairs, one for requests and answers (in order),
//!   one for heartbeats (the control lane, answered by a thread of the child of its own: a
//!   heartbeat never waits behind queued requests or a busy handler). The actor runs on a
//!   one-thread tokio runtime in its process by default
//!   ([`ProcessBuilder::worker_threads`]), where the link's tasks and the actor hand
//!   messages over without waking other threads.
//!   Frames are length-delimited: a 4-byte big-endian length, a tag byte, then the fields
//!   (`Init { kind, state, resume }`, `Request { id, high, trace, message, body }` where id
//!   0 is a tell, `Reply { id, status, payload }`, `Ping`/`Pong`, `Stop`, `Cancel { id }`,
//!   `Ask`/`Answer` for the child's asks to the parent's system, `Ended { panicked, reason }`;
//!   the table is in the source of `wire.rs`). A frame is at most 64 MiB: a message or an
//!   answer that does not fit fails alone with [`AskError::Codec`](conclib_core::AskError::Codec) saying so; a frame
//!   that cannot be read (corrupt, oversized) breaks the link, and the process is killed.
//!   Message bodies and answers are encoded with [`conclib_codec::Bincode`] by the
//!   message's wire name, so a message must be exposed by the actor (`#[handle(remote)]`;
//!   by hand, [`Actor::REMOTE`](conclib_core::Actor::REMOTE) and
//!   [`RemoteHandler`](conclib_core::RemoteHandler)): a [`ProcessRef`] does not compile a
//!   send of one that is not. Frames queued
//!   together are written together and read through a buffer. The sockets are registered
//!   with the runtime for reading only (a socket registered for writing too would wake each
//!   side once more per round trip, when the other reads); a writer that finds its socket
//!   full waits on a duplicate registered for writing. Asks pipeline: many can be in
//!   flight; the messages of one sender enter the actor's mailbox in the order sent.
//!   `Stop` travels with the requests, so a graceful stop comes after what was sent before it.
//! - **Failure semantics.** A handler's error or panic comes back to the asker as
//!   [`AskError::Handler`](conclib_core::AskError::Handler) or [`AskError::Panicked`](conclib_core::AskError::Panicked), as locally; after a panic the
//!   actor stops (the default [`ProcessBuilder::on_panic`] policy: its process sends why and
//!   exits, a death like any other) or resumes (`PanicPolicy::Resume`). A process that
//!   dies (abort, `SIGKILL`, OOM kill, exit) fails every pending ask at once with
//!   [`AskError::Exited`](conclib_core::AskError::Exited), which carries the exit code or signal;
//!   [`ProcessRef::wait_for_stop`] says the same. A process that misses its heartbeat
//!   ([`ProcessBuilder::heartbeat`], default 2 s) is killed and treated as dead. With
//!   [`ProcessBuilder::restart`], a dead process is replaced by a fresh one (the actor's
//!   initial state) within a restart limit, behind the same ref. An address-space limit
//!   ([`ProcessBuilder::memory_limit`]) makes a process that eats memory abort alone. A child
//!   never outlives the parent: it is bound to the parent's life (`PR_SET_PDEATHSIG`, see
//!   `conclib_core::child`), and exits on its own when the link closes. Children are
//!   reaped: no zombie is left. Asks and tells sent once a death is seen (the parent saw the
//!   process exit, or its actor stop: an ask sent once a `Panicked` answer came, under the
//!   default `Stop` policy, is sent after that death), while the restart policy may still
//!   replace the process, wait for the new process (at most its start timeout, 10 s by
//!   default) and reach it in order; [`ProcessRef::try_tell`] does not wait and fails
//!   [`AskError::Exited`](conclib_core::AskError::Exited). What was sent to the process before it died is lost with it
//!   (its asks fail at once, as above).
//!
//! - **Asks given up.** An ask whose asker gave up (its timeout passed, or its future was
//!   dropped) is cancelled in the child (a `Cancel` frame): if the actor has not started it
//!   yet, it never does, as locally, and the skip is counted in the snapshot (below). One
//!   already running runs to its end.
//! - **Asking the parent.** Inside the child, [`parent`] gives a [`ParentLink`] that asks and
//!   tells the actors of the parent's system by URN ([`ProcessBuilder::system`] names that
//!   system), in order, with typed answers and errors.
//! - **In a system, by URN.** Built with [`ProcessBuilder::system`] (or
//!   [`child_of`](ProcessBuilder::child_of); [`SpawnProcess`] writes them
//!   `system.process(actor)` and `ctx.process(actor)`), a process actor is a member of that system as a
//!   local actor is: a local [`ProcessRelay`] stands for it there and relays to its process.
//!   So it has an id and, with [`ProcessBuilder::urn`], a URN: `system.lookup(urn)`,
//!   [`ProcessRef::to_dyn`], other processes through the Redis proxy and pools reach it like
//!   any actor. Through such a [`DynActorRef`](conclib_core::DynActorRef) the errors are the
//!   same `AskError`s as through its `ProcessRef`: an ask lost with its process fails
//!   [`AskError::Exited`](conclib_core::AskError::Exited). It lives as a local actor does: until stopped or killed (by its ref or by URN),
//!   until its parent stops, or until the system shuts down; when its process ends for good,
//!   its local actor stops with it (`Normal`, `Killed`, `Panicked`, `RestartLimit` or
//!   `Failed`) and its URN is free.
//! - **Pools.** [`ProcessBuilder::into_actor`] gives that local actor unstarted, for a
//!   [`Pool`](conclib_core::Pool): `system.pool(|| conclib_process::build(Worker).into_actor())`
//!   spreads work over processes behind one URN; a member whose process dies past its restart
//!   policy is replaced by a fresh one; a member's asks in flight are its load for
//!   least-loaded routing; the pool's dead-man's switch (`unresponsive_after`) reaches the
//!   actor in the member's process, so a handler stuck there gets the member (and its
//!   process) killed and replaced. [`ProcessPool`] asks and tells it with typed
//!   messages checked against the actor's handlers at compile time (`Pool::ask` itself is
//!   for in-process members); its URN and `pool.to_dyn()` reach it as any actor.
//! - **Output.** The child's stdout and stderr lines become `tracing` events of target
//!   `conclib_process::child` with the fields `actor` and `pid` (stdout at `INFO`, stderr at
//!   `WARN`); [`ProcessBuilder::output`]`(`[`ChildOutput::Inherit`]`)` leaves them on the
//!   parent's own stdout and stderr. The child runs no `tracing` subscriber of its own
//!   unless `main` installs one before [`init`] (code before `init` runs in both roles;
//!   [`is_process_actor`] tells them apart): a `fmt` subscriber writing to stderr there puts
//!   the child's spans and events into the parent's log this way.
//! - **Traces.** An ask or tell sent inside a trace
//!   ([`TraceContext::scope`](conclib_core::trace::TraceContext::scope), or with the core's
//!   feature `otel` the current OpenTelemetry span) carries a child of it to the process,
//!   as asks through the Redis proxy do: the actor's `handle` span there records `trace_id`
//!   and `parent_span_id` (with `otel`, it is exported as a child of the asking span), and
//!   [`RequestEnvelope::trace`](conclib_core::RequestEnvelope::trace) gives it to a
//!   handler. Asks by URN pass on the trace their request came with (from the Redis proxy,
//!   say), and the child's [`ParentLink`] asks carry the child's current trace back: inside
//!   a handler, the trace of the message it handles.
//! - **In the snapshot.** With [`ProcessBuilder::system`], the actor is listed in that
//!   system's [`snapshot`](conclib_core::ActorSystem::snapshot) (so in the live view) under
//!   its id, URN and parent, with its own type, its process id, requests waiting, answers,
//!   errors, panics, restarts and asks skipped (given up before its actor started them, in
//!   its process or before its local actor handed them on), until it ends for good.
//! - **Metrics** (once [`conclib_core::metrics::enable`] was called), label `actor` (the
//!   type name): `conclib_process_restarts_total` (counter), `conclib_process_exits_total`
//!   (counter, label `reason`: `panicked` (its actor panicked; the process exits 0 then),
//!   `exit_ok`, `exit_error`, `sigkill`, `signal`, `unknown`), and
//!   `conclib_process_link_round_trip_seconds` (histogram: a heartbeat's round trip through
//!   the child's heartbeat thread, and the first one at each start).
//! - **Method calls.** [`ProcessRef`] is an [`Address`](conclib_core::Address): the
//!   `{Actor}Api` trait generated by `#[actor]` works on it (`worker.scale(2, 1).await`),
//!   for the `#[handle(remote)]` methods.
//!
//! - **Supervision.** Built with [`ProcessBuilder::child_of`]`(ctx)` inside an actor, the
//!   process actor is that actor's child for supervision: its restarts and its end come to
//!   the parent's `on_event` as `ChildRestarted` and `ChildStopped` events, as a local
//!   child's do (a process that died past its restart limit ends with `RestartLimit`, which
//!   the default `on_event` escalates).
//!
//! `cargo run --release -p conclib-examples --example process_actors` spreads CPU-bound
//! work over one process actor per core, crashes one on purpose and shows it restarted.

mod answer;
mod builder;
mod child;
mod deadlines;
mod error;
mod link;
mod outbox;
mod parent;
mod parent_link;
mod process_ref;
mod relay;
mod socket;
mod spec;
mod wire;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

/// What waits for an answer, by the id its side gave the request: sequential numbers of
/// ours, hashed by one multiplication (SipHash guards against keys an attacker picks; these
/// are not).
type ById<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The trace a message sent now carries to the other side: a child of the current one, if
/// the sender runs in one (no new trace per message: most are not traced).
fn passed_on_trace() -> Option<conclib_core::trace::TraceContext> {
    conclib_core::trace::TraceContext::current().map(|t| t.child())
}

/// Locks. `parking_lot`'s lock: no poisoning (what it guards stays consistent: plain maps
/// and buffers, each updated in one step), and none of the standard lock's checks for a
/// panic in progress at each lock and unlock (docs/bench-log.md, "Process actors' locks").
fn lock<T>(m: &parking_lot::Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
}

pub use builder::{ProcessBuilder, SpawnProcess, build};
pub use child::{Registry, init, is_process_actor};
pub use error::{ProcessExit, ProcessSpawnError};
pub use parent_link::{ParentLink, parent};
pub use process_ref::ProcessRef;
pub use relay::{ProcessPool, ProcessRelay};
pub use spec::ChildOutput;
