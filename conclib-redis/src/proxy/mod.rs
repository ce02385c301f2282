//! [`start_proxy`]: serves an actor system's exposed actors to other processes.
//!
//! This module only assembles: a proxy instance is [`Shared`](shared::Shared) (`shared`),
//! made of parts each in a file of its own (`lease_state`, `stream`, `scripts`,
//! `registry`, `counters`, `clock`, `activations`); `handle` starts and stops a proxy, and
//! the other files act on the parts: read requests (`read`), turn each into its handling
//! (`dispatch`), write answers (`write`) and keep the leases (`lease`).

mod activation;
mod activations;
mod applied;
mod clock;
mod counters;
mod departure;
mod dispatch;
mod forward;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod group;
mod handle;
mod handoff;
mod lease;
mod lease_state;
mod owned;
mod placement;
mod placement_rule;
mod publish;
mod read;
mod rebalance;
mod registry;
mod scripts;
mod shared;
mod standing;
mod store;
mod stream;
mod takeover;
mod write;

pub use activation::{Activator, DEFAULT_PASSIVATE_AFTER};
pub use activations::Activation;
pub use handle::{ProxyHandle, start_proxy};
pub use placement_rule::{MemberInfo, PlaceFn, Placement};
pub use store::{StateStore, StoreError};
