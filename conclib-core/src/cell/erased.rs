//! The part of an actor's cell that every actor has, whatever its type: [`CellCore`] (its
//! id, URN, relations, stop reason, statistics) and the [`ErasedCell`] trait the registry,
//! dynamic refs and supervision work with. Below the actor's types: what names only this
//! (the system, its registry, the dormant keepers) does not reach the typed cell.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

// `ReasonCell`'s pointer: the loom model (`cell/tests.rs`) runs the same code on loom's.
#[cfg(all(test, conclib_loom))]
use loom::sync::atomic::AtomicPtr as ReasonPtr;
#[cfg(not(all(test, conclib_loom)))]
use std::sync::atomic::AtomicPtr as ReasonPtr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::actor_id::ActorId;
use crate::dynamic::request_envelope::RequestEnvelope;
use crate::error::StopReason;
use crate::exposed::remote::ExposedMessage;
use crate::mailbox::capacity::Capacity;
use crate::mailbox::control::Control;
use crate::message::Priority;
use crate::supervision::SupervisionEvent;
use crate::urn::Urn;

/// What every actor cell has, whatever the actor's type. (Opaque: not nameable outside the crate.)
// In this order (`repr(C)`; the cell puts the mailbox right after): the count the actor's
// task writes per message (`stats.handled`) has 128 bytes of fields nobody writes per
// message between it and the mailbox, so that neither its cache line nor the line fetched
// with it (x86 fetches aligned pairs) holds what senders write, and 112 bytes between it and
// the allocation's start (more than a line: the pair's other line may hold the `Arc`'s
// counts; 128 there too would cost 136 bytes an actor, "Every actor 138 bytes smaller" in
// docs/bench-log.md); boxed apart, it sat beside whatever malloc put there. Where the
// cell falls against 128-byte boundaries still moves one actor's fan-in by 2x (malloc
// aligns to 16 bytes; 64-byte-aligned cells cost 214 bytes each): docs/bench-log.md, "Field
// layout". The test `the_task_line_is_apart` keeps the distances.
/// The bit of [`CellCore::ask_timeout_ns`] that says the actor hands its asks on.
const HANDS_ON_BIT: u64 = 1 << 63;

#[repr(C)]
pub struct CellCore {
    /// The default ask timeout in nanoseconds (the low 63 bits: 292 years at most), read
    /// by every ask: 8 bytes, not a `Duration`'s 16; the top bit says the actor hands its
    /// asks on ([`Actor::HANDS_ON`](crate::Actor::HANDS_ON)), which every ask reads too.
    /// First: as far from the task's line as the cell allows (askers read it, the task
    /// writes its line).
    ask_timeout_ns: u64,
    pub(crate) id: ActorId,
    pub(crate) urn: Option<Urn>,
    pub(crate) parent: Option<Arc<dyn ErasedCell>>,
    /// Set once, when the actor stopped (it is alive until then): 8 bytes, not a
    /// `OnceLock<StopReason>`'s 40.
    reason: ReasonCell,
    /// The abort handle of the actor's task, while it has one (not while dormant: it would
    /// keep the ended task's memory).
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Children, watchers and the policy for children: what most actors never have, in a
    /// box allocated at the first (16 bytes in every cell, not 48).
    relations: Relations,
    /// What the snapshot shows: counters written by the actor's own task only.
    pub(super) stats: Stats,
    /// Asks not started because their asker had given up.
    skipped_asks: AtomicU64,
    /// `std::any::type_name` of the actor's type, called when needed: 8 bytes, not a
    /// `&str`'s 16.
    type_name: fn() -> &'static str,
    stopped: Notify,
    /// What changes only when something goes wrong, or when a snapshot is taken. In the
    /// cell rather than a box of its own: one allocation less per spawn (docs/bench-log.md,
    /// "One allocation less"). After the fields nobody writes per message: it is written
    /// on failures and snapshots only.
    rare: Mutex<RareStats>,
}

