//! Quickstart: define messages and an actor, ask it, look it up by URN, watch it stop.
//!
//! Run with `cargo run -p conclib-examples --example quickstart`.

use conclib::{ActorSystem, AskError, Context, StopReason, actor, message};
use std::time::Duration;

/// Adds to the counter; answered with the new total.
#[message(response = u64)]
struct Add(u64);

/// Takes from the counter; fails if it would go below zero.
#[message(response = u64, error = Underflow)]
struct Take(u64);

#[derive(Debug)]
struct Underflow {
    missing: u64,
}

/// Reads the counter.
#[message(response = u64)]
struct Get;

#[actor(urn = "quickstart:counter")]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, Add(n): Add) -> u64 {
        self.total += n;
        self.total
    }

    #[handle]
    fn take(&mut self, Take(n): Take) -> Result<u64, Underflow> {
        if n > self.total {
            return Err(Underflow {
                missing: n - self.total,
            });
        }
        self.total -= n;
        Ok(self.total)
    }

    #[handle]
    async fn get(&mut self, _: Get, ctx: &mut Context<Self>) -> u64 {
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
    println!("add 5 -> {}", counter.ask(Add(5)).await.unwrap());

    // A handler's error reaches the asker, typed.
    match counter.ask(Take(8)).await {
        Err(AskError::Handler(Underflow { missing })) => {
            println!("take 8 -> underflow, {missing} missing")
        }
        other => println!("take 8 -> {other:?}"),
    }

    // Anyone holding the URN can address the actor; the message is checked at run time.
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
    counter.tell(Add(1)).await.unwrap();
    counter.stop();
    let reason = counter.wait_for_stop().await;
    assert_eq!(reason, StopReason::Normal);
    println!(
        "stopped: {reason}; lookup now: {:?}",
        system.lookup("quickstart:counter").err()
    );
    assert!(matches!(
        counter.ask(Get).await,
        Err(AskError::ActorStopped)
    ));

    system
        .shutdown(Duration::from_secs(5))
        .await
        .expect("shutdown");
}
