//! The Lua scripts a proxy runs ([`Scripts`]), each run by its SHA1 ([`Script`]).

use crate::protocol::{
    ANSWER_SCRIPT, CLAIM_MANY_SCRIPT, CLAIM_OPEN_SCRIPT, CLAIM_SCRIPT, FORWARD_SCRIPT,
    PLACE_SCRIPT, PLACEMENT_READ_SCRIPT, PLACEMENT_REPORT_SCRIPT, PUSH_SCRIPT, RELEASE_SCRIPT,
    RESET_SCRIPT, STATE_CLOSE_SCRIPT, SYSTEM_LEASE_SCRIPT,
};
pub(super) use crate::script::Script;

/// The scripts of a proxy instance, loaded by Redis on first use.
pub(super) struct Scripts {
    pub(super) claim: Script,
    /// `claim` for many keys in one call (not in a cluster).
    pub(super) claim_many: Script,
    /// `claim` and the activation's state opened, in one step ([`CLAIM_OPEN_SCRIPT`]).
    pub(super) claim_open: Script,
    pub(super) release: Script,
    /// A passivated activation's empty state key deleted ([`STATE_CLOSE_SCRIPT`]).
    pub(super) close_state: Script,
    pub(super) push: Script,
    pub(super) answer: Script,
    /// Passes a request on to another system's stream ([`FORWARD_SCRIPT`]).
    pub(super) pass_on: Script,
    /// Places a pattern's request on another member ([`PLACE_SCRIPT`]).
    pub(super) place: Script,
    /// Writes a member's count in a pattern's directory ([`PLACEMENT_REPORT_SCRIPT`]).
    pub(super) report: Script,
    /// Reads a pattern's directory ([`PLACEMENT_READ_SCRIPT`]).
    pub(super) read_directory: Script,
    /// Replaces a poisoned request stream by an empty one ([`RESET_SCRIPT`]).
    pub(super) reset: Script,
    /// A system's lease kept with its record of URN keys given away
    /// ([`SYSTEM_LEASE_SCRIPT`]).
    pub(super) system_lease: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            claim: Script::new(CLAIM_SCRIPT),
            claim_many: Script::new(CLAIM_MANY_SCRIPT),
            claim_open: Script::new(CLAIM_OPEN_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            close_state: Script::new(STATE_CLOSE_SCRIPT),
            push: Script::new(PUSH_SCRIPT),
            answer: Script::new(ANSWER_SCRIPT),
            pass_on: Script::new(FORWARD_SCRIPT),
            place: Script::new(PLACE_SCRIPT),
            report: Script::new(PLACEMENT_REPORT_SCRIPT),
            read_directory: Script::new(PLACEMENT_READ_SCRIPT),
            reset: Script::new(RESET_SCRIPT),
            system_lease: Script::new(SYSTEM_LEASE_SCRIPT),
        }
    }
}
