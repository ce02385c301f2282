//! Topics on a real redis-server: live and durable publish/subscribe from a
//! system and a client, into streams and actors; ordering per publisher; a durable
//! subscriber process SIGKILLed and started again resumes with nothing lost; a slow live
//! subscriber stays bounded, its drops counted; on a Redis Cluster, live topics are sharded
//! pub/sub.
mod common;
#[path = "common/servers.rs"]
mod servers;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib_core::{Actor, ActorSystem, Context, Handler, Message};
use conclib_redis::{
    ProxyClient, ProxyConfig, start_proxy,
    topics::{Topic, TopicError},
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Tick {
    from: u32,
    seq: u64,
}

impl Message for Tick {
    type Response = ();
    type Error = Infallible;
    fn name() -> &'static str {
        "Tick"
    }
}

fn main() {
    if std::env::var_os("TOPICS_SUBSCRIBER").is_some() {
        subscriber_process();
    }
    conclib_testkit::run(conclib_testkit::tests![
        live_events_arrive_in_order_per_publisher,
        a_slow_live_subscriber_stays_bounded_and_counts_its_drops,
        durable_groups_each_get_every_event_in_order,
        a_sigkilled_durable_subscriber_resumes_with_nothing_lost,
        actors_receive_live_and_durable_events,
        bad_names_large_events_and_foreign_events_are_typed_errors,
        a_live_pattern_receives_the_topics_it_matches,
        a_gone_subscribers_events_are_claimed_and_its_name_forgotten,
        live_topics_on_a_redis_cluster_use_sharded_pub_sub,
        a_live_subscription_gets_the_first_event_after_it_returns,
        a_slow_actor_holds_its_mailbox_and_buffer_and_the_rest_is_dropped_and_counted,
    ]);
}

/// Waits for the next event, at most 10 s.
async fn next<E: serde::de::DeserializeOwned>(
    sub: &mut conclib_redis::topics::Subscription<E>,
) -> Result<E, TopicError> {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("an event within 10 s")
        .expect("the subscription goes on")
}

/// Takes `n` events, checking that each publisher's come in order; returns them.
async fn take_in_order(sub: &mut conclib_redis::topics::Subscription<Tick>, n: usize) -> Vec<Tick> {
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let tick = next(sub).await.expect("an event, not an error");
        if let Some(before) = last.insert(tick.from, tick.seq) {
            assert!(tick.seq > before, "{tick:?} after seq {before}");
        }
        got.push(tick);
    }
    got
}

async fn publish_all(topics: conclib_redis::topics::Topics, topic: Topic, from: u32, n: u64) {
    for seq in 0..n {
        topics.publish(&topic, &Tick { from, seq }).await.unwrap();
    }
}

async fn live_events_arrive_in_order_per_publisher() {
    let config = common::config("live-order");
    let system = ActorSystem::new("publisher");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let topic = Topic::live("ticks").unwrap();
    let mut sub = client
        .subscribe::<Tick>(&topic)
        .buffer(100_000)
        .await
        .unwrap();
    let n = 3000;
    let a = tokio::spawn(publish_all(proxy.topics(), topic.clone(), 0, n));
    let b = tokio::spawn(publish_all(client.topics(), topic.clone(), 1, n));
    let got = take_in_order(&mut sub, 2 * n as usize).await;
    a.await.unwrap();
    b.await.unwrap();
    let distinct: HashSet<Tick> = got.into_iter().collect();
    assert_eq!(distinct.len(), 2 * n as usize);
    assert_eq!(sub.stats().dropped, 0);
    assert_eq!(proxy.topics().stats().published, n);
    assert_eq!(client.topics().stats().published, n);
    // The system's snapshot carries its topics' counters.
    proxy.publish_snapshot().await.unwrap();
    let reader = conclib_redis::snapshots::SnapshotReader::connect(&config)
        .await
        .unwrap();
    let systems = reader.systems().await.unwrap();
    let published = systems.iter().find(|s| s.system_id == "publisher").unwrap();
    assert_eq!(published.topics.unwrap().published, n);
    proxy.shutdown().await.unwrap();
}