impl CellCore {
    pub(crate) fn new(
        id: ActorId,
        urn: Option<Urn>,
        parent: Option<Arc<dyn ErasedCell>>,
        type_name: fn() -> &'static str,
        ask_timeout: Duration,
        hands_on: bool,
    ) -> Self {
        CellCore {
            id,
            urn,
            parent,
            type_name,
            ask_timeout_ns: u64::try_from(ask_timeout.as_nanos())
                .unwrap_or(u64::MAX)
                .min(!HANDS_ON_BIT)
                | if hands_on { HANDS_ON_BIT } else { 0 },
            reason: ReasonCell::new(),
            stopped: Notify::new(),
            relations: Relations::new(),
            task: Mutex::new(None),
            skipped_asks: AtomicU64::new(0),
            stats: Stats::default(),
            rare: Mutex::new(RareStats::default()),
        }
    }

    pub(crate) fn set_children_policy(&self, policy: Option<crate::supervision::PanicPolicy>) {
        let mut relations = self.relations.lock();
        // No box for the default (no policy) where there is none yet.
        if policy.is_some() || relations.is_some() {
            relations.get_or_insert_with(Box::default).children_policy = policy;
        }
    }

    /// The panic policy that applies to this actor: its parent's declaration for its
    /// children if there is one, else `own`.
    pub(crate) fn panic_policy(
        &self,
        own: crate::supervision::PanicPolicy,
    ) -> crate::supervision::PanicPolicy {
        self.parent
            .as_ref()
            .and_then(|p| {
                p.core()
                    .relations
                    .lock()
                    .as_deref()
                    .and_then(|r| r.children_policy)
            })
            .unwrap_or(own)
    }

    /// The actor's statistics.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Its per-message-type figures.
    /// The tally of message type `name`, added if new (see [`RareStats::tallies`]).
    pub(crate) fn tally_of(
        &self,
        name: &'static str,
    ) -> Arc<crate::observe::snapshot::tallies::LiveTally> {
        self.rare().tallies.of(name)
    }

    /// The timeout of an ask that does not set one.
    pub(crate) fn ask_timeout(&self) -> Duration {
        Duration::from_nanos(self.ask_timeout_ns & !HANDS_ON_BIT)
    }

    /// Whether the actor hands its asks on, to be answered later
    /// ([`Actor::HANDS_ON`](crate::Actor::HANDS_ON)): no answer comes within the turn of
    /// the scheduler that delivered the ask.
    pub(crate) fn hands_on(&self) -> bool {
        self.ask_timeout_ns & HANDS_ON_BIT != 0
    }

    /// What changes only on failures and snapshots.
    pub(crate) fn rare(&self) -> std::sync::MutexGuard<'_, RareStats> {
        self.rare.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn failed(&self, error: String) {
        let mut rare = self.rare();
        rare.errors += 1;
        rare.last_error = Some(error.into_boxed_str());
    }

    pub(crate) fn panicked(&self, panic: &str) {
        let mut rare = self.rare();
        rare.panics += 1;
        rare.last_error = Some(format!("panicked: {panic}").into_boxed_str());
    }

    pub(crate) fn count_skipped_ask(&self) {
        self.skipped_asks.fetch_add(1, Ordering::Relaxed);
    }

    /// How many asks were not started because their asker had given up.
    pub(crate) fn skipped_asks(&self) -> u64 {
        self.skipped_asks.load(Ordering::Relaxed)
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.reason.get().is_none()
    }

