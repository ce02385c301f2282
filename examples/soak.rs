//! A soak of conclib: what a service does over weeks, at once and for `--minutes` (default
//! 10; fractional allowed, `--minutes 0.5`), then a check that nothing grew with what was
//! done, only with what is held.
//!
//! `cargo run --release -p conclib-examples --example soak -- --minutes 10`
//!
//! It starts its own `redis-server` on a free port, an actor system with a counter, a
//! watcher, a pool of local actors and a pool of process actors, served through the Redis
//! proxy, with metrics recorded by a Prometheus recorder; then, concurrently until the time
//! is up:
//! - **sessions**: named local actors claiming `session:<n>` (a URN the proxy publishes in
//!   Redis), watched by a long-lived actor, asked, stopped or killed (50 live at a time);
//! - **processes**: process actors under `proc:<k>` spawned, asked, stopped, killed, or
//!   crashed and restarted by their restart policy then stopped;
//! - **pools**: both pools resized up and down, asked through;
//! - **clients**: `ProxyClient`s connecting, asking the counter and live sessions by URN,
//!   then shut down or dropped;
//! - **proxy**: the proxy restarted under the other system id (the old system gone), with
//!   snapshots on and off in turn;
//! - **scrapes**: the Prometheus text rendered, the system's snapshot taken.
//!
//! Every few seconds it prints a sample: RSS, open fds, threads, child processes, Redis
//! keys (`DBSIZE`) and memory, the sizes of conclib's own tables
//! ([`ActorSystem::table_sizes`](conclib::ActorSystem::table_sizes)), the Prometheus series
//! and the URN labels in use. When the load stops, it waits (at most a minute) for fds,
//! threads, children and Redis keys to come back to their baseline (taken after set-up),
//! prints `RESULT ...`, and cleans everything up. `rss_growth_kib_per_kop` is the slope of
//! RSS against operations over the last half of the run (least squares);
//! `heap_growth_kib_per_kop` the same of the bytes the allocator has handed out and not had
//! back (glibc's `mallinfo2`), which tells what the program holds from what the allocator
//! keeps in its free lists.
//!
//! The recorder is the facade's (`view::prometheus::install`): histograms with buckets, a
//! fixed few counters per series (it made them summaries until their sketches were seen
//! to grow for minutes: docs/bench-log.md, "Reliability / soak").
//!
//! At half time the load stops until everything is back to the baseline (as at the end),
//! then starts again: `quiet_heap_growth_kib_per_kop` is the heap's growth between those
//! two quiet points, per thousand operations of the second half: what the program came to
//! hold, with nothing in flight. `SOAK_PROMETHEUS_DUMP=<dir>` keeps the rendered Prometheus
//! text of every sample there, to `diff` the series of two samples.
//!
//! `--skip sessions,processes,pools,clients,proxy,metrics` leaves parts out, to find which
//! one grows (`metrics`: no recorder at all). The proxy restarts under two system ids in
//! turn; `--fresh-system-ids` gives it a new one each time, as a service whose proxies come
//! and go under ids never used again.

use conclib::AskError;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib::process::{ProcessPool, Registry, SpawnProcess};
use conclib::redis::{ProxyClient, ProxyConfig, ProxyHandle, start_proxy, start_redis};
use conclib::view::prometheus::PrometheusHandle;
use conclib::{
    Actor, ActorSystem, Context, DynActorRef, Handler, RestartLimit, SupervisionEvent, actor,
    message,
};
use conclib_examples::actors::{Counter, Increment};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Some CPU work, answered with its result.
#[message(response = u64)]
#[derive(Serialize, Deserialize)]
struct Work(u64);

/// Ends the worker's process as a crash would (an exit it did not ask for).
#[message]
#[derive(Serialize, Deserialize)]
struct Crash;

/// The process actor.
#[actor]
#[derive(Default, Serialize, Deserialize)]
struct Worker;

#[actor]
impl Worker {
    #[handle(remote)]
    fn work(&mut self, Work(n): Work) -> u64 {
        conclib_examples::actors::hash_rounds(n, 1_000)
    }

