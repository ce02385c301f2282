//! conclib's benchmark suite: conclib against raw tokio and peer actor frameworks.
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml -- [--quick] [--runs N]
//!     [--frameworks a,b,..] [--scenarios tell,ask,spawn,fanin,ring] [--no-redis]
//! ```
//!
//! The parent process re-executes itself once per (framework, scenario, run) with
//! `--framework X --scenario Y`; each child builds its runtime, runs one scenario, prints one
//! `BENCH-RESULT` line and exits, so memory figures never mix. The parent takes the median
//! of the runs and prints one table, each figure with its ratio to raw tokio.

mod common;
mod conclib_bench;
mod raw_tokio;

#[cfg(feature = "actix")]
mod actix_bench;
#[cfg(feature = "kameo")]
mod kameo_bench;
#[cfg(feature = "ractor")]
mod ractor_bench;
#[cfg(feature = "redis")]
mod redis_bench;
#[cfg(feature = "xtra")]
mod xtra_bench;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Metrics, Params};

/// How a framework's scenarios are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// The one-thread runtimes serve the rows next to actix (raw tokio and conclib on one thread,
// and actix's own `System`).
#[cfg_attr(not(feature = "actix"), allow(dead_code))]
enum Runtime {
    /// tokio multi-threaded, 2 workers.
    Multi,
    /// tokio current-thread.
    CurrentThread,
    /// actix's own `System` (a current-thread tokio runtime with a `LocalSet`).
    Actix,
}

impl Runtime {
    fn label(self) -> &'static str {
        match self {
            Runtime::Multi => "tokio mt, 2 workers",
            Runtime::CurrentThread => "tokio current-thread",
            Runtime::Actix => "actix System (1 thread)",
        }
    }
}

struct Framework {
    name: &'static str,
    runtime: Runtime,
    mailbox: &'static str,
    /// The raw tokio row its ratios are computed against.
    baseline: &'static str,
    /// A peer (not conclib, not raw tokio).
    peer: bool,
}

const FRAMEWORKS: &[Framework] = &[
    Framework {
        name: "tokio-bounded",
        runtime: Runtime::Multi,
        mailbox: "bounded 1024",
        baseline: "tokio-bounded",
        peer: false,
    },
    Framework {
        name: "tokio-unbounded",
        runtime: Runtime::Multi,
        mailbox: "unbounded",
        baseline: "tokio-unbounded",
        peer: false,
    },
    Framework {
        name: "conclib-bounded",
        runtime: Runtime::Multi,
        mailbox: "bounded 1024 (default)",
        baseline: "tokio-bounded",
        peer: false,
    },
    Framework {
        name: "conclib-unbounded",
        runtime: Runtime::Multi,
        mailbox: "unbounded",
        baseline: "tokio-unbounded",
        peer: false,
    },
    Framework {
        name: "conclib-metrics",
        runtime: Runtime::Multi,
        mailbox: "bounded 1024, Prometheus recorder installed",
        baseline: "tokio-bounded",
        peer: false,
    },
    #[cfg(feature = "kameo")]
    Framework {
        name: "kameo",
        runtime: Runtime::Multi,
        mailbox: "bounded 1024",
        baseline: "tokio-bounded",
        peer: true,
    },
    #[cfg(feature = "ractor")]
    Framework {
        name: "ractor",
        runtime: Runtime::Multi,
        mailbox: "unbounded (only kind)",
        baseline: "tokio-unbounded",
        peer: true,
    },
    #[cfg(feature = "xtra")]
    Framework {
        name: "xtra",
        runtime: Runtime::Multi,
        mailbox: "bounded 1024",
        baseline: "tokio-bounded",
        peer: true,
    },
    Framework {
        name: "tokio-unbounded-1t",
        runtime: Runtime::CurrentThread,
        mailbox: "unbounded",
        baseline: "tokio-unbounded-1t",
        peer: false,
    },
    // conclib on one thread: the fair row next to actix (whose recommended runtime has one).
    Framework {
        name: "conclib-unbounded-1t",
        runtime: Runtime::CurrentThread,
        mailbox: "unbounded",
        baseline: "tokio-unbounded-1t",
        peer: false,
    },
    #[cfg(feature = "actix")]
    Framework {
        name: "actix",
        runtime: Runtime::Actix,
        mailbox: "unbounded (do_send)",
        baseline: "tokio-unbounded-1t",
        peer: true,
    },
];

