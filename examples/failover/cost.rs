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
