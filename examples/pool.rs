//! A CPU-bound job (a fixed amount of hashing per message) on one process actor, then on a
//! pool of process actors sized to the machine's cores, behind one URN; prints the speedup.
//!
//! `cargo run --release -p conclib-examples --example pool`
//!
//! Last line: `RESULT workers=N speedup=X`. Each member of the pool is an actor in an OS
//! process of its own, so N members run N jobs at once on N cores, whatever the parent's
//! runtime is doing: on a machine with C idle cores the speedup approaches min(N, C) (the
//! pool is sized to C here). What bounds it on a big machine is the work per message
//! against the cost of a round trip to a process (tens of microseconds; docs/bench-log.md):
//! with jobs of milliseconds, as here, that cost is noise.

use std::time::{Duration, Instant};

use conclib::process::Registry;
use conclib::{ActorSystem, DynActorRef, Routing};

// The demo's hasher: `Hash { seed, rounds }` answered with the hash and the pid of the
// process that computed it.
use conclib_examples::actors::{Hash, Hasher};

const JOBS: u64 = 64;
const ROUNDS: u32 = 1_000_000;

/// Runs all jobs concurrently through `target` and returns the time taken and a checksum.
async fn run(target: &DynActorRef, timeout: Duration) -> Result<(Duration, u64), String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for seed in 0..JOBS {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            target
                .ask(Hash {
                    seed,
                    rounds: ROUNDS,
                })
                .timeout(timeout)
                .await
        }));
    }
    let mut checksum = 0u64;
    for t in tasks {
        checksum ^= t
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:?}"))?
            .hash;
    }
    Ok((start.elapsed(), checksum))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First: in a member's process, this runs the member and never returns.
    conclib::process::init(Registry::new().actor::<Hasher>());
    tokio::runtime::Runtime::new()?.block_on(async {
        let workers = std::thread::available_parallelism().map_or(2, usize::from);
        let system = ActorSystem::new("pool-example");
        let timeout = Duration::from_secs(600);

        let single = conclib::process::build(Hasher)
            .system(&system)
            .urn("hasher")
            .ask_timeout(timeout)
            .spawn()
            .await?;
        let (one, expected) = run(&system.lookup("hasher")?, timeout).await?;

        let pool = conclib::process::ProcessPool::new(
            system
                .pool(|| conclib::process::build(Hasher).into_actor())
                .size(workers)
                .routing(Routing::LeastLoaded)
                .urn("hashers")
                .ask_timeout(timeout)
                .spawn()
                .await?,
        );
        let (many, checksum) = run(&system.lookup("hashers")?, timeout).await?;
        assert_eq!(
            checksum, expected,
            "the pool computes what one actor computes"
        );
        println!(
            "one process actor (pid {}): {:.2} s; a pool of {} process actors: {:.2} s",
            single.pid(),
            one.as_secs_f64(),
            pool.pool().members().len(),
            many.as_secs_f64()
        );
        system.shutdown(Duration::from_secs(10)).await?;
        println!(
            "RESULT workers={workers} speedup={:.2}",
            one.as_secs_f64() / many.as_secs_f64()
        );
        Ok(())
    })
}
