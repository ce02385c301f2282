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
//! - the floor: the same commands (PING, a naive list request/reply, the proxy's own stream
//!   protocol) from the thinnest possible blocking client, which no async client can beat;
//! - sequential ask p50/p99 (one ask at a time);
//! - asks/s with 1, 16 and 64 asks in flight from one client, and at 64 the CPU time per
//!   ask of each process (client, proxy, Redis when started here; `/proc/<pid>/stat`) and
//!   the commands Redis ran per ask (`INFO stats`: how well both sides batch);
//! - what the runtimes cost without conclib: fred's `INCR` from 64 tasks, and `plain`, the
//!   plainest batched request/reply through Redis lists written with fred alone (a
//!   responder in the proxy's process, on its runtime), 64 requests in flight.
//!
//! The last line is machine-readable: `RESULT key=value ...`.
//!
//! `--limits`: the proxy counts pending requests against limits it never reaches (per URN
//! and per system) and keeps an activation cap, to measure what they cost on the normal path
//! (alternate runs with and without it).
//!
//! `--drive --url URL [--namespace NS] [--pool N] [--watch NAME=PID ...]`: no run of its own,
//! a client measured on command instead (see `support/driven.rs`; `python/bench.py` uses it
//! to alternate this client with the Python client in short slices).

#[path = "../tests/common/actors.rs"]
mod actors;
#[path = "support/driven.rs"]
mod driven;
#[path = "support/redis_stats.rs"]
mod redis_stats;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
use fred::prelude::*;

/// The heap allocations of this process while [`COUNTING`] is on (otherwise one load of a
/// flag no thread writes): the client's allocations per ask.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count_allocation() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

struct Args {
    serve: bool,
    drive: bool,
    /// The client's request connections (`ProxyConfig::pool_size`) in `--drive`.
    pool: usize,
    /// Processes whose CPU time `--drive` reports (name, pid).
    watch: Vec<(String, u32)>,
    url: Option<String>,
    namespace: String,
    secs: f64,
    seq: usize,
    proxy_threads: usize,
    client_threads: usize,
    /// The proxy counts pending requests against limits it never reaches (per URN and per
    /// system) and keeps an activation cap: what the overload limits cost on the normal path.
    limits: bool,
}

const USAGE: &str = "usage: proxy_bench [--secs N] [--seq N] [--proxy-threads N] \
[--client-threads N] [--url redis://..] [--namespace NAME] [--limits]
       proxy_bench --drive --url redis://.. [--namespace NAME] [--pool N] [--watch NAME=PID]...";

