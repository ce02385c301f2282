//! Durable workflows on 3 member processes, members SIGKILLed at random points: the code of
//! `examples/durable_workflows.rs` and of its short form under `cargo test`
//! (`tests/durable_workflows.rs`).
//!
//! Two phases, each on 3 fresh member processes hosting `flow:{id}`:
//! - **chaos**: workflows of 5 journaled steps (each step's side effect notes a token,
//!   `<pid>.<n>`, in a notes file all members append to, then sleeps a little) run by
//!   concurrent callers that ask again after any failure, while a random member is
//!   SIGKILLed and replaced at random points of the run's progress (after 1 to
//!   `workflows / (max_kills + 1)` more workflows complete, so that kills land mid-run at
//!   any machine's speed), and Redis (an append-only file flushed before each answer) is
//!   SIGKILLed and started again once, half-way. Every other workflow also sleeps durably
//!   (20 ms) after its third step and waits for a promise (`approval`) before its last, which
//!   its caller resolves beside the ask: its answer must carry the value it was resolved
//!   with (`signals_lost`, must be 0). Afterwards, for each step, the token its
//!   journal recorded (the workflow's result) is looked up among the runs noted: a run
//!   noted *after* the recorded one re-executed a committed step
//!   (`reexecuted_committed`, must be 0); runs noted *before* it were cut between their
//!   side effect and their record (`reexecuted_cut`, each such step at most once per kill).
//! - **throughput**: the same handler journaled and unjournaled (its steps plain futures),
//!   in alternated rounds on the same members and URNs, no sleeps: steps per second with
//!   every URN asked at once, and each step's time inside the handler (for a journaled
//!   step, its record included) one workflow at a time (`step_overhead_*`, the step's own
//!   cost) and under that load (`loaded_step_*`, queueing included).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib::redis::durable::{Begun, Executions, Journal};
use conclib::redis::scale::Activation;
use conclib::redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use conclib::{ActorSystem, actor};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use conclib_testkit::redis_ha::Persistent;

use crate::BoxError;

/// Steps per workflow.
pub const STEPS: usize = 5;
/// The durable sleep of a workflow that waits.
const NAP: Duration = Duration::from_millis(20);
const STEP_NAMES: [&str; STEPS] = ["reserve", "charge", "pack", "ship", "notify"];

/// One workflow to run.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Flow {
    /// Its idempotency key.
    pub key: String,
    /// Journaled (a durable execution) or plain futures (the comparison).
    pub journaled: bool,
    /// How long each step's side effect sleeps, µs.
    pub step_sleep_us: u64,
    /// A durable sleep after the third step and a promise (`approval`) before the last,
    /// resolved by the caller.
    pub waits: bool,
}

/// A workflow's values (one token per step) and each step's time in the handler, µs
/// (empty when its result was recorded already).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Done {
    /// The steps' values: the token of the run that was recorded.
    pub values: Vec<String>,
    /// The value the `approval` promise was taken with (workflows that wait).
    pub approval: Option<String>,
    /// Each step's time in the handler (side effect, and record when journaled).
    pub step_us: Vec<u32>,
}

/// A workflow URN's actor.
#[actor]
pub struct Flows {
    journal: Journal,
    notes: Option<Arc<Mutex<std::fs::File>>>,
    runs: u64,
}

