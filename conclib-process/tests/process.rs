//! Process actors against real child processes: this test binary is also the child (and,
//! for one test, a parent that gets killed). `harness = false`: `main` must call
//! `conclib_process::init` before anything else, as every program with process actors does.

use std::time::{Duration, Instant};

mod common;

use common::*;
use conclib::AskError;
use conclib::message;
use conclib_process::{ProcessExit, ProcessRef, Registry};

static METRICS: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
    std::sync::OnceLock::new();

/// The process metrics recorded since the last call: (name, labels "k=v" sorted) → counter
/// value or number of histogram samples.
fn process_metrics() -> std::collections::HashMap<conclib_testkit::MetricKey, u64> {
    use metrics_util::debugging::DebugValue;
    conclib_testkit::recorded(METRICS.get().unwrap())
        .into_iter()
        .filter_map(|(key, value)| {
            let n = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(v) => v.len() as u64,
                DebugValue::Gauge(_) => return None,
            };
            Some((key, n))
        })
        .collect()
}

fn main() {
    child_tracing();
    conclib_process::init(Registry::new().actor::<Worker>());
    tracing::subscriber::set_global_default(ChildLines).unwrap();
    // The process-actor metrics, read by `restarts` (tests run one after another).
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    METRICS.set(recorder.snapshotter()).ok();
    recorder.install().unwrap();
    conclib::metrics::enable();
    if std::env::var("CONCLIB_TEST_ROLE").as_deref() == Ok("parent") {
        return doomed_parent();
    }
    let tests: &[(&str, conclib_testkit::Test)] = &[
        ("asks_tells_errors_and_priorities_cross_the_process", || {
            Box::pin(round_trip())
        }),
        ("a_panic_in_the_child_reaches_the_asker", || {
            Box::pin(panic_reaches_asker())
        }),
        (
            "sigkill_fails_every_pending_ask_at_once_with_the_signal",
            || Box::pin(sigkill_under_asks()),
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
        (
            "asks_and_tells_sent_in_a_trace_continue_it_in_the_child",
            || Box::pin(traced()),
        ),
        ("an_unreadable_frame_from_the_child_breaks_the_link", || {
            Box::pin(corrupt_link())
        }),
        ("the_method_call_api_works_on_process_refs", || {
            Box::pin(method_call_api())
        }),
        ("the_childs_stdout_and_stderr_reach_tracing", || {
            Box::pin(output_to_tracing())
        }),
        (
            "a_process_actor_is_in_its_systems_snapshot_with_its_pid",
            || Box::pin(in_snapshot()),
        ),
        (
            "a_process_child_reports_restarts_and_its_end_to_its_supervisor",
            || Box::pin(supervised()),
        ),
        (
            "a_handler_that_keeps_the_cpu_busy_does_not_miss_heartbeats",
            || Box::pin(busy_not_dead()),
        ),
        (
            "what_is_sent_during_a_restart_goes_to_the_new_process",
            || Box::pin(held_during_restart()),
        ),
        (
            "an_ask_sent_as_a_panic_answer_arrives_goes_to_the_restarted_process",
            || Box::pin(asked_right_after_a_panic()),
        ),
        (
            "a_message_or_answer_over_the_links_limit_fails_alone",
            || Box::pin(over_the_limit()),
        ),
    ];
    conclib_testkit::run(tests);
}

/// A local actor whose child is a process actor; it records what it hears of it.
struct Supervisor {
    child: Option<ProcessRef<Worker>>,
    restart: Option<conclib::RestartLimit>,
    events: std::sync::Arc<std::sync::Mutex<Vec<conclib::SupervisionEvent>>>,
    heard: std::sync::Arc<tokio::sync::Notify>,
}

impl conclib::Actor for Supervisor {
    async fn on_start(
        &mut self,
        ctx: &mut conclib::Context<Self>,
    ) -> Result<(), conclib::BoxError> {
        let mut child = conclib_process::build(Worker { total: 0 }).child_of(ctx);
        if let Some(limit) = self.restart {
            child = child.restart(limit);
        }
        self.child = Some(child.spawn().await?);
        Ok(())
    }

    async fn on_event(&mut self, _: &mut conclib::Context<Self>, event: conclib::SupervisionEvent) {
        self.events.lock().unwrap().push(event);
        self.heard.notify_one();
    }
}

#[message(response = (u32, u64))]
struct ChildInfo;

impl conclib::Handler<ChildInfo> for Supervisor {
    async fn handle(
        &mut self,
        _: ChildInfo,
        ctx: &mut conclib::Context<Self>,
    ) -> Result<(u32, u64), std::convert::Infallible> {
        let pid = self.child.as_ref().unwrap().pid();
        // The child's id: its entry in the system's snapshot, by its pid.
        let id = ctx
            .system()
            .snapshot()
            .actors
            .iter()
            .find(|a| a.pid == Some(pid))
            .map(|a| a.id)
            .unwrap();
        Ok((pid, id))
    }
}

#[message(response = ProcessRef<Worker>)]
struct Child;

impl conclib::Handler<Child> for Supervisor {
    async fn handle(
        &mut self,
        _: Child,
        _: &mut conclib::Context<Self>,
    ) -> Result<ProcessRef<Worker>, std::convert::Infallible> {
        Ok(self.child.clone().unwrap())
    }
}

async fn supervised() {
    let events = std::sync::Arc::default();
    let heard = std::sync::Arc::new(tokio::sync::Notify::new());
    let system = conclib::ActorSystem::new("supervising");
    let supervisor = system
        .spawn(Supervisor {
            child: None,
            restart: Some(conclib::RestartLimit::new(1, Duration::from_secs(60))),
            events: std::sync::Arc::clone(&events),
            heard: heard.clone(),
        })
        .await
        .unwrap();
    let wait_for = |n: usize| {
        let events = std::sync::Arc::clone(&events);
        let heard = heard.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while events.lock().unwrap().len() < n {
                assert!(
                    tokio::time::timeout_at(deadline, heard.notified())
                        .await
                        .is_ok(),
                    "no event {n}: {:?}",
                    events.lock().unwrap()
                );
            }
        }
    };
    let (pid, id) = supervisor.ask(ChildInfo).await.unwrap();
    sigkill(pid);
    wait_for(1).await;
    let first = events.lock().unwrap()[0].clone();
    assert!(
        matches!(&first, conclib::SupervisionEvent::ChildRestarted { id: child, panic, .. }
            if child.as_u64() == id && panic.contains("signal 9")),
        "{first:?}"
    );
    // Past its restart limit (one restart a minute), the second death is its end.
    let (pid, _) = supervisor.ask(ChildInfo).await.unwrap();
    sigkill(pid);
    wait_for(2).await;
    let last = events.lock().unwrap()[1].clone();
    assert!(
        matches!(&last, conclib::SupervisionEvent::ChildStopped {
            id: child,
            reason: conclib::StopReason::RestartLimit(why),
            ..
        } if child.as_u64() == id && why.contains("signal 9")),
        "{last:?}"
    );
    supervisor.stop();
    supervisor.wait_for_stop().await;
    // Without a restart policy, a child whose actor panicked (its process exits 0) stops
    // with `Panicked` and the panic's text, as a local child does.
    events.lock().unwrap().clear();
    let supervisor = system
        .spawn(Supervisor {
            child: None,
            restart: None,
            events: std::sync::Arc::clone(&events),
            heard: heard.clone(),
        })
        .await
        .unwrap();
    let (_, id) = supervisor.ask(ChildInfo).await.unwrap();
    let child = supervisor.ask(Child).await.unwrap();
    assert!(matches!(child.ask(Boom).await, Err(AskError::Panicked(_))));
    assert_eq!(child.wait_for_stop().await.code, Some(0));
    wait_for(1).await;
    let stopped = events.lock().unwrap()[0].clone();
    assert!(
        matches!(&stopped, conclib::SupervisionEvent::ChildStopped {
            id: child,
            reason: conclib::StopReason::Panicked(why),
            ..
        } if child.as_u64() == id && why.contains("boom in the child")),
        "{stopped:?}"
    );
    supervisor.stop();
    supervisor.wait_for_stop().await;
}

