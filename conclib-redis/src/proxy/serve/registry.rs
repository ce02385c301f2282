//! The URNs a proxy knows about ([`Registry`]).

use std::collections::{HashMap, HashSet};

use super::owned::OwnedUrns;

/// URNs this proxy knows about.
#[derive(Default)]
pub(in crate::proxy) struct Registry {
    /// Live local URNs, and whether the actor exposes any message.
    pub(in crate::proxy) local: HashMap<String, bool>,
    /// Local URNs served by a group ([`ProxyHandle::join`]): not claimed for this system.
    ///
    /// [`ProxyHandle::join`]: crate::ProxyHandle::join
    pub(in crate::proxy) shared: HashSet<String>,
    /// URNs being activated: claimed, their actor not spawned yet (a scan keeps them).
    pub(in crate::proxy) activating: HashSet<String>,
    /// URNs whose activation is stopping to be passivated or moved: the passivation
    /// releases or hands over their keys, and a scan leaves them alone (it would see the
    /// stopping actor alive, count it live again, and release its key as it stops: a
    /// move's key released instead of handed over).
    pub(in crate::proxy) stopping: HashSet<String>,
    /// URNs whose ownership key names this system.
    pub(in crate::proxy) owned: OwnedUrns,
    /// URNs another system owns: URN → that system's id.
    pub(in crate::proxy) conflicts: HashMap<String, String>,
}
