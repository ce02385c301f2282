//! Redis fails over under load: 3 member systems (processes of their own, `member.rs`)
//! activate `acct:{id}` counters that save every increment through the fenced `StateStore`,
//! serve the `ledger` group each with an actor of its own, and fire reminders; 64 callers
//! ask and tell the counters and the group, register one-shot reminders and publish to a
//! durable topic that a subscriber group reads, without pause; and the Redis primary is
//! SIGKILLed after its replicas were stalled for a while, so that the replica promoted lacks
//! its last writes. What became of single activation, state, accepted tells, registered
//! reminders and published events across each promotion is counted and printed as one
//! `RESULT` line per topology (`examples/redis_failover.rs`; the short form is
//! `examples/tests/redis_failover.rs`).
//!
//! What is counted, from what the callers saw and the members printed:
//! - `splits`: an activation answered ok after a later activation of the same URN had
//!   answered ok (two systems handling one URN at once), by when the callers got the
//!   answers (the host's clock; a Python caller's answers are read later than they came,
//!   so they carry their time; each split is printed, `split:`);
//! - `state_rollbacks`: an activation loaded a count lower than one a caller had been
//!   answered with before the load, by the host's clock (each ask increments by one and
//!   answers the count saved; a member's line is read later than it was written, so order
//!   of reading would count answers given after the load);
//! - `lost_accepted`: tells (to a counter or to the group) reported accepted that no member
//!   handled; `repeated`: tells handled twice;
//! - `reminders_lost`: reminders whose registration was acknowledged that never fired
//!   (`reminders_repeated`: fired twice, which at least once allows);
//! - `events_lost`: durable events whose publish was acknowledged that the subscriber group
//!   never received (`events_repeated`: received twice);
//! - `first_ok_after_promotion_ms`: the longest wait, over the promotions, from a replica
//!   answering as the primary to the next ok answer;
//! - `overruns`: calls that returned later than their timeout + 250 ms, less the time the
//!   driver's own runtime was held up meanwhile (a timer task measures how late its 10 ms
//!   ticks come; on a loaded machine the process itself may not run for a while, which is
//!   no call's doing); `runtime_stall_ms` is the longest such hold-up. The Python callers'
//!   (`py_overruns`) likewise, less the longest hold-up of their event loop in which their
//!   process used less CPU than the hold-up lasted (`py_stall_ms`: the longest met by a
//!   call past its bound); every call past its bound, counted or not, is printed with its
//!   kind, outcome and the failover's phase it met (`overrun detail:`).

mod cost;
mod member;
pub(crate) mod python;
mod tally;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclib::redis::reminders::{Reminder, ReminderError, Reminders};
use conclib::redis::topics::{Topic, TopicError};
use conclib::redis::{ProxyClient, ProxyConfig};
use conclib_testkit::redis_ha;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::BoxError;
pub use cost::{CostRound, cost};
pub use member::{Account, Ledger, durability, member};
use member::{AccountApi as _, LedgerApi as _};
use tally::{Overrun, Tally, lost_and_repeated};

