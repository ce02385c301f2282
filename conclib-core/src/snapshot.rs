//! [`ActorSystem::snapshot`]: every actor of a system at one moment, as plain serde data
//! (what the Redis proxy publishes and the live view draws).

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cell::{CellCore, ErasedCell};
use crate::system::{ActorId, ActorSystem};

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
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// Every actor that has not stopped, by id (the first ones, with
    /// [`ActorSystem::snapshot_first`]).
    pub actors: Vec<ActorSnapshot>,
    /// Actors left out of `actors` by [`ActorSystem::snapshot_first`].
    #[serde(default)]
    pub omitted_actors: usize,
}

/// One actor in a [`SystemSnapshot`].
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
    /// User messages queued.
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
    sample: Option<Box<(Instant, u64, f64)>>,
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

/// Messages per second since the previous sample (kept in `sample`).
fn rate(sample: &mut Option<Box<(Instant, u64, f64)>>, handled: u64, now: Instant) -> f64 {
    match sample.as_deref_mut() {
        Some((at, _, rate)) if now.duration_since(*at) < MIN_RATE_WINDOW => *rate,
        Some(last) => {
            let rate =
                handled.saturating_sub(last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            *last = (now, handled, rate);
            rate
        }
        None => {
            *sample = Some(Box::new((now, handled, 0.0)));
            0.0
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

/// Snapshots closer together than this reuse the previous rate (a rate over a few
/// milliseconds says nothing).
const MIN_RATE_WINDOW: Duration = Duration::from_millis(250);

fn actor_snapshot(cell: &dyn ErasedCell, now: Instant) -> ActorSnapshot {
    let core: &CellCore = cell.core();
    let stats = core.stats();
    let handled = stats.handled.load(Ordering::Relaxed);
    let mut rare = stats.rare();
    let rate = rate(&mut rare.sampled, handled, now);
    ActorSnapshot {
        id: core.id.as_u64(),
        urn: core.urn.as_ref().map(|u| u.to_string()),
        type_name: core.type_name.to_owned(),
        parent: core.parent.as_ref().map(|p| p.core().id.as_u64()),
        state: if cell.is_closed() {
            ActorState::Stopping
        } else {
            ActorState::Running
        },
        mailbox_len: cell.capacity().len(),
        handled,
        rate,
        errors: rare.errors,
        panics: rare.panics,
        restarts: rare.restarts,
        asks_skipped: core.skipped_asks(),
        last_error: rare.last_error.as_deref().map(str::to_owned),
        pid: None,
        pool: None,
    }
}

/// Puts an external actor's report in place of its local actor's figures; `false` once
/// the report is gone for good.
fn apply_external(entry: &mut External, actor: Option<&mut ActorSnapshot>, now: Instant) -> bool {
    let Some(probe) = entry.probe.upgrade() else {
        return false;
    };
    let Some(actor) = actor else {
        // Not among the listed actors (omitted, or not started yet).
        return true;
    };
    let Some(report) = probe() else {
        return false;
    };
    actor.type_name = report.type_name.to_owned();
    actor.pid = report.pid;
    actor.mailbox_len = report.mailbox_len;
    actor.handled = report.handled;
    actor.rate = rate(&mut entry.sample, report.handled, now);
    actor.errors = report.errors;
    actor.panics = report.panics;
    actor.restarts = report.restarts;
    actor.last_error = report.last_error;
    true
}

impl ActorSystem {
    /// Makes this system's [`snapshot`](Self::snapshot)s show the actor `id` (a local actor
    /// that relays to an actor in a process of its own) with what `probe` reports — the
    /// real actor's type, process id, queue, counts — for as long as `probe` lives and
    /// answers `Some`.
    pub fn report_external(&self, id: ActorId, probe: Weak<ExternalProbe>) {
        self.with_externals(|externals| externals.push(External::new(id, probe)));
        self.count_side_entries(1, 0);
    }

    /// Every live actor with its state and statistics: id, URN, type, parent, mailbox
    /// depth, messages handled and their rate, errors, panics, restarts, the last error.
    /// Serde data: the Redis proxy publishes it for the live view.
    #[must_use]
    pub fn snapshot(&self) -> SystemSnapshot {
        self.snapshot_first(usize::MAX)
    }

    /// A [`snapshot`](Self::snapshot) of the first `max_actors` actors by id (the rest are
    /// counted in [`SystemSnapshot::omitted_actors`]): what a system of a million actors can
    /// afford every few seconds, since only the listed ones are looked at.
    #[must_use]
    pub fn snapshot_first(&self, max_actors: usize) -> SystemSnapshot {
        let now = Instant::now();
        let mut cells = self.live_cells();
        cells.retain(|cell| cell.core().is_alive());
        cells.sort_unstable_by_key(|cell| cell.core().id);
        let omitted_actors = cells.len().saturating_sub(max_actors);
        cells.truncate(max_actors);
        let mut actors: Vec<ActorSnapshot> = cells
            .iter()
            .map(|cell| actor_snapshot(&**cell, now))
            .collect();
        // Pools: their members' load, on the pool's own entry.
        let mut pruned = 0;
        self.with_pool_probes(|probes| {
            let before = probes.len();
            probes.retain(|(id, probe)| {
                let Some(probe) = probe.upgrade() else {
                    return false;
                };
                if let Some(entry) = actors.iter_mut().find(|a| a.id == id.as_u64()) {
                    entry.pool = Some(probe());
                }
                true
            });
            pruned += before - probes.len();
        });
        // Actors in other processes, reported by their relays' probes.
        self.with_externals(|externals| {
            let before = externals.len();
            externals.retain_mut(|entry| {
                let actor = actors.iter_mut().find(|a| a.id == entry.id.as_u64());
                apply_external(entry, actor, now)
            });
            pruned += before - externals.len();
        });
        self.count_side_entries(0, pruned);
        SystemSnapshot {
            system: self.name().to_owned(),
            pid: std::process::id(),
            taken_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            actors,
            omitted_actors,
        }
    }
}
