//! Durable reminders' figures, on a private redis-server, each system its own
//! `ActorSystem`, proxy and `ReminderPoller` activating `b:{id}` actors:
//!
//! - `triggers_per_s_1`, `triggers_per_s_3`: 20,000 reminders on 1,000 activated URNs all due
//!   at the same instant, handled per second (from that instant to the last one handled) with
//!   1 and 3 systems polling; `redis_cpu_pct_N`, `systems_cpu_pct_N`: the CPU (one core =
//!   100) of Redis and of the systems over that burst, `redis_cpu_us_per_trigger_N`,
//!   `systems_cpu_us_per_trigger_N` the same per tick (less sensitive than the rate to
//!   what else the machine runs); `redis_wait_us_per_trigger_N`,
//!   `systems_wait_us_per_trigger_N`: the time per tick their threads waited for a CPU
//!   while runnable (`/proc/PID/task/*/schedstat`; as large as the CPU time or larger when
//!   the machine's load, not the work, sets the rate); `redis_cmds_per_trigger_N`: commands Redis ran per tick
//!   in it, scripts' own included (env `REMINDERS_COMMANDSTATS`: which, on stderr);
//! - `register_p50_ms`, `register_p99_ms`: one caller registering 2,000 reminders one after
//!   the other (one round trip each); `register_qps_64`: 64 callers at once;
//! - `lag_p50_ms`, `lag_p99_ms`: due time to handling, 20,000 reminders due at 5,000 per
//!   second over 4 s, 3 systems;
//! - `idle_redis_cpu_pct`, `idle_systems_cpu_pct`: CPU of Redis and of this process over 10 s
//!   with `idle_registered` reminders registered (env `REMINDERS_IDLE_COUNT`, default
//!   1,000,000), none due, 3 systems polling every 100 ms.
//!
//! `cargo run --release -p conclib-redis --example reminders` runs the systems in this
//! process (on its 2-worker runtime) and prints one `RESULT mode=in_process ...` line with
//! every figure above. With `-- --processes`, each system is a process of its own (this
//! binary run again as `member`, on a 2-worker runtime; env `REMINDERS_CHILD_WORKERS`),
//! killed by pid at the end: `RESULT mode=processes ...` with the triggers, CPU and lag
//! figures. With `-- --triggers-only`, the in-process mode measures only those too (to
//! alternate the two modes in one run). Env `REMINDERS_IN_FLIGHT`: each poller's
//! `max_in_flight` (default 256). Each burst's start and end go to stderr with the time on
//! `CLOCK_MONOTONIC`, for profilers (`burst_edge`); env `REMINDERS_BURST_DELAY_S` sets how
//! long after its registration starts a burst is due (10 s; more under valgrind).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, RequestEnvelope};
use conclib_redis::{
    ProxyClient, ProxyConfig, ProxyHandle,
    reminders::{Reminder, ReminderPoller, ReminderPollerOptions, ReminderTick, Reminders},
    scale::Activation,
    start_proxy, start_redis,
};
use fred::prelude::*;

#[path = "support/redis_stats.rs"]
mod redis_stats;
#[path = "support/reminder_members.rs"]
mod reminder_members;

use reminder_members::ChildMember;

/// What the bench's actors record: ticks handled, the wall time of the last, and each
/// one's lag in ms.
#[derive(Default)]
struct Record {
    handled: AtomicU64,
    last_ms: AtomicU64,
    lags: Mutex<Vec<u64>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Bench(Arc<Record>);

impl Actor for Bench {
    const MAILBOX: conclib_core::MailboxConfig = conclib_core::MailboxConfig::Unbounded;
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<ReminderTick>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<ReminderTick>() {
            Ok((tick, r)) => {
                let now = now_ms();
                self.0
                    .lags
                    .lock()
                    .unwrap()
                    .push(now.saturating_sub(tick.due_ms()));
                self.0.last_ms.fetch_max(now, Ordering::Relaxed);
                self.0.handled.fetch_add(1, Ordering::Relaxed);
                r.respond(Ok(()));
            }
            Err(req) => req.reject(),
        }
    }
}

/// One system: its proxy, its client and its poller.
struct Member {
    proxy: ProxyHandle,
    client: ProxyClient,
    poller: ReminderPoller,
}

fn poller_options() -> ReminderPollerOptions {
    let mut options = ReminderPollerOptions::default();
    if let Some(n) = std::env::var("REMINDERS_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options.max_in_flight = n;
    }
    options
}

