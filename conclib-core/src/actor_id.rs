//! [`ActorId`]: what names an actor within its system (the registry's, the snapshots' and
//! the change lists' key), apart from the system that hands it out.

use std::fmt;

/// An actor's id: unique within its system for the system's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(pub(crate) u64);

impl ActorId {
    /// The number behind the id.
    #[must_use]
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