async fn a_slow_live_subscriber_stays_bounded_and_counts_its_drops() {
    let config = common::config("live-slow");
    let client = ProxyClient::connect(&config).await.unwrap();
    let topic = Topic::live("firehose").unwrap();
    let buffer = 16;
    let mut sub = client
        .subscribe::<Tick>(&topic)
        .buffer(buffer)
        .await
        .unwrap();
    // Eight publishers, nobody reading.
    let n: u64 = 2_500;
    let publishers: Vec<_> = (0..8)
        .map(|from| tokio::spawn(publish_all(client.topics(), topic.clone(), from, n)))
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let total = 8 * n;
    conclib_testkit::eventually(Duration::from_secs(10), "every event received", || async {
        sub.stats().received == total
    })
    .await;
    let stats = sub.stats();
    assert_eq!(stats.buffered, buffer as u64, "{stats:?}");
    assert_eq!(stats.dropped, total - buffer as u64, "{stats:?}");
    // Redis keeps nothing for the subscriber: it reads all the time.
    let redis = common::raw_client(&config).await;
    let clients = common::raw(
        &redis,
        vec![
            common::v("CLIENT"),
            common::v("LIST"),
            common::v("TYPE"),
            common::v("pubsub"),
        ],
    )
    .await
    .unwrap();
    let clients = clients.as_string().unwrap();
    for line in clients.lines() {
        let omem: u64 = line
            .split(' ')
            .find_map(|f| f.strip_prefix("omem="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(omem, 0, "{line}");
    }
    // The consumer hears of the drops first, then gets what was kept, in order.
    assert_eq!(
        next(&mut sub).await,
        Err(TopicError::Lagged {
            missed: total - buffer as u64
        })
    );
    let kept = take_in_order(&mut sub, buffer).await;
    assert_eq!(kept.len(), buffer);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err()
    );
    let stats = client.topics().stats();
    assert_eq!(
        (stats.published, stats.dropped),
        (total, total - buffer as u64)
    );
}

async fn durable_groups_each_get_every_event_in_order() {
    let config = common::config("durable-groups");
    let system = ActorSystem::new("publisher");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let topic = Topic::durable("orders").unwrap();
    let mut billing = client
        .subscribe::<Tick>(&topic)
        .group("billing")
        .await
        .unwrap();
    let mut shipping = client
        .subscribe::<Tick>(&topic)
        .group("shipping")
        .buffer(8)
        .await
        .unwrap();
    let n = 3000;
    let a = tokio::spawn(publish_all(proxy.topics(), topic.clone(), 0, n));
    let b = tokio::spawn(publish_all(client.topics(), topic.clone(), 1, n));
    for sub in [&mut billing, &mut shipping] {
        let got = take_in_order(sub, 2 * n as usize).await;
        let distinct: HashSet<Tick> = got.into_iter().collect();
        assert_eq!(distinct.len(), 2 * n as usize);
        assert_eq!(sub.stats().redelivered, 0);
    }
    a.await.unwrap();
    b.await.unwrap();
    // A group that starts late reads everything retained with `from_start`.
    let mut audit = client
        .subscribe::<Tick>(&topic)
        .group("audit")
        .from_start()
        .await
        .unwrap();
    assert_eq!(
        take_in_order(&mut audit, 2 * n as usize).await.len(),
        2 * n as usize
    );
    // A group that has not read yet lags by what was published; one that read all, by none.
    let mut late = client
        .subscribe::<Tick>(&topic)
        .group("late")
        .from_start()
        .buffer(8)
        .await
        .unwrap();
    assert_eq!(billing.lag().await.unwrap(), Some(0));
    let lag = late.lag().await.unwrap().unwrap();
    assert!(lag >= 2 * n - 64, "lag {lag}");
    // The client's stats sample the groups' lag (every snapshot interval): the late one's.
    conclib_testkit::eventually(
        Duration::from_secs(15),
        "the stats show the late group's lag",
        || async { client.topics().stats().lag >= 2 * n - 64 },
    )
    .await;
    take_in_order(&mut late, 2 * n as usize).await;
    assert_eq!(late.lag().await.unwrap(), Some(0));
    conclib_testkit::eventually(Duration::from_secs(15), "the stats show no lag", || async {
        client.topics().stats().lag == 0
    })
    .await;
    late.close().await;
    billing.close().await;
    shipping.close().await;
    audit.close().await;
    // Everything the groups took is acknowledged.
    let redis = common::raw_client(&config).await;
    let key = format!("{}:topic:{{orders}}:log", config.namespace);
    for group in ["billing", "shipping", "audit"] {
        let pending = common::raw(
            &redis,
            vec![common::v("XPENDING"), common::v(&key), common::v(group)],
        )
        .await
        .unwrap();
        let count = match pending {
            fred::prelude::Value::Array(parts) => parts[0].as_u64().unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(count, 0, "{group}");
    }
    proxy.shutdown().await.unwrap();
}

/// The subscriber process: prints `ready`, then `e <from> <seq>` for each event.
fn subscriber_process() -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let var = |name: &str| std::env::var(name).unwrap();
        let config = ProxyConfig::new(var("TOPICS_URL")).with_namespace(var("TOPICS_NS"));
        let client = ProxyClient::connect(&config).await.unwrap();
        let topic = Topic::durable(var("TOPICS_SUBSCRIBER")).unwrap();
        let mut sub = client
            .subscribe::<Tick>(&topic)
            .group("g")
            .consumer("worker-1")
            .buffer(64)
            .await
            .unwrap();
        println!("ready");
        loop {
            // Quiet for 3 s: say where the subscription stands (on stderr, for a failure).
            let Ok(event) = tokio::time::timeout(Duration::from_secs(3), sub.next()).await else {
                eprintln!("subscriber: no event for 3 s; {:?}", sub.stats());
                continue;
            };
            let Some(event) = event else { break };
            let tick = event.unwrap();
            println!("e {} {}", tick.from, tick.seq);
        }
    });
    std::process::exit(0);
}

