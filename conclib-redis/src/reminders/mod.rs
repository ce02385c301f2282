//! Durable reminders: wake an actor by URN at a time, once or every period, even when it is
//! passivated, its system crashed, or every system was down.
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
//! The guarantees, each with its test, are on [`Reminders`].
//!
//! The live view (`conclib-view`, `GET /api/reminders`) reads them on request through
//! [`SnapshotReader::reminders`](crate::snapshots::SnapshotReader::reminders): counts, a URN's or a
//! prefix's reminders, and each poller's own report (published every
//! [`snapshot_interval`](crate::ProxyConfig::snapshot_interval) of its client).
//!
//! # Layout
//! See `keys.rs`: [`REMINDER_SHARDS`] shards per namespace, each a sorted set of reminders
//! by due time under its own hash tag (Cluster), so finding the due ones reads only those.

mod acker;
mod keys;
mod metrics;
mod overview;
mod poller;
mod renewal;
mod report;
mod scripts;
mod store;
mod tick;

pub use keys::{MAX_NAME_LEN as MAX_REMINDER_NAME_LEN, SHARDS as REMINDER_SHARDS};
pub(crate) use overview::read as read_overview;
pub use overview::{
    MAX_POLLERS, MAX_REMINDER_PREFIX_LEN, MAX_REMINDERS_LISTED, RegisteredReminder, ReminderQuery,
    RemindersOverview, SCAN_PER_SHARD,
};
pub use poller::{
    DEFAULT_CLAIM_LEASE as DEFAULT_REMINDER_CLAIM_LEASE, ReminderPoller, ReminderPollerOptions,
    ReminderPollerStats,
};
pub use report::PollerReport;
pub use store::{MAX_REMINDER_HORIZON, Reminder, ReminderError, ReminderInfo, Reminders};
pub use tick::ReminderTick;

#[cfg(doc)]
use crate::client::ProxyClient;

/// The Lua scripts, for the conformance test of other clients (not for users).
#[doc(hidden)]
pub fn __scripts() -> [(&'static str, &'static str); 3] {
    [
        ("register", scripts::REGISTER),
        ("cancel", scripts::CANCEL),
        ("list", scripts::LIST),
    ]
}