/// The command line, or a one-line reason and the usage (exit status 2).
fn args() -> Args {
    match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("proxy_bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        serve: false,
        drive: false,
        pool: ProxyConfig::default().pool_size,
        watch: Vec::new(),
        url: None,
        namespace: "bench".into(),
        secs: 2.0,
        seq: 3000,
        proxy_threads: 1,
        client_threads: 1,
        limits: false,
    };
    fn number<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        v.as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{flag} takes a number"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--serve" => a.serve = true,
            "--limits" => a.limits = true,
            "--drive" => a.drive = true,
            "--pool" => a.pool = number("--pool", it.next())?,
            "--watch" => {
                let v = it.next().unwrap_or_default();
                let (name, pid) = v.split_once('=').ok_or("--watch takes NAME=PID")?;
                let pid = pid.parse().map_err(|_| "--watch takes NAME=PID")?;
                a.watch.push((name.to_string(), pid));
            }
            "--url" => a.url = Some(it.next().ok_or("--url takes a URL")?),
            "--namespace" => a.namespace = it.next().ok_or("--namespace takes a name")?,
            "--secs" => a.secs = number("--secs", it.next())?,
            "--seq" => a.seq = number("--seq", it.next())?,
            "--proxy-threads" => a.proxy_threads = number("--proxy-threads", it.next())?,
            "--client-threads" => a.client_threads = number("--client-threads", it.next())?,
            "--bench" => {} // passed by `cargo bench`
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn main() {
    let a = args();
    if a.serve {
        runtime(a.proxy_threads).block_on(serve(&a));
    } else if a.drive {
        runtime(a.client_threads).block_on(async {
            tokio::spawn(async move {
                let Some(url) = a.url.clone() else {
                    eprintln!("proxy_bench: --drive needs --url\n{USAGE}");
                    std::process::exit(2);
                };
                let mut config = ProxyConfig::new(url).with_namespace(a.namespace.clone());
                config.pool_size = a.pool;
                let client = ProxyClient::connect(&config).await.unwrap();
                driven::drive(client, a.watch).await;
            })
            .await
            .unwrap()
        });
    } else {
        // Measured from a task, as a server's handlers ask (not from `block_on`'s future,
        // which the runtime polls apart from its tasks).
        runtime(a.client_threads).block_on(async { tokio::spawn(bench(a)).await.unwrap() });
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
    let mut config = ProxyConfig::new(a.url.clone().unwrap()).with_namespace(a.namespace.clone());
    if a.limits {
        config.overload.max_pending_per_urn = Some(1 << 40);
        config.overload.max_pending = Some(1 << 40);
        config.overload.activation_cap = Some(1 << 30);
    }
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
    plain::respond(a.url.as_ref().unwrap(), &a.namespace).await;
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
        .args(a.limits.then_some("--limits"))
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
    // The same protocols with the thinnest possible blocking client, on a thread of its own.
    let floor = daemon.as_ref().map(|d| {
        let (port, ns, n) = (d.port(), a.namespace.clone(), a.seq);
        std::thread::spawn(move || floor::measure(port, &ns, n))
            .join()
            .unwrap()
    });

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
    if let Some([ping, lists, stream]) = floor {
        println!(
            "floor (blocking sockets, no library) p50: PING {:.1} µs, RPUSH/BLPOP request-reply {:.1} µs, the proxy's stream protocol {:.1} µs",
            us(ping),
            us(lists),
            us(stream)
        );
        result.push_str(&format!(
            " floor_ping_p50_us={:.1} floor_lists_p50_us={:.1} floor_stream_p50_us={:.1}",
            us(ping),
            us(lists),
            us(stream)
        ));
        if let Some(rb) = rb_p50 {
            result.push_str(&format!(
                " floor_stream_ratio_redis_benchmark={:.2}",
                stream.as_secs_f64() / rb.as_secs_f64()
            ));
        }
    }
    // Whose CPU time the asks take: this process, the proxy's, Redis's (when started here).
    let mut processes = vec![("client", std::process::id()), ("proxy", child.id())];
    if let Some(pid) = daemon.as_ref().and_then(|d| d.pid()) {
        processes.push(("redis", pid));
    }
    for concurrency in [1usize, 16, 64] {
        let commands_before = if concurrency == 64 {
            redis_stats::stat(&raw, "total_commands_processed").await
        } else {
            0
        };
        let (rate, cpu) = throughput(
            &client,
            concurrency,
            Duration::from_secs_f64(a.secs),
            &processes,
        )
        .await;
        println!("{concurrency:>2} concurrent: {rate:.0} asks/s");
        result.push_str(&format!(" asks_per_s_c{concurrency}={rate:.0}"));
        if concurrency == 64 {
            for ((name, _), us) in processes.iter().zip(cpu) {
                println!("   CPU per ask, {name}: {us:.1} µs");
                result.push_str(&format!(" cpu_us_per_ask_c64_{name}={us:.1}"));
            }
            // How well both sides batch: the commands Redis ran an ask (the proxy's reads,
            // writes and acknowledgements, the client's sends and reply reads; the two
            // `INFO`s around the run among them, and whatever asks were still in flight).
            let commands = redis_stats::stat(&raw, "total_commands_processed")
                .await
                .saturating_sub(commands_before);
            let per_ask = commands as f64 / (rate * a.secs).max(1.0);
            println!("   Redis commands per ask: {per_ask:.2}");
            result.push_str(&format!(" redis_commands_per_ask_c64={per_ask:.2}"));
        }
    }
    // Heap allocations (and reallocations) of this process per ask at 64 in flight, the
    // bench's own three among them (the text sent, its copy, the answer).
    let allocations = allocations_per_ask(&client).await;
    println!("allocations per ask at 64 in flight, client: {allocations:.1}");
    result.push_str(&format!(" allocs_per_ask_c64_client={allocations:.1}"));
    // The runtime's own share, without conclib: fred's INCR with 64 in flight, its CPU per
    // command in this process (a 2-worker runtime's hand-overs cost every client library).
    let (rate, cpu) = fred_incr(&raw, Duration::from_secs_f64(a.secs)).await;
    println!("fred INCR, 64 concurrent: {rate:.0}/s, CPU per command in this process {cpu:.1} µs");
    result.push_str(&format!(
        " fred_incr_per_s_c64={rate:.0} fred_incr_cpu_us_client={cpu:.1}"
    ));
    // The same without conclib: request/reply through Redis lists, batched on both sides.
    let (rate, cpu) = plain::throughput(&url, &a.namespace, &processes, a.secs).await;
    println!("plain fred request/reply, 64 concurrent: {rate:.0}/s");
    result.push_str(&format!(" plain_per_s_c64={rate:.0}"));
    for ((name, _), us) in processes.iter().zip(cpu) {
        println!("   CPU per request, {name}: {us:.1} µs");
        result.push_str(&format!(" plain_cpu_us_{name}={us:.1}"));
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

/// CPU time (user and system) a process used so far, from `/proc/<pid>/stat`, in µs.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the third on:
    // utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / per_second * 1e6
}

/// fred's `INCR` with 64 commands in flight from 64 tasks: commands/s, and this process's
/// CPU time per command.
async fn fred_incr(raw: &Client, duration: Duration) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (raw, stop, done) = (raw.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _: i64 = raw.incr("bench:incr").await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (count_before, cpu_before) = (done.load(Ordering::Relaxed), cpu_us(std::process::id()));
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    let count = (done.load(Ordering::Relaxed) - count_before).max(1);
    let cpu = (cpu_us(std::process::id()) - cpu_before) / count as f64;
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (count as f64 / elapsed.as_secs_f64(), cpu)
}

/// Heap allocations of this process per ask, 64 asks in flight for half a second.
async fn allocations_per_ask(client: &ProxyClient) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|w| tokio::spawn(ask_until(client.clone(), w, stop.clone(), done.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (asks, allocations) = (
        done.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    COUNTING.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    COUNTING.store(false, Ordering::Relaxed);
    let asks = (done.load(Ordering::Relaxed) - asks).max(1);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    allocations as f64 / asks as f64
}

/// One of the bench's askers: asks an echo of a text of its own until `stop`.
async fn ask_until(client: ProxyClient, w: usize, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
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
}

/// Asks/s with `concurrency` asks in flight, and the CPU time per ask of each process.
async fn throughput(
    client: &ProxyClient,
    concurrency: usize,
    duration: Duration,
    processes: &[(&str, u32)],
) -> (f64, Vec<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        tasks.push(tokio::spawn(ask_until(
            client.clone(),
            w,
            stop.clone(),
            done.clone(),
        )));
    }
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    let cpu_before: Vec<f64> = processes.iter().map(|(_, pid)| cpu_us(*pid)).collect();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = start.elapsed();
    let cpu: Vec<f64> = processes
        .iter()
        .zip(cpu_before)
        .map(|((_, pid), before)| (cpu_us(*pid) - before) / count.max(1) as f64)
        .collect();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    (count as f64 / elapsed.as_secs_f64(), cpu)
}

/// What a two-worker runtime costs a request/reply through Redis without conclib: the
/// plainest batched protocol with fred. The responder (in the proxy's process, on its
/// runtime) pops up to 64 requests at a time from a list and pushes them back in one
/// `RPUSH`; the client's 64 tasks each push a request id and wait for it on a oneshot,
/// which one reader task (`BLMPOP`, up to 64 at a time) completes.
mod plain {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use fred::prelude::*;
    use fred::types::{ClusterHash, CustomCommand};
    use tokio::sync::oneshot;

    type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

    fn keys(ns: &str) -> (String, String) {
        (format!("{ns}:plain:req"), format!("{ns}:plain:rep"))
    }

    async fn connect(url: &str) -> Client {
        let client = Builder::from_config(Config::from_url(url).unwrap())
            .build()
            .unwrap();
        client.init().await.unwrap();
        client
    }

    /// Up to 64 items of a list, waiting up to a second for the first.
    async fn pop(client: &Client, key: &str) -> Vec<Value> {
        let cmd = CustomCommand::new_static("BLMPOP", ClusterHash::FirstKey, true);
        let args: Vec<Value> = vec![
            1.into(),
            1.into(),
            key.into(),
            "LEFT".into(),
            "COUNT".into(),
            64.into(),
        ];
        match client.custom::<Value, Value>(cmd, args).await {
            Ok(Value::Array(mut parts)) if parts.len() == 2 => match parts.pop() {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Starts the responder.
    pub async fn respond(url: &str, ns: &str) {
        let (req, rep) = keys(ns);
        let (reader, writer) = (connect(url).await, connect(url).await);
        tokio::spawn(async move {
            loop {
                let items = pop(&reader, &req).await;
                if !items.is_empty() {
                    let _: i64 = writer.rpush(&rep, items).await.unwrap();
                }
            }
        });
    }

    /// Requests/s with 64 in flight, and the CPU time per request of each process.
    pub async fn throughput(
        url: &str,
        ns: &str,
        processes: &[(&str, u32)],
        secs: f64,
    ) -> (f64, Vec<f64>) {
        let (req, rep) = keys(ns);
        let (sender, reader) = (connect(url).await, connect(url).await);
        let waiting: Waiting = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let reading = {
            let (waiting, stop) = (waiting.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let items = pop(&reader, &rep).await;
                    let mut waiting = waiting.lock().unwrap();
                    for item in items {
                        if let Some(tx) = item.as_u64().and_then(|id| waiting.remove(&id)) {
                            let _ = tx.send(());
                        }
                    }
                }
            })
        };
        let (next, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (sender, req, waiting) = (sender.clone(), req.clone(), waiting.clone());
            let (stop, next, done) = (stop.clone(), next.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = oneshot::channel();
                    waiting.lock().unwrap().insert(id, tx);
                    let _: i64 = sender.rpush(&req, id).await.unwrap();
                    let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start_count = done.load(Ordering::Relaxed);
        let start = Instant::now();
        let cpu_before: Vec<f64> = processes
            .iter()
            .map(|(_, pid)| super::cpu_us(*pid))
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let count = (done.load(Ordering::Relaxed) - start_count).max(1);
        let elapsed = start.elapsed();
        let cpu = processes
            .iter()
            .zip(cpu_before)
            .map(|((_, pid), before)| (super::cpu_us(*pid) - before) / count as f64)
            .collect();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        reading.await.unwrap();
        (count as f64 / elapsed.as_secs_f64(), cpu)
    }
}

/// The floor under any client of these protocols on this machine: the same Redis commands
/// issued over blocking sockets by the thinnest possible client (no async runtime, no client
/// library, one thread per side, a minimal RESP reader), so that what remains is Redis and
/// the kernel. Latency p50 of one request/reply, for three shapes:
/// - `ping`: one command round trip (what `redis-benchmark -c 1` measures);
/// - `lists`: the naive request/reply (asker `RPUSH`es, a responder `BLPOP`s and `RPUSH`es
///   back, the asker `BLPOP`s);
/// - `stream`: the proxy's own protocol (asker `XADD`s with its reply read already armed as
///   a `BLMPOP`; the responder reads with `XREADGROUP ... BLOCK`, answers with one script
///   call that pushes the reply, sets its TTL, acknowledges and trims, and re-arms its read
///   in the same write).
mod floor {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    /// A RESP value, as far as these measurements need one.
    #[derive(Debug)]
    enum Resp {
        Bulk(Vec<u8>),
        Int,
        Nil,
        Array(Vec<Resp>),
        Error(String),
    }

    fn command(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    struct Conn {
        writer: TcpStream,
        reader: BufReader<TcpStream>,
    }

    impl Conn {
        fn open(port: u16) -> Conn {
            let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_nodelay(true).unwrap();
            Conn {
                writer: s.try_clone().unwrap(),
                reader: BufReader::new(s),
            }
        }

        fn send(&mut self, bytes: &[u8]) {
            self.writer.write_all(bytes).unwrap();
        }

        fn read(&mut self) -> Resp {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            let body = std::str::from_utf8(&line[1..line.len() - 2]).unwrap();
            match line[0] {
                b'+' => Resp::Bulk(body.as_bytes().to_vec()),
                b'-' => Resp::Error(body.to_owned()),
                b':' => Resp::Int,
                b'$' => match body.parse::<i64>().unwrap() {
                    n if n < 0 => Resp::Nil,
                    n => {
                        let mut b = vec![0; n as usize + 2];
                        self.reader.read_exact(&mut b).unwrap();
                        b.truncate(n as usize);
                        Resp::Bulk(b)
                    }
                },
                b'*' => match body.parse::<i64>().unwrap() {
                    n if n < 0 => Resp::Nil,
                    n => Resp::Array((0..n).map(|_| self.read()).collect()),
                },
                other => panic!("unexpected RESP type byte {other}"),
            }
        }

        fn call(&mut self, args: &[&[u8]]) -> Resp {
            self.send(&command(args));
            match self.read() {
                Resp::Error(e) => panic!("{e}"),
                v => v,
            }
        }
    }

    const ANSWER: &str = "redis.call('RPUSH', KEYS[2], ARGV[2]) \
        redis.call('PEXPIRE', KEYS[2], 60000) \
        redis.call('XACK', KEYS[1], 'g', ARGV[1]) \
        redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[1]) return 1";

    fn p50(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }

    /// Runs `n` timed request/replies (after a warm-up) and returns their p50.
    fn timed(n: usize, mut once: impl FnMut(usize)) -> Duration {
        for i in 0..n / 10 {
            once(i);
        }
        p50((0..n)
            .map(|i| {
                let t = Instant::now();
                once(i);
                t.elapsed()
            })
            .collect())
    }

    /// p50 of `ping`, `lists` and `stream`, `n` request/replies each.
    pub fn measure(port: u16, ns: &str, n: usize) -> [Duration; 3] {
        let (req, rep) = (format!("{ns}:floor:req"), format!("{ns}:floor:rep"));
        let (stream, reply) = (format!("{ns}:floor:stream"), format!("{ns}:floor:reply"));
        let mut a = Conn::open(port);
        let mut b = Conn::open(port);
        let del = command(&[
            b"DEL",
            req.as_bytes(),
            rep.as_bytes(),
            stream.as_bytes(),
            reply.as_bytes(),
        ]);
        a.send(&del);
        a.read();
        a.call(&[
            b"XGROUP",
            b"CREATE",
            stream.as_bytes(),
            b"g",
            b"$",
            b"MKSTREAM",
        ]);

        let ping = timed(n, |_| {
            a.call(&[b"PING"]);
        });

        let responder = {
            let (req, rep) = (req.clone(), rep.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(port);
                loop {
                    let Resp::Array(popped) = c.call(&[b"BLPOP", req.as_bytes(), b"0"]) else {
                        panic!("BLPOP")
                    };
                    let Resp::Bulk(body) = &popped[1] else {
                        panic!("BLPOP")
                    };
                    if body == b"stop" {
                        return;
                    }
                    c.call(&[b"RPUSH", rep.as_bytes(), body]);
                }
            })
        };
        let lists = timed(n, |i| {
            a.call(&[b"RPUSH", req.as_bytes(), i.to_string().as_bytes()]);
            b.call(&[b"BLPOP", rep.as_bytes(), b"0"]);
        });
        a.call(&[b"RPUSH", req.as_bytes(), b"stop"]);
        responder.join().unwrap();

        let responder = {
            let (stream, reply) = (stream.clone(), reply.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(port);
                let Resp::Bulk(sha) = c.call(&[b"SCRIPT", b"LOAD", ANSWER.as_bytes()]) else {
                    panic!("SCRIPT LOAD")
                };
                let read = command(&[
                    b"XREADGROUP",
                    b"GROUP",
                    b"g",
                    b"c",
                    b"COUNT",
                    b"64",
                    b"BLOCK",
                    b"0",
                    b"STREAMS",
                    stream.as_bytes(),
                    b">",
                ]);
                c.send(&read);
                loop {
                    let Resp::Array(streams) = c.read() else {
                        panic!("XREADGROUP")
                    };
                    let Resp::Array(s) = &streams[0] else {
                        panic!("XREADGROUP")
                    };
                    let Resp::Array(entries) = &s[1] else {
                        panic!("XREADGROUP")
                    };
                    let mut out = Vec::new();
                    let mut stop = false;
                    for e in entries {
                        let Resp::Array(e) = e else { panic!("entry") };
                        let (Resp::Bulk(id), Resp::Array(fields)) = (&e[0], &e[1]) else {
                            panic!("entry")
                        };
                        let Resp::Bulk(body) = &fields[1] else {
                            panic!("field")
                        };
                        stop |= body == b"stop";
                        out.extend(command(&[
                            b"EVALSHA",
                            &sha,
                            b"2",
                            stream.as_bytes(),
                            reply.as_bytes(),
                            id,
                            body,
                        ]));
                    }
                    if !stop {
                        out.extend_from_slice(&read);
                    }
                    c.send(&out);
                    for _ in entries {
                        c.read();
                    }
                    if stop {
                        return;
                    }
                }
            })
        };
        let blmpop = command(&[
            b"BLMPOP",
            b"0",
            b"1",
            reply.as_bytes(),
            b"LEFT",
            b"COUNT",
            b"64",
        ]);
        b.send(&blmpop); // armed before the first request, as the proxy client's reader is
        let stream_p50 = timed(n, |i| {
            a.call(&[
                b"XADD",
                stream.as_bytes(),
                b"NOMKSTREAM",
                b"*",
                b"body",
                i.to_string().as_bytes(),
            ]);
            b.read();
            b.send(&blmpop);
        });
        a.call(&[b"XADD", stream.as_bytes(), b"*", b"body", b"stop"]);
        responder.join().unwrap();
        b.read();
        a.send(&del);
        a.read();
        [ping, lists, stream_p50]
    }
}
