//! Benchmark of the Redis proxy: one redis-server, one proxy process, one client process.
//!
//! ```text
//! cargo run --release -p conclib-redis --example proxy_bench [-- --secs 2 --seq 3000]
//! ```
//!
//! Starts a private redis-server (or uses `--url`), runs the proxy in a child process (this
//! same executable with `--serve`), and measures from this process:
//! - PING p50: one raw Redis command round trip with the same client library, and (when
//!   `redis-benchmark` is installed) `redis-benchmark -c 1`'s PING p50 on the same server;
//! - sequential ask p50/p99 (one ask at a time);
//! - asks/s with 1, 16 and 64 asks in flight from one client.
//!
//! The last line is machine-readable: `RESULT key=value ...`.

#[path = "../tests/common/actors.rs"]
mod actors;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use fred::prelude::*;

struct Args {
    serve: bool,
    url: Option<String>,
    namespace: String,
    secs: f64,
    seq: usize,
    proxy_threads: usize,
    client_threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        serve: false,
        url: None,
        namespace: "bench".into(),
        secs: 2.0,
        seq: 3000,
        proxy_threads: 1,
        client_threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--serve" => a.serve = true,
            "--url" => a.url = it.next(),
            "--namespace" => a.namespace = it.next().expect("--namespace NAME"),
            "--secs" => a.secs = it.next().and_then(|s| s.parse().ok()).expect("--secs N"),
            "--seq" => a.seq = it.next().and_then(|s| s.parse().ok()).expect("--seq N"),
            "--proxy-threads" => {
                a.proxy_threads = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--proxy-threads N")
            }
            "--client-threads" => {
                a.client_threads = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--client-threads N")
            }
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    let a = args();
    if a.serve {
        runtime(a.proxy_threads).block_on(serve(&a));
    } else {
        runtime(a.client_threads).block_on(bench(a));
    }
}

/// A current-thread runtime for 1 thread, else a multi-threaded one with that many workers.
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    }
    .enable_all()
    .build()
    .unwrap()
}

