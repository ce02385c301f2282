//! Scale-out on Redis: three systems, each in a process of its own, serve one shared URN
//! (`resize`, CPU-bound) as a group and activate `visits:{id}` actors on demand; a client
//! load runs, one system is SIGKILLed midway, and the load goes on.
//!
//! `cargo run --release -p conclib-examples --example scale_out` prints first
//! `RESULT placement=spread activations=60 per_member=../../.. placement_min_share=..`: 60
//! `visits:{id}` pages activated one after the other on 3 fresh systems, and the smallest
//! share any system got (the default placement spreads them by activation count), then
//! `RESULT systems=3 asks=.. ok=.. timeouts=.. lost=0 min_share=.. activations=..
//! duplicate_activations=0 failover_ms=.. moved=.. moved_requests=.. timeouts_during_failover=..`
//! (`moved`: pages the killed system held; `moved_requests`: requests queued for it that the
//! others moved to the group), then `RESULT rebalance_ms=.. new_member_share=..`: on a namespace of
//! its own, a third system joins two that rebalance, and takes its share of the pages asked,
//! then a
//! line comparing a CPU-bound shared
//! URN served by 2 single-threaded systems against 1 (1,600 asks, 16 in flight):
//! `RESULT group_speedup=..`. It starts
//! its own Redis and leaves nothing behind (the systems are killed and reaped by pid).

use conclib::AskError;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conclib::redis::{
    ProxyClient, ProxyConfig,
    scale::{Activation, StateStore},
    start_proxy, start_redis,
};
use conclib::{ActorSystem, actor};
use tokio::io::{AsyncBufReadExt, BufReader};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A shared URN's actor: CPU-bound work, answered with the system that did it.
#[actor]
struct Resizer {
    system: String,
}

#[actor]
impl Resizer {
    /// Spins `rounds` thousand rounds; returns the system's id.
    #[handle(remote)]
    fn shrink(&mut self, rounds: u64) -> String {
        let mut x = rounds;
        for i in 0..rounds * 1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        self.system.clone()
    }
}

/// An activated actor: a page's visit count, saved on every visit.
#[actor]
struct Visits {
    count: u64,
    store: StateStore,
}

#[actor]
impl Visits {
    /// Counts a visit; returns the count.
    #[handle(remote)]
    async fn visit(&mut self) -> Result<u64, String> {
        self.store
            .save(&(self.count + 1))
            .await
            .map_err(|e| e.to_string())?;
        self.count += 1;
        Ok(self.count)
    }
}

const LEASE: Duration = Duration::from_secs(2);

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("member") {
        // A member system: one thread, as a process of a service would be sized per core.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let rebalance = args.get(5).map(String::as_str) == Some("rebalance");
        return rt.block_on(member(&args[2], &args[3], &args[4], rebalance));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(drive())
}

/// `member URL NS NAME [rebalance]`: serves `resize` in its group and activates
/// `visits:{id}` (rebalancing them with `rebalance`).
async fn member(url: &str, ns: &str, name: &str, rebalance: bool) -> Result<(), BoxError> {
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id(name)
        .with_snapshot_interval(None);
    config.lease_ttl = LEASE;
    config.group_in_flight = 2;
    let system = ActorSystem::new(name);
    system
        .build(Resizer {
            system: name.to_owned(),
        })
        .urn("resize")
        .spawn()
        .await?;
    let proxy = start_proxy(&system, &config).await?;
    proxy.join("resize").await?;
    let mut visits = proxy.activate("visits:{id}", move |a: Activation| {
        async move {
            // Told to the driver, to find duplicate activations afterwards.
            println!("ACTIVATED {}", a.urn());
            let count = a.store().load::<u64>().await?.unwrap_or(0);
            Ok::<_, BoxError>(Visits {
                count,
                store: a.into_store(),
            })
        }
    });
    if rebalance {
        visits = visits.rebalance();
    }
    visits.await?;
    println!("READY");
    // Serve until stdin closes (the driver kills or drops us), telling the driver how many
    // requests of a gone member this one moved to the group (failover by membership).
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    tokio::pin!(stdin_closed);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut moved = 0;
    loop {
        tokio::select! {
            _ = &mut stdin_closed => break,
            _ = tick.tick() => {
                let now = proxy.stats().moved;
                if now != moved {
                    moved = now;
                    println!("MOVED {now}");
                }
            }
        }
    }
    proxy.shutdown().await?;
    Ok(())
}

struct Member {
    child: tokio::process::Child,
    pid: i32,
}

/// How often each URN was activated, as the members said; and, under `MOVED {member}`, how
/// many requests of a gone member each one moved to the group.
type Activations = Arc<std::sync::Mutex<BTreeMap<String, u64>>>;

async fn start_member(
    url: &str,
    ns: &str,
    name: &str,
    activations: &Activations,
) -> Result<Member, BoxError> {
    start_member_with(url, ns, name, activations, "").await
}

