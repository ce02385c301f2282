//! A CPU-bound job (a fixed amount of hashing per message) on one actor, then on a pool
//! sized to the machine's cores; prints the speedup.
//!
//! `cargo run --release -p conclib-examples --example pool`
//!
//! Last line: `RESULT workers=N speedup=X`. A pool of N members runs N jobs at once, so on
//! a machine with C idle cores the speedup approaches min(N, C): each member is an actor
//! with its own task, and the runtime's worker threads (one per core by default) run them
//! in parallel.

use conclib::{ActorSystem, Routing, actor, message};
use std::time::{Duration, Instant};

/// Hashes `rounds` times, starting from `seed`; answers the final hash.
#[message(response = u64)]
struct Job {
    seed: u64,
    rounds: u32,
}

#[actor]
#[derive(Default)]
struct Hasher;

#[actor]
impl Hasher {
    #[handle]
    fn job(&mut self, Job { seed, rounds }: Job) -> u64 {
        let mut h = seed;
        for _ in 0..rounds {
            // FNV-1a over the eight bytes of the previous hash.
            let mut next: u64 = 0xcbf2_9ce4_8422_2325;
            for b in h.to_le_bytes() {
                next = (next ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            h = next;
        }
        h
    }
}

const JOBS: u64 = 64;
const ROUNDS: u32 = 1_000_000;

/// Runs all jobs concurrently through `ask` and returns the time taken and a checksum.
async fn run<F, Fut>(ask: F) -> (Duration, u64)
where
    F: Fn(Job) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for seed in 0..JOBS {
        tasks.push(tokio::spawn(ask(Job {
            seed,
            rounds: ROUNDS,
        })));
    }
    let mut checksum = 0u64;
    for t in tasks {
        checksum ^= t.await.expect("job task");
    }
    (start.elapsed(), checksum)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let system = ActorSystem::new("pool-example");
    let timeout = Duration::from_secs(600);

    let single = system.spawn(Hasher).await?;
    let (one, expected) = run(|job| {
        let single = single.clone();
        async move { single.ask(job).timeout(timeout).await.expect("job") }
    })
    .await;

    let pool = system
        .pool(Hasher::default)
        .size(workers)
        .routing(Routing::LeastLoaded)
        .ask_timeout(timeout)
        .spawn()
        .await?;
    let (many, checksum) = run(|job| {
        let pool = pool.clone();
        async move { pool.ask(job).await.expect("job") }
    })
    .await;
    assert_eq!(
        checksum, expected,
        "the pool computes what one actor computes"
    );

    println!(
        "one actor: {:.2} s; pool of {workers}: {:.2} s",
        one.as_secs_f64(),
        many.as_secs_f64()
    );
    system.shutdown(Duration::from_secs(5)).await?;
    println!(
        "RESULT workers={workers} speedup={:.2}",
        one.as_secs_f64() / many.as_secs_f64()
    );
    Ok(())
}
