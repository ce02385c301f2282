//! Benchmark of topics against raw Redis programs with no library but fred.
//!
//! ```text
//! cargo run --release -p conclib-redis --example topics_bench [-- --events 20000 --samples 1000 --rounds 5]
//! ```
//!
//! Starts a private redis-server and measures, for each delivery mode (live: `PUBLISH` /
//! `SUBSCRIBE`; durable: `XADD` / `XREADGROUP` with a consumer group per subscriber) and for 1
//! and 10 subscribers, in this one process:
//! - throughput: `--events` events published by 16 tasks at once; events/s published (until
//!   the last publish returned) and delivered (until every subscriber had every event, or a
//!   live one had dropped the rest: drops are reported);
//! - latency: `--samples` events published one at a time, each once every subscriber had the
//!   one before; p50 and p99 from publish to receipt;
//!
//! both through conclib's `Topics` and `Subscription`s and through a raw fred program doing
//! the same commands on as many connections (one for publishing, one per subscriber; typed
//! `PUBLISH`/`XADD`, which fred pipelines; `XACK` per batch read), with channel and stream
//! names of the same shape and length, TCP_NODELAY on every connection and 4096 events of
//! room per subscriber in both. Each round runs both, the raw program first in even rounds
//! and last in odd ones; the figures are medians over `--rounds`, the ratios the median of
//! each round's ratio. The last line is machine-readable: `RESULT key=value ...` with the
//! ratios (conclib / raw: latency ratios below 1.3 and throughput ratios above 0.7 meet the
//! issue's goal).
//!
//! `--lib raw` compares the raw program with itself: how far the ratios stray with nothing
//! to tell the two apart. `--lib rawhop` compares the raw program with itself plus one task
//! hop per subscriber
//! (through a bounded channel, as a live subscription that counts its drops while its
//! consumer is busy needs): what that structure costs alone. A durable subscription has no
//! such hop (its consumer's task reads), as the raw program. `--only live10` runs one configuration;
//! `--alone` runs only the compared program (for a profiler).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_redis::{
    ProxyClient, ProxyConfig, start_redis,
    topics::{Topic, TopicError},
};
use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use futures_util::StreamExt;
use tokio::sync::Notify;

const PUBLISHERS: u64 = 16;
/// Events a subscriber may hold unread, in each program: fred's queue of a raw subscriber,
/// the channel of `rawhop`, a conclib subscription's buffer.
const BUFFER: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Impl {
    Conclib,
    Raw,
    /// The raw program with one task more per subscriber: what it reads goes through a
    /// bounded channel to the task that consumes it (the shape of a live subscription, which
    /// counts drops while its consumer is busy). A floor for that structure.
    RawHop,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Live,
    Durable,
}

/// What all subscribers of one run received.
#[derive(Default)]
struct Sink {
    received: AtomicU64,
    dropped: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
    changed: Notify,
}

impl Sink {
    fn got(&self, sent_ns: u64, base: Instant) {
        let now = base.elapsed().as_nanos() as u64;
        self.latencies
            .lock()
            .unwrap()
            .push(now.saturating_sub(sent_ns));
        self.received.fetch_add(1, Ordering::Release);
        self.changed.notify_waiters();
    }

    fn lost(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Release);
        self.changed.notify_waiters();
    }

    async fn wait_for(&self, total: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let changed = self.changed.notified();
            if self.received.load(Ordering::Acquire) + self.dropped.load(Ordering::Acquire) >= total
            {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), changed)
                .await
                .is_err()
            {
                return false;
            }
        }
    }
}

/// One side of a run: publishes through conclib or raw fred.
#[derive(Clone)]
enum Publisher {
    Conclib(conclib_redis::topics::Topics, Topic),
    Raw(Client, String, Mode),
}

impl Publisher {
    async fn publish(&self, sent_ns: u64) {
        match self {
            Publisher::Conclib(topics, topic) => topics.publish(topic, &sent_ns).await.unwrap(),
            Publisher::Raw(client, key, Mode::Live) => {
                let _: i64 = client
                    .publish(key.as_str(), sent_ns.to_be_bytes().to_vec())
                    .await
                    .unwrap();
            }
            Publisher::Raw(client, key, Mode::Durable) => {
                let _: Value = client
                    .xadd(
                        key.as_str(),
                        false,
                        ("MAXLEN", "~", 100_000),
                        "*",
                        vec![("b", Value::Bytes(sent_ns.to_be_bytes().to_vec().into()))],
                    )
                    .await
                    .unwrap();
            }
        }
    }
}

/// The channel or stream key of the raw program: shaped as conclib's (namespace, hash tag),
/// so that both send and parse names of one length.
fn raw_key(name: &str, mode: Mode) -> String {
    match mode {
        Mode::Live => format!("bench:topic:{{{name}}}:live"),
        Mode::Durable => format!("bench:topic:{{{name}}}:log"),
    }
}

