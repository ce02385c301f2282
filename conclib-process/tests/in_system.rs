//! Process actors as members of an actor system: a URN, `lookup` and `to_dyn`, the Redis
//! proxy, supervision by a local parent, pools of process actors. Real child processes (this
//! binary, re-executed) and a real redis-server on a free port. `harness = false`: `main`
//! calls `conclib_process::init` first.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use conclib::{ActorSystem, AskError, PanicPolicy, Priority, Routing, StopReason};
use conclib_process::{ProcessPool, ProcessRef, ProcessSpawnError, Registry, SpawnProcess};
use conclib_redis::{ProxyClient, ProxyConfig, daemon::RedisDaemon, start_proxy, start_redis};
use conclib_testkit::eventually;

/// How long a test waits for a state it can only poll.
const TEN_SECONDS: Duration = Duration::from_secs(10);

fn main() {
    child_tracing();
    conclib_process::init(Registry::new().actor::<Worker>());
    tracing::subscriber::set_global_default(ChildLines).unwrap();
    conclib_testkit::run(&[
        (
            "traces_cross_the_relay_the_redis_proxy_and_the_childs_asks_to_its_parent",
            || Box::pin(traced_in_system()),
        ),
        (
            "a_named_process_actor_is_looked_up_and_asked_like_any_actor",
            || Box::pin(named()),
        ),
        (
            "a_process_actor_dies_under_a_dyn_ask_and_frees_its_urn",
            || Box::pin(dies_under_dyn_ask()),
        ),
        (
            "stopping_or_killing_the_local_actor_ends_the_process",
            || Box::pin(stop_and_kill_by_urn()),
        ),
        ("a_process_child_stops_with_its_parent", || {
            Box::pin(stops_with_parent())
        }),
        ("an_ask_given_up_through_a_dyn_ref_is_never_started", || {
            Box::pin(given_up_through_dyn())
        }),
        ("a_process_actor_is_asked_through_the_redis_proxy", || {
            Box::pin(through_redis())
        }),
        (
            "a_pool_of_process_actors_routes_replaces_and_resizes",
            || Box::pin(pool_of_processes()),
        ),
        (
            "least_loaded_spreads_a_burst_of_equal_jobs_evenly_over_process_members",
            || Box::pin(least_loaded_burst()),
        ),
        (
            "a_process_members_bound_counts_the_asks_its_process_holds",
            || Box::pin(process_member_bound()),
        ),
        (
            "spawned_and_stopped_process_actors_leave_no_snapshot_entry",
            || Box::pin(no_entry_left()),
        ),
        (
            "a_process_actor_stopped_or_killed_while_its_process_restarts_ends_at_once",
            || Box::pin(stopped_while_restarting()),
        ),
    ]);
}

/// The system's list of actors in other processes (what snapshots show of them) forgets
/// each one when it ends, whether or not a snapshot is ever taken (issue: one entry per
/// in-system process actor ever spawned was kept until the next snapshot).
async fn no_entry_left() {
    let system = ActorSystem::new("churn");
    assert_eq!(system.snapshot_side_entries(), 0);
    for i in 0..20 {
        let worker = system.process(Worker { total: i }).spawn().await.unwrap();
        assert_eq!(worker.ask(Add(1)).await, Ok(i + 1));
        assert_eq!(system.snapshot_side_entries(), 1);
        if i % 2 == 0 {
            worker.stop();
        } else {
            worker.kill();
        }
        worker.wait_for_stop().await;
        assert_eq!(system.snapshot_side_entries(), 0, "after {} cycles", i + 1);
    }
}

