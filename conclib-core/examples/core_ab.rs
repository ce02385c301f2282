//! The core's headline figures in one small program, for alternated A/B runs of two builds
//! (does an unsafe site still pay for itself?). One scenario a process, one
//! `RESULT` line:
//!
//! ```sh
//! cargo run --release -p conclib-core --example core_ab -- tell      # or ask, spawn, fanin,
//!                                                                     # ring, metrics_tell, dyn_ask
//! ```
//!
//! The same scenarios as the suite in `benches/` (2 worker threads, the default bounded
//! mailbox), scaled down so that a round of all of them takes a few seconds; `benches/` stays
//! the reference for the figures against the peers. `python3 conclib-core/examples/core_ab.py`
//! alternates two builds and prints the medians of their ratios.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclib_core::{Actor, ActorRef, ActorSystem, Context, Handler, Message, RequestEnvelope};
use tokio::sync::{Notify, oneshot};

struct Counter {
    count: u64,
    target: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for Counter {
    async fn handle_request(&mut self, request: RequestEnvelope, ctx: &mut Context<Self>) {
        match request.extract::<Add>() {
            Ok((msg, responder)) => responder.respond(self.handle(msg, ctx).await),
            Err(request) => request.reject(),
        }
    }
}

struct Inc;
impl Message for Inc {
    type Response = ();
    type Error = Infallible;
}

struct Add(u64);
impl Message for Add {
    type Response = u64;
    type Error = Infallible;
}

impl Handler<Inc> for Counter {
    async fn handle(&mut self, _: Inc, _: &mut Context<Self>) -> Result<(), Infallible> {
        self.count += 1;
        if self.count == self.target
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
        Ok(())
    }
}

impl Handler<Add> for Counter {
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> Result<u64, Infallible> {
        self.count += n;
        Ok(self.count)
    }
}

async fn counter(system: &ActorSystem, target: u64) -> (ActorRef<Counter>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let actor = Counter {
        count: 0,
        target,
        done: Some(tx),
    };
    let r = system
        .build(actor)
        .urn("counter")
        .spawn()
        .await
        .expect("spawn");
    (r, rx)
}

fn rate(n: u64, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

async fn tell(n: u64) -> String {
    let system = ActorSystem::new("ab");
    let (r, done) = counter(&system, n).await;
    let start = Instant::now();
    for _ in 0..n {
        r.tell(Inc).await.expect("tell");
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(r.ask(Add(0)).await.expect("ask"), n);
    format!("rate={:.0}", rate(n, took))
}

fn percentiles(mut ns: Vec<u64>) -> String {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize];
    format!("p50_ns={} p99_ns={}", at(0.5), at(0.99))
}

async fn ask(n: u64) -> String {
    let system = ActorSystem::new("ab");
    let (r, _done) = counter(&system, u64::MAX).await;
    let mut ns = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        r.ask(Add(1)).await.expect("ask");
        ns.push(t.elapsed().as_nanos() as u64);
    }
    percentiles(ns)
}

/// Asks by URN: the dynamic path (a `DynActorRef` from a lookup, a `RequestEnvelope`).
async fn dyn_ask(n: u64) -> String {
    let system = ActorSystem::new("ab");
    let (_r, _done) = counter(&system, u64::MAX).await;
    let by_name = system.lookup("counter").expect("lookup");
    let mut ns = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = Instant::now();
        by_name.ask(Add(1)).await.expect("ask");
        ns.push(t.elapsed().as_nanos() as u64);
    }
    percentiles(ns)
}

struct Idle;
impl Actor for Idle {}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn spawn(n: u64) -> String {
    let system = ActorSystem::new("ab");
    let mut actors: Vec<ActorRef<Idle>> = Vec::with_capacity(n as usize);
    let before = rss_bytes();
    let start = Instant::now();
    for _ in 0..n {
        actors.push(system.build(Idle).spawn().await.expect("spawn"));
    }
    let took = start.elapsed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = rss_bytes();
    for a in &actors {
        a.stop();
    }
    for a in &actors {
        a.wait_for_stop().await;
    }
    format!(
        "rate={:.0} bytes_per_actor={}",
        rate(n, took),
        after.saturating_sub(before) / n
    )
}

async fn fanin(senders: u64, each: u64) -> String {
    let system = ActorSystem::new("ab");
    let total = senders * each;
    let (r, done) = counter(&system, total).await;
    let start = Instant::now();
    for _ in 0..senders {
        let r = r.clone();
        tokio::spawn(async move {
            for _ in 0..each {
                r.tell(Inc).await.expect("tell");
            }
        });
    }
    done.await.expect("counter gone");
    format!("rate={:.0}", rate(total, start.elapsed()))
}

struct Node {
    next: Option<ActorRef<Node>>,
    done: Arc<Notify>,
}
impl Actor for Node {}

struct SetNext(ActorRef<Node>);
impl Message for SetNext {
    type Response = ();
    type Error = Infallible;
}
impl Handler<SetNext> for Node {
    async fn handle(
        &mut self,
        SetNext(next): SetNext,
        _: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        self.next = Some(next);
        Ok(())
    }
}

struct Hop(u64);
impl Message for Hop {
    type Response = ();
    type Error = Infallible;
}
impl Handler<Hop> for Node {
    async fn handle(&mut self, Hop(hops): Hop, _: &mut Context<Self>) -> Result<(), Infallible> {
        if hops == 0 {
            self.done.notify_one();
        } else {
            let next = self.next.as_ref().expect("wired");
            next.tell(Hop(hops - 1)).await.expect("tell");
        }
        Ok(())
    }
}

async fn ring(actors: usize, hops: u64) -> String {
    let system = ActorSystem::new("ab");
    let done = Arc::new(Notify::new());
    let mut nodes = Vec::with_capacity(actors);
    for _ in 0..actors {
        let node = Node {
            next: None,
            done: done.clone(),
        };
        nodes.push(system.spawn(node).await.expect("spawn"));
    }
    for i in 0..actors {
        let next = nodes[(i + 1) % actors].clone();
        nodes[i].ask(SetNext(next)).await.expect("wire");
    }
    let start = Instant::now();
    nodes[0].tell(Hop(hops)).await.expect("tell");
    done.notified().await;
    format!("rate={:.0}", rate(hops, start.elapsed()))
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "tell".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let figures = runtime.block_on(async {
        match scenario.as_str() {
            "tell" => tell(1_000_000).await,
            "metrics_tell" => {
                conclib_core::metrics::enable();
                tell(1_000_000).await
            }
            "ask" => ask(100_000).await,
            "dyn_ask" => dyn_ask(100_000).await,
            "spawn" => spawn(100_000).await,
            "fanin" => fanin(8, 125_000).await,
            "ring" => ring(1_000, 500_000).await,
            other => panic!("unknown scenario {other}"),
        }
    });
    println!("RESULT scenario={scenario} {figures}");
}
