//! Watching a system from outside its actors: metrics, snapshots and the changes they
//! read, traces, the URN journal.

pub(crate) mod changes;
pub mod metrics;
pub(crate) mod snapshot;
pub mod trace;
pub(crate) mod urn_journal;