async fn serve(a: &Args) {
    let config = ProxyConfig::new(a.url.clone().unwrap()).with_namespace(a.namespace.clone());
    let system = ActorSystem::new("bench");
    system
        .build(actors::Counter::default())
        .urn("bench:counter")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    // The naive baseline's responder: BLPOP a request, RPUSH it back.
    let naive = Builder::from_config(Config::from_url(a.url.as_ref().unwrap()).unwrap())
        .build()
        .unwrap();
    naive.init().await.unwrap();
    let (req, rep) = (
        format!("{}:naive:req", a.namespace),
        format!("{}:naive:rep", a.namespace),
    );
    tokio::spawn(async move {
        loop {
            let popped: Result<Option<(String, String)>, _> = naive.blpop(&req, 0.0).await;
            match popped {
                Ok(Some((_, v))) => {
                    let _: i64 = naive.rpush(&rep, v).await.unwrap();
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
    });
    println!("READY");
    std::io::stdout().flush().unwrap();
    // Until stdin closes.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            line.clear();
        }
    })
    .await;
    proxy.shutdown().await.unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn bench(a: Args) {
    let daemon = match &a.url {
        Some(_) => None,
        None => Some(
            start_redis(&ProxyConfig::default())
                .await
                .expect("redis-server"),
        ),
    };
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| daemon.as_ref().unwrap().url());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", "--url", &url, "--namespace", &a.namespace])
        .args(["--proxy-threads", &a.proxy_threads.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "READY", "the proxy process did not start");

    let config = ProxyConfig::new(url.clone()).with_namespace(a.namespace.clone());
    let client = ProxyClient::connect(&config).await.unwrap();

    // PING round trips with the same library.
    let raw = Builder::from_config(Config::from_url(&url).unwrap())
        .build()
        .unwrap();
    raw.init().await.unwrap();
    let mut pings = Vec::with_capacity(a.seq);
    for _ in 0..200 {
        let _: String = raw.ping(None).await.unwrap();
    }
    for _ in 0..a.seq {
        let t = Instant::now();
        let _: String = raw.ping(None).await.unwrap();
        pings.push(t.elapsed());
    }
    pings.sort();
    let ping_p50 = percentile(&pings, 0.5);
    // redis-benchmark's own round trip, one connection, same server.
    let rb_p50 = daemon.as_ref().and_then(|d| redis_benchmark_p50(d.port()));

    // The naive request/reply baseline: RPUSH a request, BLPOP the reply (another process
    // answers), two connections.
    let blocking = Builder::from_config(Config::from_url(&url).unwrap())
        .build()
        .unwrap();
    blocking.init().await.unwrap();
    let (req, rep) = (
        format!("{}:naive:req", a.namespace),
        format!("{}:naive:rep", a.namespace),
    );
    let mut naive = Vec::with_capacity(a.seq);
    for i in 0..a.seq + 200 {
        let t = Instant::now();
        let _: i64 = raw.rpush(&req, i.to_string()).await.unwrap();
        let _: Option<(String, String)> = blocking.blpop(&rep, 5.0).await.unwrap();
        if i >= 200 {
            naive.push(t.elapsed());
        }
    }
    naive.sort();
    let naive_p50 = percentile(&naive, 0.5);

    // Sequential asks.
    for i in 0..200 {
        client.ask("bench:counter", actors::Add(i)).await.unwrap();
    }
    let mut asks = Vec::with_capacity(a.seq);
    for i in 0..a.seq as u64 {
        let t = Instant::now();
        client.ask("bench:counter", actors::Add(i)).await.unwrap();
        asks.push(t.elapsed());
    }
    asks.sort();
    let ask_p50 = percentile(&asks, 0.5);
    let ask_p99 = percentile(&asks, 0.99);
    println!("PING p50: {:.1} µs", us(ping_p50));
    if let Some(rb) = rb_p50 {
        println!(
            "redis-benchmark -c 1 PING p50: {:.1} µs (ask: {:.2}x)",
            us(rb),
            ask_p50.as_secs_f64() / rb.as_secs_f64()
        );
    }
    println!(
        "naive RPUSH/BLPOP request-reply p50: {:.1} µs",
        us(naive_p50)
    );
    println!(
        "sequential ask p50: {:.1} µs, p99: {:.1} µs ({:.2}x PING)",
        us(ask_p50),
        us(ask_p99),
        ask_p50.as_secs_f64() / ping_p50.as_secs_f64()
    );

    let mut result = format!(
        "RESULT ping_p50_us={:.1} naive_p50_us={:.1} ask_p50_us={:.1} ask_p99_us={:.1} ratio={:.2}",
        us(ping_p50),
        us(naive_p50),
        us(ask_p50),
        us(ask_p99),
        ask_p50.as_secs_f64() / ping_p50.as_secs_f64()
    );
    if let Some(rb) = rb_p50 {
        result.push_str(&format!(
            " redis_benchmark_p50_us={:.1} ratio_redis_benchmark={:.2}",
            us(rb),
            ask_p50.as_secs_f64() / rb.as_secs_f64()
        ));
    }
    for concurrency in [1usize, 16, 64] {
        let rate = throughput(&client, concurrency, Duration::from_secs_f64(a.secs)).await;
        println!("{concurrency:>2} concurrent: {rate:.0} asks/s");
        result.push_str(&format!(" asks_per_s_c{concurrency}={rate:.0}"));
    }
    println!("{result}");

    drop(child.stdin.take());
    let _ = child.wait();
    drop(daemon);
}

/// `redis-benchmark -c 1 -t ping` against the port: its PING_MBULK p50, if the tool is here.
fn redis_benchmark_p50(port: u16) -> Option<Duration> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "1", "-n", "20000", "-t", "ping", "--csv"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
    let line = text.lines().find(|l| l.starts_with("\"PING_MBULK\""))?;
    let p50_ms: f64 = line.split(',').nth(4)?.trim_matches('"').parse().ok()?;
    Some(Duration::from_secs_f64(p50_ms / 1000.0))
}

async fn throughput(client: &ProxyClient, concurrency: usize, duration: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let client = client.clone();
        let stop = stop.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("{w}-{i}");
                let answer = client
                    .ask("bench:counter", actors::Echo(text.clone()))
                    .await
                    .unwrap();
                assert_eq!(answer, text);
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count as f64 / elapsed.as_secs_f64()
}