struct SubscriberProcess {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl SubscriberProcess {
    async fn start(config: &ProxyConfig, topic: &str) -> SubscriberProcess {
        let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
        command
            .env("TOPICS_SUBSCRIBER", topic)
            .env("TOPICS_URL", &config.url)
            .env("TOPICS_NS", &config.namespace)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the subscriber starts within 10 s")
            .unwrap();
        assert_eq!(ready.as_deref(), Some("ready"));
        SubscriberProcess { child, lines }
    }

    async fn next(&mut self) -> Tick {
        // Generous: two debug-built processes on a machine shared with other builds.
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("the subscriber runs");
        let mut words = line.split(' ').skip(1);
        Tick {
            from: words.next().unwrap().parse().unwrap(),
            seq: words.next().unwrap().parse().unwrap(),
        }
    }
}

async fn a_sigkilled_durable_subscriber_resumes_with_nothing_lost() {
    let config = common::config("durable-kill");
    let system = ActorSystem::new("publisher");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let topic = Topic::durable("jobs").unwrap();
    let mut first = SubscriberProcess::start(&config, "jobs").await;
    let n = 5000;
    let a = tokio::spawn(publish_all(proxy.topics(), topic.clone(), 0, n));
    let b = tokio::spawn(publish_all(client.topics(), topic.clone(), 1, n));
    let mut seen: HashSet<Tick> = HashSet::new();
    for _ in 0..2000 {
        seen.insert(first.next().await);
    }
    // SIGKILL mid-stream: nothing is flushed, nothing acknowledged on the way out.
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    // What it handled (printed) before it died counts, read or not yet read here.
    while let Ok(Some(line)) = first.lines.next_line().await {
        if line.starts_with("e ") {
            let mut words = line.split(' ').skip(1);
            seen.insert(Tick {
                from: words.next().unwrap().parse().unwrap(),
                seq: words.next().unwrap().parse().unwrap(),
            });
        }
    }
    let mut second = SubscriberProcess::start(&config, "jobs").await;
    let mut duplicates = 0;
    let mut last: HashMap<u32, u64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    while seen.len() < 2 * n as usize {
        assert!(
            Instant::now() < deadline,
            "{} of {} events",
            seen.len(),
            2 * n
        );
        let tick = second.next().await;
        if let Some(before) = last.insert(tick.from, tick.seq) {
            assert!(tick.seq > before, "{tick:?} after {before}");
        }
        if !seen.insert(tick) {
            duplicates += 1;
        }
    }
    a.await.unwrap();
    b.await.unwrap();
    // Duplicates: at most what the first process had taken and not finished.
    assert!(duplicates <= 64 + 256 + 1, "{duplicates} duplicates");
    println!(
        "durable resume: {} events, {duplicates} received twice",
        2 * n
    );
    second.child.start_kill().unwrap();
    second.child.wait().await.unwrap();
    proxy.shutdown().await.unwrap();
}

/// Records the events it handles.
struct Collector(Arc<Mutex<Vec<Tick>>>);
impl Actor for Collector {}
impl Handler<Tick> for Collector {
    async fn handle(&mut self, tick: Tick, _: &mut Context<Self>) -> Result<(), Infallible> {
        self.0.lock().unwrap().push(tick);
        Ok(())
    }
}

async fn actors_receive_live_and_durable_events() {
    let config = common::config("actors");
    let system = ActorSystem::new("subscribers");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let (live_log, durable_log) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let live_actor = system
        .build(Collector(live_log.clone()))
        .spawn()
        .await
        .unwrap();
    let durable_actor = system
        .build(Collector(durable_log.clone()))
        .spawn()
        .await
        .unwrap();
    let live = Topic::live("actor-live").unwrap();
    let durable = Topic::durable("actor-durable").unwrap();
    let live_feed = proxy
        .topics()
        .subscribe::<Tick>(&live)
        .buffer(10_000)
        .to_actor(live_actor.recipient())
        .await
        .unwrap();
    let durable_feed = proxy
        .topics()
        .subscribe_actor(&durable, durable_actor.recipient::<Tick>())
        .await
        .unwrap();
    let n = 500;
    publish_all(client.topics(), live.clone(), 7, n).await;
    publish_all(client.topics(), durable.clone(), 8, n).await;
    for (log, from) in [(&live_log, 7), (&durable_log, 8)] {
        conclib_testkit::eventually(
            Duration::from_secs(10),
            "the actor handled every event",
            || async { log.lock().unwrap().len() == n as usize },
        )
        .await;
        let seqs: Vec<u64> = log
            .lock()
            .unwrap()
            .iter()
            .map(|t| {
                assert_eq!(t.from, from);
                t.seq
            })
            .collect();
        assert_eq!(seqs, (0..n).collect::<Vec<_>>());
    }
    // Counted once the ask is answered, which comes after the handler's record above.
    conclib_testkit::eventually(
        Duration::from_secs(5),
        "the feed counted every event handed",
        || async { durable_feed.handed() == n },
    )
    .await;
    assert!(live_feed.is_running() && durable_feed.is_running());
    // The actor stops: its subscription ends.
    durable_actor.stop();
    conclib_testkit::eventually(
        Duration::from_secs(5),
        "the feed ends with its actor",
        || async {
            client
                .publish(&durable, &Tick { from: 8, seq: n })
                .await
                .unwrap();
            !durable_feed.is_running()
        },
    )
    .await;
    drop(live_feed);
    proxy.shutdown().await.unwrap();
}

async fn bad_names_large_events_and_foreign_events_are_typed_errors() {
    assert!(matches!(
        Topic::live("two words"),
        Err(TopicError::InvalidName(_))
    ));
    assert!(matches!(
        Topic::durable("a{b}"),
        Err(TopicError::InvalidName(_))
    ));
    let config = common::config("errors").with_max_payload(64);
    let client = ProxyClient::connect(&config).await.unwrap();
    let topic = Topic::durable("mixed").unwrap();
    assert!(matches!(
        client.subscribe::<Tick>(&topic).group("bad group").await,
        Err(TopicError::InvalidName(_))
    ));
    let mut sub = client.subscribe::<Tick>(&topic).await.unwrap();
    assert!(matches!(
        client.publish(&topic, &vec![7u8; 100]).await,
        Err(TopicError::TooLarge(_))
    ));
    client
        .publish(&topic, &"not a tick".to_owned())
        .await
        .unwrap();
    client
        .publish(&topic, &Tick { from: 1, seq: 2 })
        .await
        .unwrap();
    assert!(matches!(next(&mut sub).await, Err(TopicError::Codec(_))));
    assert_eq!(next(&mut sub).await, Ok(Tick { from: 1, seq: 2 }));
    assert_eq!(sub.stats().undecodable, 1);
    let stats = client.topics().stats();
    assert_eq!((stats.published, stats.publish_failures), (2, 1));
}

async fn a_live_pattern_receives_the_topics_it_matches() {
    let config = common::config("pattern");
    let client = ProxyClient::connect(&config).await.unwrap();
    let orders = Topic::live_pattern("orders.*").unwrap();
    let mut sub = client.subscribe::<Tick>(&orders).await.unwrap();
    for (name, from) in [("orders.placed", 1), ("users.new", 2), ("orders.paid", 3)] {
        let topic = Topic::live(name).unwrap();
        client
            .publish(&topic, &Tick { from, seq: 0 })
            .await
            .unwrap();
    }
    assert_eq!(next(&mut sub).await, Ok(Tick { from: 1, seq: 0 }));
    assert_eq!(next(&mut sub).await, Ok(Tick { from: 3, seq: 0 }));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err()
    );
    assert!(matches!(
        client.publish(&orders, &Tick { from: 0, seq: 0 }).await,
        Err(TopicError::InvalidName(_))
    ));
}

