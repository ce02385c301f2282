//! What a proxy costs while nothing happens, by the number of actors it serves.
//!
//! ```text
//! cargo run --release -p conclib-redis --example idle_proxy [-- --actors 100000 --secs 20 --snapshots]
//! ```
//!
//! Spawns N named actors, starts a private redis-server and a proxy serving them (snapshots
//! off, or published every 2 s with `--snapshots`, nobody reading them), waits until every
//! URN is registered, then measures this process's CPU time over `--secs` seconds with no
//! traffic: lease renewals (every third of the 15 s lease), the URN journal's upkeep and
//! the snapshots. Prints `RESULT actors=.. snapshots=.. idle_cpu_pct=.. register_ms=..`.

use std::time::{Duration, Instant};

use conclib_core::{Actor, ActorSystem, Context, RemoteMessage, RequestEnvelope};
use conclib_redis::{ProxyConfig, start_proxy, start_redis};

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
    const REMOTE: &'static [RemoteMessage] = &[RemoteMessage::of::<Ping>()];
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut actors = 100_000usize;
    let mut secs = 20u64;
    let mut snapshots = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--actors" => {
                actors = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--actors N")
            }
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs N"),
            "--snapshots" => snapshots = true,
            _ => panic!("usage: idle_proxy [--actors N] [--secs S] [--snapshots]"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let redis = start_redis(&ProxyConfig::default()).await?;
        let config = redis
            .config(&ProxyConfig::default().with_namespace("idle"))
            .with_snapshot_interval(snapshots.then_some(Duration::from_secs(2)));
        let system = ActorSystem::new("idle");
        for i in 0..actors {
            system.build(Idle).urn(format!("idle:{i}")).spawn().await?;
        }
        let started = Instant::now();
        let proxy = start_proxy(&system, &config).await?;
        while proxy.served_urns().len() < actors {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let register = started.elapsed();
        // Let the start settle, then measure a quiet stretch.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (cpu0, t0) = (cpu_time(), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let cpu = cpu_time().saturating_sub(cpu0);
        let pct = cpu.as_secs_f64() / t0.elapsed().as_secs_f64() * 100.0;
        println!(
            "RESULT actors={actors} snapshots={snapshots} idle_cpu_pct={pct:.1} register_ms={}",
            register.as_millis()
        );
        proxy.shutdown().await?;
        system.shutdown(Duration::from_secs(30)).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