async fn over_the_limit() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    let pid = worker.pid();
    assert_eq!(worker.ask(Blob("x".repeat(1 << 20))).await, Ok(1 << 20));
    assert_eq!(worker.ask(Big(1 << 20)).await.map(|b| b.len()), Ok(1 << 20));
    // 65 MiB each way: refused with a codec error that says why; nothing else breaks.
    let sent = worker.ask(Blob("x".repeat(65 << 20))).await;
    assert!(
        matches!(&sent, Err(AskError::Codec(why)) if why.contains("over the link's limit")),
        "{sent:?}"
    );
    let answered = worker.ask(Big(65 << 20)).await;
    assert!(
        matches!(&answered, Err(AskError::Codec(why)) if why.contains("the answer is")),
        "{:?}",
        answered.map(|b| b.len())
    );
    assert_eq!(worker.ask(Add(1)).await, Ok(1));
    assert_eq!((worker.pid(), worker.restarts()), (pid, 0));
    worker.stop();
    assert_eq!(worker.wait_for_stop().await.code, Some(0));
}

async fn held_during_restart() {
    let worker = conclib_process::build(Worker { total: 10 })
        .restart(conclib::RestartLimit::new(2, Duration::from_secs(60)))
        .spawn()
        .await
        .unwrap();
    let old = worker.pid();
    sigkill(old);
    let deadline = Instant::now() + Duration::from_secs(20);
    // Until the death is seen, or the restart is done already (a loaded machine may not
    // poll this task between the two: the successor's pid is then the sign).
    while worker.is_alive() && worker.pid() == old {
        assert!(Instant::now() < deadline, "the death is never seen");
        tokio::task::yield_now().await;
    }
    // The death is seen, the restart (most often) not done yet: a tell and an ask sent now
    // wait for the new process, and reach it in order.
    worker.tell(Add(5)).await.unwrap();
    assert_eq!(worker.ask(Add(1)).await, Ok(16));
    assert_ne!(worker.pid(), old);
    assert_eq!(worker.restarts(), 1);
    worker.kill();
    worker.wait_for_stop().await;
}