/// A stop or kill that comes while a dead process is being replaced reaches the new process
/// (it went to the dead one: the relay then waited its 10 s grace and killed the new one,
/// which also kept a child process and its threads that long).
async fn stopped_while_restarting() {
    let system = ActorSystem::new("stopped-while-restarting");
    for kill in [false, true] {
        let worker = system
            .process(Worker { total: 0 })
            .urn("restarting")
            .restart(conclib::RestartLimit::new(3, Duration::from_secs(60)))
            .spawn()
            .await
            .unwrap();
        let first = worker.pid();
        worker.tell(Exit(3)).await.unwrap();
        // Now its successor is being started (on a busy machine the poll may only see it
        // started: then the stop reaches it directly).
        eventually(TEN_SECONDS, "the death to be seen", || async {
            !worker.is_alive() || worker.restarts() > 0
        })
        .await;
        if kill {
            worker.kill();
        } else {
            worker.stop();
        }
        let exit = tokio::time::timeout(Duration::from_secs(5), worker.wait_for_stop())
            .await
            .expect("ended well before the relay's grace period");
        if worker.restarts() == 0 {
            // The stop or kill came after the death and before the restart began: nothing
            // is started, and the end is the dead process's own.
            assert_eq!(exit.code, Some(3), "{exit}");
        } else if kill {
            assert_eq!(exit.signal, Some(9), "{exit}");
        } else {
            assert_eq!(exit.code, Some(0), "{exit}");
        }
        assert!(!alive(first));
        assert!(!alive(worker.pid()));
        assert!(system.lookup("restarting").is_err());
    }
}

/// 40 equal jobs sent at once to a least-loaded pool of 2 process actors: each member gets
/// half (the load a sender reads counts what was routed to a member and not answered yet).
async fn least_loaded_burst() {
    let system = ActorSystem::new("least-loaded");
    let pool = ProcessPool::new(
        system
            .pool(|| conclib_process::build(Worker { total: 0 }).into_actor())
            .size(2)
            .routing(Routing::LeastLoaded)
            .spawn()
            .await
            .unwrap(),
    );
    for round in 0..3 {
        let jobs: Vec<_> = (0..40)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    pool.ask(BurnThenPid(20))
                        .timeout(Duration::from_secs(60))
                        .await
                })
            })
            .collect();
        let mut per_pid = std::collections::HashMap::<u32, usize>::new();
        for job in jobs {
            *per_pid.entry(job.await.unwrap().unwrap()).or_default() += 1;
        }
        let counts: Vec<usize> = per_pid.values().copied().collect();
        assert_eq!(counts.len(), 2, "round {round}: {per_pid:?}");
        assert!(
            counts[0].abs_diff(counts[1]) <= 4,
            "round {round}: uneven split {per_pid:?}"
        );
    }
    // Nothing left in flight.
    assert!(pool.pool().stats().members.iter().all(|m| m.load() == 0));
    pool.pool().kill();
    pool.pool().wait_for_stop().await;
}

