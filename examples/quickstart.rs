//! Quickstart: an actor whose methods are its API, asked by method call, looked up by URN,
//! stopped.
//!
//! Run with `cargo run -p conclib-examples --example quickstart`.

use conclib::{ActorSystem, AskError, Context, StopReason, actor};
use std::time::Duration;

/// Not enough in the counter.
#[derive(Debug)]
struct Underflow {
    missing: u64,
}

#[actor(urn = "quickstart:counter")]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    /// Adds `n`; answers the new total. (`#[actor]` generates the message `Add { n }` and
    /// the method `add` of the trait `CounterApi`, for every ref to a `Counter`.)
    #[handle]
    fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }

    /// Takes `n`; fails if it would go below zero.
    #[handle]
    fn take(&mut self, n: u64) -> Result<u64, Underflow> {
        if n > self.total {
            return Err(Underflow {
                missing: n - self.total,
            });
        }
        self.total -= n;
        Ok(self.total)
    }

    /// Reads the counter.
    #[handle]
    async fn get(&mut self, ctx: &mut Context<Self>) -> u64 {
        println!(
            "{} asked for the total",
            ctx.urn().map_or("?", |u| u.as_str())
        );
        self.total
    }
}

#[tokio::main]
async fn main() {
    let system = ActorSystem::new("quickstart");

    // Spawn: the URN comes from #[actor(urn = ...)].
    let counter = system.spawn(Counter { total: 0 }).await.expect("spawn");
    println!("add 5 -> {}", counter.add(5).await.unwrap());

    // A handler's error reaches the asker, typed.
    match counter.take(8).await {
        Err(AskError::Handler(Underflow { missing })) => {
            println!("take 8 -> underflow, {missing} missing")
        }
        other => println!("take 8 -> {other:?}"),
    }

    // Anyone holding the URN can address the actor with the generated messages; checked
    // at run time.
    let by_urn = system.lookup("quickstart:counter").expect("lookup");
    println!(
        "by URN: get -> {}",
        by_urn
            .ask(Get)
            .timeout(Duration::from_secs(1))
            .await
            .unwrap()
    );

    // Stop it and watch it go: queued messages are handled first, then the URN is free.
    counter.add(1).tell().await.unwrap();
    counter.stop();
    let reason = counter.wait_for_stop().await;
    assert_eq!(reason, StopReason::Normal);
    println!(
        "stopped: {reason}; lookup now: {:?}",
        system.lookup("quickstart:counter").err()
    );
    assert!(matches!(counter.get().await, Err(AskError::ActorStopped)));

    system
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
}
