//! Overload without collapse, measured (the crate docs of `conclib-redis`, "Overload").
//!
//! `cargo run --release -p conclib-examples --example overload_limits -- load --seconds 60`: a
//! handler of known capacity (one actor, `--work-ms` of work a request, one request at a
//! time) behind a proxy that allows `--limit` requests pending for its URN, driven at
//! `--times` (10) its capacity, open loop, by 3 client processes; prints
//! `RESULT mode=load capacity_rps=.. offered_rps=.. admitted=.. refused=.. refusal_p99_ms=..
//! unloaded_p99_ms=.. admitted_p99_ms=.. admitted_p99_ratio=.. rss_growth_mb=.. lost=..
//! recovery_ms=..` (`lost`: asks admitted and not answered, or answered without being
//! handled; `recovery_ms`: from the end of the load to the first normal answer).
//!
//! `cargo run --release -p conclib-examples --example overload_limits -- cap --urns 100000 --cap
//! 10000`: `--urns` distinct URNs asked once each (256 in flight) on 3 member systems, each
//! capped at `--cap` activations; each activation saves in `on_stop` only, counting its
//! saves in its state. Then every URN (or `--check` of them) is asked again: its state must
//! say one visit and as many saves as it had activations end. Prints `RESULT mode=cap urns=..
//! rate_per_s=.. errors=.. evicted=.. saved_twice=.. unsaved=.. oom=..` (`oom`: members
//! killed by a signal).
//!
//! With no arguments (as `cargo test` runs it) both run in a short form (3 s of load, 1,500
//! URNs capped at 200) and the example fails if anything accepted was lost, a URN was saved
//! twice or not at all, or an error other than a refusal came; timing goals are printed,
//! not checked there. It starts its own Redis and kills and reaps every process it started
//! by pid.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib::AskError;
use conclib::redis::{
    ProxyClient, ProxyConfig,
    daemon::RedisDaemon,
    scale::{Activation, StateStore},
    start_proxy, start_redis,
};
use conclib::{ActorSystem, actor};
use futures_util::stream::{self, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A handler of known capacity: `work_ms` of work a request, one at a time.
#[actor(mailbox = unbounded)]
struct Service {
    handled: Arc<AtomicU64>,
}

#[actor]
impl Service {
    /// Works `ms` milliseconds (blocking its one request at a time), returns the count.
    #[handle(remote)]
    async fn work(&mut self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.handled.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A page under the cap: visits and saves, saved in `on_stop` only.
#[actor]
struct Page {
    state: (u64, u64),
    /// The saves its state said when it was activated.
    loaded: (u64, u64),
    store: StateStore,
}

#[actor]
impl Page {
    /// Counts a visit; returns (visits, saves) as loaded when activated.
    #[handle(remote)]
    fn visit(&mut self) -> (u64, u64) {
        self.state.0 += 1;
        self.loaded
    }

    #[on_stop]
    async fn save(&mut self, _reason: &conclib::StopReason) {
        let next = (self.state.0, self.state.1 + 1);
        if self.store.save(&next).await.is_ok() {
            self.state = next;
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let role = args.get(1).map(String::as_str).unwrap_or("");
    if role == "client" || role == "member" {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(async {
            if role == "client" {
                client(&args[2..]).await
            } else {
                member(&args[2..]).await
            }
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let redis = start_redis(&ProxyConfig::default()).await?;
        let quick = role.is_empty();
        let mut failed = Vec::new();
        if quick || role == "load" {
            let seconds = if quick {
                3
            } else {
                arg(&args, "--seconds", 60)
            };
            let lost = load(&redis, &args, seconds).await?;
            if lost > 0 {
                failed.push(format!("{lost} accepted asks lost"));
            }
        }
        if quick || role == "cap" {
            let urns = if quick {
                1500
            } else {
                arg(&args, "--urns", 100_000)
            };
            let cap = if quick {
                200
            } else {
                arg(&args, "--cap", 10_000)
            };
            let check = arg(&args, "--check", urns);
            let bad = cap_run(&redis, urns, cap, check).await?;
            if bad > 0 {
                failed.push(format!("{bad} errors, double or missing saves"));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; ").into())
        }
    })
}

/// The p-th percentile of sorted `v`, in ms.
fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1000.0
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0.0, |pages| (pages * 4096) as f64 / 1_048_576.0)
}

/// A child process of this example (killed and reaped by pid when dropped or killed).
struct Child {
    child: tokio::process::Child,
    lines: Option<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
}

async fn spawn(args: &[String]) -> Result<Child, BoxError> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    Ok(Child {
        child,
        lines: Some(lines),
    })
}

impl Child {
    async fn expect(&mut self, word: &str) -> Result<String, BoxError> {
        let lines = self.lines.as_mut().ok_or("its output is read elsewhere")?;
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await??
            .ok_or("the child ended")?;
        if !line.starts_with(word) {
            return Err(format!("expected {word}, got {line}").into());
        }
        Ok(line)
    }

    /// Kills it (SIGKILL by pid) unless it ended, and reaps it: whether a signal ended it
    /// before that.
    async fn end(mut self, wait: Duration) -> bool {
        use std::os::unix::process::ExitStatusExt;
        drop(self.child.stdin.take());
        let status = match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(Ok(s)) => s,
            _ => {
                let _ = self.child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
                return false;
            }
        };
        status.signal().is_some()
    }
}

/// `client URL NS RATE SECONDS`: asks `svc` open loop at RATE a second for SECONDS; prints
/// `STATS ok refused other` and the latencies (µs) of refusals and of answers.
async fn client(args: &[String]) -> Result<(), BoxError> {
    let [url, ns, rate, seconds, work] = args else {
        return Err("client URL NS RATE SECONDS WORK_MS".into());
    };
    let (rate, seconds, work): (u64, u64, u64) = (rate.parse()?, seconds.parse()?, work.parse()?);
    let client = ProxyClient::connect(&ProxyConfig::new(url).with_namespace(ns)).await?;
    println!("READY");
    let mut go = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut go)).await;
    let timeout = Duration::from_secs(2);
    let results = Arc::new(std::sync::Mutex::new((Vec::new(), Vec::new(), 0u64)));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let total = rate * seconds;
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let client = client.clone();
        let results = results.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let r = client
                .actor::<Service>("svc")
                .work(work)
                .timeout(timeout)
                .await;
            let us = t.elapsed().as_micros() as u64;
            let mut res = results.lock().unwrap();
            match r {
                Ok(_) => res.1.push(us),
                Err(AskError::Overloaded { .. }) => res.0.push(us),
                Err(_) => res.2 += 1,
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let (refused, ok, other) = std::mem::take(&mut *results.lock().unwrap());
    let join = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    println!("STATS {} {} {other}", ok.len(), refused.len());
    println!("REFUSED {}", join(&refused));
    println!("ADMITTED {}", join(&ok));
    client.shutdown().await;
    Ok(())
}

/// Part (a): the handler at `--times` its capacity for `seconds`; the count of accepted asks
/// lost.
async fn load(redis: &RedisDaemon, args: &[String], seconds: u64) -> Result<u64, BoxError> {
    let work: u64 = arg(args, "--work-ms", 2);
    let limit: u64 = arg(args, "--limit", 2);
    let times: u64 = arg(args, "--times", 10);
    let ns = format!("overload-load-{}", std::process::id());
    let mut config = redis.config(&ProxyConfig::default().with_namespace(&ns));
    config.snapshot_interval = None;
    config.overload.max_pending_per_urn = Some(limit);
    let system = ActorSystem::new("svc");
    let handled = Arc::new(AtomicU64::new(0));
    system
        .build(Service {
            handled: handled.clone(),
        })
        .urn("svc")
        .spawn()
        .await?;
    let proxy = start_proxy(&system, &config).await?;
    let client = ProxyClient::connect(&config).await?;
    // Unloaded: one ask at a time for 2 s; its rate is the capacity.
    let mut unloaded = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let s = Instant::now();
        client.actor::<Service>("svc").work(work).await?;
        unloaded.push(s.elapsed().as_micros() as u64);
    }
    let capacity = unloaded.len() as f64 / t.elapsed().as_secs_f64();
    unloaded.sort_unstable();
    let unloaded_p99 = pct(&unloaded, 0.99);
    let offered = (capacity * times as f64).ceil() as u64;
    let per_client = offered.div_ceil(3);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = spawn(&[
            "client".into(),
            config.url.clone(),
            ns.clone(),
            per_client.to_string(),
            seconds.to_string(),
            work.to_string(),
        ])
        .await?;
        c.expect("READY").await?;
        clients.push(c);
    }
    let handled_before = handled.load(Ordering::Relaxed);
    let rss_before = rss_mb();
    let rss_peak = Arc::new(std::sync::Mutex::new(rss_before));
    let sampler = {
        let peak = rss_peak.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut p = peak.lock().unwrap();
                *p = p.max(rss_mb());
            }
        })
    };
    for c in &mut clients {
        use tokio::io::AsyncWriteExt;
        if let Some(stdin) = c.child.stdin.as_mut() {
            stdin.write_all(b"go\n").await?;
        }
    }
    let (mut refused, mut admitted, mut ok, mut other) = (Vec::new(), Vec::new(), 0, 0);
    for c in &mut clients {
        let stats = c.expect("STATS").await?;
        let n: Vec<u64> = stats
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        ok += n[0];
        other += n[2];
        for (word, into) in [("REFUSED", &mut refused), ("ADMITTED", &mut admitted)] {
            let line = c.expect(word).await?;
            into.extend(
                line[word.len()..]
                    .split(',')
                    .filter_map(|w| w.trim().parse::<u64>().ok()),
            );
        }
    }
    let load_end = Instant::now();
    let handled_in_load = handled.load(Ordering::Relaxed) - handled_before;
    // The first normal answer after the load.
    let recovery = loop {
        if client.actor::<Service>("svc").work(work).await.is_ok() {
            break load_end.elapsed();
        }
        if load_end.elapsed() > Duration::from_secs(10) {
            break load_end.elapsed();
        }
    };
    sampler.abort();
    for c in clients {
        c.end(Duration::from_secs(10)).await;
    }
    // Admitted and not answered normally, or answered more often than handled.
    let lost = other + ok.saturating_sub(handled_in_load);
    refused.sort_unstable();
    admitted.sort_unstable();
    let admitted_p99 = pct(&admitted, 0.99);
    let rss_growth = *rss_peak.lock().unwrap() - rss_before;
    println!(
        "RESULT mode=load seconds={seconds} work_ms={work} limit={limit} capacity_rps={capacity:.0} offered_rps={offered} admitted={} refused={} refusal_p50_ms={:.2} refusal_p99_ms={:.2} unloaded_p99_ms={unloaded_p99:.2} admitted_p99_ms={admitted_p99:.2} admitted_p99_ratio={:.2} rss_growth_mb={rss_growth:.1} lost={lost} recovery_ms={}",
        admitted.len(),
        refused.len(),
        pct(&refused, 0.5),
        pct(&refused, 0.99),
        admitted_p99 / unloaded_p99.max(0.001),
        recovery.as_millis()
    );
    client.shutdown().await;
    proxy.shutdown().await?;
    Ok(lost)
}

