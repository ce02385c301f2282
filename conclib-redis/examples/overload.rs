//! Benchmark of the Redis proxy under overload: how soon a full mailbox's
//! `MailboxFull` reaches the asking client.
//!
//! ```text
//! cargo run --release -p conclib-redis --example overload [-- --secs 10 --burn 4]
//! ```
//!
//! Starts a private redis-server, serves one actor in a child process (this same executable
//! with `--serve`): a mailbox of `--mailbox` (64) places, whose handler sleeps `--work-ms`
//! (3 ms) before answering. From this process, `--tasks` (256) tasks ask it at once in a loop
//! (timeout 5 s), so the mailbox stays full and most asks are refused after the proxy's
//! `full_mailbox_wait` (100 ms). `--burn N` starts N threads that spin (in a process of their
//! own), to reproduce a busy machine ("load 6 on 2 cores": Redis, proxy, client and four
//! burners). With `--metrics` the proxy records its metrics and reports, for the refused
//! asks, the time from Redis taking the request to the proxy's answer (Redis's clock, whole
//! milliseconds): what the proxy's side adds, apart from the reply's trip to the client.
//!
//! Every answer's latency is the client's: from the call to its result. The last line is
//! machine-readable: `RESULT key=value ...`.

#[path = "../tests/common/actors.rs"]
mod actors;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conclib_core::{ActorSystem, AskError, MailboxConfig};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};

struct Args {
    serve: bool,
    burner: bool,
    metrics: bool,
    url: Option<String>,
    namespace: String,
    secs: f64,
    tasks: usize,
    mailbox: usize,
    work_ms: u64,
    burn: usize,
    proxy_threads: usize,
    client_threads: usize,
}

const USAGE: &str = "usage: overload [--secs N] [--tasks N] [--mailbox N] [--work-ms N] \
[--burn N] [--metrics] [--proxy-threads N] [--client-threads N]";

