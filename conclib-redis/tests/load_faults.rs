//! Faults at the concurrency users run: Redis killed (SIGKILL) and restarted
//! empty or with its append-only file, Redis frozen (SIGSTOP) and thawed, the serving process
//! killed and started again — each under 1, 64 and 256 callers that ask again **at once**
//! after any answer or error (a job loop, a web tier under load: nothing paces them).
//!
//! The serving process is a real child process (this test binary in the peer's role); the
//! client and its callers run on a runtime of their own (two workers, as a small web server
//! would), so a client that starved its own runtime cannot hide behind the test's.
//!
//! Each run asserts:
//! - **no deadline overrun**: no call returns later than its timeout plus [`MARGIN`];
//! - **typed errors only**: `Unavailable` or `Timeout` while the fault lasts, nothing else;
//! - **recovery**: an ask succeeds within [`RECOVERY`] of Redis (or the serving process)
//!   being back;
//! - **nothing accepted lost** beyond what the docs allow: every tell Redis took is handled,
//!   except those a Redis without persistence lost with its data.
mod common;
mod peer;
#[path = "common/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::actors::{Add, Note};
use conclib_core::AskError;
use conclib_redis::{ProxyClient, ProxyConfig};
use servers::OwnRedis;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn main() {
    peer::run_if_started_as_one();
    conclib_testkit::run(conclib_testkit::tests![
        redis_killed_and_restarted_empty_1_caller,
        redis_killed_and_restarted_empty_64_callers,
        redis_killed_and_restarted_empty_256_callers,
        redis_killed_and_restarted_with_its_aof_1_caller,
        redis_killed_and_restarted_with_its_aof_64_callers,
        redis_killed_and_restarted_with_its_aof_256_callers,
        redis_frozen_and_thawed_1_caller,
        redis_frozen_and_thawed_64_callers,
        redis_frozen_and_thawed_256_callers,
        serving_process_killed_and_restarted_1_caller,
        serving_process_killed_and_restarted_64_callers,
        serving_process_killed_and_restarted_256_callers,
    ]);
}

/// Each ask's timeout.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How much later than its timeout a call may return.
const MARGIN: Duration = Duration::from_millis(250);
/// How long after Redis (or the serving process) is back an ask must succeed again.
const RECOVERY: Duration = Duration::from_secs(1);
/// How long Redis stays dead: the client's connections are refused meanwhile.
const OUTAGE: Duration = Duration::from_millis(1500);
/// How long Redis stays frozen or the serving process dead: longer than an ask's timeout, so
/// that asks made meanwhile end at their deadline.
const LONG_OUTAGE: Duration = Duration::from_millis(3000);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// SIGKILL, then a new redis-server on the same port without the old one's data.
    RedisKilledEmpty,
    /// SIGKILL, then a new redis-server loading the old one's append-only file.
    RedisKilledAof,
    /// SIGSTOP, then SIGCONT.
    RedisFrozen,
    /// SIGKILL of the serving process, then a new one of the same system.
    ServerKilled,
}

async fn redis_killed_and_restarted_empty_1_caller() {
    run(Fault::RedisKilledEmpty, 1).await;
}
async fn redis_killed_and_restarted_empty_64_callers() {
    run(Fault::RedisKilledEmpty, 64).await;
}
async fn redis_killed_and_restarted_empty_256_callers() {
    run(Fault::RedisKilledEmpty, 256).await;
}
async fn redis_killed_and_restarted_with_its_aof_1_caller() {
    run(Fault::RedisKilledAof, 1).await;
}
async fn redis_killed_and_restarted_with_its_aof_64_callers() {
    run(Fault::RedisKilledAof, 64).await;
}
async fn redis_killed_and_restarted_with_its_aof_256_callers() {
    run(Fault::RedisKilledAof, 256).await;
}
async fn redis_frozen_and_thawed_1_caller() {
    run(Fault::RedisFrozen, 1).await;
}
async fn redis_frozen_and_thawed_64_callers() {
    run(Fault::RedisFrozen, 64).await;
}
async fn redis_frozen_and_thawed_256_callers() {
    run(Fault::RedisFrozen, 256).await;
}
async fn serving_process_killed_and_restarted_1_caller() {
    run(Fault::ServerKilled, 1).await;
}
async fn serving_process_killed_and_restarted_64_callers() {
    run(Fault::ServerKilled, 64).await;
}
async fn serving_process_killed_and_restarted_256_callers() {
    run(Fault::ServerKilled, 256).await;
}

/// The serving process: counters at `c` (asked) and `n` (told notes, recorded in a file).
struct Server {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    /// Kept open: the process prints `STOPPED` as it stops.
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: i32,
}