async fn asked_right_after_a_panic() {
    use conclib_process::SpawnProcess;
    // Through the ref and through its relay (a URN in a system): the `Panicked` answer means
    // the process is on its way out, so what the asker sends next waits for its successor.
    let system = conclib::ActorSystem::new("after-panic");
    let limit = conclib::RestartLimit::new(3, Duration::from_secs(60));
    let direct = conclib_process::build(Worker { total: 10 })
        .restart(limit)
        .spawn()
        .await
        .unwrap();
    let named = system
        .process(Worker { total: 10 })
        .urn("after-panic-worker")
        .restart(limit)
        .spawn()
        .await
        .unwrap();
    let by_urn = system.lookup("after-panic-worker").unwrap();
    for round in 1..=3 {
        let pid = direct.pid();
        assert!(matches!(direct.ask(Boom).await, Err(AskError::Panicked(_))));
        assert_eq!(direct.ask(Add(1)).await, Ok(11), "round {round}");
        assert_ne!(direct.pid(), pid);
        assert_eq!(direct.restarts(), round);
        let pid = named.pid();
        assert!(matches!(by_urn.ask(Boom).await, Err(AskError::Panicked(_))));
        assert_eq!(by_urn.ask(Add(1)).await.unwrap(), 11, "round {round}");
        assert_ne!(named.pid(), pid);
        assert_eq!(named.restarts(), round);
    }
    // Under `Resume` a panic ends nothing: the next ask goes to the same process at once
    // (were it taken for a death, the ask would wait for a restart that never comes and
    // time out).
    let resumes = conclib_process::build(Worker { total: 10 })
        .restart(limit)
        .on_panic(conclib::PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    let pid = resumes.pid();
    assert!(matches!(
        resumes.ask(Boom).await,
        Err(AskError::Panicked(_))
    ));
    assert_eq!(
        resumes.ask(Add(1)).timeout(Duration::from_secs(5)).await,
        Ok(11)
    );
    assert_eq!((resumes.pid(), resumes.restarts()), (pid, 0));
    resumes.stop();
    resumes.wait_for_stop().await;
    // Past its limit the next panic is the end: the next ask fails with the exit.
    assert!(matches!(direct.ask(Boom).await, Err(AskError::Panicked(_))));
    assert!(matches!(direct.ask(Add(1)).await, Err(AskError::Exited(_))));
    direct.wait_for_stop().await;
    named.kill();
    named.wait_for_stop().await;
    system.shutdown(Duration::from_secs(10)).await.unwrap();
}

async fn busy_not_dead() {
    // One runtime thread (the default) and two: a handler that never awaits for five
    // heartbeat periods holds the runtime, not the heartbeat thread.
    for threads in [1, 2] {
        let worker = conclib_process::build(Worker { total: 0 })
            .heartbeat(Some(Duration::from_millis(200)))
            .worker_threads(threads)
            .spawn()
            .await
            .unwrap();
        let pid = worker.pid();
        assert_eq!(worker.ask(Burn(1_000)).await, Ok(1_000));
        assert_eq!(worker.ask(Add(1)).await, Ok(1));
        assert_eq!((worker.pid(), worker.restarts()), (pid, 0));
        assert!(worker.is_alive());
        worker.stop();
        assert_eq!(worker.wait_for_stop().await.code, Some(0));
    }
}

async fn in_snapshot() {
    let system = conclib::ActorSystem::new("snapshot-parent");
    let worker = conclib_process::build(Worker { total: 1 })
        .system(&system)
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.ask(Add(1)).await, Ok(2));
    assert!(matches!(
        worker.ask(Take(100)).await,
        Err(AskError::Handler(_))
    ));
    let snapshot = system.snapshot();
    let listed = snapshot
        .actors
        .iter()
        .find(|a| a.pid == Some(worker.pid()))
        .unwrap_or_else(|| panic!("the process actor is not in {snapshot:#?}"));
    assert!(listed.type_name.ends_with("Worker"), "{listed:?}");
    assert_eq!(worker.id().map(|id| id.as_u64()), Some(listed.id));
    assert_ne!(listed.pid, Some(std::process::id()));
    assert_eq!((listed.handled, listed.errors, listed.panics), (2, 1, 0));
    assert_eq!(listed.mailbox_len, 0);
    assert_eq!(listed.state, conclib::snapshot::ActorState::Running);
    // Once it has ended for good, it leaves the snapshot.
    worker.kill();
    tokio::time::timeout(Duration::from_secs(20), worker.wait_for_stop())
        .await
        .unwrap();
    assert!(
        system.snapshot().actors.iter().all(|a| a.pid.is_none()),
        "{:#?}",
        system.snapshot()
    );
}

