//! The scale-out room: several systems serving one URN or one URN pattern.
//!
//! Groups and their membership (`group`); actors activated on demand by URN pattern
//! (`activation`, stopped in `passivation`, the patterns and live activations in `activations`); which member
//! activates a URN (`placement`, the rule in `placement_rule`) and moving activations to
//! even the load (`rebalance`); the activation cap and memory shedding (`eviction`); failover of a gone member's activations (`takeover`); an
//! activation's fenced state store (`store`), its standing (`standing`), its
//! exactly-once records (`applied`, and a request's record while it is handled in
//! `record`) and its in-memory state carried to the next activation when it moves
//! (`migration`); members of two builds serving one pattern side by side, each request
//! decoded only by a member that reads its message's version (`versions`).

pub(super) mod activation;
pub(super) mod activations;
pub(super) mod applied;
pub(super) mod eviction;
pub(super) mod group;
pub(super) mod migration;
pub(super) mod passivation;
pub(super) mod placement;
pub(super) mod placement_rule;
pub(super) mod rebalance;
pub(super) mod record;
pub(super) mod standing;
pub(super) mod store;
pub(super) mod takeover;
pub(super) mod versions;