fn args() -> Args {
    match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("overload: {e}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        serve: false,
        burner: false,
        metrics: false,
        url: None,
        namespace: "overload".into(),
        secs: 10.0,
        tasks: 256,
        mailbox: 64,
        work_ms: 3,
        burn: 0,
        proxy_threads: 1,
        client_threads: 1,
    };
    fn number<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
        v.as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{flag} takes a number"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--serve" => a.serve = true,
            "--burner" => a.burner = true,
            "--metrics" => a.metrics = true,
            "--url" => a.url = Some(it.next().ok_or("--url takes a URL")?),
            "--namespace" => a.namespace = it.next().ok_or("--namespace takes a name")?,
            "--secs" => a.secs = number("--secs", it.next())?,
            "--tasks" => a.tasks = number("--tasks", it.next())?,
            "--mailbox" => a.mailbox = number("--mailbox", it.next())?,
            "--work-ms" => a.work_ms = number("--work-ms", it.next())?,
            "--burn" => a.burn = number("--burn", it.next())?,
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
    if a.burner {
        burn(a.burn);
    } else if a.serve {
        runtime(a.proxy_threads).block_on(serve(&a));
    } else {
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

/// `n` threads that spin until this process is killed.
fn burn(n: usize) {
    let threads: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(|| {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

async fn serve(a: &Args) {
    let snapshotter = a.metrics.then(|| {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        conclib_core::metrics::enable();
        snapshotter
    });
    let config = ProxyConfig::new(a.url.clone().unwrap()).with_namespace(a.namespace.clone());
    let system = ActorSystem::new("overload");
    system
        .build(actors::Counter::default())
        .urn("overload:slow")
        .mailbox(MailboxConfig::Bounded(a.mailbox))
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
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
    // The proxy's view of the refused asks: from Redis taking each to its answer.
    if let Some(snapshotter) = snapshotter {
        let mut full = Vec::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let refused = key.name() == "conclib_proxy_answer_seconds"
                && key
                    .labels()
                    .any(|l| l.key() == "status" && l.value() == "mailbox_full");
            if let (true, metrics_util::debugging::DebugValue::Histogram(values)) = (refused, value)
            {
                full.extend(
                    values
                        .into_iter()
                        .map(|v| Duration::from_secs_f64(v.into_inner())),
                );
            }
        }
        full.sort();
        if full.is_empty() {
            println!("PROXY n=0");
        } else {
            println!(
                "PROXY n={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1}",
                full.len(),
                ms(percentile(&full, 0.5)),
                ms(percentile(&full, 0.99)),
                ms(*full.last().unwrap())
            );
        }
    }
    std::io::stdout().flush().unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the asks of one task got: the latencies of its `MailboxFull` and its OK answers,
/// and how many ended otherwise.
#[derive(Default)]
struct Seen {
    full: Vec<Duration>,
    ok: Vec<Duration>,
    other: usize,
}

async fn ask_until(client: ProxyClient, work_ms: u64, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let result = client
            .ask("overload:slow", actors::Sleep(work_ms))
            .timeout(Duration::from_secs(5))
            .await;
        let took = t.elapsed();
        match result {
            Ok(_) => seen.ok.push(took),
            Err(AskError::MailboxFull) => seen.full.push(took),
            Err(_) => seen.other += 1,
        }
    }
    seen
}

async fn bench(a: Args) {
    let daemon = start_redis(&ProxyConfig::default())
        .await
        .expect("redis-server");
    let url = daemon.url();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(&exe)
        .args(["--serve", "--url", &url, "--namespace", &a.namespace])
        .args(["--proxy-threads", &a.proxy_threads.to_string()])
        .args(["--mailbox", &a.mailbox.to_string()])
        .args(a.metrics.then_some("--metrics"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    out.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "READY", "the serving process did not start");
    let mut burner = (a.burn > 0).then(|| {
        Command::new(&exe)
            .args(["--burner", "--burn", &a.burn.to_string()])
            .spawn()
            .unwrap()
    });

    let config = ProxyConfig::new(url.clone()).with_namespace(a.namespace.clone());
    let client = ProxyClient::connect(&config).await.unwrap();
    // The route, resolved once before the flood.
    client
        .ask("overload:slow", actors::Sleep(0))
        .timeout(Duration::from_secs(5))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..a.tasks)
        .map(|_| tokio::spawn(ask_until(client.clone(), a.work_ms, stop.clone())))
        .collect();
    // Every answer counts, from the first (the mailbox is full within milliseconds).
    tokio::time::sleep(Duration::from_secs_f64(a.secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Seen::default();
    for t in tasks {
        let seen = t.await.unwrap();
        all.full.extend(seen.full);
        all.ok.extend(seen.ok);
        all.other += seen.other;
    }
    if let Some(b) = burner.as_mut() {
        let _ = b.kill();
        let _ = b.wait();
    }
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    // The serving process stops once its stdin closes, and reports the proxy's figures.
    drop(child.stdin.take());
    let mut proxy_line = String::new();
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.starts_with("PROXY") {
            proxy_line = line.trim().to_owned();
        }
    }
    let _ = child.wait();

    all.full.sort();
    all.ok.sort();
    let stats = |v: &[Duration]| {
        if v.is_empty() {
            (0.0, 0.0, 0.0)
        } else {
            (
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.99)),
                ms(*v.last().unwrap()),
            )
        }
    };
    let (f50, f99, fmax) = stats(&all.full);
    let (o50, o99, omax) = stats(&all.ok);
    println!(
        "{} tasks, mailbox {}, handler {} ms, {} burner threads, {} s, load average {load}",
        a.tasks, a.mailbox, a.work_ms, a.burn, a.secs
    );
    println!(
        "MailboxFull: {} answers, p50 {f50:.1} ms, p99 {f99:.1} ms, max {fmax:.1} ms",
        all.full.len()
    );
    println!(
        "OK: {} answers, p50 {o50:.1} ms, p99 {o99:.1} ms, max {omax:.1} ms; other: {}",
        all.ok.len(),
        all.other
    );
    if !proxy_line.is_empty() {
        println!("proxy, Redis taking a refused request to its answer: {proxy_line}");
    }
    println!(
        "RESULT mailbox_full_p50_ms={f50:.1} mailbox_full_p99_ms={f99:.1} mailbox_full_max_ms={fmax:.1} mailbox_full_n={} ok_p50_ms={o50:.1} ok_p99_ms={o99:.1} ok_max_ms={omax:.1} ok_n={} other_n={} burn={} load={load}",
        all.full.len(),
        all.ok.len(),
        all.other,
        a.burn
    );
    drop(daemon);
}
