//! [`ActorSystem::snapshot`]: every actor of a system at one moment, as plain serde data
//! (what the Redis proxy publishes and the live view draws).

use std::borrow::Cow;
use std::sync::Weak;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[cfg(doc)]
#[cfg(doc)] // for the docs' links only
use crate::ActorSystem;
use crate::actor_id::ActorId;
use sample::Sample;

pub(crate) mod look;
pub(crate) mod looked;
pub(crate) mod sample;
pub(crate) mod tallies;
#[cfg(test)]
mod tests;

/// A system at one moment: from [`ActorSystem::snapshot`].
///
/// ```
/// # use conclib_core::*;
/// struct Idle;
/// impl Actor for Idle {}
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("docs");
/// system.build(Idle).urn("idle:1").spawn().await.unwrap();
/// let snapshot = system.snapshot();
/// assert_eq!(snapshot.system, "docs");
/// assert_eq!(snapshot.actors[0].urn.as_deref(), Some("idle:1"));
/// assert_eq!(snapshot.actors[0].state, ActorState::Running);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemSnapshot {
    /// The system's name.
    pub system: String,
    /// The OS process the system runs in.
    pub pid: u32,
    /// When the snapshot was taken (its actors' figures read from then on), in milliseconds
    /// since the Unix epoch.
    pub taken_at_ms: u64,
    /// Every actor that has not stopped, by id ([`ActorSystem::snapshot`]); or the most
    /// telling ones, most telling first ([`ActorSystem::snapshot_first`]).
    pub actors: Vec<ActorSnapshot>,
    /// Actors left out of `actors` by [`ActorSystem::snapshot_first`] (those in `others`
    /// included).
    #[serde(default)]
    pub omitted_actors: usize,
    /// Actors left out of `actors` by [`ActorSystem::snapshot_first`], in brief and by id:
    /// the first [`MAX_BRIEF_ACTORS`] of them (the rest are only counted in
    /// `omitted_actors`). Empty from [`ActorSystem::snapshot`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<ActorBrief>,
    /// Per actor type and message type, what the system's live actors handled while
    /// [metrics](crate::metrics) were on, since each started (empty with metrics off), by
    /// actor type and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageTotals>,
}

/// How many buckets [`MessageTotals::handling_us`] has.
pub const HANDLING_BUCKETS: usize = 24;

/// In a [`SystemSnapshot`]: what the live actors of one type handled of one message type,
/// since each started, while [metrics](crate::metrics) were on. Each actor counts a message
/// right after its handler is done (an asker may have its answer a moment before), where
/// snapshots read it: no lock, and nothing held back for later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageTotals {
    /// The actors' Rust type.
    pub actor_type: Cow<'static, str>,
    /// The message's name (its wire name).
    pub message: Cow<'static, str>,
    /// Messages handled.
    pub handled: u64,
    /// Handlers that returned an error.
    pub errors: u64,
    /// Handling times, in [`HANDLING_BUCKETS`] power-of-two buckets of microseconds: bucket
    /// 0 counts the times under 1 µs, bucket `i` those from 2^(i-1) µs to under 2^i µs, the
    /// last one also every longer time.
    pub handling_us: Vec<u64>,
}

/// One message type's figures as a snapshot read them ([`LiveTally::read`]), and their sums.
#[derive(Clone)]
pub(crate) struct Tally {
    name: &'static str,
    handled: u64,
    errors: u64,
    buckets: [u64; HANDLING_BUCKETS],
}

impl Tally {
    pub(crate) fn new(name: &'static str) -> Tally {
        Tally {
            name,
            handled: 0,
            errors: 0,
            buckets: [0; HANDLING_BUCKETS],
        }
    }

    /// The bucket of a handling time of `handling_ns` nanoseconds.
    #[inline]
    pub(crate) fn bucket_of(handling_ns: u64) -> usize {
        let us = handling_ns / 1000;
        (64 - us.leading_zeros() as usize).min(HANDLING_BUCKETS - 1)
    }

    fn add(&mut self, other: &Tally) {
        self.handled += other.handled;
        self.errors += other.errors;
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }
}

/// The most actors [`ActorSystem::snapshot_first`] lists in brief in
/// [`SystemSnapshot::others`]: enough for a system of this many actors to be searched
/// whole, while a system of millions does not make a snapshot of hundreds of megabytes.
pub const MAX_BRIEF_ACTORS: usize = 200_000;

/// An actor in brief, in [`SystemSnapshot::others`]: its figures without its last error
/// or pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorBrief {
    /// Its id (unique in its system).
    pub id: u64,
    /// Its URN, if it has one.
    pub urn: Option<String>,
    /// Its Rust type.
    #[serde(rename = "type")]
    pub type_name: Cow<'static, str>,
    /// Its parent's id, if it is a child.
    pub parent: Option<u64>,
    /// Running or stopping.
    pub state: ActorState,
    /// User messages queued (as [`ActorRef::mailbox_len`](crate::ActorRef::mailbox_len)
    /// counts them).
    pub mailbox_len: usize,
    /// Messages handled since it started.
    pub handled: u64,
    /// Messages handled per second since the previous snapshot of this system.
    pub rate: f64,
    /// Handlers that returned an error.
    pub errors: u64,
    /// Handlers and hooks that panicked.
    pub panics: u64,
    /// Restarts.
    pub restarts: u64,
    /// Asks not started because their asker had given up.
    pub asks_skipped: u64,
}

impl ActorBrief {
    /// The same actor as an [`ActorSnapshot`] (no last error, pool or process id).
    #[must_use]
    pub fn to_snapshot(&self) -> ActorSnapshot {
        self.clone().into_snapshot()
    }

