//! The end-to-end demo of conclib: a private Redis, an actor system behind the Redis proxy,
//! three web API processes asking its actors, real HTTP traffic, a summary, a clean shutdown.
//!
//! ```text
//! cargo xtask demo [--requests N --concurrency N --web N --hold SECS]
//! ```
//!
//! (`cargo xtask demo` is `cargo run --release -p conclib-examples --bin demo --` once
//! `redis-server` is there.) Besides the counter and the key-value store, the backend runs
//! a pool of process actors (one per core) behind the URN `hashers`, which the web API's
//! `POST /hash` asks, and a small supervised tree (`tracker` and its shards), told by
//! `POST /visits/{page}`: the live view shows their pids, the pool's load and the tree.
//!
//! While it runs, the demo serves the live view of every system on its Redis and the
//! Prometheus metrics of its actor system, and prints both addresses. `--hold SECS` keeps
//! everything running that long after the traffic (with a light trickle of requests, so the
//! figures move), for a person to look at; Ctrl-C ends the hold early.
//!
//! Then a last scene ([`conclib_examples::mixed`]): the pattern `acct:{id}` served by two Rust
//! members and a Python member (`conclib.host`), two FastAPI workers under uvicorn asking
//! them over HTTP at 64 in flight, the Python member SIGKILLed mid-load; it prints the
//! requests, errors, the failover time and `RESULT ... failover_ms= lost= splits=`.
//!
//! Run as `demo web --port N`, the same binary is one process of the web API
//! ([`conclib_examples::web`]): the demo launches its web processes by re-executing itself;
//! run as `demo member ...`, one Rust member of the last scene.
//! Logs are quiet unless `RUST_LOG` says otherwise (e.g. `RUST_LOG=info`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use conclib_examples::actors::Hasher;
use conclib_examples::cluster::{Cluster, ClusterOptions};
use conclib_examples::load::{self, Summary};
use conclib_examples::{BoxError, init_tracing};
use reqwest::StatusCode;

const USAGE: &str = "usage: demo [--requests N] [--concurrency N] [--web N] [--hold SECS]\n       demo web --port N [...]  (one web API process)\n       demo member --redis URL --namespace NS --system ID  (one Rust member of acct:{id})";

