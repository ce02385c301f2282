//! The serving room: one request's path through a proxy instance, and what it keeps to
//! serve.
//!
//! A request is read (`read`), checked, routed and decoded (`dispatch`), handed to its actor
//! (`handoff`), and answered (`write`); one whose URN another system holds is passed on
//! (`forward`). Kept alongside: the lease and the URN keys it covers (`lease`,
//! `lease_state`, `owned`; `given`, the record of those a takeover gave away), the request stream and its unacknowledged entries (`stream`),
//! the URNs known (`registry`), the pending counts against the overload limits (`admission`), Redis's clock (`clock`), the counters (`counters`) and the
//! system's published snapshot (`publish`).

pub(super) mod admission;
pub(super) mod clock;
pub(super) mod counters;
pub(super) mod dispatch;
pub(super) mod forward;
pub(super) mod given;
pub(super) mod handoff;
pub(super) mod heartbeat;
pub(super) mod lease;
pub(super) mod lease_state;
pub(super) mod owned;
pub(super) mod publish;
pub(super) mod read;
pub(super) mod registry;
pub(super) mod request;
pub(super) mod stream;
pub(super) mod urn_keys;
pub(super) mod write;