async fn raw_client(config: &ProxyConfig) -> Client {
    let mut builder = Builder::from_config(Config::from_url(&config.url).unwrap());
    builder.with_performance_config(|p| p.broadcast_channel_capacity = BUFFER);
    // As conclib's connections: Nagle's delay would be counted against the raw program.
    builder.with_connection_config(|c| c.tcp.nodelay = Some(true));
    let client = builder.build().unwrap();
    client.init().await.unwrap();
    client
}

/// Starts `n` subscribers feeding `sink`; returns once all are subscribed.
#[allow(clippy::too_many_arguments)]
async fn subscribe(
    imp: Impl,
    mode: Mode,
    n: usize,
    name: &str,
    client: &ProxyClient,
    config: &ProxyConfig,
    sink: &Arc<Sink>,
    base: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let sink = sink.clone();
        let task = match imp {
            Impl::Conclib => {
                let topic = match mode {
                    Mode::Live => Topic::live(name).unwrap(),
                    Mode::Durable => Topic::durable(name).unwrap(),
                };
                let mut sub = client
                    .subscribe::<u64>(&topic)
                    .group(format!("g{i}"))
                    .buffer(BUFFER)
                    .await
                    .unwrap();
                tokio::spawn(async move {
                    while let Some(event) = sub.next().await {
                        match event {
                            Ok(sent) => sink.got(sent, base),
                            Err(TopicError::Lagged { missed }) => sink.lost(missed),
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            }
            Impl::Raw | Impl::RawHop => {
                let redis = raw_client(config).await;
                let (to, consumer) = Deliver::new(imp, sink, base);
                tasks.extend(consumer);
                match mode {
                    Mode::Live => raw_live(redis, raw_key(name, mode), to).await,
                    Mode::Durable => {
                        raw_durable(redis, raw_key(name, mode), format!("g{i}"), to).await
                    }
                }
            }
        };
        tasks.push(task);
    }
    tasks
}

/// Where a raw subscriber puts what it read: straight into the sink, or through a bounded
/// channel to a task of its own (`Impl::RawHop`), dropping (counted) what does not fit.
enum Deliver {
    Direct(Arc<Sink>, Instant),
    Hop(tokio::sync::mpsc::Sender<u64>, Arc<Sink>),
}

impl Deliver {
    fn new(
        imp: Impl,
        sink: Arc<Sink>,
        base: Instant,
    ) -> (Deliver, Option<tokio::task::JoinHandle<()>>) {
        if imp != Impl::RawHop {
            return (Deliver::Direct(sink, base), None);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(BUFFER);
        let consumer = {
            let sink = sink.clone();
            tokio::spawn(async move {
                while let Some(sent) = rx.recv().await {
                    sink.got(sent, base);
                }
            })
        };
        (Deliver::Hop(tx, sink), Some(consumer))
    }

    fn got(&self, sent_ns: u64) {
        match self {
            Deliver::Direct(sink, base) => sink.got(sent_ns, *base),
            Deliver::Hop(tx, sink) => {
                if tx.try_send(sent_ns).is_err() {
                    sink.lost(1);
                }
            }
        }
    }

    /// As `got`, waiting for room rather than dropping (a durable subscriber).
    async fn put(&self, sent_ns: u64) {
        match self {
            Deliver::Direct(sink, base) => sink.got(sent_ns, *base),
            Deliver::Hop(tx, _) => {
                let _ = tx.send(sent_ns).await;
            }
        }
    }

    fn lost(&self, n: u64) {
        match self {
            Deliver::Direct(sink, _) | Deliver::Hop(_, sink) => sink.lost(n),
        }
    }
}

async fn raw_live(redis: Client, channel: String, to: Deliver) -> tokio::task::JoinHandle<()> {
    let mut messages = redis.message_rx();
    redis.subscribe(channel).await.unwrap();
    tokio::spawn(async move {
        let _keep = redis;
        loop {
            match messages.recv().await {
                Ok(m) => {
                    let bytes = m.value.as_bytes().unwrap();
                    to.got(u64::from_be_bytes(bytes.try_into().unwrap()));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => to.lost(n),
                Err(_) => return,
            }
        }
    })
}

async fn raw_durable(
    redis: Client,
    key: String,
    group: String,
    to: Deliver,
) -> tokio::task::JoinHandle<()> {
    let create: Vec<Value> = vec![
        "CREATE".into(),
        key.as_str().into(),
        group.as_str().into(),
        "$".into(),
        "MKSTREAM".into(),
    ];
    let _: Value = redis
        .custom(
            CustomCommand::new_static("XGROUP", ClusterHash::Random, false),
            create,
        )
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let args: Vec<Value> = vec![
                "GROUP".into(),
                group.as_str().into(),
                "c".into(),
                "COUNT".into(),
                256.into(),
                "BLOCK".into(),
                1000.into(),
                "STREAMS".into(),
                key.as_str().into(),
                ">".into(),
            ];
            let Ok(reply) = redis
                .custom::<Value, Value>(
                    CustomCommand::new_static("XREADGROUP", ClusterHash::Random, true),
                    args,
                )
                .await
            else {
                return;
            };
            let mut ids: Vec<Value> = vec![key.as_str().into(), group.as_str().into()];
            for (id, body) in raw_entries(reply) {
                to.put(u64::from_be_bytes(body.as_slice().try_into().unwrap()))
                    .await;
                ids.push(id);
            }
            if ids.len() > 2 {
                let _: Value = redis
                    .custom(
                        CustomCommand::new_static("XACK", ClusterHash::FirstKey, false),
                        ids,
                    )
                    .await
                    .unwrap();
            }
        }
    })
}

fn raw_entries(reply: Value) -> Vec<(Value, Vec<u8>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(entries)) = parts.pop() else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut pair) = entry else {
                continue;
            };
            let Some(Value::Array(fields)) = pair.pop() else {
                continue;
            };
            let Some(id) = pair.pop() else { continue };
            if let Some(body) = fields.get(1).and_then(|v| v.as_bytes()) {
                out.push((id, body.to_vec()));
            }
        }
    }
    out
}

