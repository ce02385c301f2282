//! How [`ActorSystem::snapshot`] and its variants read a system's actors: what the last
//! look saw of each one is kept ([`Looked`], in `looked.rs`), and a look reads again only the actors marked
//! changed since ([`crate::observe::changes`]), ranks them and fills in the most telling ones.

use crate::observe::changes::Listed;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::looked::{Looked, Ranked};
use super::sample::{Seen, sample};
use super::*;
use crate::system::ActorSystem;

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

/// Per-message figures by actor type and message name.
type MessageTable = std::collections::HashMap<(&'static str, &'static str), Tally>;

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
    // Those its local actor skipped (given up before it handed them on) and those its
    // process skipped.
    actor.asks_skipped = actor.asks_skipped.saturating_add(report.asks_skipped);
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
                    .entry((r.cell.core().type_name(), tally.name))
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
                    let mark = &cell.capacity().mark;
                    let slot = mark.slot();
                    let marked = mark.take() | cell.core().stats().mark.take();
                    let floor = floor(looked.actors.get(&id), marked);
                    let read = Ranked::read(cell, look, now, floor);
                    if marked || !read.at_rest() {
                        again.push(Listed { id, slot });
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
                for (listed, cell) in ids.into_iter().zip(cells) {
                    let id = listed.id;
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
                        again.push(listed);
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