async fn output_to_tracing() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    worker.shout("hello".to_owned()).await.unwrap();
    let pid = worker.pid().to_string();
    let out = child_line(&["out: hello", &pid]).await;
    assert!(out.starts_with("INFO") && out.contains("Worker"), "{out}");
    let err = child_line(&["err: hello", &pid]).await;
    assert!(err.starts_with("WARN"), "{err}");
    // Inherited output does not go through tracing.
    let quiet = conclib_process::build(Worker { total: 0 })
        .output(conclib_process::ChildOutput::Inherit)
        .spawn()
        .await
        .unwrap();
    quiet.shout("inherited".to_owned()).await.unwrap();
    let quiet_pid = quiet.pid().to_string();
    // Flush order: after the ask returned, a second line from the traced worker arrives
    // after the inherited one would have; none of the inherited lines is there.
    worker.shout("marker".to_owned()).await.unwrap();
    child_line(&["out: marker", &pid]).await;
    assert!(
        !CHILD_LINES
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("inherited") || l.contains(&quiet_pid)),
    );
    worker.kill();
    quiet.kill();
}

async fn method_call_api() {
    let worker = conclib_process::build(Worker { total: 1 })
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.scale(3, 1).await, Ok(4));
    assert_eq!(worker.withdraw(1).await, Ok(3));
    assert_eq!(
        worker.withdraw(10).await,
        Err(AskError::Handler("overdrawn".to_owned()))
    );
    // A tell, then an ask from the same sender in the same lane: handled in that order.
    worker.reset().tell().await.unwrap();
    assert_eq!(worker.scale(1, 5).await, Ok(5));
    assert_eq!(
        worker.scale(1, 0).priority(conclib::Priority::High).await,
        Ok(5)
    );
    assert_eq!(
        worker.nap(5_000).timeout(Duration::from_millis(50)).await,
        Err(AskError::Timeout(Duration::from_millis(50)))
    );
    // The message-struct form gets a method too.
    assert_eq!(worker.add(Add(1)).await, Ok(6));
    worker.kill();
    assert!(matches!(worker.wait_for_stop().await, ProcessExit { .. }));
}