    /// The actor's type, as `std::any::type_name` gives it.
    pub(crate) fn type_name(&self) -> &'static str {
        (self.type_name)()
    }

    /// Restartable actors answer a sibling restart (one-for-all).
    pub(crate) fn restartable(&self) -> &AtomicBool {
        &self.stats.restartable
    }

    /// Records the end and wakes everyone in `wait_for_stop`.
    pub(crate) fn mark_stopped(&self, reason: StopReason) {
        self.reason.set(reason);
        self.stopped.notify_waiters();
    }

    pub(crate) fn set_abort(&self, handle: tokio::task::AbortHandle) {
        *self.lock_task() = Some(handle);
    }

    /// The task's abort handle, taken out as the task ends to hibernate.
    pub(crate) fn take_abort(&self) -> Option<tokio::task::AbortHandle> {
        self.lock_task().take()
    }

    /// Aborts the actor's task (shutdown after its timeout).
    pub(crate) fn abort(&self) {
        if let Some(t) = self.lock_task().as_ref() {
            t.abort();
        }
    }

    /// The id of the actor's task, while it has one.
    #[cfg(test)]
    pub(crate) fn task_id(&self) -> Option<tokio::task::Id> {
        self.lock_task().as_ref().map(tokio::task::AbortHandle::id)
    }

    fn lock_task(&self) -> std::sync::MutexGuard<'_, Option<tokio::task::AbortHandle>> {
        self.task.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        self.reason.get().cloned()
    }

    pub(crate) async fn wait_for_stop(&self) -> StopReason {
        // Stopped already: no waiter to register and drop (about 380 instructions).
        if let Some(reason) = self.reason.get() {
            return reason.clone();
        }
        loop {
            let notified = self.stopped.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(reason) = self.reason.get() {
                return reason.clone();
            }
            notified.await;
        }
    }

    /// A name for logs and errors: the URN, or the type and id.
    pub(crate) fn label(&self) -> String {
        match &self.urn {
            Some(urn) => urn.to_string(),
            None => format!("{}{}", self.type_name(), self.id),
        }
    }

    pub(crate) fn lock_children(&self) -> CellListGuard<'_> {
        self.relations.list(List::Children)
    }

    pub(crate) fn lock_watchers(&self) -> CellListGuard<'_> {
        self.relations.list(List::Watchers)
    }
}

/// What an actor is related to, which most actors never are: allocated at the first entry.
struct Relations(Mutex<Option<Box<Related>>>);

#[derive(Default)]
struct Related {
    /// Children that have not stopped yet.
    children: Vec<Arc<dyn ErasedCell>>,
    /// Actors to tell when this one stops.
    watchers: Vec<Arc<dyn ErasedCell>>,
    /// The panic policy this actor imposes on its children, if it declared one.
    children_policy: Option<crate::supervision::PanicPolicy>,
}

/// Read through a list that was never allocated.
static NO_CELLS: Vec<Arc<dyn ErasedCell>> = Vec::new();

impl Relations {
    const fn new() -> Self {
        Relations(Mutex::new(None))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<Related>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One of the lists, locked.
    fn list(&self, list: List) -> CellListGuard<'_> {
        CellListGuard {
            relations: self.lock(),
            list,
        }
    }
}

/// Which list of [`Related`] a guard reads.
#[derive(Clone, Copy)]
enum List {
    Children,
    Watchers,
}

impl List {
    fn of(self, related: &Related) -> &Vec<Arc<dyn ErasedCell>> {
        match self {
            List::Children => &related.children,
            List::Watchers => &related.watchers,
        }
    }

    fn of_mut(self, related: &mut Related) -> &mut Vec<Arc<dyn ErasedCell>> {
        match self {
            List::Children => &mut related.children,
            List::Watchers => &mut related.watchers,
        }
    }
}

/// A cell's children or watchers, locked (one lock for both: take one guard at a time):
/// reads as a `Vec` (empty if never allocated); writing allocates it.
pub(crate) struct CellListGuard<'a> {
    relations: std::sync::MutexGuard<'a, Option<Box<Related>>>,
    list: List,
}

impl CellListGuard<'_> {
    /// Takes every entry out, leaving the list empty (without allocating it).
    pub(crate) fn take(&mut self) -> Vec<Arc<dyn ErasedCell>> {
        let list = self.list;
        self.relations
            .as_deref_mut()
            .map(|r| std::mem::take(list.of_mut(r)))
            .unwrap_or_default()
    }

    /// Keeps the entries for which `keep` holds (without allocating the list).
    pub(crate) fn retain(&mut self, keep: impl FnMut(&Arc<dyn ErasedCell>) -> bool) {
        let list = self.list;
        if let Some(r) = self.relations.as_deref_mut() {
            list.of_mut(r).retain(keep);
        }
    }
}

