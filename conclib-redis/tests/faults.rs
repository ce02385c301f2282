//! Fault injection against the proxy's guarantees: a serving process killed (SIGKILL) or
//! frozen (SIGSTOP) past its lease, a flood of asks on a slow actor, entry ids a hostile
//! client chose, a proxy restarted after a crash, clients dropped by the hundred. Real
//! redis-server, real child processes (this test binary in the peer's role), every wait
//! bounded, every child killed and reaped by PID.
mod common;
mod peer;

use conclib_core::AskError;
use conclib_macros::message;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::actors::*;
use common::{config, eventually};
use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, MailboxConfig, RequestEnvelope};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn main() {
    // The peer's role first, before anything else runs.
    peer::run_if_started_as_one();
    conclib_testkit::run(conclib_testkit::tests![
        accepted_tells_survive_a_sigkill_of_the_serving_process,
        a_tell_in_the_wrong_stream_is_forwarded_to_the_urns_holder,
        a_process_paused_past_its_lease_does_not_serve_a_urn_taken_over,
        a_paused_process_replaced_by_its_own_system_hands_on_what_it_reads,
        a_flood_gets_mailbox_full_at_once_and_expired_asks_never_run,
        a_request_older_than_the_room_wait_gets_the_room_there_is_or_mailbox_full_at_once,
        a_tell_refused_for_a_full_mailbox_is_counted_as_rejected,
        an_entry_id_from_the_future_does_not_poison_the_stream,
        a_restarted_proxy_takes_over_at_once_when_its_predecessor_provably_died,
        dropped_clients_close_their_connections_at_once,
        start_redis_refuses_entries_larger_than_any_proxy_accepts,
        every_shutdown_returns_within_its_bound_while_redis_is_frozen,
        a_restarting_system_answers_unavailable_never_unknown_urn,
    ]);
}

/// A serving process: this test binary in the peer's role, with counters at some URNs.
struct Peer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: i32,
}

impl Peer {
    async fn serve(
        config: &ProxyConfig,
        system: &str,
        urns: &[&str],
        notes: &Path,
        lease_ms: u64,
    ) -> Peer {
        Peer::serve_with(config, system, urns, notes, lease_ms, false).await
    }

    /// [`serve`](Self::serve), with `release_on_shutdown` when `release`.
    async fn serve_with(
        config: &ProxyConfig,
        system: &str,
        urns: &[&str],
        notes: &Path,
        lease_ms: u64,
        release: bool,
    ) -> Peer {
        let mut command = peer::command();
        if release {
            command.env("CONCLIB_TEST_RELEASE", "1");
        }
        let mut child = command
            .args(["serve", &config.url, &config.namespace, system])
            .args(urns)
            .env("CONCLIB_TEST_NOTES", notes)
            .env("CONCLIB_TEST_LEASE_MS", lease_ms.to_string())
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
            .expect("the peer starts within 30 s");
        assert_eq!(ready.unwrap().as_deref(), Some("READY"));
        Peer {
            child,
            stdin,
            stdout,
            pid,
        }
    }

    /// SIGSTOP, returning once every thread of it stopped.
    async fn freeze(&self) {
        conclib_testkit::freeze(self.pid.unsigned_abs()).await;
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child we have not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }

    /// SIGKILL, then reap.
    async fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("a killed child is reaped")
            .unwrap();
        assert!(!status.success());
    }

    async fn stop(mut self) {
        self.stdin.write_all(b"stop\n").await.unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(20), self.stdout.next_line())
            .await
            .expect("the peer stops within 20 s");
        assert_eq!(stopped.unwrap().as_deref(), Some("STOPPED"));
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the peer stops")
            .unwrap();
        assert!(status.success());
    }
}

/// The numbers in a notes file, with how often each was recorded.
fn notes(path: &Path) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines() {
            if let Ok(n) = line.parse() {
                *seen.entry(n).or_insert(0) += 1;
            }
        }
    }
    seen
}

