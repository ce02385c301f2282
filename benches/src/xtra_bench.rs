//! xtra 0.6, bounded mailbox of 1024. A tell is `send(..).detach()` (resolves once queued),
//! an ask is `send(..)` awaited. xtra may hand messages to the actor in another order than
//! they were sent, so completion is counted inside the actor, never inferred from an ask.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, oneshot};
use xtra::{Actor, Address, Context, Handler, Mailbox};

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
    type Stop = ();
    async fn stopped(self) {}
}

struct Inc;
struct Add(u64);

impl Handler<Inc> for Counter {
    type Return = ();
    async fn handle(&mut self, _: Inc, _: &mut Context<Self>) {
        self.count += 1;
        if self.count == self.target
            && let Some(d) = self.done.take()
        {
            let _ = d.send(());
        }
    }
}

impl Handler<Add> for Counter {
    type Return = u64;
    async fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
        self.count += n;
        self.count
    }
}

fn counter(target: u64) -> (Address<Counter>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let actor = Counter {
        count: 0,
        target,
        done: Some(tx),
    };
    (xtra::spawn_tokio(actor, Mailbox::bounded(CAPACITY)), rx)
}

async fn ask_add(r: &Address<Counter>, n: u64) -> u64 {
    r.send(Add(n)).await.expect("xtra ask")
}

async fn tell_inc(r: &Address<Counter>) {
    drop(r.send(Inc).detach().await.expect("xtra tell"));
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
    type Stop = ();
    async fn stopped(self) {}
}

pub async fn spawn(p: Params) -> Metrics {
    let mut actors: Vec<(Address<Idle>, tokio::task::JoinHandle<()>)> = resident_vec(p.spawn_n);
    let before = rss_bytes();
    let start = Instant::now();
    for _ in 0..p.spawn_n {
        let (addr, mailbox) = Mailbox::bounded(CAPACITY);
        // What `xtra::spawn_tokio` does, keeping the join handle.
        let handle = tokio::spawn(xtra::run(mailbox, Idle));
        actors.push((addr, handle));
    }
    let spawn_took = start.elapsed();
    let after = settle().await;
    let start = Instant::now();
    // Stop: the last strong address goes, the actor stops.
    let handles: Vec<_> = actors.into_iter().map(|(_, h)| h).collect();
    for h in handles {
        h.await.expect("xtra actor");
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
    next: Option<Address<Node>>,
    done: Arc<Notify>,
}
impl Actor for Node {
    type Stop = ();
    async fn stopped(self) {}
}

struct SetNext(Address<Node>);
impl Handler<SetNext> for Node {
    type Return = ();
    async fn handle(&mut self, SetNext(next): SetNext, _: &mut Context<Self>) {
        self.next = Some(next);
    }
}

struct Hop(u64);
impl Handler<Hop> for Node {
    type Return = ();
    async fn handle(&mut self, Hop(hops): Hop, _: &mut Context<Self>) {
        if hops == 0 {
            self.done.notify_one();
        } else {
            let next = self.next.as_ref().expect("wired");
            // The detached reply future is not needed: the hop is queued.
            drop(next.send(Hop(hops - 1)).detach().await.expect("xtra tell"));
        }
    }
}

pub async fn ring(p: Params) -> Metrics {
    let done = Arc::new(Notify::new());
    let nodes: Vec<Address<Node>> = (0..p.ring_actors)
        .map(|_| {
            let node = Node {
                next: None,
                done: done.clone(),
            };
            xtra::spawn_tokio(node, Mailbox::bounded(CAPACITY))
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        n.send(SetNext(nodes[(i + 1) % nodes.len()].clone()))
            .await
            .expect("xtra wire");
    }
    let start = Instant::now();
    drop(
        nodes[0]
            .send(Hop(p.ring_hops))
            .detach()
            .await
            .expect("xtra tell"),
    );
    done.notified().await;
    let took = start.elapsed();
    vec![("rate", rate(p.ring_hops, took))]
}