async fn round_trip() {
    let worker = conclib_process::build(Worker { total: 1 })
        .spawn()
        .await
        .unwrap();
    assert_ne!(worker.pid(), std::process::id());
    assert_eq!(worker.ask(Pid).await, Ok(worker.pid()));
    assert_eq!(worker.ask(Add(2)).await, Ok(3));
    worker.tell(Add(10)).await.unwrap();
    assert_eq!(worker.ask(Take(4)).await, Ok(9));
    assert_eq!(
        worker.ask(Take(100)).await,
        Err(AskError::Handler("only 9 left".to_owned()))
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
        Err(AskError::Timeout(Duration::from_millis(50)))
    );
    // Messages from one sender enter the mailbox in the order sent, tells and asks alike.
    for _ in 0..1_000 {
        worker.tell(Add(1)).await.unwrap();
    }
    assert_eq!(worker.ask(Add(0)).await, Ok(1_209));
    worker.tell(Take(1_000)).await.unwrap();
    assert_eq!(worker.ask(Add(0)).await, Ok(209));
    assert_eq!(
        worker.ask(Add(0)).priority(conclib::Priority::High).await,
        Ok(209)
    );
    // Tells in the high lane too.
    worker
        .tell(Add(100))
        .priority(conclib::Priority::High)
        .await
        .unwrap();
    assert_eq!(worker.ask(Add(0)).await, Ok(309));
    worker.kill();
    worker.wait_for_stop().await;
}

async fn panic_reaches_asker() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    match worker.ask(Boom).await {
        Err(AskError::Panicked(m)) => assert!(m.contains("boom in the child"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    // The actor stopped (the default policy), as a local one does, and its process with it.
    assert_eq!(worker.wait_for_stop().await.code, Some(0));
    assert!(matches!(worker.ask(Add(1)).await, Err(AskError::Exited(_))));
    // With `Resume`, the actor goes on with the state the panic left.
    let resilient = conclib_process::build(Worker { total: 0 })
        .on_panic(conclib::PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    assert_eq!(resilient.ask(Add(2)).await, Ok(2));
    assert!(matches!(
        resilient.ask(Boom).await,
        Err(AskError::Panicked(_))
    ));
    assert_eq!(resilient.ask(Add(1)).await, Ok(3));
    resilient.stop();
    assert_eq!(resilient.wait_for_stop().await.code, Some(0));
}

async fn sigkill_under_asks() {
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
    sigkill(worker.pid());
    let killed = ProcessExit {
        code: None,
        signal: Some(libc::SIGKILL),
        panic: None,
    };
    for a in asks {
        assert_eq!(a.await.unwrap(), Err(AskError::Exited(killed.clone())));
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(worker.wait_for_stop().await, killed);
    assert!(!worker.is_alive());
    assert_eq!(
        worker.ask(Add(1)).await,
        Err(AskError::Exited(killed.clone()))
    );
    assert!(matches!(
        worker.tell(Add(1)).await,
        Err(AskError::Exited(_))
    ));
    assert!(matches!(worker.try_tell(Add(1)), Err(AskError::Exited(_))));
    // Reaped: no zombie.
    assert!(!std::path::Path::new(&format!("/proc/{}", worker.pid())).exists());
}

async fn exit_code() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    // The process exits in the handler of `Exit`, with the ask behind it still pending.
    worker.tell(Exit(3)).await.unwrap();
    let pending = worker
        .ask(SleepMs(1))
        .timeout(Duration::from_secs(600))
        .await;
    let exited = ProcessExit {
        code: Some(3),
        signal: None,
        panic: None,
    };
    assert_eq!(pending, Err(AskError::Exited(exited.clone())));
    assert_eq!(worker.wait_for_stop().await, exited);
}

async fn hang() {
    let worker = conclib_process::build(Worker { total: 0 })
        .heartbeat(Some(Duration::from_millis(300)))
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.ask(Add(1)).await, Ok(1));
    // The whole process stops running (a hang no handler code can cause or cure): every
    // thread of it, before the ask below is made (else it might still be answered).
    conclib_testkit::freeze(worker.pid()).await;
    let pending = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.ask(Add(1)).timeout(Duration::from_secs(600)).await })
    };
    let exit = tokio::time::timeout(Duration::from_secs(20), worker.wait_for_stop())
        .await
        .expect("the dead-man's switch kills a hung process");
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(matches!(pending.await.unwrap(), Err(AskError::Exited(_))));
}

