//! actix 0.13 on its own recommended runtime: an `actix::System` (one thread). A tell is
//! `do_send` (no backpressure: the mailbox limit does not apply to it), an ask is `send`.
//! Compared with raw tokio on a current-thread runtime, not with the multi-threaded rows.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::{Notify, oneshot};

use crate::common::{
    Latencies, Metrics, Params, rate, resident_vec, rss_bytes, settle, spawn_metrics,
};

/// Runs one scenario in a fresh actix system.
pub fn run(sc: &str, p: Params) -> Metrics {
    fn block_on<F: Future<Output = Metrics>>(f: F) -> Metrics {
        System::new().block_on(f)
    }
    match sc {
        "tell" => block_on(tell(p)),
        "ask" => block_on(ask(p)),
        "spawn" => block_on(spawn(p)),
        "fanin" => block_on(fanin(p)),
        "ring" => block_on(ring(p)),
        _ => panic!("unknown scenario {sc}"),
    }
}

struct Counter {
    count: u64,
    target: u64,
    done: Option<oneshot::Sender<()>>,
}
impl Actor for Counter {
    type Context = Context<Self>;
}

struct Inc;
impl Message for Inc {
    type Result = ();
}
struct Add(u64);
impl Message for Add {
    type Result = u64;
}

impl Handler<Inc> for Counter {
    type Result = ();
    fn handle(&mut self, _: Inc, _: &mut Context<Self>) {
        self.count += 1;
        if self.count == self.target
            && let Some(d) = self.done.take()
        {
            let _ = d.send(());
        }
    }
}

impl Handler<Add> for Counter {
    type Result = u64;
    fn handle(&mut self, Add(n): Add, _: &mut Context<Self>) -> u64 {
        self.count += n;
        self.count
    }
}

fn counter(target: u64) -> (Addr<Counter>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let actor = Counter {
        count: 0,
        target,
        done: Some(tx),
    };
    (actor.start(), rx)
}

async fn ask_add(r: &Addr<Counter>, n: u64) -> u64 {
    r.send(Add(n)).await.expect("actix ask")
}

async fn tell(p: Params) -> Metrics {
    let (r, done) = counter(p.tell_n);
    let start = Instant::now();
    for _ in 0..p.tell_n {
        r.do_send(Inc);
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask_add(&r, 0).await, p.tell_n);
    vec![("rate", rate(p.tell_n, took))]
}

async fn ask(p: Params) -> Metrics {
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

struct Idle {
    stopped: Arc<AtomicUsize>,
    all_stopped: Arc<Notify>,
    n: usize,
}
impl Actor for Idle {
    type Context = Context<Self>;
    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.stopped.fetch_add(1, Ordering::Relaxed) + 1 == self.n {
            self.all_stopped.notify_one();
        }
    }
}

async fn spawn(p: Params) -> Metrics {
    let stopped = Arc::new(AtomicUsize::new(0));
    let all_stopped = Arc::new(Notify::new());
    let mut actors: Vec<Addr<Idle>> = resident_vec(p.spawn_n);
    let before = rss_bytes();
    let start = Instant::now();
    for _ in 0..p.spawn_n {
        let idle = Idle {
            stopped: stopped.clone(),
            all_stopped: all_stopped.clone(),
            n: p.spawn_n,
        };
        actors.push(idle.start());
    }
    let spawn_took = start.elapsed();
    let after = settle().await;
    let start = Instant::now();
    // Stop: the last address goes, the actor stops.
    drop(actors);
    all_stopped.notified().await;
    let stop_took = start.elapsed();
    spawn_metrics(p.spawn_n, spawn_took, before, after, stop_took)
}

async fn fanin(p: Params) -> Metrics {
    let (r, done) = counter(p.fanin_total());
    let start = Instant::now();
    for _ in 0..p.fanin_senders {
        let r = r.clone();
        actix::spawn(async move {
            for _ in 0..p.fanin_per_sender {
                r.do_send(Inc);
            }
        });
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask_add(&r, 0).await, p.fanin_total());
    vec![("rate", rate(p.fanin_total(), took))]
}

struct Node {
    next: Option<Addr<Node>>,
    done: Arc<Notify>,
}
impl Actor for Node {
    type Context = Context<Self>;
}

struct SetNext(Addr<Node>);
impl Message for SetNext {
    type Result = ();
}
impl Handler<SetNext> for Node {
    type Result = ();
    fn handle(&mut self, SetNext(next): SetNext, _: &mut Context<Self>) {
        self.next = Some(next);
    }
}

struct Hop(u64);
impl Message for Hop {
    type Result = ();
}
impl Handler<Hop> for Node {
    type Result = ();
    fn handle(&mut self, Hop(hops): Hop, _: &mut Context<Self>) {
        if hops == 0 {
            self.done.notify_one();
        } else {
            self.next.as_ref().expect("wired").do_send(Hop(hops - 1));
        }
    }
}

async fn ring(p: Params) -> Metrics {
    let done = Arc::new(Notify::new());
    let nodes: Vec<Addr<Node>> = (0..p.ring_actors)
        .map(|_| {
            Node {
                next: None,
                done: done.clone(),
            }
            .start()
        })
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        n.send(SetNext(nodes[(i + 1) % nodes.len()].clone()))
            .await
            .expect("actix wire");
    }
    let start = Instant::now();
    nodes[0].do_send(Hop(p.ring_hops));
    done.notified().await;
    let took = start.elapsed();
    vec![("rate", rate(p.ring_hops, took))]
}
