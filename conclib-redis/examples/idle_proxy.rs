//! What a proxy costs while nothing happens, by the number of actors it serves.
//!
//! ```text
//! cargo run --release -p conclib-redis --example idle_proxy [-- --actors 100000 --secs 20 --snapshots --lease-ms 4000 --urn-ms 15000]
//! ```
//!
//! Spawns N named actors, starts a private redis-server and a proxy serving them (snapshots
//! off, or published at the default interval, 2 s, with `--snapshots`), waits until every
//! URN is registered, then measures this process's CPU time over `--secs` seconds with no
//! traffic: renewals of the system's lease (every third of `--lease-ms`, default 4 s) and
//! of the URN keys (every third of `--urn-ms`, default 15 s), the URN journal's upkeep and
//! the snapshots. Prints `RESULT actors=.. snapshots=.. watched=false idle_cpu_pct=..
//! register_ms=.. redis_in_kib_s=..` (`redis_in_kib_s`: what Redis received a second, all
//! clients).
//!
//! With `--snapshots`, a second measurement follows with a viewer watching: a process of
//! its own (this program again) that reads the snapshots every second as the live view
//! does (`SnapshotReader::systems`, then `SnapshotReader::others` for each new snapshot),
//! started, given 5 s to settle, and measured over `--secs` more: a second line
//! `RESULT ... watched=true ...` (this process's CPU only, not the viewer's).

use std::time::{Duration, Instant};

use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, RequestEnvelope};
use conclib_redis::{ProxyConfig, snapshots::SnapshotReader, start_proxy, start_redis};
use fred::prelude::*;

#[path = "support/redis_stats.rs"]
mod redis_stats;

#[derive(serde::Serialize, serde::Deserialize)]
struct Ping;
impl conclib_core::MessageDecl for Ping {
    type WireError = String;
}
impl conclib_core::Message for Ping {
    type Response = ();
    type Error = String;
    fn name() -> &'static str {
        "idle.Ping"
    }
}

struct Idle;
impl Actor for Idle {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Ping>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<Ping>() {
            Ok((Ping, r)) => r.respond(Ok(())),
            Err(req) => req.reject(),
        }
    }
}

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 after the ')'.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// The viewer's process: reads the snapshots every second as the live view does, until
/// killed (or for at most ten minutes).
async fn viewer(url: String, namespace: String) -> Result<(), Box<dyn std::error::Error>> {
    let reader = SnapshotReader::connect(&ProxyConfig::new(url).with_namespace(namespace)).await?;
    let mut seen = std::collections::HashMap::new();
    let mut reported = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for _ in 0..600 {
        tick.tick().await;
        for system in reader.systems().await? {
            let taken_at = system.snapshot.taken_at_ms;
            if seen.get(&system.system_id) == Some(&taken_at) {
                continue;
            }
            if system.snapshot.omitted_actors > 0 {
                let others = reader.others(&system.system_id, taken_at).await?;
                if let Some(others) = others.filter(|_| !reported) {
                    eprintln!("viewer: {} actors in brief", others.len());
                    reported = true;
                }
            }
            seen.insert(system.system_id, taken_at);
        }
    }
    Ok(())
}

/// This process's CPU share (one core = 100) and Redis's input a second over `secs`.
async fn measure(redis: &Client, secs: u64) -> (f64, f64) {
    let (cpu0, in0, t0) = (
        cpu_time(),
        redis_stats::stat(redis, "total_net_input_bytes").await,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_time().saturating_sub(cpu0);
    let input = redis_stats::stat(redis, "total_net_input_bytes")
        .await
        .saturating_sub(in0);
    let elapsed = t0.elapsed().as_secs_f64();
    (
        cpu.as_secs_f64() / elapsed * 100.0,
        input as f64 / 1024.0 / elapsed,
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut actors = 100_000usize;
    let mut secs = 20u64;
    let mut snapshots = false;
    let mut lease_ms = 4_000u64;
    let mut urn_ms = 15_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--viewer" => {
                let (url, namespace) = (
                    args.next().ok_or("--viewer takes a URL and a namespace")?,
                    args.next().ok_or("--viewer takes a URL and a namespace")?,
                );
                return tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(viewer(url, namespace));
            }
            "--actors" => {
                actors = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--actors takes a number")?
            }
            "--secs" => {
                secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--secs takes a number")?
            }
            "--snapshots" => snapshots = true,
            "--lease-ms" => {
                lease_ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--lease-ms takes a number")?
            }
            "--urn-ms" => {
                urn_ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--urn-ms takes a number")?
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: idle_proxy [--actors N] [--secs S] [--snapshots] [--lease-ms MS] [--urn-ms MS])"
                )
                .into());
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let redis = start_redis(&ProxyConfig::default()).await?;
        let mut config = redis
            .config(&ProxyConfig::default().with_namespace("idle"))
            .with_snapshot_interval(snapshots.then_some(Duration::from_secs(2)));
        config.lease_ttl = Duration::from_millis(lease_ms);
        config.urn_ttl = Duration::from_millis(urn_ms);
        let system = ActorSystem::new("idle");
        for i in 0..actors {
            system.build(Idle).urn(format!("idle:{i}")).spawn().await?;
        }
        let stats = Builder::from_config(Config::from_url(&redis.url())?).build()?;
        stats.init().await?;
        let started = Instant::now();
        let proxy = start_proxy(&system, &config).await?;
        while proxy.served_urns().len() < actors {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let register = started.elapsed();
        // Let the start settle, then measure a quiet stretch.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (pct, input) = measure(&stats, secs).await;
        let register_ms = register.as_millis();
        println!(
            "RESULT actors={actors} snapshots={snapshots} watched=false idle_cpu_pct={pct:.1} \
             register_ms={register_ms} redis_in_kib_s={input:.1}"
        );
        if snapshots {
            let mut viewer = std::process::Command::new(std::env::current_exe()?)
                .args(["--viewer", &config.url, &config.namespace])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .spawn()?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (pct, input) = measure(&stats, secs).await;
            let _ = viewer.kill();
            let _ = viewer.wait();
            println!(
                "RESULT actors={actors} snapshots=true watched=true idle_cpu_pct={pct:.1} \
                 register_ms={register_ms} redis_in_kib_s={input:.1}"
            );
        }
        stats.quit().await?;
        proxy.shutdown().await?;
        system.shutdown(Duration::from_secs(30)).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