async fn start_member(config: &ProxyConfig, id: &str, record: &Arc<Record>) -> Member {
    let system = ActorSystem::new(id);
    let config = config.clone().with_system_id(id);
    let proxy = start_proxy(&system, &config).await.expect("a proxy");
    let record = record.clone();
    proxy
        .activate("b:{id}", move |_a: Activation| {
            let record = record.clone();
            async move { Ok::<_, String>(Bench(record)) }
        })
        .never_passivate()
        .await
        .expect("the pattern");
    let client = ProxyClient::connect(&config).await.expect("a client");
    let poller = ReminderPoller::start(&client, poller_options()).expect("a poller");
    Member {
        proxy,
        client,
        poller,
    }
}

async fn stop(members: Vec<Member>) {
    for m in members {
        m.poller.shutdown().await;
        m.client.shutdown().await;
        let _ = m.proxy.shutdown().await;
    }
}

/// `member URL NS NAME`: one system in this process, driven by the parent (see
/// `support/reminder_members.rs`).
async fn member(url: &str, ns: &str, name: &str) {
    let config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_snapshot_interval(None);
    let record = Arc::new(Record::default());
    let m = start_member(&config, name, &record).await;
    let (handled, last, lags) = (record.clone(), record.clone(), record.clone());
    reminder_members::serve_driver(
        move || handled.handled.load(Ordering::Relaxed),
        move || last.last_ms.load(Ordering::Relaxed),
        move |clear| {
            let mut lags = lags.lags.lock().unwrap();
            if clear {
                lags.clear();
                Vec::new()
            } else {
                lags.clone()
            }
        },
    )
    .await;
    stop(vec![m]).await;
}

/// The systems of one phase: in this process, or each in a child process.
enum Systems {
    Here(Vec<Member>, Arc<Record>),
    Children(Vec<ChildMember>),
}

impl Systems {
    async fn start(mode: Mode, config: &ProxyConfig, count: usize) -> Systems {
        match mode {
            Mode::InProcess => {
                let record = Arc::new(Record::default());
                let mut members = Vec::new();
                for i in 0..count {
                    members.push(start_member(config, &format!("s{i}"), &record).await);
                }
                Systems::Here(members, record)
            }
            Mode::Processes => {
                let mut children = Vec::new();
                for i in 0..count {
                    let child = ChildMember::start(
                        config.url.as_str(),
                        &config.namespace,
                        &format!("s{i}"),
                    )
                    .await
                    .expect("a member process");
                    children.push(child);
                }
                Systems::Children(children)
            }
        }
    }

