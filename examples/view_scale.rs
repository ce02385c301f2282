//! The live view at scale: one system of 100,000 named actors (the demo's
//! counters, reachable through the proxy), published every second, watched by 4 viewers
//! polling the view's API as its page does, while a few actors fail every round.
//!
//! ```text
//! cargo run --release -p conclib-examples --example view_scale -- [--actors N] [--secs S] [--viewers V] [--hold S]
//! ```
//!
//! With `--hold S`, the view stays up S seconds after the RESULT line (its address printed
//! to standard error), for a person to look at.
//!
//! Prints one line `RESULT key=value ...`:
//!
//! - `spawn_s`, `proxy_start_s`: spawning the actors, starting the proxy (its URN registration);
//! - `snapshot_ms`: one `snapshot_first(1000)` of the system (median of 5);
//! - `api_p50_ms`, `api_p95_ms`, `api_max_ms`: the view's API (`/api/systems` and
//!   `/api/history`) as the viewers saw it; `polls`, `poll_kib_avg`, `poll_kib_max`: a poll
//!   is one of each, as the page makes every second;
//! - `failing_listed`, `failing_total`: actors that returned an error, and of those, how many
//!   the next published snapshot listed in full (each round waits for the first snapshot
//!   taken after its failures);
//! - `idle_cpu_pct`: this process's CPU (one core = 100) over 10 s with no viewer and no
//!   traffic: the proxy, its publishing, and the view's sampling;
//! - `increment_rate`, `increment_error_pct`, `increment_p99_us`: the view's per-message
//!   figures for the counters' `Increment` at the end of the traffic (recording is on, with
//!   no recorder installed);
//! - `browser`: a headless Chromium opens the page with a search for one actor far past the
//!   first thousand and its row shows that actor's handled count (`ok`), or `skipped` when no
//!   Chromium is found (`CONCLIB_CHROMIUM`, `/usr/bin/chromium`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conclib::redis::{ProxyConfig, snapshots::SnapshotReader, start_proxy, start_redis};
use conclib::{ActorRef, ActorSystem};
use conclib_examples::BoxError;
use conclib_examples::actors::{Counter, Increment};
use serde_json::Value;

struct Options {
    actors: usize,
    secs: u64,
    viewers: usize,
    hold: u64,
}