impl Server {
    async fn start(url: &str, ns: &str, notes: &Path) -> Server {
        let mut child = peer::command()
            .args(["serve", url, ns, "svc", "c", "n"])
            .env("CONCLIB_TEST_NOTES", notes)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id().expect("a running child")).unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .expect("the serving process starts within 30 s");
        assert_eq!(ready.unwrap().as_deref(), Some("READY"));
        Server {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    async fn kill(mut self) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGKILL) }, 0);
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("a killed child is reaped")
            .unwrap();
    }

    async fn stop(mut self) {
        let _ = self.stdin.write_all(b"stop\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line()).await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
    }
}

/// What one caller saw.
#[derive(Default)]
struct Seen {
    /// When each successful ask ended.
    answered: Vec<Instant>,
    /// Errors by kind.
    errors: BTreeMap<String, usize>,
    /// Calls that returned later than their timeout plus the margin: (took, outcome).
    overruns: Vec<(Duration, String)>,
    /// Errors of a kind no fault here may cause, with when they ended.
    unexpected: Vec<(Instant, String)>,
}

impl Seen {
    fn record<T, E: std::fmt::Debug>(&mut self, started: Instant, result: &Result<T, AskError<E>>) {
        let ended = Instant::now();
        let took = ended - started;
        let kind = match result {
            Ok(_) => {
                self.answered.push(ended);
                "Ok".to_owned()
            }
            Err(e) => {
                let kind = format!("{e:?}");
                let kind = kind.split(['(', ' ', '{']).next().unwrap_or("?").to_owned();
                if !matches!(e, AskError::Unavailable(_) | AskError::Timeout(_)) {
                    self.unexpected.push((ended, format!("{e:?}")));
                }
                *self.errors.entry(kind.clone()).or_default() += 1;
                kind
            }
        };
        if took > TIMEOUT + MARGIN {
            self.overruns.push((took, kind));
        }
    }
}

/// The load: `callers` tasks asking `c` again at once after any outcome, and two tellers
/// telling `n` numbered notes (paced: they probe for loss, the askers are the load).
struct Load {
    runtime: tokio::runtime::Runtime,
    client: ProxyClient,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    askers: Vec<tokio::task::JoinHandle<Seen>>,
    tellers: Vec<tokio::task::JoinHandle<(Vec<u64>, Seen)>>,
}

