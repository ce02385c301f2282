//! The URNs a proxy knows about ([`Registry`]).

use std::collections::{HashMap, HashSet};

use super::owned::OwnedUrns;

/// URNs this proxy knows about.
#[derive(Default)]
pub(super) struct Registry {
    /// Live local URNs, and whether the actor exposes any message.
    pub(super) local: HashMap<String, bool>,
    /// Local URNs served by a group ([`ProxyHandle::join`]): not claimed for this system.
    ///
    /// [`ProxyHandle::join`]: crate::ProxyHandle::join
    pub(super) shared: HashSet<String>,
    /// URNs being activated: claimed, their actor not spawned yet (a scan keeps them).
    pub(super) activating: HashSet<String>,
    /// URNs whose ownership key names this system.
    pub(super) owned: OwnedUrns,
    /// URNs another system owns: URN → that system's id.
    pub(super) conflicts: HashMap<String, String>,
}
