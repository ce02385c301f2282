//! Process actors against real child processes: this test binary is also the child (and,
//! for one test, a parent that gets killed). `harness = false`: `main` must call
//! `conclib_process::init` before anything else, as every program with process actors does.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use conclib::{actor, message};
use conclib_process::{ProcessError, ProcessExit, Registry};
use serde::{Deserialize, Serialize};

#[message(response = u64)]
#[derive(Serialize, Deserialize)]
struct Add(u64);

#[message(response = u64, error = String)]
#[derive(Serialize, Deserialize)]
struct Take(u64);

#[message]
#[derive(Serialize, Deserialize)]
struct Boom;

#[message(response = u64)]
#[derive(Serialize, Deserialize)]
struct SleepMs(u64);

#[message]
#[derive(Serialize, Deserialize)]
struct Exit(i32);

#[message(response = u32)]
#[derive(Serialize, Deserialize)]
struct Pid;

/// Asks the parent's actor `urn` for `Add(n)` and answers what it said.
#[message(response = u64, error = String)]
#[derive(Serialize, Deserialize)]
struct AskParent {
    urn: String,
    n: u64,
}

/// Allocates (and touches) memory until the process cannot.
#[message]
#[derive(Serialize, Deserialize)]
struct Hog;

#[actor]
#[derive(Serialize, Deserialize)]
struct Worker {
    total: u64,
}

#[actor]
impl Worker {
    #[handle(remote)]
    fn add(&mut self, Add(n): Add) -> u64 {
        self.total += n;
        self.total
    }

    #[handle(remote)]
    fn take(&mut self, Take(n): Take) -> Result<u64, String> {
        if n > self.total {
            return Err(format!("only {} left", self.total));
        }
        self.total -= n;
        Ok(self.total)
    }

    #[handle(remote)]
    fn boom(&mut self, _: Boom) {
        panic!("boom in the child");
    }

    #[handle(remote)]
    async fn sleep(&mut self, SleepMs(ms): SleepMs) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    #[handle(remote)]
    fn exit(&mut self, Exit(code): Exit) {
        std::process::exit(code);
    }

    #[handle(remote)]
    fn process_id(&mut self, _: Pid) -> u32 {
        std::process::id()
    }

    #[handle(remote)]
    async fn ask_parent(&mut self, AskParent { urn, n }: AskParent) -> Result<u64, String> {
        let parent = conclib_process::parent().ok_or("not in a process actor")?;
        parent.tell(&urn, Add(100)).map_err(|e| e.to_string())?;
        parent
            .ask(&urn, Add(n), Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())
    }

    #[handle(remote)]
    fn hog(&mut self, _: Hog) {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            kept.push(vec![1u8; 32 * 1024 * 1024]);
        }
    }
}

type Test = fn() -> Pin<Box<dyn Future<Output = ()> + Send>>;