async fn a_gone_subscribers_events_are_claimed_and_its_name_forgotten() {
    let config = common::config("claim");
    let client = ProxyClient::connect(&config).await.unwrap();
    let topic = Topic::durable("claimed").unwrap();
    let mut a = client
        .subscribe::<Tick>(&topic)
        .group("g")
        .consumer("a")
        .buffer(4)
        .await
        .unwrap();
    publish_all(client.topics(), topic.clone(), 0, 20).await;
    let mut seen: HashSet<Tick> = HashSet::new();
    for _ in 0..2 {
        seen.insert(next(&mut a).await.unwrap());
    }
    // Gone without a word: what it took and did not finish stays pending on `a`.
    drop(a);
    let mut b = client
        .subscribe::<Tick>(&topic)
        .group("g")
        .consumer("b")
        .claim_idle(Duration::from_millis(300))
        .await
        .unwrap();
    while seen.len() < 20 {
        seen.insert(next(&mut b).await.unwrap());
    }
    assert!(b.stats().redelivered >= 1, "{:?}", b.stats());
    // `a` holds nothing any more and is forgotten (after 5 s without a word) by `b`, which
    // does it as it reads (a durable subscription talks to Redis while it is asked for
    // events).
    let reading = tokio::spawn(async move {
        let _ = b.next().await;
        b
    });
    let redis = common::raw_client(&config).await;
    let key = format!("{}:topic:{{claimed}}:log", config.namespace);
    conclib_testkit::eventually(Duration::from_secs(15), "only `b` is left", || async {
        let consumers = common::raw(
            &redis,
            vec![
                common::v("XINFO"),
                common::v("CONSUMERS"),
                common::v(&key),
                common::v("g"),
            ],
        )
        .await
        .unwrap();
        matches!(consumers, fred::prelude::Value::Array(list) if list.len() == 1)
    })
    .await;
    publish_all(client.topics(), topic.clone(), 20, 1).await;
    let b = tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .expect("`b` receives the next event")
        .unwrap();
    b.close().await;
}