/// What the demo does.
#[derive(Debug, Clone)]
struct Options {
    requests: usize,
    concurrency: usize,
    web_processes: usize,
    /// How long to keep running after the traffic.
    hold: Duration,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            requests: 3_000,
            concurrency: 64,
            web_processes: 3,
            hold: Duration::ZERO,
        };
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut number = || -> Result<usize, String> {
                let value = args
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
                match value.parse() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!("{flag}: expected a positive number, got {value:?}")),
                }
            };
            match flag.as_str() {
                "--requests" => options.requests = number()?,
                "--concurrency" => options.concurrency = number()?,
                "--web" => options.web_processes = number()?,
                "--hold" => options.hold = Duration::from_secs(number()? as u64),
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

fn main() -> ExitCode {
    // First: in a process started as one of the pool's process actors, this runs the actor
    // and never returns (which is why `main` builds its runtime by hand).
    conclib::process::init(conclib::process::Registry::new().actor::<Hasher>());
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("demo: no runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    init_tracing();
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("web") {
        args.next();
        return conclib_examples::web::run(args).await;
    }
    if args.peek().map(String::as_str) == Some("member") {
        args.next();
        return conclib_examples::mixed::member(args).await;
    }
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match demo(&options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            println!("\nFAILED: see above");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("demo failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the demo; `Ok(false)` if a check failed.
async fn demo(options: &Options) -> Result<bool, BoxError> {
    let started = Instant::now();
    let program = std::env::current_exe()?;
    println!(
        "conclib demo: Redis + actor system + proxy + {} web API processes\n",
        options.web_processes
    );

    if cfg!(debug_assertions) {
        println!(
            "  (a debug build: `cargo xtask demo` runs a release build, several times faster)\n"
        );
    }
    let mut cluster_options = ClusterOptions::new(program.clone(), options.web_processes);
    cluster_options.hashers = std::thread::available_parallelism().map_or(2, usize::from);
    let cluster = Cluster::start(&cluster_options).await?;
    let redis = cluster.redis.as_ref().expect("started");
    println!(
        "  redis         pid {:<7} 127.0.0.1:{}",
        redis.pid().unwrap_or(0),
        redis.port()
    );
    let served = cluster
        .proxy
        .as_ref()
        .map(|p| p.served_urns().join(", "))
        .unwrap_or_default();
    println!(
        "  actor system  {} serving {served} through the proxy",
        cluster.system.name()
    );
    for web in &cluster.webs {
        println!("  {:<13} pid {:<7} {}", web.name, web.pid, web.base_url);
    }
    println!("  (started in {:.2} s)", cluster.startup.as_secs_f64());
    let view = match view::start(&cluster.config).await {
        Ok(view) => {
            println!("  live view: {}", view.url);
            println!("  metrics: {}\n", view.metrics_url);
            Some(view)
        }
        Err(error) => {
            println!("  live view not started: {error}\n");
            None
        }
    };

    // Run the traffic, then shut down whatever happened.
    let mut result = traffic(&cluster, options).await;
    if let Ok(passed) = result {
        result = mixed_scene(&cluster.config.url, program)
            .await
            .map(|ok| ok && passed);
    }
    if !options.hold.is_zero() {
        result = match result {
            Ok(passed) => hold(&cluster, options.hold).await.map(|()| passed),
            failed => failed,
        };
    }
    if let Some(view) = view {
        view.stop().await;
    }
    println!("\nshutting down");
    let report = cluster.shutdown().await;
    for (name, outcome) in &report.webs {
        match outcome {
            Ok(outcome) => println!(
                "  {name:<13} {} ({})",
                outcome_text(outcome),
                outcome.status()
            ),
            Err(error) => println!("  {name:<13} FAILED: {error}"),
        }
    }
    if let Some(proxy) = &report.proxy {
        println!(
            "  proxy         {}",
            proxy
                .as_ref()
                .map_or_else(|e| format!("FAILED: {e}"), |()| "stopped".into())
        );
    }
    println!(
        "  actor system  {}",
        report
            .system
            .as_ref()
            .map_or_else(|e| format!("FAILED: {e}"), |()| "stopped".into())
    );
    if let Some(redis) = &report.redis {
        println!(
            "  redis         {}",
            redis
                .as_ref()
                .map_or_else(|e| format!("FAILED: {e}"), |()| "stopped".into())
        );
    }
    if report.leftover_pids.is_empty() {
        println!("  no child process left");
    } else {
        println!("  processes still running: {:?}", report.leftover_pids);
    }
    let passed = result? && report.is_clean();
    println!(
        "\n{} in {:.1} s",
        if passed { "demo OK" } else { "demo FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(passed)
}

fn outcome_text(outcome: &conclib::apid::ShutdownOutcome) -> &'static str {
    match outcome {
        conclib::apid::ShutdownOutcome::AlreadyExited(_) => "had already exited",
        conclib::apid::ShutdownOutcome::Terminated(_) => "stopped on SIGTERM",
        conclib::apid::ShutdownOutcome::Killed(_) => "killed after the grace period",
        _ => "stopped",
    }
}

/// The traffic and the checks; `Ok(false)` if a check failed.
async fn traffic(cluster: &Cluster, options: &Options) -> Result<bool, BoxError> {
    let http = load::http_client(options.concurrency);
    let bases = cluster.base_urls();
    let names: Vec<String> = cluster.webs.iter().map(|w| w.name.clone()).collect();
    let mut passed = true;

    let seeded = load::run(
        &http,
        &bases,
        load::seed_keys(bases.len()),
        options.concurrency,
        None,
        None,
    )
    .await;
    let seed = Summary::of(&seeded);
    if seed.error_count() > 0 {
        println!("seeding {} keys failed: {:?}", seed.requests, seed.errors);
        return Ok(false);
    }

    println!(
        "sending {} requests (70% increments, 10% counter reads, 10% puts, 10% gets), {} in flight, round-robin over {} processes\n",
        options.requests,
        options.concurrency,
        bases.len()
    );
    let plan = load::mixed("hits", options.requests, bases.len());
    let start = Instant::now();
    let outcomes = load::run(&http, &bases, plan, options.concurrency, None, None).await;
    print!("{}", load::table(&names, &outcomes, start.elapsed()));
    let summary = Summary::of(&outcomes);
    if summary.error_count() > 0 {
        passed = false;
    }

    // Every successful increment counted once, none lost, none twice.
    let incremented = outcomes
        .iter()
        .filter(|o| o.request.op.kind() == "increment" && o.is_success())
        .count() as u64;
    let value = read_counter(&http, &bases[0], "hits").await?;
    let ok = value == incremented;
    passed &= ok;
    println!(
        "\ncounter hits = {value}, successful increments = {incremented}: {}",
        if ok { "OK" } else { "MISMATCH" }
    );

    // How the API answers when something is wrong.
    println!("\nerror mapping (through {}):", names[0]);
    let base = &bases[0];
    let checks = [
        (
            "GET",
            format!("{base}/counters/nope"),
            StatusCode::NOT_FOUND,
            "no actor counter:nope",
        ),
        (
            "POST",
            format!("{base}/counters/hits/increment?by=0"),
            StatusCode::BAD_GATEWAY,
            "the counter refuses a step of 0",
        ),
        (
            "POST",
            format!("{base}/counters/hits/increment?by=abc"),
            StatusCode::BAD_REQUEST,
            "not a number",
        ),
        (
            "GET",
            format!("{base}/kv/missing"),
            StatusCode::NOT_FOUND,
            "no such key",
        ),
    ];
    for (method, url, expected, why) in checks {
        let request = if method == "GET" {
            http.get(&url)
        } else {
            http.post(&url)
        };
        let response = request.send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let code = body.get("error").and_then(|c| c.as_str()).unwrap_or("-");
        let ok = status == expected;
        passed &= ok;
        let path = url.strip_prefix(base.as_str()).unwrap_or(&url);
        println!(
            "  {method:<4} {path:<36} -> {} {code:<16} ({why}){}",
            status.as_u16(),
            if ok { "" } else { "  UNEXPECTED" }
        );
    }
    passed &= pool_and_tree(&http, &bases).await?;
    Ok(passed)
}

/// The last scene ([`conclib_examples::mixed`]): Rust and Python members of one pattern,
/// FastAPI workers asking them, the Python member SIGKILLed mid-load; `Ok(false)` if it
/// lost an increment or split an account.
async fn mixed_scene(url: &str, program: std::path::PathBuf) -> Result<bool, BoxError> {
    println!(
        "
one pattern served by Rust and Python members: acct:{{id}} (namespace mixed)"
    );
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || conclib_examples::mixed::scene(&url, &program)).await?
}

/// CPU-bound requests spread over the pool of process actors, and tells to the tree;
/// `Ok(false)` if a check failed.
async fn pool_and_tree(http: &reqwest::Client, bases: &[String]) -> Result<bool, BoxError> {
    const JOBS: usize = 64;
    const ROUNDS: u32 = 200_000;
    println!(
        "\n{JOBS} CPU-bound requests (POST /hash, {ROUNDS} rounds each) through a pool of process actors:"
    );
    let start = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for seed in 0..JOBS {
        let url = format!(
            "{}/hash?seed={seed}&rounds={ROUNDS}",
            bases[seed % bases.len()]
        );
        let http = http.clone();
        jobs.spawn(async move {
            let response = http
                .post(url)
                .timeout(Duration::from_secs(60))
                .send()
                .await?
                .error_for_status()?;
            let body: serde_json::Value = response.json().await?;
            Ok::<_, BoxError>(body.get("pid").and_then(serde_json::Value::as_u64))
        });
    }
    let mut per_pid = std::collections::BTreeMap::<u64, usize>::new();
    let mut failed = 0;
    while let Some(job) = jobs.join_next().await {
        match job? {
            Ok(Some(pid)) => *per_pid.entry(pid).or_default() += 1,
            _ => failed += 1,
        }
    }
    for (pid, count) in &per_pid {
        println!("  process actor pid {pid:<7} {count} requests");
    }
    println!(
        "  {} answered in {:.2} s, {failed} failed",
        JOBS - failed,
        start.elapsed().as_secs_f64()
    );
    let mut passed = failed == 0;

    let pages = ["home", "pricing", "docs", "blog", "about", "careers"];
    for i in 0..60 {
        let base = &bases[i % bases.len()];
        let page = pages[i % pages.len()];
        http.post(format!("{base}/visits/{page}"))
            .send()
            .await?
            .error_for_status()?;
    }
    // Tells are handled soon after Redis holds them: wait (bounded) for all 60.
    let give_up = Instant::now() + Duration::from_secs(10);
    let counts = loop {
        let body: serde_json::Value = http
            .get(format!("{}/visits", bases[0]))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let counts: Vec<u64> = body
            .get("shards")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        if counts.iter().sum::<u64>() >= 60 || Instant::now() > give_up {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ok = counts.iter().sum::<u64>() == 60;
    passed &= ok;
    println!(
        "\n60 visits told to the tracker (POST /visits/{{page}}), counted by its shards: {counts:?}: {}",
        if ok { "OK" } else { "MISMATCH" }
    );
    Ok(passed)
}

/// Keeps everything running for `duration` (or until Ctrl-C), with a light trickle of
/// increments (10 to 40 a second) through the web processes so that the live view's
/// figures move.
async fn hold(cluster: &Cluster, duration: Duration) -> Result<(), BoxError> {
    println!(
        "\nholding for {} s (Ctrl-C to stop now): 10 to 40 requests/s keep the figures moving",
        duration.as_secs()
    );
    let http = load::http_client(4);
    let bases = cluster.base_urls();
    let until = tokio::time::Instant::now() + duration;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    for i in 0usize.. {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            _ = &mut ctrl_c => break,
            _ = tick.tick() => {
                // 1 to 4 requests a tick, changing every 3 s: the plots show a shape.
                for j in 0..1 + (i / 30) % 4 {
                    let base = &bases[(i + j) % bases.len()];
                    // A failed request here changes nothing the demo checked: ignore it.
                    let _ = http
                        .post(format!("{base}/counters/hits/increment?by=1"))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                }
            }
        }
    }
    Ok(())
}

/// The live view and the metrics endpoint, served from the demo's own process.
mod view {
    use conclib::redis::{ProxyConfig, snapshots::SnapshotReader};
    use conclib_examples::BoxError;
    use tokio::sync::oneshot;

    pub struct View {
        /// The live view's page: mounted under `/conclib`, as the README shows.
        pub url: String,
        pub metrics_url: String,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    /// Records the actor system's metrics, and serves the view and `/metrics` on a free port.
    pub async fn start(config: &ProxyConfig) -> Result<View, BoxError> {
        let metrics = conclib::view::prometheus::install()?;
        let reader = SnapshotReader::connect(config).await?;
        let router = conclib::view::mount("/conclib", reader)
            .merge(conclib::view::prometheus::router(metrics));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let url = format!("http://{address}/conclib");
        let metrics_url = format!("http://{address}/metrics");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(conclib::view::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Ok(View {
            url,
            metrics_url,
            stop,
            task,
        })
    }

    impl View {
        pub async fn stop(self) {
            let _ = self.stop.send(());
            let _ = self.task.await;
        }
    }
}

/// Reads a counter through a web process.
async fn read_counter(http: &reqwest::Client, base: &str, name: &str) -> Result<u64, BoxError> {
    let response = http
        .get(format!("{base}/counters/{name}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .error_for_status()?;
    let body: serde_json::Value = response.json().await?;
    body.get("value")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("no value in {body}").into())
}
