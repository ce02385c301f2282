//! What an idle actor's allocations cost in memory once glibc has placed them.
//!
//! An actor is a few long-lived allocations: its cell (an `Arc`), possibly a box beside
//! it, and tokio's task, which tokio aligns to 128 bytes (`posix_memalign`). glibc serves
//! an aligned request by cutting a larger chunk and giving back the pieces before and after
//! the aligned part, which later, smaller requests may or may not fit into; so the memory
//! an actor takes moves in steps of up to 160 bytes as its cell grows or shrinks by 16
//! (fewer bytes can cost more). This replays the allocations of 100,000 actors, in the order
//! `spawn` makes them, and prints the resident memory per actor, for each layout asked for:
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml --no-default-features \
//!     --bin alloc_fit -- 488:384 456:64:216:128
//! ```
//!
//! Each argument is the sizes in bytes as requested, in the order allocated, separated by
//! `:`: the cell (the `Arc`'s 16 bytes of counts included), any boxes, and last tokio's
//! task (128-aligned); a size written `128a` is the aligned one wherever it stands, and a
//! size written `72u` says no allocation is aligned (a dormant actor has no task). With no
//! arguments it prints the layouts docs/bench-log.md compares ("One allocation less", "Every
//! actor 138 bytes smaller"). Each prints `RESULT layout=.. bytes_per_actor=..`. The
//! registry's table (about 26 bytes an actor) is not in these figures; the `spawn`
//! scenario's are.
use std::alloc::{Layout, alloc, dealloc};

const ACTORS: usize = 100_000;

fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Allocates `layout` and writes it (resident, as an actor's memory is).
fn touch(layout: Layout) -> *mut u8 {
    // SAFETY: every layout here has a non-zero size.
    let p = unsafe { alloc(layout) };
    assert!(!p.is_null(), "out of memory");
    // SAFETY: `p` holds `layout.size()` bytes.
    unsafe { p.write_bytes(1, layout.size()) };
    p
}

/// Bytes per actor for one layout: each size with whether it is 128-aligned.
fn measure(sizes: &[(usize, bool)]) -> f64 {
    let layouts: Vec<Layout> = sizes
        .iter()
        .map(|&(size, aligned)| {
            Layout::from_size_align(size, if aligned { 128 } else { 8 }).expect("a layout")
        })
        .collect();
    let mut kept: Vec<(*mut u8, Layout)> = Vec::with_capacity(ACTORS * layouts.len());
    // Resident before counting, as the bench's list of refs is.
    for slot in kept.spare_capacity_mut() {
        slot.write((std::ptr::null_mut(), Layout::new::<u8>()));
    }
    let before = resident();
    for _ in 0..ACTORS {
        for &layout in &layouts {
            kept.push((touch(layout), layout));
        }
    }
    let per_actor = (resident() - before) as f64 / ACTORS as f64;
    for (p, layout) in kept {
        // SAFETY: allocated above with this layout.
        unsafe { dealloc(p, layout) };
    }
    per_actor
}

/// `cell:..:task`, every size above zero; a size ending in `a` is the 128-aligned one (by
/// default the last); one ending in `u` says none is (a dormant actor, which has no task).
fn parse(arg: &str) -> Option<Vec<(usize, bool)>> {
    let none_aligned = arg.split(':').any(|p| p.ends_with('u'));
    let mut sizes: Vec<(usize, bool)> = arg
        .split(':')
        .map(|p| {
            let p = p.strip_suffix('u').unwrap_or(p);
            let (n, aligned) = p.strip_suffix('a').map_or((p, false), |n| (n, true));
            n.parse()
                .ok()
                .filter(|&n: &usize| n > 0)
                .map(|n| (n, aligned))
        })
        .collect::<Option<_>>()?;
    if !none_aligned && !sizes.iter().any(|&(_, aligned)| aligned) {
        sizes.last_mut()?.1 = true;
    }
    (sizes.len() >= 2).then_some(sizes)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One layout per process: a heap that earlier layouts have shaped would not say what
    // a fresh one does.
    if let [one, flag] = &args[..]
        && flag == "--child"
    {
        let Some(sizes) = parse(one) else {
            eprintln!("not cell:..:task: {one}");
            std::process::exit(2);
        };
        println!("RESULT layout={one} bytes_per_actor={:.0}", measure(&sizes));
        return;
    }
    let layouts: Vec<String> = if args.is_empty() {
        [
            // 2026-11-24 before: cell 456 (with the Arc's counts), statistics box 64, run
            // loop box 216, task 128.
            "456:64:216:128",
            // The cell 16 bytes smaller, nothing else changed: more memory, not less.
            "440:64:216:128",
            // The statistics in the cell (488), their box gone.
            "488:216:128",
            // ... and the run loop inside tokio's task (384), its box gone: the same bytes
            // (not done: it slows the actor's side of a tell, see docs/bench-log.md).
            "488:384",
            // A run loop of at most 144 bytes would make the task 256: one way to 800.
            "488:256",
            // The way taken: the cell 96 bytes smaller (392 with the counts), the rest as it
            // was; its three chunks (400, 224, 144) fill six 128-byte blocks exactly.
            "392:216:128",
            // 16 bytes fewer, worse: a 16-byte gap glibc cannot use.
            "376:216:128",
            // The same cell for an actor with 8, 24, 48 or 96 bytes of state (its run loop
            // grows by as much): the steps (docs/bench-log.md, "Every actor 138 bytes smaller").
            "392:224:128",
            "392:240:128",
            "392:264:128",
            "392:312:128",
        ]
        .map(String::from)
        .to_vec()
    } else {
        args
    };
    let me = std::env::current_exe().expect("own path");
    for layout in layouts {
        if parse(&layout).is_none() {
            eprintln!("not cell:..:task: {layout}");
            std::process::exit(2);
        }
        let out = std::process::Command::new(&me)
            .args([&layout, "--child"])
            .output()
            .expect("run a child");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
