//! Durable workflows on 3 member processes (`examples/durable.rs` has the code): 1,000
//! workflows of 5 journaled steps (half with a durable sleep and a promise their caller
//! resolves) while a random member is SIGKILLed and replaced at random points of the run's
//! progress (at most 40 kills) and Redis (AOF, `appendfsync always`) is SIGKILLed and
//! restarted once, then the same handler journaled and unjournaled in alternated rounds.
//!
//! `cargo run --release -p conclib-examples --example durable_workflows` prints
//! `RESULT workflows=1000 completed=1000 kills=.. redis_restarts=1 waited=500 signals_lost=0
//! reexecuted_committed=0 reexecuted_cut=..
//! max_cut_per_step=.. steps_per_s=.. plain_steps_per_s=.. step_overhead_p50_ms=..
//! step_overhead_p99_ms=.. ...`. It starts its own Redis and leaves nothing behind (the
//! members are killed or stopped and reaped by pid).

use conclib_examples::BoxError;
use conclib_examples::durable::{self, Options};

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("member") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(durable::member(&args[2..]));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let options = Options {
        member_program: std::env::current_exe()?,
        member_args: vec!["member".into()],
        member_env: Vec::new(),
        workflows: 1000,
        callers: 32,
        max_kills: 40,
        restart_redis: true,
        urns: 192,
        per_round: 40,
    };
    let outcome = rt.block_on(durable::run(&options))?;
    println!("{}", outcome.line());
    Ok(())
}