fn main() {
    conclib_process::init(Registry::new().actor::<Worker>());
    if std::env::var("CONCLIB_TEST_ROLE").as_deref() == Ok("parent") {
        return doomed_parent();
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: &[(&str, Test)] = &[
        ("asks_tells_errors_and_priorities_cross_the_process", || {
            Box::pin(round_trip())
        }),
        ("a_panic_in_the_child_reaches_the_asker", || {
            Box::pin(panic_reaches_asker())
        }),
        (
            "sigkill_fails_every_pending_ask_at_once_with_the_signal",
            || Box::pin(sigkill()),
        ),
        ("an_exit_code_reaches_the_pending_asks", || {
            Box::pin(exit_code())
        }),
        ("a_hung_process_misses_its_heartbeat_and_is_killed", || {
            Box::pin(hang())
        }),
        ("stop_is_graceful_and_the_process_exits_0", || {
            Box::pin(graceful_stop())
        }),
        ("a_child_never_outlives_its_parent", || {
            Box::pin(parent_killed())
        }),
        ("a_child_over_its_memory_limit_dies_alone", || {
            Box::pin(memory_hog())
        }),
        ("a_dead_process_restarts_within_its_limit", || {
            Box::pin(restarts())
        }),
        ("a_process_actor_asks_its_parents_actors_by_urn", || {
            Box::pin(asks_parent())
        }),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let outcome = runtime.block_on(async {
            let handle =
                tokio::spawn(
                    async move { tokio::time::timeout(Duration::from_secs(60), test()).await },
                );
            handle.await
        });
        match outcome {
            Ok(Ok(())) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Ok(Err(_)) => {
                println!("test {name} ... FAILED (timed out)");
                failed += 1;
            }
            Err(e) => {
                println!("test {name} ... FAILED ({e})");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}

async fn round_trip() {
    let worker = conclib_process::build(Worker { total: 1 })
        .spawn()
        .await
        .unwrap();
    assert_ne!(worker.pid(), std::process::id());
    assert_eq!(worker.ask(Pid).await, Ok(worker.pid()));
    assert_eq!(worker.ask(Add(2)).await, Ok(3));
    worker.tell(Add(10)).unwrap();
    assert_eq!(worker.ask(Take(4)).await, Ok(9));
    assert_eq!(
        worker.ask(Take(100)).await,
        Err(ProcessError::Handler("only 9 left".to_owned()))
    );
    // Many asks in flight at once (pipelined), answered to the right askers.
    let mut asks = Vec::new();
    for _ in 0..200 {
        let worker = worker.clone();
        asks.push(tokio::spawn(
            async move { worker.ask(Add(1)).await.unwrap() },
        ));
    }
    let mut totals: Vec<u64> = Vec::new();
    for a in asks {
        totals.push(a.await.unwrap());
    }
    totals.sort_unstable();
    assert_eq!(totals, (10..210).collect::<Vec<_>>());
    // Timeouts are the asker's.
    assert_eq!(
        worker
            .ask(SleepMs(300))
            .timeout(Duration::from_millis(50))
            .await,
        Err(ProcessError::Timeout(Duration::from_millis(50)))
    );
    // Messages from one sender enter the mailbox in the order sent, tells and asks alike.
    for _ in 0..1_000 {
        worker.tell(Add(1)).unwrap();
    }
    assert_eq!(worker.ask(Add(0)).await, Ok(1_209));
    worker.tell(Take(1_000)).unwrap();
    assert_eq!(worker.ask(Add(0)).await, Ok(209));
    assert_eq!(
        worker.ask(Add(0)).priority(conclib::Priority::High).await,
        Ok(209)
    );
    worker.kill();
    worker.wait_for_stop().await;
}

async fn panic_reaches_asker() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    match worker.ask(Boom).await {
        Err(ProcessError::Panicked(m)) => assert!(m.contains("boom in the child"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    // The process survives its actor's panic; the actor stopped (the default policy).
    assert!(worker.is_alive());
    assert_eq!(worker.ask(Add(1)).await, Err(ProcessError::ActorStopped));
    worker.kill();
    worker.wait_for_stop().await;
}

async fn sigkill() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    let mut asks = Vec::new();
    for _ in 0..5 {
        let worker = worker.clone();
        asks.push(tokio::spawn(async move {
            worker
                .ask(SleepMs(600_000))
                .timeout(Duration::from_secs(600))
                .await
        }));
    }
    // (Whether they reached the child or not, they end the same way.)
    tokio::task::yield_now().await;
    let started = Instant::now();
    // SAFETY: our child's pid, not reaped yet.
    unsafe { libc::kill(worker.pid() as i32, libc::SIGKILL) };
    let killed = ProcessExit {
        code: None,
        signal: Some(libc::SIGKILL),
    };
    for a in asks {
        assert_eq!(a.await.unwrap(), Err(ProcessError::Exited(killed.clone())));
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(worker.wait_for_stop().await, killed);
    assert!(!worker.is_alive());
    assert_eq!(
        worker.ask(Add(1)).await,
        Err(ProcessError::Exited(killed.clone()))
    );
    assert!(matches!(worker.tell(Add(1)), Err(ProcessError::Exited(_))));
    // Reaped: no zombie.
    assert!(!std::path::Path::new(&format!("/proc/{}", worker.pid())).exists());
}

async fn exit_code() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    // The process exits in the handler of `Exit`, with the ask behind it still pending.
    worker.tell(Exit(3)).unwrap();
    let pending = worker
        .ask(SleepMs(1))
        .timeout(Duration::from_secs(600))
        .await;
    let exited = ProcessExit {
        code: Some(3),
        signal: None,
    };
    assert_eq!(pending, Err(ProcessError::Exited(exited.clone())));
    assert_eq!(worker.wait_for_stop().await, exited);
}

async fn hang() {
    let worker = conclib_process::build(Worker { total: 0 })
        .heartbeat(Some(Duration::from_millis(300)))
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.ask(Add(1)).await, Ok(1));
    // The whole process stops running (a hang no handler code can cause or cure).
    // SAFETY: our child's pid.
    unsafe { libc::kill(worker.pid() as i32, libc::SIGSTOP) };
    let pending = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.ask(Add(1)).timeout(Duration::from_secs(600)).await })
    };
    let exit = tokio::time::timeout(Duration::from_secs(20), worker.wait_for_stop())
        .await
        .expect("the dead-man's switch kills a hung process");
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(matches!(
        pending.await.unwrap(),
        Err(ProcessError::Exited(_))
    ));
}

async fn graceful_stop() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    worker.tell(Add(5)).unwrap();
    let last = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.ask(SleepMs(100)).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(worker.ask(Add(0)).await, Ok(5));
    worker.stop();
    assert_eq!(last.await.unwrap(), Ok(100));
    assert_eq!(
        worker.wait_for_stop().await,
        ProcessExit {
            code: Some(0),
            signal: None
        }
    );
}

