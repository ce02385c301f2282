//! Counts kept per thread: each thread that adds to a metric has cells of its own there,
//! which only it writes, so its adds are plain loads and stores; a render adds them up.
//!
//! Adds to cells shared between threads need locked instructions (an ask with metrics on
//! made six: its two histogram samples' buckets and sums, and the handled counter's count
//! and generation in the exporter's counter), and all the actors of one type record into
//! one series, whose line every worker would write. Here up to [`SLOTS`] threads at a
//! time have cells of their own in each metric they add to (128 bytes on cache lines of
//! their own, made at their first add there); a thread's slot is handed on when it ends;
//! threads beyond [`SLOTS`] share one set of cells, with locked adds.

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many threads at a time add to a metric with cells of their own: a runtime's
/// workers, and a few more. 8 bytes a metric each; a thread's cells (128 bytes) are made
/// at its first add to that metric.
pub(super) const SLOTS: usize = 16;

/// Cells in a set.
pub(super) const CELLS: usize = 16;

/// One thread's cells, on cache lines of their own: two threads' cells never share a
/// line, so one thread's adds never take a line from another's core.
#[repr(align(128))]
pub(super) struct Cells([AtomicU64; CELLS]);

impl Cells {
    fn new() -> Self {
        Cells(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Cell `at`, as added so far.
    pub(super) fn get(&self, at: usize) -> u64 {
        self.0[at].load(Ordering::Relaxed)
    }

    /// Cell `at`, holding the bits of an `f64`.
    pub(super) fn get_f64(&self, at: usize) -> f64 {
        f64::from_bits(self.get(at))
    }
}

/// A set of cells to add to: this thread's own (one writer: a load and a store) or the
/// shared one (locked).
#[derive(Clone, Copy)]
pub(super) enum Adder<'a> {
    Own(&'a Cells),
    Shared(&'a Cells),
}

impl Adder<'_> {
    #[inline]
    pub(super) fn add(self, at: usize, n: u64) {
        match self {
            Adder::Own(cells) => {
                let c = &cells.0[at];
                c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
            }
            Adder::Shared(cells) => {
                cells.0[at].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Adds `v` to cell `at`, which holds the bits of an `f64`.
    #[inline]
    pub(super) fn add_f64(self, at: usize, v: f64) {
        match self {
            Adder::Own(cells) => {
                cells.0[at].store((cells.get_f64(at) + v).to_bits(), Ordering::Relaxed);
            }
            Adder::Shared(cells) => {
                // No atomic add for `f64`: a compare-and-swap loop, which succeeds at once
                // unless another thread without a slot adds to the same metric at the same
                // instant.
                let c = &cells.0[at];
                let mut current = c.load(Ordering::Relaxed);
                loop {
                    let next = (f64::from_bits(current) + v).to_bits();
                    match c.compare_exchange_weak(
                        current,
                        next,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(actual) => current = actual,
                    }
                }
            }
        }
    }
}

/// A metric's cells: per thread slot, and the shared set.
pub(super) struct PerThread {
    /// Per thread slot ([`slot`]): the cells of the thread holding it, written by that
    /// thread alone (and by a thread that holds the slot after it ended); null until its
    /// first add here.
    own: [AtomicPtr<Cells>; SLOTS],
    /// The cells of threads without a slot, added to with locked instructions.
    shared: Cells,
}

impl PerThread {
    pub(super) fn new() -> Self {
        PerThread {
            own: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            shared: Cells::new(),
        }
    }

    /// The cells this thread adds to: its own if it holds a slot (made at its first add
    /// here), else the shared ones.
    #[inline]
    pub(super) fn adder(&self) -> Adder<'_> {
        let Some(own) = self.own.get(slot()) else {
            return Adder::Shared(&self.shared);
        };
        let cells = own.load(Ordering::Acquire);
        if cells.is_null() {
            return Adder::Own(Self::make_cells(own));
        }
        // SAFETY: a non-null pointer in `own` came from `Box::into_raw` in `make_cells`
        // and is freed only when `self` drops, after this borrow of it.
        Adder::Own(unsafe { &*cells })
    }

    #[cold]
    fn make_cells(own: &AtomicPtr<Cells>) -> &Cells {
        let cells = Box::into_raw(Box::new(Cells::new()));
        // Only the slot's holder writes its pointer: no other store can race this one.
        own.store(cells, Ordering::Release);
        // SAFETY: just made, freed only when the `PerThread` drops.
        unsafe { &*cells }
    }

    /// Every set of cells: the shared one, then each thread's.
    pub(super) fn every(&self) -> impl Iterator<Item = &Cells> {
        std::iter::once(&self.shared).chain(self.own.iter().filter_map(|own| {
            let cells = own.load(Ordering::Acquire);
            // SAFETY: as in `adder`: made by `make_cells`, freed only when `self` drops.
            (!cells.is_null()).then(|| unsafe { &*cells })
        }))
    }

    /// Cell `at` of every set, added up.
    pub(super) fn total(&self, at: usize) -> u64 {
        self.every()
            .fold(0u64, |total, cells| total.wrapping_add(cells.get(at)))
    }
}

impl Drop for PerThread {
    fn drop(&mut self) {
        for own in &mut self.own {
            let cells = *own.get_mut();
            if !cells.is_null() {
                // SAFETY: made by `Box::into_raw` in `make_cells`, and nothing else can
                // reach these cells any more.
                drop(unsafe { Box::from_raw(cells) });
            }
        }
    }
}

/// The next slot never held (past [`SLOTS`]: none left).
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
/// Slots given back by threads that ended. Its lock orders an ended thread's last adds
/// before the adds of the next thread to hold its slot, which go on from its counts.
static FREE_SLOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// [`SLOT`] before the thread's first sample.
const UNTAKEN: usize = usize::MAX;
thread_local! {
    /// This thread's slot: [`UNTAKEN`], none ([`SLOTS`]: none was free, or it was given
    /// back as the thread ends), or its index. Read at every sample: a plain thread-local,
    /// with no destructor.
    static SLOT: Cell<usize> = const { Cell::new(UNTAKEN) };
    /// Gives the slot back when the thread ends (made when it takes one).
    static GIVE_BACK: GiveBack = const { GiveBack };
}

struct GiveBack;

impl Drop for GiveBack {
    fn drop(&mut self) {
        // Later samples of this thread (other destructors') go to the shared cells.
        let slot = SLOT.with(|slot| slot.replace(SLOTS));
        give_back(slot);
    }
}

fn give_back(slot: usize) {
    if slot < SLOTS {
        FREE_SLOTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(slot);
    }
}

/// This thread's slot; [`SLOTS`] or more when it has none.
#[inline]
pub(super) fn slot() -> usize {
    match SLOT.try_with(Cell::get) {
        Ok(UNTAKEN) => take_slot(),
        Ok(slot) => slot,
        Err(_) => SLOTS,
    }
}

/// The thread's first sample: a slot given back by an ended thread, else the next never
/// held.
#[cold]
fn take_slot() -> usize {
    let free = FREE_SLOTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop();
    let slot = free.unwrap_or_else(|| NEXT_SLOT.fetch_add(1, Ordering::Relaxed).min(SLOTS));
    // Registers the destructor that gives it back; a thread ending already (its
    // thread-locals being destroyed) gives it back at once.
    if GIVE_BACK.try_with(|_| ()).is_err() {
        give_back(slot);
        return SLOTS;
    }
    SLOT.with(|s| s.set(slot));
    slot
}

/// Tests whose threads take many slots run one at a time, so that the one that looks at
/// slots being given back sees a free one.
#[cfg(test)]
pub(super) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}