impl std::ops::Deref for CellListGuard<'_> {
    type Target = Vec<Arc<dyn ErasedCell>>;
    fn deref(&self) -> &Self::Target {
        self.relations
            .as_deref()
            .map_or(&NO_CELLS, |r| self.list.of(r))
    }
}

impl std::ops::DerefMut for CellListGuard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        let list = self.list;
        list.of_mut(self.relations.get_or_insert_with(Box::default))
    }
}

/// Why the actor stopped, set once: a pointer, to a static for the two reasons without
/// text (no allocation for a normal stop or a kill), else to a box.
///
/// # Safety
///
/// The pointer is null, or one of the two statics, or a `Box::into_raw` this cell owns; it
/// is set once (a compare-exchange from null) and never replaced, so a reference read from it
/// lives as long as the cell, and the box is freed once, in `Drop`. Kept: 8 bytes in every
/// cell where `OnceLock<StopReason>` takes 40 and `OnceLock<Box<StopReason>>` 16 (the cell's
/// layout, and so fan-in, is measured to the byte: see `CellCore`), and no allocation a stop.
/// Checked by a loom model (`cell/tests.rs`, `--cfg conclib_loom`) and AddressSanitizer.
pub(super) struct ReasonCell(ReasonPtr<StopReason>);

static NORMAL: StopReason = StopReason::Normal;
static KILLED: StopReason = StopReason::Killed;

impl ReasonCell {
    pub(super) fn new() -> Self {
        ReasonCell(ReasonPtr::new(std::ptr::null_mut()))
    }

    fn is_static(p: *mut StopReason) -> bool {
        std::ptr::eq(p, &NORMAL) || std::ptr::eq(p, &KILLED)
    }

    /// Sets the reason unless one is set already (the first stays).
    pub(super) fn set(&self, reason: StopReason) {
        if !self.0.load(Ordering::Acquire).is_null() {
            return;
        }
        let p = match reason {
            StopReason::Normal => std::ptr::from_ref(&NORMAL).cast_mut(),
            StopReason::Killed => std::ptr::from_ref(&KILLED).cast_mut(),
            other => Box::into_raw(Box::new(other)),
        };
        if self
            .0
            .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
            && !Self::is_static(p)
        {
            // SAFETY: `p` came from `Box::into_raw` above and was never shared.
            drop(unsafe { Box::from_raw(p) });
        }
    }

    pub(super) fn get(&self) -> Option<&StopReason> {
        let p = self.0.load(Ordering::Acquire);
        // SAFETY: a non-null pointer is a static or a box this cell owns, which lives as long
        // as the cell (it is never replaced once set).
        (!p.is_null()).then(|| unsafe { &*p })
    }
}