/// How many `acct:{id}` URNs the callers use.
const URNS: u64 = 30;
/// Each ask's and tell's timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// What bounds a reminder's registration and a publish: the command timeout (2 s, as the
/// members and the driver set it), the write and the `WAIT`s after it together (the crate
/// docs, "Redis topologies and durability").
const COMMAND_BOUND: Duration = Duration::from_secs(2);
/// How late past its bound a call may return before it counts as an overrun.
const OVERRUN_MARGIN: Duration = Duration::from_millis(250);
/// How long after its registration a reminder is due.
const REMINDER_DELAY: Duration = Duration::from_millis(500);
/// The durable topic the callers publish to, and the subscriber group that reads it.
const TOPIC: &str = "failover.events";
const AUDIT_GROUP: &str = "audit";

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
    /// Python callers besides (`callers.py`; none without an interpreter that imports
    /// `conclib`).
    pub python_callers: usize,
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
    /// Reminders registered (acknowledged to the caller).
    pub reminders_registered: u64,
    /// Of those, reminders that never fired.
    pub reminders_lost: u64,
    /// Reminders that fired more than once.
    pub reminders_repeated: u64,
    /// Durable events published (acknowledged to the publisher).
    pub events_published: u64,
    /// Of those, events the subscriber group never received.
    pub events_lost: u64,
    /// Events the group received more than once.
    pub events_repeated: u64,
    /// Asks to the `ledger` group answered ok.
    pub group_asks_ok: u64,
    /// Python callers that ran (0: no interpreter imports `conclib`).
    pub python_callers: u64,
    /// Their asks answered ok.
    pub py_asks_ok: u64,
    /// Their tells reported accepted.
    pub py_tells_accepted: u64,
    /// Of those, tells that reached no member's handler (at the primary level the Python
    /// client waits for no replica).
    pub py_lost_accepted: u64,
    /// Of those, tells a member's handler took and failed on (its own save failed: not
    /// replicated in time, or Redis away), and that were not handled again.
    pub py_handler_failed: u64,
    /// Their calls that returned past their timeout + 250 ms, less the time their process
    /// was not run meanwhile (its event loop held up while it used no CPU).
    pub py_overruns: u64,
    /// The longest such hold-up met by a Python call past its timeout + 250 ms.
    pub py_stall_ms: u128,
    /// The longest wait from a promotion to the next ok answer.
    pub first_ok_after_promotion_ms: u128,
    /// Calls that returned past their bound + 250 ms (the driver's stalls excepted).
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
            "RESULT topology={} promotions={} splits={} state_rollbacks={} lost_accepted={} repeated={} reminders_lost={} events_lost={} first_ok_after_promotion_ms={} overruns={} durability={} asks_ok={} tells_accepted={} group_asks_ok={} reminders_registered={} reminders_repeated={} events_published={} events_repeated={} python_callers={} py_asks_ok={} py_tells_accepted={} py_lost_accepted={} py_handler_failed={} py_overruns={} untyped_errors={} runtime_stall_ms={} py_stall_ms={}",
            match topology {
                Topology::Sentinel => "sentinel",
                Topology::Cluster => "cluster",
            },
            self.promotions,
            self.splits,
            self.state_rollbacks,
            self.lost_accepted,
            self.repeated,
            self.reminders_lost,
            self.events_lost,
            self.first_ok_after_promotion_ms,
            self.overruns,
            durability,
            self.asks_ok,
            self.tells_accepted,
            self.group_asks_ok,
            self.reminders_registered,
            self.reminders_repeated,
            self.events_published,
            self.events_repeated,
            self.python_callers,
            self.py_asks_ok,
            self.py_tells_accepted,
            self.py_lost_accepted,
            self.py_handler_failed,
            self.py_overruns,
            self.untyped,
            self.runtime_stall_ms,
            self.py_stall_ms,
        )
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
                    ["ACTIVATED", urn, _id, loaded, at] => {
                        tally.activated(urn, loaded.parse().unwrap_or(0), at.parse().unwrap_or(0));
                    }
                    ["TOLD", tell] => {
                        if let Ok(tell) = tell.parse() {
                            *tally.handled.lock().unwrap().entry(tell).or_default() += 1;
                        }
                    }
                    ["NOTEFAILED", tell, at, why @ ..] => {
                        if let Ok(tell) = tell.parse() {
                            tally
                                .note_failed
                                .lock()
                                .unwrap()
                                .insert(tell, (at.parse().unwrap_or(0), why.join(" ")));
                        }
                    }
                    ["FIRED", name] => {
                        *tally
                            .fired
                            .lock()
                            .unwrap()
                            .entry((*name).to_owned())
                            .or_default() += 1;
                    }
                    _ => {}
                }
            }
        });
        Ok(Member { child })
    }

    /// Its process id (0 once reaped).
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
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

/// One caller's turn: which call it makes.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// A tell to a counter.
    Tell,
    /// A tell to the `ledger` group.
    GroupTell,
    /// An ask to the group.
    GroupAsk,
    /// A one-shot reminder registered for a counter.
    Remind,
    /// An event published to the durable topic.
    Publish,
    /// An increment asked of a counter.
    Incr,
}

