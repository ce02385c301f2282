//! Redis restarted mid-run, or its script cache flushed: proxy and client recover by themselves.
mod common;
#[path = "common/servers.rs"]
mod servers;

use conclib_core::AskError;
use std::time::{Duration, Instant};

use common::actors::*;
use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, ProxyHandle, start_proxy, start_redis};

/// A system serving a `Counter` as `c` through a proxy, and a client.
async fn serve_counter(
    name: &str,
    config: &ProxyConfig,
) -> (ActorSystem, ProxyHandle, ProxyClient) {
    let system = ActorSystem::new(name);
    system
        .build(Counter::default())
        .urn("c")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, config).await.unwrap();
    let client = ProxyClient::connect(config).await.unwrap();
    (system, proxy, client)
}

/// A plain fred client of this Redis.
async fn raw_client(url: &str) -> fred::prelude::Client {
    let redis = fred::prelude::Builder::from_config(fred::prelude::Config::from_url(url).unwrap())
        .build()
        .unwrap();
    fred::prelude::ClientLike::init(&redis).await.unwrap();
    redis
}

/// An ask to `c` with this `timeout` fails `Unavailable` in less than `within`.
async fn ask_ends_unavailable(client: &ProxyClient, timeout: Duration, within: Duration) {
    let started = Instant::now();
    let result = client.ask("c", Add(1)).timeout(timeout).await;
    assert!(
        matches!(result, Err(AskError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < within, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_client_survive_a_redis_restart() {
    let port = servers::free_ports(1)[0];
    let mut base = ProxyConfig::default().with_namespace("restart");
    base.server_port = Some(port);
    base.command_timeout = Duration::from_secs(1);
    base.lease_ttl = Duration::from_secs(3);
    let daemon = start_redis(&base).await.unwrap();
    assert_eq!(daemon.port(), port);
    let config = daemon
        .config(&base)
        .with_ask_timeout(Duration::from_secs(2));

    let (_system, proxy, client) = serve_counter("restart", &config).await;
    assert_eq!(client.ask("c", Add(1)).await.unwrap(), 1);

    daemon.shutdown().unwrap();

    // During the outage: a clear error, within the ask's timeout (mostly at once: the
    // client's commands fail fast while it knows it is disconnected).
    for _ in 0..3 {
        ask_ends_unavailable(&client, Duration::from_millis(300), Duration::from_secs(1)).await;
    }
    let started = Instant::now();
    assert!(matches!(
        client.tell("c", Record(1)).await,
        Err(AskError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
    // The client knows it is disconnected by now: an ask whose request cannot be written
    // ends with that, not with its (long) timeout.
    ask_ends_unavailable(&client, Duration::from_secs(30), Duration::from_secs(5)).await;

    // Redis is back (empty: persistence is off) on the same port.
    let daemon = start_redis(&base).await.unwrap();
    let started = Instant::now();
    let total = loop {
        // Until both sides have reconnected and the proxy has registered again, only
        // these errors are acceptable; no attempt may hang. Never `UnknownUrn`: the actor is
        // alive, only Redis forgot it.
        let attempt = Instant::now();
        match client
            .ask("c", Add(1))
            .timeout(Duration::from_millis(500))
            .await
        {
            Ok(total) => break total,
            Err(AskError::Unavailable(_) | AskError::Timeout(_)) => {
                assert!(attempt.elapsed() < Duration::from_secs(2));
            }
            Err(other) => panic!("unexpected error after the restart: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no recovery after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The actor kept its state; asks during the outage never reached it (they may have
    // been queued by the client's connection and sent after the restart, then expired).
    assert!(total >= 2, "{total}");
    assert_eq!(client.ask("c", Get).await.unwrap(), total);
    client.tell("c", Record(7)).await.unwrap();
    assert_eq!(client.ask("c", History).await.unwrap(), vec![7]);

    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}

/// Redis forgot the scripts (`SCRIPT FLUSH`, a failover to a replica that never loaded
/// them): the proxy's replies and the client's batched requests go out all the same, loaded
/// again with EVAL. (One thread: asks spawned together are written as one batch.)
#[tokio::test]
async fn replies_survive_a_script_flush() {
    let base = ProxyConfig::default().with_namespace("flush");
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base);
    let (_system, proxy, client) = serve_counter("flush", &config).await;
    assert_eq!(client.ask("c", Add(1)).await.unwrap(), 1);

    let redis = raw_client(&daemon.url()).await;
    let _: () = fred::prelude::LuaInterface::script_flush(&redis, false)
        .await
        .unwrap();

    for n in 2..=11 {
        assert_eq!(
            client
                .ask("c", Add(1))
                .timeout(Duration::from_secs(5))
                .await
                .unwrap(),
            n
        );
    }
    // Asks written together (one script call of the client's) after another flush.
    let _: () = fred::prelude::LuaInterface::script_flush(&redis, false)
        .await
        .unwrap();
    let asks: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.ask("c", Echo(format!("{i}"))).await })
        })
        .collect();
    for (i, ask) in asks.into_iter().enumerate() {
        assert_eq!(ask.await.unwrap().unwrap(), format!("{i}"));
    }
    // Booked once Redis confirmed the writes, which may come after the client's answer.
    common::eventually(Duration::from_secs(5), "31 requests completed", || async {
        proxy.stats().completed == 31
    })
    .await;
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}

/// Redis refuses writes for a while (out of memory) just as an answer is written: nothing is
/// acknowledged, and the proxy writes the answer again once Redis takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_refused_by_redis_is_written_again() {
    let base = ProxyConfig::default().with_namespace("oom");
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon
        .config(&base)
        .with_ask_timeout(Duration::from_secs(20));
    let (_system, proxy, client) = serve_counter("oom", &config).await;
    let redis = raw_client(&daemon.url()).await;
    let command = |args: Vec<&'static str>| {
        let redis = redis.clone();
        async move {
            let (name, args) = args.split_first().unwrap();
            let cmd = fred::types::CustomCommand::new_static(
                name,
                fred::types::ClusterHash::Random,
                false,
            );
            let args: Vec<fred::types::Value> = args.iter().map(|a| (*a).into()).collect();
            fred::prelude::ClientLike::custom::<fred::types::Value, _>(&redis, cmd, args)
                .await
                .unwrap()
        }
    };
    // How many commands Redis refused for lack of memory (its error statistics).
    let oom_errors = || async {
        let info = command(vec!["INFO", "errorstats"]).await;
        let info = info.as_str().unwrap().into_owned();
        info.lines()
            .find_map(|l| l.strip_prefix("errorstat_OOM:count="))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap())
    };

    let ask = tokio::spawn({
        let client = client.clone();
        async move { client.ask("c", Sleep(300)).await }
    });
    common::eventually(
        Duration::from_secs(5),
        "the request to be taken",
        || async { proxy.stats().received == 1 },
    )
    .await;
    command(vec!["CONFIG", "SET", "maxmemory", "1"]).await;
    common::eventually(
        Duration::from_secs(5),
        "Redis to refuse the answer",
        || async { oom_errors().await > 0 },
    )
    .await;
    command(vec!["CONFIG", "SET", "maxmemory", "0"]).await;
    assert_eq!(ask.await.unwrap().unwrap(), 300);
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}

/// How one ask of the load ended.
#[derive(Debug)]
struct Outcome {
    started: Instant,
    ended: Instant,
    result: Result<u64, AskError<String>>,
}

/// Redis (no persistence) is killed with SIGKILL and restarted on the same
/// port about a second later, under a load of 64 concurrent asks with 5 s timeouts. The
/// requests the old Redis held are gone with it: their asks must not wait for their
/// deadline (and then report `Timeout`) but fail `Unavailable` as soon as the client sees
/// the new Redis; asks made meanwhile fail `Unavailable` at once; the client recovers.
///
/// Which of the load's requests are still in Redis at the kill is chance (the proxy answers
/// within a millisecond, and answers the requests it holds into the new Redis). So eight
/// more asks go to an actor whose proxy has left (gracefully: its URN stays registered for
/// a lease): their requests surely wait in its stream when Redis dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_in_flight_when_redis_restarts_fail_unavailable_at_once() {
    const ASKERS: usize = 64;
    const TIMEOUT: Duration = Duration::from_secs(5);
    let port = servers::free_ports(1)[0];
    assert_ne!(port, 6379, "never the default Redis port");
    let mut base = ProxyConfig::default().with_namespace("kill9");
    base.server_port = Some(port);
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon.config(&base).with_ask_timeout(TIMEOUT);
    let (_system, proxy, client) = serve_counter("kill9", &config).await;
    assert_eq!(client.ask("c", Add(1)).await.unwrap(), 1);
    // The parked actor: the client knows it, its proxy is gone.
    let parked = ActorSystem::new("parked");
    parked
        .build(Counter::default())
        .urn("p")
        .spawn()
        .await
        .unwrap();
    let parked_proxy = start_proxy(&parked, &config).await.unwrap();
    assert_eq!(client.ask("p", Add(1)).await.unwrap(), 1);
    parked_proxy.shutdown().await.unwrap();
    let redis = raw_client(&daemon.url()).await;
    let parked_stream = "kill9:sys:parked:req";
    let queued = || async {
        common::command(&redis, &["XLEN", parked_stream])
            .await
            .unwrap()
            .as_i64()
            .unwrap()
    };
    let queued_before = queued().await;

    // The load: each asker asks again as soon as its ask ended, until told to stop. It
    // reports every outcome (an unbounded channel: reporting never waits).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (report, mut outcomes) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let askers: Vec<_> = (0..ASKERS)
        .map(|_| {
            let client = client.clone();
            let stop = stop.clone();
            let report = report.clone();
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let started = Instant::now();
                    let result = client.ask("c", Add(1)).timeout(TIMEOUT).await;
                    let failed = result.is_err();
                    let _ = report.send(Outcome {
                        started,
                        ended: Instant::now(),
                        result,
                    });
                    if failed {
                        // Pacing, not waiting for an event: while Redis is down, asks fail
                        // at once, and 64 askers retrying without pause would only burn the
                        // CPU the restarting Redis and the proxy need.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    drop(report);
    let mut seen = Vec::new();
    // Under way: every asker has had an answer.
    let warm = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.len() < 4 * ASKERS {
            seen.push(outcomes.recv().await.expect("askers run"));
        }
    })
    .await;
    assert!(
        warm.is_ok(),
        "the load did not get going: {} asks",
        seen.len()
    );
    assert!(
        seen.iter().all(|o| o.result.is_ok()),
        "{:?}",
        seen.iter().find(|o| o.result.is_err())
    );

    // Eight asks whose requests wait in the parked stream.
    let parked_asks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = client.ask("p", Add(1)).timeout(TIMEOUT).await;
                Outcome {
                    started,
                    ended: Instant::now(),
                    result,
                }
            })
        })
        .collect();
    common::eventually(
        Duration::from_secs(5),
        "the parked requests in their stream",
        || async { queued().await == queued_before + 8 },
    )
    .await;
    fred::prelude::ClientLike::quit(&redis).await.unwrap();
    // And the client read Redis's answers to those writes (one command on each connection of
    // its pool comes back after them): they are waiting for replies, not for a write.
    for _ in 0..config.pool_size {
        assert_eq!(
            client.resolve("p").await.unwrap().as_deref(),
            Some("parked")
        );
    }

    // SIGKILL by PID: no chance to save or say goodbye.
    let pid = daemon.pid().expect("the daemon runs") as libc::pid_t;
    // SAFETY: kill(2) on the pid of our own child, not reaped yet (the daemon still holds it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    drop(daemon); // reaps it
    // The outage lasts about a second (the scenario, not a wait for an event).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let daemon = start_redis(&base).await.unwrap();
    assert_eq!(daemon.port(), port);
    let restarted = Instant::now();
    eprintln!(
        "Redis killed, back {:?} later on port {port}",
        restarted - killed
    );

    // Recovery: asks made after the restart succeed again, as many as four rounds of the
    // load (bounded).
    let recovery = tokio::time::timeout(Duration::from_secs(20), async {
        let mut answered = 0;
        while answered < 4 * ASKERS {
            let outcome = outcomes.recv().await.expect("askers run");
            if outcome.started > restarted && outcome.result.is_ok() {
                answered += 1;
            }
            seen.push(outcome);
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    for asker in askers {
        tokio::time::timeout(TIMEOUT * 2, asker)
            .await
            .expect("an asker ends within its ask's timeout")
            .unwrap();
    }
    while let Ok(outcome) = outcomes.try_recv() {
        seen.push(outcome);
    }
    let mut parked_outcomes = Vec::new();
    for ask in parked_asks {
        let outcome = tokio::time::timeout(TIMEOUT * 2, ask)
            .await
            .expect("a parked ask ends within its timeout")
            .unwrap();
        parked_outcomes.push(outcome);
    }

    // What happened to the asks under way when Redis went away.
    let after = |t: Instant| t.saturating_duration_since(restarted);
    let spanning: Vec<&Outcome> = seen
        .iter()
        .filter(|o| o.started < killed && o.ended > restarted)
        .collect();
    let during: Vec<&Outcome> = seen
        .iter()
        .filter(|o| o.started >= killed && o.started < restarted)
        .collect();
    let summary = |list: &[&Outcome]| {
        let mut kinds = std::collections::BTreeMap::<String, (usize, Duration)>::new();
        for o in list {
            let kind = match &o.result {
                Ok(_) => "Ok".to_owned(),
                Err(e) => format!("{e:?}").split('(').next().unwrap_or("?").to_owned(),
            };
            let entry = kinds.entry(kind).or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(after(o.ended));
        }
        format!("{kinds:?} (count, latest end after the restart)")
    };
    eprintln!(
        "asks under way at the kill and ended after the restart: {}",
        summary(&spanning)
    );
    eprintln!("asks made during the outage: {}", summary(&during));
    let parked_list: Vec<&Outcome> = parked_outcomes.iter().collect();
    eprintln!(
        "asks whose requests waited in the parked stream: {}",
        summary(&parked_list)
    );
    let all: Vec<&Outcome> = seen.iter().collect();
    eprintln!("all {} asks: {}", seen.len(), summary(&all));

    assert!(recovery.is_ok(), "no recovery within 20 s of the restart");
    // The requests of the parked asks were lost with the old Redis: `Unavailable`, soon
    // after the restart (here the old client waited for the deadline, then said `Timeout`).
    for o in &parked_outcomes {
        assert!(
            matches!(o.result, Err(AskError::Unavailable(_))),
            "a parked ask ended {:?} {:?} after the restart",
            o.result,
            after(o.ended)
        );
        assert!(
            after(o.ended) < Duration::from_secs(3),
            "a parked ask ended {:?} after the restart",
            after(o.ended)
        );
    }
    for o in &seen {
        assert!(
            matches!(o.result, Ok(_) | Err(AskError::Unavailable(_))),
            "an ask ended {:?} after {:?} ({:?} after the restart)",
            o.result,
            o.ended - o.started,
            after(o.ended)
        );
        // Well before the deadline, whatever the ask met.
        assert!(
            o.ended - o.started < TIMEOUT - Duration::from_millis(500),
            "an ask took {:?}: {:?}",
            o.ended - o.started,
            o.result
        );
    }
    // Every ask under way when Redis died ended soon after it came back (a functional bound,
    // not a benchmark: the client sees the new Redis once it reconnected, within a second).
    for o in &spanning {
        assert!(
            after(o.ended) < Duration::from_secs(3),
            "an ask under way at the kill ended {:?} after the restart: {:?}",
            after(o.ended),
            o.result
        );
    }
    // Asks made while Redis was down failed at once (or soon after it came back).
    for o in &during {
        assert!(
            o.ended - o.started < Duration::from_secs(1) || after(o.ended) < Duration::from_secs(3),
            "an ask made during the outage took {:?}: {:?}",
            o.ended - o.started,
            o.result
        );
    }
    assert!(client.ask("c", Get).await.unwrap() > 1);

    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}

/// The other side of item 12: a Redis that restarts with its data (here an append-only file
/// fsynced at each write) still holds the requests it took, so the client does not fail
/// their asks when it sees the new `run_id`: they are answered once a proxy serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_whose_requests_a_durable_redis_kept_are_answered_after_its_restart() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let dir = servers::TempDir::new("durable");
    let port = servers::free_ports(1)[0];
    assert_ne!(port, 6379, "never the default Redis port");
    let mut redis = servers::OwnRedis::start(port, dir.path(), true).await;
    let config = ProxyConfig::default()
        .with_namespace("durable")
        .with_url(format!("redis://127.0.0.1:{port}"))
        .with_ask_timeout(TIMEOUT);
    let parked = ActorSystem::new("parked");
    parked
        .build(Counter::default())
        .urn("p")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&parked, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(client.ask("p", Add(1)).await.unwrap(), 1);
    // Its proxy leaves (gracefully: the URN stays registered): asks wait in the stream.
    proxy.shutdown().await.unwrap();
    let raw = raw_client(&config.url).await;
    let queued = || async {
        common::command(&raw, &["XLEN", "durable:sys:parked:req"])
            .await
            .unwrap()
            .as_i64()
            .unwrap()
    };
    let queued_before = queued().await;
    let asks: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let result = client.ask("p", Add(1)).timeout(TIMEOUT).await;
                (Instant::now(), result)
            })
        })
        .collect();
    common::eventually(
        Duration::from_secs(5),
        "the requests in their stream",
        || async { queued().await == queued_before + 8 },
    )
    .await;
    fred::prelude::ClientLike::quit(&raw).await.unwrap();
    // Redis may have answered the writes without the client having read the answers yet: a
    // SIGKILL now would lose them with the connection, and the asks would fail at once (the
    // client cannot know whether a write it got no answer for was taken). One command on each
    // connection of the client's pool (taken in turn) comes back after those answers.
    for _ in 0..config.pool_size {
        assert_eq!(
            client.resolve("p").await.unwrap().as_deref(),
            Some("parked")
        );
    }

    redis.kill();
    // The outage lasts about a second (the scenario, not a wait for an event).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let redis = servers::OwnRedis::start(port, dir.path(), true).await;
    let restarted = Instant::now();
    // The system's proxy is back, and finds the requests the new Redis loaded.
    let proxy = start_proxy(&parked, &config).await.unwrap();
    let mut totals = Vec::new();
    for ask in asks {
        let (ended, total) = tokio::time::timeout(TIMEOUT * 2, ask)
            .await
            .expect("an ask ends within its timeout")
            .unwrap();
        totals.push(total.unwrap_or_else(|e| {
            panic!(
                "an ask whose request Redis kept ended {e:?} {:?} after the restart",
                ended.saturating_duration_since(restarted)
            )
        }));
    }
    totals.sort_unstable();
    assert_eq!(totals, (2..=9).collect::<Vec<u64>>());
    proxy.shutdown().await.unwrap();
    drop(redis);
}

