//! kameo 0.22, bounded mailbox of 1024 (kameo's default is 64; 1024 matches conclib's).

use std::sync::Arc;
use std::time::Instant;

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::mailbox;
use kameo::message::{Context, Message};
use tokio::sync::{Notify, oneshot};

use crate::common::{
    Latencies, Metrics, Params, rate, resident_vec, rss_bytes, settle, spawn_metrics,
};

const CAPACITY: usize = 1024;

struct Counter {
    count: u64,
    target: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for Counter {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(state)
    }
}

struct Inc;
struct Add(u64);

impl Message<Inc> for Counter {
    type Reply = ();
    async fn handle(&mut self, _: Inc, _: &mut Context<Self, ()>) {
        self.count += 1;
        if self.count == self.target
            && let Some(d) = self.done.take()
        {
            let _ = d.send(());
        }
    }
}

impl Message<Add> for Counter {
    type Reply = u64;
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self, u64>) -> u64 {
        self.count += n;
        self.count
    }
}

fn counter(target: u64) -> (ActorRef<Counter>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let actor = Counter {
        count: 0,
        target,
        done: Some(tx),
    };
    (
        Counter::spawn_with_mailbox(actor, mailbox::bounded(CAPACITY)),
        rx,
    )
}

async fn ask_add(r: &ActorRef<Counter>, n: u64) -> u64 {
    match r.ask(Add(n)).await {
        Ok(v) => v,
        Err(_) => panic!("kameo ask failed"),
    }
}

async fn tell_inc(r: &ActorRef<Counter>) {
    if r.tell(Inc).await.is_err() {
        panic!("kameo tell failed");
    }
}

pub async fn tell(p: Params) -> Metrics {
    let (r, done) = counter(p.tell_n);
    let start = Instant::now();
    for _ in 0..p.tell_n {
        tell_inc(&r).await;
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask_add(&r, 0).await, p.tell_n);
    vec![("rate", rate(p.tell_n, took))]
}

pub async fn ask(p: Params) -> Metrics {
    let (r, _done) = counter(u64::MAX);
    let mut lat = Latencies::with_capacity(p.ask_n as usize);
    let start = Instant::now();
    for _ in 0..p.ask_n {
        let t = Instant::now();
        ask_add(&r, 1).await;
        lat.record(t);
    }
    lat.metrics(start.elapsed())
}

struct Idle;
impl Actor for Idle {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(state)
    }
}

pub async fn spawn(p: Params) -> Metrics {
    let mut actors: Vec<ActorRef<Idle>> = resident_vec(p.spawn_n);
    let before = rss_bytes();
    let start = Instant::now();
    for _ in 0..p.spawn_n {
        actors.push(Idle::spawn_with_mailbox(Idle, mailbox::bounded(CAPACITY)));
    }
    let spawn_took = start.elapsed();
    let after = settle().await;
    let start = Instant::now();
    for a in &actors {
        let _ = a.stop_gracefully().await;
    }
    for a in &actors {
        a.wait_for_shutdown().await;
    }
    let stop_took = start.elapsed();
    spawn_metrics(p.spawn_n, spawn_took, before, after, stop_took)
}

pub async fn fanin(p: Params) -> Metrics {
    let (r, done) = counter(p.fanin_total());
    let start = Instant::now();
    for _ in 0..p.fanin_senders {
        let r = r.clone();
        tokio::spawn(async move {
            for _ in 0..p.fanin_per_sender {
                tell_inc(&r).await;
            }
        });
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask_add(&r, 0).await, p.fanin_total());
    vec![("rate", rate(p.fanin_total(), took))]
}

struct Node {
    next: Option<ActorRef<Node>>,
    done: Arc<Notify>,
}
impl Actor for Node {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(state)
    }
}

struct SetNext(ActorRef<Node>);
impl Message<SetNext> for Node {
    type Reply = ();
    async fn handle(&mut self, SetNext(next): SetNext, _: &mut Context<Self, ()>) {
        self.next = Some(next);
    }
}

struct Hop(u64);
impl Message<Hop> for Node {
    type Reply = ();
    async fn handle(&mut self, Hop(hops): Hop, _: &mut Context<Self, ()>) {
        if hops == 0 {
            self.done.notify_one();
        } else if self
            .next
            .as_ref()
            .expect("wired")
            .tell(Hop(hops - 1))
            .await
            .is_err()
        {
            panic!("kameo tell failed");
        }
    }
}

pub async fn ring(p: Params) -> Metrics {
    let done = Arc::new(Notify::new());
    let nodes: Vec<ActorRef<Node>> = (0..p.ring_actors)
        .map(|_| {
            let node = Node {
                next: None,
                done: done.clone(),
            };
            Node::spawn_with_mailbox(node, mailbox::bounded(CAPACITY))
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        if n.ask(SetNext(nodes[(i + 1) % nodes.len()].clone()))
            .await
            .is_err()
        {
            panic!("kameo wire failed");
        }
    }
    let start = Instant::now();
    if nodes[0].tell(Hop(p.ring_hops)).await.is_err() {
        panic!("kameo tell failed");
    }
    done.notified().await;
    let took = start.elapsed();
    vec![("rate", rate(p.ring_hops, took))]
}
