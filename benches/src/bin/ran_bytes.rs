//! What an actor costs in memory before and after it has handled a message (issue #28).
//!
//! The suite's `spawn` scenario measures actors that never had a message: they are
//! dormant, with no tokio task ("Actors start dormant" in BENCHMARKS.md). An actor woken
//! once has a task from then on, and keeps the buffers its messages used: its lane's
//! and the one its handlers' futures run in. This spawns 100,000 actors on a 2-worker
//! runtime, asks each once, and prints the resident memory per actor at both points:
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml --no-default-features --bin ran_bytes
//! ```
//!
//! Last line: `RESULT idle_bytes_per_actor=.. ran_bytes_per_actor=..` (both against the
//! memory before the first spawn; the registry's table included).
use conclib::{ActorSystem, actor};

// The suite's memory helpers (`rss_bytes`, `resident_vec`, `settle`); the rest unused here.
#[allow(dead_code)]
#[path = "../common.rs"]
mod common;

const ACTORS: usize = 100_000;

#[actor]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::spawn(async {
            let system = ActorSystem::new("ran-bytes");
            // The vector's pages resident before the first reading: not counted as actors'.
            let mut refs = common::resident_vec(ACTORS);
            let before = common::settle().await;
            for _ in 0..ACTORS {
                refs.push(system.spawn(Counter { total: 0 }).await.expect("spawn"));
            }
            let idle = common::settle().await;
            for r in &refs {
                assert_eq!(r.add(1).await.expect("ask"), 1);
            }
            let ran = common::settle().await;
            let per_actor = |after: u64| after.saturating_sub(before) as f64 / ACTORS as f64;
            println!(
                "RESULT idle_bytes_per_actor={:.0} ran_bytes_per_actor={:.0}",
                per_actor(idle),
                per_actor(ran)
            );
        })
        .await
        .expect("bench task");
    });
}