/// A group and an activation across a Redis restart that lost everything: the members
/// register the group and pattern again, the holder its activation's URN, and both are
/// asked again; one activation of the URN remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_activations_recover_after_a_redis_restart() {
    let port = servers::free_ports(1)[0];
    let mut base = ProxyConfig::default().with_namespace("restart-groups");
    base.server_port = Some(port);
    base.command_timeout = Duration::from_secs(1);
    base.lease_ttl = Duration::from_secs(3);
    let daemon = start_redis(&base).await.unwrap();
    let config = daemon
        .config(&base)
        .with_ask_timeout(Duration::from_secs(2));
    let mut running = Vec::new();
    for id in ["r-1", "r-2"] {
        let system = ActorSystem::new(id);
        system
            .build(Counter::default())
            .urn("shared")
            .spawn()
            .await
            .unwrap();
        let proxy = start_proxy(&system, &config.clone().with_system_id(id))
            .await
            .unwrap();
        proxy.join("shared").await.unwrap();
        proxy
            .activate(
                "acct:{id}",
                |_a: conclib_redis::scale::Activation| async move {
                    Ok::<_, String>(Counter::default())
                },
            )
            .await
            .unwrap();
        running.push((system, proxy));
    }
    let client = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(client.ask("shared", Echo("a".into())).await.unwrap(), "a");
    assert_eq!(client.ask("acct:1", Add(1)).await.unwrap(), 1);

    daemon.shutdown().unwrap();
    let daemon = start_redis(&base).await.unwrap();
    let started = Instant::now();
    for (urn, shared) in [("shared", true), ("acct:1", false)] {
        loop {
            let result = if shared {
                client
                    .ask(urn, Echo("b".into()))
                    .timeout(Duration::from_millis(500))
                    .await
                    .map(|_| ())
            } else {
                client
                    .ask(urn, Get)
                    .timeout(Duration::from_millis(500))
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => break,
                Err(
                    AskError::Unavailable(_) | AskError::Timeout(_) | AskError::UnknownUrn { .. },
                ) => {}
                Err(other) => panic!("unexpected error after the restart: {other:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no recovery of {urn}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // At most one activation of acct:1 stays (the holder re-claimed it, or lost it to the
    // other system and stopped its own).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live: usize = running
            .iter()
            .map(|(_, p)| p.activations().iter().filter(|u| *u == "acct:1").count())
            .sum();
        if live == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} activations of acct:1");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (system, proxy) in running {
        proxy.shutdown().await.unwrap();
        system.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    daemon.shutdown().unwrap();
}
