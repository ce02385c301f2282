//! What waits in a client's outbox ([`StreamOutbox`]): the requests to write ([`Outgoing`])
//! and who waits for each write ([`Done`]). `outbox.rs` writes them.

use std::collections::HashMap;
use std::time::Instant;

use fred::prelude::*;
use tokio::sync::oneshot;

use super::waiter::Waiter;
use crate::error::ProxyError;

/// A request waiting to be written.
pub(super) struct Outgoing {
    /// The entry's fields but its TTL, which is added as it is written.
    pub(super) fields: Vec<(&'static str, Value)>,
    /// The body's size in bytes.
    pub(super) size: usize,
    /// How long the sender waits for the write.
    pub(super) deadline: Instant,
    /// When the request expires: its TTL counts from the moment it is written, so that the
    /// time it waited here is not granted twice.
    pub(super) expires: Instant,
    /// Who learns how the write went.
    pub(super) done: Done,
}

/// Who waits for a request's write.
pub(super) enum Done {
    /// A tell's sender: whether Redis took it (with the count of Redis losses read before
    /// the write), `UnknownUrn` when the stream does not exist.
    Tell(oneshot::Sender<Result<u64, ProxyError>>),
    /// An ask, waiting for its reply under this id in `Shared::pending`: a write that
    /// succeeds marks it written there (`Shared::writes_done`); one that fails ends it
    /// through its reply. So an ask is woken once, by its reply, not by its write too.
    Ask(u64),
}

impl Done {
    /// Whether nobody waits any more (a tell's sender or an ask gave up).
    pub(super) fn given_up(&self, pending: &HashMap<u64, Waiter>) -> bool {
        match self {
            Done::Tell(tx) => tx.is_closed(),
            Done::Ask(id) => !pending.contains_key(id),
        }
    }
}

/// The requests queued for one stream, and how many writers are at work on it.
#[derive(Default)]
pub(super) struct StreamOutbox {
    pub(super) queue: Vec<Outgoing>,
    pub(super) writers: usize,
}
