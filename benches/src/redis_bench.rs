//! The Redis proxy: asks through `conclib_redis` next to a raw Redis round trip (PING) and a
//! raw RPUSH/BLPOP request/reply with fred, all against one `redis-server` started for the
//! run with `conclib_redis::start_redis`, on the 2-worker multi-threaded runtime.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use conclib::remote::ExposedMessage;
use conclib::{Actor, ActorSystem, Context, Message, RequestEnvelope};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::common::{Latencies, Metrics, Params};
use crate::{Medians, get};

/// Concurrency levels for the asks/s figures.
const LEVELS: [usize; 3] = [1, 16, 64];

#[derive(Serialize, Deserialize)]
struct Add(u64);
impl Message for Add {
    type Response = u64;
    type Error = String;
    fn name() -> &'static str {
        "bench.Add"
    }
}
impl conclib::remote::MessageDecl for Add {
    type WireError = String;
}

struct Counter(u64);
impl Actor for Counter {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Add>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<Add>() {
            Ok((Add(n), r)) => {
                self.0 += n;
                r.respond(Ok(self.0));
            }
            Err(req) => req.reject(),
        }
    }
}

/// Sizes: sequential round trips per kind, and asks per concurrency level.
fn sizes(p: Params) -> (usize, usize) {
    if p.tell_n < Params::FULL.tell_n {
        (2_000, 6_400)
    } else {
        (10_000, 32_000)
    }
}

pub fn run(p: Params) -> Metrics {
    crate::on_tokio(crate::Runtime::Multi, scenario(p))
}

async fn scenario(p: Params) -> Metrics {
    let (seq, total) = sizes(p);
    let redis = start_redis(&ProxyConfig::default())
        .await
        .expect("start redis-server");
    let config = redis.config(&ProxyConfig::default().with_namespace("bench"));
    let mut metrics = Metrics::new();

    // Raw PING.
    let client = fred_client(&config.url).await;
    warm(|| async { client.ping::<String>(None).await.expect("ping") }).await;
    let lat = sequential(seq, || async {
        client.ping::<String>(None).await.expect("ping")
    })
    .await;
    push(&mut metrics, "ping", lat);
    let c = Arc::new(client.clone());
    let rate = concurrent(64, total, move || {
        let c = c.clone();
        async move {
            c.ping::<String>(None).await.expect("ping");
        }
    })
    .await;
    metrics.push(("ping_rate_c64", rate));

    // Raw RPUSH/BLPOP request/reply: a responder pops requests and pushes replies.
    let server = fred_client(&config.url).await;
    let responder = tokio::spawn(async move {
        loop {
            let popped: Option<(String, String)> =
                server.blpop("bench:raw:req", 0.0).await.expect("blpop");
            let Some((_, body)) = popped else { continue };
            if body == "stop" {
                break;
            }
            let _: i64 = server.rpush("bench:raw:rep", body).await.expect("rpush");
        }
    });
    let asker = fred_client(&config.url).await;
    let list_rt = || async {
        let _: i64 = asker.rpush("bench:raw:req", "1").await.expect("rpush");
        let _: Option<(String, String)> = asker.blpop("bench:raw:rep", 5.0).await.expect("blpop");
    };
    warm(list_rt).await;
    let lat = sequential(seq, list_rt).await;
    push(&mut metrics, "list", lat);
    let _: i64 = asker.rpush("bench:raw:req", "stop").await.expect("rpush");
    let _ = responder.await;

    // The proxy.
    let system = ActorSystem::new("benchsys");
    system
        .build(Counter(0))
        .urn("counter")
        .spawn()
        .await
        .expect("spawn");
    let proxy = start_proxy(&system, &config).await.expect("start proxy");
    let pc = Arc::new(
        ProxyClient::connect(&config)
            .await
            .expect("connect proxy client"),
    );
    let ask = |pc: Arc<ProxyClient>| async move {
        pc.ask("counter", Add(1)).await.expect("proxy ask");
    };
    warm(|| ask(pc.clone())).await;
    let lat = sequential(seq, || ask(pc.clone())).await;
    push(&mut metrics, "proxy", lat);
    for level in LEVELS {
        let pc = pc.clone();
        let rate = concurrent(level, total, move || ask(pc.clone())).await;
        let key = match level {
            1 => "proxy_rate_c1",
            16 => "proxy_rate_c16",
            _ => "proxy_rate_c64",
        };
        metrics.push((key, rate));
    }
    // The ratio within this run (same redis-server, same moment): steadier than a ratio of
    // medians taken from different runs when the machine is shared.
    if let (Some(proxy), Some(ping)) = (
        find(&metrics, "proxy_p50_ns"),
        find(&metrics, "ping_p50_ns"),
    ) {
        metrics.push(("proxy_vs_ping_p50", proxy / ping));
    }
    if let (Some(list), Some(ping)) = (find(&metrics, "list_p50_ns"), find(&metrics, "ping_p50_ns"))
    {
        metrics.push(("list_vs_ping_p50", list / ping));
    }
    pc.shutdown().await;
    let _ = proxy.shutdown().await;
    let _ = redis.shutdown();
    metrics
}

