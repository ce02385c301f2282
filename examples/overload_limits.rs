//! Overload without collapse, measured (the crate docs of `conclib-redis`, "Overload").
//!
//! `cargo run --release -p conclib-examples --example overload_limits -- load --seconds 60`: a
//! handler of known capacity (one actor, `--work-ms` of work a request, one request at a
//! time) behind a proxy that allows `--limit` requests pending for its URN, driven at
//! `--times` (10) its capacity, open loop, by 3 client processes; prints
//! `RESULT mode=load capacity_rps=.. offered_rps=.. admitted=.. refused=.. refusal_p99_ms=..
//! unloaded_p99_ms=.. admitted_p99_ms=.. admitted_p99_ratio=.. rss_growth_mb=.. lost=..
//! recovery_ms=.. refused_at_send=.. goodput_mean_per_s=.. goodput_min_per_s=..` (`lost`:
//! asks admitted and not answered, or answered without being handled; `recovery_ms`: from
//! the end of the load to the first normal answer; `refused_at_send`: refusals the clients
//! made themselves, `Overload::client_hold` being `--client-hold-ms`, 100 by default, 0 for
//! none), after a `TIMELINE second=.. goodput_per_s=.. rss_mb=..` line for each second of
//! the load (asks handled, and the serving process's resident memory).
//!
//! `cargo run --release -p conclib-examples --example overload_limits -- cap --urns 100000 --cap
//! 10000`: `--urns` distinct URNs asked once each (`--in-flight` at a time, 1,024 by default)
//! on 3 member systems, each
//! capped at `--cap` activations; each activation saves in `on_stop` only, counting its
//! saves in its state. Then every URN (or `--check` of them) is asked again: its state must
//! say one visit and as many saves as it had activations end. Prints `RESULT mode=cap urns=..
//! urns_per_s=.. check_per_s=.. errors=.. evicted=.. saved_twice=.. unsaved=.. oom=..
//! idle_member_cpu_ms_per_s=..` (`urns_per_s`: the first asks' rate, new activations a
//! second; `check_per_s`: the asks again; `oom`: members killed by a signal;
//! `idle_member_cpu_ms_per_s`: a member's CPU, on average, in the 5 s between the two rounds,
//! when nobody asks), after lines that say where the time went (`timing.rs`: `STALLS` of
//! each member's runtime, and for each round the answered asks' `LATENCY`, the `SLOW`
//! ones' and the `LATE` (failed) ones' activations). `--pause-ms N --pause-at-s T` stops
//! the first member for N ms, T s into the first round (a lapse of its lease forced).
//!
//! `cargo run --release -p conclib-examples --example overload_limits -- memory --urns 2000
//! --limit-mb 128 --rate 100 --state-kb 256`: a member process under a container-like
//! memory limit (a watchdog thread SIGKILLs it once its resident memory passes
//! `--limit-mb`, as a container's OOM killer would) is asked `--urns` new activations of
//! `--state-kb` each at `--rate` a second, once with shedding off and once with
//! `MemoryShedding` against the same limit; prints `RESULT mode=memory shedding=off|on ..
//! asked=.. errors=.. shed=.. peak_rss_mb=.. killed=0|1` for each.
//!
//! With no arguments (as `cargo test` runs it) all three run in a short form (3 s of load,
//! 1,500 URNs capped at 200, 700 activations of 256 KiB under 128 MB) and the example fails
//! if anything accepted was lost, a URN was saved twice or not at all, an error other than a
//! refusal came, or the member was killed with shedding on or not killed with it off;
//! timing goals are printed, not checked there. It starts its own Redis and kills and reaps every process it started
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

#[path = "overload_limits/timing.rs"]
mod timing;

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

/// An activation holding `kb` KiB of state, resident (written).
#[actor]
struct Blob {
    data: Vec<u8>,
}

