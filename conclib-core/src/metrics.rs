//! Metrics through the [`metrics`](https://docs.rs/metrics/0.24) facade: per actor type and,
//! for named actors, per URN.
//!
//! Recording is off until [`enable`] is called (after installing a recorder; the facade's
//! `prometheus` feature does both). Off, an actor pays one relaxed atomic load per message
//! and per send; on, it keeps its metric handles in its own task, so a message costs three
//! clock reads and a few handle updates, never a map lookup by name.
//!
//! ```
//! // Install your recorder (metrics-exporter-prometheus, metrics-util, ...), then:
//! conclib_core::metrics::enable();
//! assert!(conclib_core::metrics::is_enabled());
//! ```
//!
//! # Names and labels
//! Every actor metric has the labels `actor` (the Rust type name) and `urn` (the URN, or
//! `""` for an actor without one: unnamed actors of one type aggregate, which keeps the
//! label set bounded); the per-message ones add `message` (the message's wire name).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `conclib_actor_mailbox_depth` | gauge | actor, urn | user messages queued, after each message handled |
//! | `conclib_actor_messages_handled_total` | counter | actor, urn, message | messages handled (asks skipped excluded) |
//! | `conclib_actor_mailbox_seconds` | histogram | actor, urn, message | time from send to the start of handling |
//! | `conclib_actor_handling_seconds` | histogram | actor, urn, message | time in the handler |
//! | `conclib_actor_handler_errors_total` | counter | actor, urn, message | handlers that returned an error |
//! | `conclib_actor_panics_total` | counter | actor, urn | handlers and hooks that panicked |
//! | `conclib_actor_restarts_total` | counter | actor, urn | restarts after a panic or a sibling's restart |
//! | `conclib_actor_asks_skipped_total` | counter | actor, urn | asks not started: their asker had given up |
//! | `conclib_ask_timeouts_total` | counter | actor, urn | asks that timed out, seen by the asker (local refs) |
//! | `conclib_pool_members` | gauge | actor, urn | members in a pool's routing table (`actor`: the members' type, `urn`: the pool's), every second |
//! | `conclib_pool_queued` | gauge | actor, urn | messages queued in the members' mailboxes, every second |
//! | `conclib_pool_in_flight` | gauge | actor, urn | asks sent through the pool and not answered yet, every second |
//! | `conclib_pool_replaced_total` | counter | actor, urn | members replaced (dead or unresponsive) |
//!
//! The Redis proxy and process actors add their own (see their crates' docs).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Label};

use crate::cell::CellCore;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns recording on for every actor system of this process, from the next message on.
/// Call it once a recorder is installed; without one the metrics go nowhere.
pub fn enable() {
    // Fix the epoch before any stamp is taken.
    epoch();
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
#[must_use]
#[inline]
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A send time for an envelope: nanoseconds since the process's metrics epoch, or 0 when
/// metrics are off (then nothing is measured for that message).
#[inline]
pub(crate) fn stamp() -> u64 {
    if is_enabled() {
        // +1: a message sent at the epoch itself must not read as unstamped.
        epoch().elapsed().as_nanos() as u64 + 1
    } else {
        0
    }
}

/// The time since a [`stamp`].
fn since(stamp: u64) -> Duration {
    let now = epoch().elapsed().as_nanos() as u64 + 1;
    Duration::from_nanos(now.saturating_sub(stamp))
}

/// The `actor` and `urn` labels (`""` for an actor without a URN).
fn labels(actor: &'static str, urn: Option<&crate::Urn>) -> [Label; 2] {
    [
        Label::new("actor", actor),
        Label::new("urn", urn.map_or_else(String::new, |u| u.to_string())),
    ]
}

fn actor_labels(core: &CellCore) -> [Label; 2] {
    labels(core.type_name, core.urn.as_ref())
}

/// One message type's handles.
struct PerMessage {
    name: &'static str,
    handled: Counter,
    in_mailbox: Histogram,
    handling: Histogram,
    errors: Counter,
}

/// An actor's metric handles, created on its first message after [`enable`] and kept in
/// its run loop.
pub(crate) struct ActorMetrics {
    labels: [Label; 2],
    depth: Gauge,
    skipped: Counter,
    /// Few message types per actor: a short list searched by the name's address.
    messages: Vec<PerMessage>,
    /// The message being handled: its name, send stamp and start.
    current: (&'static str, u64, Instant),
}

impl ActorMetrics {
    pub(crate) fn new(core: &CellCore) -> Box<Self> {
        let labels = actor_labels(core);
        Box::new(ActorMetrics {
            depth: metrics::gauge!("conclib_actor_mailbox_depth", labels.iter()),
            skipped: metrics::counter!("conclib_actor_asks_skipped_total", labels.iter()),
            labels,
            messages: Vec::new(),
            current: ("", 0, Instant::now()),
        })
    }

    fn message(&mut self, name: &'static str) -> &PerMessage {
        let at = match self
            .messages
            .iter()
            .position(|m| std::ptr::eq(m.name, name) || m.name == name)
        {
            Some(at) => at,
            None => {
                let [actor, urn] = self.labels.clone();
                let labels = [actor, urn, Label::new("message", name)];
                self.messages.push(PerMessage {
                    name,
                    handled: metrics::counter!(
                        "conclib_actor_messages_handled_total",
                        labels.iter()
                    ),
                    in_mailbox: metrics::histogram!("conclib_actor_mailbox_seconds", labels.iter()),
                    handling: metrics::histogram!("conclib_actor_handling_seconds", labels.iter()),
                    errors: metrics::counter!("conclib_actor_handler_errors_total", labels.iter()),
                });
                self.messages.len() - 1
            }
        };
        &self.messages[at]
    }

    /// A message starts being handled: `stamp` is when it was sent (0: unknown).
    pub(crate) fn start(&mut self, name: &'static str, stamp: u64) {
        self.current = (name, stamp, Instant::now());
    }

    /// The message [`start`](Self::start)ed was handled.
    pub(crate) fn handled(&mut self, failed: bool, depth: usize) {
        let (name, stamp, started) = self.current;
        let handling = started.elapsed();
        let m = self.message(name);
        if stamp != 0 {
            m.in_mailbox
                .record(since(stamp).saturating_sub(handling).as_secs_f64());
        }
        m.handling.record(handling.as_secs_f64());
        m.handled.increment(1);
        if failed {
            m.errors.increment(1);
        }
        self.depth.set(depth as f64);
    }

    pub(crate) fn skipped(&self) {
        self.skipped.increment(1);
    }
}

/// Rare events, counted without keeping a handle: `metric` is one of the actor counters.
pub(crate) fn count(core: &CellCore, metric: &'static str) {
    if is_enabled() {
        metrics::counter!(metric, actor_labels(core).iter()).increment(1);
    }
}

/// A pool replaced a member.
pub(crate) fn count_pool(urn: Option<&crate::Urn>, actor: &'static str) {
    if is_enabled() {
        metrics::counter!("conclib_pool_replaced_total", labels(actor, urn).iter()).increment(1);
    }
}

/// A pool's gauges, sampled.
pub(crate) fn pool_gauges(
    urn: Option<&crate::Urn>,
    actor: &'static str,
    members: usize,
    queued: usize,
    in_flight: usize,
) {
    let labels = labels(actor, urn);
    metrics::gauge!("conclib_pool_members", labels.iter()).set(members as f64);
    metrics::gauge!("conclib_pool_queued", labels.iter()).set(queued as f64);
    metrics::gauge!("conclib_pool_in_flight", labels.iter()).set(in_flight as f64);
}
