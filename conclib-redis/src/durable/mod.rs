//! Durable handlers: an activated URN's handler as a durable execution, its steps journaled
//! in the URN's fenced state so that it survives any crash.
//!
//! A handler of an actor activated by URN pattern ([`ProxyHandle::activate`]) runs an
//! execution under a key (an idempotency key) with [`Journal::run`]; each
//! [`Execution::step`] runs its closure once and records its (serde) value in the URN's
//! journal before the handler goes on. When the process dies anywhere, the request is
//! handled again by the URN's next activation (the proxy's failover), which replays the
//! handler: recorded steps return their recorded value without running, the first
//! unrecorded one runs. The same key begun again returns the recorded result.
//!
//! ```no_run
//! use conclib_redis::durable::{DurableError, Journal};
//!
//! struct Orders {
//!     journal: Journal, // Journal::new(activation.into_store()) in the constructor
//! }
//!
//! impl Orders {
//!     async fn place(&mut self, order_id: &str, cents: u64) -> Result<String, DurableError> {
//!         self.journal
//!             .run(order_id, |mut ex| async move {
//!                 let receipt: String = ex
//!                     .step("charge", async move { format!("charged {cents}") })
//!                     .await?;
//!                 if ex.version("email", 0..=1).await? == 1 {
//!                     let _: () = ex.step("email", async {}).await?;
//!                 }
//!                 Ok(receipt)
//!             })
//!             .await
//!     }
//! }
//! ```
//!
//! # Guarantees
//!
//! Each tested with member processes (`conclib-redis/tests/durable/`) SIGKILLed or
//! SIGSTOPped inside a step:
//!
//! - A step whose record committed never runs again: replayed, it returns the recorded
//!   value; a step whose process died between its side effect and its record runs again,
//!   once per such death (`a_step_cut_between_side_effect_and_record_runs_again_once`; and
//!   `examples/tests/durable_workflows.rs`: 100 workflows, members killed at random and
//!   Redis, with an append-only file flushed before each answer, killed and restarted
//!   once; half of them sleep durably and take a promise their caller resolves, each with
//!   the value it was resolved with).
//! - A process paused past its lease while another activation took the URN records
//!   nothing from then on: its records are refused with [`DurableError::Fenced`], and the
//!   message it was handling goes to the current activation
//!   (`a_fenced_out_holder_cannot_append`).
//! - The same key, from 64 callers asking again at once after any failure, across a kill
//!   of its holder, runs the execution once; every caller gets its first result, none
//!   past its timeout (`one_key_from_64_callers_across_a_kill_runs_once`).
//! - A durable [`sleep`](Execution::sleep) ends when its first run said, and a
//!   [`promise`](Execution::promise) resolved by a caller ([`Executions::resolve`], once)
//!   is taken by the next activation when its holder died
//!   (`a_sleep_and_a_promise_survive_a_killed_holder`).
//! - An execution given a wake message ([`Execution::wake_with`]) in a journal
//!   [`with_wakes`](Journal::with_wakes) lets its handler go in a long sleep or an
//!   unresolved promise ([`DurableError::Suspended`]); its activation is passivated, and a
//!   durable reminder activates the URN again when the sleep ends, and when a caller
//!   resolves the promise, also after the member that held it was SIGKILLed: the execution
//!   resumes by replay, each step run once, while 64 callers ask for its result again at
//!   once and none waits past its timeout
//!   (`a_suspended_sleep_and_promise_are_woken_by_reminders_across_passivation_and_a_kill`).
//! - Journals recorded by code without a version point, at v1 and at v2 replay against
//!   code supporting 0..=3; one recorded at a version outside what the code supports stops
//!   that execution with [`DurableError::UnsupportedVersion`]; a step asked under another
//!   name than recorded stops it with [`DurableError::Nondeterminism`]
//!   (`versions_replay_and_unsupported_ones_stop`).
//!
//! A step's side effect is at least once: make it idempotent where it leaves the process
//! (pass the execution's key and the step's name to the service charged, as an
//! idempotency key of its own).
//!
//! # What must stay deterministic
//!
//! Only steps are journaled. The code between them runs again on every replay, and must
//! ask for the same steps, in the same order, with the same names, given the same recorded
//! values: read the clock, draw random numbers, read other actors or the actor's own
//! fields, or call anything outside *inside* a step, whose value is recorded, not between
//! steps. A step asked for under another name than the journal holds at that point stops
//! the execution with [`DurableError::Nondeterminism`]. Code that changes while executions
//! are pending puts the change behind [`Execution::version`].
//!
//! # Where it lives
//!
//! In the URN's state hash (`{ns}:state:{urn}`), beside what its [`StateStore`] saves, and
//! under the same fence (the hash's `owner`, set by the activation that opened it last):
//! see `record.rs` for the fields. A finished execution keeps its result (the idempotency
//! record) until [`Journal::forget`]; its steps, and the promises it took, are deleted.
//! An execution waiting in its handler (a sleep, a promise, without a wake message) keeps
//! its URN's actor busy: the request stays pending, and a member's death moves it to the
//! next activation while its deadline has not passed. With a wake message it suspends
//! instead, and its wake is a durable reminder named `durable:<key>` (see
//! [`Journal::with_wakes`]): it lives in Redis, so it outlives the activation, its member
//! and every system.
//!
//! [`ProxyHandle::activate`]: crate::ProxyHandle::activate
//! [`StateStore`]: crate::scale::StateStore

mod error;
mod execution;
mod journal;
pub(crate) mod record;
mod scripts;
mod stats;
mod visibility;
mod wake;

pub use error::DurableError;
pub use execution::Execution;
pub use journal::{Begun, Journal};
pub use record::MAX_NAME_LEN;
pub use stats::{DurableStats, stats};
pub use visibility::read_executions;
pub use visibility::{ExecutionInfo, Executions, MAX_EXECUTIONS_LISTED, StepInfo};
