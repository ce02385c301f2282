//! CPU-bound work spread over actors in processes of their own: one per core, against one
//! alone; then a worker crashed on purpose, restarted, and back at work.
//!
//! `cargo run --release -p conclib-examples --example process_actors`

use std::time::{Duration, Instant};

use conclib::AskError;
use conclib::process::Registry;
use conclib::{RestartLimit, actor, message};
use serde::{Deserialize, Serialize};

/// Hashes `rounds` times from `seed`; answers the final hash.
#[message(response = u64)]
#[derive(Serialize, Deserialize)]
struct Job {
    seed: u64,
    rounds: u32,
}

/// Crashes the worker's process (as a bug in a native library would).
#[message]
#[derive(Serialize, Deserialize)]
struct Crash;

#[actor]
#[derive(Serialize, Deserialize)]
struct Hasher;

#[actor]
impl Hasher {
    #[handle(remote)]
    fn job(&mut self, Job { seed, rounds }: Job) -> u64 {
        conclib_examples::actors::hash_rounds(seed, rounds)
    }

    #[handle(remote)]
    fn crash(&mut self, _: Crash) {
        std::process::abort();
    }
}

const JOBS: u64 = 32;
const ROUNDS: u32 = 1_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First: in a worker process, this runs the worker and never returns.
    conclib::process::init(Registry::new().actor::<Hasher>());
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let timeout = Duration::from_secs(600);
    let mut workers = Vec::new();
    for _ in 0..cores {
        let worker = conclib::process::build(Hasher)
            .restart(RestartLimit::new(3, Duration::from_secs(60)))
            .ask_timeout(timeout)
            .spawn()
            .await?;
        workers.push(worker);
    }
    println!(
        "{cores} workers in processes {:?}",
        workers.iter().map(|w| w.pid()).collect::<Vec<_>>()
    );

    // All jobs on one worker, then spread over all of them.
    let started = Instant::now();
    let mut expected = 0u64;
    for seed in 0..JOBS {
        expected ^= workers[0]
            .ask(Job {
                seed,
                rounds: ROUNDS,
            })
            .await?;
    }
    let alone = started.elapsed();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for seed in 0..JOBS {
        let worker = workers[seed as usize % cores].clone();
        tasks.push(tokio::spawn(async move {
            worker
                .ask(Job {
                    seed,
                    rounds: ROUNDS,
                })
                .await
        }));
    }
    let mut spread = 0u64;
    for t in tasks {
        spread ^= t.await??;
    }
    let all = started.elapsed();
    assert_eq!(spread, expected, "the same work, the same answers");
    println!(
        "{JOBS} jobs: {:.2} s on one worker, {:.2} s on {cores}: {:.2}x",
        alone.as_secs_f64(),
        all.as_secs_f64(),
        alone.as_secs_f64() / all.as_secs_f64()
    );

    // A worker crashes: its asker gets the exit, the service goes on, the worker restarts.
    let victim = workers[0].clone();
    let pid = victim.pid();
    match victim.ask(Crash).await {
        Err(AskError::Exited(exit)) => println!("worker {pid} crashed: {exit}"),
        other => return Err(format!("expected a crash, got {other:?}").into()),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while victim.restarts() == 0 {
        if Instant::now() > deadline {
            return Err("the worker was not restarted".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let h = victim
        .ask(Job {
            seed: 0,
            rounds: 10,
        })
        .await?;
    println!(
        "worker restarted as process {}, answering again ({h:x})",
        victim.pid()
    );
    for w in &workers {
        w.stop();
    }
    for w in &workers {
        w.wait_for_stop().await;
    }
    Ok(())
}
