//! Pool dispatch overhead: the same trivial message to one actor and through a pool of two,
//! in conclib (in-process members, and members in processes of their own) and in ractor's
//! factory, alternated in one run (each case on a fresh tokio runtime with 2 workers).
//!
//! `cargo run --release --manifest-path benches/Cargo.toml --bin pools -- [--rounds N]`
//!
//! - **tell**: 1,000,000 one-way messages from one task, until the last is handled.
//! - **ask**: 100,000 sequential asks (20,000 across processes); median latency.
//!
//! Prints a markdown table, then `RESULT conclib_tell_overhead_ns=.. ractor_tell_overhead_ns=..
//! conclib_ask_overhead_us=.. ractor_ask_overhead_us=.. process_tell_overhead_ns=..
//! process_ask_overhead_us=..` (the pool's cost per message over the single actor's).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

const TELLS: u64 = 1_000_000;
const ASKS: usize = 100_000;
const MEMBERS: usize = 2;

/// Counts handled messages; wakes the waiter at the target.
#[derive(Clone)]
struct Done {
    count: Arc<AtomicU64>,
    target: u64,
    notify: Arc<Notify>,
}

impl Done {
    fn new(target: u64) -> Self {
        Done {
            count: Arc::default(),
            target,
            notify: Arc::default(),
        }
    }
    fn hit(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.notify.notify_one();
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

mod conclib_side {
    use super::*;
    use conclib::{Actor, ActorSystem, Context, Handler, Message};
    use std::convert::Infallible;

    pub struct Worker(pub Done);
    impl Actor for Worker {}

    pub struct Inc;
    impl Message for Inc {
        type Response = ();
        type Error = Infallible;
    }
    impl Handler<Inc> for Worker {
        async fn handle(&mut self, _: Inc, _: &mut Context<Self>) -> Result<(), Infallible> {
            self.0.hit();
            Ok(())
        }
    }

    pub struct Echo(pub u64);
    impl Message for Echo {
        type Response = u64;
        type Error = Infallible;
    }
    impl Handler<Echo> for Worker {
        async fn handle(
            &mut self,
            Echo(n): Echo,
            _: &mut Context<Self>,
        ) -> Result<u64, Infallible> {
            Ok(n)
        }
    }

    /// (tells per second, ask p50)
    pub async fn run(pool: bool) -> (f64, Duration) {
        let system = ActorSystem::new("bench");
        let done = Done::new(TELLS);
        let mut lat = Vec::with_capacity(ASKS);
        let tell_rate;
        if pool {
            let d = done.clone();
            let p = system
                .pool(move || Worker(d.clone()))
                .size(MEMBERS)
                .spawn()
                .await
                .unwrap();
            let start = Instant::now();
            for _ in 0..TELLS {
                p.tell(Inc).await.unwrap();
            }
            done.notify.notified().await;
            tell_rate = TELLS as f64 / start.elapsed().as_secs_f64();
            for i in 0..ASKS {
                let t = Instant::now();
                p.ask(Echo(i as u64)).await.unwrap();
                lat.push(t.elapsed());
            }
        } else {
            let a = system.spawn(Worker(done.clone())).await.unwrap();
            let start = Instant::now();
            for _ in 0..TELLS {
                a.tell(Inc).await.unwrap();
            }
            done.notify.notified().await;
            tell_rate = TELLS as f64 / start.elapsed().as_secs_f64();
            for i in 0..ASKS {
                let t = Instant::now();
                a.ask(Echo(i as u64)).await.unwrap();
                lat.push(t.elapsed());
            }
        }
        system.shutdown(Duration::from_secs(10)).await.unwrap();
        (tell_rate, median(lat))
    }
}

mod process_side {
    use super::*;
    use conclib::process::Registry;
    use conclib::{ActorSystem, Routing, actor, message};
    use serde::{Deserialize, Serialize};

    const ASKS: usize = 20_000;

    #[message]
    #[derive(Serialize, Deserialize)]
    pub struct Inc;

    #[message(response = u64)]
    #[derive(Serialize, Deserialize)]
    pub struct Echo(pub u64);

    /// Answers how many `Inc` it has handled (after all sent before it).
    #[message(response = u64)]
    #[derive(Serialize, Deserialize)]
    pub struct Count;

    #[actor]
    #[derive(Default, Serialize, Deserialize)]
    pub struct Counter(u64);

    #[actor]
    impl Counter {
        #[handle(remote)]
        fn inc(&mut self, _: Inc) {
            self.0 += 1;
        }
        #[handle(remote)]
        fn echo(&mut self, Echo(n): Echo) -> u64 {
            n
        }
        #[handle(remote)]
        fn count(&mut self, _: Count) -> u64 {
            self.0
        }
    }

    pub fn registry() -> Registry {
        Registry::new().actor::<Counter>()
    }

    /// (tells per second, ask p50): through one process actor's dyn ref (its URN), or
    /// through a pool of process actors' dyn ref (its URN, as the Redis proxy asks it).
    pub async fn run(pool: bool) -> (f64, Duration) {
        let system = ActorSystem::new("bench");
        let (target, members) = if pool {
            let p = system
                .pool(|| conclib::process::build(Counter::default()).into_actor())
                .size(MEMBERS)
                .routing(Routing::RoundRobin)
                .urn("counters")
                .spawn()
                .await
                .unwrap();
            assert_eq!(p.members().len(), MEMBERS);
            (system.lookup("counters").unwrap(), MEMBERS)
        } else {
            conclib::process::build(Counter::default())
                .system(&system)
                .urn("counter")
                .spawn()
                .await
                .unwrap();
            (system.lookup("counter").unwrap(), 1)
        };
        let start = Instant::now();
        for _ in 0..TELLS {
            target.tell(Inc).await.unwrap();
        }
        // Through the same ref, so after the tells: round-robin gives each member one.
        let mut handled = 0;
        for _ in 0..members {
            handled += target
                .ask(Count)
                .timeout(Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(handled, TELLS);
        let tell_rate = TELLS as f64 / start.elapsed().as_secs_f64();
        let mut lat = Vec::with_capacity(ASKS);
        for i in 0..ASKS {
            let t = Instant::now();
            target.ask(Echo(i as u64)).await.unwrap();
            lat.push(t.elapsed());
        }
        system.shutdown(Duration::from_secs(10)).await.unwrap();
        (tell_rate, median(lat))
    }
}

mod ractor_side {
    use super::*;
    use ractor::factory::{
        DiscardSettings, Factory, FactoryArguments, FactoryMessage, Job, JobOptions, Worker,
        WorkerBuilder, WorkerId, queues::DefaultQueue, routing::RoundRobinRouting,
    };
    use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

    pub enum Msg {
        Inc,
        Echo(u64, RpcReplyPort<u64>),
    }

    /// The single actor.
    struct Single;
    impl Actor for Single {
        type Msg = Msg;
        type State = Done;
        type Arguments = Done;
        async fn pre_start(&self, _: ActorRef<Msg>, d: Done) -> Result<Done, ActorProcessingErr> {
            Ok(d)
        }
        async fn handle(
            &self,
            _: ActorRef<Msg>,
            msg: Msg,
            done: &mut Done,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                Msg::Inc => done.hit(),
                Msg::Echo(n, reply) => {
                    let _ = reply.send(n);
                }
            }
            Ok(())
        }
    }

    /// A factory worker.
    struct FactoryWorker(Done);
    impl Worker for FactoryWorker {
        type Key = u64;
        type Message = Msg;
        type State = ();
        type Arguments = ();
        async fn pre_start(
            &self,
            _: WorkerId,
            _: &ActorRef<FactoryMessage<u64, Msg>>,
            _: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
        async fn handle(
            &self,
            _: WorkerId,
            _: &ActorRef<FactoryMessage<u64, Msg>>,
            Job { msg, key, .. }: Job<u64, Msg>,
            _: &mut (),
        ) -> Result<u64, ActorProcessingErr> {
            match msg {
                Msg::Inc => self.0.hit(),
                Msg::Echo(n, reply) => {
                    let _ = reply.send(n);
                }
            }
            Ok(key)
        }
    }

    struct Builder(Done);
    impl WorkerBuilder<FactoryWorker, ()> for Builder {
        fn build(&mut self, _: usize) -> (FactoryWorker, ()) {
            (FactoryWorker(self.0.clone()), ())
        }
    }

    fn job(msg: Msg) -> FactoryMessage<u64, Msg> {
        FactoryMessage::Dispatch(Job {
            key: 0,
            msg,
            options: JobOptions::default(),
            accepted: None,
        })
    }

    /// (tells per second, ask p50)
    pub async fn run(pool: bool) -> (f64, Duration) {
        let done = Done::new(TELLS);
        let mut lat = Vec::with_capacity(ASKS);
        let tell_rate;
        if pool {
            let definition = Factory::<
                u64,
                Msg,
                (),
                FactoryWorker,
                RoundRobinRouting<u64, Msg>,
                DefaultQueue<u64, Msg>,
            >::default();
            let (factory, handle) = Actor::spawn(
                None,
                definition,
                FactoryArguments {
                    num_initial_workers: MEMBERS,
                    queue: DefaultQueue::default(),
                    router: Default::default(),
                    capacity_controller: None,
                    dead_mans_switch: None,
                    discard_handler: None,
                    discard_settings: DiscardSettings::None,
                    lifecycle_hooks: None,
                    worker_builder: Box::new(Builder(done.clone())),
                    stats: None,
                },
            )
            .await
            .unwrap();
            let start = Instant::now();
            for _ in 0..TELLS {
                factory.cast(job(Msg::Inc)).unwrap();
            }
            done.notify.notified().await;
            tell_rate = TELLS as f64 / start.elapsed().as_secs_f64();
            for i in 0..ASKS {
                let t = Instant::now();
                let (tx, rx) = ractor::concurrency::oneshot();
                factory.cast(job(Msg::Echo(i as u64, tx.into()))).unwrap();
                rx.await.unwrap();
                lat.push(t.elapsed());
            }
            factory.stop(None);
            handle.await.unwrap();
        } else {
            let (actor, handle) = Actor::spawn(None, Single, done.clone()).await.unwrap();
            let start = Instant::now();
            for _ in 0..TELLS {
                actor.cast(Msg::Inc).unwrap();
            }
            done.notify.notified().await;
            tell_rate = TELLS as f64 / start.elapsed().as_secs_f64();
            for i in 0..ASKS {
                let t = Instant::now();
                let (tx, rx) = ractor::concurrency::oneshot();
                actor.cast(Msg::Echo(i as u64, tx.into())).unwrap();
                rx.await.unwrap();
                lat.push(t.elapsed());
            }
            actor.stop(None);
            handle.await.unwrap();
        }
        (tell_rate, median(lat))
    }
}

/// Runs `f` as a task of a fresh 2-worker runtime (as a service's code runs: on a worker,
/// not on the thread that blocks on the runtime).
fn on_runtime<F>(f: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { tokio::spawn(f).await.unwrap() })
}

fn main() {
    // First: in a process actor's process, this runs the actor and never returns.
    conclib::process::init(process_side::registry());
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    type Case = (&'static str, fn() -> (f64, Duration));
    let cases: [Case; 6] = [
        ("conclib actor", || on_runtime(conclib_side::run(false))),
        ("conclib pool of 2", || on_runtime(conclib_side::run(true))),
        ("ractor actor", || on_runtime(ractor_side::run(false))),
        ("ractor factory of 2", || on_runtime(ractor_side::run(true))),
        ("conclib process actor (by URN)", || {
            on_runtime(process_side::run(false))
        }),
        ("conclib pool of 2 process actors (by URN)", || {
            on_runtime(process_side::run(true))
        }),
    ];
    let mut results: Vec<Vec<(f64, Duration)>> = vec![Vec::new(); cases.len()];
    for round in 0..rounds {
        for (i, (name, run)) in cases.iter().enumerate() {
            let r = run();
            eprintln!(
                "round {}: {name}: {:.2}M tells/s, ask p50 {:.2} µs",
                round + 1,
                r.0 / 1e6,
                r.1.as_secs_f64() * 1e6
            );
            results[i].push(r);
        }
    }
    let med = |i: usize| {
        let mut rates: Vec<f64> = results[i].iter().map(|r| r.0).collect();
        rates.sort_by(f64::total_cmp);
        let lat = median(results[i].iter().map(|r| r.1).collect());
        (rates[rates.len() / 2], lat)
    };
    println!("| case | tell msg/s | ns per tell | ask p50 |");
    println!("|---|---:|---:|---:|");
    for (i, (name, _)) in cases.iter().enumerate() {
        let (rate, lat) = med(i);
        println!(
            "| {name} | {:.2}M | {:.0} | {:.2} µs |",
            rate / 1e6,
            1e9 / rate,
            lat.as_secs_f64() * 1e6
        );
    }
    let overhead = |single: usize, pool: usize| {
        let (rs, ls) = med(single);
        let (rp, lp) = med(pool);
        (
            1e9 / rp - 1e9 / rs,
            (lp.as_secs_f64() - ls.as_secs_f64()) * 1e6,
        )
    };
    let (ct, ca) = overhead(0, 1);
    let (rt, ra) = overhead(2, 3);
    let (pt, pa) = overhead(4, 5);
    println!(
        "RESULT conclib_tell_overhead_ns={ct:.0} ractor_tell_overhead_ns={rt:.0} conclib_ask_overhead_us={ca:.2} ractor_ask_overhead_us={ra:.2} process_tell_overhead_ns={pt:.0} process_ask_overhead_us={pa:.2}"
    );
}
