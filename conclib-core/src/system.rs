//! [`ActorSystem`]: the URN registry, listing, the hibernation sweep and shutdown. It knows
//! actors as erased cells only: spawning is in [`crate::spawn`], the lookups by URN (which
//! return refs) beside `DynActorRef` in [`crate::dynamic`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::actor_id::ActorId;
use crate::cell::erased::{CellCore, ErasedCell};
use crate::error::{SpawnError, StopReason};
use crate::observe::urn_journal::{UrnChanges, UrnJournal};
use crate::registry::Registry;
use crate::run::dormant::Keeping;
use crate::run::hibernation::Hibernation;
use crate::urn::Urn;

/// The default time an ask waits for its answer.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A group of actors with one URN namespace, shut down together. Cloning is cheap; several
/// systems may live in one process.
///
/// Actors run as tasks on the tokio runtime that spawns them; the runtime needs its time
/// driver (asks have timeouts).
///
/// ```
/// use conclib_core::{Actor, ActorSystem};
/// use std::time::Duration;
///
/// struct Idle;
/// impl Actor for Idle {}
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let system = ActorSystem::new("app");
/// system.build(Idle).urn("idle:1").spawn().await.unwrap();
/// assert!(system.lookup("idle:1").is_ok());
/// assert_eq!(system.actors().len(), 1);
/// system.shutdown(Duration::from_secs(5)).await.unwrap();
/// assert!(system.lookup("idle:1").is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct ActorSystem {
    inner: Arc<SystemInner>,
}

struct SystemInner {
    name: String,
    next_id: AtomicU64,
    ask_timeout: Duration,
    /// Every actor that has not finished stopping.
    actors: Mutex<Registry>,
    names: RwLock<HashMap<Urn, Arc<dyn ErasedCell>>>,
    /// Bumped whenever a URN is taken or freed (see [`ActorSystem::urn_changes`]): the
    /// journal's position after the change.
    urn_generation: tokio::sync::watch::Sender<u64>,
    /// The last URN changes, for readers that follow them ([`ActorSystem::urn_changes_since`]).
    urn_journal: Mutex<UrnJournal>,
    shutting_down: AtomicBool,
    emptied: Notify,
    /// Actors in other processes listed in snapshots ([`ActorSystem::report_external`]).
    externals: Mutex<Vec<crate::observe::snapshot::External>>,
    /// Pools' member reports, by the pool actor's id.
    pool_probes: Mutex<
        Vec<(
            ActorId,
            std::sync::Weak<crate::observe::snapshot::PoolProbe>,
        )>,
    >,
    /// How many entries `externals` and `pool_probes` hold together: an actor's end looks
    /// for its own only when there are some (most systems have none).
    side_entries: std::sync::atomic::AtomicUsize,
    /// Actors marked changed since the last snapshot's look ([`crate::observe::changes`]).
    changes: Arc<crate::observe::changes::Changes>,
    /// What the last look saw of every actor, for the next one to read only the changed.
    looked: Mutex<crate::observe::snapshot::looked::Looked>,
    /// What this system's dormant actors share on each runtime with the system's keeper
    /// tasks there ([`crate::run::dormant`]), by the runtime's id.
    keepers: RwLock<Vec<(tokio::runtime::Id, Arc<Keeping>)>>,
    /// When idle actors hibernate, and the task that sweeps for them ([`crate::run::hibernation`]).
    hibernation: Arc<Hibernation>,
}

/// A system that may be gone: what its hibernation sweeper holds ([`sweep_every`]).
struct WeakSystem(std::sync::Weak<SystemInner>);

impl WeakSystem {
    fn upgrade(&self) -> Option<ActorSystem> {
        self.0.upgrade().map(|inner| ActorSystem { inner })
    }
}

impl Drop for SystemInner {
    fn drop(&mut self) {
        self.hibernation.end();
        // The system's keeper tasks end with it, on runtimes that live on.
        let keepers = self.keepers.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, keeping) in keepers.drain(..) {
            keeping.end();
        }
    }
}

