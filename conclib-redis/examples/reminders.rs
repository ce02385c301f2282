//! Durable reminders' figures (issue #64), on a private redis-server, systems in this process
//! (each its own `ActorSystem`, proxy and `ReminderPoller`, activating `b:{id}` actors):
//!
//! - `triggers_per_s_1`, `triggers_per_s_3`: 20,000 reminders on 1,000 activated URNs all due
//!   at the same instant, handled per second (from that instant to the last handled) with 1
//!   and 3 systems polling;
//! - `register_p50_ms`, `register_p99_ms`: one caller registering 2,000 reminders one after
//!   the other (one round trip each); `register_qps_64`: 64 callers at once;
//! - `lag_p50_ms`, `lag_p99_ms`: due time to handling, 20,000 reminders due at 5,000 per
//!   second over 4 s, 3 systems;
//! - `idle_redis_cpu_pct`, `idle_systems_cpu_pct`: CPU (one core = 100) of Redis and of this
//!   process over 10 s with `idle_registered` reminders registered (env
//!   `REMINDERS_IDLE_COUNT`, default 1,000,000), none due, 3 systems polling every 100 ms.
//!
//! `cargo run --release -p conclib-redis --example reminders` prints one `RESULT` line
//! (env `REMINDERS_IN_FLIGHT`: each poller's `max_in_flight`, default 256).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, RequestEnvelope};
use conclib_redis::{
    Activation, ProxyClient, ProxyConfig, ProxyHandle, Reminder, ReminderPoller,
    ReminderPollerOptions, ReminderTick, Reminders, start_proxy, start_redis,
};

/// What the bench's actors record: ticks handled, and each one's lag in ms.
#[derive(Default)]
struct Record {
    handled: AtomicU64,
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
                let lag = now_ms().saturating_sub(tick.due_ms());
                self.0.lags.lock().unwrap().push(lag);
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
    let poller =
        ReminderPoller::start(&client, ReminderPollerOptions::default()).expect("a poller");
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

async fn wait_handled(record: &Record, count: u64, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    while record.handled.load(Ordering::Relaxed) < count {
        assert!(Instant::now() < deadline, "every reminder handled in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

/// Triggers per second with `systems` systems.
async fn triggers(config: &ProxyConfig, systems: usize) -> f64 {
    let config = config
        .clone()
        .with_namespace(format!("bench-triggers-{systems}"));
    let record = Arc::new(Record::default());
    let mut members = Vec::new();
    for i in 0..systems {
        members.push(start_member(&config, &format!("s{i}"), &record).await);
    }
    let reminders = Reminders::new(&members[0].client);
    let urns = 1000;
    // Warm-up: every URN activated once.
    register_many(&reminders, urns, urns, |_| SystemTime::now()).await;
    wait_handled(&record, urns, Duration::from_secs(120)).await;
    let count = 20_000;
    let at = SystemTime::now() + Duration::from_secs(10);
    register_many(&reminders, count, urns, move |_| at).await;
    let wait = at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::sleep(wait).await;
    let start = Instant::now();
    let end = wait_handled(&record, urns + count, Duration::from_secs(300)).await;
    stop(members).await;
    count as f64 / (end - start).as_secs_f64()
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

fn cpu_pct(before: u64, after: u64, over: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (after - before) as f64 / hz / over.as_secs_f64() * 100.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let redis = start_redis(&ProxyConfig::default())
        .await
        .expect("redis-server");
    let config = redis.config(&ProxyConfig::default().with_snapshot_interval(None));
    let redis_pid = redis.pid().map(|p| p.to_string()).unwrap_or_default();

    let triggers_1 = triggers(&config, 1).await;
    let triggers_3 = triggers(&config, 3).await;
    eprintln!("triggers/s: 1 system {triggers_1:.0}, 3 systems {triggers_3:.0}");

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

    // Lag at 5,000 due per second, 3 systems.
    let lag_config = config.clone().with_namespace("bench-lag");
    let record = Arc::new(Record::default());
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(start_member(&lag_config, &format!("s{i}"), &record).await);
    }
    let lag_reminders = Reminders::new(&members[0].client);
    register_many(&lag_reminders, 1000, 1000, |_| SystemTime::now()).await;
    wait_handled(&record, 1000, Duration::from_secs(120)).await;
    record.lags.lock().unwrap().clear();
    let start = SystemTime::now() + Duration::from_secs(8);
    register_many(&lag_reminders, 20_000, 1000, move |i| {
        start + Duration::from_micros(i * 200)
    })
    .await;
    wait_handled(&record, 21_000, Duration::from_secs(300)).await;
    let mut lags = record.lags.lock().unwrap().clone();
    lags.sort_unstable();
    let (lag_p50, lag_p99) = (percentile(&lags, 0.5), percentile(&lags, 0.99));
    eprintln!("lag at 5,000/s: p50 {lag_p50} ms p99 {lag_p99} ms");

    // Idle cost with many registered, none due.
    let idle_count: u64 = std::env::var("REMINDERS_IDLE_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let idle_start = Instant::now();
    let far = SystemTime::now() + Duration::from_secs(24 * 3600);
    register_many(&lag_reminders, idle_count, 100_000, move |_| far).await;
    eprintln!(
        "registered {idle_count} in {:?} ({:.0}/s)",
        idle_start.elapsed(),
        idle_count as f64 / idle_start.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let over = Duration::from_secs(10);
    let (redis_before, me_before) = (cpu_ticks(&redis_pid), cpu_ticks("self"));
    tokio::time::sleep(over).await;
    let (redis_after, me_after) = (cpu_ticks(&redis_pid), cpu_ticks("self"));
    let idle_redis = cpu_pct(redis_before, redis_after, over);
    let idle_me = cpu_pct(me_before, me_after, over);
    stop(members).await;
    client.shutdown().await;

    println!(
        "RESULT triggers_per_s_1={triggers_1:.0} triggers_per_s_3={triggers_3:.0} \
         register_p50_ms={reg_p50:.2} register_p99_ms={reg_p99:.2} register_qps_64={qps:.0} \
         lag_p50_ms={lag_p50} lag_p99_ms={lag_p99} idle_registered={idle_count} \
         idle_redis_cpu_pct={idle_redis:.1} idle_systems_cpu_pct={idle_me:.1}"
    );
    let _ = redis.shutdown();
}
