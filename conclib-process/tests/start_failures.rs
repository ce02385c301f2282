//! Every way a process actor's start can fail, against real child processes: each is a
//! typed error that says why, and none panics a thread of the parent (a panic hook counts
//! them across every test). `harness = false`: `main` calls `conclib_process::init` first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;

use common::*;
use conclib::{ActorSystem, AskError, RestartLimit, actor};
use conclib_process::{ProcessSpawnError, Registry, SpawnProcess};
use serde::{Deserialize, Serialize};

/// Panics seen on any thread of this process since it started.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Not in this executable's `Registry`.
#[actor]
#[derive(Serialize, Deserialize)]
struct Unregistered;

#[actor]
impl Unregistered {
    #[handle(remote)]
    fn add(&mut self, Add(n): Add) -> u64 {
        n
    }
}

/// Its `on_start` fails while the file `marker` exists.
#[actor]
#[derive(Serialize, Deserialize)]
struct Picky {
    marker: std::path::PathBuf,
}

#[actor]
impl Picky {
    #[on_start]
    fn start(&mut self) -> Result<(), String> {
        if self.marker.exists() {
            return Err(format!("{} says no", self.marker.display()));
        }
        Ok(())
    }

    #[handle(remote)]
    fn process_id(&mut self, _: Pid) -> u32 {
        std::process::id()
    }

    #[handle(remote)]
    fn boom(&mut self, _: Boom) {
        panic!("picky went boom");
    }
}

/// Where a child of process `parent` looks, before `init`, for how long to wait first (ms):
/// a child slow to start (a slow disk, a loaded machine).
fn slow_start_marker(parent: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("conclib-slow-start-{parent}"))
}

fn main() {
    if let Ok(ms) = std::fs::read_to_string(slow_start_marker(std::os::unix::process::parent_id()))
    {
        std::thread::sleep(Duration::from_millis(ms.trim().parse().unwrap_or(0)));
    }
    conclib_process::init(Registry::new().actor::<Worker>().actor::<Picky>());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    let tests: &[(&str, conclib_testkit::Test)] = &[
        (
            "an_unregistered_type_fails_every_spawn_with_a_typed_error",
            || Box::pin(unregistered()),
        ),
        ("a_failing_on_start_fails_the_spawn_with_its_reason", || {
            Box::pin(failing_start())
        }),
        (
            "a_memory_limit_too_small_to_start_is_an_error_not_a_panic",
            || Box::pin(too_little_memory()),
        ),
        (
            "a_restart_that_cannot_start_ends_the_actor_without_a_panic",
            || Box::pin(restart_fails()),
        ),
        ("a_panic_under_stop_is_reported_as_a_panic", || {
            Box::pin(panic_reported())
        }),
        (
            "a_child_slow_to_start_is_given_its_start_timeout_not_its_heartbeat",
            || Box::pin(slow_start()),
        ),
    ];
    conclib_testkit::run(tests);
}

fn assert_no_panics() {
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a thread of the parent panicked"
    );
}