/// `member URL NS NAME CAP`: serves `page:{id}` capped at CAP, printing `ACTIVATED urn`.
async fn member(args: &[String]) -> Result<(), BoxError> {
    let [url, ns, name, cap] = args else {
        return Err("member URL NS NAME CAP".into());
    };
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id(name)
        .with_snapshot_interval(None);
    config.overload.activation_cap = Some(cap.parse()?);
    let system = ActorSystem::new(name);
    let proxy = start_proxy(&system, &config).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    proxy
        .activate("page:{id}", move |a: Activation| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(a.urn().to_owned());
                let state = a.store().load::<(u64, u64)>().await?.unwrap_or((0, 0));
                Ok::<_, BoxError>(Page {
                    state,
                    loaded: state,
                    store: a.into_store(),
                })
            }
        })
        .never_passivate()
        .await?;
    // One writer of stdout, in batches.
    let printer = tokio::spawn(async move {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout());
        while let Some(urn) = rx.recv().await {
            let _ = writeln!(out, "ACTIVATED {urn}");
            while let Ok(urn) = rx.try_recv() {
                let _ = writeln!(out, "ACTIVATED {urn}");
            }
            let _ = out.flush();
        }
    });
    println!("READY");
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await;
    let evicted = proxy.stats().evicted;
    proxy.shutdown().await?;
    drop(printer);
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("EVICTED {evicted}");
    Ok(())
}