    /// The same actor as an [`ActorSnapshot`] (no last error, pool or process id), without
    /// copying its URN.
    #[must_use]
    pub fn into_snapshot(self) -> ActorSnapshot {
        ActorSnapshot {
            id: self.id,
            urn: self.urn,
            type_name: self.type_name.into_owned(),
            parent: self.parent,
            state: self.state,
            mailbox_len: self.mailbox_len,
            handled: self.handled,
            rate: self.rate,
            errors: self.errors,
            panics: self.panics,
            restarts: self.restarts,
            asks_skipped: self.asks_skipped,
            last_error: None,
            pid: None,
            pool: None,
        }
    }
}

/// One actor in a [`SystemSnapshot`].
///
/// Its counts are the actor's own bookkeeping, kept after a message's answer was sent
/// (batched between messages, and a panic's once its panic policy ran): a snapshot taken
/// the moment an ask returns may not count that message yet; the next look does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorSnapshot {
    /// Its id (unique in its system).
    pub id: u64,
    /// Its URN, if it has one.
    pub urn: Option<String>,
    /// Its Rust type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its parent's id, if it is a child.
    pub parent: Option<u64>,
    /// Running, or stopping (handles what is queued, takes nothing new).
    pub state: ActorState,
    /// User messages queued (as [`ActorRef::mailbox_len`](crate::ActorRef::mailbox_len)
    /// counts them).
    pub mailbox_len: usize,
    /// Messages handled since it started (including those whose handler failed or panicked).
    pub handled: u64,
    /// Messages handled per second since the previous snapshot of this system (0 for the
    /// first one).
    pub rate: f64,
    /// Handlers that returned an error.
    pub errors: u64,
    /// Handlers and hooks that panicked.
    pub panics: u64,
    /// Restarts (after a panic, or a sibling's under one-for-all).
    pub restarts: u64,
    /// Asks not started because their asker had given up.
    pub asks_skipped: u64,
    /// The last handler error or panic, as text.
    pub last_error: Option<String>,
    /// The OS process it runs in, for an actor in a process of its own (`None`: this
    /// system's process, [`SystemSnapshot::pid`]).
    #[serde(default)]
    pub pid: Option<u32>,
    /// For the actor behind a [`Pool`](crate::Pool): its members' load.
    #[serde(default)]
    pub pool: Option<PoolSnapshot>,
}

/// A pool's members in a [`SystemSnapshot`] (the members are also listed as actors, the
/// pool's children).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Each member in the routing table: its id, messages queued in its mailbox, and asks
    /// sent through the pool and not answered yet.
    pub members: Vec<PoolMemberSnapshot>,
    /// Members replaced since the pool started (dead or unresponsive).
    pub replaced: u64,
}

/// One member of a [`PoolSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolMemberSnapshot {
    /// The member's id.
    pub id: u64,
    /// Messages queued in its mailbox.
    pub queued: usize,
    /// Asks sent through the pool and not yet answered.
    pub in_flight: usize,
}

/// Reports a pool's members (registered by the pool's actor while it runs).
pub(crate) type PoolProbe = dyn Fn() -> PoolSnapshot + Send + Sync;

/// What an actor whose work runs outside this system's tasks (an actor in a child process,
/// behind a local actor that relays to it) reports to [`ActorSystem::snapshot`], in place
/// of its local actor's own figures; see [`ActorSystem::report_external`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExternalReport {
    /// Its Rust type.
    pub type_name: &'static str,
    /// The OS process it runs in now.
    pub pid: Option<u32>,
    /// Requests sent to it and not answered yet.
    pub mailbox_len: usize,
    /// Requests it has answered.
    pub handled: u64,
    /// Answers that were its handler's error.
    pub errors: u64,
    /// Answers that were a panic.
    pub panics: u64,
    /// Asks given up before it started them (it never will).
    pub asks_skipped: u64,
    /// Restarts (of its process).
    pub restarts: u64,
    /// The last error, panic or death, as text.
    pub last_error: Option<String>,
}

/// Reports an external actor's state; `None` once it has stopped for good.
pub type ExternalProbe = dyn Fn() -> Option<ExternalReport> + Send + Sync;

/// One entry of [`ActorSystem::report_external`].
pub(crate) struct External {
    pub(crate) id: ActorId,
    pub(crate) probe: Weak<ExternalProbe>,
    sample: Option<Box<Sample>>,
}

impl External {
    pub(crate) fn new(id: ActorId, probe: Weak<ExternalProbe>) -> Self {
        External {
            id,
            probe,
            sample: None,
        }
    }
}

/// Where an actor is in its life, in a [`SystemSnapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorState {
    /// Taking and handling messages.
    Running,
    /// Stopping: handles what is queued, takes nothing new.
    Stopping,
}

/// A snapshot and what changed in brief since an earlier one: from
/// [`ActorSystem::snapshot_changes`].
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotChanges {
    /// The most telling actors in full, as from
    /// [`snapshot_first`](ActorSystem::snapshot_first), with no
    /// [`others`](SystemSnapshot::others).
    pub snapshot: SystemSnapshot,
    /// In brief, by id: every actor among `ids` whose figures changed since the look asked
    /// about (actors started since included), whether listed in full or not.
    pub changed: Vec<ActorBrief>,
    /// The ids of every live actor, ascending: the first [`MAX_BRIEF_ACTORS`] of them (an
    /// actor that stopped since the earlier look is not among them).
    pub ids: Vec<u64>,
    /// This call's look: pass it as `since` to a later call for what changed from now on.
    pub look: u64,
}