/// A pool of one process actor with a bound of 4 and `WhenFull::Reject`: of 50 concurrent
/// slow asks, exactly 4 are taken (they wait in the process), the rest fail `MailboxFull`.
async fn process_member_bound() {
    let system = ActorSystem::new("bound");
    let pool = system
        .pool(|| conclib_process::build(Worker { total: 0 }).into_actor())
        .size(1)
        .member_mailbox(conclib::MailboxConfig::Bounded(4))
        .when_full(conclib::pool::WhenFull::Reject)
        .spawn()
        .await
        .unwrap();
    let pool_ref = pool.to_dyn();
    let asks: Vec<_> = (0..50)
        .map(|_| {
            let pool_ref = pool_ref.clone();
            tokio::spawn(async move {
                pool_ref
                    .ask(SleepMs(1_500))
                    .timeout(Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    let mut answered = 0;
    let mut full = 0;
    for ask in asks {
        match ask.await.unwrap() {
            Ok(1_500) => answered += 1,
            Err(conclib::AskError::MailboxFull) => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((answered, full), (4, 46));
    // Once answered, the places are free again.
    assert_eq!(pool.members()[0].mailbox_len(), 0);
    assert_eq!(pool_ref.ask(Add(1)).await, Ok(1));
    pool.kill();
    pool.wait_for_stop().await;
}

/// Requests sent to the process actor with this pid and not answered yet, from the
/// system's snapshot.
fn pending(system: &ActorSystem, pid: u32) -> usize {
    system
        .snapshot()
        .actors
        .iter()
        .find(|a| a.pid == Some(pid))
        .map_or(0, |a| a.mailbox_len)
}

async fn named() {
    let system = ActorSystem::new("named");
    let worker = system
        .process(Worker { total: 1 })
        .urn("worker")
        .on_panic(PanicPolicy::Resume)
        .spawn()
        .await
        .unwrap();
    assert_eq!(worker.urn().map(|u| u.as_str()), Some("worker"));
    let found = system.lookup("worker").unwrap();
    assert_eq!(Some(found.clone()), worker.to_dyn());
    assert_eq!(Some(found.id()), worker.id());
    // Typed answers, handler errors and panics, through the dyn ref.
    assert_eq!(found.ask(Add(2)).await.unwrap(), 3);
    assert!(matches!(found.ask(Take(100)).await, Err(AskError::Handler(e)) if e == "only 3 left"),);
    assert!(
        matches!(found.ask(Boom).await, Err(AskError::Panicked(p)) if p.contains("boom in the child"))
    );
    // Tells, in order with asks; both lanes.
    found.tell(Add(10)).await.unwrap();
    found.tell(Add(100)).priority(Priority::High).await.unwrap();
    assert_eq!(found.ask(Add(0)).await.unwrap(), 113);
    assert_eq!(
        found.ask(Add(0)).priority(Priority::High).await.unwrap(),
        113
    );
    // Asks through the ref and through the dyn ref reach the same actor.
    assert_eq!(worker.ask(Add(1)).await, Ok(114));
    let child_pid = found.ask(Pid).await.unwrap();
    assert_eq!(child_pid, worker.pid());
    assert_ne!(child_pid, std::process::id());
    // A message it does not expose: refused before it leaves this process.
    assert!(matches!(
        found.ask(NotExposed).await,
        Err(AskError::UnknownMessage { .. })
    ));
    // The snapshot lists it once, under its URN, with its type and pid.
    let snapshot = system.snapshot();
    let entries: Vec<_> = snapshot
        .actors
        .iter()
        .filter(|a| a.urn.as_deref() == Some("worker"))
        .collect();
    assert_eq!(entries.len(), 1, "{snapshot:#?}");
    assert_eq!(entries[0].pid, Some(worker.pid()));
    assert!(entries[0].type_name.ends_with("Worker"), "{entries:?}");
    assert_eq!(entries[0].id, found.id().as_u64());
    // URNs are checked as for local actors.
    let taken = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .urn("worker")
        .spawn()
        .await
        .unwrap_err();
    assert!(
        matches!(
            taken,
            ProcessSpawnError::System(conclib::SpawnError::UrnTaken(_))
        ),
        "{taken}"
    );
    let no_system = conclib_process::build(Worker { total: 0 })
        .urn("lonely")
        .spawn()
        .await
        .unwrap_err();
    assert!(
        matches!(no_system, ProcessSpawnError::NoSystem),
        "{no_system}"
    );
    worker.stop();
    assert_eq!(worker.wait_for_stop().await.code, Some(0));
    assert!(system.lookup("worker").is_err());
    // With the default policy a panic stops the actor, as locally: its process exits, its
    // local actor stops with the panic, and the URN is free.
    let fragile = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .urn("fragile")
        .spawn()
        .await
        .unwrap();
    let found = system.lookup("fragile").unwrap();
    assert!(matches!(found.ask(Boom).await, Err(AskError::Panicked(_))));
    let reason = found.wait_for_stop().await;
    assert!(
        matches!(&reason, StopReason::Panicked(p) if p.contains("boom in the child")),
        "{reason:?}"
    );
    assert_eq!(fragile.wait_for_stop().await.code, Some(0));
    assert!(system.lookup("fragile").is_err());
}

#[conclib::message(response = ())]
struct NotExposed;

async fn dies_under_dyn_ask() {
    let system = ActorSystem::new("dies");
    let worker = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .urn("doomed")
        .spawn()
        .await
        .unwrap();
    let found = system.lookup("doomed").unwrap();
    let pid = worker.pid();
    let slow = tokio::spawn({
        let found = found.clone();
        async move { found.ask(SleepMs(30_000)).await }
    });
    eventually(TEN_SECONDS, "the slow ask to reach the process", || async {
        pending(&system, pid) == 1
    })
    .await;
    sigkill(pid);
    let lost = slow.await.unwrap();
    assert!(
        matches!(&lost, Err(AskError::Exited(exit)) if exit.signal == Some(9)),
        "{lost:?}"
    );
    // No restart policy: it has ended for good, and its local actor with it.
    assert_eq!(worker.wait_for_stop().await.signal, Some(9));
    assert!(
        matches!(found.wait_for_stop().await, StopReason::Failed(why) if why.contains("signal 9"))
    );
    assert!(system.lookup("doomed").is_err());
    assert!(matches!(
        found.ask(Add(1)).await,
        Err(AskError::ActorStopped)
    ));
    assert!(!alive(pid));
}

async fn stop_and_kill_by_urn() {
    let system = ActorSystem::new("stop-by-urn");
    // A graceful stop through the dyn ref: what was sent before it is handled.
    let worker = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .urn("graceful")
        .spawn()
        .await
        .unwrap();
    let pid = worker.pid();
    let found = system.lookup("graceful").unwrap();
    let late = tokio::spawn({
        let found = found.clone();
        async move { found.ask(SleepMs(200)).await }
    });
    eventually(TEN_SECONDS, "the ask to reach the process", || async {
        pending(&system, pid) == 1
    })
    .await;
    found.stop();
    assert_eq!(late.await.unwrap().unwrap(), 200);
    assert_eq!(worker.wait_for_stop().await.code, Some(0));
    assert_eq!(found.wait_for_stop().await, StopReason::Normal);
    assert!(!alive(pid));
    // A kill through the dyn ref kills the process.
    let worker = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .urn("killed")
        .spawn()
        .await
        .unwrap();
    let pid = worker.pid();
    system.lookup("killed").unwrap().kill();
    assert_eq!(worker.wait_for_stop().await.signal, Some(9));
    assert!(!alive(pid));
    // The system's shutdown stops its process actors.
    let other = ActorSystem::new("shut-down");
    let worker = conclib_process::build(Worker { total: 0 })
        .system(&other)
        .spawn()
        .await
        .unwrap();
    let pid = worker.pid();
    other.shutdown(Duration::from_secs(20)).await.unwrap();
    assert_eq!(worker.wait_for_stop().await.code, Some(0));
    assert!(!alive(pid));
}

/// A local actor with a process actor as its child.
struct Holder {
    child: Arc<Mutex<Option<ProcessRef<Worker>>>>,
}

impl conclib::Actor for Holder {
    async fn on_start(
        &mut self,
        ctx: &mut conclib::Context<Self>,
    ) -> Result<(), conclib::BoxError> {
        let child = ctx.process(Worker { total: 0 }).urn("held").spawn().await?;
        *self.child.lock().unwrap() = Some(child);
        Ok(())
    }
}

async fn stops_with_parent() {
    let system = ActorSystem::new("holder");
    let slot = Arc::default();
    let holder = system
        .spawn(Holder {
            child: Arc::clone(&slot),
        })
        .await
        .unwrap();
    let child = slot.lock().unwrap().clone().unwrap();
    let pid = child.pid();
    // In the tree: the parent's child, by URN.
    let listed = system.snapshot();
    let entry = listed
        .actors
        .iter()
        .find(|a| a.urn.as_deref() == Some("held"))
        .unwrap();
    assert_eq!(entry.parent, Some(holder.id().as_u64()));
    assert_eq!(entry.pid, Some(pid));
    holder.stop();
    holder.wait_for_stop().await;
    assert_eq!(child.wait_for_stop().await.code, Some(0));
    assert!(!alive(pid));
    assert!(system.lookup("held").is_err());
}

async fn given_up_through_dyn() {
    let system = ActorSystem::new("given-up");
    let worker = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .urn("busy")
        .spawn()
        .await
        .unwrap();
    let found = system.lookup("busy").unwrap();
    let busy = tokio::spawn({
        let found = found.clone();
        async move { found.ask(SleepMs(1_500)).await }
    });
    eventually(TEN_SECONDS, "the sleep to reach the process", || async {
        pending(&system, worker.pid()) == 1
    })
    .await;
    assert!(matches!(
        found.ask(Add(5)).timeout(Duration::from_millis(50)).await,
        Err(AskError::Timeout(_))
    ));
    assert_eq!(busy.await.unwrap().unwrap(), 1_500);
    // The 5 was never added: the child dropped the ask before the actor reached it.
    assert_eq!(found.ask(Add(0)).await.unwrap(), 0);
}

/// This binary's redis-server (on a free port) and a namespace of its own per call.
fn redis(test: &str) -> ProxyConfig {
    static DAEMON: std::sync::OnceLock<RedisDaemon> = std::sync::OnceLock::new();
    let daemon = DAEMON.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(start_redis(&ProxyConfig::default()))
                .expect("redis-server starts")
        })
        .join()
        .unwrap()
    });
    daemon.config(&ProxyConfig::default().with_namespace(format!("p{}-{test}", std::process::id())))
}

async fn through_redis() {
    let config = redis("proxy");
    let system = ActorSystem::new("behind-redis");
    let worker = conclib_process::build(Worker { total: 0 })
        .system(&system)
        .urn("remote-worker")
        .restart(conclib::RestartLimit::new(3, Duration::from_secs(60)))
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(client.ask("remote-worker", Add(2)).await.unwrap(), 2);
    let refused = client.ask("remote-worker", Take(5)).await;
    assert!(
        matches!(&refused, Err(AskError::Handler(e)) if e == "only 2 left"),
        "{refused:?}"
    );
    let panicked = client.ask("remote-worker", Boom).await;
    assert!(
        matches!(&panicked, Err(AskError::Panicked(p)) if p.contains("boom in the child")),
        "{panicked:?}"
    );
    // The panic stopped the actor (the default policy) and so ended its process: it is
    // restarted, with the actor's initial state.
    eventually(TEN_SECONDS, "the restart after the panic", || async {
        worker.restarts() == 1 && worker.is_alive()
    })
    .await;
    client.tell("remote-worker", Add(3)).await.unwrap();
    assert_eq!(client.ask("remote-worker", Add(0)).await.unwrap(), 3);
    assert_eq!(
        client.ask("remote-worker", Pid).await.unwrap(),
        worker.pid()
    );
    // Its process killed under an ask: the asker hears of the death; the restarted
    // process serves the same URN (with the actor's initial state).
    let first = worker.pid();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.ask("remote-worker", SleepMs(30_000)).await }
    });
    eventually(TEN_SECONDS, "the slow ask to reach the process", || async {
        pending(&system, first) == 1
    })
    .await;
    sigkill(first);
    let lost = slow.await.unwrap();
    assert!(
        matches!(&lost, Err(AskError::Panicked(why)) if why.contains("signal 9")),
        "{lost:?}"
    );
    eventually(TEN_SECONDS, "the restart", || async {
        worker.restarts() == 2 && worker.is_alive()
    })
    .await;
    assert_eq!(client.ask("remote-worker", Add(1)).await.unwrap(), 1);
    assert_ne!(client.ask("remote-worker", Pid).await.unwrap(), first);
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    worker.stop();
    worker.wait_for_stop().await;
}

