//! What the parent side shares among its parts: what it takes to start (and restart) one
//! process actor ([`Spec`], built by [`crate::builder`], read by [`crate::relay`] and
//! [`crate::parent`]) and its counters across restarts ([`ProcessStats`], counted by
//! [`crate::link`], shown by [`crate::parent`]'s probe). A module of its own so that these
//! parts import it, never each other in a circle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use conclib_core::{ActorSystem, DynActorRef, RestartLimit};
use parking_lot::Mutex;

use crate::lock;
use crate::wire::status;

/// What it takes to start (and restart) one process actor.
pub(crate) struct Spec {
    pub(crate) kind: &'static str,
    pub(crate) state: Vec<u8>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) start_timeout: Duration,
    pub(crate) restart: Option<RestartLimit>,
    /// Resume the actor after a panic in a handler (else it stops, and its process exits).
    pub(crate) resume: bool,
    /// The threads of the child's runtime.
    pub(crate) threads: usize,
    /// The system whose actors the child may ask by URN (and that lists it).
    pub(crate) system: Option<ActorSystem>,
    pub(crate) output: ChildOutput,
    /// Counted across restarts, for the system's snapshot.
    pub(crate) stats: Arc<ProcessStats>,
    /// Told of restarts ([`ProcessBuilder::child_of`](crate::ProcessBuilder::child_of)).
    pub(crate) supervisor: Option<DynActorRef>,
}

/// Where a process actor's stdout and stderr go; [`ProcessBuilder::output`](crate::ProcessBuilder::output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChildOutput {
    /// Each line becomes a `tracing` event of target `conclib_process::child`, with the
    /// fields `actor` (the actor's type) and `pid`: stdout at `INFO`, stderr at `WARN`
    /// (invalid UTF-8 replaced). Without a subscriber the lines are dropped. The default.
    #[default]
    Tracing,
    /// The parent's own stdout and stderr, unchanged.
    Inherit,
}

/// What a process actor's snapshot shows, across its restarts.
#[derive(Default)]
pub(crate) struct ProcessStats {
    pub(crate) answered: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) panics: AtomicU64,
    /// Asks given up before the actor started them (the child's `Skipped` frames).
    pub(crate) skipped: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl ProcessStats {
    pub(crate) fn answered(&self, status: u8, payload: &[u8]) {
        if status == status::ALIVE {
            return;
        }
        self.answered.fetch_add(1, Ordering::Relaxed);
        match status {
            status::HANDLER_ERROR => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = Some("a handler returned an error".to_owned());
            }
            status::PANICKED => {
                self.panics.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) =
                    Some(format!("panicked: {}", String::from_utf8_lossy(payload)));
            }
            _ => {}
        }
    }
}
