//! Redis fails over under load: 3 member systems (processes of their own) activate
//! `acct:{id}` counters that save every increment through the fenced `StateStore`, 64
//! callers ask and tell them without pause, and the Redis primary is SIGKILLed after its
//! replicas were stalled for a while, so that the replica promoted lacks its last writes.
//! What became of single activation, state and accepted tells across each promotion is
//! counted and printed as one `RESULT` line per topology (`examples/redis_failover.rs`; the
//! short form is `examples/tests/redis_failover.rs`).
//!
//! What is counted, from what the callers saw and the members printed:
//! - `splits`: an activation answered ok after a later activation of the same URN had
//!   answered ok (two systems handling one URN at once);
//! - `state_rollbacks`: an activation loaded a count lower than one a caller had been
//!   answered with (each ask increments by one and answers the count saved);
//! - `lost_accepted`: tells reported accepted that no member handled; `repeated`: tells
//!   handled twice;
//! - `first_ok_after_promotion_ms`: the longest wait, over the promotions, from a replica
//!   answering as the primary to the next ok answer;
//! - `overruns`: calls that returned later than their timeout + 250 ms, less the time the
//!   driver's own runtime was held up meanwhile (a timer task measures how late its 10 ms
//!   ticks come; on a loaded machine the process itself may not run for a while, which is
//!   no call's doing); `runtime_stall_ms` is the longest such hold-up.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib::redis::{
    Durability, ProxyClient, ProxyConfig,
    scale::{Activation, StateStore},
    start_proxy,
};
use conclib::{ActorSystem, AskError, actor};
use conclib_testkit::redis_ha;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::BoxError;

/// How many `acct:{id}` URNs the callers use.
const URNS: u64 = 30;
/// Each call's timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How late past its timeout a call may return before it counts as an overrun.
const OVERRUN_MARGIN: Duration = Duration::from_millis(250);

/// What an account's activation keeps in its store.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Saved {
    count: u64,
    turn: u64,
}

/// An activated counter: every increment is saved (fenced) before it is answered.
#[actor]
struct Account {
    saved: Saved,
    /// This activation's id: who answered.
    id: u64,
    store: StateStore,
}

#[actor]
impl Account {
    /// Adds one; answers (this activation's id, the count saved).
    #[handle(remote)]
    async fn incr(&mut self) -> Result<(u64, u64), String> {
        let next = Saved {
            count: self.saved.count + 1,
            turn: self.saved.turn + 1,
        };
        self.store.save(&next).await.map_err(|e| e.to_string())?;
        self.saved = next;
        Ok((self.id, next.count))
    }

    /// A tell: saved as a turn, then reported handled on stdout.
    #[handle(remote)]
    async fn note(&mut self, tell: u64) -> Result<(), String> {
        let next = Saved {
            count: self.saved.count,
            turn: self.saved.turn + 1,
        };
        self.store.save(&next).await.map_err(|e| e.to_string())?;
        self.saved = next;
        println!("TOLD {tell}");
        Ok(())
    }
}

/// The durability level named on the command line: `primary`, or `replicas` (WAIT 1).
pub fn durability(name: &str) -> Durability {
    match name {
        "replicas" => Durability::Replicas {
            n: 1,
            timeout: Duration::from_millis(500),
        },
        _ => Durability::Primary,
    }
}

/// `member URL NAME DURABILITY`: serves `acct:{id}` until stdin closes.
pub async fn member(url: &str, name: &str, level: &str) -> Result<(), BoxError> {
    let mut config = ProxyConfig::new(url)
        .with_namespace("failover")
        .with_system_id(name)
        .with_snapshot_interval(None);
    config.durability = durability(level);
    // Each command fails within a call's time while Redis fails over.
    config.command_timeout = Duration::from_secs(2);
    let system = ActorSystem::new(name);
    let proxy = start_proxy(&system, &config).await?;
    let ids = Arc::new(AtomicU64::new(u64::from(std::process::id()) << 20));
    proxy
        .activate("acct:{id}", move |a: Activation| {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            async move {
                let saved = a.store().load::<Saved>().await?.unwrap_or_default();
                println!("ACTIVATED {} {id} {}", a.urn(), saved.count);
                Ok::<_, BoxError>(Account {
                    saved,
                    id,
                    store: a.into_store(),
                })
            }
        })
        .never_passivate()
        .await?;
    println!("READY");
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let _ = stdin_closed.await;
    let _ = tokio::time::timeout(Duration::from_secs(5), proxy.shutdown()).await;
    Ok(())
}

