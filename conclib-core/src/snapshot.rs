//! [`ActorSystem::snapshot`]: every actor of a system at one moment, as plain serde data
//! (what the Redis proxy publishes and the live view draws).

use std::borrow::Cow;
use std::cmp::Ordering as Order;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
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
/// since each started, while [metrics](crate::metrics) were on. Each actor counts in its own
/// task and passes its counts on (one lock) at the end of a batch of messages (what it
/// handled before waiting for mail or awaiting in a handler, at most 64): its first batch,
/// then a batch that ends a second or more after it last did, or 100 ms or more when the
/// batch leaves its mailbox empty. What an actor handled since is counted at a later one.
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

/// One message type's figures kept by an actor (in its task, then in its statistics).
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

    /// One message handled in `handling`.
    #[inline]
    pub(crate) fn count(&mut self, handling: Duration, failed: bool) {
        let us = handling.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = (64 - us.leading_zeros() as usize).min(HANDLING_BUCKETS - 1);
        self.handled += 1;
        self.errors += u64::from(failed);
        self.buckets[bucket] += 1;
    }

    fn add(&mut self, other: &Tally) {
        self.handled += other.handled;
        self.errors += other.errors;
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }
}

/// Adds an actor's `unflushed` figures to its statistics (one lock) and zeroes them.
pub(crate) fn add_message_totals<'a>(
    stats: &crate::cell::Stats,
    unflushed: impl Iterator<Item = &'a mut Tally>,
) {
    let mut rare = None;
    for tally in unflushed {
        if tally.handled == 0 {
            continue;
        }
        let rare = rare.get_or_insert_with(|| stats.rare());
        let kept = rare.messages.get_or_insert_with(Default::default);
        match kept
            .iter_mut()
            .find(|t| std::ptr::eq(t.name, tally.name) || t.name == tally.name)
        {
            Some(kept) => kept.add(tally),
            None => {
                let mut new = Tally::new(tally.name);
                new.add(tally);
                kept.push(new);
            }
        }
        *tally = Tally::new(tally.name);
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
    /// User messages queued.
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

/// What the previous snapshot saw of an actor: for the next one's rate and recent failures,
/// and for [`ActorSystem::snapshot_changes`].
pub(crate) struct Sample {
    at: Instant,
    handled: u64,
    rate: f64,
    /// Errors, panics and restarts when this sample was taken.
    failures: u64,
    /// The same when the sample before it was taken (0 before any).
    base_failures: u64,
    /// The rest of what an actor in brief shows (mailbox depth, asks skipped, stopping),
    /// mixed into one number: a change of any of them changes it.
    rest: u64,
    /// The last look ([`next_look`]) that saw the figures differ from the sample before.
    changed: u64,
}

/// What a look reads of an actor, to sample it.
#[derive(Clone, Copy)]
struct Seen {
    handled: u64,
    /// Errors, panics and restarts.
    failures: u64,
    /// [`Sample::rest`].
    rest: u64,
    /// This look's number.
    look: u64,
}

/// Looks at the systems' actors taken so far (any system): numbers that only grow, so that
/// "changed since look N" holds across every caller of the snapshot methods.
static LOOKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One look at a time, in every system: a look that started earlier never marks a change
/// it saw with its number after a later look read the actor (the later look's caller
/// would not count that change as coming after it).
static LOOKING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A new look's number (1 or more).
fn next_look() -> u64 {
    LOOKS.fetch_add(1, Ordering::Relaxed) + 1
}

/// [`Sample::rest`] of these figures (a 64-bit mix: two different ones collide with a
/// chance of about 2^-64).
fn mix_rest(mailbox_len: usize, asks_skipped: u64, stopping: bool) -> u64 {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for v in [mailbox_len as u64, asks_skipped, u64::from(stopping)] {
        h = (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 31;
    }
    h
}

/// Messages per second since the previous sample, the failures (errors, panics,
/// restarts) since the sample before it (those of the last interval and any since), and
/// the last look that saw the figures change. Samples closer together than
/// [`MIN_RATE_WINDOW`] reuse the previous one. `floor`: a time at which the figures were
/// still those of the sample (the previous look, which did not read an unchanged actor):
/// the sample counts as taken then, as if that look had read it.
fn sample(
    sample: &mut Option<Box<Sample>>,
    seen: Seen,
    now: Instant,
    floor: Option<Instant>,
) -> (f64, u64, u64) {
    let Seen {
        handled,
        failures,
        rest,
        look,
    } = seen;
    if let (Some(last), Some(floor)) = (sample.as_deref_mut(), floor) {
        last.at = last.at.max(floor);
    }
    match sample.as_deref_mut() {
        Some(last) if now.duration_since(last.at) < MIN_RATE_WINDOW => {
            if (handled, failures, rest) != (last.handled, last.failures, last.rest) {
                last.changed = look;
            }
            (
                last.rate,
                failures.saturating_sub(last.base_failures),
                last.changed,
            )
        }
        Some(last) => {
            let rate = handled.saturating_sub(last.handled) as f64
                / now.duration_since(last.at).as_secs_f64();
            let changed = if (handled, failures, rest) != (last.handled, last.failures, last.rest)
                || rate.to_bits() != last.rate.to_bits()
            {
                look
            } else {
                last.changed
            };
            *last = Sample {
                at: now,
                handled,
                rate,
                failures,
                base_failures: last.failures,
                rest,
                changed,
            };
            (rate, failures.saturating_sub(last.base_failures), changed)
        }
        None => {
            *sample = Some(Box::new(Sample {
                at: now,
                handled,
                rate: 0.0,
                failures,
                base_failures: 0,
                rest,
                changed: look,
            }));
            (0.0, failures, look)
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

/// Per-message figures by actor type and message name.
type MessageTable = std::collections::HashMap<(&'static str, &'static str), Tally>;

/// What the last look saw of a system's actors, kept from one look to the next so that a
/// look reads only the actors marked changed since ([`crate::changes`]).
#[derive(Default)]
pub(crate) struct Looked {
    /// Every live actor as last read, by id.
    actors: BTreeMap<u64, Ranked>,
    /// Actors the next look reads whether marked or not: those this look found marked (a
    /// figure written just as it cleared the mark may have been missed) and those whose
    /// rate or recent failures are not back to 0 (they change with time alone).
    again: Vec<u64>,
    /// The last look's number, and when it read.
    pub(crate) look: u64,
    at: Option<Instant>,
}

#[cfg(test)]
impl Looked {
    /// The ids of the actors look `look` read.
    pub(crate) fn read_in(&self, look: u64) -> Vec<u64> {
        self.actors
            .values()
            .filter(|r| r.look == look)
            .map(|r| r.id)
            .collect()
    }
}

/// An actor's figures read for a snapshot, and what ranks it.
struct Ranked {
    cell: Arc<dyn ErasedCell>,
    id: u64,
    /// The look that read these figures.
    look: u64,
    /// Its per-message figures, if it keeps any.
    #[allow(clippy::box_collection)] // boxed: 8 bytes for the many that keep none
    messages: Option<Box<Vec<Tally>>>,
    /// Errors, panics and restarts in the last interval.
    recent_failures: u64,
    /// The last look that saw its figures change.
    changed: u64,
    mailbox_len: usize,
    rate: f64,
    handled: u64,
    errors: u64,
    panics: u64,
    restarts: u64,
    asks_skipped: u64,
    stopping: bool,
}

impl Ranked {
    /// Reads an actor's figures in look `look` (`floor`: see [`sample`]).
    fn read(cell: Arc<dyn ErasedCell>, look: u64, now: Instant, floor: Option<Instant>) -> Ranked {
        let core: &CellCore = cell.core();
        let stats = core.stats();
        let handled = stats.handled.load(Ordering::Relaxed);
        let mailbox_len = cell.capacity().len();
        let asks_skipped = core.skipped_asks();
        let stopping = cell.is_closed();
        let mut rare = stats.rare();
        let (errors, panics, restarts) = (rare.errors, rare.panics, rare.restarts);
        let seen = Seen {
            handled,
            failures: errors + panics + restarts,
            rest: mix_rest(mailbox_len, asks_skipped, stopping),
            look,
        };
        let (rate, recent_failures, changed) = sample(&mut rare.sampled, seen, now, floor);
        let messages = rare.messages.clone();
        drop(rare);
        Ranked {
            id: core.id.as_u64(),
            look,
            messages,
            mailbox_len,
            cell,
            recent_failures,
            changed,
            rate,
            handled,
            errors,
            panics,
            restarts,
            asks_skipped,
            stopping,
        }
    }

    /// Whether it ranks before an actor with no figure worth showing first: one that ranks
    /// only by its id.
    fn telling(&self) -> bool {
        self.recent_failures > 0
            || self.mailbox_len > 0
            || self.rate != 0.0
            || self.errors + self.panics + self.restarts > 0
    }

    /// Whether its figures change only when it does (not with time alone, as a rate or
    /// recent failures do until they are back to 0).
    fn at_rest(&self) -> bool {
        self.rate == 0.0 && self.recent_failures == 0
    }

    /// Most telling first: failures in the last interval, then a deeper mailbox, then a
    /// higher rate, then failures ever, then the lower id.
    fn telling_order(a: &Ranked, b: &Ranked) -> Order {
        b.recent_failures
            .cmp(&a.recent_failures)
            .then(b.mailbox_len.cmp(&a.mailbox_len))
            .then(b.rate.total_cmp(&a.rate))
            .then((b.errors + b.panics + b.restarts).cmp(&(a.errors + a.panics + a.restarts)))
            .then(a.id.cmp(&b.id))
    }

    fn snapshot(&self) -> ActorSnapshot {
        ActorSnapshot {
            last_error: (self.cell.core().stats().rare().last_error)
                .as_deref()
                .map(str::to_owned),
            ..self.brief().into_snapshot()
        }
    }

    fn brief(&self) -> ActorBrief {
        let core = self.cell.core();
        ActorBrief {
            id: self.id,
            urn: core.urn.as_ref().map(|u| u.as_str().to_owned()),
            type_name: Cow::Borrowed(core.type_name),
            parent: core.parent.as_ref().map(|p| p.core().id.as_u64()),
            state: if self.stopping {
                ActorState::Stopping
            } else {
                ActorState::Running
            },
            mailbox_len: self.mailbox_len,
            handled: self.handled,
            rate: self.rate,
            errors: self.errors,
            panics: self.panics,
            restarts: self.restarts,
            asks_skipped: self.asks_skipped,
        }
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
    let seen = Seen {
        handled: report.handled,
        failures: report.errors + report.panics + report.restarts,
        rest: 0,
        look: 0,
    };
    actor.rate = sample(&mut entry.sample, seen, now, None).0;
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
    /// depth, messages handled and their rate, errors, panics, restarts, the last error;
    /// by id. Serde data: the Redis proxy publishes it for the live view.
    #[must_use]
    pub fn snapshot(&self) -> SystemSnapshot {
        let mut snapshot = self.snapshot_first(usize::MAX);
        snapshot.actors.sort_unstable_by_key(|a| a.id);
        snapshot
    }

    /// A [`snapshot`](Self::snapshot) of the `max_actors` most telling actors, most telling
    /// first: those with errors, panics or restarts since the snapshot before the previous
    /// one (the last interval, when snapshots are taken at regular intervals), most first;
    /// then the deepest mailboxes; then the highest rates; then those that ever failed;
    /// then by id. The rest are counted in [`SystemSnapshot::omitted_actors`] and listed in
    /// brief, by id, in [`SystemSnapshot::others`] (at most [`MAX_BRIEF_ACTORS`]).
    ///
    /// A look reads the counters (one uncontended lock each, never a cost on the actors'
    /// messages) of the actors that marked themselves changed since the previous look, and
    /// keeps what it saw of every actor for the next: the first look of a system reads
    /// every live actor, later ones only the changed (an idle system of 100,000 actors
    /// costs a walk of what was kept, not 100,000 reads). The snapshot's rate and recent
    /// failures count from the previous call of any of the snapshot methods.
    #[must_use]
    pub fn snapshot_first(&self, max_actors: usize) -> SystemSnapshot {
        self.look(max_actors, None).0
    }

    /// A [`snapshot_first`](Self::snapshot_first) without [`SystemSnapshot::others`], and
    /// what changed among the actors in brief since an earlier call: every actor (among
    /// those listed in full too) whose figures in brief changed since the call that answered
    /// [`SnapshotChanges::look`] `since` (every actor for `since` 0), and the ids of the
    /// actors it lists in brief, so that whoever kept a list in brief from then can bring it
    /// up to date: what the Redis proxy publishes for the live view (the figures of actors
    /// that handle nothing do not change).
    ///
    /// A change seen by any snapshot method in between counts: the figures are compared
    /// with what the previous call of any of them saw.
    ///
    /// ```
    /// # use conclib_core::*;
    /// # struct Idle;
    /// # impl Actor for Idle {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// for _ in 0..3 {
    ///     system.spawn(Idle).await.unwrap();
    /// }
    /// let first = system.snapshot_changes(1, 0);
    /// assert_eq!((first.snapshot.actors.len(), first.changed.len()), (1, 3));
    /// // Nothing happened since.
    /// let later = system.snapshot_changes(1, first.look);
    /// assert!(later.changed.is_empty());
    /// assert_eq!(later.ids, first.ids);
    /// # }
    /// ```
    #[must_use]
    pub fn snapshot_changes(&self, max_actors: usize, since: u64) -> SnapshotChanges {
        let (snapshot, (changed, ids), look) = self.look(max_actors, Some(since));
        SnapshotChanges {
            snapshot,
            changed,
            ids,
            look,
        }
    }

    /// The snapshot of the `max_actors` most telling actors, with the rest in brief (`since`
    /// `None`: no changes), or with the changes since look `since` (its `others` empty):
    /// those changed in brief, by id, and the ids listed in brief; and this look's number.
    /// Reads the actors marked changed since the last look and those it must read again
    /// ([`Looked::again`]); every actor at the first look (or when the marks were not
    /// listed).
    fn look(
        &self,
        max_actors: usize,
        since: Option<u64>,
    ) -> (SystemSnapshot, (Vec<ActorBrief>, Vec<u64>), u64) {
        let mut looked = self.lock_looked();
        let looking = LOOKING.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let look = next_look();
        // When the counters are read (not when the snapshot is done): a reader comparing
        // it with its own clock sees nothing that happened after it.
        let taken_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.read_changed(&mut looked, look, now);
        drop(looking);
        let looked = &*looked;
        // One pass by id: the per-message totals, the changes, the actors worth ranking.
        let mut messages = MessageTable::new();
        let mut ids = Vec::new();
        let mut changed = Vec::new();
        let mut telling: Vec<&Ranked> = Vec::new();
        for r in looked.actors.values() {
            for tally in r.messages.iter().flat_map(|m| m.iter()) {
                messages
                    .entry((r.cell.core().type_name, tally.name))
                    .or_insert_with(|| Tally::new(tally.name))
                    .add(tally);
            }
            if let Some(since) = since
                && ids.len() < MAX_BRIEF_ACTORS
            {
                ids.push(r.id);
                if r.changed > since {
                    changed.push(r.brief());
                }
            }
            if r.telling() {
                telling.push(r);
            }
        }
        let mut messages: Vec<MessageTotals> = messages
            .into_iter()
            .map(|((actor_type, message), tally)| MessageTotals {
                actor_type: Cow::Borrowed(actor_type),
                message: Cow::Borrowed(message),
                handled: tally.handled,
                errors: tally.errors,
                handling_us: tally.buckets.to_vec(),
            })
            .collect();
        messages
            .sort_unstable_by(|a, b| (&a.actor_type, &a.message).cmp(&(&b.actor_type, &b.message)));
        // The most telling: those with a figure worth showing first, ranked; then the others
        // by id (they rank by id alone).
        if telling.len() > max_actors && max_actors > 0 {
            telling.select_nth_unstable_by(max_actors - 1, |a, b| Ranked::telling_order(a, b));
        }
        telling.truncate(max_actors);
        telling.sort_unstable_by(|a, b| Ranked::telling_order(a, b));
        let mut top = telling;
        if top.len() < max_actors {
            let more = max_actors - top.len();
            top.extend(looked.actors.values().filter(|r| !r.telling()).take(more));
        }
        let omitted_actors = looked.actors.len().saturating_sub(max_actors);
        let mut actors: Vec<ActorSnapshot> = top.iter().map(|r| r.snapshot()).collect();
        let others: Vec<ActorBrief> = if since.is_some() || omitted_actors == 0 {
            Vec::new()
        } else {
            let listed: std::collections::HashSet<u64> = top.iter().map(|r| r.id).collect();
            looked
                .actors
                .values()
                .filter(|r| !listed.contains(&r.id))
                .take(MAX_BRIEF_ACTORS)
                .map(Ranked::brief)
                .collect()
        };
        let changes = since.map(|_| (changed, ids));
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
        let snapshot = SystemSnapshot {
            system: self.name().to_owned(),
            pid: std::process::id(),
            taken_at_ms,
            actors,
            omitted_actors,
            others,
            messages,
        };
        (snapshot, changes.unwrap_or_default(), look)
    }

    /// Brings `looked` up to date in look `look`: reads the actors marked changed since the
    /// last look and those [`Looked::again`] names (every actor when the marks were not
    /// listed), drops those gone.
    fn read_changed(&self, looked: &mut Looked, look: u64, now: Instant) {
        let (last_look, last_at) = (looked.look, looked.at);
        // An actor the last look did not read, unchanged then: its figures at that look were
        // those of its sample, which counts from then (for its rate over the last interval).
        let floor = |before: Option<&Ranked>, marked: bool| {
            before
                .filter(|r| r.look != last_look && !marked)
                .and(last_at)
        };
        let mut again = Vec::new();
        match self.changes().take(self.count_cells()) {
            None => {
                let mut actors = BTreeMap::new();
                for cell in self.live_cells() {
                    if !cell.core().is_alive() {
                        continue;
                    }
                    let id = cell.core().id.as_u64();
                    let marked = cell.capacity().mark.take() | cell.core().stats().mark.take();
                    let floor = floor(looked.actors.get(&id), marked);
                    let read = Ranked::read(cell, look, now, floor);
                    if marked || !read.at_rest() {
                        again.push(id);
                    }
                    actors.insert(id, read);
                }
                looked.actors = actors;
            }
            Some(mut ids) => {
                ids.append(&mut looked.again);
                ids.sort_unstable();
                ids.dedup();
                let cells = self.cells_of(&ids);
                for (id, cell) in ids.into_iter().zip(cells) {
                    let Some(cell) = cell.filter(|c| c.core().is_alive()) else {
                        looked.actors.remove(&id);
                        continue;
                    };
                    let marked = cell.capacity().mark.take() | cell.core().stats().mark.take();
                    // Not read by the last look: not listed before it took the list, so
                    // unchanged at its start, marked or not.
                    let floor = floor(looked.actors.get(&id), false);
                    let read = Ranked::read(cell, look, now, floor);
                    if marked || !read.at_rest() {
                        again.push(id);
                    }
                    looked.actors.insert(id, read);
                }
            }
        }
        looked.again = again;
        looked.look = look;
        looked.at = Some(now);
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Notify;

    use crate::{ActorRef, ActorSystem};

    use super::{MAX_BRIEF_ACTORS, MIN_RATE_WINDOW};

    use crate::test_probe::{Probe, Work};

    fn ids(actors: &[super::ActorSnapshot]) -> Vec<u64> {
        actors.iter().map(|a| a.id).collect()
    }

    /// The rate and the recent failures count over the time between snapshots, and
    /// snapshots closer than `MIN_RATE_WINDOW` reuse the previous figures: the test waits
    /// that long between the snapshots it compares (time is what is measured).
    async fn next_window() {
        tokio::time::sleep(MIN_RATE_WINDOW + Duration::from_millis(20)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_most_telling_actors_come_first_and_the_rest_in_brief() {
        let system = ActorSystem::new("telling");
        let mut actors: Vec<ActorRef<Probe>> = Vec::new();
        for n in 0..40 {
            let actor = system
                .build(Probe)
                .urn(format!("probe:{n}"))
                .spawn()
                .await
                .unwrap();
            actors.push(actor);
        }
        let (failing, queued, busy) = (&actors[30], &actors[20], &actors[10]);
        // Every actor sampled once: the rates count from here.
        let first = system.snapshot_first(5);
        assert_eq!(
            ids(&first.actors),
            ids(&system.snapshot().actors)[..5],
            "idle actors: by id"
        );

        failing.ask(Work::Fail).await.unwrap_err();
        for _ in 0..50 {
            busy.ask(Work::Fine).await.unwrap();
        }
        let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        queued
            .tell(Work::Hold(started.clone(), gate.clone()))
            .await
            .unwrap();
        started.notified().await;
        for _ in 0..7 {
            queued.tell(Work::Fine).await.unwrap();
        }
        next_window().await;

        let snapshot = system.snapshot_first(5);
        let top = ids(&snapshot.actors);
        assert_eq!(
            top[..3],
            [
                failing.id().as_u64(),
                queued.id().as_u64(),
                busy.id().as_u64()
            ],
            "{snapshot:#?}"
        );
        assert_eq!(snapshot.actors[0].errors, 1);
        assert_eq!(snapshot.actors[1].mailbox_len, 7);
        assert!(snapshot.actors[2].rate > 0.0);
        // Then the idle ones, by id.
        assert!(top[3] < top[4]);
        // The rest: counted, and listed in brief by id, with their figures.
        assert_eq!(snapshot.omitted_actors, 35);
        assert_eq!(snapshot.others.len(), 35);
        let brief_ids: Vec<u64> = snapshot.others.iter().map(|a| a.id).collect();
        let mut sorted = brief_ids.clone();
        sorted.sort_unstable();
        assert_eq!(brief_ids, sorted);
        assert!(top.iter().all(|id| !brief_ids.contains(id)));
        let other = &snapshot.others[0];
        assert_eq!(other.type_name, std::any::type_name::<Probe>());
        assert!(other.urn.as_deref().unwrap().starts_with("probe:"));
        assert_eq!(other.to_snapshot().id, other.id);

        // Two windows without failing: the failure is no longer recent; the actor still
        // ranks before the idle ones that never failed, after the queued and the busy.
        next_window().await;
        let _ = system.snapshot_first(5);
        next_window().await;
        for _ in 0..50 {
            busy.ask(Work::Fine).await.unwrap();
        }
        let snapshot = system.snapshot_first(5);
        assert_eq!(
            ids(&snapshot.actors)[..3],
            [
                queued.id().as_u64(),
                busy.id().as_u64(),
                failing.id().as_u64()
            ],
            "{snapshot:#?}"
        );

        // A full snapshot: every actor, by id, nothing in brief.
        let full = system.snapshot();
        assert_eq!(full.actors.len(), 40);
        assert!(full.actors.windows(2).all(|w| w[0].id < w[1].id));
        assert!(full.others.is_empty());
        assert_eq!(full.omitted_actors, 0);
        gate.notify_one();
    }

    /// What changed since a look: nothing while idle; an actor that handled a message, one
    /// started since; one stopped leaves the ids. A look by another caller in between does
    /// not hide a change.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_since_a_look_list_only_the_actors_that_changed() {
        let system = ActorSystem::new("changes");
        let mut actors: Vec<ActorRef<Probe>> = Vec::new();
        for _ in 0..20 {
            actors.push(system.spawn(Probe).await.unwrap());
        }
        let first = system.snapshot_changes(3, 0);
        assert_eq!(first.snapshot.actors.len(), 3);
        assert!(first.snapshot.others.is_empty());
        assert_eq!(first.changed.len(), 20, "every actor is new");
        assert_eq!(first.ids.len(), 20);
        let idle = system.snapshot_changes(3, first.look);
        assert!(idle.changed.is_empty(), "{:?}", idle.changed);
        assert!(idle.look > first.look);

        actors[4].ask(Work::Fine).await.unwrap();
        actors[6].stop();
        actors[6].wait_for_stop().await;
        let new = system.spawn(Probe).await.unwrap();
        // The handled count is in once the runner counted it, right after the answer: look
        // again, bounded (each look by someone else too, which must not hide the change).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let later = loop {
            let _ = system.snapshot();
            let later = system.snapshot_changes(3, first.look);
            if later
                .changed
                .iter()
                .any(|b| b.id == actors[4].id().as_u64())
            {
                break later;
            }
            assert!(std::time::Instant::now() < deadline, "{later:?}");
            tokio::task::yield_now().await;
        };
        let changed: Vec<u64> = later.changed.iter().map(|b| b.id).collect();
        assert_eq!(changed, [actors[4].id().as_u64(), new.id().as_u64()]);
        assert_eq!(later.changed[0].handled, 1);
        assert_eq!(later.ids.len(), 20);
        assert!(!later.ids.contains(&actors[6].id().as_u64()));
        assert!(later.ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_recent_failure_is_listed_among_many_idle_actors() {
        let system = ActorSystem::new("failures");
        let mut failing = Vec::new();
        for n in 0..2_000u64 {
            let actor = system.spawn(Probe).await.unwrap();
            if n % 400 == 399 {
                failing.push(actor);
            }
        }
        let _ = system.snapshot_first(10);
        for actor in &failing {
            actor.ask(Work::Fail).await.unwrap_err();
        }
        // The asker has its error before the actor's runner counts the failure (right
        // after the handler answered): look until the counts are in, bounded.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let snapshot = loop {
            let snapshot = system.snapshot_first(10);
            let listed = ids(&snapshot.actors);
            if failing
                .iter()
                .all(|a| listed[..failing.len()].contains(&a.id().as_u64()))
            {
                break snapshot;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the failing actors are not listed first: {listed:?}"
            );
            tokio::task::yield_now().await;
        };
        assert_eq!(snapshot.omitted_actors, 1_990);
        assert_eq!(
            snapshot.others.len(),
            1_990.min(MAX_BRIEF_ACTORS),
            "the rest in brief"
        );
        // Listing none in full still lists every actor in brief.
        let none = system.snapshot_first(0);
        assert!(none.actors.is_empty());
        assert_eq!(none.others.len(), 2_000);
    }
}