fn parse() -> Result<Options, String> {
    let mut options = Options {
        actors: 100_000,
        secs: 30,
        viewers: 4,
        hold: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = value
            .parse::<usize>()
            .map_err(|_| format!("{flag}: expected a number, got {value:?}"))?;
        match flag.as_str() {
            "--actors" => options.actors = number.max(2_000),
            "--secs" => options.secs = number as u64,
            "--viewers" => options.viewers = number,
            "--hold" => options.hold = number as u64,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn urn(n: usize) -> String {
    format!("counter:w{n:06}")
}

/// This process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

/// A small, reproducible pseudo-random sequence.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// What the viewers measured.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    poll_bytes: Vec<usize>,
}

/// One viewer: polls like the page every second until `stop`: one page of rows, then the
/// plots' samples it lacks.
async fn viewer(url: String, kind: usize, stop: Arc<AtomicBool>) -> Seen {
    let client = reqwest::Client::new();
    let mut seen = Seen::default();
    let mut ends: std::collections::HashMap<String, u64> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut poll = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let query = match kind % 4 {
            0 => "limit=50".to_owned(),
            1 => "limit=50&q=counter:w0777".to_owned(),
            2 => "limit=50&sort=mailbox".to_owned(),
            _ => format!("limit=50&sort=urn&offset={}", (poll * 50) % 100_000),
        };
        poll += 1;
        let started = Instant::now();
        let Ok(response) = client
            .get(format!("{url}/api/systems?{query}"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
        else {
            continue;
        };
        let Ok(body) = response.bytes().await else {
            continue;
        };
        seen.latencies.push(started.elapsed());
        let mut bytes = body.len();
        let Ok(systems) = serde_json::from_slice::<Value>(&body) else {
            continue;
        };
        let mut params = Vec::new();
        let mut since = u64::MAX;
        let mut visible = std::collections::HashSet::new();
        for system in systems.as_array().into_iter().flatten() {
            for actor in system["snapshot"]["actors"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let key = format!(
                    "{}/{}",
                    system["system_id"].as_str().unwrap_or(""),
                    actor["id"]
                );
                match ends.get(&key) {
                    Some(end) => {
                        since = since.min(*end);
                        params.push(("key", key.clone()));
                    }
                    None => params.push(("full", key.clone())),
                }
                visible.insert(key);
            }
        }
        if since != u64::MAX {
            params.push(("since", since.to_string()));
        }
        ends.retain(|k, _| visible.contains(k));
        let started = Instant::now();
        let query: Vec<String> = params
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        if let Ok(response) = client
            .get(format!("{url}/api/history?{}", query.join("&")))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            && let Ok(body) = response.bytes().await
        {
            seen.latencies.push(started.elapsed());
            bytes += body.len();
            if let Ok(history) = serde_json::from_slice::<Value>(&body) {
                for (key, series) in history["series"].as_object().into_iter().flatten() {
                    let from = series["from"].as_u64().unwrap_or(0);
                    let len = series["mailbox"].as_array().map_or(0, Vec::len) as u64;
                    if len > 0 || !ends.contains_key(key) {
                        ends.insert(key.clone(), (from + len).saturating_sub(1));
                    }
                }
            }
        }
        seen.poll_bytes.push(bytes);
    }
    seen
}

/// The first system of the view's `/api/systems` with one row (`None` if it did not answer
/// JSON).
async fn first_system(client: &reqwest::Client, url: &str) -> Option<Value> {
    let systems: Value = client
        .get(format!("{url}/api/systems?limit=1"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(systems[0].clone())
}

/// `value` percent-encoded for a query string.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CONCLIB_CHROMIUM") {
        return Some(path.into());
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// The page's DOM after its scripts ran for `budget_ms` of virtual time.
fn dump_dom(
    chromium: &Path,
    url: &str,
    profile: &Path,
    budget_ms: u64,
) -> Result<String, BoxError> {
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    conclib_examples::init_tracing();
    let options = parse().map_err(|e| -> BoxError { e.into() })?;
    let base = ProxyConfig::default()
        .with_namespace("view-scale")
        .with_snapshot_interval(Some(Duration::from_secs(1)));
    let daemon = start_redis(&base).await?;
    let config = daemon.config(&base);

    // Recording on (no recorder: the per-message figures the view shows).
    conclib::metrics::enable();
    let system = ActorSystem::new("scale");
    let started = Instant::now();
    let mut actors: Vec<ActorRef<Counter>> = Vec::with_capacity(options.actors);
    for n in 0..options.actors {
        actors.push(system.build(Counter::default()).urn(urn(n)).spawn().await?);
    }
    let spawn_s = started.elapsed().as_secs_f64();
    eprintln!("{} actors spawned in {spawn_s:.1} s", options.actors);

    let started = Instant::now();
    let proxy = start_proxy(&system, &config).await?;
    let proxy_start_s = started.elapsed().as_secs_f64();
    eprintln!("proxy serving in {proxy_start_s:.1} s");

    let mut snapshot_times: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let snapshot = system.snapshot_first(1000);
            let elapsed = started.elapsed();
            assert_eq!(snapshot.actors.len(), 1000);
            elapsed
        })
        .collect();
    snapshot_times.sort();
    let snapshot_ms = snapshot_times[2].as_secs_f64() * 1e3;

    // The actor the browser looks for, far past the first thousand: 7 messages handled.
    let sought = options.actors * 7 / 9;
    for _ in 0..7 {
        actors[sought]
            .ask(Increment { by: 1 })
            .await
            .map_err(|e| format!("{e:?}"))?;
    }

    let reader = SnapshotReader::connect(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_view, view_stopped) = tokio::sync::oneshot::channel::<()>();
    let view = tokio::spawn(conclib::view::serve(
        listener,
        conclib::view::router(reader),
        async {
            let _ = view_stopped.await;
        },
    ));
    // Until the view lists every actor.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = first_system(&client, &url)
            .await
            .and_then(|system| system["page"]["listed"].as_u64());
        if listed == Some(options.actors as u64) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the view listed {listed:?} actors after 120 s").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "the view lists every actor; {} viewers for {} s",
        options.viewers, options.secs
    );

    // Traffic: 200 busy actors; the viewers.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<ActorRef<Counter>> = actors
        .iter()
        .step_by(options.actors / 200)
        .cloned()
        .collect();
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for actor in &busy {
                    let _ = actor.tell(Increment { by: 1 }).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let viewers: Vec<_> = (0..options.viewers)
        .map(|kind| tokio::spawn(viewer(url.clone(), kind, stop.clone())))
        .collect();

    // Failure rounds: a few actors anywhere fail; the first snapshot taken after lists them.
    let failures_reader = SnapshotReader::connect(&config).await?;
    let (mut failing_total, mut failing_listed) = (0usize, 0usize);
    let mut random = Lcg(31);
    let until = Instant::now() + Duration::from_secs(options.secs);
    while Instant::now() < until {
        let chosen: Vec<usize> = (0..10).map(|_| random.below(options.actors)).collect();
        for &n in &chosen {
            let _ = actors[n].ask(Increment { by: 0 }).await; // refused: an error
        }
        let failed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        let published = loop {
            let systems = failures_reader.systems().await?;
            if let Some(s) = systems
                .into_iter()
                .find(|s| s.snapshot.taken_at_ms > failed_at)
            {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let Some(published) = published else {
            return Err("no snapshot published within 10 s".into());
        };
        let mut ids: Vec<u64> = chosen.iter().map(|&n| actors[n].id().as_u64()).collect();
        ids.sort_unstable();
        ids.dedup();
        failing_total += ids.len();
        failing_listed += ids
            .iter()
            .filter(|id| {
                published
                    .snapshot
                    .actors
                    .iter()
                    .any(|a| a.id == **id && a.errors > 0)
            })
            .count();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The view's per-message figures, traffic still running.
    let increment = async {
        first_system(&client, &url).await?["messages"]
            .as_array()?
            .iter()
            .find(|m| {
                m["message"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("Increment"))
            })
            .cloned()
    }
    .await
    .unwrap_or(Value::Null);
    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
    let mut latencies = Vec::new();
    let mut poll_bytes = Vec::new();
    for viewer in viewers {
        let seen = viewer.await?;
        latencies.extend(seen.latencies);
        poll_bytes.extend(seen.poll_bytes);
    }
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    let poll_kib_avg =
        poll_bytes.iter().sum::<usize>() as f64 / poll_bytes.len().max(1) as f64 / 1024.0;
    let poll_kib_max = poll_bytes.iter().max().copied().unwrap_or(0) as f64 / 1024.0;

    // Idle: no viewer, no traffic; the proxy publishes and the view samples.
    let (cpu_before, wall) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu_pct =
        (cpu_time() - cpu_before).as_secs_f64() / wall.elapsed().as_secs_f64() * 100.0;

    // The page in a real browser, searching for one actor.
    let browser = match chromium() {
        None => "skipped".to_owned(),
        Some(chromium) => {
            let dir =
                std::env::temp_dir().join(format!("conclib-view-scale-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let sought_urn = urn(sought);
            let page = format!("{url}/#q={sought_urn}");
            let url_owned = page.clone();
            let started = Instant::now();
            let dom = tokio::task::spawn_blocking(move || {
                dump_dom(&chromium, &url_owned, &dir.join("profile"), 5_000)
            })
            .await??;
            let browser_s = started.elapsed().as_secs_f64();
            let marker = format!("data-urn=\"{sought_urn}\" data-handled=\"7\"");
            let _ = std::fs::remove_dir_all(
                std::env::temp_dir().join(format!("conclib-view-scale-{}", std::process::id())),
            );
            if dom.contains(&marker) {
                format!("ok browser_s={browser_s:.1}")
            } else {
                eprintln!("the page at {page} shows no row {marker}:\n{dom}");
                "failed".to_owned()
            }
        }
    };

    println!(
        "RESULT actors={} viewers={} secs={} spawn_s={spawn_s:.1} proxy_start_s={proxy_start_s:.1} \
         snapshot_ms={snapshot_ms:.1} api_p50_ms={:.1} api_p95_ms={:.1} api_max_ms={:.1} polls={} \
         poll_kib_avg={poll_kib_avg:.1} poll_kib_max={poll_kib_max:.1} \
         failing_listed={failing_listed} failing_total={failing_total} \
         idle_cpu_pct={idle_cpu_pct:.1} increment_rate={:.0} increment_error_pct={:.2} \
         increment_p99_us={} browser={browser}",
        options.actors,
        options.viewers,
        options.secs,
        pct(0.5),
        pct(0.95),
        pct(1.0),
        poll_bytes.len(),
        increment["rate"].as_f64().unwrap_or(f64::NAN),
        increment["error_pct"].as_f64().unwrap_or(f64::NAN),
        increment["p99_us"]
            .as_u64()
            .map_or("none".to_owned(), |n| n.to_string()),
    );

    if options.hold > 0 {
        eprintln!("live view: {url}/ for {} s", options.hold);
        tokio::time::sleep(Duration::from_secs(options.hold)).await;
    }
    let _ = stop_view.send(());
    view.await??;
    proxy.shutdown().await?;
    daemon.shutdown()?;
    let failed = failing_listed < failing_total || browser == "failed";
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