#[actor]
impl Flows {
    /// Runs a workflow (journaled or not).
    #[handle(remote, name = "RunFlow")]
    async fn run(&mut self, flow: Flow) -> Result<Done, String> {
        let Flows {
            journal,
            notes,
            runs,
        } = self;
        let mut values = Vec::with_capacity(STEPS);
        let mut step_us = Vec::with_capacity(STEPS);
        if !flow.journaled {
            for name in STEP_NAMES {
                let started = Instant::now();
                values.push(effect(notes, runs, &flow, name).await);
                step_us.push(micros(started));
            }
            return Ok(Done {
                values,
                approval: None,
                step_us,
            });
        }
        let mut ex = match journal
            .begin::<(Vec<String>, Option<String>)>(&flow.key)
            .await
        {
            Ok(Begun::Finished((values, approval))) => {
                return Ok(Done {
                    values,
                    approval,
                    step_us: Vec::new(),
                });
            }
            Ok(Begun::Running(ex)) => ex,
            Err(e) => return Err(e.to_string()),
        };
        let mut approval = None;
        for (i, name) in STEP_NAMES.into_iter().enumerate() {
            if flow.waits && i == 3 {
                ex.sleep("nap", NAP).await.map_err(|e| e.to_string())?;
            }
            if flow.waits && i == STEPS - 1 {
                let value: String = ex
                    .promise("approval", Duration::from_secs(30))
                    .await
                    .map_err(|e| e.to_string())?;
                approval = Some(value);
            }
            let started = Instant::now();
            let effect = effect(notes, runs, &flow, name);
            let value: String = ex.step(name, effect).await.map_err(|e| e.to_string())?;
            step_us.push(micros(started));
            values.push(value);
        }
        let result = (values, approval);
        ex.finish(&result).await.map_err(|e| e.to_string())?;
        let (values, approval) = result;
        Ok(Done {
            values,
            approval,
            step_us,
        })
    }
}

/// A step's side effect: a token of this run, noted, then a sleep.
fn effect(
    notes: &Option<Arc<Mutex<std::fs::File>>>,
    runs: &mut u64,
    flow: &Flow,
    step: &str,
) -> impl Future<Output = String> + use<> {
    {
        *runs += 1;
        let token = format!("{}.{}", std::process::id(), runs);
        let notes = notes.clone();
        let line = format!("{} {step} {token}\n", flow.key);
        let sleep = flow.step_sleep_us;
        async move {
            if let Some(notes) = notes {
                use std::io::Write;
                let _ = notes.lock().unwrap().write_all(line.as_bytes());
            }
            if sleep > 0 {
                tokio::time::sleep(Duration::from_micros(sleep)).await;
            }
            token
        }
    }
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// A member: `URL NS NAME NOTES` (NOTES `-`: none). Hosts `flow:{id}`, prints READY,
/// serves until its stdin closes.
pub async fn member(args: &[String]) -> Result<(), BoxError> {
    let [url, ns, name, notes] = args else {
        return Err("member URL NS NAME NOTES".into());
    };
    let notes = if notes == "-" {
        None
    } else {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(notes)?;
        Some(Arc::new(Mutex::new(file)))
    };
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id(name)
        .with_snapshot_interval(None);
    config.lease_ttl = Duration::from_millis(1500);
    let system = ActorSystem::new(name);
    let proxy = start_proxy(&system, &config).await?;
    proxy
        .activate("flow:{id}", move |a: Activation| {
            let notes = notes.clone();
            async move {
                Ok::<_, BoxError>(Flows {
                    journal: Journal::new(a.into_store()),
                    notes,
                    runs: 0,
                })
            }
        })
        .await?;
    println!("READY");
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await;
    proxy.shutdown().await?;
    Ok(())
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// The program members are started with, and the arguments before `URL NS NAME NOTES`.
    pub member_program: PathBuf,
    /// Arguments put before the member's own.
    pub member_args: Vec<String>,
    /// Environment variables for the members.
    pub member_env: Vec<(String, String)>,
    /// Workflows in the chaos phase.
    pub workflows: usize,
    /// Concurrent callers in the chaos phase.
    pub callers: usize,
    /// The most members killed in the chaos phase (kills stop when the workflows are done).
    pub max_kills: usize,
    /// Whether Redis (an append-only file flushed before each answer) is SIGKILLed and
    /// started again once, half-way through the chaos phase.
    pub restart_redis: bool,
    /// URNs (one caller each) in the throughput phase.
    pub urns: usize,
    /// Workflows per URN in each of the throughput phase's 4 rounds.
    pub per_round: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Workflows asked for in the chaos phase.
    pub workflows: usize,
    /// Of those, answered with all their steps.
    pub completed: usize,
    /// Members SIGKILLed.
    pub kills: usize,
    /// Times Redis was SIGKILLed and started again.
    pub redis_restarts: usize,
    /// Workflows that wait (a durable sleep and a promise), of those completed.
    pub waited: usize,
    /// Of those, answered with another value than their promise was resolved with: must be 0.
    pub signals_lost: usize,
    /// Runs of a step noted after the run its journal recorded: must be 0.
    pub reexecuted_committed: usize,
    /// Runs of a step cut between side effect and record (run again later).
    pub reexecuted_cut: usize,
    /// The most cut runs of any one step.
    pub max_cut_per_step: usize,
    /// Journaled steps per second (throughput phase, mean of its journaled rounds).
    pub steps_per_s: f64,
    /// Plain steps per second (the same handler unjournaled, alternated rounds).
    pub plain_steps_per_s: f64,
    /// A journaled step's time in the handler, one workflow at a time, p50 and p99, ms.
    pub step_p50_ms: f64,
    /// See `step_p50_ms`.
    pub step_p99_ms: f64,
    /// A plain step's time in the handler, one workflow at a time, p50 and p99, ms.
    pub plain_step_p50_ms: f64,
    /// See `plain_step_p50_ms`.
    pub plain_step_p99_ms: f64,
    /// A journaled step's time in the handler with every URN of the throughput rounds at
    /// once (queueing included), p50 and p99, ms.
    pub loaded_step_p50_ms: f64,
    /// See `loaded_step_p50_ms`.
    pub loaded_step_p99_ms: f64,
}

impl Outcome {
    /// The `RESULT` line.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "RESULT workflows={} completed={} kills={} redis_restarts={} waited={} signals_lost={} reexecuted_committed={} reexecuted_cut={} max_cut_per_step={} steps_per_s={:.0} plain_steps_per_s={:.0} step_overhead_p50_ms={:.3} step_overhead_p99_ms={:.3} journaled_step_p50_ms={:.3} journaled_step_p99_ms={:.3} plain_step_p50_ms={:.3} plain_step_p99_ms={:.3} loaded_step_p50_ms={:.3} loaded_step_p99_ms={:.3}",
            self.workflows,
            self.completed,
            self.kills,
            self.redis_restarts,
            self.waited,
            self.signals_lost,
            self.reexecuted_committed,
            self.reexecuted_cut,
            self.max_cut_per_step,
            self.steps_per_s,
            self.plain_steps_per_s,
            self.step_p50_ms - self.plain_step_p50_ms,
            self.step_p99_ms - self.plain_step_p99_ms,
            self.step_p50_ms,
            self.step_p99_ms,
            self.plain_step_p50_ms,
            self.plain_step_p99_ms,
            self.loaded_step_p50_ms,
            self.loaded_step_p99_ms,
        )
    }
}