impl Load {
    async fn start(config: ProxyConfig, callers: usize) -> Load {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("client")
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .spawn(async move { ProxyClient::connect(&config).await })
            .await
            .unwrap()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let askers = (0..callers)
            .map(|_| {
                let client = client.clone();
                let stop = stop.clone();
                let answered = answered.clone();
                runtime.spawn(async move {
                    let mut seen = Seen::default();
                    while !stop.load(Ordering::Acquire) {
                        let started = Instant::now();
                        let result = client.ask("c", Add(1)).timeout(TIMEOUT).await;
                        if result.is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        seen.record(started, &result);
                    }
                    seen
                })
            })
            .collect();
        static NEXT_NOTE: AtomicU64 = AtomicU64::new(0);
        let tellers = (0..2)
            .map(|_| {
                let client = client.clone();
                let stop = stop.clone();
                runtime.spawn(async move {
                    let mut accepted = Vec::new();
                    let mut seen = Seen::default();
                    while !stop.load(Ordering::Acquire) {
                        let n = NEXT_NOTE.fetch_add(1, Ordering::Relaxed);
                        let started = Instant::now();
                        let result = client.tell("n", Note(n)).await;
                        if result.is_ok() {
                            accepted.push(n);
                        }
                        seen.record(started, &result);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    (accepted, seen)
                })
            })
            .collect();
        Load {
            runtime,
            client,
            stop,
            answered,
            askers,
            tellers,
        }
    }

    /// Waits until `more` asks beyond those answered so far have been answered.
    async fn answers(&self, more: usize, within: Duration, what: &str) -> Result<(), String> {
        let target = self.answered.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + within;
        while self.answered.load(Ordering::Relaxed) < target {
            if Instant::now() > deadline {
                return Err(format!("{what}: not {more} answers within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Stops the load; what the askers and the tellers saw.
    async fn finish(self) -> (Vec<Seen>, Vec<u64>, Vec<Seen>) {
        self.stop.store(true, Ordering::Release);
        let mut askers = Vec::new();
        for task in self.askers {
            askers.push(
                tokio::time::timeout(TIMEOUT + MARGIN * 4, task)
                    .await
                    .expect("an asker ends within its ask's timeout")
                    .unwrap(),
            );
        }
        let mut accepted = Vec::new();
        let mut tellers = Vec::new();
        for task in self.tellers {
            let (notes, seen) = tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("a teller ends")
                .unwrap();
            accepted.extend(notes);
            tellers.push(seen);
        }
        let client = self.client;
        let runtime = self.runtime;
        runtime.spawn(async move { client.shutdown().await });
        // Dropped on a plain thread: a runtime may not be dropped inside another.
        std::thread::spawn(move || runtime.shutdown_timeout(Duration::from_secs(5)))
            .join()
            .unwrap();
        (askers, accepted, tellers)
    }
}

/// The numbers the notes file holds (on the lines a newline ended:
/// `common::complete_lines`).
fn notes(path: &Path) -> std::collections::BTreeSet<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    common::complete_lines(&text)
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn notes_file(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "conclib-load-faults-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

async fn run(fault: Fault, callers: usize) {
    let dir = servers::TempDir::new("load-faults");
    let port = servers::free_ports(1)[0];
    assert_ne!(port, 6379, "never the default Redis port");
    let aof = fault == Fault::RedisKilledAof;
    let mut redis = OwnRedis::start(port, dir.path(), aof).await;
    let url = format!("redis://127.0.0.1:{port}");
    let ns = format!("lf{callers}");
    let notes_path = notes_file(&format!("{fault:?}-{callers}"));
    let mut server = Some(Server::start(&url, &ns, &notes_path).await);
    let mut config = ProxyConfig::new(&url)
        .with_namespace(&ns)
        .with_ask_timeout(TIMEOUT);
    config.command_timeout = TIMEOUT;
    let load = Load::start(config, callers).await;
    load.answers(4 * callers.max(16), Duration::from_secs(20), "warm-up")
        .await
        .unwrap();

    let faulted = Instant::now();
    match fault {
        Fault::RedisKilledEmpty | Fault::RedisKilledAof => redis.kill(),
        Fault::RedisFrozen => redis.signal(libc::SIGSTOP),
        Fault::ServerKilled => server.take().unwrap().kill().await,
    }
    // The outage (the scenario, not a wait for an event).
    tokio::time::sleep(match fault {
        Fault::RedisKilledEmpty | Fault::RedisKilledAof => OUTAGE,
        Fault::RedisFrozen | Fault::ServerKilled => LONG_OUTAGE,
    })
    .await;
    match fault {
        Fault::RedisKilledEmpty | Fault::RedisKilledAof => {
            redis = OwnRedis::start(port, dir.path(), aof).await;
        }
        Fault::RedisFrozen => redis.signal(libc::SIGCONT),
        Fault::ServerKilled => server = Some(Server::start(&url, &ns, &notes_path).await),
    }
    let back = Instant::now();
    let recovered = load
        .answers(1, Duration::from_secs(15), "recovery")
        .await
        .map(|()| back.elapsed());
    // And the load carries on.
    let carried_on = load
        .answers(
            4 * callers.max(16),
            Duration::from_secs(15),
            "after recovery",
        )
        .await;
    let (askers, accepted, tellers) = load.finish().await;

    let mut errors = BTreeMap::<String, usize>::new();
    let mut overruns = Vec::new();
    let mut unexpected = Vec::new();
    let mut answered = 0;
    let mut first_after_back = None::<Instant>;
    for seen in askers.iter().chain(&tellers) {
        for (kind, n) in &seen.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
        overruns.extend(seen.overruns.iter().cloned());
        unexpected.extend(seen.unexpected.iter().cloned());
        answered += seen.answered.len();
        if let Some(first) = seen.answered.iter().find(|t| **t >= back) {
            first_after_back = Some(first_after_back.map_or(*first, |f: Instant| f.min(*first)));
        }
    }
    let recovery = first_after_back.map(|t| t - back);
    eprintln!(
        "{fault:?} x {callers}: fault lasted {:?}; first answer {recovery:?} after it ended; \
         {answered} answered; errors {errors:?}; {} overruns (longest {:?}); {} tells accepted",
        back - faulted,
        overruns.len(),
        overruns.iter().map(|(d, _)| *d).max(),
        accepted.len(),
    );

    // Every accepted tell handled, but those a Redis without persistence lost.
    if fault != Fault::RedisKilledEmpty {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let handled = notes(&notes_path);
            let missing: Vec<u64> = accepted
                .iter()
                .copied()
                .filter(|n| !handled.contains(n))
                .collect();
            if missing.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{fault:?} x {callers}: {} accepted tells never handled, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some(server) = server {
        server.stop().await;
    }
    drop(redis);
    let _ = std::fs::remove_file(&notes_path);

    assert!(
        overruns.is_empty(),
        "{fault:?} x {callers}: {} calls returned later than their timeout + {MARGIN:?}: {:?}",
        overruns.len(),
        &overruns[..overruns.len().min(10)]
    );
    let unexpected: Vec<String> = unexpected
        .iter()
        .map(|(t, e)| {
            format!(
                "{e} {:?} after the fault began, {:?} after it ended",
                t.saturating_duration_since(faulted),
                t.saturating_duration_since(back)
            )
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{fault:?} x {callers}: untyped or unexpected errors: {:?}",
        &unexpected[..unexpected.len().min(10)]
    );
    recovered.unwrap_or_else(|e| panic!("{fault:?} x {callers}: {e}"));
    let took = recovery.expect("an answer after the fault");
    assert!(
        took <= RECOVERY,
        "{fault:?} x {callers}: the first answer came {took:?} after the fault ended"
    );
    carried_on.unwrap_or_else(|e| panic!("{fault:?} x {callers}: {e}"));
}
