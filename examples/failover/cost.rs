//! The normal path's cost of a durability level: alternated rounds of each on one topology.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclib::redis::{ProxyClient, ProxyConfig};
use conclib_testkit::redis_ha;

use super::member::{Account, AccountApi as _, durability};
use super::tally::Tally;
use super::{Member, Options, URNS};
use crate::BoxError;

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
    /// CPU time per ask, µs: the member's, the driver's and the Redis servers' together.
    pub cpu_us_per_ask: f64,
}

/// The CPU time `pid` used so far (user + system), in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The fields after the command's closing parenthesis: state is the first, utime the
    // 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The CPU time of `pids` together, µs.
fn cpu_us(pids: &[u32]) -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter().map(|&p| cpu_ticks(p)).sum::<u64>() as f64 * 1e6 / per_s
}

/// The cost of a durability level on the normal path: one Sentinel topology (a primary, 2
/// replicas, 3 sentinels), one member process serving `acct:{id}` (each ask one fenced
/// state write), 64 asks in flight for `seconds`; `rounds` rounds of each level,
/// alternated, in one run.
pub async fn cost(
    options: &Options,
    rounds: usize,
    seconds: u64,
) -> Result<Vec<CostRound>, BoxError> {
    let redis = tokio::task::spawn_blocking(redis_ha::Sentinel::start).await?;
    let url = redis.url();
    let servers: Vec<u32> = redis
        .servers
        .iter()
        .filter_map(redis_ha::Node::pid)
        .collect();
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
        let mut pids = servers.clone();
        pids.extend([std::process::id(), member.pid()]);
        let cpu_before = cpu_us(&pids);
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
        let cpu = cpu_us(&pids) - cpu_before;
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
            cpu_us_per_ask: cpu / all.len().max(1) as f64,
        });
        client.shutdown().await;
        member.stop().await;
    }
    tokio::task::spawn_blocking(move || drop(redis)).await?;
    Ok(out)
}