fn temp_file(tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "conclib-faults-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

async fn raw_client(config: &ProxyConfig) -> Client {
    common::plain_client(&config.url).await
}

async fn raw(client: &Client, args: Vec<&str>) -> Result<Value, fred::error::Error> {
    common::command(client, &args).await
}

/// Item 1: a tell is acknowledged only once handled, so a SIGKILL loses none.
async fn accepted_tells_survive_a_sigkill_of_the_serving_process() {
    let config = config("sigkill-tells");
    let path = temp_file("sigkill");
    let client = ProxyClient::connect(&config).await.unwrap();
    let peer = Peer::serve(&config, "svc", &["notes"], &path, 2_000).await;
    const TOTAL: u64 = 600;
    for i in 0..TOTAL {
        client.tell("notes", Note(i)).await.unwrap();
    }
    // Every tell is in Redis now; kill the server while it is part way through them.
    eventually(Duration::from_secs(20), "some notes handled", || {
        let path = path.clone();
        async move { notes(&path).len() >= 100 }
    })
    .await;
    peer.kill().await;
    let before_restart = notes(&path).len() as u64;
    assert!(
        before_restart < TOTAL,
        "the kill came too late to test anything"
    );

    // The next process of the same system handles what the dead one had not finished.
    let peer = Peer::serve(&config, "svc", &["notes"], &path, 2_000).await;
    eventually(
        Duration::from_secs(30),
        "every accepted tell handled",
        || {
            let path = path.clone();
            async move { notes(&path).len() as u64 == TOTAL }
        },
    )
    .await;
    let seen = notes(&path);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..TOTAL).collect::<Vec<_>>()
    );
    // At least once: the few in the killed process's hands may be handled twice.
    assert!(duplicates <= 64, "{duplicates} duplicates");
    peer.stop().await;
    let _ = std::fs::remove_file(&path);
}

/// Item 2, deterministically: a tell that reaches a system which knows another system holds
/// the URN (a stale client wrote it into the wrong stream) is forwarded to the holder, never
/// dropped; an ask there is answered `NotOwner`.
async fn a_tell_in_the_wrong_stream_is_forwarded_to_the_urns_holder() {
    let config = config("wrong-stream");
    let first = ActorSystem::new("first");
    let holder = first
        .build(Counter::default())
        .urn("dup")
        .spawn()
        .await
        .unwrap();
    let second = ActorSystem::new("second");
    let loser = second
        .build(Counter::default())
        .urn("dup")
        .spawn()
        .await
        .unwrap();
    let p1 = start_proxy(&first, &config).await.unwrap();
    let p2 = start_proxy(&second, &config).await.unwrap();
    assert_eq!(p2.conflicts(), vec![("dup".to_owned(), "first".to_owned())]);
    // A tell (no reply address) of `Add(1)` (bincode: the varint 1) into the second's stream.
    let redis = raw_client(&config).await;
    let stream = format!("{}:sys:second:req", config.namespace);
    let added = raw(
        &redis,
        vec![
            "XADD",
            &stream,
            "NOMKSTREAM",
            "*",
            "v",
            "1",
            "urn",
            "dup",
            "msg",
            "test.Add",
            "ttl",
            "10000",
            "codec",
            "bincode",
            "body",
            "\u{1}",
        ],
    )
    .await;
    assert!(added.is_ok_and(|id| !id.is_null()));
    let holder_dyn = holder.to_dyn();
    eventually(
        Duration::from_secs(10),
        "the holder to handle the forwarded tell",
        || {
            let holder = holder_dyn.clone();
            async move { holder.ask(Get).await == Ok(1) }
        },
    )
    .await;
    assert_eq!(loser.to_dyn().ask(Get).await, Ok(0));
    p2.shutdown().await.unwrap();
    p1.shutdown().await.unwrap();
}