/// Part (b): `urns` URNs over 3 members capped at `cap`; errors, double and missing saves.
async fn cap_run(redis: &RedisDaemon, urns: u64, cap: usize, check: u64) -> Result<u64, BoxError> {
    let ns = format!("overload-cap-{}", std::process::id());
    let config = redis.config(&ProxyConfig::default().with_namespace(&ns));
    let activations: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let evicted = Arc::new(AtomicU64::new(0));
    let mut members = Vec::new();
    let mut readers = Vec::new();
    for i in 1..=3 {
        let mut m = spawn(&[
            "member".into(),
            config.url.clone(),
            ns.clone(),
            format!("m{i}"),
            cap.to_string(),
        ])
        .await?;
        m.expect("READY").await?;
        let mut lines = m.lines.take().ok_or("no output")?;
        let activations = activations.clone();
        let evicted = evicted.clone();
        readers.push(tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(urn) = line.strip_prefix("ACTIVATED ") {
                    *activations
                        .lock()
                        .unwrap()
                        .entry(urn.to_owned())
                        .or_default() += 1;
                } else if let Some(n) = line.strip_prefix("EVICTED ") {
                    evicted.fetch_add(n.parse().unwrap_or(0), Ordering::Relaxed);
                }
            }
        }));
        members.push(m);
    }
    let client = ProxyClient::connect(&config).await?;
    let errors = AtomicU64::new(0);
    let t = Instant::now();
    stream::iter(0..urns)
        .for_each_concurrent(256, |i| {
            let (client, errors) = (&client, &errors);
            async move {
                if client
                    .actor::<Page>(format!("page:{i}"))
                    .visit()
                    .await
                    .is_err()
                {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .await;
    let rate = urns as f64 / t.elapsed().as_secs_f64();
    // Every activation told (the members print them as they come).
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now: u64 = activations.lock().unwrap().values().sum();
        if now == seen {
            break;
        }
        seen = now;
    }
    // Asked again: one visit saved, as many saves as activations that ended.
    let before: HashMap<String, u64> = activations.lock().unwrap().clone();
    let (saved_twice, unsaved) = (AtomicU64::new(0), AtomicU64::new(0));
    stream::iter(0..check.min(urns))
        .for_each_concurrent(256, |i| {
            let (client, errors, before) = (&client, &errors, &before);
            let (saved_twice, unsaved) = (&saved_twice, &unsaved);
            async move {
                let urn = format!("page:{i}");
                match client.actor::<Page>(urn.as_str()).visit().await {
                    Ok((visits, saves)) => {
                        // What its activation loaded: still alive from the first round, each
                        // earlier activation saved once (and the visit, once one ended); or
                        // activated anew, every earlier activation saved once, the visit too.
                        let activated = before.get(&urn).copied().unwrap_or(0);
                        let alive =
                            saves + 1 == activated && visits == activated.saturating_sub(1).min(1);
                        let anew = saves == activated && visits == 1;
                        if alive || anew {
                        } else if saves > activated || visits > 1 {
                            saved_twice.fetch_add(1, Ordering::Relaxed);
                        } else {
                            unsaved.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    client.shutdown().await;
    let mut oom = 0;
    for m in members {
        if m.end(Duration::from_secs(60)).await {
            oom += 1;
        }
    }
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    let (errors, saved_twice, unsaved) = (
        errors.load(Ordering::Relaxed),
        saved_twice.load(Ordering::Relaxed),
        unsaved.load(Ordering::Relaxed),
    );
    println!(
        "RESULT mode=cap urns={urns} members=3 cap={cap} rate_per_s={rate:.0} checked={} errors={errors} evicted={} saved_twice={saved_twice} unsaved={unsaved} oom={oom}",
        check.min(urns),
        evicted.load(Ordering::Relaxed)
    );
    Ok(errors + saved_twice + unsaved + oom)
}