    #[handle(remote)]
    fn crash(&mut self, _: Crash) {
        std::process::exit(3);
    }
}

/// Touches a session; answers how often it was touched.
#[message(response = u64, error = String, name = "soak.Touch")]
#[derive(Serialize, Deserialize)]
struct Touch;

/// A short-lived named actor, reachable through the proxy.
#[actor]
#[derive(Default)]
struct Session {
    touched: u64,
}

#[actor]
impl Session {
    #[handle(remote)]
    fn touch(&mut self, _: Touch) -> Result<u64, String> {
        self.touched += 1;
        Ok(self.touched)
    }
}

/// A long-lived actor that watches the sessions.
struct Monitor;

impl Actor for Monitor {
    async fn on_event(&mut self, _: &mut Context<Self>, _: SupervisionEvent) {}
}

/// Watch this actor.
struct WatchIt(DynActorRef);

impl conclib::Message for WatchIt {
    type Response = ();
    type Error = Infallible;
}

impl Handler<WatchIt> for Monitor {
    async fn handle(
        &mut self,
        WatchIt(target): WatchIt,
        ctx: &mut Context<Self>,
    ) -> Result<(), Infallible> {
        ctx.watch(target);
        Ok(())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    // First: in a process actor's process, this runs the worker and never returns.
    conclib::process::init(Registry::new().actor::<Worker>());
    let (minutes, skip, fresh_ids) = args()?;
    conclib_examples::init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(
            Duration::from_secs_f64(minutes * 60.0),
            skip,
            fresh_ids,
        ))
}

/// The load tasks, for `--skip` (and `metrics`: no recorder at all).
const PARTS: [&str; 6] = [
    "sessions",
    "processes",
    "pools",
    "clients",
    "proxy",
    "metrics",
];

/// `--minutes X` (default 10), `--skip part,part` (to find what grows),
/// `--fresh-system-ids`.
fn args() -> Result<(f64, Vec<String>, bool), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut minutes = 10.0;
    let mut skip = Vec::new();
    let mut fresh_ids = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--fresh-system-ids" => {
                fresh_ids = true;
                i += 1;
            }
            "--skip" => {
                let parts = args.get(i + 1).ok_or("--skip needs a list")?;
                for part in parts.split(',') {
                    if !PARTS.contains(&part) {
                        return Err(format!("--skip: {part:?} is none of {PARTS:?}").into());
                    }
                    skip.push(part.to_owned());
                }
                i += 2;
            }
            "--minutes" => {
                minutes = args
                    .get(i + 1)
                    .ok_or("--minutes needs a number")?
                    .parse::<f64>()
                    .map_err(|e| format!("--minutes: {e}"))?;
                i += 2;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: soak [--minutes X] [--skip part,part] [--fresh-system-ids])"
                )
                .into());
            }
        }
    }
    if !(minutes > 0.0 && minutes.is_finite()) {
        return Err("--minutes must be a positive number".into());
    }
    Ok((minutes, skip, fresh_ids))
}

/// What every load task shares.
struct Load {
    system: ActorSystem,
    config: ProxyConfig,
    stop: AtomicBool,
    ops: AtomicU64,
    errors: AtomicU64,
    /// The URNs of the sessions alive now, for the clients to ask.
    live_sessions: Mutex<Vec<String>>,
    /// A new system id at each proxy restart (`--fresh-system-ids`).
    fresh_ids: bool,
}

impl Load {
    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn op(&self, n: u64) {
        self.ops.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts an error; prints the first ones.
    fn error(&self, what: &str, error: impl std::fmt::Display) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 20 {
            eprintln!("soak: {what}: {error}");
        }
    }
}