#[actor]
impl Blob {
    /// The state's size.
    #[handle(remote)]
    fn size(&mut self) -> u64 {
        self.data.len() as u64
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
        match self.store.save(&next).await {
            Ok(()) => self.state = next,
            // On the member's standard error: what the check then counts unsaved.
            Err(e) => eprintln!("SAVE_FAILED {e}"),
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
    if role == "client" || role == "member" || role == "mem-member" {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(async {
            if role == "client" {
                client(&args[2..]).await
            } else if role == "mem-member" {
                mem_member(&args[2..]).await
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
            let in_flight = arg(&args, "--in-flight", 1024);
            let pause = match arg(&args, "--pause-ms", 0u64) {
                0 => None,
                ms => Some((
                    Duration::from_secs(arg(&args, "--pause-at-s", 20)),
                    Duration::from_millis(ms),
                )),
            };
            let bad = cap_run(&redis, urns, cap, check, in_flight, pause).await?;
            if bad > 0 {
                failed.push(format!("{bad} errors, double or missing saves"));
            }
        }
        if quick || role == "memory" {
            let (urns, limit_mb) = if quick {
                (700, 128)
            } else {
                (arg(&args, "--urns", 2000), arg(&args, "--limit-mb", 128))
            };
            let rate = arg(&args, "--rate", 100);
            let kb = arg(&args, "--state-kb", 256);
            for shed in [false, true] {
                let killed = memory_run(&redis, shed, urns, limit_mb, kb, rate).await?;
                if killed == shed {
                    failed.push(format!(
                        "the member with shedding {} was {}killed",
                        if shed { "on" } else { "off" },
                        if killed { "" } else { "not " }
                    ));
                }
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
    /// The CPU time it used so far (user and system, from `/proc`), in ms.
    fn cpu_ms(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0;
        };
        // The fields after the command's name (which may hold spaces): utime, stime are the
        // 12th and 13th, in clock ticks (100 a second on Linux).
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok())
            .sum();
        ticks * 10
    }

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

/// `client URL NS RATE SECONDS WORK_MS HOLD_MS`: asks `svc` open loop at RATE a second for SECONDS; prints
/// `STATS ok refused other` and the latencies (µs) of refusals and of answers.
async fn client(args: &[String]) -> Result<(), BoxError> {
    let [url, ns, rate, seconds, work, hold] = args else {
        return Err("client URL NS RATE SECONDS WORK_MS HOLD_MS".into());
    };
    let (rate, seconds, work): (u64, u64, u64) = (rate.parse()?, seconds.parse()?, work.parse()?);
    let mut config = ProxyConfig::new(url).with_namespace(ns);
    config.overload.client_hold = Duration::from_millis(hold.parse()?);
    let client = ProxyClient::connect(&config).await?;
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
    let hold: u64 = arg(args, "--client-hold-ms", 100);
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
            hold.to_string(),
        ])
        .await?;
        c.expect("READY").await?;
        clients.push(c);
    }
    let handled_before = handled.load(Ordering::Relaxed);
    let rss_before = rss_mb();
    let rss_peak = Arc::new(std::sync::Mutex::new(rss_before));
    // Each second of the load: asks handled (the goodput) and this process's resident memory.
    let timeline = Arc::new(std::sync::Mutex::new(Vec::<(u64, f64)>::new()));
    let sampler = {
        let (peak, timeline, handled) = (rss_peak.clone(), timeline.clone(), handled.clone());
        tokio::spawn(async move {
            let mut last = handled.load(Ordering::Relaxed);
            for tick in 1u64.. {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let rss = rss_mb();
                let mut p = peak.lock().unwrap();
                *p = p.max(rss);
                if tick % 10 == 0 {
                    let now = handled.load(Ordering::Relaxed);
                    timeline.lock().unwrap().push((now - last, rss));
                    last = now;
                }
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
    let by_proxy = proxy.stats().overloaded;
    // The whole seconds of the load (the last may be its tail).
    let seconds_seen: Vec<(u64, f64)> = timeline
        .lock()
        .unwrap()
        .iter()
        .take(seconds as usize)
        .copied()
        .collect();
    for (i, (goodput, rss)) in seconds_seen.iter().enumerate() {
        println!(
            "TIMELINE second={} goodput_per_s={goodput} rss_mb={rss:.1}",
            i + 1
        );
    }
    let goodput_min = seconds_seen.iter().map(|s| s.0).min().unwrap_or(0);
    let goodput_mean =
        seconds_seen.iter().map(|s| s.0).sum::<u64>() as f64 / seconds_seen.len().max(1) as f64;
    println!(
        "RESULT mode=load seconds={seconds} work_ms={work} limit={limit} capacity_rps={capacity:.0} offered_rps={offered} admitted={} refused={} refusal_p50_ms={:.2} refusal_p99_ms={:.2} unloaded_p99_ms={unloaded_p99:.2} admitted_p99_ms={admitted_p99:.2} admitted_p99_ratio={:.2} rss_growth_mb={rss_growth:.1} lost={lost} recovery_ms={} client_hold_ms={hold} refused_at_send={} goodput_mean_per_s={goodput_mean:.0} goodput_min_per_s={goodput_min}",
        admitted.len(),
        refused.len(),
        pct(&refused, 0.5),
        pct(&refused, 0.99),
        admitted_p99 / unloaded_p99.max(0.001),
        recovery.as_millis(),
        (refused.len() as u64).saturating_sub(by_proxy)
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
    // Its warnings (a lease lapsed, URN keys claimed again) on standard error.
    conclib_examples::init_tracing();
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id(name)
        .with_snapshot_interval(None);
    config.overload.activation_cap = Some(cap.parse()?);
    let system = ActorSystem::new(name);
    let proxy = start_proxy(&system, &config).await?;
    // Its output lines, one writer.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    timing::watch_stalls(tx.clone());
    proxy
        .activate("page:{id}", move |a: Activation| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(format!("ACTIVATED {} {}", a.urn(), timing::unix_ms()));
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
        while let Some(line) = rx.recv().await {
            let _ = writeln!(out, "{line}");
            while let Ok(line) = rx.try_recv() {
                let _ = writeln!(out, "{line}");
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
    // Counted before the shutdown, which passivates what is left (not evictions).
    let evicted = proxy.stats().evicted;
    drop(printer);
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("EVICTED {evicted}");
    proxy.shutdown().await?;
    Ok(())
}

/// Part (b): `urns` URNs over 3 members capped at `cap`; errors, double and missing saves.
/// `pause`: (when, how long) the first member is stopped (SIGSTOP, then SIGCONT) during the
/// first round, its lease lapsing in Redis when that is longer than a lease.
async fn cap_run(
    redis: &RedisDaemon,
    urns: u64,
    cap: usize,
    check: u64,
    in_flight: usize,
    pause: Option<(Duration, Duration)>,
) -> Result<u64, BoxError> {
    let ns = format!("overload-cap-{}", std::process::id());
    let config = redis.config(&ProxyConfig::default().with_namespace(&ns));
    let activations: Arc<std::sync::Mutex<HashMap<String, u64>>> = Arc::default();
    let timing = Arc::new(timing::Timing::default());
    let evicted = Arc::new(AtomicU64::new(0));
    let mut members = Vec::new();
    let mut readers = Vec::new();
    for i in 1..=3u8 {
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
        let (evicted, timing) = (evicted.clone(), timing.clone());
        readers.push(tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                timing.line(i, &line);
                if let Some(urn) = line.strip_prefix("ACTIVATED ") {
                    let urn = urn.split(' ').next().unwrap_or_default();
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
    if let Some((at, length)) = pause
        && let Some(pid) = members[0].child.id()
    {
        // By `kill(1)` on the pid of a child not reaped yet (reaped only at the end).
        let signal = move |name: &str| {
            let _ = std::process::Command::new("kill")
                .args([format!("-{name}"), pid.to_string()])
                .status();
        };
        tokio::spawn(async move {
            tokio::time::sleep(at).await;
            println!(
                "PAUSED member=m1 at_ms={} ms={}",
                timing::unix_ms(),
                length.as_millis()
            );
            signal("STOP");
            tokio::time::sleep(length).await;
            signal("CONT");
        });
    }
    let errors = AtomicU64::new(0);
    // Errors by kind (`Timeout`, `Unavailable`...), printed as an `ERRORS` line.
    let kinds: std::sync::Mutex<HashMap<String, u64>> = Default::default();
    let t = Instant::now();
    stream::iter(0..urns)
        .for_each_concurrent(in_flight, |i| {
            let (client, errors, kinds, timing) = (&client, &errors, &kinds, &timing);
            async move {
                let urn = format!("page:{i}");
                let sent = timing::unix_ms();
                let r = client.actor::<Page>(urn.as_str()).visit().await;
                timing.ask(0, &urn, sent, r.is_ok());
                if let Err(e) = r {
                    errors.fetch_add(1, Ordering::Relaxed);
                    note_error(kinds, &e);
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
    // The members' CPU while nobody asks, at their cap: their upkeep (lease, URN keys due,
    // housekeeping), which should not grow with the activations held.
    let cpu_before: u64 = members.iter().map(Child::cpu_ms).sum();
    let idle_for = Duration::from_secs(5);
    tokio::time::sleep(idle_for).await;
    let idle_cpu_ms_per_s = members
        .iter()
        .map(Child::cpu_ms)
        .sum::<u64>()
        .saturating_sub(cpu_before) as f64
        / 3.0
        / idle_for.as_secs_f64();
    // Asked again: one visit saved, as many saves as activations that ended.
    let before: HashMap<String, u64> = activations.lock().unwrap().clone();
    let (saved_twice, unsaved) = (AtomicU64::new(0), AtomicU64::new(0));
    let t_check = Instant::now();
    stream::iter(0..check.min(urns))
        .for_each_concurrent(in_flight, |i| {
            let (client, errors, before, kinds) = (&client, &errors, &before, &kinds);
            let (saved_twice, unsaved, timing) = (&saved_twice, &unsaved, &timing);
            async move {
                let urn = format!("page:{i}");
                let sent = timing::unix_ms();
                let r = client.actor::<Page>(urn.as_str()).visit().await;
                timing.ask(1, &urn, sent, r.is_ok());
                match r {
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
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        note_error(kinds, &e);
                    }
                }
            }
        })
        .await;
    let check_rate = check.min(urns) as f64 / t_check.elapsed().as_secs_f64();
    for (kind, n) in kinds.lock().unwrap().iter() {
        println!("ERRORS kind={kind} count={n}");
    }
    timing.report(config.ask_timeout);
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
        "RESULT mode=cap urns={urns} members=3 cap={cap} urns_per_s={rate:.0} in_flight={in_flight} checked={} check_per_s={check_rate:.0} errors={errors} evicted={} saved_twice={saved_twice} unsaved={unsaved} oom={oom} idle_member_cpu_ms_per_s={idle_cpu_ms_per_s:.0}",
        check.min(urns),
        evicted.load(Ordering::Relaxed)
    );
    Ok(errors + saved_twice + unsaved + oom)
}

/// Counts an ask's error under its kind (the variant's name).
fn note_error(kinds: &std::sync::Mutex<HashMap<String, u64>>, e: &AskError) {
    let text = format!("{e:?}");
    let kind = text
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default();
    *kinds.lock().unwrap().entry(kind.to_owned()).or_default() += 1;
}

/// `mem-member URL NS SHED LIMIT_MB STATE_KB`: serves `blob:{id}` (activations of
/// STATE_KB KiB each, never passivated for idleness) under a container-like memory limit: a
/// watchdog thread reads the resident memory every 5 ms and, past LIMIT_MB, prints `KILLED`
/// and sends the process SIGKILL, as a container's OOM killer would. With SHED `on`, the
/// proxy sheds activations against the same limit (`MemoryShedding`, above 80%, down to
/// 70%). Prints `SHED n PEAK mb` once its stdin closes.
async fn mem_member(args: &[String]) -> Result<(), BoxError> {
    let [url, ns, shed, limit_mb, kb] = args else {
        return Err("mem-member URL NS SHED LIMIT_MB STATE_KB".into());
    };
    let limit: u64 = limit_mb.parse::<u64>()? << 20;
    let kb: usize = kb.parse()?;
    let peak = Arc::new(AtomicU64::new(0));
    {
        let peak = peak.clone();
        std::thread::spawn(move || {
            loop {
                let rss = (rss_mb() * 1_048_576.0) as u64;
                peak.fetch_max(rss, Ordering::Relaxed);
                if rss > limit {
                    use std::io::Write;
                    println!("KILLED rss_mb={}", rss >> 20);
                    let _ = std::io::stdout().flush();
                    // SAFETY: signals this very process.
                    unsafe {
                        libc::kill(libc::getpid(), libc::SIGKILL);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    }
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id("mem")
        .with_snapshot_interval(None);
    if shed == "on" {
        config.overload.memory = Some(conclib::redis::overload::MemoryShedding::new(
            conclib::redis::overload::MemoryLimit::Bytes(limit),
        ));
    }
    let system = ActorSystem::new("mem");
    let proxy = start_proxy(&system, &config).await?;
    proxy
        .activate("blob:{id}", move |_a: Activation| async move {
            Ok::<_, BoxError>(Blob {
                data: vec![1u8; kb * 1024],
            })
        })
        .never_passivate()
        .await?;
    println!("READY");
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await;
    let shed = proxy.stats().shed;
    proxy.shutdown().await?;
    println!("SHED {shed} PEAK {}", peak.load(Ordering::Relaxed) >> 20);
    Ok(())
}

/// Part (c): a spike of `urns` activations of `kb` KiB each, asked at `rate` a second, on a
/// member under a limit of `limit_mb`, shedding on or off: whether it was killed.
async fn memory_run(
    redis: &RedisDaemon,
    shed: bool,
    urns: u64,
    limit_mb: u64,
    kb: u64,
    rate: u64,
) -> Result<bool, BoxError> {
    let ns = format!("overload-mem-{}-{shed}", std::process::id());
    let config = redis.config(&ProxyConfig::default().with_namespace(&ns));
    let mut m = spawn(&[
        "mem-member".into(),
        config.url.clone(),
        ns.clone(),
        if shed { "on" } else { "off" }.into(),
        limit_mb.to_string(),
        kb.to_string(),
    ])
    .await?;
    m.expect("READY").await?;
    let client = ProxyClient::connect(&config).await?;
    let (mut asked, mut errors) = (0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    for i in 0..urns {
        tick.tick().await;
        asked += 1;
        let r = client
            .actor::<Blob>(format!("blob:{i}"))
            .size()
            .timeout(Duration::from_secs(2))
            .await;
        if r.is_err() {
            errors += 1;
            // Its member is gone.
            if errors >= 3 {
                break;
            }
        }
    }
    client.shutdown().await;
    let mut lines = m.lines.take().ok_or("no output")?;
    drop(m.child.stdin.take());
    let last = tokio::time::timeout(Duration::from_secs(30), async {
        let mut last = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            last = line;
        }
        last
    })
    .await
    .unwrap_or_default();
    let killed = m.end(Duration::from_secs(30)).await;
    let words: Vec<&str> = last.split_whitespace().collect();
    let (shed_n, peak) = match words.as_slice() {
        ["SHED", n, "PEAK", p] => (n.to_string(), p.to_string()),
        _ => ("-".into(), "-".into()),
    };
    println!(
        "RESULT mode=memory shedding={} limit_mb={limit_mb} state_kb={kb} urns={urns} asked={asked} errors={errors} shed={shed_n} peak_rss_mb={peak} killed={}",
        if shed { "on" } else { "off" },
        u8::from(killed)
    );
    Ok(killed)
}