/// A member process, killed by PID and reaped.
struct Member {
    child: tokio::process::Child,
}

impl Member {
    async fn start(
        options: &Options,
        url: &str,
        ns: &str,
        name: &str,
        notes: &str,
    ) -> Result<Member, BoxError> {
        let mut child = tokio::process::Command::new(&options.member_program)
            .args(&options.member_args)
            .args([url, ns, name, notes])
            .envs(options.member_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
        if ready.as_deref() != Some("READY") {
            return Err(format!("member {name} did not start: {ready:?}").into());
        }
        Ok(Member { child })
    }

    async fn kill(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) on a child not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(8), self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
    }
}

/// A small xorshift: where and when to kill (no dependency for it).
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Runs both phases on a Redis of its own.
///
/// # Errors
/// When Redis or a member does not start.
pub async fn run(options: &Options) -> Result<Outcome, BoxError> {
    let mut outcome = chaos(options).await?;
    let redis = start_redis(&ProxyConfig::default()).await?;
    throughput(options, &redis, &mut outcome).await?;
    Ok(outcome)
}

/// Whether chaos workflow `i` sleeps durably and waits for its promise: every other one.
fn waits(i: usize) -> bool {
    i.is_multiple_of(2)
}

/// The value chaos workflow `i`'s promise is resolved with.
fn approval(i: usize) -> String {
    format!("ok-{i}")
}

/// What happens to the chaos phase at a point of its progress.
#[derive(Clone, Copy)]
enum Fault {
    KillMember,
    RestartRedis,
}