async fn pool_of_processes() {
    let config = redis("pool");
    let system = ActorSystem::new("process-pool");
    let pool = system
        .pool(|| conclib_process::build(Worker { total: 0 }).into_actor())
        .size(2)
        .routing(Routing::RoundRobin)
        .urn("workers")
        .spawn()
        .await
        .unwrap();
    let pool_ref = pool.to_dyn();
    let pids = |pool: &conclib::Pool<conclib_process::ProcessRelay<Worker>>| {
        let members = pool.members();
        async move {
            let mut pids = Vec::new();
            for m in members {
                pids.push(m.to_dyn().ask(Pid).await.unwrap());
            }
            pids
        }
    };
    let before = pids(&pool).await;
    assert_eq!(before.len(), 2);
    assert_ne!(before[0], before[1]);
    assert!(before.iter().all(|&p| p != std::process::id() && alive(p)));
    // Round-robin: four asks, two to each process.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(pool_ref.ask(Pid).await.unwrap());
    }
    for pid in &before {
        assert_eq!(seen.iter().filter(|p| *p == pid).count(), 2, "{seen:?}");
    }
    // Through Redis, by the pool's URN.
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let mut totals = Vec::new();
    for _ in 0..4 {
        totals.push(client.ask("workers", Add(1)).await.unwrap());
    }
    totals.sort_unstable();
    assert_eq!(totals, vec![1, 1, 2, 2]);
    // A member's process SIGKILLed: the member ends, and the pool replaces it with a fresh
    // process.
    sigkill(before[0]);
    eventually(TEN_SECONDS, "the replacement", || async {
        pool.stats().replaced == 1
    })
    .await;
    let after = pids(&pool).await;
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&before[0]), "{after:?}");
    assert!(after.contains(&before[1]), "{after:?}");
    // Grown and shrunk at run time; no ask lost meanwhile.
    pool.resize(3).await.unwrap();
    let grown = pids(&pool).await;
    assert_eq!(grown.len(), 3);
    let asks: Vec<_> = (0..30)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.ask("workers", Add(1)).await })
        })
        .collect();
    pool.resize(1).await.unwrap();
    for ask in asks {
        ask.await.unwrap().unwrap();
    }
    eventually(
        TEN_SECONDS,
        "the removed members' processes to end",
        || async { grown.iter().filter(|&&p| alive(p)).count() == 1 },
    )
    .await;
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    let last = pids(&pool).await;
    pool.stop();
    pool.wait_for_stop().await;
    eventually(TEN_SECONDS, "the last member's process to end", || async {
        !alive(last[0])
    })
    .await;

    // Least-loaded: a member's asks in flight count as its load (its local actor hands
    // them on at once, so its mailbox says nothing).
    let pool = system
        .pool(|| conclib_process::build(Worker { total: 0 }).into_actor())
        .size(2)
        .routing(Routing::LeastLoaded)
        .spawn()
        .await
        .unwrap();
    let pool_ref = pool.to_dyn();
    let slow = tokio::spawn({
        let pool_ref = pool_ref.clone();
        async move { pool_ref.ask(SleepMs(30_000)).await }
    });
    eventually(TEN_SECONDS, "the slow ask in flight", || async {
        pool.stats()
            .members
            .iter()
            .map(|m| m.in_flight)
            .sum::<usize>()
            == 1
    })
    .await;
    let busy = pool
        .stats()
        .members
        .iter()
        .position(|m| m.in_flight == 1)
        .unwrap();
    let idle_pid = pool.members()[1 - busy].to_dyn().ask(Pid).await.unwrap();
    // Typed asks, checked against `Worker`'s handlers at compile time.
    let typed = ProcessPool::new(pool.clone());
    for _ in 0..5 {
        assert_eq!(typed.ask(Pid).await.unwrap(), idle_pid);
    }
    assert!(!slow.is_finished());
    slow.abort();
    pool.kill();
    pool.wait_for_stop().await;

    // The pool's dead-man's switch sees a handler stuck in a member's process (the
    // member's heartbeat is answered by the process's actor, between its messages): the
    // member is killed, its process with it, and a fresh one takes its place.
    let pool = system
        .pool(|| conclib_process::build(Worker { total: 0 }).into_actor())
        .size(2)
        .unresponsive_after(Duration::from_millis(500))
        .spawn()
        .await
        .unwrap();
    let before = pids(&pool).await;
    ProcessPool::new(pool.clone()).tell(Spin).await.unwrap();
    eventually(TEN_SECONDS, "the stuck member's replacement", || async {
        pool.stats().replaced == 1
    })
    .await;
    eventually(
        TEN_SECONDS,
        "the stuck member's process to be killed",
        || async { before.iter().any(|&p| !alive(p)) },
    )
    .await;
    let stuck: Vec<u32> = before.iter().copied().filter(|&p| !alive(p)).collect();
    assert_eq!(stuck.len(), 1, "{before:?}");
    let after = pids(&pool).await;
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&stuck[0]), "{after:?}");
    pool.stop();
    pool.wait_for_stop().await;
}