const SCENARIOS: &[&str] = &["tell", "ask", "spawn", "fanin", "ring"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    if args.iter().any(|a| a == "--help" || a == "-h") {
        eprintln!(
            "usage: conclib-benches [--quick] [--runs N] [--frameworks a,b] [--scenarios tell,ask,spawn,fanin,ring] [--ring-actors N] [--no-redis]\n\
             frameworks: {}",
            FRAMEWORKS
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return;
    }
    let mut params = if flag("--quick") {
        Params::QUICK
    } else {
        Params::FULL
    };
    // The ring's size: what an actor's per-message state costs once thousands take turns
    // (docs/bench-log.md, "The metrics-on ring by the number of actors").
    let ring_actors = opt("--ring-actors").and_then(|s| s.parse::<usize>().ok());
    if let Some(n) = ring_actors {
        params.ring_actors = n.max(2);
    }
    if let (Some(fw), Some(sc)) = (opt("--framework"), opt("--scenario")) {
        let metrics = run_child(&fw, &sc, params);
        let line: Vec<String> = metrics.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("BENCH-RESULT {fw} {sc} {}", line.join(" "));
        std::io::stdout().flush().unwrap();
        // Do not wait for actors still running (rings, idle tasks): the numbers are out.
        std::process::exit(0);
    }
    let runs: usize = opt("--runs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if flag("--quick") { 3 } else { 5 });
    let fw_filter: Option<Vec<String>> =
        opt("--frameworks").map(|s| s.split(',').map(str::to_owned).collect());
    let sc_filter: Option<Vec<String>> =
        opt("--scenarios").map(|s| s.split(',').map(str::to_owned).collect());
    let frameworks: Vec<&Framework> = FRAMEWORKS
        .iter()
        .filter(|f| {
            fw_filter
                .as_ref()
                .is_none_or(|l| l.iter().any(|n| n == f.name))
        })
        .collect();
    let scenarios: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| sc_filter.as_ref().is_none_or(|l| l.iter().any(|n| n == s)))
        .collect();
    let redis = cfg!(feature = "redis")
        && !flag("--no-redis")
        && fw_filter
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n == "redis"));
    let quick = flag("--quick");

    let started = Instant::now();
    let load_before = loadavg();
    let mut results: BTreeMap<(String, String), Vec<Metrics>> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    // Runs are interleaved (every framework once, then again), so that load from elsewhere
    // on a shared machine spreads over all frameworks instead of hitting one.
    for run in 0..runs {
        for fw in &frameworks {
            for sc in &scenarios {
                eprint!("run {}/{runs} {:<20} {:<6} ", run + 1, fw.name, sc);
                match spawn_child(fw.name, sc, quick, ring_actors) {
                    Ok(m) => {
                        eprintln!(
                            "{}",
                            m.iter()
                                .map(|(k, v)| format!("{k}={v:.0}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        );
                        results
                            .entry((fw.name.to_owned(), (*sc).to_owned()))
                            .or_default()
                            .push(m);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e}");
                        failures.push(format!("{} {sc} (run {}): {e}", fw.name, run + 1));
                    }
                }
            }
        }
        if redis {
            eprint!("run {}/{runs} redis proxy ", run + 1);
            match spawn_child("redis", "proxy", quick, None) {
                Ok(m) => {
                    eprintln!("ok");
                    results
                        .entry(("redis".into(), "proxy".into()))
                        .or_default()
                        .push(m);
                }
                Err(e) => {
                    eprintln!("FAILED: {e}");
                    failures.push(format!("redis proxy (run {}): {e}", run + 1));
                }
            }
        }
    }
    let medians: BTreeMap<(String, String), BTreeMap<String, f64>> = results
        .into_iter()
        .map(|(k, runs)| (k, median_metrics(&runs)))
        .collect();
    let load = format!("{} at the start, {} at the end", load_before, loadavg());
    print_report(
        &frameworks,
        &scenarios,
        &medians,
        runs,
        quick,
        started.elapsed(),
        &load,
        &failures,
    );
}

/// The 1-minute load average: other work on a shared machine shows up here.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs one scenario of one framework in this process.
fn run_child(fw: &str, sc: &str, p: Params) -> Metrics {
    let framework = FRAMEWORKS.iter().find(|f| f.name == fw);
    match fw {
        "tokio-bounded" | "tokio-unbounded" | "tokio-unbounded-1t" => {
            let bounded = fw == "tokio-bounded";
            let rt = framework.expect("listed").runtime;
            match sc {
                "tell" => on_tokio(rt, raw_tokio::tell(bounded, p)),
                "ask" => on_tokio(rt, raw_tokio::ask_scenario(bounded, p)),
                "spawn" => on_tokio(rt, raw_tokio::spawn(bounded, p)),
                "fanin" => on_tokio(rt, raw_tokio::fanin(bounded, p)),
                "ring" => on_tokio(rt, raw_tokio::ring(bounded, p)),
                _ => panic!("unknown scenario {sc}"),
            }
        }
        "conclib-bounded" | "conclib-unbounded" | "conclib-metrics" | "conclib-unbounded-1t" => {
            if fw == "conclib-metrics" {
                // What a user gets from the `prometheus` feature: the recorder, its upkeep
                // thread, and conclib's metrics on.
                let _handle = conclib_view::prometheus::install().expect("the recorder installs");
            }
            let bounded = !fw.starts_with("conclib-unbounded");
            let rt = framework.expect("listed").runtime;
            match sc {
                "tell" => on_tokio(rt, conclib_bench::tell(bounded, p)),
                "ask" => on_tokio(rt, conclib_bench::ask(bounded, p)),
                "spawn" => on_tokio(rt, conclib_bench::spawn(bounded, p)),
                "fanin" => on_tokio(rt, conclib_bench::fanin(bounded, p)),
                "ring" => on_tokio(rt, conclib_bench::ring(bounded, p)),
                _ => panic!("unknown scenario {sc}"),
            }
        }
        #[cfg(feature = "kameo")]
        "kameo" => match sc {
            "tell" => on_tokio(Runtime::Multi, kameo_bench::tell(p)),
            "ask" => on_tokio(Runtime::Multi, kameo_bench::ask(p)),
            "spawn" => on_tokio(Runtime::Multi, kameo_bench::spawn(p)),
            "fanin" => on_tokio(Runtime::Multi, kameo_bench::fanin(p)),
            "ring" => on_tokio(Runtime::Multi, kameo_bench::ring(p)),
            _ => panic!("unknown scenario {sc}"),
        },
        #[cfg(feature = "ractor")]
        "ractor" => match sc {
            "tell" => on_tokio(Runtime::Multi, ractor_bench::tell(p)),
            "ask" => on_tokio(Runtime::Multi, ractor_bench::ask(p)),
            "spawn" => on_tokio(Runtime::Multi, ractor_bench::spawn(p)),
            "fanin" => on_tokio(Runtime::Multi, ractor_bench::fanin(p)),
            "ring" => on_tokio(Runtime::Multi, ractor_bench::ring(p)),
            _ => panic!("unknown scenario {sc}"),
        },
        #[cfg(feature = "xtra")]
        "xtra" => match sc {
            "tell" => on_tokio(Runtime::Multi, xtra_bench::tell(p)),
            "ask" => on_tokio(Runtime::Multi, xtra_bench::ask(p)),
            "spawn" => on_tokio(Runtime::Multi, xtra_bench::spawn(p)),
            "fanin" => on_tokio(Runtime::Multi, xtra_bench::fanin(p)),
            "ring" => on_tokio(Runtime::Multi, xtra_bench::ring(p)),
            _ => panic!("unknown scenario {sc}"),
        },
        #[cfg(feature = "actix")]
        "actix" => actix_bench::run(sc, p),
        #[cfg(feature = "redis")]
        "redis" => redis_bench::run(p),
        _ => panic!("unknown framework {fw} (or its feature is off)"),
    }
}

/// Runs `fut` as a task on a fresh runtime of the given kind (a task, not `block_on`'s own
/// future: so the sender runs on a worker like any actor, not on an extra thread).
fn on_tokio<F>(rt: Runtime, fut: F) -> Metrics
where
    F: Future<Output = Metrics> + Send + 'static,
{
    let runtime = match rt {
        Runtime::Multi => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        Runtime::CurrentThread | Runtime::Actix => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .expect("runtime");
    runtime.block_on(async move { tokio::spawn(fut).await.expect("scenario panicked") })
}

/// Re-executes this binary for one scenario and parses its result line.
fn spawn_child(
    fw: &str,
    sc: &str,
    quick: bool,
    ring_actors: Option<usize>,
) -> Result<Metrics, String> {
    const LIMIT: Duration = Duration::from_secs(300);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args(["--framework", fw, "--scenario", sc]);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(n) = ring_actors {
        cmd.args(["--ring-actors", &n.to_string()]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let err = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", LIMIT.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let prefix = format!("BENCH-RESULT {fw} {sc} ");
    let Some(line) = out.iter().find_map(|l| l.strip_prefix(&prefix)) else {
        let tail: Vec<&String> = err.iter().rev().take(5).collect();
        return Err(format!("{status}, no result; stderr tail: {tail:?}"));
    };
    let mut metrics = Metrics::new();
    for kv in line.split_whitespace() {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("bad result {kv}"))?;
        let key: &'static str = Box::leak(k.to_owned().into_boxed_str());
        metrics.push((key, v.parse().map_err(|_| format!("bad number {kv}"))?));
    }
    Ok(metrics)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_metrics(runs: &[Metrics]) -> BTreeMap<String, f64> {
    let mut by_key: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for m in runs {
        for (k, v) in m {
            by_key.entry((*k).to_owned()).or_default().push(*v);
        }
    }
    by_key.into_iter().map(|(k, v)| (k, median(v))).collect()
}

// ---------------------------------------------------------------------------------------
// The report.

/// How a figure compares: higher is better (rates) or lower is better (latency, memory).
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

struct Column {
    title: &'static str,
    scenario: &'static str,
    key: &'static str,
    format: fn(f64) -> String,
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_us(ns: f64) -> String {
    let us = ns / 1e3;
    if us >= 100.0 {
        format!("{us:.0} µs")
    } else if us >= 10.0 {
        format!("{us:.1} µs")
    } else {
        format!("{us:.2} µs")
    }
}

fn fmt_bytes(v: f64) -> String {
    format!("{v:.0} B")
}

const COLUMNS: &[Column] = &[
    Column {
        title: "tell msg/s",
        scenario: "tell",
        key: "rate",
        format: fmt_rate,
    },
    Column {
        title: "ask p50",
        scenario: "ask",
        key: "p50_ns",
        format: fmt_us,
    },
    Column {
        title: "ask p99",
        scenario: "ask",
        key: "p99_ns",
        format: fmt_us,
    },
    Column {
        title: "ask mean",
        scenario: "ask",
        key: "mean_ns",
        format: fmt_us,
    },
    Column {
        title: "spawn/s",
        scenario: "spawn",
        key: "spawn_rate",
        format: fmt_rate,
    },
    Column {
        title: "RSS/actor",
        scenario: "spawn",
        key: "bytes_per_actor",
        format: fmt_bytes,
    },
    Column {
        title: "stop/s",
        scenario: "spawn",
        key: "stop_rate",
        format: fmt_rate,
    },
    Column {
        title: "fan-in msg/s",
        scenario: "fanin",
        key: "rate",
        format: fmt_rate,
    },
    Column {
        title: "ring hops/s",
        scenario: "ring",
        key: "rate",
        format: fmt_rate,
    },
];

type Medians = BTreeMap<(String, String), BTreeMap<String, f64>>;

fn get(medians: &Medians, fw: &str, sc: &str, key: &str) -> Option<f64> {
    medians
        .get(&(fw.to_owned(), sc.to_owned()))
        .and_then(|m| m.get(key))
        .copied()
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{nproc} cores (nproc), {model}")
}

#[allow(clippy::too_many_arguments)]
fn print_report(
    frameworks: &[&Framework],
    scenarios: &[&str],
    medians: &Medians,
    runs: usize,
    quick: bool,
    took: Duration,
    load: &str,
    failures: &[String],
) {
    let p = if quick { Params::QUICK } else { Params::FULL };
    println!("## Results\n");
    println!(
        "Machine: {}. Median of {runs} runs{}; whole run took {:.0} s; load average {load}.",
        machine(),
        if quick { ", --quick" } else { "" },
        took.as_secs_f64()
    );
    println!(
        "Sizes: tell {} msgs; ask {} sequential; spawn {} actors; fan-in {} x {}; ring {} actors, {} hops.",
        p.tell_n,
        p.ask_n,
        p.spawn_n,
        p.fanin_senders,
        p.fanin_per_sender,
        p.ring_actors,
        p.ring_hops
    );
    println!(
        "Each figure's ratio is to the raw tokio row named in 'vs' (same runtime, same channel kind).\n"
    );
    let columns: Vec<&Column> = COLUMNS
        .iter()
        .filter(|c| scenarios.contains(&c.scenario))
        .collect();
    if !frameworks.is_empty() && !columns.is_empty() {
        print_table(frameworks, medians, &columns);
    }
    print_targets(frameworks, medians);
    #[cfg(feature = "redis")]
    redis_bench::print_report(medians);
    if !failures.is_empty() {
        println!("\nFailures:");
        for f in failures {
            println!("- {f}");
        }
    }
}

fn print_table(frameworks: &[&Framework], medians: &Medians, columns: &[&Column]) {
    print!("| framework | runtime | mailbox | vs |");
    for c in columns {
        print!(" {} |", c.title);
    }
    println!();
    print!("|---|---|---|---|");
    for _ in columns {
        print!("---:|");
    }
    println!();
    for fw in frameworks {
        print!(
            "| {} | {} | {} | {} |",
            fw.name,
            fw.runtime.label(),
            fw.mailbox,
            if fw.baseline == fw.name {
                "—"
            } else {
                fw.baseline
            }
        );
        for c in columns {
            let cell = match get(medians, fw.name, c.scenario, c.key) {
                None => "n/a".to_owned(),
                Some(v) => {
                    let base = get(medians, fw.baseline, c.scenario, c.key);
                    match base {
                        Some(b) if fw.baseline != fw.name && b > 0.0 => {
                            format!("{} ({:.2}x)", (c.format)(v), v / b)
                        }
                        _ => (c.format)(v),
                    }
                }
            };
            print!(" {cell} |");
        }
        println!();
    }
    println!();
}

/// The issue's targets for conclib, checked against this run.
fn print_targets(frameworks: &[&Framework], medians: &Medians) {
    let mut lines = Vec::new();
    for (fw, base) in [
        ("conclib-bounded", "tokio-bounded"),
        ("conclib-unbounded", "tokio-unbounded"),
    ] {
        let ratio =
            |sc: &str, key: &str| Some(get(medians, fw, sc, key)? / get(medians, base, sc, key)?);
        let checks: [(&str, Option<f64>, f64, Better); 4] = [
            ("tell", ratio("tell", "rate"), 0.6, Better::Higher),
            ("ask p50", ratio("ask", "p50_ns"), 1.3, Better::Lower),
            ("spawn", ratio("spawn", "spawn_rate"), 0.8, Better::Higher),
            (
                "memory/actor",
                ratio("spawn", "bytes_per_actor"),
                1.5,
                Better::Lower,
            ),
        ];
        for (what, r, target, better) in checks {
            let Some(r) = r else { continue };
            let ok = match better {
                Better::Higher => r >= target,
                Better::Lower => r <= target,
            };
            let op = match better {
                Better::Higher => ">=",
                Better::Lower => "<=",
            };
            lines.push(format!(
                "- {fw} {what}: {r:.2}x {base} (target {op} {target}x): {}",
                if ok { "met" } else { "**MISSED**" }
            ));
        }
        // Ahead of every multi-threaded peer on tell, ask and fan-in.
        let mut compared = 0;
        let mut behind = 0;
        for (what, sc, key, better) in [
            ("tell", "tell", "rate", Better::Higher),
            ("ask p50", "ask", "p50_ns", Better::Lower),
            ("fan-in", "fanin", "rate", Better::Higher),
        ] {
            let Some(mine) = get(medians, fw, sc, key) else {
                continue;
            };
            for peer in frameworks
                .iter()
                .filter(|f| f.peer && f.runtime == Runtime::Multi)
            {
                let Some(theirs) = get(medians, peer.name, sc, key) else {
                    continue;
                };
                let ahead = match better {
                    Better::Higher => mine > theirs,
                    Better::Lower => mine < theirs,
                };
                compared += 1;
                if !ahead {
                    behind += 1;
                    lines.push(format!(
                        "- {fw} {what}: **behind {}** ({mine:.0} vs {theirs:.0})",
                        peer.name
                    ));
                }
            }
        }
        if compared > 0 && behind == 0 {
            lines.push(format!(
                "- {fw}: ahead of every multi-threaded peer on tell, ask p50 and fan-in: met"
            ));
        }
    }
    if !lines.is_empty() {
        println!("Targets (from the issue), this run:\n");
        for l in lines {
            println!("{l}");
        }
        println!();
    }
}