async fn memory_hog() {
    let worker = conclib_process::build(Worker { total: 0 })
        .memory_limit(512 * 1024 * 1024)
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.ask(Add(1)).await, Ok(1));
    match worker.ask(Hog).timeout(Duration::from_secs(60)).await {
        Err(ProcessError::Exited(exit)) => assert_eq!(exit.signal, Some(libc::SIGABRT), "{exit}"),
        other => panic!("unexpected {other:?}"),
    }
    // The parent is unharmed, and another process actor starts.
    let other = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    assert_eq!(other.ask(Add(2)).await, Ok(2));
    other.kill();
    other.wait_for_stop().await;
}

async fn restarts() {
    let worker = conclib_process::build(Worker { total: 10 })
        .restart(conclib::RestartLimit::new(2, Duration::from_secs(60)))
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.ask(Add(1)).await, Ok(11));
    for round in 1..=2u64 {
        let old = worker.pid();
        // SAFETY: our child's pid.
        unsafe { libc::kill(old as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker.restarts() < round {
            assert!(Instant::now() < deadline, "no restart {round}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_ne!(worker.pid(), old);
        assert!(worker.is_alive());
        // A fresh process with the initial state.
        assert_eq!(worker.ask(Add(1)).await, Ok(11));
    }
    // A third death within the window is past the limit: the process stays dead.
    // SAFETY: our child's pid.
    unsafe { libc::kill(worker.pid() as i32, libc::SIGKILL) };
    let exit = tokio::time::timeout(Duration::from_secs(20), worker.wait_for_stop())
        .await
        .expect("ends for good past the limit");
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert_eq!(worker.restarts(), 2);
    assert!(matches!(
        worker.ask(Add(1)).await,
        Err(ProcessError::Exited(_))
    ));
}

async fn asks_parent() {
    let system = conclib::ActorSystem::new("parent");
    let collector = system
        .build(Worker { total: 0 })
        .urn("collector")
        .spawn()
        .await
        .unwrap();
    let worker = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .spawn()
        .await
        .unwrap();
    // The child tells (+100) then asks (+5) the parent's collector; messages from one
    // sender arrive in order.
    let asked = worker
        .ask(AskParent {
            urn: "collector".into(),
            n: 5,
        })
        .await;
    assert_eq!(asked, Ok(105));
    assert_eq!(collector.ask(Add(0)).await, Ok(105));
    // An unknown URN is a typed error in the child, reported back here as its answer.
    match worker
        .ask(AskParent {
            urn: "nobody".into(),
            n: 1,
        })
        .await
    {
        Err(ProcessError::Handler(e)) => assert!(e.contains("nobody"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
    worker.kill();
    worker.wait_for_stop().await;
}

/// Run as `CONCLIB_TEST_ROLE=parent`: starts a process actor, prints its pid, waits.
fn doomed_parent() {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let worker = conclib_process::build(Worker { total: 0 })
            .spawn()
            .await
            .unwrap();
        println!("{}", worker.pid());
        std::future::pending::<()>().await;
    });
}

async fn parent_killed() {
    use tokio::io::AsyncBufReadExt;
    let mut parent = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env("CONCLIB_TEST_ROLE", "parent")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(parent.stdout.take().unwrap()).lines();
    let child: u32 = lines.next_line().await.unwrap().unwrap().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{child}")).exists());
    parent.start_kill().unwrap();
    parent.wait().await.unwrap();
    // The child was bound to its parent's life: it is gone (killed, and reaped by init).
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(child) {
        assert!(
            Instant::now() < deadline,
            "process actor {child} outlived its parent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