/// On a Redis Cluster of 3 primaries, live topics are sharded pub/sub: each topic's channel
/// is subscribed (`SSUBSCRIBE`) on the node of its slot and published to there
/// (`SPUBLISH`); topics on every node each deliver every event in order, to subscribers of a
/// client and of a system; a durable topic works there too; patterns are refused (a typed
/// error).
async fn live_topics_on_a_redis_cluster_use_sharded_pub_sub() {
    let cluster = servers::start_cluster(3).await;
    let ns = "topics-cluster";
    let mut config = ProxyConfig::new(cluster.url()).with_namespace(ns);
    config.connect_timeout = Duration::from_secs(10);
    let channel = |name: &str| format!("{ns}:topic:{{{name}}}:live");
    // One topic on each node.
    let mut names: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        let name = format!("shard.{i}");
        let node = cluster.node_of_key(&channel(&name));
        names[node].get_or_insert(name);
        if names.iter().all(Option::is_some) {
            break;
        }
    }
    let names: Vec<String> = names.into_iter().map(Option::unwrap).collect();
    let system = ActorSystem::new("cluster-publisher");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let mut subs = Vec::new();
    for name in &names {
        let topic = Topic::live(name).unwrap();
        let from_client = client
            .subscribe::<Tick>(&topic)
            .buffer(10_000)
            .await
            .unwrap();
        let from_system = proxy
            .topics()
            .subscribe::<Tick>(&topic)
            .buffer(10_000)
            .await
            .unwrap();
        subs.push((topic, from_client, from_system));
    }
    // Subscribed on the node of the channel's slot, sharded, and nowhere else.
    for (node, name) in names.iter().enumerate() {
        for (i, server) in cluster.nodes.iter().enumerate() {
            let words = ["PUBSUB", "SHARDNUMSUB", &channel(name)];
            let out = servers::cli(server.port, &servers::args(&words))
                .await
                .unwrap();
            let count: u64 = out.lines().last().unwrap().trim().parse().unwrap();
            assert_eq!(count, if i == node { 2 } else { 0 }, "{name} on node {i}");
            let words = ["PUBSUB", "NUMSUB", &channel(name)];
            let out = servers::cli(server.port, &servers::args(&words))
                .await
                .unwrap();
            assert_eq!(
                out.lines().last().unwrap().trim(),
                "0",
                "{name} on node {i}"
            );
        }
    }
    let n = 500;
    let publishers: Vec<_> = subs
        .iter()
        .enumerate()
        .flat_map(|(i, (topic, _, _))| {
            let from = 2 * i as u32;
            [
                tokio::spawn(publish_all(proxy.topics(), topic.clone(), from, n)),
                tokio::spawn(publish_all(client.topics(), topic.clone(), from + 1, n)),
            ]
        })
        .collect();
    for (i, (_, from_client, from_system)) in subs.iter_mut().enumerate() {
        for sub in [from_client, from_system] {
            let got = take_in_order(sub, 2 * n as usize).await;
            assert!(got.iter().all(|t| t.from / 2 == i as u32), "{i}");
            let distinct: HashSet<Tick> = got.into_iter().collect();
            assert_eq!(distinct.len(), 2 * n as usize);
            assert_eq!(sub.stats().dropped, 0);
        }
    }
    for p in publishers {
        p.await.unwrap();
    }
    // A durable topic: its stream on the node of its slot, read in order.
    let durable = Topic::durable(&names[1]).unwrap();
    let mut group = client
        .subscribe::<Tick>(&durable)
        .group("billing")
        .await
        .unwrap();
    publish_all(proxy.topics(), durable, 9, n).await;
    assert_eq!(
        take_in_order(&mut group, n as usize).await.len(),
        n as usize
    );
    group.close().await;
    // Patterns have no sharded form.
    let pattern = Topic::live_pattern("shard.*").unwrap();
    assert!(matches!(
        client.subscribe::<Tick>(&pattern).await,
        Err(TopicError::Config(_))
    ));
    drop(subs);
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// A live subscription receives the first event published once it returned (fred answers
/// `SUBSCRIBE` before writing it: one subscription in a few hundred used to miss its first
/// event), and counts no re-subscription for its first connection.
async fn a_live_subscription_gets_the_first_event_after_it_returns() {
    let config = common::config("first");
    let system = ActorSystem::new("publisher");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    for round in 0..100 {
        let topic = Topic::live(format!("first.{round}")).unwrap();
        let mut a = client.subscribe::<Tick>(&topic).await.unwrap();
        let mut b = client.subscribe::<Tick>(&topic).await.unwrap();
        for seq in 0..2 {
            let tick = Tick { from: 0, seq };
            proxy.topics().publish(&topic, &tick).await.unwrap();
        }
        for sub in [&mut a, &mut b] {
            assert_eq!(
                next(sub).await,
                Ok(Tick { from: 0, seq: 0 }),
                "round {round}"
            );
            assert_eq!(sub.stats().resubscribes, 0, "round {round}");
        }
    }
    proxy.shutdown().await.unwrap();
}