async fn start_member_with(
    url: &str,
    ns: &str,
    name: &str,
    activations: &Activations,
    option: &str,
) -> Result<Member, BoxError> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["member", url, ns, name, option])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = i32::try_from(child.id().ok_or("no pid")?)?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await??;
    if ready.as_deref() != Some("READY") {
        return Err(format!("member {name} did not start: {ready:?}").into());
    }
    let activations = activations.clone();
    let moved_key = format!("MOVED {name}");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(urn) = line.strip_prefix("ACTIVATED ") {
                *activations
                    .lock()
                    .unwrap()
                    .entry(urn.to_owned())
                    .or_default() += 1;
            } else if let Some(n) = line.strip_prefix("MOVED ").and_then(|n| n.parse().ok()) {
                activations.lock().unwrap().insert(moved_key.clone(), n);
            }
        }
    });
    Ok(Member { child, pid })
}

impl Member {
    async fn kill(mut self) {
        // SAFETY: kill(2) on a child not reaped yet.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    timeouts: AtomicUsize,
    lost: AtomicUsize,
    by_member: std::sync::Mutex<BTreeMap<String, usize>>,
}

/// 60 pages activated one after the other on 3 fresh systems: how many each system holds,
/// and the smallest share (`placement_min_share`).
async fn placement(redis: &conclib::redis::daemon::RedisDaemon) -> Result<f64, BoxError> {
    let config = redis.config(&ProxyConfig::default().with_namespace("placement"));
    let activated = Activations::default();
    let mut members = Vec::new();
    let names = ["sys-1", "sys-2", "sys-3"];
    for name in names {
        members.push(start_member(&config.url, "placement", name, &activated).await?);
    }
    let client = ProxyClient::connect(&config).await?;
    let pages = 60;
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for page in 0..pages {
        let urn = format!("visits:{page}");
        client.actor::<Visits>(urn.clone()).visit().await?;
        let holder = client.resolve(&urn).await?.unwrap_or_default();
        *held.entry(holder).or_default() += 1;
    }
    let per_member: Vec<String> = names
        .iter()
        .map(|n| held.get(*n).copied().unwrap_or(0).to_string())
        .collect();
    let min = names
        .iter()
        .map(|n| held.get(*n).copied().unwrap_or(0))
        .min()
        .unwrap_or(0);
    let share = min as f64 / pages as f64;
    println!(
        "RESULT placement=spread activations={pages} per_member={} placement_min_share={share:.2}",
        per_member.join("/")
    );
    for m in members {
        m.kill().await;
    }
    Ok(share)
}

/// Rebalancing, on a namespace of its own: 60 pages on 2 systems that rebalance, then a
/// third joins while the pages are asked; how long until it holds a quarter of them.
async fn rebalancing(redis: &conclib::redis::daemon::RedisDaemon) -> Result<(), BoxError> {
    let config = redis.config(&ProxyConfig::default().with_namespace("rebalance"));
    let activated = Activations::default();
    let mut members = Vec::new();
    for name in ["sys-1", "sys-2"] {
        members.push(
            start_member_with(&config.url, "rebalance", name, &activated, "rebalance").await?,
        );
    }
    let client = ProxyClient::connect(&config).await?;
    let pages = 60;
    let visit_all = || async {
        for page in 0..pages {
            let _ = client
                .actor::<Visits>(format!("visits:{page}"))
                .visit()
                .timeout(Duration::from_secs(5))
                .await;
        }
    };
    visit_all().await;
    members
        .push(start_member_with(&config.url, "rebalance", "sys-3", &activated, "rebalance").await?);
    let joined = Instant::now();
    let mut new_share = 0.0;
    while joined.elapsed() < Duration::from_secs(30) {
        visit_all().await;
        let placed = client.activations("visits:{id}").await?;
        let held: usize = placed.values().map(Vec::len).sum();
        new_share = placed.get("sys-3").map_or(0, Vec::len) as f64 / held.max(1) as f64;
        if new_share >= 0.25 {
            break;
        }
    }
    println!(
        "RESULT rebalance_ms={} new_member_share={new_share:.2} members=3 pages={pages}",
        joined.elapsed().as_millis()
    );
    for m in members {
        m.kill().await;
    }
    Ok(())
}

async fn drive() -> Result<(), BoxError> {
    let redis = start_redis(&ProxyConfig::default()).await?;
    let placement_min_share = placement(&redis).await?;
    let config = redis.config(&ProxyConfig::default().with_namespace("scale"));
    let url = config.url.clone();
    let activated = Activations::default();
    let mut members = Vec::new();
    for name in ["sys-1", "sys-2", "sys-3"] {
        members.push(start_member(&url, "scale", name, &activated).await?);
    }
    let client =
        ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(10))).await?;
    let tally = Arc::new(Tally::default());
    let pages = 60u64;
    let per_worker = 150usize;
    let workers = 24usize;
    let killed_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = client.clone();
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_worker {
                // Ok, Err(true) for a timeout, Err(false) for any other error.
                let outcome: Result<(), (bool, String)> = if (i + w) % 2 == 0 {
                    client
                        .actor::<Resizer>("resize")
                        .shrink(50)
                        .await
                        .map(|system| {
                            *tally.by_member.lock().unwrap().entry(system).or_default() += 1;
                        })
                        .map_err(|e| (matches!(e, AskError::Timeout(_)), e.to_string()))
                } else {
                    let page = (w as u64 * 7 + i as u64) % pages;
                    client
                        .actor::<Visits>(format!("visits:{page}"))
                        .visit()
                        .await
                        .map(|_| ())
                        .map_err(|e| (matches!(e, AskError::Timeout(_)), e.to_string()))
                };
                match outcome {
                    Ok(()) => tally.ok.fetch_add(1, Ordering::Relaxed),
                    Err((true, _)) => tally.timeouts.fetch_add(1, Ordering::Relaxed),
                    Err((false, e)) => {
                        eprintln!("an ask failed: {e}");
                        tally.lost.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    // Midway, SIGKILL the first system.
    let total = workers * per_worker;
    while tally.ok.load(Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shares_before: BTreeMap<String, usize> = tally.by_member.lock().unwrap().clone();
    let plain = ProxyClient::connect(&config).await?;
    let mut moved = Vec::new();
    for page in 0..pages {
        let urn = format!("visits:{page}");
        if plain.resolve(&urn).await?.as_deref() == Some("sys-1") {
            moved.push(urn);
        }
    }
    let victim = members.remove(0);
    victim.kill().await;
    let _ = killed_at.set(Instant::now());
    // Failover: every page sys-1 held answers again from another system.
    let mut failover = Duration::ZERO;
    for urn in &moved {
        loop {
            match plain
                .actor::<Visits>(urn.clone())
                .visit()
                .timeout(Duration::from_millis(500))
                .await
            {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        failover = killed_at.get().map_or(failover, Instant::elapsed);
    }
    for t in tasks {
        t.await?;
    }
    let asks = total;
    let ok = tally.ok.load(Ordering::Relaxed);
    let timeouts = tally.timeouts.load(Ordering::Relaxed);
    let lost = asks - ok - timeouts;
    let min_share = ["sys-1", "sys-2", "sys-3"]
        .iter()
        .map(|m| shares_before.get(*m).copied().unwrap_or(0) as f64)
        .fold(f64::MAX, f64::min)
        / shares_before.values().sum::<usize>().max(1) as f64;
    // Activations: each page once, plus once more for each page that moved.
    let counts = activated.lock().unwrap().clone();
    let (moved_requests, counts): (BTreeMap<String, u64>, BTreeMap<String, u64>) = counts
        .into_iter()
        .partition(|(k, _)| k.starts_with("MOVED "));
    let moved_requests: u64 = moved_requests.values().sum();
    let activations: u64 = counts.values().sum();
    let duplicate_activations: u64 = counts
        .iter()
        .map(|(urn, n)| n.saturating_sub(if moved.contains(urn) { 2 } else { 1 }))
        .sum();
    // `timeouts` counts the whole run, whose one fault is the kill: so they are the
    // timeouts of the failover.
    println!(
        "RESULT systems=3 asks={asks} ok={ok} timeouts={timeouts} lost={lost} min_share={min_share:.2} activations={activations} duplicate_activations={duplicate_activations} failover_ms={} moved={} moved_requests={moved_requests} timeouts_during_failover={timeouts}",
        failover.as_millis(),
        moved.len()
    );

    for m in members {
        m.kill().await;
    }
    rebalancing(&redis).await?;

    // A CPU-bound shared URN: 2 single-threaded systems against 1, on a fresh namespace.
    let mut took = Vec::new();
    for n in [1usize, 2] {
        let ns = format!("speedup-{n}");
        let config = redis.config(&ProxyConfig::default().with_namespace(ns.clone()));
        let mut group = Vec::new();
        for i in 0..n {
            group.push(start_member(&config.url, &ns, &format!("cpu-{i}"), &activated).await?);
        }
        let client = ProxyClient::connect(&config).await?;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..100 {
                    client
                        .actor::<Resizer>("resize")
                        .shrink(400)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        took.push(started.elapsed());
        for m in group {
            m.kill().await;
        }
    }
    println!(
        "RESULT group_speedup={:.2} one_system_ms={} two_systems_ms={}",
        took[0].as_secs_f64() / took[1].as_secs_f64(),
        took[0].as_millis(),
        took[1].as_millis()
    );
    drop(redis);
    if lost > 0 || duplicate_activations > 0 {
        return Err("asks lost or duplicate activations".into());
    }
    if placement_min_share < 0.25 {
        return Err(format!("a system got {placement_min_share:.2} of 60 activations").into());
    }
    Ok(())
}
