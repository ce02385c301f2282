//! Asks by URN against typed asks, to the same local actor, alternated in one run.
//!
//! `system.lookup(urn)` gives a `DynActorRef`; its asks travel as erased requests (the
//! message boxed, a reply cell, the answer boxed and downcast) where a typed ref's do not.
//! This measures what that costs: sequential asks from a task of a 2-worker runtime, typed,
//! by URN, and by URN with a message decoded at run time (`DynActorRef::erased`, what the
//! Redis proxy and a process actor's relay send), in turn, in rounds:
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml --no-default-features --bin dyn_ask
//! ```
//!
//! It prints each round, then `RESULT typed_ns=.. dyn_ns=.. ratio=.. erased_ns=..` (medians
//! of the rounds, nanoseconds an ask; `ratio` is by URN against typed). Arguments: asks a round (default 200,000), rounds (7).
use std::time::Instant;

use conclib::{ActorSystem, actor};

#[actor]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[handle(remote)]
    fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let asks: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    // Asked from a task of the runtime, as an actor or a server's handler would.
    let (typed, by_urn, erased) = runtime
        .block_on(runtime.spawn(async move {
            let system = ActorSystem::new("dyn-ask");
            let counter = system
                .build(Counter { total: 0 })
                .urn("counter")
                .spawn()
                .await
                .expect("spawned");
            let found = system.lookup("counter").expect("registered");
            let (mut typed, mut by_urn, mut erased) = (Vec::new(), Vec::new(), Vec::new());
            let add = found
                .remote_message(<Add as conclib::Message>::name())
                .expect("exposed");
            for round in 0..rounds {
                let start = Instant::now();
                for _ in 0..asks {
                    counter.ask(Add { n: 1 }).await.expect("answered");
                }
                typed.push(start.elapsed().as_nanos() as f64 / f64::from(asks));
                let start = Instant::now();
                for _ in 0..asks {
                    found.ask(Add { n: 1 }).await.expect("answered");
                }
                by_urn.push(start.elapsed().as_nanos() as f64 / f64::from(asks));
                let start = Instant::now();
                for _ in 0..asks {
                    found
                        .erased(add.name(), add.type_id(), Box::new(Add { n: 1 }))
                        .ask()
                        .await
                        .expect("answered");
                }
                erased.push(start.elapsed().as_nanos() as f64 / f64::from(asks));
                println!(
                    "round {round}: typed {:.0} ns, by URN {:.0} ns, erased {:.0} ns an ask",
                    typed[round], by_urn[round], erased[round]
                );
            }
            (median(typed), median(by_urn), median(erased))
        }))
        .expect("the bench task");
    println!(
        "RESULT typed_ns={typed:.0} dyn_ns={by_urn:.0} ratio={:.2} erased_ns={erased:.0}",
        by_urn / typed
    );
}