    fn handled(&self) -> u64 {
        match self {
            Systems::Here(_, record) => record.handled.load(Ordering::Relaxed),
            Systems::Children(children) => children
                .iter()
                .map(|c| c.handled.load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// Waits (polling every 5 ms, `within` at most) until `count` ticks were handled.
    async fn wait_handled(&self, count: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.handled() < count {
            assert!(Instant::now() < deadline, "every reminder handled in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn reset_lags(&mut self) {
        match self {
            Systems::Here(_, record) => record.lags.lock().unwrap().clear(),
            Systems::Children(children) => {
                for c in children {
                    c.reset().await.expect("a member resets");
                }
            }
        }
    }

    /// The wall time (ms) of the last tick handled, and every lag recorded.
    async fn report(&mut self) -> (u64, Vec<u64>) {
        match self {
            Systems::Here(_, record) => (
                record.last_ms.load(Ordering::Relaxed),
                record.lags.lock().unwrap().clone(),
            ),
            Systems::Children(children) => {
                let (mut last, mut lags) = (0, Vec::new());
                for c in children {
                    let (l, mut more) = c.report().await.expect("a member's report");
                    last = last.max(l);
                    lags.append(&mut more);
                }
                (last, lags)
            }
        }
    }

    /// CPU ticks of the systems' process(es).
    fn cpu_ticks(&self) -> u64 {
        match self {
            Systems::Here(..) => cpu_ticks("self"),
            Systems::Children(children) => {
                children.iter().map(|c| cpu_ticks(&c.pid.to_string())).sum()
            }
        }
    }

    /// Time the systems' threads waited for a CPU while runnable, ns.
    fn run_wait_ns(&self) -> u64 {
        match self {
            Systems::Here(..) => run_wait_ns("self"),
            Systems::Children(children) => children
                .iter()
                .map(|c| run_wait_ns(&c.pid.to_string()))
                .sum(),
        }
    }

    async fn stop(self) {
        match self {
            Systems::Here(members, _) => stop(members).await,
            Systems::Children(children) => {
                for c in children {
                    c.kill().await;
                }
            }
        }
    }
}

/// Calls per command since Redis started (`INFO commandstats`), scripts' own commands
/// included.
async fn command_calls(redis: &Client) -> std::collections::HashMap<String, u64> {
    let info: String = redis
        .info(Some(fred::types::InfoKind::CommandStats))
        .await
        .unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Registers `count` reminders over `urns` URNs with 64 callers; `due(i)` is each one's time.
async fn register_many(
    reminders: &Reminders,
    count: u64,
    urns: u64,
    due: impl Fn(u64) -> SystemTime + Send + Sync + Clone + 'static,
) {
    let callers = 64;
    let mut tasks = Vec::new();
    for c in 0..callers {
        let reminders = reminders.clone();
        let due = due.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = c;
            while i < count {
                reminders
                    .register(
                        &format!("b:{}", i % urns),
                        Reminder::at(format!("r{i}"), due(i)),
                    )
                    .await
                    .expect("registered");
                i += callers;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a caller");
    }
}

/// What one burst measured.
struct Burst {
    per_s: f64,
    redis_cpu_pct: f64,
    systems_cpu_pct: f64,
    redis_cmds_per_trigger: f64,
    /// CPU time per tick over the burst, in µs: Redis's, and the systems'.
    redis_cpu_us: f64,
    systems_cpu_us: f64,
    /// Time per tick their threads waited, runnable, for a CPU (others had it), in µs:
    /// Redis's, and the systems'. As large as the CPU time or larger: the machine's load,
    /// not the work, set the rate.
    redis_wait_us: f64,
    systems_wait_us: f64,
}

/// How long after the burst's registration starts its 20,000 reminders are due: 10 s, or
/// env `REMINDERS_BURST_DELAY_S` (longer under valgrind, where registering takes longer:
/// ticks due before the registration ends would fall outside the burst's measure).
fn burst_delay() -> Duration {
    Duration::from_secs(
        std::env::var("REMINDERS_BURST_DELAY_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10),
    )
}

/// Marks a burst's start and end on stderr, with the ticks handled by then and the time on
/// `CLOCK_MONOTONIC` (what `perf record -k CLOCK_MONOTONIC` stamps samples with, for
/// `perf report --time START,END`); a function of its own, never inlined, so that
/// `valgrind --tool=callgrind --dump-before='*burst_edge*'` dumps the instructions of each
/// burst alone (the dump between a burst's start and end).
#[inline(never)]
fn burst_edge(systems: usize, edge: &str, handled: u64) {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    eprintln!(
        "burst, {systems} systems: {edge}, {handled} handled, monotonic {}.{:06} s",
        t.tv_sec,
        t.tv_nsec / 1000
    );
}

/// Triggers per second with `systems` systems: 20,000 due at one instant.
async fn triggers(redis: &Redis, mode: Mode, systems: usize, run: &str) -> Burst {
    let config = redis
        .config
        .clone()
        .with_namespace(format!("bench-triggers-{systems}-{run}"));
    let mut members = Systems::start(mode, &config, systems).await;
    let client = ProxyClient::connect(&config).await.expect("a client");
    let reminders = Reminders::new(&client);
    let urns = 1000;
    // Warm-up: every URN activated once.
    register_many(&reminders, urns, urns, |_| SystemTime::now()).await;
    members.wait_handled(urns, Duration::from_secs(120)).await;
    let count = 20_000;
    let at = SystemTime::now() + burst_delay();
    register_many(&reminders, count, urns, move |_| at).await;
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait).await;
    burst_edge(systems, "start", members.handled());
    let started = Instant::now();
    let (redis_before, systems_before) = (cpu_ticks(&redis.pid), members.cpu_ticks());
    let waits_before = (run_wait_ns(&redis.pid), members.run_wait_ns());
    let cmds_before = redis_stats::stat(&redis.stats, "total_commands_processed").await;
    let by_command = command_calls(&redis.stats).await;
    members
        .wait_handled(urns + count, Duration::from_secs(300))
        .await;
    burst_edge(systems, "end", members.handled());
    let over = started.elapsed();
    let (redis_after, systems_after) = (cpu_ticks(&redis.pid), members.cpu_ticks());
    let waits_after = (run_wait_ns(&redis.pid), members.run_wait_ns());
    let cmds_after = redis_stats::stat(&redis.stats, "total_commands_processed").await;
    if std::env::var_os("REMINDERS_COMMANDSTATS").is_some() {
        let after = command_calls(&redis.stats).await;
        let mut per_tick: Vec<(String, f64)> = after
            .iter()
            .map(|(name, n)| {
                let before = by_command.get(name).copied().unwrap_or(0);
                (name.clone(), n.saturating_sub(before) as f64 / count as f64)
            })
            .filter(|(_, n)| *n >= 0.01)
            .collect();
        per_tick.sort_by(|a, b| b.1.total_cmp(&a.1));
        let per_tick: Vec<String> = per_tick
            .iter()
            .map(|(c, n)| format!("{c}={n:.2}"))
            .collect();
        eprintln!(
            "{systems} systems, Redis commands per tick: {}",
            per_tick.join(" ")
        );
    }
    let (last_ms, _) = members.report().await;
    members.stop().await;
    client.shutdown().await;
    let at_ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let (redis_pct, systems_pct) = (
        cpu_pct(redis_before, redis_after, over),
        cpu_pct(systems_before, systems_after, over),
    );
    let per_tick_us = |pct: f64| pct / 100.0 * over.as_secs_f64() * 1e6 / count as f64;
    let wait_us =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / 1e3 / count as f64;
    Burst {
        redis_wait_us: wait_us(waits_before.0, waits_after.0),
        systems_wait_us: wait_us(waits_before.1, waits_after.1),
        per_s: count as f64 / (last_ms.saturating_sub(at_ms).max(1) as f64 / 1000.0),
        redis_cpu_pct: redis_pct,
        systems_cpu_pct: systems_pct,
        redis_cpu_us: per_tick_us(redis_pct),
        systems_cpu_us: per_tick_us(systems_pct),
        // The 1 s of the INFO reads themselves is noise: a few commands.
        redis_cmds_per_trigger: cmds_after.saturating_sub(cmds_before) as f64 / count as f64,
    }
}

/// Lag from due to handled, 20,000 reminders due at 5,000 per second, 3 systems.
async fn lag(redis: &Redis, mode: Mode, run: &str) -> (u64, u64) {
    let config = redis
        .config
        .clone()
        .with_namespace(format!("bench-lag-{run}"));
    let mut members = Systems::start(mode, &config, 3).await;
    let client = ProxyClient::connect(&config).await.expect("a client");
    let reminders = Reminders::new(&client);
    register_many(&reminders, 1000, 1000, |_| SystemTime::now()).await;
    members.wait_handled(1000, Duration::from_secs(120)).await;
    members.reset_lags().await;
    let start = SystemTime::now() + Duration::from_secs(8);
    register_many(&reminders, 20_000, 1000, move |i| {
        start + Duration::from_micros(i * 200)
    })
    .await;
    members.wait_handled(21_000, Duration::from_secs(300)).await;
    let (_, mut lags) = members.report().await;
    members.stop().await;
    client.shutdown().await;
    lags.sort_unstable();
    (percentile(&lags, 0.5), percentile(&lags, 0.99))
}

fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Time the threads of process `pid` waited for a CPU while runnable since they started,
/// ns (`/proc/PID/task/*/schedstat`, second field: the scheduler's run-queue delay); 0
/// where the kernel keeps no schedstats.
fn run_wait_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn cpu_pct(before: u64, after: u64, over: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    after.saturating_sub(before) as f64 / hz / over.as_secs_f64().max(0.001) * 100.0
}

/// Where the systems run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    InProcess,
    Processes,
}

/// The private redis-server: its config, its pid, a connection for `INFO`.
struct Redis {
    config: ProxyConfig,
    pid: String,
    stats: Client,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("member") && args.len() == 5 {
        let workers = std::env::var("REMINDERS_CHILD_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(member(&args[2], &args[3], &args[4]));
        return;
    }
    let mode = if args.iter().any(|a| a == "--processes") {
        Mode::Processes
    } else {
        Mode::InProcess
    };
    let triggers_only = mode == Mode::Processes || args.iter().any(|a| a == "--triggers-only");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(mode, triggers_only));
}

async fn run(mode: Mode, triggers_only: bool) {
    let daemon = start_redis(&ProxyConfig::default())
        .await
        .expect("redis-server");
    let config = daemon.config(&ProxyConfig::default().with_snapshot_interval(None));
    let stats = Builder::from_config(Config::from_url(&daemon.url()).expect("a URL"))
        .build()
        .expect("a connection");
    stats.init().await.expect("Redis answers");
    let redis = Redis {
        config: config.clone(),
        pid: daemon.pid().map(|p| p.to_string()).unwrap_or_default(),
        stats,
    };
    let run = format!("{}", std::process::id());
    let mode_name = match mode {
        Mode::InProcess => "in_process",
        Mode::Processes => "processes",
    };

    let one = triggers(&redis, mode, 1, &run).await;
    let three = triggers(&redis, mode, 3, &run).await;
    eprintln!(
        "{mode_name}: triggers/s: 1 system {:.0}, 3 systems {:.0}",
        one.per_s, three.per_s
    );
    let (lag_p50, lag_p99) = lag(&redis, mode, &run).await;
    eprintln!("{mode_name}: lag at 5,000/s: p50 {lag_p50} ms p99 {lag_p99} ms");
    let burst = |n: usize, b: &Burst| {
        format!(
            "triggers_per_s_{n}={:.0} redis_cpu_pct_{n}={:.0} systems_cpu_pct_{n}={:.0} \
             redis_cpu_us_per_trigger_{n}={:.1} systems_cpu_us_per_trigger_{n}={:.1} \
             redis_wait_us_per_trigger_{n}={:.1} systems_wait_us_per_trigger_{n}={:.1} \
             redis_cmds_per_trigger_{n}={:.1}",
            b.per_s,
            b.redis_cpu_pct,
            b.systems_cpu_pct,
            b.redis_cpu_us,
            b.systems_cpu_us,
            b.redis_wait_us,
            b.systems_wait_us,
            b.redis_cmds_per_trigger
        )
    };
    let bursts = format!("{} {}", burst(1, &one), burst(3, &three));
    if triggers_only {
        println!("RESULT mode={mode_name} {bursts} lag_p50_ms={lag_p50} lag_p99_ms={lag_p99}");
        redis.stats.quit().await.ok();
        let _ = daemon.shutdown();
        return;
    }

    // Registration round trips.
    let reg = config.clone().with_namespace("bench-register");
    let client = ProxyClient::connect(&reg).await.expect("a client");
    let reminders = Reminders::new(&client);
    let mut latencies = Vec::new();
    for i in 0..2000u64 {
        let t = Instant::now();
        reminders
            .register(
                &format!("b:{}", i % 100),
                Reminder::after(format!("r{i}"), Duration::from_secs(3600)),
            )
            .await
            .expect("registered");
        latencies.push(t.elapsed().as_micros() as u64);
    }
    latencies.sort_unstable();
    let (reg_p50, reg_p99) = (
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
    );
    let t = Instant::now();
    let far = SystemTime::now() + Duration::from_secs(3600);
    register_many(&reminders, 20_000, 1000, move |_| far).await;
    let qps = 20_000.0 / t.elapsed().as_secs_f64();
    eprintln!("registration: p50 {reg_p50:.2} ms p99 {reg_p99:.2} ms, {qps:.0}/s with 64 callers");

    // Idle cost with many registered, none due, 3 systems polling.
    let idle_config = config.clone().with_namespace("bench-idle");
    let record = Arc::new(Record::default());
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(start_member(&idle_config, &format!("s{i}"), &record).await);
    }
    let idle_reminders = Reminders::new(&members[0].client);
    let idle_count: u64 = std::env::var("REMINDERS_IDLE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let idle_start = Instant::now();
    let far = SystemTime::now() + Duration::from_secs(24 * 3600);
    register_many(&idle_reminders, idle_count, 100_000, move |_| far).await;
    eprintln!(
        "registered {idle_count} in {:?} ({:.0}/s)",
        idle_start.elapsed(),
        idle_count as f64 / idle_start.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let over = Duration::from_secs(10);
    let (redis_before, me_before) = (cpu_ticks(&redis.pid), cpu_ticks("self"));
    tokio::time::sleep(over).await;
    let (redis_after, me_after) = (cpu_ticks(&redis.pid), cpu_ticks("self"));
    let idle_redis = cpu_pct(redis_before, redis_after, over);
    let idle_me = cpu_pct(me_before, me_after, over);
    stop(members).await;
    client.shutdown().await;

    println!(
        "RESULT mode={mode_name} {bursts} \
         register_p50_ms={reg_p50:.2} register_p99_ms={reg_p99:.2} register_qps_64={qps:.0} \
         lag_p50_ms={lag_p50} lag_p99_ms={lag_p99} idle_registered={idle_count} \
         idle_redis_cpu_pct={idle_redis:.1} idle_systems_cpu_pct={idle_me:.1}"
    );
    redis.stats.quit().await.ok();
    let _ = daemon.shutdown();
}
