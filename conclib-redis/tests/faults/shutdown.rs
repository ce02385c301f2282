//! Shutdown bounded while Redis is frozen, and a restarting system that answers
//! `Unavailable`, never `UnknownUrn`.

use super::*;

/// A proxy (with a group and a pattern), a reminder poller, topic subscriptions and a client
/// are shut down while their Redis is frozen (SIGSTOP): each returns within
/// `shutdown_timeout` (plus a margin), the proxy with `ShutdownCut`.
pub(crate) async fn every_shutdown_returns_within_its_bound_while_redis_is_frozen() {
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
pub(crate) async fn a_restarting_system_answers_unavailable_never_unknown_urn() {
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
