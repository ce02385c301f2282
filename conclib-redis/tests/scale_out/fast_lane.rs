//! Head-of-line blocking: a group's `Priority::High` requests (and, with
//! `asks_overtake_tells`, its plain asks) go to the group's fast lane, which members read
//! beside its stream: they overtake a backlog of tells there. A plain ask keeps its place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_core::{
    Actor, ActorSystem, Context, ExposedMessage, Message, Priority, RequestEnvelope,
};
use conclib_redis::{
    ProxyClient, ProxyConfig,
    scale::{Activation, StoreError},
    start_proxy,
};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::common::{config, eventually, plain_client};

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
    overtake(&config, "hol", "~hol", open, "group").await;
    proxy.shutdown().await.unwrap();
}

/// The same through a URN pattern's group: the request activates `hol:1` on the member.
pub(crate) async fn a_high_priority_ask_overtakes_a_backlog_of_tells_in_a_patterns_stream() {
    let mut config = config("fastpattern");
    config.snapshot_interval = None;
    let (open, gate) = watch::channel(false);
    let system = ActorSystem::new("busy");
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy
        .activate("hol:{id}", move |_a: Activation| {
            let gate = gate.clone();
            async move {
                Ok::<_, StoreError>(Backlogged {
                    gate,
                    handled: Arc::default(),
                })
            }
        })
        .await
        .unwrap();
    overtake(&config, "hol:1", "~hol:*", open, "pattern").await;
    proxy.shutdown().await.unwrap();
}

/// Queues 5,000 tells to `urn` (served through group `group`) while its actor is held at
/// the first, then three asks: `Priority::High`, plain from a client with
/// `asks_overtake_tells`, plain. Opens the gate once the member has read the first two
/// from the fast lane, and checks how many tells each answer came after.
async fn overtake(
    config: &ProxyConfig,
    urn: &'static str,
    group: &str,
    open: watch::Sender<bool>,
    what: &str,
) {
    let client = ProxyClient::connect(config).await.unwrap();
    let mut overtaking = config.clone();
    overtaking.asks_overtake_tells = true;
    let overtaking = ProxyClient::connect(&overtaking).await.unwrap();

    // The backlog: 5,000 tells taken by Redis, the actor held at the first one.
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(500) {
        let tells = chunk
            .iter()
            .map(|n| async { client.tell(urn, Tick(*n)).await });
        for told in futures_util::future::join_all(tells).await {
            told.unwrap();
        }
    }
    let ns = &config.namespace;
    let redis = plain_client(&config.url).await;
    let stream = format!("{ns}:sys:{group}:req");
    let fast = format!("{ns}:sys:{group}:req:hi");
    assert!(redis.xlen::<u64, _>(&stream).await.unwrap() >= BACKLOG - 100);

    // Behind the whole backlog a plain ask waits longer than the default timeout.
    let long = Duration::from_secs(120);
    let high = tokio::spawn({
        let client = client.clone();
        async move {
            let r = client.ask(urn, Probe).priority(Priority::High).await;
            (r.unwrap(), Instant::now())
        }
    });
    let plain_fast = tokio::spawn({
        let client = overtaking.clone();
        async move { (client.ask(urn, Probe).await.unwrap(), Instant::now()) }
    });
    let plain = tokio::spawn({
        let client = client.clone();
        async move {
            let r = client.ask(urn, Probe).timeout(long).await;
            (r.unwrap(), Instant::now())
        }
    });
    // Both fast asks read before the gate opens: from the fast lane, or (the plain one of a
    // client that resolved the URN after its activation, which names the holder system) from
    // the holder's own stream, which a proxy reads up to `max_in_flight` requests deep.
    let own = format!("{ns}:sys:busy:req");
    eventually(Duration::from_secs(20), "the fast asks read", || async {
        let mut read = 0;
        for key in [&fast, &own] {
            let groups: Vec<Vec<Value>> = redis.xinfo_groups(key).await.unwrap_or_default();
            for g in &groups {
                for kv in g.chunks(2) {
                    if kv[0].as_str().as_deref() == Some("entries-read") {
                        read += kv[1].as_u64().unwrap_or(0);
                    }
                }
            }
        }
        read >= 2
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
        "RESULT fast_lane {what} backlog={BACKLOG} high_ask_ms={} high_ask_after_tells={high_at} \
         overtaking_plain_ask_ms={} overtaking_after_tells={fast_at} plain_ask_ms={} \
         plain_after_tells={plain_at}",
        high_done.duration_since(opened).as_millis(),
        fast_done.duration_since(opened).as_millis(),
        plain_done.duration_since(opened).as_millis(),
    );
    client.shutdown().await;
    overtaking.shutdown().await;
}

/// A group whose members read no fast lane (an earlier version): a high-priority request
/// finds no stream there and goes to the group's stream.
pub(crate) async fn a_high_priority_tell_to_a_group_without_a_fast_lane_goes_to_its_stream() {
    let config = config("nofastlane");
    let ns = &config.namespace;
    let redis = plain_client(&config.url).await;
    // The group as an older member leaves it: its URN key and stream, no fast lane.
    let _: () = redis
        .set(
            format!("{ns}:urn:old"),
            "~old",
            Some(Expiration::EX(60)),
            None,
            false,
        )
        .await
        .unwrap();
    let stream = format!("{ns}:sys:~old:req");
    let _: () = redis
        .xgroup_create(&stream, conclib_redis::protocol::CONSUMER_GROUP, "0", true)
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    client
        .tell("old", Tick(1))
        .priority(Priority::High)
        .await
        .unwrap();
    client
        .tell("old", Tick(2))
        .priority(Priority::High)
        .await
        .unwrap();
    assert_eq!(redis.xlen::<u64, _>(&stream).await.unwrap(), 2);
    let fast = format!("{ns}:sys:~old:req:hi");
    assert!(!redis.exists::<bool, _>(&fast).await.unwrap());
    client.shutdown().await;
}