/// A local actor that answers the trace its request came with.
struct TraceProbe;

impl conclib::Actor for TraceProbe {
    const REMOTE: &'static [conclib::remote::ExposedMessage] =
        &[conclib::remote::ExposedMessage::of_infallible::<SeenTrace>()];
    async fn handle_request(
        &mut self,
        req: conclib::RequestEnvelope,
        _: &mut conclib::Context<Self>,
    ) {
        let seen = req.trace().map(|t| t.to_string()).unwrap_or_default();
        match req.extract::<SeenTrace>() {
            Ok((SeenTrace, r)) => r.respond(Ok(seen)),
            Err(req) => req.reject(),
        }
    }
}

async fn traced_in_system() {
    use conclib::trace::TraceContext;
    let config = redis("traced");
    let system = ActorSystem::new("traced");
    system.build(TraceProbe).urn("probe").spawn().await.unwrap();
    let worker = system
        .process(Worker { total: 0 })
        .urn("traced-worker")
        .spawn()
        .await
        .unwrap();
    let pid = worker.pid().to_string();
    // By URN: the relay passes on the trace its request came with.
    let relay = system.lookup("traced-worker").unwrap();
    let by_urn = TraceContext::new_root();
    let request = relay
        .erased(
            <Add as conclib::Message>::name(),
            std::any::TypeId::of::<Add>(),
            Box::new(Add(1)),
        )
        .trace(Some(by_urn));
    request.ask().await.unwrap();
    child_line(&[&format!("trace_id={}", by_urn.trace_id()), &pid]).await;
    // By URN, asked inside a trace: the request takes the trace it was sent in.
    let looked_up = TraceContext::new_root();
    looked_up.scope(relay.ask(Add(1))).await.unwrap();
    child_line(&[&format!("trace_id={}", looked_up.trace_id()), &pid]).await;
    // Through a pool of process actors (typed, and by the pool's URN), inside a trace.
    let pool = ProcessPool::new(
        system
            .pool(|| conclib_process::build(Worker { total: 0 }).into_actor())
            .size(1)
            .urn("traced-pool")
            .spawn()
            .await
            .unwrap(),
    );
    let member_pid = pool.ask(Pid).await.unwrap().to_string();
    let pooled = TraceContext::new_root();
    pooled.scope(pool.ask(Add(1))).await.unwrap();
    child_line(&[&format!("trace_id={}", pooled.trace_id()), &member_pid]).await;
    let pooled_tell = TraceContext::new_root();
    pooled_tell.scope(pool.tell(Add(1))).await.unwrap();
    child_line(&[&format!("trace_id={}", pooled_tell.trace_id()), &member_pid]).await;
    let by_pool_urn = TraceContext::new_root();
    by_pool_urn
        .scope(system.lookup("traced-pool").unwrap().ask(Add(1)))
        .await
        .unwrap();
    child_line(&[&format!("trace_id={}", by_pool_urn.trace_id()), &member_pid]).await;
    pool.pool().stop();
    pool.pool().wait_for_stop().await;
    // Through the Redis proxy: a client asking inside a trace.
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let through_redis = TraceContext::new_root();
    through_redis
        .scope(async { client.ask("traced-worker", Add(1)).await })
        .await
        .unwrap();
    child_line(&[&format!("trace_id={}", through_redis.trace_id()), &pid]).await;
    // A traced ask whose handler in the child asks the parent's actor: that request is part
    // of the same trace (the handler runs in its message's trace), as a span of its own.
    let chain = TraceContext::new_root();
    let ask_parent = || {
        worker.ask(AskParentTrace {
            urn: "probe".to_owned(),
        })
    };
    let seen = chain.scope(async { ask_parent().await }).await.unwrap();
    let seen = TraceContext::parse(&seen).expect("the parent's actor saw a trace");
    assert_eq!(seen.trace_id(), chain.trace_id());
    assert_ne!(
        seen.span_id(),
        chain.span_id(),
        "a span further down the chain"
    );
    // Untraced, the chain carries none.
    assert_eq!(ask_parent().await.unwrap(), "");
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
    worker.stop();
    worker.wait_for_stop().await;
}