async fn graceful_stop() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    worker.try_tell(Add(5)).unwrap();
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
            signal: None,
            panic: None,
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
        Err(AskError::Exited(exit)) => assert_eq!(exit.signal, Some(libc::SIGABRT), "{exit}"),
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
    process_metrics(); // what earlier tests recorded
    let worker = conclib_process::build(Worker { total: 10 })
        .restart(conclib::RestartLimit::new(2, Duration::from_secs(60)))
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.ask(Add(1)).await, Ok(11));
    for round in 1..=2u64 {
        let old = worker.pid();
        sigkill(old);
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
    sigkill(worker.pid());
    let exit = tokio::time::timeout(Duration::from_secs(20), worker.wait_for_stop())
        .await
        .expect("ends for good past the limit");
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert_eq!(worker.restarts(), 2);
    assert!(matches!(worker.ask(Add(1)).await, Err(AskError::Exited(_))));
    // The same story in the metrics: two restarts, three deaths by SIGKILL, and the link's
    // round trips (one per start).
    let actor = format!("actor={}", std::any::type_name::<Worker>());
    let seen = process_metrics();
    let get = |name: &str, labels: &[&str]| {
        let mut labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        labels.sort();
        seen.get(&(name.to_owned(), labels)).copied()
    };
    assert_eq!(
        get("conclib_process_restarts_total", &[&actor]),
        Some(2),
        "{seen:?}"
    );
    assert_eq!(
        get("conclib_process_exits_total", &[&actor, "reason=sigkill"]),
        Some(3),
        "{seen:?}"
    );
    assert!(
        get("conclib_process_link_round_trip_seconds", &[&actor]).is_some_and(|n| n >= 3),
        "{seen:?}"
    );
    // A panic ends the process with code 0: counted as a panic, not a clean exit.
    let panics = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    assert!(matches!(panics.ask(Boom).await, Err(AskError::Panicked(_))));
    panics.wait_for_stop().await;
    let seen = process_metrics();
    let get = |labels: &[&str]| {
        let mut labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        labels.sort();
        seen.get(&("conclib_process_exits_total".to_owned(), labels))
            .copied()
    };
    assert_eq!(get(&[&actor, "reason=panicked"]), Some(1), "{seen:?}");
    // (A series seen before reads 0 once drained.)
    assert_eq!(get(&[&actor, "reason=exit_ok"]).unwrap_or(0), 0, "{seen:?}");
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
        Err(AskError::Handler(e)) => assert!(e.contains("nobody"), "{e}"),
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

async fn traced() {
    use conclib::trace::TraceContext;
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    let pid = worker.pid().to_string();
    let recorded = || child_lines_with(&["handle span trace_id=", &pid]);
    // Outside any trace: the child's `handle` span records no trace.
    worker.ask(Add(1)).await.unwrap();
    // An ask and a tell inside traces: the child's spans are part of them.
    let asked = TraceContext::new_root();
    asked
        .scope(async { worker.ask(Add(1)).await })
        .await
        .unwrap();
    let line = child_line(&[&format!("trace_id={}", asked.trace_id()), &pid]).await;
    assert!(line.starts_with("WARN"), "{line}");
    let told = TraceContext::new_root();
    told.scope(async { worker.tell(Add(1)).await.unwrap() })
        .await;
    child_line(&[&format!("trace_id={}", told.trace_id()), &pid]).await;
    // One stream, in order: had the untraced ask recorded a trace, its line came first.
    assert_eq!(recorded(), 2, "{:?}", CHILD_LINES.lock().unwrap());
    // The span's parent is a span of the asking side: a child of the scope, not the scope.
    assert!(line.contains("parent_span_id="), "{line}");
    assert!(
        !line.contains(&format!("parent_span_id={}", asked.span_id())),
        "{line}"
    );
    worker.stop();
    worker.wait_for_stop().await;
}

async fn corrupt_link() {
    let worker = conclib_process::build(Worker { total: 0 })
        .spawn()
        .await
        .unwrap();
    // The garbage reaches the parent before the answer: the link is broken, the process
    // killed, and the ask fails with the signal (not after its timeout).
    let broken = worker
        .ask(CorruptLink)
        .timeout(Duration::from_secs(600))
        .await;
    assert!(
        matches!(&broken, Err(AskError::Exited(exit)) if exit.signal == Some(9)),
        "{broken:?}"
    );
    assert_eq!(worker.wait_for_stop().await.signal, Some(9));
}
