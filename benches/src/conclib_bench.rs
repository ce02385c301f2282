//! conclib, with its default bounded mailbox (1024) or unbounded.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use conclib::{Actor, ActorRef, ActorSystem, Context, Handler, MailboxConfig, Message};
use tokio::sync::{Notify, oneshot};

use crate::common::{
    Latencies, Metrics, Params, rate, resident_vec, rss_bytes, settle, spawn_metrics,
};

fn mailbox(bounded: bool) -> MailboxConfig {
    if bounded {
        MailboxConfig::default()
    } else {
        MailboxConfig::Unbounded
    }
}

struct Counter {
    count: u64,
    target: u64,
    done: Option<oneshot::Sender<()>>,
}
impl Actor for Counter {}

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
            && let Some(d) = self.done.take()
        {
            let _ = d.send(());
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

async fn counter(
    system: &ActorSystem,
    bounded: bool,
    target: u64,
) -> (ActorRef<Counter>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let actor = Counter {
        count: 0,
        target,
        done: Some(tx),
    };
    let r = system
        .build(actor)
        .mailbox(mailbox(bounded))
        .spawn()
        .await
        .expect("spawn");
    (r, rx)
}

pub async fn tell(bounded: bool, p: Params) -> Metrics {
    let system = ActorSystem::new("bench");
    let (r, done) = counter(&system, bounded, p.tell_n).await;
    let start = Instant::now();
    for _ in 0..p.tell_n {
        r.tell(Inc).await.expect("tell");
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(r.ask(Add(0)).await.expect("ask"), p.tell_n);
    vec![("rate", rate(p.tell_n, took))]
}

pub async fn ask(bounded: bool, p: Params) -> Metrics {
    let system = ActorSystem::new("bench");
    let (r, _done) = counter(&system, bounded, u64::MAX).await;
    let mut lat = Latencies::with_capacity(p.ask_n as usize);
    let start = Instant::now();
    for i in 0..p.ask_n {
        let t = Instant::now();
        let total = r.ask(Add(1)).await.expect("ask");
        lat.record(t);
        debug_assert_eq!(total, i + 1);
    }
    let took = start.elapsed();
    lat.metrics(took)
}

struct Idle;
impl Actor for Idle {}

pub async fn spawn(bounded: bool, p: Params) -> Metrics {
    let system = ActorSystem::new("bench");
    let mut actors: Vec<ActorRef<Idle>> = resident_vec(p.spawn_n);
    let before = rss_bytes();
    let start = Instant::now();
    for _ in 0..p.spawn_n {
        actors.push(
            system
                .build(Idle)
                .mailbox(mailbox(bounded))
                .spawn()
                .await
                .expect("spawn"),
        );
    }
    let spawn_took = start.elapsed();
    let after = settle().await;
    let start = Instant::now();
    for a in &actors {
        a.stop();
    }
    for a in &actors {
        a.wait_for_stop().await;
    }
    let stop_took = start.elapsed();
    spawn_metrics(p.spawn_n, spawn_took, before, after, stop_took)
}

pub async fn fanin(bounded: bool, p: Params) -> Metrics {
    let system = ActorSystem::new("bench");
    let (r, done) = counter(&system, bounded, p.fanin_total()).await;
    let start = Instant::now();
    for _ in 0..p.fanin_senders {
        let r = r.clone();
        tokio::spawn(async move {
            for _ in 0..p.fanin_per_sender {
                r.tell(Inc).await.expect("tell");
            }
        });
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(r.ask(Add(0)).await.expect("ask"), p.fanin_total());
    vec![("rate", rate(p.fanin_total(), took))]
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
            self.next
                .as_ref()
                .expect("wired")
                .tell(Hop(hops - 1))
                .await
                .expect("tell");
        }
        Ok(())
    }
}

pub async fn ring(bounded: bool, p: Params) -> Metrics {
    let system = ActorSystem::new("bench");
    let done = Arc::new(Notify::new());
    let mut nodes = Vec::with_capacity(p.ring_actors);
    for _ in 0..p.ring_actors {
        let node = Node {
            next: None,
            done: done.clone(),
        };
        nodes.push(
            system
                .build(node)
                .mailbox(mailbox(bounded))
                .spawn()
                .await
                .expect("spawn"),
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        n.ask(SetNext(nodes[(i + 1) % nodes.len()].clone()))
            .await
            .expect("wire");
    }
    let start = Instant::now();
    nodes[0].tell(Hop(p.ring_hops)).await.expect("tell");
    done.notified().await;
    let took = start.elapsed();
    for n in &nodes {
        n.kill();
    }
    vec![("rate", rate(p.ring_hops, took))]
}