/// The pids of this process's children (zombies included).
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits (bounded) until no child process is left: failed starts leave none behind.
async fn no_children_left() {
    let give_up = std::time::Instant::now() + Duration::from_secs(10);
    while !children().is_empty() {
        assert!(
            std::time::Instant::now() < give_up,
            "children left: {:?}",
            children()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn unregistered() {
    for _ in 0..10 {
        let error = conclib_process::build(Unregistered)
            .spawn()
            .await
            .expect_err("an unregistered type must not start");
        let ProcessSpawnError::NotRegistered(kind) = &error else {
            panic!("expected NotRegistered, got {error:?}");
        };
        assert!(kind.ends_with("Unregistered"), "{kind}");
        let text = error.to_string();
        assert!(
            text.contains("Registry") && text.contains("Unregistered") && text.contains("main"),
            "{text}"
        );
    }
    // The same through a system, by URN: the URN stays free.
    let system = ActorSystem::new("start-failures");
    let error = system
        .process(Unregistered)
        .urn("unregistered")
        .spawn()
        .await
        .expect_err("an unregistered type must not start");
    assert!(
        matches!(error, ProcessSpawnError::NotRegistered(_)),
        "{error:?}: {error}"
    );
    assert!(system.lookup("unregistered").is_err());
    no_children_left().await;
    assert_no_panics();
}

async fn failing_start() {
    let dir = tempdir("failing-start");
    let marker = dir.join("no");
    std::fs::write(&marker, b"").unwrap();
    let error = conclib_process::build(Picky {
        marker: marker.clone(),
    })
    .spawn()
    .await
    .expect_err("on_start fails");
    match &error {
        ProcessSpawnError::StartFailed { kind, reason } => {
            assert!(kind.ends_with("Picky"), "{kind}");
            // The child's words, once: the actor type is the error's to say.
            assert_eq!(
                reason,
                &format!("on_start failed: {} says no", marker.display())
            );
            assert_eq!(
                error.to_string(),
                format!("the process actor {kind} did not start: {reason}")
            );
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
    no_children_left().await;
    assert_no_panics();
    let _ = std::fs::remove_dir_all(dir);
}

async fn too_little_memory() {
    for limit in [1024 * 1024, 16 * 1024 * 1024] {
        let result = conclib_process::build(Worker { total: 0 })
            .memory_limit(limit)
            .spawn()
            .await;
        match result {
            // NoAnswer: a child that could not even fail in time (seen once in a full
            // workspace run on a loaded machine) is killed; still an error, not a panic.
            Err(
                ProcessSpawnError::Exited(_)
                | ProcessSpawnError::StartFailed { .. }
                | ProcessSpawnError::Io(_)
                | ProcessSpawnError::NoAnswer(_),
            ) => {}
            Err(other) => panic!("unexpected error for a {limit}-byte limit: {other:?}"),
            // Enough after all on some machine: then it must work.
            Ok(worker) => {
                assert_eq!(worker.ask(Add(1)).await, Ok(1));
                worker.kill();
                worker.wait_for_stop().await;
            }
        }
    }
    no_children_left().await;
    assert_no_panics();
}

async fn restart_fails() {
    let dir = tempdir("restart-fails");
    let marker = dir.join("no");
    let picky = conclib_process::build(Picky {
        marker: marker.clone(),
    })
    .restart(RestartLimit::new(3, Duration::from_secs(60)))
    .spawn()
    .await
    .unwrap();
    let pid = picky.ask(Pid).await.unwrap();
    // From now on a new process cannot start its actor: the restart fails.
    std::fs::write(&marker, b"").unwrap();
    // SAFETY: our child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let exit = tokio::time::timeout(Duration::from_secs(30), picky.wait_for_stop())
        .await
        .expect("a process actor whose restart fails ends");
    assert_eq!(exit.signal, Some(libc::SIGKILL), "{exit}");
    assert!(matches!(picky.ask(Pid).await, Err(AskError::Exited(_))));
    no_children_left().await;
    assert_no_panics();
    let _ = std::fs::remove_dir_all(dir);
}

async fn panic_reported() {
    let dir = tempdir("panic-reported");
    let picky = conclib_process::build(Picky {
        marker: dir.join("absent"),
    })
    .spawn()
    .await
    .unwrap();
    assert!(matches!(
        picky.ask(Boom).await,
        Err(AskError::Panicked(p)) if p.contains("picky went boom")
    ));
    let exit = tokio::time::timeout(Duration::from_secs(10), picky.wait_for_stop())
        .await
        .expect("the process exits after its actor panicked");
    assert_eq!(exit.panic.as_deref(), Some("picky went boom"), "{exit:?}");
    let text = exit.to_string();
    assert!(
        text.contains("panicked") && text.contains("picky went boom"),
        "{text}"
    );
    // An ask after the end says so too.
    match picky.ask(Pid).await {
        Err(AskError::Exited(after)) => assert!(after.panic.is_some(), "{after}"),
        other => panic!("unexpected {other:?}"),
    }
    // The panic was the child's, not the parent's.
    assert_no_panics();
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("conclib-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A child that takes longer than two heartbeats to reach `init` starts: until its actor
/// runs, the start timeout decides, not the heartbeat (which killed it before, reported as
/// `Exited` by signal 9).
async fn slow_start() {
    let marker = slow_start_marker(std::process::id());
    std::fs::write(&marker, "1500").unwrap();
    let started = conclib_process::build(Worker { total: 0 })
        .heartbeat(Some(Duration::from_millis(300)))
        .spawn()
        .await;
    let _ = std::fs::remove_file(&marker);
    let worker = started.expect("a child slow to start, within its start timeout, starts");
    assert_eq!(worker.ask(Add(2)).await, Ok(2));
    worker.stop();
    worker.wait_for_stop().await;
    no_children_left().await;
    // A start timeout shorter than the child's start: the spawn fails, the child is killed.
    std::fs::write(&marker, "1500").unwrap();
    let started = conclib_process::build(Worker { total: 0 })
        .start_timeout(Duration::from_millis(300))
        .spawn()
        .await;
    let _ = std::fs::remove_file(&marker);
    assert!(
        matches!(started, Err(ProcessSpawnError::NoAnswer(t)) if t == Duration::from_millis(300)),
        "{started:?}"
    );
    no_children_left().await;
    assert_no_panics();
}
