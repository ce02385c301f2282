//! The end-to-end demo of conclib: a private Redis, an actor system behind the Redis proxy,
//! three web API processes asking its actors, real HTTP traffic, a summary, a clean shutdown.
//!
//! ```text
//! cargo run -p conclib-examples --bin demo [-- --requests N --concurrency N --web N]
//! ```
//!
//! Run as `demo web --port N`, the same binary is one process of the web API
//! ([`conclib_examples::web`]): the demo launches its web processes by re-executing itself.
//! Logs are quiet unless `RUST_LOG` says otherwise (e.g. `RUST_LOG=info`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use conclib_examples::cluster::{Cluster, ClusterOptions};
use conclib_examples::load::{self, Summary};
use conclib_examples::{BoxError, init_tracing};
use reqwest::StatusCode;

const USAGE: &str = "usage: demo [--requests N] [--concurrency N] [--web N]\n       demo web --port N [...]  (one web API process)";

/// What the demo does.
#[derive(Debug, Clone)]
struct Options {
    requests: usize,
    concurrency: usize,
    web_processes: usize,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            requests: 3_000,
            concurrency: 64,
            web_processes: 3,
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
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(options)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("web") {
        args.next();
        return conclib_examples::web::run(args).await;
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

    let cluster = Cluster::start(&ClusterOptions::new(program, options.web_processes)).await?;
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
    println!("  (started in {:.2} s)\n", cluster.startup.as_secs_f64());

    // Run the traffic, then shut down whatever happened.
    let result = traffic(&cluster, options).await;
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
    Ok(passed)
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