/// A serving process frozen past its lease, and replaced meanwhile by a new process of the
/// same system id (a restart by a supervisor that took it for dead): once it runs again, what
/// it reads before it sees it was replaced goes on to the new process. No tell accepted is
/// lost (neither left pending where nobody reads) and no ask fails (the URN still names the
/// system, so an ask answered "not the owner" would end `UnknownUrn`).
async fn a_paused_process_replaced_by_its_own_system_hands_on_what_it_reads() {
    let lease = Duration::from_millis(1_500);
    let mut config = config("same-system");
    config.lease_ttl = lease;
    config.ask_timeout = Duration::from_secs(20);
    let old_notes = temp_file("same-old");
    let new_notes = temp_file("same-new");
    let ms = lease.as_millis() as u64;
    let old = Peer::serve(&config, "alpha", &["counter"], &old_notes, ms).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    client.ask("counter", Note(0)).await.unwrap();
    old.freeze().await;
    // Starts once the frozen one's lease lapsed.
    let new = Peer::serve(&config, "alpha", &["counter"], &new_notes, ms).await;
    // Four senders at full speed, a tell and an ask in turn, while the old process runs
    // again: it reads some of them before its next renewal tells it it was replaced.
    let next = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (client, next, stop) = (client.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                let mut failed = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent = if n % 2 == 0 {
                        client
                            .tell("counter", Note(n))
                            .await
                            .map_err(|e| e.to_string())
                    } else {
                        client
                            .ask("counter", Note(n))
                            .await
                            .map_err(|e| e.to_string())
                    };
                    if let Err(e) = sent {
                        failed.push((n, e));
                    }
                }
                failed
            })
        })
        .collect();
    let sent = |n: u64| {
        let next = next.clone();
        move || {
            let next = next.clone();
            async move { next.load(std::sync::atomic::Ordering::Relaxed) > n }
        }
    };
    eventually(Duration::from_secs(20), "some sent", sent(200)).await;
    old.signal(libc::SIGCONT);
    // Past a lease and a half of sending after it woke (it renews every third of a lease).
    let woke = next.load(std::sync::atomic::Ordering::Relaxed);
    eventually(Duration::from_secs(30), "more sent", sent(woke + 1_500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failed = Vec::new();
    for sender in senders {
        failed.extend(
            tokio::time::timeout(Duration::from_secs(30), sender)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    let total = next.load(std::sync::atomic::Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut all: HashSet<u64> = notes(&old_notes).into_keys().collect();
        all.extend(notes(&new_notes).into_keys());
        let missing: Vec<u64> = (0..total).filter(|n| !all.contains(n)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never handled: {missing:?} (even numbers are tells)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    old.kill().await;
    new.stop().await;
}

/// Item 2: a process frozen past its lease must not serve the URN another system took.
async fn a_process_paused_past_its_lease_does_not_serve_a_urn_taken_over() {
    let lease = Duration::from_millis(1_500);
    let mut config = config("sigstop");
    config.lease_ttl = lease;
    config.resolve_cache_ttl = Duration::from_millis(100);
    let old_notes = temp_file("sigstop-old");
    let old = Peer::serve(
        &config,
        "old",
        &["dup"],
        &old_notes,
        lease.as_millis() as u64,
    )
    .await;
    let client = ProxyClient::connect(&config).await.unwrap();
    // A client whose resolution goes stale: it keeps sending to the old owner's stream.
    let mut stale_config = config.clone();
    stale_config.resolve_cache_ttl = Duration::from_secs(120);
    let stale = ProxyClient::connect(&stale_config).await.unwrap();
    for i in 0..20 {
        stale.tell("dup", Note(i)).await.unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "the old owner handled the first tells",
        || {
            let path = old_notes.clone();
            async move { notes(&path).len() == 20 }
        },
    )
    .await;

    // A second system wants the URN; it gets it only once the old owner's lease lapses.
    let new_notes = temp_file("sigstop-new");
    let new = Peer::serve(
        &config,
        "new",
        &["dup"],
        &new_notes,
        lease.as_millis() as u64,
    )
    .await;
    old.freeze().await;
    let redis = raw_client(&config).await;
    let urn_key = format!("{}:urn:dup", config.namespace);
    eventually(
        Duration::from_secs(15),
        "the new system to own the URN",
        || {
            let redis = redis.clone();
            let key = urn_key.clone();
            async move { raw(&redis, vec!["GET", &key]).await.ok() == Some(Value::from("new")) }
        },
    )
    .await;
    // Tells sent while the old owner is frozen: into its stream (a stale resolution) and
    // into the new owner's.
    for i in 20..220 {
        if i % 2 == 0 {
            stale.tell("dup", Note(i)).await.unwrap();
        } else {
            client.tell("dup", Note(i)).await.unwrap();
        }
    }
    let old_stream = format!("{}:sys:old:req", config.namespace);
    let queued = raw(&redis, vec!["XLEN", &old_stream]).await.unwrap();
    assert!(
        queued.as_u64().is_some_and(|n| n >= 100),
        "the stale client's tells wait in the old owner's stream: {queued:?}"
    );
    old.signal(libc::SIGCONT);
    // After it wakes: every one of those tells is handled, by the new owner only.
    // Polled (the notes are files written by other processes); on failure, say which tells
    // are missing and who handled what.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut all: HashSet<u64> = notes(&old_notes).into_keys().collect();
        all.extend(notes(&new_notes).into_keys());
        if all.len() == 220 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut missing: Vec<u64> = (0..220).filter(|n| !all.contains(n)).collect();
            missing.sort_unstable();
            let old_xlen = raw(&redis, vec!["XLEN", &old_stream]).await;
            panic!(
                "tells never handled: {missing:?}; old owner's stream XLEN {old_xlen:?}; old handled {:?}",
                notes(&old_notes)
                    .into_keys()
                    .filter(|n| *n >= 20)
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let handled_by_old: Vec<u64> = notes(&old_notes).into_keys().filter(|n| *n >= 20).collect();
    assert!(
        handled_by_old.is_empty(),
        "the paused owner served {handled_by_old:?}"
    );
    // And asks: the old owner answers NotOwner, the client resolves again.
    assert_eq!(client.ask("dup", Note(999)).await, Ok(()));
    assert!(!notes(&old_notes).contains_key(&999));
    old.kill().await;
    new.stop().await;
    let _ = std::fs::remove_file(&old_notes);
    let _ = std::fs::remove_file(&new_notes);
}

/// Holds every `Work` until the gate opens; counts the ones it started.
struct Slow {
    gate: Arc<tokio::sync::Notify>,
    started: Arc<std::sync::atomic::AtomicU64>,
}

#[message(error = String, name = "faults.Work")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work;

impl Actor for Slow {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Work>()];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<Work>() {
            Ok((Work, r)) => {
                self.started
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.gate.notified().await;
                r.respond(Ok(()));
            }
            Err(req) => req.reject(),
        }
    }
}

/// A tell the proxy drops because the actor's mailbox stayed full is counted as a rejected
/// request (`ProxyStats::rejected`; the metric by status), as an ask refused so is answered.
async fn a_tell_refused_for_a_full_mailbox_is_counted_as_rejected() {
    let config = config("full-tells");
    let system = ActorSystem::new("full-tells");
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
    system
        .build(Slow {
            gate: gate.clone(),
            started: started.clone(),
        })
        .urn("slow")
        .mailbox(MailboxConfig::Bounded(1))
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    client.tell("slow", Work).await.unwrap();
    eventually(Duration::from_secs(10), "the first tell to start", || {
        let started = started.clone();
        async move { started.load(std::sync::atomic::Ordering::SeqCst) == 1 }
    })
    .await;
    let before = proxy.stats().rejected;
    // The actor holds the first; one more finds room in its mailbox, five do not.
    for _ in 0..6 {
        client.tell("slow", Work).await.unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "five refused tells counted",
        || {
            let rejected = proxy.stats().rejected - before;
            async move { rejected == 5 }
        },
    )
    .await;
    // The first and the queued one go through; nothing more is refused.
    for handled in 1..=2 {
        eventually(Duration::from_secs(10), "the next tell to start", || {
            let started = started.clone();
            async move { started.load(std::sync::atomic::Ordering::SeqCst) == handled }
        })
        .await;
        gate.notify_one();
    }
    assert_eq!(proxy.stats().rejected - before, 5);
    proxy.shutdown().await.unwrap();
}

/// Item 3: under a flood, a full mailbox answers MailboxFull at once, and asks whose
/// deadline passed in the mailbox are never started.
async fn a_flood_gets_mailbox_full_at_once_and_expired_asks_never_run() {
    let config = config("flood");
    let system = ActorSystem::new("flood");
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let slow = system
        .build(Slow {
            gate: gate.clone(),
            started: started.clone(),
        })
        .urn("slow")
        .mailbox(MailboxConfig::Bounded(4))
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let timeout = Duration::from_millis(800);
    let mut asks = Vec::new();
    for _ in 0..60 {
        let client = client.clone();
        asks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client.ask("slow", Work).timeout(timeout).await;
            (r, t.elapsed())
        }));
    }
    let (mut full, mut timed_out) = (0, 0);
    for ask in asks {
        let (result, took) = ask.await.unwrap();
        match result {
            Err(AskError::MailboxFull) => {
                full += 1;
                assert!(
                    took < timeout,
                    "MailboxFull only at the deadline ({took:?})"
                );
            }
            Err(AskError::Timeout(_)) => timed_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // One handler running, four queued: the rest were refused.
    assert!(full >= 50, "{full} MailboxFull, {timed_out} timeouts");
    assert_eq!(full + timed_out, 60);
    // The proxy has answered every request: refused, or timed out (the running one, and
    // the queued ones). The client's deadlines are its own clock's: the proxy's come a
    // little later, and an ask the proxy still waits for is rightly started once the gate
    // opens, so the gate opens only after the proxy has given up all of them.
    eventually(
        Duration::from_secs(10),
        "the proxy to answer 60 requests",
        || {
            let completed = proxy.stats().completed;
            async move { completed >= 60 }
        },
    )
    .await;
    // Release the actor: the queued asks' askers have all given up; none is started.
    let started_before = started.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(started_before, 1);
    gate.notify_one();
    // The probe below must find room: until the actor has taken (and skipped) the four
    // expired asks, its mailbox is full and would refuse it.
    eventually(
        Duration::from_secs(30),
        "the actor to drain its mailbox",
        || {
            let queued = slow.mailbox_len();
            async move { queued == 0 }
        },
    )
    .await;
    // A fresh ask through the proxy is answered once handled: when it returns, the
    // actor has drained its mailbox.
    // Generous bounds: a loaded CI machine once took more than 5 s here; a skipped ask that
    // was started anyway would hold the gate and fail the probe however long it waits.
    let probe = client.ask("slow", Work).timeout(Duration::from_secs(30));
    let release = async {
        // The probe's own handler waits at the gate too: open it again once it started.
        eventually(Duration::from_secs(30), "the probe to start", || {
            let started = started.clone();
            async move { started.load(std::sync::atomic::Ordering::SeqCst) >= 2 }
        })
        .await;
        gate.notify_one();
    };
    let (probe, ()) = tokio::join!(probe, release);
    assert_eq!(
        probe,
        Ok(()),
        "handlers started: {}",
        started.load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(
        started.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "asks whose deadline passed in the mailbox were started"
    );
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// The wait for room counts from when Redis took the request (its entry id),
/// not from when the proxy got to it. A request already older than `full_mailbox_wait` when
/// dispatched is answered `MailboxFull` at once if the mailbox is full (not after another
/// full wait), and handled if there is room.
async fn a_request_older_than_the_room_wait_gets_the_room_there_is_or_mailbox_full_at_once() {
    let mut config = config("stale-room");
    // Far longer than the reply is waited for below: only a request refused at once is
    // answered in time.
    config.full_mailbox_wait = Duration::from_secs(60);
    let system = ActorSystem::new("stale-room");
    let gate = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let slow = system
        .build(Slow {
            gate: gate.clone(),
            started: started.clone(),
        })
        .urn("slow")
        .mailbox(MailboxConfig::Bounded(1))
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    // The mailbox filled here (told), not through the stream: the stream's next id stays
    // free for the requests below.
    let mut local = Vec::new();
    for _ in 0..2 {
        let slow = conclib_core::DynActorRef::from(&slow);
        local.push(tokio::spawn(async move {
            slow.tell_erased(
                "faults.Work",
                std::any::TypeId::of::<Work>(),
                Box::new(Work),
                conclib_core::Priority::Normal,
            )
            .await
            .is_ok()
        }));
    }
    eventually(
        Duration::from_secs(10),
        "one handler to run, one ask to wait",
        || {
            let (started, queued) = (
                started.load(std::sync::atomic::Ordering::SeqCst),
                slow.mailbox_len(),
            );
            async move { started == 1 && queued == 1 }
        },
    )
    .await;
    let redis = raw_client(&config).await;
    let stream = format!("{}:sys:stale-room:req", config.namespace);
    let reply_key = format!("{}:reply:stale-room-test", config.namespace);
    let body = conclib_redis::codec::encode_value(&conclib_redis::codec::Bincode, &Work).unwrap();
    let body = String::from_utf8(body).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Taken by Redis (its entry id) 120 s ago, twice the wait; its deadline 10 min away.
    let ask = |entry: String, id: &'static str| {
        let (redis, stream, reply_key, body) = (
            redis.clone(),
            stream.clone(),
            reply_key.clone(),
            body.clone(),
        );
        async move {
            raw(
                &redis,
                vec![
                    "XADD",
                    &stream,
                    &entry,
                    "v",
                    "1",
                    "id",
                    id,
                    "urn",
                    "slow",
                    "msg",
                    "faults.Work",
                    "ttl",
                    "600000",
                    "reply",
                    &reply_key,
                    "codec",
                    "bincode",
                    "body",
                    &body,
                ],
            )
            .await
            .unwrap();
            let popped = raw(
                &redis,
                vec!["BLMPOP", "20", "1", &reply_key, "LEFT", "COUNT", "1"],
            )
            .await
            .unwrap();
            let Value::Array(mut parts) = popped else {
                panic!("no reply within 20 s: {popped:?}")
            };
            let Some(Value::Array(frames)) = parts.pop() else {
                panic!("{parts:?}")
            };
            let frame = frames[0].as_bytes().unwrap().to_vec();
            let (id, status, _) = conclib_redis::protocol::decode_reply(&frame).unwrap();
            (id, status)
        }
    };
    // The mailbox is full: refused at once, not after another 60 s.
    let refused = ask(format!("{}-0", now_ms - 120_000), "7").await;
    assert_eq!(refused, (7, conclib_redis::Status::MailboxFull as u8));
    // It never ran; the two local asks do once the gate opens.
    gate.notify_one();
    gate.notify_one();
    for told in local {
        assert!(told.await.unwrap());
    }
    eventually(
        Duration::from_secs(10),
        "the told messages to be handled",
        || {
            let (started, queued) = (
                started.load(std::sync::atomic::Ordering::SeqCst),
                slow.mailbox_len(),
            );
            async move { started == 2 && queued == 0 }
        },
    )
    .await;
    // With room, a request as old is handled.
    let handled = ask(format!("{}-1", now_ms - 120_000), "8");
    let release = async {
        eventually(Duration::from_secs(20), "the old request to start", || {
            let started = started.load(std::sync::atomic::Ordering::SeqCst);
            async move { started == 3 }
        })
        .await;
        gate.notify_one();
    };
    let (handled, ()) = tokio::join!(handled, release);
    assert_eq!(handled, (8, conclib_redis::Status::Ok as u8));
    proxy.shutdown().await.unwrap();
}

/// Item 5: an entry id a client chose far in the future neither disables deadlines nor
/// stops later requests; the stream is reset once drained.
async fn an_entry_id_from_the_future_does_not_poison_the_stream() {
    let mut config = config("poison");
    config.lease_ttl = Duration::from_millis(900);
    let system = ActorSystem::new("poison");
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(client.ask("c", Add(1)).await, Ok(1));
    let redis = raw_client(&config).await;
    let stream = format!("{}:sys:poison:req", config.namespace);
    let body =
        conclib_redis::codec::encode_value(&conclib_redis::codec::Bincode, &Record(5)).unwrap();
    let body = String::from_utf8(body).unwrap();
    raw(
        &redis,
        vec![
            "XADD",
            &stream,
            "18446744073709551615-0",
            "v",
            "1",
            "urn",
            "c",
            "msg",
            "test.Record",
            "ttl",
            "60000",
            "codec",
            "bincode",
            "body",
            &body,
        ],
    )
    .await
    .unwrap();
    // Later requests get ids after it; they are still served, with working deadlines.
    for n in 2..=5 {
        assert_eq!(
            client
                .ask("c", Add(1))
                .timeout(Duration::from_secs(3))
                .await,
            Ok(n)
        );
    }
    // Once drained, the stream is replaced: ids follow the clock again.
    eventually(Duration::from_secs(15), "the stream to be reset", || {
        let redis = redis.clone();
        let stream = stream.clone();
        async move {
            let Ok(Value::Array(info)) = raw(&redis, vec!["XINFO", "STREAM", &stream]).await else {
                return false;
            };
            info.chunks(2).any(|kv| {
                kv[0].as_str().as_deref() == Some("last-generated-id")
                    && kv[1]
                        .as_str()
                        .and_then(|id| id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()))
                        .is_some_and(|ms| ms < 4_000_000_000_000)
            })
        }
    })
    .await;
    assert_eq!(client.ask("c", Add(1)).await, Ok(6));
    assert_eq!(client.ask("c", History).await, Ok(vec![5]));
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}

/// Item 8: a proxy restarted after its predecessor died on this host serves at once, not
/// after the dead one's lease.
async fn a_restarted_proxy_takes_over_at_once_when_its_predecessor_provably_died() {
    let config = config("takeover");
    let path = temp_file("takeover");
    let lease_ms = 20_000;
    let peer = Peer::serve(&config, "svc", &["c"], &path, lease_ms).await;
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(client.ask("c", Add(1)).await, Ok(1));
    peer.kill().await;
    let started = Instant::now();
    let peer = Peer::serve(&config, "svc", &["c"], &path, lease_ms).await;
    // Without the proof of death this waits out the 20 s lease.
    assert!(
        started.elapsed() < Duration::from_millis(lease_ms / 2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(client.ask("c", Add(1)).await, Ok(1));
    peer.stop().await;
}

/// Item 9: dropping a client closes its connections at once, not after its blocking read.
async fn dropped_clients_close_their_connections_at_once() {
    // A Redis of its own: the other tests' connections come and go on the shared one.
    let daemon = conclib_redis::start_redis(&ProxyConfig::default())
        .await
        .unwrap();
    let config = daemon.config(&ProxyConfig::default().with_namespace("drops"));
    let redis = raw_client(&config).await;
    let connected = |redis: Client| async move {
        let info = raw(&redis, vec!["INFO", "clients"]).await.unwrap();
        let text = info.as_str().unwrap().to_string();
        text.lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    let baseline = connected(redis.clone()).await;
    for _ in 0..30 {
        let client = ProxyClient::connect(&config).await.unwrap();
        let _ = client.resolve("nobody").await;
        drop(client);
    }
    // The reply reader blocks 2 s per read: connections left to it would still be open.
    let deadline = Instant::now() + Duration::from_millis(1_500);
    while connected(redis.clone()).await > baseline {
        assert!(
            Instant::now() < deadline,
            "dropped clients' connections still open"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.shutdown().unwrap();
}

/// Item 6: a Redis from `start_redis` refuses entries no proxy would accept, so a hostile
/// client cannot make a proxy read (and hold) them.
async fn start_redis_refuses_entries_larger_than_any_proxy_accepts() {
    let base = ProxyConfig::default()
        .with_namespace("huge")
        .with_max_payload(256 * 1024);
    let daemon = conclib_redis::start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let system = ActorSystem::new("huge");
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let redis = raw_client(&config).await;
    let stream = format!("{}:sys:huge:req", config.namespace);
    let huge = "x".repeat(3 * 1024 * 1024);
    let refused = raw(
        &redis,
        vec![
            "XADD",
            &stream,
            "*",
            "v",
            "1",
            "urn",
            "c",
            "msg",
            "test.Echo",
            "ttl",
            "5000",
            "codec",
            "bincode",
            "body",
            &huge,
        ],
    )
    .await;
    assert!(refused.is_err(), "Redis took a 3 MiB value: {refused:?}");
    // Within the limit, a body too large for the proxy is refused by the proxy.
    let client = ProxyClient::connect(&config).await.unwrap();
    assert!(matches!(
        client.ask("c", Echo("y".repeat(300 * 1024))).await,
        Err(AskError::TooLarge(_))
    ));
    assert_eq!(
        client.ask("c", Echo("ok".into())).await,
        Ok("ok".to_owned())
    );
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}

/// A proxy (with a group and a pattern), a reminder poller, topic subscriptions and a client
/// are shut down while their Redis is frozen (SIGSTOP): each returns within
/// `shutdown_timeout` (plus a margin), the proxy with `ShutdownCut`.
async fn every_shutdown_returns_within_its_bound_while_redis_is_frozen() {
    const BOUND: Duration = Duration::from_millis(1000);
    const MARGIN: Duration = Duration::from_millis(500);
    let base = ProxyConfig::default()
        .with_namespace("frozen-shutdown")
        .with_shutdown_timeout(BOUND)
        .with_snapshot_interval(None);
    let daemon = conclib_redis::start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let system = common::system_with("frozen-shutdown", &["fz:a", "fz:shared"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    proxy.join("fz:shared").await.unwrap();
    proxy
        .activate("fz:item:{id}", |_a: conclib_redis::scale::Activation| async move {
            Ok::<_, String>(Counter::default())
        })
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    client.ask("fz:item:1", Add(1)).await.unwrap();
    let poller = conclib_redis::reminders::ReminderPoller::start(
        &client,
        conclib_redis::reminders::ReminderPollerOptions::default(),
    )
    .unwrap();
    let live = client
        .topics()
        .subscribe::<u64>(&conclib_redis::topics::Topic::live("fz.live").unwrap())
        .await
        .unwrap();
    let durable = client
        .topics()
        .subscribe::<u64>(&conclib_redis::topics::Topic::durable("fz.durable").unwrap())
        .group("g")
        .await
        .unwrap();
    conclib_testkit::freeze(daemon.pid().unwrap()).await;
    let timed = |what: &'static str, took: Duration| {
        println!(
            "RESULT test=frozen_shutdown part={what} ms={}",
            took.as_millis()
        );
        assert!(
            took <= BOUND + MARGIN,
            "{what}: {took:?} while Redis is frozen"
        );
    };
    let t = Instant::now();
    poller.shutdown().await;
    timed("poller", t.elapsed());
    let t = Instant::now();
    live.close().await;
    timed("live_subscription", t.elapsed());
    let t = Instant::now();
    durable.close().await;
    timed("durable_subscription", t.elapsed());
    let t = Instant::now();
    let stopped = proxy.shutdown().await;
    timed("proxy", t.elapsed());
    assert!(
        matches!(stopped, Err(conclib_redis::ServeError::ShutdownCut { .. })),
        "{stopped:?}"
    );
    let t = Instant::now();
    client.shutdown().await;
    timed("client", t.elapsed());
    // SAFETY: kill(2) on the pid of our own redis-server child.
    unsafe { libc::kill(daemon.pid().unwrap() as libc::pid_t, libc::SIGCONT) };
    system.shutdown(Duration::from_secs(5)).await.unwrap();
    daemon.shutdown().unwrap();
}

/// A serving system restarts (graceful stop with `release_on_shutdown`, which deletes its
/// URN keys, then a new process of the same system id) under 64 callers asking without
/// pause: no ask answers `UnknownUrn` (only answers or `Unavailable`), none returns past its
/// timeout plus a margin; a URN nobody served still answers `UnknownUrn`.
async fn a_restarting_system_answers_unavailable_never_unknown_urn() {
    const CALLERS: usize = 64;
    const TIMEOUT: Duration = Duration::from_millis(1500);
    const MARGIN: Duration = Duration::from_millis(250);
    let config = config("restart-grace").with_ask_timeout(TIMEOUT);
    let notes = temp_file("restart-grace");
    let urns = ["rg:a", "rg:b"];
    let first = Peer::serve_with(&config, "rg-sys", &urns, &notes, 2000, true).await;
    let client = ProxyClient::connect(&config).await.unwrap();
    assert!(matches!(
        client.ask("rg:nobody", Get).await,
        Err(AskError::UnknownUrn { .. })
    ));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let (client, stop) = (client.clone(), stop.clone());
        let urn = urns[i % urns.len()];
        callers.push(tokio::spawn(async move {
            let (mut ok, mut unavailable, mut other) = (0u64, 0u64, Vec::new());
            let mut slowest = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let r = client.ask(urn, Get).await;
                slowest = slowest.max(started.elapsed());
                match r {
                    Ok(_) => ok += 1,
                    Err(AskError::Unavailable(_)) => unavailable += 1,
                    Err(e) => other.push(e.to_string()),
                }
            }
            (ok, unavailable, other, slowest)
        }));
    }
    // Answers flow before the restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;
    // A deploy's gap, longer than an ask's timeout: some asks end `Unavailable`.
    tokio::time::sleep(TIMEOUT + Duration::from_millis(500)).await;
    let restarted_at = Instant::now();
    let second = Peer::serve_with(&config, "rg-sys", &urns, &notes, 2000, true).await;
    let back_after = restarted_at.elapsed();
    // Answers flow again after the restart.
    let probe = client.clone();
    eventually(
        Duration::from_secs(10),
        "the restarted system answers",
        || {
            let probe = probe.clone();
            async move { probe.ask("rg:a", Get).await.is_ok() }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut unavailable, mut other, mut slowest) = (0, 0, Vec::new(), Duration::ZERO);
    for c in callers {
        let (o, u, x, s) = c.await.unwrap();
        ok += o;
        unavailable += u;
        other.extend(x);
        slowest = slowest.max(s);
    }
    println!(
        "RESULT test=restart_grace callers={CALLERS} answers={ok} unavailable={unavailable} other={} restart_ms={} slowest_ms={}",
        other.len(),
        back_after.as_millis(),
        slowest.as_millis()
    );
    assert!(
        other.is_empty(),
        "only answers or Unavailable: {:?}",
        &other[..other.len().min(5)]
    );
    assert!(
        ok > 0 && unavailable > 0,
        "{ok} answers, {unavailable} Unavailable"
    );
    assert!(slowest <= TIMEOUT + MARGIN, "an ask took {slowest:?}");
    // Idle, the system is stopped again: its stream is deleted with its URN keys. A client
    // that cached the route finds the stream gone, and its URN departed: `Unavailable`.
    let mut cached = config.clone().with_ask_timeout(Duration::from_millis(300));
    cached.resolve_cache_ttl = Duration::from_secs(60);
    let cached = ProxyClient::connect(&cached).await.unwrap();
    cached.ask("rg:b", Get).await.unwrap();
    second.stop().await;
    let after_stop = cached.ask("rg:b", Get).await;
    assert!(
        matches!(after_stop, Err(AskError::Unavailable(_))),
        "{after_stop:?}"
    );
    let fresh = client.ask("rg:a", Get).await;
    assert!(matches!(fresh, Err(AskError::Unavailable(_))), "{fresh:?}");
    // "Who serves it now" does not wait for a successor: nobody, at once.
    let asked = Instant::now();
    assert_eq!(client.resolve("rg:a").await.unwrap(), None);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    // After the grace, with nobody serving: the default grace (30 s) is too long for a
    // test; the marker's TTL is what ends it.
    let redis = common::raw_client(&config).await;
    let ttl: i64 = redis
        .pttl(format!("{}:departed:urn:rg:a", config.namespace))
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 30_000,
        "the marker lapses within the grace: {ttl} ms"
    );
    let _ = std::fs::remove_file(&notes);
}
