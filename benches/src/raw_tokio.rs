//! The baseline: an "actor" is a task that owns the receiving end of a tokio mpsc channel,
//! an ask is a message carrying a oneshot sender. Bounded (capacity 1024, like conclib's
//! default mailbox) or unbounded.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::common::{
    Latencies, Metrics, Params, rate, resident_vec, rss_bytes, settle, spawn_metrics,
};

pub const BOUNDED_CAPACITY: usize = 1024;

enum Msg {
    Inc,
    Add(u64, oneshot::Sender<u64>),
}

enum Tx<T> {
    Bounded(mpsc::Sender<T>),
    Unbounded(mpsc::UnboundedSender<T>),
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        match self {
            Tx::Bounded(s) => Tx::Bounded(s.clone()),
            Tx::Unbounded(s) => Tx::Unbounded(s.clone()),
        }
    }
}

impl<T> Tx<T> {
    #[inline]
    async fn send(&self, t: T) {
        let ok = match self {
            Tx::Bounded(s) => s.send(t).await.is_ok(),
            Tx::Unbounded(s) => s.send(t).is_ok(),
        };
        assert!(ok, "receiver gone");
    }
}

enum Rx<T> {
    Bounded(mpsc::Receiver<T>),
    Unbounded(mpsc::UnboundedReceiver<T>),
}

impl<T> Rx<T> {
    #[inline]
    async fn recv(&mut self) -> Option<T> {
        match self {
            Rx::Bounded(r) => r.recv().await,
            Rx::Unbounded(r) => r.recv().await,
        }
    }
}

fn channel<T>(bounded: bool) -> (Tx<T>, Rx<T>) {
    if bounded {
        let (tx, rx) = mpsc::channel(BOUNDED_CAPACITY);
        (Tx::Bounded(tx), Rx::Bounded(rx))
    } else {
        let (tx, rx) = mpsc::unbounded_channel();
        (Tx::Unbounded(tx), Rx::Unbounded(rx))
    }
}

/// A counter actor: counts `Inc`, answers `Add`, signals `done` when it reached `target`.
fn counter(mut rx: Rx<Msg>, target: u64, done: oneshot::Sender<()>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut count = 0u64;
        let mut done = Some(done);
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Inc => {
                    count += 1;
                    if count == target
                        && let Some(d) = done.take()
                    {
                        let _ = d.send(());
                    }
                }
                Msg::Add(n, reply) => {
                    count += n;
                    let _ = reply.send(count);
                }
            }
        }
    })
}

async fn ask(tx: &Tx<Msg>, n: u64) -> u64 {
    let (otx, orx) = oneshot::channel();
    tx.send(Msg::Add(n, otx)).await;
    orx.await.expect("no answer")
}

pub async fn tell(bounded: bool, p: Params) -> Metrics {
    let (tx, rx) = channel(bounded);
    let (done_tx, done_rx) = oneshot::channel();
    let task = counter(rx, p.tell_n, done_tx);
    let start = Instant::now();
    for _ in 0..p.tell_n {
        tx.send(Msg::Inc).await;
    }
    done_rx.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask(&tx, 0).await, p.tell_n);
    drop(tx);
    task.await.unwrap();
    vec![("rate", rate(p.tell_n, took))]
}

pub async fn ask_scenario(bounded: bool, p: Params) -> Metrics {
    let (tx, rx) = channel(bounded);
    let (done_tx, _done_rx) = oneshot::channel();
    let task = counter(rx, u64::MAX, done_tx);
    let mut lat = Latencies::with_capacity(p.ask_n as usize);
    let start = Instant::now();
    for i in 0..p.ask_n {
        let t = Instant::now();
        let total = ask(&tx, 1).await;
        lat.record(t);
        debug_assert_eq!(total, i + 1);
    }
    let took = start.elapsed();
    drop(tx);
    task.await.unwrap();
    lat.metrics(took)
}

pub async fn spawn(bounded: bool, p: Params) -> Metrics {
    let mut actors: Vec<(Tx<Msg>, tokio::task::JoinHandle<()>)> = resident_vec(p.spawn_n);
    let before = rss_bytes();
    let start = Instant::now();
    for _ in 0..p.spawn_n {
        let (tx, mut rx) = channel::<Msg>(bounded);
        let handle = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        actors.push((tx, handle));
    }
    let spawn_took = start.elapsed();
    let after = settle().await;
    let start = Instant::now();
    // Stop: every sender goes, every task ends.
    let handles: Vec<_> = actors.into_iter().map(|(_, h)| h).collect();
    for h in handles {
        h.await.unwrap();
    }
    let stop_took = start.elapsed();
    spawn_metrics(p.spawn_n, spawn_took, before, after, stop_took)
}

pub async fn fanin(bounded: bool, p: Params) -> Metrics {
    let (tx, rx) = channel(bounded);
    let (done_tx, done_rx) = oneshot::channel();
    let task = counter(rx, p.fanin_total(), done_tx);
    let start = Instant::now();
    for _ in 0..p.fanin_senders {
        let tx = tx.clone();
        tokio::spawn(async move {
            for _ in 0..p.fanin_per_sender {
                tx.send(Msg::Inc).await;
            }
        });
    }
    done_rx.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask(&tx, 0).await, p.fanin_total());
    drop(tx);
    task.await.unwrap();
    vec![("rate", rate(p.fanin_total(), took))]
}

pub async fn ring(bounded: bool, p: Params) -> Metrics {
    let done = Arc::new(Notify::new());
    let (txs, rxs): (Vec<Tx<u64>>, Vec<Rx<u64>>) =
        (0..p.ring_actors).map(|_| channel::<u64>(bounded)).unzip();
    let mut tasks = Vec::with_capacity(p.ring_actors);
    for (i, mut rx) in rxs.into_iter().enumerate() {
        let next = txs[(i + 1) % p.ring_actors].clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(hops) = rx.recv().await {
                if hops == 0 {
                    done.notify_one();
                } else {
                    next.send(hops - 1).await;
                }
            }
        }));
    }
    let first = txs[0].clone();
    drop(txs);
    let start = Instant::now();
    first.send(p.ring_hops).await;
    done.notified().await;
    let took = start.elapsed();
    for t in &tasks {
        t.abort();
    }
    vec![("rate", rate(p.ring_hops, took))]
}
