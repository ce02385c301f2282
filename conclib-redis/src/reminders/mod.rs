//! Durable reminders: wake an actor by URN at a time, once or every period, even when it is
//! passivated, its system crashed, or every system was down (issue #64).
//!
//! A reminder is registered for a URN ([`Reminders::register`], from a [`ProxyClient`],
//! from an activated actor's handler with a [`Reminders`] it was given, or from the Python
//! client) and stored in Redis. Every system that runs a [`ReminderPoller`] claims due
//! reminders and delivers each as a [`ReminderTick`] ask to its URN through the ordinary
//! request path: the URN is activated if it is passivated (by the placement rules), leases
//! and fencing apply as to any ask. The tick is acknowledged in Redis only once the ask was
//! handled.
//!
//! Unlike the in-process timers of `Context` (which live in the actor's task and die with
//! it), a reminder lives in Redis: passivation, crashes of every system and Redis restarts
//! with persistence keep it.
//!
//! # Guarantees (each with its test, `tests/reminders/`)
//! - **Exactly one delivery per tick across systems, absent crashes.** A due reminder is
//!   claimed by one system in a script (its due-set score becomes the claim's end), so two
//!   pollers never deliver the same tick; test
//!   `reminders_fire_exactly_once_across_three_systems`.
//! - **Delivered to a passivated URN.** The tick is an ask through the request path: a
//!   passivated activation is activated again; test
//!   `a_reminder_registered_by_an_actor_wakes_it_after_passivation`.
//! - **Missed ticks coalesced.** A periodic reminder whose ticks came due while no system
//!   ran is delivered once, with [`ReminderTick::missed`] saying how many earlier ticks it
//!   stands for; the next tick is the first one after now, on the period's grid; test
//!   `a_periodic_reminder_missed_while_all_systems_were_down_fires_once`.
//! - **At least once across a firer's crash.** A tick is acknowledged only after its ask
//!   was handled (answered, or failed in the handler: `Handler`, `Panicked`, `NoResponse`);
//!   a system killed between its claim and its acknowledgement leaves the claim to lapse
//!   after [`ReminderPollerOptions::claim_lease`], then another system delivers the tick
//!   again; test `a_firer_killed_mid_delivery_is_taken_over_after_its_claim`. A handler
//!   that must act once per tick keeps the last [`ReminderTick::due_ms`] it handled in its
//!   `StateStore`.
//! - **Failed deliveries are retried.** An ask that fails otherwise (`Unavailable`,
//!   `Timeout`, `UnknownUrn`, `MailboxFull`, ...) gives the claim back, to be tried again
//!   after [`ReminderPollerOptions::retry_after`].
//!
//! # Layout
//! See `keys.rs`: [`REMINDER_SHARDS`] shards per namespace, each a sorted set of reminders
//! by due time under its own hash tag (Cluster), so finding the due ones reads only those.

mod keys;
mod metrics;
mod poller;
mod scripts;
mod store;
mod tick;

pub use keys::{MAX_NAME_LEN as MAX_REMINDER_NAME_LEN, SHARDS as REMINDER_SHARDS};
pub use poller::{ReminderPoller, ReminderPollerOptions, ReminderPollerStats};
pub use store::{Reminder, ReminderError, ReminderInfo, Reminders};
pub use tick::ReminderTick;

#[cfg(doc)]
use crate::ProxyClient;

/// The Lua scripts, for the conformance test of other clients (not for users).
#[doc(hidden)]
pub fn __scripts() -> [(&'static str, &'static str); 3] {
    [
        ("register", scripts::REGISTER),
        ("cancel", scripts::CANCEL),
        ("list", scripts::LIST),
    ]
}