impl Drop for ReasonCell {
    fn drop(&mut self) {
        // A load, not `get_mut` (which loom's atomics lack): `&mut self`, nothing races it.
        let p = self.0.load(Ordering::Acquire);
        if !p.is_null() && !Self::is_static(p) {
            // SAFETY: a non-static pointer came from `Box::into_raw` in `set`, and the cell
            // is its only owner.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// What an actor's task writes per message, for
/// [`ActorSystem::snapshot`](crate::ActorSystem::snapshot), on the line [`CellCore`] keeps
/// apart. Only the actor's task writes `handled` (a plain load and store, no
/// read-modify-write); what changes only on failures is [`RareStats`], further on in the
/// cell.
#[derive(Default)]
#[repr(C)] // the per-message fields first
pub(crate) struct Stats {
    pub(crate) handled: AtomicU64,
    /// Set by the actor's task after each message (see [`crate::observe::changes::TaskMark`]).
    pub(crate) mark: crate::observe::changes::TaskMark,
    /// Whether the actor restarts with a sibling (one-for-all): set at spawn, read on a
    /// sibling's restart. In the mark's padding: no room taken.
    pub(crate) restartable: AtomicBool,
}

/// What changes only when something goes wrong, or when a snapshot is taken.
#[derive(Default)]
pub(crate) struct RareStats {
    pub(crate) errors: u64,
    pub(crate) panics: u64,
    pub(crate) restarts: u64,
    pub(crate) last_error: Option<Box<str>>,
    /// What the previous snapshot saw: for the next rate and recent failures.
    pub(crate) sampled: Option<Box<crate::observe::snapshot::sample::Sample>>,
    /// Per message type, what the actor handled while metrics were on: counted in place by
    /// its task (through its own `Arc` of each), listed here (a new type adds one, a
    /// snapshot reads them: both rare).
    pub(crate) tallies: crate::observe::snapshot::tallies::Tallies,
}

impl Stats {
    #[inline]
    pub(crate) fn count_handled(&self) {
        self.handled
            .store(self.handled.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// An actor cell with its actor type erased (opaque): what the registry, dynamic refs and
/// supervision work with.
pub trait ErasedCell: Send + Sync + 'static {
    fn core(&self) -> &CellCore;
    fn capacity(&self) -> &Capacity;
    /// Queues a dynamic request whose place was reserved (or forced).
    fn push_request(&self, req: RequestEnvelope, priority: Priority)
    -> Result<(), RequestEnvelope>;
    fn push_control(&self, c: Control) -> bool;
    /// Asks the actor's heartbeat (high priority, answered between messages).
    fn ping(
        self: Arc<Self>,
        timeout: std::time::Duration,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(), crate::error::AskError>> + Send>,
    >;
    /// Graceful stop: refuse new user messages, handle the queued ones, stop.
    fn close(&self);
    /// Refuses every message from now on and drops what is queued (its asks fail
    /// `ActorStopped`): for an actor whose task was aborted, which never runs its end.
    fn seal(&self);
    fn is_closed(&self) -> bool;
    fn accepts(&self, message: TypeId) -> bool;
    fn remote(&self) -> &'static [ExposedMessage];
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// A dormant actor's run loop ([`crate::run::dormant`]) of keeping `on` (its runtime shut
    /// down), taken out unwoken, to be dropped.
    fn take_dormant(&self, on: u32) -> Option<std::task::Waker>;
    /// Woken while dormant, the actor only has to stop (see [`crate::run::dormant`]).
    fn stops_at_once(&self) -> bool;
    /// The run loop moves from the keeper to a task of its own (see [`crate::run::dormant`]).
    fn forget_waker(&self);
    /// A hibernation sweep's look at the actor ([`crate::run::hibernation`]); whether it was
    /// asked to hibernate.
    fn sweep(&self) -> bool;
    /// Its run loop, hibernating, waits in `dormant` from now on, if nothing came since it
    /// looked (see [`crate::run::hibernation`]).
    fn hibernate(&self, dormant: std::task::Waker, on: u32) -> Result<(), std::task::Waker>;
}

impl crate::observe::metrics::MeasuredActor for CellCore {
    fn type_name(&self) -> &'static str {
        CellCore::type_name(self)
    }
    fn urn(&self) -> Option<&Urn> {
        self.urn.as_ref()
    }
    fn tally_of(&self, name: &'static str) -> Arc<crate::observe::snapshot::tallies::LiveTally> {
        CellCore::tally_of(self, name)
    }
}

/// Takes a stopped actor out of its parent's list of children (before it is marked stopped,
/// so that whoever sees it stopped finds every view agreeing).
pub(crate) fn leave_parent(core: &CellCore) {
    if let Some(parent) = &core.parent {
        parent
            .core()
            .lock_children()
            .retain(|c| c.core().id != core.id);
    }
}

/// Tells the parent and watchers that `cell` stopped.
pub(crate) fn notify_stopped(core: &CellCore, reason: &StopReason) {
    if let Some(parent) = &core.parent {
        parent.push_control(Control::Event(SupervisionEvent::ChildStopped {
            id: core.id,
            urn: core.urn.clone(),
            reason: reason.clone(),
        }));
    }
    let watchers = core.lock_watchers().take();
    for w in watchers {
        w.push_control(Control::Event(SupervisionEvent::Terminated {
            id: core.id,
            urn: core.urn.clone(),
            reason: reason.clone(),
        }));
    }
}