/// What [`ActorSystem::actors`] reports about one actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    /// The actor's id.
    pub id: ActorId,
    /// Its URN, if any.
    pub urn: Option<Urn>,
    /// Its Rust type.
    pub type_name: &'static str,
    /// Its parent, if it is a child.
    pub parent: Option<ActorId>,
    /// User messages queued and not yet handled.
    pub mailbox_len: usize,
    /// Whether it is stopping (takes no more user messages).
    pub stopping: bool,
    /// Asks it did not start because their asker had given up.
    pub asks_skipped: u64,
}

/// Entries the URN table keeps room for however few URNs are taken.
const MIN_NAMES: usize = 1024;

/// How long [`ActorSystem::shutdown`] gives the actors it kills past its timeout to run
/// their end (`on_stop`) before it aborts their tasks.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// [`ActorSystem::shutdown`] did not finish in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("actors still running after the shutdown timeout were killed: {remaining}")]
pub struct ShutdownTimedOut {
    /// How many actors had not stopped.
    pub remaining: usize,
}

impl fmt::Debug for ActorSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorSystem")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl ActorSystem {
    /// A new, empty system. `name` appears in traces.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_ask_timeout(name, DEFAULT_ASK_TIMEOUT)
    }

    /// A new system whose actors' asks time out after `ask_timeout` by default.
    #[must_use]
    pub fn with_ask_timeout(name: impl Into<String>, ask_timeout: Duration) -> Self {
        ActorSystem {
            inner: Arc::new(SystemInner {
                name: name.into(),
                next_id: AtomicU64::new(1),
                ask_timeout,
                actors: Mutex::new(Registry::default()),
                names: RwLock::new(HashMap::new()),
                urn_generation: tokio::sync::watch::Sender::new(0),
                urn_journal: Mutex::new(UrnJournal::default()),
                shutting_down: AtomicBool::new(false),
                emptied: Notify::new(),
                externals: Mutex::new(Vec::new()),
                pool_probes: Mutex::new(Vec::new()),
                side_entries: std::sync::atomic::AtomicUsize::new(0),
                changes: Arc::new(crate::observe::changes::Changes::new()),
                looked: Mutex::new(crate::observe::snapshot::looked::Looked::default()),
                keepers: RwLock::new(Vec::new()),
                hibernation: Hibernation::new(),
            }),
        }
    }

    /// Sets how long an actor waits for mail before it hibernates: gives back its task and
    /// the buffers its messages grew, and costs what an actor never sent a message does,
    /// until its next message spawns a task again (under a microsecond, once; a few with
    /// metrics on). `None`: never.
    /// By default [`DEFAULT_HIBERNATE_AFTER`](crate::DEFAULT_HIBERNATE_AFTER).
    ///
    /// A sweep every `after` looks at every actor: one that waits for mail and was sent
    /// nothing since the sweep before hibernates, so an actor hibernates `after` to twice
    /// `after` after its last message (later if it was still handling it when a sweep came).
    /// Not while a handler of its waits, nor while it stops; its state, context and
    /// statistics stay as they are, and nothing sent to it is lost.
    ///
    /// ```
    /// use conclib_core::ActorSystem;
    /// use std::time::Duration;
    ///
    /// let system = ActorSystem::new("app");
    /// system.set_hibernate_after(Some(Duration::from_secs(600)));
    /// assert_eq!(system.hibernate_after(), Some(Duration::from_secs(600)));
    /// system.set_hibernate_after(None);
    /// assert_eq!(system.hibernate_after(), None);
    /// ```
    pub fn set_hibernate_after(&self, after: Option<Duration>) {
        self.inner.hibernation.set(after);
    }

    /// How long an actor waits for mail before it hibernates (see
    /// [`set_hibernate_after`](Self::set_hibernate_after)); `None`: never.
    #[must_use]
    pub fn hibernate_after(&self) -> Option<Duration> {
        self.inner.hibernation.after()
    }

    /// The default timeout of asks to this system's actors.
    #[must_use]
    pub fn default_ask_timeout(&self) -> Duration {
        self.inner.ask_timeout
    }

    /// The system's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A receiver that sees a change each time a URN is taken or freed: what a proxy
    /// watches to publish new names at once instead of polling.
    ///
    /// ```
    /// # use conclib_core::*;
    /// # struct Idle; impl Actor for Idle {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// let mut changes = system.urn_changes();
    /// system.build(Idle).urn("idle").spawn().await.unwrap();
    /// changes.changed().await.unwrap();
    /// assert_eq!(system.named_actors().len(), 1);
    /// # }
    /// ```
    #[must_use]
    pub fn urn_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.urn_generation.subscribe()
    }

    /// The URNs taken (`true`) and freed (`false`) since `position` (a value seen on
    /// [`urn_changes`](Self::urn_changes), or a [`UrnChanges`]' `next`), oldest first: what a
    /// proxy reads to follow a system of any size at the cost of its changes, not its size.
    /// The last [`URN_JOURNAL_CAPACITY`](crate::URN_JOURNAL_CAPACITY) changes are kept; a reader further behind gets
    /// [`UrnChanges::Lost`] and looks at [`named_actors`](Self::named_actors) afresh.
    ///
    /// ```
    /// # use conclib_core::*;
    /// # struct Idle; impl Actor for Idle {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// let seen = *system.urn_changes().borrow();
    /// let idle = system.build(Idle).urn("idle").spawn().await.unwrap();
    /// idle.stop();
    /// idle.wait_for_stop().await;
    /// let UrnChanges::Since { changes, .. } = system.urn_changes_since(seen) else { panic!() };
    /// let changes: Vec<(&str, bool)> = changes.iter().map(|(u, t)| (u.as_str(), *t)).collect();
    /// assert_eq!(changes, [("idle", true), ("idle", false)]);
    /// # }
    /// ```
    #[must_use]
    pub fn urn_changes_since(&self, position: u64) -> UrnChanges {
        self.lock_journal().since(position)
    }

    /// Records a URN change; returns the journal's position after it.
    fn journal_urn(&self, urn: &Urn, taken: bool) -> u64 {
        self.lock_journal().record(urn, taken)
    }

    fn lock_journal(&self) -> std::sync::MutexGuard<'_, UrnJournal> {
        self.inner
            .urn_journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// What runs now: every actor that has not stopped, by id.
    #[must_use]
    pub fn actors(&self) -> Vec<ActorInfo> {
        let actors = self.lock_actors();
        let mut list: Vec<ActorInfo> = actors
            .iter()
            // A stopped actor stays in the registry until its task's last step: hide it.
            .filter(|cell| cell.core().is_alive())
            .map(|cell| {
                let core = cell.core();
                ActorInfo {
                    id: core.id,
                    urn: core.urn.clone(),
                    type_name: core.type_name(),
                    parent: core.parent.as_ref().map(|p| p.core().id),
                    mailbox_len: cell.capacity().len(),
                    stopping: cell.is_closed(),
                    asks_skipped: core.skipped_asks(),
                }
            })
            .collect();
        list.sort_by_key(|a| a.id);
        list
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Stops every actor gracefully: top-level actors stop their children first, and every
    /// actor handles what is already in its mailbox. New spawns are refused. Actors still
    /// running after `timeout` are killed, as [`ActorRef::kill`](crate::ActorRef::kill)
    /// kills (queued asks fail, `on_stop` runs with [`StopReason::Killed`], watchers are
    /// told); one that a kill does not stop within a second more (a handler that never
    /// reaches an `.await`, an `on_stop` that does not return) has its task aborted, its
    /// queued asks failed and its watchers told, without its `on_stop`.
    ///
    /// # Errors
    /// [`ShutdownTimedOut`] if some actors had to be killed.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), ShutdownTimedOut> {
        self.inner.shutting_down.store(true, Ordering::Release);
        let top: Vec<Arc<dyn ErasedCell>> = self
            .lock_actors()
            .iter()
            .filter(|c| c.core().parent.is_none())
            .cloned()
            .collect();
        for cell in &top {
            cell.close();
        }
        if tokio::time::timeout(timeout, self.wait_empty())
            .await
            .is_ok()
        {
            return Ok(());
        }
        let left: Vec<Arc<dyn ErasedCell>> = self.lock_actors().iter().cloned().collect();
        let remaining = left.len();
        // Killed as `ActorRef::kill` kills: a handler waiting at an `.await` is dropped,
        // queued asks fail, `on_stop` runs with `Killed`, parents and watchers are told.
        for cell in &left {
            cell.push_control(crate::mailbox::control::Control::Kill);
        }
        if tokio::time::timeout(KILL_GRACE, self.wait_empty())
            .await
            .is_ok()
        {
            return Err(ShutdownTimedOut { remaining });
        }
        // What a kill does not reach in time (a handler that never reaches an `.await`, an
        // `on_stop` that does not return): its task is aborted. Aborted tasks never run their
        // end; it is done here: queued asks fail, registrations go, watchers are told.
        let left: Vec<Arc<dyn ErasedCell>> = self.lock_actors().iter().cloned().collect();
        for cell in &left {
            cell.core().abort();
            cell.seal();
        }
        for cell in &left {
            self.retire(&**cell, &StopReason::Killed);
        }
        Err(ShutdownTimedOut { remaining })
    }

    async fn wait_empty(&self) {
        loop {
            let notified = self.inner.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock_actors().is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Every actor that has not finished stopping.
    pub(crate) fn live_cells(&self) -> Vec<Arc<dyn ErasedCell>> {
        self.lock_actors().iter().cloned().collect()
    }

    /// Up to `n` of the actors that have not finished stopping, from the registry's slot
    /// `from` on, and the slot to go on from.
    pub(crate) fn cells_from(&self, from: usize, n: usize) -> (Vec<Arc<dyn ErasedCell>>, usize) {
        self.lock_actors().cells_from(from, n)
    }

    /// How many actors have not finished stopping.
    pub(crate) fn count_cells(&self) -> usize {
        self.lock_actors().len()
    }

    /// These actors, those that have not finished stopping (`None`: gone), in their order.
    pub(crate) fn cells_of(
        &self,
        listed: &[crate::observe::changes::Listed],
    ) -> Vec<Option<Arc<dyn ErasedCell>>> {
        let actors = self.lock_actors();
        listed
            .iter()
            .map(|l| actors.get(l.slot, ActorId(l.id)).cloned())
            .collect()
    }

    /// The actors marked changed since the last look ([`crate::observe::changes`]).
    pub(crate) fn changes(&self) -> &crate::observe::changes::Changes {
        &self.inner.changes
    }

    /// Where the actor `id` lists itself in this system's changes when it changes.
    pub(crate) fn change_mark(&self, id: ActorId) -> crate::observe::changes::Mark {
        crate::observe::changes::Mark::new(Some((self.inner.changes.clone(), id)))
    }

    /// What the last look saw (one look at a time per system holds it).
    pub(crate) fn lock_looked(
        &self,
    ) -> std::sync::MutexGuard<'_, crate::observe::snapshot::looked::Looked> {
        self.inner.looked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The URN table, read-locked.
    pub(crate) fn read_names(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<Urn, Arc<dyn ErasedCell>>> {
        self.inner.names.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_actors(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.actors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts entries `added` to and `removed` from `externals` and `pool_probes`.
    pub(crate) fn count_side_entries(&self, added: usize, removed: usize) {
        use std::sync::atomic::Ordering;
        self.inner.side_entries.fetch_add(added, Ordering::AcqRel);
        self.inner.side_entries.fetch_sub(removed, Ordering::AcqRel);
    }

    /// How many entries `externals` and `pool_probes` hold (for tests of what grows).
    #[doc(hidden)]
    #[must_use]
    pub fn snapshot_side_entries(&self) -> usize {
        self.with_externals(|e| e.len()) + self.with_pool_probes(|p| p.len())
    }

    /// The sizes of the system's own tables, by name: what a long-running service (or a
    /// soak test) watches to see that nothing grows with what the system has done, only with
    /// what it holds. `actors`: the registry (actors that have not finished stopping);
    /// `urns`: URNs taken; `side_entries`: snapshot entries of pools and process actors;
    /// `children`, `watchers`: the entries of every actor's lists of children and watchers,
    /// summed. Each is back to its earlier value once the actors spawned since have
    /// stopped. Takes each lock in turn (not for a hot path).
    ///
    /// ```
    /// # use conclib_core::*;
    /// # struct Idle; impl Actor for Idle {}
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let system = ActorSystem::new("docs");
    /// let before = system.table_sizes();
    /// let idle = system.build(Idle).urn("idle").spawn().await.unwrap();
    /// idle.stop();
    /// idle.wait_for_stop().await;
    /// # while system.table_sizes() != before { tokio::task::yield_now().await; }
    /// assert_eq!(system.table_sizes(), before);
    /// # }
    /// ```
    #[must_use]
    pub fn table_sizes(&self) -> Vec<(&'static str, usize)> {
        let cells = self.live_cells();
        let urns = self
            .inner
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        let children = cells.iter().map(|c| c.core().lock_children().len()).sum();
        let watchers = cells.iter().map(|c| c.core().lock_watchers().len()).sum();
        vec![
            ("actors", cells.len()),
            ("urns", urns),
            ("side_entries", self.snapshot_side_entries()),
            ("children", children),
            ("watchers", watchers),
        ]
    }

    pub(crate) fn with_externals<T>(
        &self,
        f: impl FnOnce(&mut Vec<crate::observe::snapshot::External>) -> T,
    ) -> T {
        f(&mut self
            .inner
            .externals
            .lock()
            .unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn with_pool_probes<T>(
        &self,
        f: impl FnOnce(
            &mut Vec<(
                ActorId,
                std::sync::Weak<crate::observe::snapshot::PoolProbe>,
            )>,
        ) -> T,
    ) -> T {
        f(&mut self
            .inner
            .pool_probes
            .lock()
            .unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn next_id(&self) -> ActorId {
        ActorId(self.inner.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// What the system's dormant actors on `runtime` share, with keeper tasks there: they
    /// run the last steps of those stopped while dormant, and when the runtime shuts down
    /// and drops them, their run loops are dropped too, as the runtime drops its tasks'.
    /// (A system used from several runtimes, one a test say, keeps each one's dormant
    /// actors apart.)
    pub(crate) fn keeping(&self, runtime: tokio::runtime::Handle) -> Arc<Keeping> {
        let id = runtime.id();
        let inner = &self.inner;
        let found = |keepers: &[(tokio::runtime::Id, Arc<Keeping>)]| {
            keepers
                .iter()
                .find(|(on, _)| *on == id)
                .map(|(_, k)| k.clone())
        };
        if let Some(k) = found(&inner.keepers.read().unwrap_or_else(|e| e.into_inner())) {
            return k;
        }
        let mut keepers = inner.keepers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = found(&keepers) {
            return k;
        }
        let weak = Arc::downgrade(inner);
        inner.hibernation.start(&runtime, || {
            sweep_every(inner.hibernation.clone(), WeakSystem(Arc::downgrade(inner)))
        });
        let number = Keeping::next_number();
        let keeping = Keeping::start(
            runtime,
            number,
            Box::new(move || {
                let Some(inner) = weak.upgrade() else { return };
                inner
                    .keepers
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(on, _)| *on != id);
                let cells: Vec<Arc<dyn ErasedCell>> = {
                    let actors = inner.actors.lock().unwrap_or_else(|e| e.into_inner());
                    actors.iter().cloned().collect()
                };
                // Dropped outside every lock: a run loop's drop drops its actor and context.
                let runs: Vec<_> = cells
                    .iter()
                    .filter_map(|c| c.take_dormant(number))
                    .collect();
                drop(runs);
            }),
        );
        keepers.push((id, keeping.clone()));
        drop(keepers);
        keeping
    }

    pub(crate) fn register(&self, cell: Arc<dyn ErasedCell>) -> Result<(), SpawnError> {
        let core = cell.core();
        if let Some(urn) = &core.urn {
            let mut names = self.inner.names.write().unwrap_or_else(|e| e.into_inner());
            if names.contains_key(urn) {
                return Err(SpawnError::UrnTaken(urn.clone()));
            }
            names.insert(urn.clone(), cell.clone());
            // Journaled under the names' lock: readers see a URN's changes in order.
            let position = self.journal_urn(urn, true);
            drop(names);
            self.inner
                .urn_generation
                .send_modify(|g| *g = (*g).max(position));
        }
        let id = core.id;
        let mark = &cell.capacity().mark;
        self.lock_actors().insert(cell.clone());
        // After it is in the registry, where the look finds it.
        self.inner.changes.push(id, mark.slot());
        Ok(())
    }

    /// Frees the actor's URN (if it still holds it). Idempotent.
    pub(crate) fn release_urn(&self, core: &CellCore) {
        if let Some(urn) = &core.urn {
            let mut names = self.inner.names.write().unwrap_or_else(|e| e.into_inner());
            if names.get(urn).is_some_and(|c| c.core().id == core.id) {
                names.remove(urn);
                // After a spike, the table gives its memory back once under a quarter full
                // (to half full: the next shrink waits until it has halved again).
                let (len, capacity) = (names.len(), names.capacity());
                if capacity > MIN_NAMES && len * 4 < capacity {
                    names.shrink_to(len * 2);
                }
                let position = self.journal_urn(urn, false);
                drop(names);
                self.inner
                    .urn_generation
                    .send_modify(|g| *g = (*g).max(position));
            }
        }
    }

    /// Forgets a stopped actor; wakes `shutdown` when none is left. Idempotent.
    /// The last step of an actor's stop (its run loop's end, or a shutdown that aborted its
    /// task): it leaves its URN, the system's side tables and its parent's children, is marked
    /// stopped with `reason`, its watchers are told, and it leaves the registry. In this
    /// order: whoever sees it stopped (`wait_for_stop`) finds it gone from every view, and
    /// whoever sees the system empty (shutdown) finds every actor stopped and every parent
    /// told. (The registry lists only live actors, so it agrees before the actor leaves it;
    /// leaving it last takes its lock once.)
    pub(crate) fn retire(&self, cell: &dyn ErasedCell, reason: &StopReason) {
        let core = cell.core();
        self.release_urn(core);
        self.drop_side_entries(core);
        crate::cell::erased::leave_parent(core);
        core.mark_stopped(reason.clone());
        // The next snapshot's look finds it stopped (as it will when it leaves the registry).
        cell.capacity().mark.set();
        tracing::debug!(%reason, "actor stopped");
        crate::cell::erased::notify_stopped(core, reason);
        self.forget(cell);
    }

    fn forget(&self, cell: &dyn ErasedCell) {
        let (id, slot) = (cell.core().id, cell.capacity().mark.slot());
        let mut actors = self.lock_actors();
        actors.remove(slot, id);
        // The next look finds it gone and drops what it saw of it.
        self.inner.changes.push(id, slot);
        if actors.is_empty() {
            drop(actors);
            self.inner.emptied.notify_waiters();
        }
    }

    /// Removes the actor's snapshot entries (an external actor's report, a pool's members),
    /// whether or not anyone ever takes a snapshot. Before its stop is seen, as its URN.
    pub(crate) fn drop_side_entries(&self, core: &CellCore) {
        if self
            .inner
            .side_entries
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
        {
            let id = core.id;
            let mut removed = 0;
            self.with_externals(|e| {
                let before = e.len();
                e.retain(|entry| entry.id != id);
                removed += before - e.len();
            });
            self.with_pool_probes(|p| {
                let before = p.len();
                p.retain(|(entry, _)| *entry != id);
                removed += before - p.len();
            });
            self.inner
                .side_entries
                .fetch_sub(removed, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Frees the URN and forgets the actor.
    pub(crate) fn unregister(&self, cell: &dyn ErasedCell) {
        self.release_urn(cell.core());
        self.drop_side_entries(cell.core());
        self.forget(cell);
    }
}

/// The actors a sweep looks at under one hold of the system's registry lock.
const SWEPT_AT_ONCE: usize = 256;

/// The hibernation sweeper ([`crate::run::hibernation`]): a sweep every period, for as long
/// as the system lives.
async fn sweep_every(hibernation: Arc<Hibernation>, system: WeakSystem) {
    loop {
        hibernation.period().await;
        let Some(system) = system.upgrade() else {
            return;
        };
        sweep(&system).await;
    }
}

/// One hibernation sweep over the system's actors, a few hundred at a time (the registry's
/// lock is not held across them, nor while the woken actors run). Returns how many were
/// asked to hibernate.
pub(crate) async fn sweep(system: &ActorSystem) -> usize {
    let mut from = 0;
    let mut asked = 0;
    loop {
        let (cells, next) = system.cells_from(from, SWEPT_AT_ONCE);
        if cells.is_empty() {
            return asked;
        }
        asked += cells.iter().filter(|c| c.sweep()).count();
        drop(cells);
        from = next;
        tokio::task::yield_now().await;
    }
}