async fn run(duration: Duration, skip: Vec<String>, fresh_ids: bool) -> Result<(), BoxError> {
    let runs = |part: &str| !skip.iter().any(|s| s == part);
    let prometheus = if runs("metrics") {
        Some(conclib::view::prometheus::install()?)
    } else {
        None
    };
    let redis = start_redis(&ProxyConfig::default()).await?;
    let mut probe = RedisProbe::connect(redis.port()).await?;
    let config = redis.config(&ProxyConfig::default().with_namespace("soak"));
    let system = ActorSystem::new("soak");
    system
        .build(Counter::default())
        .urn("counter:soak")
        .spawn()
        .await?;
    let monitor = system.spawn(Monitor).await?;
    let sessions = system
        .pool(Session::default)
        .size(2)
        .urn("sessions")
        .spawn()
        .await?;
    let workers = ProcessPool::new(
        system
            .pool(|| conclib::process::build(Worker).into_actor())
            .size(2)
            .urn("workers")
            .spawn()
            .await?,
    );
    let proxy = start_proxy(&system, &proxy_config(&config, 0, fresh_ids)).await?;
    let load = Arc::new(Load {
        system: system.clone(),
        config: config.clone(),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        live_sessions: Mutex::new(Vec::new()),
        fresh_ids,
    });

    // One client round before the baseline: what is set up once per process (TLS-less
    // connection pools, lazily started threads) is not growth.
    client_round(&load, 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let baseline = sample(&load, &mut probe, &prometheus, started).await;
    let baseline_keys = probe.keys().await?;
    println!(
        "soak: {:.1} minutes; baseline {}",
        duration.as_secs_f64() / 60.0,
        baseline.line()
    );

    let proxy = Arc::new(tokio::sync::Mutex::new(Some(proxy)));
    // The load's tasks; started again after the quiet pause at half time.
    let start_load = || {
        load.stop.store(false, Ordering::Relaxed);
        let mut tasks = Vec::new();
        if runs("sessions") {
            tasks.push(tokio::spawn(sessions_loop(load.clone(), monitor.clone())));
        }
        if runs("processes") {
            tasks.push(tokio::spawn(processes_loop(load.clone())));
        }
        if runs("pools") {
            tasks.push(tokio::spawn(pools_loop(
                load.clone(),
                sessions.clone(),
                workers.clone(),
            )));
        }
        if runs("clients") {
            tasks.push(tokio::spawn(clients_loop(load.clone())));
        }
        if runs("proxy") {
            tasks.push(tokio::spawn(proxy_loop(load.clone(), proxy.clone())));
        }
        tasks
    };
    let mut tasks = start_load();

    let every = (duration / 40).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut samples = vec![baseline.clone()];
    let mut next_snapshot = Instant::now();
    // At half time the load stops until everything is back to the baseline, as at the end:
    // what the heap holds then against what it holds at the end is the growth of the second
    // half with nothing in flight (the samples under load swing by hundreds of KiB).
    let mut quiet_mid: Option<Sample> = None;
    while started.elapsed() < duration {
        if quiet_mid.is_none() && started.elapsed() >= duration / 2 {
            stop_load(&load, std::mem::take(&mut tasks)).await;
            sessions.resize(2).await?;
            workers.pool().resize(2).await?;
            let quiet = settle(&load, &mut probe, &prometheus, started, &baseline).await;
            println!("quiet   {}", quiet.line());
            quiet_mid = Some(quiet);
            tasks = start_load();
        }
        let wait = every.min(duration.saturating_sub(started.elapsed()));
        let deadline = Instant::now() + wait;
        // The live view's work: a snapshot of the system every second.
        while Instant::now() < deadline {
            if Instant::now() >= next_snapshot {
                let snapshot = load.system.snapshot();
                std::hint::black_box(snapshot.actors.len());
                next_snapshot += Duration::from_secs(1);
            }
            tokio::time::sleep(
                Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
        let s = sample(&load, &mut probe, &prometheus, started).await;
        println!("sample {}", s.line());
        samples.push(s);
    }

    // The load stops; every task cleans up what it started.
    stop_load(&load, tasks).await;
    let ops = load.ops.load(Ordering::Relaxed);
    sessions.resize(2).await?;
    workers.pool().resize(2).await?;
    let end = settle(&load, &mut probe, &prometheus, started, &baseline).await;
    println!("after   {}", end.line());
    let end_keys = probe.keys().await?;
    let new_keys: Vec<&String> = end_keys
        .iter()
        .filter(|k| !baseline_keys.contains(k))
        .collect();
    let gone_keys: Vec<&String> = baseline_keys
        .iter()
        .filter(|k| !end_keys.contains(k))
        .collect();
    if !new_keys.is_empty() || !gone_keys.is_empty() {
        println!("redis keys new since the baseline: {new_keys:?}; gone: {gone_keys:?}");
    }

    let last_half: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= duration.as_secs_f64() / 2.0)
        .collect();
    let slope = slope_kib_per_kop(&last_half, |s| s.rss_kib);
    let heap_slope = slope_kib_per_kop(&last_half, |s| s.heap_kib);
    let prom_growth = match (last_half.first(), samples.last()) {
        (Some(first), Some(last)) => last.prom_series as i64 - first.prom_series as i64,
        _ => 0,
    };
    // KiB per thousand operations between the two quiet points.
    let quiet_heap = quiet_mid.as_ref().map_or(0.0, |mid| {
        let kops = (end.ops - mid.ops) as f64 / 1000.0;
        if kops > 0.0 {
            (end.heap_kib as f64 - mid.heap_kib as f64) / kops
        } else {
            0.0
        }
    });
    let growth = |f: fn(&Sample) -> usize| f(&end) as i64 - f(&baseline) as i64;
    let table_growth: Vec<String> = end
        .tables
        .iter()
        .zip(&baseline.tables)
        .map(|((name, now), (_, before))| format!("{name}_growth={}", *now as i64 - *before as i64))
        .collect();

    // Clean up: the proxy, the system (its process actors), Redis.
    if let Some(proxy) = proxy.lock().await.take() {
        proxy.shutdown().await?;
    }
    if let Err(e) = system.shutdown(Duration::from_secs(20)).await {
        load.error("shutdown", e);
    }
    drop(probe);
    redis.shutdown()?;
    let children_left = children(std::process::id());

    println!(
        "RESULT minutes={:.2} ops={ops} rss_growth_kib_per_kop={slope:.3} \
         heap_growth_kib_per_kop={heap_slope:.3} quiet_heap_growth_kib_per_kop={quiet_heap:.3} \
         fds_growth={} \
         threads_growth={} children_growth={} redis_keys_growth={} redis_mem_growth_kib={} \
         {} prom_series_growth_last_half={prom_growth} urn_labels={} errors={} \
         children_after_cleanup={children_left}",
        duration.as_secs_f64() / 60.0,
        growth(|s| s.fds),
        growth(|s| s.threads),
        growth(|s| s.children),
        growth(|s| s.redis_keys),
        growth(|s| s.redis_mem_kib),
        table_growth.join(" "),
        end.urn_labels,
        load.errors.load(Ordering::Relaxed),
    );
    Ok(())
}

/// The proxy's configuration for its `n`th start: the other of two system ids (the
/// previous system is gone until the next restart), or with `fresh` a new one each time
/// (each system is gone for good); snapshots on and off in turn.
fn proxy_config(config: &ProxyConfig, n: u64, fresh: bool) -> ProxyConfig {
    let snapshots = n.is_multiple_of(2).then_some(Duration::from_secs(1));
    let id = if fresh { n } else { n % 2 };
    let mut config = config
        .clone()
        .with_system_id(format!("soak-{id}"))
        .with_snapshot_interval(snapshots);
    // The next system takes the URNs over at once instead of after their lease.
    config.release_on_shutdown = true;
    config
}

/// Named sessions: spawned, watched, asked, stopped or killed; 50 alive at a time.
async fn sessions_loop(load: Arc<Load>, monitor: conclib::ActorRef<Monitor>) {
    let mut live = VecDeque::new();
    let mut n = 0u64;
    while !load.done() {
        n += 1;
        let urn = format!("session:{n}");
        match load
            .system
            .build(Session::default())
            .urn(&urn)
            .spawn()
            .await
        {
            Ok(session) => {
                let _ = monitor.tell(WatchIt(session.to_dyn())).await;
                match session.ask(Touch).await {
                    Ok(_) => load.op(3),
                    Err(e) => load.error("session ask", e),
                }
                live.push_back(session);
                load.live_sessions.lock().unwrap().push(urn);
            }
            Err(e) => load.error("session spawn", e),
        }
        while live.len() > 50 {
            let old = live.pop_front().expect("not empty");
            if let Some(urn) = old.urn() {
                load.live_sessions
                    .lock()
                    .unwrap()
                    .retain(|u| u != urn.as_str());
            }
            if n.is_multiple_of(2) {
                old.stop();
            } else {
                old.kill();
            }
            old.wait_for_stop().await;
            load.op(1);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    load.live_sessions.lock().unwrap().clear();
    for session in live {
        session.stop();
        session.wait_for_stop().await;
    }
}

/// Process actors under a few URNs: spawned, asked, then stopped, killed, or crashed
/// (restarted by their policy) and stopped.
async fn processes_loop(load: Arc<Load>) {
    let mut n = 0u64;
    while !load.done() {
        n += 1;
        let spawned = load
            .system
            .process(Worker)
            .urn(format!("proc:{}", n % 3))
            .restart(RestartLimit::new(3, Duration::from_secs(60)))
            .spawn()
            .await;
        let worker = match spawned {
            Ok(worker) => worker,
            Err(e) => {
                load.error("process spawn", e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match worker.ask(Work(n)).await {
            Ok(_) => load.op(2),
            Err(e) => load.error("process ask", e),
        }
        match n % 4 {
            0 => worker.stop(),
            1 => worker.kill(),
            2 => {
                let _ = worker.tell(Crash).await;
                // Restarted by its policy behind the same ref (what was sent before the
                // crash is lost with the process; later asks wait for the new one).
                let restarted = tokio::time::timeout(Duration::from_secs(20), async {
                    while worker.restarts() == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
                .await;
                if restarted.is_err() {
                    load.error("crash", "not restarted within 20 s");
                }
                match worker.ask(Work(n)).timeout(Duration::from_secs(20)).await {
                    Ok(_) => load.op(2),
                    Err(e) => load.error("ask after a crash", e),
                }
                worker.stop();
            }
            _ => {
                // By URN, as any actor.
                if let Ok(found) = load.system.lookup(&format!("proc:{}", n % 3)) {
                    match found.ask(Work(n)).await {
                        Ok(_) => load.op(1),
                        Err(e) => load.error("process ask by URN", e),
                    }
                }
                worker.kill();
            }
        }
        if tokio::time::timeout(Duration::from_secs(30), worker.wait_for_stop())
            .await
            .is_err()
        {
            load.error("process stop", "did not stop within 30 s");
        }
        load.op(1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both pools resized up and down, and asked through.
async fn pools_loop(
    load: Arc<Load>,
    sessions: conclib::Pool<Session>,
    workers: ProcessPool<Worker>,
) {
    let mut n = 0usize;
    while !load.done() {
        n += 1;
        if let Err(e) = sessions.resize(2 + n % 7).await {
            load.error("pool resize", e);
        }
        for _ in 0..10 {
            match sessions.ask(Touch).await {
                Ok(_) => load.op(1),
                Err(e) => load.error("pool ask", e),
            }
        }
        if n.is_multiple_of(5)
            && let Err(e) = workers.pool().resize(1 + (n / 5) % 3).await
        {
            load.error("process pool resize", e);
        }
        for i in 0..5 {
            match workers.ask(Work(i)).await {
                Ok(_) => load.op(1),
                Err(e) => load.error("process pool ask", e),
            }
        }
        load.op(2);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ProxyClient`s that connect, ask, and go (shut down or dropped).
async fn clients_loop(load: Arc<Load>) {
    let mut n = 0u64;
    while !load.done() {
        n += 1;
        client_round(&load, n).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn client_round(load: &Load, n: u64) {
    let client = match ProxyClient::connect(&load.config).await {
        Ok(client) => client,
        Err(e) => {
            load.error("client connect", e);
            return;
        }
    };
    load.op(1);
    for _ in 0..3 {
        match client
            .ask("counter:soak", Increment { by: 1 })
            .timeout(Duration::from_secs(5))
            .await
        {
            Ok(_) => load.op(1),
            // The proxy restarting: its URNs are taken over within a lease.
            Err(e) => load.error("client ask", e),
        }
    }
    // A live session by URN (it may stop meanwhile: an unknown URN is no error here).
    let urn = {
        let live = load.live_sessions.lock().unwrap();
        live.get(n as usize % live.len().max(1)).cloned()
    };
    if let Some(urn) = urn {
        match client.ask(urn, Touch).timeout(Duration::from_secs(5)).await {
            Ok(_) => load.op(1),
            Err(AskError::UnknownUrn { .. } | AskError::ActorStopped) => {}
            Err(e) => load.error("client ask of a session", e),
        }
    }
    if n.is_multiple_of(2) {
        client.shutdown().await;
    } else {
        drop(client);
    }
}

/// The proxy restarted every 15 s under a new system id, snapshots on and off in turn.
async fn proxy_loop(load: Arc<Load>, proxy: Arc<tokio::sync::Mutex<Option<ProxyHandle>>>) {
    let mut n = 0;
    loop {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if load.done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        n += 1;
        let mut slot = proxy.lock().await;
        if let Some(old) = slot.take()
            && let Err(e) = old.shutdown().await
        {
            load.error("proxy shutdown", e);
        }
        match start_proxy(&load.system, &proxy_config(&load.config, n, load.fresh_ids)).await {
            Ok(new) => {
                *slot = Some(new);
                load.op(2);
            }
            Err(e) => load.error("proxy start", e),
        }
    }
}

/// Stops the load and waits (a minute at most) for its tasks, which clean up what they
/// started.
async fn stop_load(load: &Load, tasks: Vec<tokio::task::JoinHandle<()>>) {
    load.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .is_err()
        {
            load.error("stopping", "a load task did not end within a minute");
        }
    }
}

/// Samples until fds, threads, children, Redis keys and conclib's tables are back to the
/// baseline (child processes reaped, idle blocking threads retired after 10 s, leases of
/// released URNs gone), a minute at most; the last sample.
async fn settle(
    load: &Load,
    probe: &mut RedisProbe,
    prometheus: &Option<PrometheusHandle>,
    started: Instant,
    baseline: &Sample,
) -> Sample {
    let settle = Instant::now();
    loop {
        let s = sample(load, probe, prometheus, started).await;
        let back = s.fds <= baseline.fds
            && s.threads <= baseline.threads
            && s.children <= baseline.children
            && s.redis_keys <= baseline.redis_keys
            && s.tables == baseline.tables;
        if back || settle.elapsed() > Duration::from_secs(60) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One sample of the process and of Redis.
#[derive(Clone)]
struct Sample {
    /// Seconds since the baseline.
    at: f64,
    ops: u64,
    rss_kib: usize,
    /// Bytes the allocator has handed out and not had back (KiB): RSS without the
    /// allocator's free lists and fragmentation.
    heap_kib: usize,
    fds: usize,
    threads: usize,
    children: usize,
    redis_keys: usize,
    redis_mem_kib: usize,
    tables: Vec<(&'static str, usize)>,
    prom_series: usize,
    urn_labels: usize,
}

impl Sample {
    fn line(&self) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        format!(
            "t={:.0}s ops={} rss_kib={} heap_kib={} fds={} threads={} children={} redis_keys={} \
             redis_mem_kib={} {} prom_series={} urn_labels={}",
            self.at,
            self.ops,
            self.rss_kib,
            self.heap_kib,
            self.fds,
            self.threads,
            self.children,
            self.redis_keys,
            self.redis_mem_kib,
            tables.join(" "),
            self.prom_series,
            self.urn_labels
        )
    }
}

async fn sample(
    load: &Load,
    probe: &mut RedisProbe,
    prometheus: &Option<PrometheusHandle>,
    started: Instant,
) -> Sample {
    let me = std::process::id();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let (redis_keys, redis_mem) = probe.sizes().await.unwrap_or_else(|e| {
        load.error("redis probe", e);
        (0, 0)
    });
    let rendered = prometheus.as_ref().map(|p| p.render()).unwrap_or_default();
    // To see which series appear over a run: `SOAK_PROMETHEUS_DUMP=<dir>` keeps every
    // sample's text there (`<seconds>.prom`), for a `diff` of two of them.
    if let Some(dir) = std::env::var_os("SOAK_PROMETHEUS_DUMP") {
        let path =
            std::path::Path::new(&dir).join(format!("{:06}.prom", started.elapsed().as_secs()));
        if let Err(e) = std::fs::write(&path, &rendered) {
            load.error("prometheus dump", e);
        }
    }
    Sample {
        at: started.elapsed().as_secs_f64(),
        ops: load.ops.load(Ordering::Relaxed),
        rss_kib: field("VmRSS:"),
        heap_kib: heap_in_use() / 1024,
        fds,
        threads: field("Threads:"),
        children: children(me),
        redis_keys,
        redis_mem_kib: redis_mem / 1024,
        tables: load.system.table_sizes(),
        prom_series: rendered
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count(),
        urn_labels: conclib::metrics::urn_labels_in_use(),
    }
}

/// The processes whose parent is `pid` (zombies included).
fn children(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...: the command may hold spaces and parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .count()
}

/// The bytes glibc's allocator has handed out and not had back, in every arena and in
/// mapped chunks (`mallinfo2`): what the program holds, whatever RSS the allocator keeps.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> usize {
    // SAFETY: `mallinfo2` only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> usize {
    0
}

/// Least-squares slope of a size in KiB (`kib`: RSS or heap) against operations
/// (thousands).
fn slope_kib_per_kop(samples: &[&Sample], kib: fn(&Sample) -> usize) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let n = samples.len() as f64;
    let xs: Vec<f64> = samples.iter().map(|s| s.ops as f64 / 1000.0).collect();
    let ys: Vec<f64> = samples.iter().map(|s| kib(s) as f64).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// A plain RESP connection to the soak's Redis: `DBSIZE` and `INFO memory`.
struct RedisProbe {
    conn: BufReader<tokio::net::TcpStream>,
}

impl RedisProbe {
    async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(RedisProbe {
            conn: BufReader::new(stream),
        })
    }

    /// The number of keys and `used_memory` in bytes.
    async fn sizes(&mut self) -> std::io::Result<(usize, usize)> {
        let keys = self.command(&["DBSIZE"]).await?;
        let info = self.command(&["INFO", "memory"]).await?;
        let memory = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok((keys.trim().parse().unwrap_or(0), memory))
    }

    /// Every key's name, sorted (`KEYS *`: the soak's Redis holds a few dozen).
    async fn keys(&mut self) -> std::io::Result<Vec<String>> {
        self.send(&["KEYS", "*"]).await?;
        let header = self.line().await?;
        let count: usize = header
            .strip_prefix('*')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("unexpected reply {header:?}")))?;
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            let header = self.line().await?;
            keys.push(self.bulk(&header).await?);
        }
        keys.sort();
        Ok(keys)
    }

    async fn send(&mut self, args: &[&str]) -> std::io::Result<()> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.conn.get_mut().write_all(request.as_bytes()).await
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.conn.read_line(&mut line).await?;
        Ok(line.trim_end().to_owned())
    }

    /// A bulk string's content, after its `$len` header.
    async fn bulk(&mut self, header: &str) -> std::io::Result<String> {
        let len: usize = header
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("unexpected reply {header:?}")))?;
        let mut body = vec![0; len + 2];
        self.conn.read_exact(&mut body).await?;
        body.truncate(len);
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends a command; its reply as text (an integer's digits, a bulk string's content).
    async fn command(&mut self, args: &[&str]) -> std::io::Result<String> {
        self.send(args).await?;
        let mut header = String::new();
        self.conn.read_line(&mut header).await?;
        let header = header.trim_end();
        let bad = || std::io::Error::other(format!("unexpected reply {header:?}"));
        match header.as_bytes().first() {
            Some(b':' | b'+') => Ok(header[1..].to_owned()),
            Some(b'$') => {
                let len: usize = header[1..].parse().map_err(|_| bad())?;
                let mut body = vec![0; len + 2];
                self.conn.read_exact(&mut body).await?;
                body.truncate(len);
                Ok(String::from_utf8_lossy(&body).into_owned())
            }
            _ => Err(bad()),
        }
    }
}