struct Figures {
    published_per_s: f64,
    delivered_per_s: f64,
    dropped: u64,
    p50_us: f64,
    p99_us: f64,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    imp: Impl,
    mode: Mode,
    subscribers: usize,
    events: u64,
    samples: u64,
    client: &ProxyClient,
    config: &ProxyConfig,
    base: Instant,
) -> Figures {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run_no = RUNS.fetch_add(1, Ordering::Relaxed);
    // Names of one length for all: fred checks a message's channel name for each message.
    let who = match imp {
        Impl::Conclib => "lib",
        Impl::Raw => "raw",
        Impl::RawHop => "hop",
    };
    let name = format!("bench-{who}-{mode:?}-{subscribers}-{run_no}").to_lowercase();
    let sink = Arc::new(Sink::default());
    let tasks = subscribe(imp, mode, subscribers, &name, client, config, &sink, base).await;
    let raw = raw_client(config).await;
    let publisher = match imp {
        Impl::Conclib => Publisher::Conclib(
            client.topics(),
            match mode {
                Mode::Live => Topic::live(&name).unwrap(),
                Mode::Durable => Topic::durable(&name).unwrap(),
            },
        ),
        // The raw program's channel and key have the length conclib's would have.
        Impl::Raw | Impl::RawHop => Publisher::Raw(raw.clone(), raw_key(&name, mode), mode),
    };
    let expected = events * subscribers as u64;
    // Throughput.
    let started = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                for _ in 0..events / PUBLISHERS {
                    publisher.publish(base.elapsed().as_nanos() as u64).await;
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let published = started.elapsed();
    let complete = sink.wait_for(expected, Duration::from_secs(20)).await;
    let delivered = started.elapsed();
    if !complete {
        let redis = raw
            .info::<String>(Some(fred::types::InfoKind::Stats))
            .await
            .unwrap_or_default();
        let clients = raw
            .client_list::<String, ()>(None, None)
            .await
            .unwrap_or_default();
        panic!(
            "{imp:?} {mode:?} x{subscribers}: not every event arrived: {} of {expected} received, {} dropped\n{redis}\n{clients}",
            sink.received.load(Ordering::Acquire),
            sink.dropped.load(Ordering::Acquire),
        );
    }
    let dropped = sink.dropped.load(Ordering::Acquire);
    let received = sink.received.load(Ordering::Acquire);
    // Latency: one event at a time.
    sink.latencies.lock().unwrap().clear();
    for i in 1..=samples {
        publisher.publish(base.elapsed().as_nanos() as u64).await;
        assert!(
            sink.wait_for(expected + i * subscribers as u64, Duration::from_secs(10))
                .await,
            "{imp:?} {mode:?}: a sample did not arrive"
        );
    }
    let mut latencies = std::mem::take(&mut *sink.latencies.lock().unwrap());
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)] as f64 / 1000.0
    };
    for task in tasks {
        task.abort();
    }
    let _ = raw.quit().await;
    Figures {
        published_per_s: events as f64 / published.as_secs_f64(),
        delivered_per_s: received as f64 / delivered.as_secs_f64(),
        dropped,
        p50_us: at(0.5),
        p99_us: at(0.99),
    }
}

