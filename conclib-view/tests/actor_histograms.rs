//! Actors measured with the facade's Prometheus recorder installed (its buckets known to
//! the core, so an actor adds a batch's samples up per bucket): every message handled is
//! counted once in its counter and in both histograms, whether it came in a batch of one
//! (an ask at a time), in a batch of many, or in a batch that mixes message types. One
//! test in its own binary: the recorder is global to the process.
#![cfg(feature = "prometheus")]

use std::sync::Arc;

use conclib_core::{Actor, ActorSystem, Context, Handler, Message};
use tokio::sync::Notify;

struct Meter;
impl Actor for Meter {}

/// Messages the actor answers at once: `Ping` (asked, and told in batches), `Tick` (told)
/// and `Sync` (asked last; not counted here: its own batch is recorded after its answer).
macro_rules! answered_at_once {
    ($($name:ident),*) => {$(
        struct $name;
        impl Message for $name {
            type Response = ();
            type Error = std::convert::Infallible;
        }
        impl Handler<$name> for Meter {
            async fn handle(
                &mut self,
                _: $name,
                _: &mut Context<Self>,
            ) -> Result<(), std::convert::Infallible> {
                Ok(())
            }
        }
    )*};
}
answered_at_once!(Ping, Tick, Sync);

/// Holds the actor until the gate opens, so that what is sent meanwhile queues up.
struct Hold(Arc<Notify>, Arc<Notify>);
impl Message for Hold {
    type Response = ();
    type Error = std::convert::Infallible;
}
impl Handler<Hold> for Meter {
    async fn handle(
        &mut self,
        hold: Hold,
        _: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        hold.0.notify_one();
        hold.1.notified().await;
        Ok(())
    }
}

/// Holds the actor in a handler; what is sent until the returned gate opens queues up.
async fn hold(meter: &conclib_core::ActorRef<Meter>) -> Arc<Notify> {
    let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    meter
        .tell(Hold(started.clone(), gate.clone()))
        .await
        .expect("tell");
    started.notified().await;
    gate
}

/// The value of the sample `name{labels}` in the rendered text (0 if absent).
fn value(text: &str, name: &str, message: &str) -> f64 {
    let wanted = format!("message=\"{message}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&wanted))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_counted_once_in_every_batch_shape() {
    let handle = conclib_view::prometheus::install().expect("the recorder installs");
    let system = ActorSystem::new("histograms");
    let meter = system
        .build(Meter)
        .urn("meter")
        .spawn()
        .await
        .expect("spawn");

    // Batches of one: an ask at a time.
    for _ in 0..10 {
        meter.ask(Ping).await.expect("ask");
    }
    // Batches of many, mixing types: queued while the actor is held.
    for round in 0..3 {
        let gate = hold(&meter).await;
        for i in 0..50 {
            meter.tell(Tick).await.expect("tell");
            if i % (10 + round) == 0 {
                meter.tell(Ping).await.expect("tell");
            }
        }
        gate.notify_one();
    }
    // A batch whose first message is of another type than the rest.
    let gate = hold(&meter).await;
    meter.tell(Ping).await.expect("tell");
    for _ in 0..5 {
        meter.tell(Tick).await.expect("tell");
    }
    gate.notify_one();
    // An answer proves every message of the batches before recorded (its own batch is
    // recorded after it is sent): the second ask's, the first's batch.
    meter.ask(Sync).await.expect("ask");
    meter.ask(Sync).await.expect("ask");

    let pings = 10.0
        + (0..3)
            .map(|r| (0..50).filter(|i| i % (10 + r) == 0).count() as f64)
            .sum::<f64>()
        + 1.0;
    let ticks = 150.0 + 5.0;
    let text = handle.render();
    let ping = std::any::type_name::<Ping>();
    let tick = std::any::type_name::<Tick>();
    for (message, want) in [
        (ping, pings),
        (tick, ticks),
        (std::any::type_name::<Hold>(), 4.0),
    ] {
        assert_eq!(
            value(&text, "conclib_actor_messages_handled_total", message),
            want,
            "{message}\n{text}"
        );
        assert_eq!(
            value(&text, "conclib_actor_handling_seconds_count", message),
            want,
            "{message}\n{text}"
        );
        assert_eq!(
            value(&text, "conclib_actor_mailbox_seconds_count", message),
            want,
            "{message}\n{text}"
        );
    }
    meter.stop();
    meter.wait_for_stop().await;
}
