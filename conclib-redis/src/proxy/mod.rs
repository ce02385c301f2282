//! [`start_proxy`]: serves an actor system's exposed actors to other processes.
//!
//! This module only assembles, in two rooms: `serve` (one request's path: read, check,
//! route, decode, hand off, write; forwarding, the lease, the system's stream) and `scale`
//! (groups, activation, placement, rebalance, takeover, the fenced store, exactly-once
//! records). A proxy instance is [`Shared`](shared::Shared) (`shared`), made of parts each
//! in a file of its own; `handle` starts and stops a proxy; `scripts` holds the Lua scripts
//! both rooms run. What needs both rooms is composed here, above them, so that neither calls
//! the other back: joining a group (`join`: the scale room enters the member, the serving
//! room reads its streams) and declaring a pattern (`activator`).

mod activator;
mod departure;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod handle;
mod join;
mod overload_handle;
mod readiness;
mod scale;
mod scripts;
mod serve;
mod shared;

pub use activator::{Activator, DEFAULT_PASSIVATE_AFTER};
pub use handle::{ProxyHandle, start_proxy};
pub use readiness::{Readiness, ReadinessProbe};
pub use scale::activations::Activation;
pub use scale::placement_rule::{MemberInfo, PlaceFn, Placement};
pub use scale::store::{StateStore, StoreError};