async fn chaos(options: &Options) -> Result<Outcome, BoxError> {
    let ns = "durable-chaos";
    let mut redis = tokio::task::spawn_blocking(Persistent::start).await?;
    let config = ProxyConfig::new(redis.url()).with_namespace(ns);
    let notes_path =
        std::env::temp_dir().join(format!("conclib-durable-{}.notes", std::process::id()));
    let _ = std::fs::remove_file(&notes_path);
    let notes = notes_path.to_string_lossy().into_owned();
    let mut members = Vec::new();
    let mut started = 0;
    for _ in 0..3 {
        started += 1;
        members
            .push(Member::start(options, &config.url, ns, &format!("m{started}"), &notes).await?);
    }
    let client =
        ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(5))).await?;
    let executions = Executions::new(&client);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(tokio::sync::Notify::new());
    let results: Arc<Mutex<HashMap<String, Done>>> = Arc::default();
    let mut callers = Vec::new();
    for _ in 0..options.callers {
        let (client, executions, next, done, progress, results) = (
            client.clone(),
            executions.clone(),
            next.clone(),
            done.clone(),
            progress.clone(),
            results.clone(),
        );
        let workflows = options.workflows;
        callers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= workflows {
                    return;
                }
                let flow = Flow {
                    key: format!("w{i}"),
                    journaled: true,
                    step_sleep_us: 2_000,
                    waits: waits(i),
                };
                let until = Instant::now() + Duration::from_secs(120);
                if flow.waits {
                    // Resolved beside the ask, before or after the workflow reaches it.
                    let (executions, key) = (executions.clone(), flow.key.clone());
                    tokio::spawn(async move {
                        let (urn, approval) = (format!("flow:{i}"), approval(i));
                        while Instant::now() < until {
                            if executions
                                .resolve(&urn, &key, "approval", &approval)
                                .await
                                .is_ok()
                            {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    });
                }
                // Asked again at once after any failure, until answered.
                while Instant::now() < until {
                    if let Ok(d) = client
                        .actor::<Flows>(format!("flow:{i}"))
                        .run(flow.clone())
                        .await
                    {
                        results.lock().unwrap().insert(flow.key.clone(), d);
                        break;
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                progress.notify_one();
            }
        }));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos());
    let mut random = Random(u64::from(std::process::id()) << 32 | u64::from(nanos) | 1);
    // Points of progress, not of time: on a fast machine the workflows may all be done
    // within the first 100 ms, and a fault timed by the clock would find none.
    let mut plan = Vec::new();
    let mut at = 0;
    let gap = (options.workflows / (options.max_kills + 1)).max(1) as u64;
    for _ in 0..options.max_kills {
        at += 1 + random.below(gap) as usize;
        plan.push((at, Fault::KillMember));
    }
    if options.restart_redis {
        plan.push((options.workflows / 2, Fault::RestartRedis));
    }
    plan.sort_by_key(|(at, _)| *at);
    let (mut kills, mut redis_restarts) = (0, 0);
    for (at, fault) in plan {
        while done.load(Ordering::Relaxed) < at.min(options.workflows) {
            progress.notified().await;
        }
        if done.load(Ordering::Relaxed) >= options.workflows {
            break;
        }
        match fault {
            Fault::KillMember => {
                let victim = members.remove(random.below(members.len() as u64) as usize);
                victim.kill().await;
                kills += 1;
                started += 1;
                members.push(
                    Member::start(options, &config.url, ns, &format!("m{started}"), &notes).await?,
                );
            }
            Fault::RestartRedis => {
                redis = tokio::task::spawn_blocking(move || {
                    redis.restart();
                    redis
                })
                .await?;
                redis_restarts += 1;
            }
        }
    }
    for c in callers {
        c.await?;
    }
    for m in members {
        m.stop().await;
    }
    // Which runs each step had, in the order they were noted.
    let mut runs: HashMap<(String, String), Vec<String>> = HashMap::new();
    for line in std::fs::read_to_string(&notes_path)?.lines() {
        let mut words = line.split(' ');
        if let (Some(key), Some(step), Some(token)) = (words.next(), words.next(), words.next()) {
            runs.entry((key.to_owned(), step.to_owned()))
                .or_default()
                .push(token.to_owned());
        }
    }
    let _ = std::fs::remove_file(&notes_path);
    let results = results.lock().unwrap().clone();
    let mut outcome = Outcome {
        workflows: options.workflows,
        kills,
        redis_restarts,
        ..Outcome::default()
    };
    for (key, d) in &results {
        if d.values.len() == STEPS {
            outcome.completed += 1;
        }
        if let Some(i) = key.strip_prefix('w').and_then(|i| i.parse().ok())
            && waits(i)
        {
            outcome.waited += 1;
            if d.approval != Some(approval(i)) {
                outcome.signals_lost += 1;
            }
        }
        for (name, recorded) in STEP_NAMES.iter().zip(&d.values) {
            let noted = runs
                .get(&(key.clone(), (*name).to_owned()))
                .cloned()
                .unwrap_or_default();
            let Some(at) = noted.iter().position(|t| t == recorded) else {
                return Err(format!("{key} {name}: recorded {recorded}, never noted").into());
            };
            outcome.reexecuted_committed += noted.len() - at - 1;
            outcome.reexecuted_cut += at;
            outcome.max_cut_per_step = outcome.max_cut_per_step.max(at);
        }
    }
    Ok(outcome)
}