impl Call {
    /// A quarter tells, one in sixteen each of the others, the rest increments; with
    /// `FAILOVER_REMINDERS=N` (1 to 9), N in sixteen are reminders instead of increments
    /// (to trace the reminders' paths with more of them).
    fn of(draw: u64) -> Call {
        static REMINDERS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let reminders = *REMINDERS.get_or_init(|| {
            std::env::var("FAILOVER_REMINDERS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1u64)
                .clamp(1, 9)
        });
        match draw % 16 {
            0..=2 => Call::Tell,
            3 => Call::GroupTell,
            4 => Call::GroupAsk,
            6 => Call::Publish,
            n if n == 5 || n >= 16 - (reminders - 1) => Call::Remind,
            _ => Call::Incr,
        }
    }
}

/// What every caller shares.
struct Load {
    client: ProxyClient,
    reminders: Reminders,
    topic: Topic,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    /// Numbers tells, reminders and events (each unique in the run).
    next: AtomicU64,
}

impl Load {
    /// Makes one call; the bound its duration is held to, and how it ended (`ok`, else
    /// the error's kind).
    async fn call(&self, call: Call, urn: String) -> (Duration, &'static str) {
        let tally = &self.tally;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut outcome = "ok";
        match call {
            Call::Tell => match self.client.actor::<Account>(urn).note(n).await {
                Ok(()) => drop(tally.accepted.lock().unwrap().insert(n)),
                Err(e) => outcome = tally.failed(&e),
            },
            Call::GroupTell => match self.client.actor::<Ledger>(member::GROUP).record(n).await {
                Ok(()) => drop(tally.accepted.lock().unwrap().insert(n)),
                Err(e) => outcome = tally.failed(&e),
            },
            Call::GroupAsk => match self.client.actor::<Ledger>(member::GROUP).whose().await {
                Ok(_) => {
                    tally.group_asks_ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => outcome = tally.failed(&e),
            },
            Call::Remind => {
                let name = format!("r{n}");
                let reminder = Reminder::after(name.clone(), REMINDER_DELAY);
                let began = tally::unix_ms();
                match self.reminders.register(&urn, reminder).await {
                    Ok(_) => {
                        let at = tally::unix_ms();
                        let registration = (urn.clone(), began, at);
                        tally
                            .registered_at
                            .lock()
                            .unwrap()
                            .insert(name.clone(), registration);
                        tally.registered.lock().unwrap().insert(name);
                    }
                    Err(ReminderError::Unavailable(_)) => {
                        outcome = tally.failed_kind("unavailable");
                    }
                    Err(e) => outcome = tally.failed_kind(&e.to_string()),
                }
                return (COMMAND_BOUND, outcome);
            }
            Call::Publish => {
                match self.client.topics().publish(&self.topic, &n).await {
                    Ok(()) => drop(tally.published.lock().unwrap().insert(n)),
                    Err(TopicError::Unavailable(_)) => {
                        outcome = tally.failed_kind("unavailable");
                    }
                    Err(e) => outcome = tally.failed_kind(&e.to_string()),
                }
                return (COMMAND_BOUND, outcome);
            }
            Call::Incr => match self.client.actor::<Account>(urn.clone()).incr().await {
                Ok((activation, count)) => {
                    tally.answered(&urn, activation, count, tally::unix_ms());
                }
                Err(e) => outcome = tally.failed(&e),
            },
        }
        (CALL_TIMEOUT, outcome)
    }

    /// Calls without pause until told to stop.
    async fn caller(self: Arc<Self>, seed: u64) {
        let mut i = seed;
        while !self.stop.load(Ordering::Relaxed) {
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let urn = format!("acct:{}", (i >> 33) % URNS);
            let (started, began_ms) = (Instant::now(), tally::unix_ms());
            let call = Call::of(i >> 20);
            let (bound, outcome) = self.call(call, urn).await;
            let took = started.elapsed();
            if took > bound + OVERRUN_MARGIN {
                let stalled = self.tally.stalled_since(started);
                let counted = took.saturating_sub(stalled) > bound + OVERRUN_MARGIN;
                if counted {
                    self.tally.overruns.fetch_add(1, Ordering::Relaxed);
                }
                self.tally.overran(Overrun {
                    who: "rust",
                    call: format!("{call:?}"),
                    outcome: outcome.to_owned(),
                    began_ms,
                    took,
                    bound,
                    stalled,
                    counted,
                });
            }
            // A call that failed fast must not starve the runtime's other tasks.
            tokio::task::yield_now().await;
        }
    }
}

/// Whether every tell the Rust client accepted was handled, every reminder registered
/// fired and every event published was received.
fn all_arrived(tally: &Tally, python_waits_for_replicas: bool) -> bool {
    let tells = lost_and_repeated(
        &tally.accepted.lock().unwrap(),
        &tally.handled.lock().unwrap(),
    );
    let reminders = lost_and_repeated(
        &tally.registered.lock().unwrap(),
        &tally.fired.lock().unwrap(),
    );
    let events = lost_and_repeated(
        &tally.published.lock().unwrap(),
        &tally.received.lock().unwrap(),
    );
    // The Python callers' tells only where their client waits for a replica: at the primary
    // level a promotion may lose some, and waiting for them would only make every run last
    // the whole settle.
    let python = !python_waits_for_replicas || python_tells(tally).0 == 0;
    tells.0 == 0 && reminders.0 == 0 && events.0 == 0 && python
}

/// The Python callers' tells accepted and not handled: (those that reached no handler,
/// those whose handler failed on its own save).
fn python_tells(tally: &Tally) -> (u64, u64) {
    let handled = tally.handled.lock().unwrap();
    let failed = tally.note_failed.lock().unwrap();
    let (mut lost, mut handler_failed) = (0, 0);
    for tell in tally.py_accepted.lock().unwrap().iter() {
        if handled.contains_key(tell) {
            continue;
        }
        if failed.contains_key(tell) {
            handler_failed += 1;
        } else {
            lost += 1;
        }
    }
    (lost, handler_failed)
}

/// Runs the scenario on one topology and counts what went wrong.
pub async fn run(options: &Options) -> Result<Outcome, BoxError> {
    let topology = options.topology;
    let began = Instant::now();
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
    let topic = Topic::durable(TOPIC)?;
    let mut events = client
        .topics()
        .subscribe::<u64>(&topic)
        .group(AUDIT_GROUP)
        .await?;
    let subscriber = {
        let tally = tally.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                match event {
                    Ok(n) => *tally.received.lock().unwrap().entry(n).or_default() += 1,
                    Err(e) => eprintln!("subscriber: {e}"),
                }
            }
        })
    };
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
    let load = Arc::new(Load {
        reminders: Reminders::new(&client),
        client: client.clone(),
        topic,
        tally: tally.clone(),
        stop: stop.clone(),
        next: AtomicU64::new(1),
    });
    let callers: Vec<_> = (0..options.callers)
        .map(|c| tokio::spawn(load.clone().caller(c as u64)))
        .collect();
    // The Python callers at the members' level (python/README, "Redis replicas and
    // durability"; on a Cluster each tell's WAIT goes to its stream's node).
    let python = if options.python_callers > 0 {
        python::PythonCallers::start(&url, options.python_callers, &options.durability, &tally)
            .await?
    } else {
        None
    };

    // Warm up: every URN activated.
    let warm = Instant::now() + Duration::from_secs(20);
    while tally.acked.lock().unwrap().len() < URNS as usize && Instant::now() < warm {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("started and warm after {} ms", began.elapsed().as_millis());
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
        tally
            .kills
            .lock()
            .unwrap()
            .push(tally::unix_ms() - promotion.killed_at.elapsed().as_millis());
        tally
            .promoted
            .lock()
            .unwrap()
            .push(tally::unix_ms() - promotion.promoted_at.elapsed().as_millis());
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
    if let Some(python) = python {
        python.stop().await;
    }
    // Tells accepted late are handled within a few seconds, or not at all; a reminder
    // whose claim was not replicated fires once the claim lapsed (4 s); events come in
    // order.
    let settling = Instant::now();
    let settle = settling + Duration::from_secs(15);
    while !all_arrived(&tally, options.durability.starts_with("replicas"))
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("settled in {} ms", settling.elapsed().as_millis());
    // What Redis holds now of each reminder that never fired: gone, or still registered
    // (due when, claimed or not).
    let unfired: Vec<(String, String)> = {
        let fired = tally.fired.lock().unwrap();
        let registered = tally.registered_at.lock().unwrap();
        registered
            .iter()
            .filter(|(name, _)| !fired.contains_key(*name))
            .map(|(name, (urn, _, _))| (name.clone(), urn.clone()))
            .collect()
    };
    for (name, urn) in unfired {
        let held = load.reminders.list(&urn).await.map(|all| {
            all.into_iter()
                .find(|r| r.name == name)
                .map(|r| format!("due at {} ms, claimed {}", r.due_ms, r.claimed))
        });
        eprintln!("reminder never fired: {name} of {urn}, in Redis now: {held:?}");
    }
    subscriber.abort();
    client.shutdown().await;
    for m in members {
        m.stop().await;
    }
    let _ = tokio::task::spawn_blocking(move || drop(running.lock().unwrap().take())).await;

    let accepted = tally.accepted.lock().unwrap().clone();
    let (lost_accepted, repeated) = lost_and_repeated(&accepted, &tally.handled.lock().unwrap());
    let registered = tally.registered.lock().unwrap().clone();
    let (reminders_lost, reminders_repeated) =
        lost_and_repeated(&registered, &tally.fired.lock().unwrap());
    let (py_lost_accepted, py_handler_failed) = python_tells(&tally);
    report_handler_failures(&tally);
    tally.report_overruns(20);
    let published = tally.published.lock().unwrap().clone();
    let (events_lost, events_repeated) =
        lost_and_repeated(&published, &tally.received.lock().unwrap());
    Ok(Outcome {
        promotions,
        splits: tally.splits.load(Ordering::Relaxed),
        state_rollbacks: tally.rollbacks.load(Ordering::Relaxed),
        lost_accepted,
        repeated,
        reminders_registered: registered.len() as u64,
        reminders_lost,
        reminders_repeated,
        events_published: published.len() as u64,
        events_lost,
        events_repeated,
        group_asks_ok: tally.group_asks_ok.load(Ordering::Relaxed),
        python_callers: tally.python_callers.load(Ordering::Relaxed),
        py_asks_ok: tally.py_asks_ok.load(Ordering::Relaxed),
        py_tells_accepted: tally.py_accepted.lock().unwrap().len() as u64,
        py_lost_accepted,
        py_handler_failed,
        py_overruns: tally.py_overruns.load(Ordering::Relaxed),
        py_stall_ms: tally
            .overrun_log
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.who == "python")
            .map(|o| o.stalled.as_millis())
            .max()
            .unwrap_or(0),
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

/// Prints each reminder registered that never fired, and each Python tell accepted whose
/// handler failed and that was not handled again (what `py_handler_failed` counts): when,
/// against the nearest kill of a primary, and why.
fn report_handler_failures(tally: &Tally) {
    let handled = tally.handled.lock().unwrap();
    let failed = tally.note_failed.lock().unwrap();
    let accepted_at = tally.py_accepted_at.lock().unwrap();
    let kills = tally.kills.lock().unwrap();
    let nearest = |at: u128| -> i128 {
        let kill = kills
            .iter()
            .min_by_key(|&&k| k.abs_diff(at))
            .copied()
            .unwrap_or(0);
        at as i128 - kill as i128
    };
    let fired = tally.fired.lock().unwrap();
    for (name, (urn, began, at)) in tally.registered_at.lock().unwrap().iter() {
        if !fired.contains_key(name) {
            eprintln!(
                "reminder lost: {name} of {urn} registered from {began} to {at} (ms since the Unix epoch), {} ms from the nearest kill",
                nearest(*at)
            );
        }
    }
    for (tell, (at, why)) in failed.iter() {
        let Some(&accepted) = accepted_at.get(tell) else {
            continue;
        };
        if handled.contains_key(tell) {
            continue;
        }
        eprintln!(
            "py_handler_failed: tell {tell} accepted {} ms, handler failed {} ms from the nearest kill: {why}",
            nearest(accepted),
            nearest(*at),
        );
    }
    // The Rust callers' tells whose handler failed: accepted or not, handled again or not.
    let accepted = tally.accepted.lock().unwrap();
    let rust: Vec<&u64> = failed.keys().filter(|t| **t < (1 << 40)).collect();
    eprintln!(
        "rust tells whose handler failed: {} ({} of them accepted, {} handled again); kills at {:?}",
        rust.len(),
        rust.iter().filter(|t| accepted.contains(t)).count(),
        rust.iter().filter(|t| handled.contains_key(t)).count(),
        kills,
    );
}