fn arg(name: &str, default: u64) -> u64 {
    arg_str(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The figures of several rounds: the median of each, and the median of each round's ratio
/// to the same round's raw figures.
struct Summary {
    lib: Vec<Figures>,
    raw: Vec<Figures>,
}

impl Summary {
    fn of(runs: &[Figures], f: fn(&Figures) -> f64) -> f64 {
        median(runs.iter().map(f).collect())
    }

    fn ratio(&self, f: fn(&Figures) -> f64) -> f64 {
        median(
            self.lib
                .iter()
                .zip(&self.raw)
                .map(|(l, r)| f(l) / f(r))
                .collect(),
        )
    }
}

fn parse_impl(name: &str) -> Impl {
    match name {
        "raw" => Impl::Raw,
        "rawhop" => Impl::RawHop,
        "conclib" => Impl::Conclib,
        other => panic!("--lib takes conclib, raw or rawhop, not {other}"),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = arg("--events", 20_000) / PUBLISHERS * PUBLISHERS;
    let samples = arg("--samples", 1000);
    let rounds = arg("--rounds", 5).max(1);
    let only = arg_str("--only");
    // What is compared with the raw program (`rawhop`: the raw program with conclib's task
    // hop, to see what that structure alone costs); `--alone` runs it without the raw one
    // (for a profiler).
    let lib = parse_impl(arg_str("--lib").as_deref().unwrap_or("conclib"));
    let alone = std::env::args().any(|a| a == "--alone");
    let redis = start_redis(&ProxyConfig::default()).await.unwrap();
    let config = redis.config(&ProxyConfig::default().with_namespace("bench"));
    let client = ProxyClient::connect(&config).await.unwrap();
    let base = Instant::now();
    let mut result = format!("RESULT rounds={rounds}");
    for mode in [Mode::Live, Mode::Durable] {
        for subscribers in [1, 10] {
            let tag = format!("{mode:?}{subscribers}").to_lowercase();
            if only.as_ref().is_some_and(|o| *o != tag) {
                continue;
            }
            let mut summary = Summary {
                lib: Vec::new(),
                raw: Vec::new(),
            };
            for round in 0..rounds {
                // Alternated: the raw program first in even rounds, last in odd ones.
                // Each with whether it is the raw baseline (`--lib raw` compares the raw
                // program with itself: the ratios' noise).
                let order = if alone {
                    vec![(lib, false)]
                } else if round % 2 == 0 {
                    vec![(Impl::Raw, true), (lib, false)]
                } else {
                    vec![(lib, false), (Impl::Raw, true)]
                };
                for (imp, baseline) in order {
                    let f = run(
                        imp,
                        mode,
                        subscribers,
                        events,
                        samples,
                        &client,
                        &config,
                        base,
                    )
                    .await;
                    let who = format!("{imp:?}").to_lowercase();
                    println!(
                        "{tag:>9} {who:>7} round {round}: published {:>8.0}/s, delivered {:>8.0}/s (dropped {}), latency p50 {:>7.1} us, p99 {:>7.1} us",
                        f.published_per_s, f.delivered_per_s, f.dropped, f.p50_us, f.p99_us
                    );
                    if baseline {
                        summary.raw.push(f);
                    } else {
                        summary.lib.push(f);
                    }
                }
            }
            if alone {
                continue;
            }
            let l = &summary.lib;
            let r = &summary.raw;
            println!(
                "{tag:>9} medians: raw delivered {:.0}/s p50 {:.1} us p99 {:.1} us; {lib:?} delivered {:.0}/s p50 {:.1} us p99 {:.1} us",
                Summary::of(r, |f| f.delivered_per_s),
                Summary::of(r, |f| f.p50_us),
                Summary::of(r, |f| f.p99_us),
                Summary::of(l, |f| f.delivered_per_s),
                Summary::of(l, |f| f.p50_us),
                Summary::of(l, |f| f.p99_us),
            );
            result.push_str(&format!(
                " {tag}_pub_per_s={:.0} {tag}_delivered_per_s={:.0} {tag}_p50_us={:.1} {tag}_p99_us={:.1} {tag}_dropped={} {tag}_pub_ratio={:.2} {tag}_delivered_ratio={:.2} {tag}_p50_ratio={:.2} {tag}_p99_ratio={:.2}",
                Summary::of(l, |f| f.published_per_s),
                Summary::of(l, |f| f.delivered_per_s),
                Summary::of(l, |f| f.p50_us),
                Summary::of(l, |f| f.p99_us),
                l.iter().map(|f| f.dropped).sum::<u64>(),
                summary.ratio(|f| f.published_per_s),
                summary.ratio(|f| f.delivered_per_s),
                summary.ratio(|f| f.p50_us),
                summary.ratio(|f| f.p99_us),
            ));
        }
    }
    drop(client);
    println!("{result}");
}