async fn fred_client(url: &str) -> Client {
    let config = Config::from_url(url).expect("redis url");
    let client = Builder::from_config(config).build().expect("fred client");
    client.init().await.expect("connect to redis");
    client
}

/// A few round trips first (connections, caches).
async fn warm<F: Future<Output = R>, R>(mut f: impl FnMut() -> F) {
    for _ in 0..200 {
        f().await;
    }
}

async fn sequential<F: Future<Output = R>, R>(n: usize, mut f: impl FnMut() -> F) -> Metrics {
    let mut lat = Latencies::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        lat.record(t);
    }
    lat.metrics(start.elapsed())
}

/// `askers` tasks share `total` round trips; round trips per second.
async fn concurrent<F>(
    askers: usize,
    total: usize,
    f: impl Fn() -> F + Send + Sync + 'static,
) -> f64
where
    F: Future<Output = ()> + Send + 'static,
{
    let f = Arc::new(f);
    let each = total / askers;
    let start = Instant::now();
    let tasks: Vec<_> = (0..askers)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    f().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("asker");
    }
    (each * askers) as f64 / start.elapsed().as_secs_f64()
}

fn find(metrics: &Metrics, key: &str) -> Option<f64> {
    metrics.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn push(metrics: &mut Metrics, prefix: &'static str, lat: Metrics) {
    for (k, v) in lat {
        let key: &'static str = Box::leak(format!("{prefix}_{k}").into_boxed_str());
        metrics.push((key, v));
    }
}

pub fn print_report(medians: &Medians) {
    let m = |k: &str| get(medians, "redis", "proxy", k);
    if m("proxy_p50_ns").is_none() && m("ping_p50_ns").is_none() {
        return;
    }
    let us = |v: Option<f64>| v.map_or("n/a".to_owned(), crate::fmt_us);
    let r = |v: Option<f64>| v.map_or("n/a".to_owned(), crate::fmt_rate);
    let ping = m("ping_p50_ns");
    let ratio = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}x"));
    println!("### Redis proxy\n");
    println!(
        "One redis-server (started with conclib_redis::start_redis) on this machine; fred clients; tokio mt, 2 workers.\n"
    );
    println!("'p50 vs PING' is the median over runs of each run's own ratio.\n");
    println!(
        "| round trip | p50 | p99 | mean | p50 vs PING | /s, 1 asker | /s, 16 askers | /s, 64 askers |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| raw PING (fred) | {} | {} | {} | 1.00x | {} | | {} |",
        us(ping),
        us(m("ping_p99_ns")),
        us(m("ping_mean_ns")),
        r(m("ping_rate")),
        r(m("ping_rate_c64"))
    );
    println!(
        "| raw RPUSH + BLPOP request/reply (fred) | {} | {} | {} | {} | {} | | |",
        us(m("list_p50_ns")),
        us(m("list_p99_ns")),
        us(m("list_mean_ns")),
        ratio(m("list_vs_ping_p50")),
        r(m("list_rate"))
    );
    println!(
        "| conclib proxy ask | {} | {} | {} | {} | {} | {} | {} |",
        us(m("proxy_p50_ns")),
        us(m("proxy_p99_ns")),
        us(m("proxy_mean_ns")),
        ratio(m("proxy_vs_ping_p50")),
        r(m("proxy_rate_c1")),
        r(m("proxy_rate_c16")),
        r(m("proxy_rate_c64"))
    );
    println!();
    let mut lines = Vec::new();
    if let Some(x) = m("proxy_vs_ping_p50") {
        lines.push(format!(
            "- proxy sequential ask p50: {x:.2}x a raw PING (target <= 2.5x): {}",
            if x <= 2.5 { "met" } else { "**MISSED**" }
        ));
    }
    if let Some(c) = m("proxy_rate_c64") {
        lines.push(format!(
            "- proxy asks/s with 64 askers: {} (target >= 40k): {}",
            crate::fmt_rate(c),
            if c >= 40_000.0 { "met" } else { "**MISSED**" }
        ));
    }
    for l in lines {
        println!("{l}");
    }
    println!();
}
