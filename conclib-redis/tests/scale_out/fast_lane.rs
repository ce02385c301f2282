//! Issue #63, head-of-line blocking: a group's `Priority::High` requests (and, with
//! `asks_overtake_tells`, its plain asks) go to the group's fast lane, which members read
//! beside its stream: they overtake a backlog of tells there. A plain ask keeps its place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_core::{
    Actor, ActorSystem, Context, ExposedMessage, Message, Priority, RequestEnvelope,
};
use conclib_redis::{ProxyClient, start_proxy};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::common::{config, eventually, plain_client};
use crate::groups::xpending;

wire_message! {
    /// A tell of the backlog.
    Tick(u64), "scale.BacklogTick", ()
}

wire_message! {
    /// How many tells the actor had handled when it handled this ask.
    Probe, "scale.Probe", u64
}

/// An actor that handles no tell until its gate opens, then each in about a millisecond.
struct Backlogged {
    gate: watch::Receiver<bool>,
    handled: Arc<AtomicU64>,
}

impl Actor for Backlogged {
    const REMOTE: &'static [ExposedMessage] =
        &[ExposedMessage::of::<Probe>(), ExposedMessage::of::<Tick>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _ctx: &mut Context<Self>) {
        let req = match req.extract::<Probe>() {
            Ok((Probe, r)) => return r.respond(Ok(self.handled.load(Ordering::SeqCst))),
            Err(req) => req,
        };
        match req.extract::<Tick>() {
            Ok((Tick(_), r)) => {
                let _ = self.gate.wait_for(|open| *open).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                self.handled.fetch_add(1, Ordering::SeqCst);
                r.respond(Ok(()))
            }
            Err(req) => req.reject(),
        }
    }
}

const BACKLOG: u64 = 5_000;

pub(crate) async fn a_high_priority_ask_overtakes_a_backlog_of_tells_in_a_groups_stream() {
    let mut config = config("fastlane");
    config.snapshot_interval = None;
    let (open, gate) = watch::channel(false);
    let handled = Arc::new(AtomicU64::new(0));
    let system = ActorSystem::new("busy");
    system
        .build(Backlogged {
            gate,
            handled: handled.clone(),
        })
        .urn("hol")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy.join("hol").await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let mut overtaking = config.clone();
    overtaking.asks_overtake_tells = true;
    let overtaking = ProxyClient::connect(&overtaking).await.unwrap();

    // The backlog: 5,000 tells taken by Redis, the actor held at the first one.
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(500) {
        let tells = chunk
            .iter()
            .map(|n| async { client.tell("hol", Tick(*n)).await });
        for told in futures_util::future::join_all(tells).await {
            told.unwrap();
        }
    }
    let ns = &config.namespace;
    let redis = plain_client(&config.url).await;
    let stream = format!("{ns}:sys:~hol:req");
    let fast = format!("{ns}:sys:~hol:req:hi");
    assert!(redis.xlen::<u64, _>(&stream).await.unwrap() >= BACKLOG - 100);

    let high = tokio::spawn({
        let client = client.clone();
        async move {
            let r = client.ask("hol", Probe).priority(Priority::High).await;
            (r.unwrap(), Instant::now())
        }
    });
    let plain_fast = tokio::spawn({
        let client = overtaking.clone();
        async move {
            let r = client
                .ask("hol", Probe)
                .timeout(Duration::from_secs(120))
                .await;
            (r.unwrap(), Instant::now())
        }
    });
    let plain = tokio::spawn({
        let client = client.clone();
        async move {
            // Behind the whole backlog: longer than the default timeout.
            let r = client
                .ask("hol", Probe)
                .timeout(Duration::from_secs(120))
                .await;
            (r.unwrap(), Instant::now())
        }
    });
    // Both fast asks read by the member (pending in the fast lane) before the gate opens.
    eventually(Duration::from_secs(20), "the fast asks read", || async {
        match xpending(&redis, &fast, &[]).await {
            Value::Array(summary) => summary.first().and_then(Value::as_u64) == Some(2),
            _ => false,
        }
    })
    .await;
    let opened = Instant::now();
    open.send_replace(true);
    let (high_at, high_done) = high.await.unwrap();
    let (fast_at, fast_done) = plain_fast.await.unwrap();
    let (plain_at, plain_done) = plain.await.unwrap();
    assert!(
        high_at < 100,
        "the high-priority ask waited for {high_at} of {BACKLOG} tells"
    );
    assert!(
        fast_at < 100,
        "the ask with asks_overtake_tells waited for {fast_at} of {BACKLOG} tells"
    );
    assert_eq!(
        plain_at, BACKLOG,
        "a plain ask keeps its place behind the tells"
    );
    println!(
        "RESULT fast_lane backlog={BACKLOG} high_ask_ms={} high_ask_after_tells={high_at} \
         overtaking_plain_ask_ms={} overtaking_after_tells={fast_at} plain_ask_ms={} \
         plain_after_tells={plain_at}",
        high_done.duration_since(opened).as_millis(),
        fast_done.duration_since(opened).as_millis(),
        plain_done.duration_since(opened).as_millis(),
    );
    proxy.shutdown().await.unwrap();
}