/// Which topology to fail over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A primary, 2 replicas, 3 sentinels.
    Sentinel,
    /// 3 primaries with a replica each.
    Cluster,
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The program to start members with, and the arguments before `member`'s own.
    pub member_program: std::path::PathBuf,
    /// Arguments put before `URL NAME DURABILITY`.
    pub member_args: Vec<String>,
    /// Environment variables for the members.
    pub member_env: Vec<(String, String)>,
    /// Which topology fails over.
    pub topology: Topology,
    /// How many promotions.
    pub promotions: usize,
    /// How long the replicas are stalled before the primary is killed.
    pub lag: Duration,
    /// `primary` or `replicas`.
    pub durability: String,
    /// Concurrent callers.
    pub callers: usize,
}

/// What a run counted.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Promotions done.
    pub promotions: usize,
    /// Ok answers of an activation after a later one of its URN answered.
    pub splits: u64,
    /// Activations that loaded a count lower than one acknowledged.
    pub state_rollbacks: u64,
    /// Tells reported accepted that no member handled.
    pub lost_accepted: u64,
    /// Tells handled more than once.
    pub repeated: u64,
    /// The longest wait from a promotion to the next ok answer.
    pub first_ok_after_promotion_ms: u128,
    /// Calls that returned past their timeout + 250 ms (the driver's stalls excepted).
    pub overruns: u64,
    /// The longest the driver's runtime was held up (its timer ticks came late).
    pub runtime_stall_ms: u128,
    /// Errors other than the typed ones a caller may meet (`Unavailable`, `Timeout`, the
    /// handler's own).
    pub untyped: u64,
    /// Asks answered ok.
    pub asks_ok: u64,
    /// Tells reported accepted.
    pub tells_accepted: u64,
    /// Failed calls by kind.
    pub errors: BTreeMap<String, u64>,
}

impl Outcome {
    /// The `RESULT` line.
    pub fn line(&self, topology: Topology, durability: &str) -> String {
        format!(
            "RESULT topology={} promotions={} splits={} state_rollbacks={} lost_accepted={} repeated={} first_ok_after_promotion_ms={} overruns={} durability={} asks_ok={} tells_accepted={} untyped_errors={} runtime_stall_ms={}",
            match topology {
                Topology::Sentinel => "sentinel",
                Topology::Cluster => "cluster",
            },
            self.promotions,
            self.splits,
            self.state_rollbacks,
            self.lost_accepted,
            self.repeated,
            self.first_ok_after_promotion_ms,
            self.overruns,
            durability,
            self.asks_ok,
            self.tells_accepted,
            self.untyped,
            self.runtime_stall_ms,
        )
    }
}

/// What the callers and members reported.
#[derive(Default)]
struct Tally {
    /// Per URN: the highest count answered ok, and by which activation.
    acked: Mutex<HashMap<String, u64>>,
    /// Per URN: the activations in the order they first answered ok.
    answering: Mutex<HashMap<String, Vec<u64>>>,
    splits: AtomicU64,
    rollbacks: AtomicU64,
    /// Tells reported accepted.
    accepted: Mutex<HashSet<u64>>,
    /// Tells handled, with how often.
    handled: Mutex<HashMap<u64, u64>>,
    overruns: AtomicU64,
    /// When the driver's runtime was held up: (when it noticed, by how much).
    stalls: Mutex<Vec<(Instant, Duration)>>,
    untyped: AtomicU64,
    asks_ok: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    /// When each ok answer came, in order.
    ok_at: Mutex<Vec<Instant>>,
}

