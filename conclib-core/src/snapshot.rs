//! [`ActorSystem::snapshot`]: every actor of a system at one moment, as plain serde data
//! (what the Redis proxy publishes and the live view draws).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cell::{CellCore, ErasedCell};
use crate::system::ActorSystem;

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
    /// Every actor that has not stopped, by id.
    pub actors: Vec<ActorSnapshot>,
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
    let stats = &core.stats;
    let handled = stats.handled.load(Ordering::Relaxed);
    let mut rare = stats.rare();
    let rate = match rare.sampled.as_deref_mut() {
        Some((at, _, rate)) if now.duration_since(*at) < MIN_RATE_WINDOW => *rate,
        Some(sample) => {
            let rate = handled.saturating_sub(sample.1) as f64
                / now.duration_since(sample.0).as_secs_f64();
            *sample = (now, handled, rate);
            rate
        }
        None => {
            rare.sampled = Some(Box::new((now, handled, 0.0)));
            0.0
        }
    };
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
    }
}

impl ActorSystem {
    /// Every live actor with its state and statistics: id, URN, type, parent, mailbox
    /// depth, messages handled and their rate, errors, panics, restarts, the last error.
    /// Serde data: the Redis proxy publishes it for the live view.
    #[must_use]
    pub fn snapshot(&self) -> SystemSnapshot {
        let now = Instant::now();
        let mut actors: Vec<ActorSnapshot> = self
            .live_cells()
            .iter()
            .filter(|cell| cell.core().is_alive())
            .map(|cell| actor_snapshot(&**cell, now))
            .collect();
        actors.sort_by_key(|a| a.id);
        SystemSnapshot {
            system: self.name().to_owned(),
            pid: std::process::id(),
            taken_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            actors,
        }
    }
}
