//! ractor 0.16: one message enum per actor, `cast` to tell (its mailbox is unbounded),
//! `call` with an `RpcReplyPort` to ask.

use std::sync::Arc;
use std::time::Instant;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{Notify, oneshot};

use crate::common::{
    Latencies, Metrics, Params, rate, resident_vec, rss_bytes, settle, spawn_metrics,
};

struct Counter;

enum CounterMsg {
    Inc,
    Add(u64, RpcReplyPort<u64>),
}

struct CounterState {
    count: u64,
    target: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = CounterState;
    type Arguments = CounterState;

    async fn pre_start(
        &self,
        _: ActorRef<CounterMsg>,
        state: CounterState,
    ) -> Result<CounterState, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        state: &mut CounterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Inc => {
                state.count += 1;
                if state.count == state.target
                    && let Some(d) = state.done.take()
                {
                    let _ = d.send(());
                }
            }
            CounterMsg::Add(n, reply) => {
                state.count += n;
                let _ = reply.send(state.count);
            }
        }
        Ok(())
    }
}

async fn counter(target: u64) -> (ActorRef<CounterMsg>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let state = CounterState {
        count: 0,
        target,
        done: Some(tx),
    };
    let Ok((r, _handle)) = Actor::spawn(None, Counter, state).await else {
        panic!("ractor spawn failed")
    };
    (r, rx)
}

async fn ask_add(r: &ActorRef<CounterMsg>, n: u64) -> u64 {
    match r.call(|reply| CounterMsg::Add(n, reply), None).await {
        Ok(CallResult::Success(v)) => v,
        _ => panic!("ractor call failed"),
    }
}

fn tell_inc(r: &ActorRef<CounterMsg>) {
    if r.cast(CounterMsg::Inc).is_err() {
        panic!("ractor cast failed");
    }
}

pub async fn tell(p: Params) -> Metrics {
    let (r, done) = counter(p.tell_n).await;
    let start = Instant::now();
    for _ in 0..p.tell_n {
        tell_inc(&r);
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask_add(&r, 0).await, p.tell_n);
    vec![("rate", rate(p.tell_n, took))]
}

pub async fn ask(p: Params) -> Metrics {
    let (r, _done) = counter(u64::MAX).await;
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
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

pub async fn spawn(p: Params) -> Metrics {
    let mut actors: Vec<(ActorRef<()>, tokio::task::JoinHandle<()>)> = resident_vec(p.spawn_n);
    let before = rss_bytes();
    let start = Instant::now();
    for _ in 0..p.spawn_n {
        let Ok(spawned) = Actor::spawn(None, Idle, ()).await else {
            panic!("ractor spawn failed")
        };
        actors.push(spawned);
    }
    let spawn_took = start.elapsed();
    let after = settle().await;
    let start = Instant::now();
    for (a, _) in &actors {
        a.stop(None);
    }
    for (_, h) in actors {
        let _ = h.await;
    }
    let stop_took = start.elapsed();
    spawn_metrics(p.spawn_n, spawn_took, before, after, stop_took)
}

pub async fn fanin(p: Params) -> Metrics {
    let (r, done) = counter(p.fanin_total()).await;
    let start = Instant::now();
    for _ in 0..p.fanin_senders {
        let r = r.clone();
        tokio::spawn(async move {
            for _ in 0..p.fanin_per_sender {
                tell_inc(&r);
            }
        });
    }
    done.await.expect("counter gone");
    let took = start.elapsed();
    assert_eq!(ask_add(&r, 0).await, p.fanin_total());
    vec![("rate", rate(p.fanin_total(), took))]
}

struct Node;

enum NodeMsg {
    SetNext(ActorRef<NodeMsg>, RpcReplyPort<()>),
    Hop(u64),
}

struct NodeState {
    next: Option<ActorRef<NodeMsg>>,
    done: Arc<Notify>,
}

impl Actor for Node {
    type Msg = NodeMsg;
    type State = NodeState;
    type Arguments = NodeState;

    async fn pre_start(
        &self,
        _: ActorRef<NodeMsg>,
        state: NodeState,
    ) -> Result<NodeState, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _: ActorRef<NodeMsg>,
        msg: NodeMsg,
        state: &mut NodeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NodeMsg::SetNext(next, reply) => {
                state.next = Some(next);
                let _ = reply.send(());
            }
            NodeMsg::Hop(0) => state.done.notify_one(),
            NodeMsg::Hop(hops) => {
                if state
                    .next
                    .as_ref()
                    .expect("wired")
                    .cast(NodeMsg::Hop(hops - 1))
                    .is_err()
                {
                    panic!("ractor cast failed");
                }
            }
        }
        Ok(())
    }
}

pub async fn ring(p: Params) -> Metrics {
    let done = Arc::new(Notify::new());
    let mut nodes = Vec::with_capacity(p.ring_actors);
    for _ in 0..p.ring_actors {
        let state = NodeState {
            next: None,
            done: done.clone(),
        };
        let Ok((r, _)) = Actor::spawn(None, Node, state).await else {
            panic!("ractor spawn failed")
        };
        nodes.push(r);
    }
    for (i, n) in nodes.iter().enumerate() {
        let next = nodes[(i + 1) % nodes.len()].clone();
        if !matches!(
            n.call(|reply| NodeMsg::SetNext(next, reply), None).await,
            Ok(CallResult::Success(()))
        ) {
            panic!("ractor wire failed");
        }
    }
    let start = Instant::now();
    if nodes[0].cast(NodeMsg::Hop(p.ring_hops)).is_err() {
        panic!("ractor cast failed");
    }
    done.notified().await;
    let took = start.elapsed();
    vec![("rate", rate(p.ring_hops, took))]
}
