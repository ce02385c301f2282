//! Memory after a spike: once 100,000 named actors have been spawned and have all
//! stopped, the system gives back what it held for them. Measured by this binary's own
//! allocator, which counts the bytes allocated and not yet freed (exact, no timing): the
//! heap after the spike may exceed the heap before it by a bound that does not depend on how
//! many actors there were ([`BOUND`]).
//!
//! Its own binary: the allocator is the whole process's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use conclib_core::{Actor, ActorSystem};

/// Counts live heap bytes, then hands every call to the system allocator unchanged.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

#[allow(clippy::cast_possible_wrap)]
fn live_add(n: usize) {
    LIVE.fetch_add(n as isize, Ordering::Relaxed);
}

#[allow(clippy::cast_possible_wrap)]
fn live_sub(n: usize) {
    LIVE.fetch_sub(n as isize, Ordering::Relaxed);
}

// SAFETY: each method calls the system allocator with the arguments it was given (the
// contract `GlobalAlloc` asks of the caller is passed on as is); the counting touches only
// an atomic and does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        live_add(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        live_add(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live_sub(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        live_sub(layout.size());
        live_add(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mib() -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let live = LIVE.load(Ordering::Relaxed) as f64;
    live / (1024.0 * 1024.0)
}

struct Idle;
impl Actor for Idle {}

/// How many actors the spike spawns.
const SPIKE: usize = 100_000;
/// How much more heap the system may hold after the spike than before it: the URN journal
/// ([`conclib_core::URN_JOURNAL_CAPACITY`] changes, 24 bytes each in the journal and
/// each URN's own bytes, about 32 here), what else a system keeps whatever its size (the
/// registry's and the URN table's least room, 1,024 entries each), and slack.
const BOUND_MIB: f64 = 1.25;

/// This process's resident set, in MiB.
fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// Spawns `n` named actors, stops them all and waits until the system's tables are back to
/// what they were.
async fn spike(system: &ActorSystem, round: usize, n: usize) -> f64 {
    let before = system.table_sizes();
    let mut actors = Vec::with_capacity(n);
    for i in 0..n {
        actors.push(
            system
                .build(Idle)
                .urn(format!("spike:{round}:{i}"))
                .spawn()
                .await
                .unwrap(),
        );
    }
    let peak = live_mib();
    for actor in &actors {
        actor.stop();
    }
    for actor in &actors {
        tokio::time::timeout(Duration::from_secs(30), actor.wait_for_stop())
            .await
            .expect("an actor stopped within 30 s");
    }
    drop(actors);
    // The registry forgets an actor once it has finished stopping, just after it reports
    // its stop: wait (bounded) for the tables to be what they were.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while system.table_sizes() != before {
        assert!(
            std::time::Instant::now() < deadline,
            "tables back to {before:?} within 30 s: {:?}",
            system.table_sizes()
        );
        tokio::task::yield_now().await;
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_spike_of_100_000_actors_the_heap_is_given_back() {
    let system = ActorSystem::new("spike");
    // A first small round: what is allocated once for good (the runtime's, the system's
    // lazily made parts) is not the spike's.
    spike(&system, 0, 1_000).await;
    let (before, rss_before) = (live_mib(), rss_mib());
    let peak = spike(&system, 1, SPIKE).await;
    let (after, rss_after) = (live_mib(), rss_mib());
    // And a second spike does not add to what the first left.
    spike(&system, 2, SPIKE).await;
    let again = live_mib();
    // What the allocator (glibc's malloc here) keeps of the freed memory, and what it gives
    // the system back when asked: the figures the crate docs quote ("Memory").
    // SAFETY: malloc_trim only releases free memory of malloc's own arenas.
    unsafe { libc::malloc_trim(0) };
    let rss_trimmed = rss_mib();
    println!(
        "RESULT test=memory_spike actors={SPIKE} heap_before_mib={before:.2} \
         heap_peak_mib={peak:.2} heap_after_mib={after:.2} heap_after_second_mib={again:.2} \
         rss_before_mib={rss_before:.1} rss_after_mib={rss_after:.1} \
         rss_after_malloc_trim_mib={rss_trimmed:.1}"
    );
    assert!(
        after - before <= BOUND_MIB,
        "after {SPIKE} actors came and went the heap holds {:.2} MiB more than before \
         ({before:.2} MiB before, {peak:.2} MiB at the peak, {after:.2} MiB after)",
        after - before
    );
    assert!(
        again - before <= BOUND_MIB,
        "after a second spike the heap holds {:.2} MiB more than before",
        again - before
    );
}