async fn throughput(
    options: &Options,
    redis: &conclib::redis::daemon::RedisDaemon,
    outcome: &mut Outcome,
) -> Result<(), BoxError> {
    let ns = "durable-speed";
    let config = redis.config(&ProxyConfig::default().with_namespace(ns));
    let mut members = Vec::new();
    for n in 1..=3 {
        members.push(Member::start(options, &config.url, ns, &format!("s{n}"), "-").await?);
    }
    let client =
        ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(30))).await?;
    // Loaded: every URN at once (throughput, and step times under queueing); then one URN
    // at a time (a step's own cost).
    let (per_s, mut loaded) = rounds(&client, options.urns, options.per_round, "l").await?;
    let (_, mut alone) = rounds(&client, 1, options.per_round * 4, "a").await?;
    for m in members {
        m.stop().await;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    outcome.steps_per_s = mean(&per_s[1]);
    outcome.plain_steps_per_s = mean(&per_s[0]);
    (outcome.step_p50_ms, outcome.step_p99_ms) = percentiles(&mut alone[1]);
    (outcome.plain_step_p50_ms, outcome.plain_step_p99_ms) = percentiles(&mut alone[0]);
    (outcome.loaded_step_p50_ms, outcome.loaded_step_p99_ms) = percentiles(&mut loaded[1]);
    Ok(())
}

/// Steps per second and step times (µs), plain `[0]` and journaled `[1]`: round 0
/// activates the URNs (plain, not measured), then journaled and plain rounds alternate,
/// two each, `urns` callers (one a URN) running `per_round` workflows each.
async fn rounds(
    client: &ProxyClient,
    urns: usize,
    per_round: usize,
    tag: &'static str,
) -> Result<([Vec<f64>; 2], [Vec<u32>; 2]), BoxError> {
    let mut step_us: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    let mut per_s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..5usize {
        let journaled = round % 2 == 1;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for u in 0..urns {
            let client = client.clone();
            let per_round = if round == 0 { 1 } else { per_round };
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::with_capacity(per_round * STEPS);
                for j in 0..per_round {
                    let flow = Flow {
                        key: format!("{tag}{round}-{u}-{j}"),
                        journaled,
                        step_sleep_us: 0,
                        waits: false,
                    };
                    let d = client
                        .actor::<Flows>(format!("flow:{u}"))
                        .run(flow)
                        .await
                        .map_err(|e| e.to_string())?;
                    times.extend(d.step_us);
                }
                Ok::<_, String>(times)
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.extend(t.await?.map_err(|e| format!("a workflow failed: {e}"))?);
        }
        if round == 0 {
            continue;
        }
        let secs = started.elapsed().as_secs_f64();
        let at = usize::from(journaled);
        per_s[at].push((urns * per_round * STEPS) as f64 / secs);
        step_us[at].extend(times);
    }
    Ok((per_s, step_us))
}

/// p50 and p99 of `us` (µs), in ms.
fn percentiles(us: &mut [u32]) -> (f64, f64) {
    if us.is_empty() {
        return (0.0, 0.0);
    }
    us.sort_unstable();
    let at = |q: f64| f64::from(us[((us.len() - 1) as f64 * q) as usize]) / 1000.0;
    (at(0.50), at(0.99))
}