/// Handles each event once it is let through its gate.
struct Gated {
    gate: Arc<tokio::sync::Semaphore>,
    log: Arc<Mutex<Vec<Tick>>>,
}
impl Actor for Gated {}
impl Handler<Tick> for Gated {
    async fn handle(&mut self, tick: Tick, _: &mut Context<Self>) -> Result<(), Infallible> {
        self.gate.acquire().await.unwrap().forget();
        self.log.lock().unwrap().push(tick);
        Ok(())
    }
}

/// A live topic into an actor that does not keep up: its mailbox (8) fills, the forwarding
/// waits (back-pressure), the subscription's buffer (16) fills, and every other event is
/// dropped and counted; once the actor goes on, it gets what was kept, in order, then new
/// events again.
async fn a_slow_actor_holds_its_mailbox_and_buffer_and_the_rest_is_dropped_and_counted() {
    let config = common::config("slow-actor");
    let system = ActorSystem::new("slow");
    let proxy = start_proxy(&system, &config).await.unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let actor = system
        .build(Gated {
            gate: gate.clone(),
            log: log.clone(),
        })
        .mailbox(conclib_core::MailboxConfig::Bounded(8))
        .spawn()
        .await
        .unwrap();
    let topic = Topic::live("slow-actor").unwrap();
    // A Topics of its own: its stats are this subscription's.
    let subscriber = ProxyClient::connect(&config).await.unwrap();
    let feed = subscriber
        .topics()
        .subscribe::<Tick>(&topic)
        .buffer(16)
        .to_actor(actor.recipient())
        .await
        .unwrap();
    let total = 5_000;
    publish_all(proxy.topics(), topic.clone(), 0, total).await;
    conclib_testkit::eventually(Duration::from_secs(10), "every event received", || async {
        subscriber.topics().stats().received == total
    })
    .await;
    // Held: at most the buffer, and what the forwarding took (the mailbox, the event being
    // handled, the one waiting for room); the rest dropped, counted.
    let stats = subscriber.topics().stats();
    assert!(stats.buffered <= 16, "{stats:?}");
    assert!(stats.delivered <= 8 + 2, "{stats:?}");
    assert!(stats.dropped >= total - 16 - (8 + 2), "{stats:?}");
    gate.add_permits(usize::MAX >> 4);
    conclib_testkit::eventually(
        Duration::from_secs(10),
        "every event handled or dropped",
        || async {
            log.lock().unwrap().len() as u64 + subscriber.topics().stats().dropped == total
        },
    )
    .await;
    let kept = log.lock().unwrap().len() as u64;
    assert!(kept <= 16 + 8 + 2, "{kept}");
    let stats = subscriber.topics().stats();
    let seqs: Vec<u64> = log.lock().unwrap().iter().map(|t| t.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Caught up: new events go through again (one at a time: a burst would find the small
    // buffer full again), none dropped.
    for seq in 0..20 {
        let tick = Tick { from: 1, seq };
        proxy.topics().publish(&topic, &tick).await.unwrap();
        conclib_testkit::eventually(Duration::from_secs(10), "the event handled", || async {
            log.lock().unwrap().last() == Some(&tick)
        })
        .await;
    }
    assert_eq!(subscriber.topics().stats().dropped, stats.dropped);
    conclib_testkit::eventually(Duration::from_secs(10), "the feed counts them", || async {
        feed.handed() == kept + 20
    })
    .await;
    drop(feed);
    proxy.shutdown().await.unwrap();
}