impl Tally {
    fn answered(&self, urn: &str, activation: u64, count: u64) {
        self.ok_at.lock().unwrap().push(Instant::now());
        self.asks_ok.fetch_add(1, Ordering::Relaxed);
        {
            let mut acked = self.acked.lock().unwrap();
            let max = acked.entry(urn.to_owned()).or_default();
            *max = (*max).max(count);
        }
        let mut answering = self.answering.lock().unwrap();
        let order = answering.entry(urn.to_owned()).or_default();
        match order.iter().position(|&a| a == activation) {
            None => order.push(activation),
            // An earlier activation answers after a later one did.
            Some(i) if i + 1 < order.len() => {
                self.splits.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {}
        }
    }

    /// The longest hold-up of the runtime noticed since `since`.
    fn stalled_since(&self, since: Instant) -> Duration {
        let stalls = self.stalls.lock().unwrap();
        stalls
            .iter()
            .filter(|(at, _)| *at > since)
            .map(|(_, lag)| *lag)
            .max()
            .unwrap_or_default()
    }

    fn activated(&self, urn: &str, loaded: u64) {
        let acked = self.acked.lock().unwrap().get(urn).copied().unwrap_or(0);
        if loaded < acked {
            eprintln!("rollback: {urn} loaded {loaded} where {acked} was acknowledged");
            self.rollbacks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn failed(&self, error: &AskError<String>) {
        if std::env::var_os("FAILOVER_TRACE").is_some() {
            static LAST: Mutex<Option<Instant>> = Mutex::new(None);
            let mut last = LAST.lock().unwrap();
            if last.is_none_or(|l| l.elapsed() > Duration::from_millis(200)) {
                *last = Some(Instant::now());
                eprintln!("{:?} failed: {error}", std::time::SystemTime::now());
            }
        }
        let kind = match error {
            AskError::Unavailable(_) => "unavailable",
            AskError::Timeout(_) => "timeout",
            AskError::Handler(_) => "handler",
            other => {
                eprintln!("untyped error: {other}");
                self.untyped.fetch_add(1, Ordering::Relaxed);
                "other"
            }
        };
        *self.errors.lock().unwrap().entry(kind.into()).or_default() += 1;
    }
}

/// A member process, killed by PID and reaped on drop.
struct Member {
    child: tokio::process::Child,
}

impl Member {
    async fn start(
        options: &Options,
        url: &str,
        name: &str,
        tally: &Arc<Tally>,
    ) -> Result<Member, BoxError> {
        let mut child = tokio::process::Command::new(&options.member_program)
            .args(&options.member_args)
            .args([url, name, &options.durability])
            .envs(options.member_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
        if ready.as_deref() != Some("READY") {
            // Its own error went to stderr; its exit status says how it ended.
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return Err(format!("member {name} did not start: {ready:?}, exit {status:?}").into());
        }
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["ACTIVATED", urn, _id, loaded] => {
                        tally.activated(urn, loaded.parse().unwrap_or(0));
                    }
                    ["TOLD", tell] => {
                        if let Ok(tell) = tell.parse() {
                            *tally.handled.lock().unwrap().entry(tell).or_default() += 1;
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(Member { child })
    }

    async fn stop(mut self) {
        // Closing stdin asks it to shut down; a kill by PID after a bounded wait.
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(8), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The topology, started.
enum Running {
    Sentinel(redis_ha::Sentinel),
    Cluster(redis_ha::Cluster),
}

/// Runs the scenario on one topology and counts what went wrong.
pub async fn run(options: &Options) -> Result<Outcome, BoxError> {
    let topology = options.topology;
    let running = tokio::task::spawn_blocking(move || match topology {
        Topology::Sentinel => Running::Sentinel(redis_ha::Sentinel::start()),
        Topology::Cluster => Running::Cluster(redis_ha::Cluster::start()),
    })
    .await?;
    let url = match &running {
        Running::Sentinel(s) => s.url(),
        Running::Cluster(c) => c.url(),
    };
    let running = Arc::new(Mutex::new(Some(running)));
    let tally = Arc::new(Tally::default());
    let mut members = Vec::new();
    for name in ["m-1", "m-2", "m-3"] {
        members.push(Member::start(options, &url, name, &tally).await?);
    }
    let mut config = ProxyConfig::new(url.clone())
        .with_namespace("failover")
        .with_ask_timeout(CALL_TIMEOUT);
    config.durability = durability(&options.durability);
    config.command_timeout = Duration::from_secs(2);
    let client = ProxyClient::connect(&config).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let (tally, stop) = (tally.clone(), stop.clone());
        tokio::spawn(async move {
            const TICK: Duration = Duration::from_millis(10);
            while !stop.load(Ordering::Relaxed) {
                let before = Instant::now();
                tokio::time::sleep(TICK).await;
                let late = before.elapsed().saturating_sub(TICK);
                if late > Duration::from_millis(50) {
                    tally.stalls.lock().unwrap().push((Instant::now(), late));
                }
            }
        })
    };
    let next_tell = Arc::new(AtomicU64::new(1));
    let mut callers = Vec::new();
    for c in 0..options.callers {
        let (client, tally, stop, next_tell) = (
            client.clone(),
            tally.clone(),
            stop.clone(),
            next_tell.clone(),
        );
        callers.push(tokio::spawn(async move {
            let mut i = c as u64;
            while !stop.load(Ordering::Relaxed) {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let urn = format!("acct:{}", (i >> 33) % URNS);
                let started = Instant::now();
                let account = client.actor::<Account>(urn.clone());
                if (i >> 20).is_multiple_of(4) {
                    let tell = next_tell.fetch_add(1, Ordering::Relaxed);
                    match account.note(tell).await {
                        Ok(()) => {
                            tally.accepted.lock().unwrap().insert(tell);
                        }
                        Err(e) => tally.failed(&e),
                    }
                } else {
                    match account.incr().await {
                        Ok((activation, count)) => tally.answered(&urn, activation, count),
                        Err(e) => tally.failed(&e),
                    }
                }
                let took = started.elapsed();
                if took > CALL_TIMEOUT + OVERRUN_MARGIN {
                    let stalled = tally.stalled_since(started);
                    eprintln!("overrun: {took:?} (the runtime stalled {stalled:?} meanwhile)");
                    if took.saturating_sub(stalled) > CALL_TIMEOUT + OVERRUN_MARGIN {
                        tally.overruns.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // A call that failed fast must not starve the runtime's other tasks.
                tokio::task::yield_now().await;
            }
        }));
    }

    // Warm up: every URN activated.
    let warm = Instant::now() + Duration::from_secs(20);
    while tally.acked.lock().unwrap().len() < URNS as usize && Instant::now() < warm {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut first_ok_max = 0u128;
    let mut promotions = 0;
    for p in 0..options.promotions {
        let lag = options.lag;
        let holder = running.clone();
        let promotion = tokio::task::spawn_blocking(move || {
            let mut guard = holder.lock().unwrap();
            match guard.as_mut().expect("running") {
                Running::Sentinel(s) => s.promote_with_lag(lag),
                Running::Cluster(c) => c.promote_with_lag(((p % 3) * 5461 + 100) as u16, lag),
            }
        })
        .await?;
        promotions += 1;
        // The first ok after the promotion (the topology settled since; answers came).
        let deadline = promotion.promoted_at + Duration::from_secs(20);
        let first_ok = loop {
            let first = {
                let ok_at = tally.ok_at.lock().unwrap();
                let i = ok_at.partition_point(|&at| at <= promotion.promoted_at);
                ok_at.get(i).copied()
            };
            if let Some(at) = first {
                break at.duration_since(promotion.promoted_at).as_millis();
            }
            if Instant::now() > deadline {
                break u128::MAX;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        first_ok_max = first_ok_max.max(first_ok);
        eprintln!(
            "promotion {}: promoted {} ms after the kill, first ok {} ms after it",
            p + 1,
            promotion
                .promoted_at
                .duration_since(promotion.killed_at)
                .as_millis(),
            first_ok
        );
        // Load between promotions.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watch.await;
    for caller in callers {
        let _ = tokio::time::timeout(Duration::from_secs(5), caller).await;
    }
    // Tells accepted late are handled within a few seconds, or not at all.
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        let lost = {
            let handled = tally.handled.lock().unwrap();
            tally
                .accepted
                .lock()
                .unwrap()
                .iter()
                .filter(|t| !handled.contains_key(t))
                .count()
        };
        if lost == 0 || Instant::now() > settle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.shutdown().await;
    for m in members {
        m.stop().await;
    }
    let _ = tokio::task::spawn_blocking(move || drop(running.lock().unwrap().take())).await;

    let handled = tally.handled.lock().unwrap().clone();
    let accepted = tally.accepted.lock().unwrap().clone();
    Ok(Outcome {
        promotions,
        splits: tally.splits.load(Ordering::Relaxed),
        state_rollbacks: tally.rollbacks.load(Ordering::Relaxed),
        lost_accepted: accepted.iter().filter(|t| !handled.contains_key(t)).count() as u64,
        repeated: handled.values().filter(|&&n| n > 1).count() as u64,
        first_ok_after_promotion_ms: first_ok_max,
        overruns: tally.overruns.load(Ordering::Relaxed),
        runtime_stall_ms: tally
            .stalls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, lag)| lag.as_millis())
            .max()
            .unwrap_or(0),
        untyped: tally.untyped.load(Ordering::Relaxed),
        asks_ok: tally.asks_ok.load(Ordering::Relaxed),
        tells_accepted: accepted.len() as u64,
        errors: tally.errors.lock().unwrap().clone(),
    })
}

/// What one round of the cost measurement saw.
#[derive(Debug, Clone)]
pub struct CostRound {
    /// The durability level of the member.
    pub durability: String,
    /// Asks answered a second.
    pub asks_per_s: f64,
    /// Median ask latency, ms.
    pub p50_ms: f64,
    /// 99th percentile ask latency, ms.
    pub p99_ms: f64,
}

/// The cost of a durability level on the normal path: a primary with one replica, one
/// member process serving `acct:{id}` (each ask one fenced state write), 64 asks in
/// flight for `seconds`; `rounds` rounds of each level, alternated, in one run.
pub async fn cost(
    options: &Options,
    rounds: usize,
    seconds: u64,
) -> Result<Vec<CostRound>, BoxError> {
    let redis = tokio::task::spawn_blocking(redis_ha::Replicated::start).await?;
    let url = redis.url();
    let mut out = Vec::new();
    for round in 0..rounds * 2 {
        let level = if round % 2 == 0 {
            "primary"
        } else {
            "replicas"
        };
        let options = Options {
            durability: level.into(),
            ..options.clone()
        };
        let tally = Arc::new(Tally::default());
        let member = Member::start(&options, &url, &format!("cost-{round}"), &tally).await?;
        let config = ProxyConfig::new(url.clone())
            .with_namespace("failover")
            .with_ask_timeout(Duration::from_secs(5));
        let client = ProxyClient::connect(&config).await?;
        // Activated first, outside the measure.
        for u in 0..URNS {
            let _ = client.actor::<Account>(format!("acct:{u}")).incr().await;
        }
        let until = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..options.callers {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut u = c as u64;
                while Instant::now() < until {
                    u = (u + 7) % URNS;
                    let started = Instant::now();
                    if client
                        .actor::<Account>(format!("acct:{u}"))
                        .incr()
                        .await
                        .is_ok()
                    {
                        latencies.push(started.elapsed());
                    }
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await?);
        }
        all.sort_unstable();
        let pick = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        out.push(CostRound {
            durability: durability(level).label(),
            asks_per_s: all.len() as f64 / seconds as f64,
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
        });
        client.shutdown().await;
        member.stop().await;
    }
    tokio::task::spawn_blocking(move || drop(redis)).await?;
    Ok(out)
}
