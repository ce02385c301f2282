//! End-to-end tests of the proxy and the client against a real redis-server.
mod common;
mod peer;

use conclib_core::AskError;
use conclib_macros::message;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::actors::*;
use common::{config, daemon, eventually, raw, raw_client, system_with, v};
use conclib_redis::{ProxyClient, ProxyConfig, ProxyError, ServeError, start_proxy};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn main() {
    // The peer's role first, before anything else runs.
    peer::run_if_started_as_one();
    #[cfg_attr(not(feature = "msgpack"), allow(unused_mut))]
    let mut tests = conclib_testkit::tests![
        ask_and_tell_end_to_end,
        every_error_kind_is_distinct,
        another_process_asks_actors_here,
        five_processes_with_200_concurrent_asks_each,
        requests_queued_while_the_proxy_restarts_are_not_lost,
        requests_taken_by_a_crashed_proxy_are_handled_by_the_next,
        shutdown_finishes_requests_in_flight,
        expired_requests_are_dropped_unprocessed,
        namespaces_are_isolated,
        a_urn_claimed_by_two_systems_is_served_by_one,
        a_released_system_is_unknown_at_once_to_a_client_holding_its_route,
        a_urn_served_elsewhere_is_found_by_a_client_whose_route_led_to_a_closed_stream,
        actors_spawned_and_stopped_later_are_tracked,
        a_burst_of_urns_past_the_journal_is_served,
        a_second_proxy_for_a_live_system_is_refused,
        the_test_daemon_answers,
    ]
    .to_vec();
    #[cfg(feature = "msgpack")]
    tests.extend_from_slice(conclib_testkit::tests![
        msgpack_and_bincode_clients_share_a_proxy
    ]);
    conclib_testkit::run(&tests);
}

async fn ask_and_tell_end_to_end() {
    let config = config("e2e");
    let system = system_with("e2e", &["counter"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    assert_eq!(proxy.served_urns(), vec!["counter".to_owned()]);
    let client = ProxyClient::connect(&config).await.unwrap();

    assert_eq!(client.ask("counter", Add(2)).await.unwrap(), 2);
    assert_eq!(client.ask("counter", Add(3)).await.unwrap(), 5);
    assert_eq!(client.ask("counter", Get).await.unwrap(), 5);
    // A message that cannot fail.
    assert_eq!(client.ask("counter", Ping).await.unwrap(), "pong");
    assert!(matches!(
        client.ask("nobody", Ping).await,
        Err(AskError::UnknownUrn { .. })
    ));
    assert_eq!(
        client.resolve("counter").await.unwrap().as_deref(),
        Some("e2e")
    );

    // Tells from one client reach the actor in order.
    for i in 0..200 {
        client.tell("counter", Record(i)).await.unwrap();
    }
    assert_eq!(
        client.ask("counter", History).await.unwrap(),
        (0..200).collect::<Vec<_>>()
    );

    // Many concurrent asks from many tasks over one client.
    let mut tasks = Vec::new();
    for i in 0..500u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client.ask("counter", Echo(format!("m{i}"))).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), format!("m{i}"));
    }
    assert!(matches!(
        client.tell("nobody", Record(1)).await,
        Err(AskError::UnknownUrn { .. })
    ));

    proxy.shutdown().await.unwrap();
    // The reply reader blocks in BLMPOP for seconds at a time; shutdown must not wait for it.
    tokio::time::timeout(Duration::from_secs(1), client.shutdown())
        .await
        .expect("client shutdown waited behind the blocking reply read");
    assert_eq!(
        client.ask("counter", Get).await,
        Err(AskError::Transport("the client is closed".into()))
    );
}

/// A message with a wire name the actor knows but another shape.
#[message(response = u64, error = String, name = "test.Add")]
#[derive(Serialize, Deserialize)]
struct FakeAdd(String);

/// `test.Get` expecting a response of another type.
#[message(response = Vec<String>, error = String, name = "test.Get")]
#[derive(Serialize, Deserialize)]
struct GetAsText;

async fn every_error_kind_is_distinct() {
    let mut config = config("errors");
    config.max_payload = 64 * 1024;
    let system = system_with("errors", &["counter", "sleepy", "victim"]).await;
    system.build(Hidden).urn("hidden").spawn().await.unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    assert_eq!(proxy.served_urns(), vec!["counter", "sleepy", "victim"]);
    let mut client_config = config.clone().with_ask_timeout(Duration::from_secs(10));
    client_config.max_payload = 1024 * 1024;
    let client = ProxyClient::connect(&client_config).await.unwrap();

    // Unknown URN: at once, not after the 10 s timeout.
    let started = Instant::now();
    assert_eq!(
        client.ask("nobody", Get).await,
        Err(AskError::UnknownUrn {
            urn: "nobody".into()
        })
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // An actor that exposes nothing is not reachable at all.
    assert!(matches!(
        client.ask("hidden", Get).await,
        Err(AskError::UnknownUrn { .. })
    ));
    // Handled but not exposed.
    assert_eq!(
        client.ask("counter", Secret).await,
        Err(AskError::UnknownMessage {
            actor: "counter".into(),
            message: "test.Secret".into()
        })
    );
    // The handler's own errors, typed.
    assert_eq!(
        client.ask("counter", Forbidden("no".into())).await,
        Err(AskError::Handler(Refusal::NotAllowed {
            reason: "no".into()
        }))
    );
    client.ask("counter", Add(1)).await.unwrap();
    assert_eq!(
        client.ask("counter", Add(u64::MAX)).await,
        Err(AskError::Handler("overflow".into()))
    );
    // A panic; the actor resumes.
    assert_eq!(
        client.ask("counter", Boom).await,
        Err(AskError::Panicked("boom".into()))
    );
    assert_eq!(client.ask("counter", Get).await.unwrap(), 1);
    // Dropped without an answer.
    assert_eq!(
        client.ask("counter", Ignore).await,
        Err(AskError::NoResponse)
    );
    // Timeout: the client's, reported with the ask's own duration.
    let started = Instant::now();
    assert_eq!(
        client
            .ask("sleepy", Sleep(1500))
            .timeout(Duration::from_millis(200))
            .await,
        Err(AskError::Timeout(Duration::from_millis(200)))
    );
    assert!(started.elapsed() < Duration::from_millis(1000));
    // Codec errors: a body that is not the message, a response that is not what we expect.
    assert!(
        matches!(client.ask("counter", FakeAdd("x".into())).await, Err(AskError::Codec(m)) if m.contains("test.Add"))
    );
    assert!(matches!(
        client.ask("counter", GetAsText).await,
        Err(AskError::Codec(_))
    ));
    // Too large: refused by the proxy (message), and an answer over the proxy's limit.
    assert!(matches!(
        client.ask("counter", Echo("x".repeat(100_000))).await,
        Err(AskError::TooLarge(_))
    ));
    assert!(matches!(
        client.ask("counter", Blob(100_000)).await,
        Err(AskError::TooLarge(_))
    ));
    assert_eq!(
        client.ask("counter", Blob(10)).await.unwrap(),
        vec![7u8; 10]
    );
    // Too large for the client itself.
    let small = ProxyClient::connect(&config.clone().with_max_payload(10))
        .await
        .unwrap();
    assert!(matches!(
        small.ask("counter", Echo("x".repeat(100))).await,
        Err(AskError::TooLarge(_))
    ));

    // The actor is killed while handling one request, with another in its mailbox.
    let victim = system.lookup("victim").unwrap();
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.ask("victim", Sleep(301)).await }
    });
    eventually(Duration::from_secs(5), "the sleep to start", || async {
        SLEEP_301_STARTED.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    let queued = tokio::spawn({
        let client = client.clone();
        async move { client.ask("victim", Get).await }
    });
    eventually(Duration::from_secs(5), "the get to be queued", || {
        let victim = victim.clone();
        async move { victim.mailbox_len() == 1 }
    })
    .await;
    victim.kill();
    // The kill interrupts the running handler too.
    assert_eq!(slow.await.unwrap(), Err(AskError::ActorStopped));
    assert_eq!(queued.await.unwrap(), Err(AskError::ActorStopped));

    // Redis unavailable: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nowhere = ProxyConfig::new(format!("redis://127.0.0.1:{port}"));
    nowhere.connect_timeout = Duration::from_millis(500);
    assert!(matches!(
        ProxyClient::connect(&nowhere).await,
        Err(ProxyError::Unavailable(_))
    ));
    assert!(matches!(
        start_proxy(&system, &nowhere).await,
        Err(ServeError::Unavailable(_))
    ));

    proxy.shutdown().await.unwrap();
}

async fn another_process_asks_actors_here() {
    let config = config("peer-asks");
    let system = system_with("peer-asks", &["echo"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let out = peer::command()
        .args([
            "ask",
            &config.url,
            &config.namespace,
            "echo",
            "300",
            "30",
            "p",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK 300");
    proxy.shutdown().await.unwrap();
}

async fn five_processes_with_200_concurrent_asks_each() {
    let config = config("five");
    let system = system_with("five", &["echo"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let mut children = Vec::new();
    for p in 0..5 {
        children.push(
            peer::command()
                .args([
                    "ask",
                    &config.url,
                    &config.namespace,
                    "echo",
                    "1000",
                    "200",
                    &format!("c{p}"),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK 1000");
    }
    let stats = proxy.stats();
    assert_eq!(stats.received, 5000);
    assert_eq!(stats.rejected, 0);
    proxy.shutdown().await.unwrap();
}

struct Peer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Peer {
    async fn serve(config: &ProxyConfig, system: &str, urns: &[&str]) -> Peer {
        let mut child = peer::command()
            .args(["serve", &config.url, &config.namespace, system])
            .args(urns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("READY"));
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    async fn stop(mut self) {
        self.stdin.write_all(b"stop\n").await.unwrap();
        assert_eq!(
            self.stdout.next_line().await.unwrap().as_deref(),
            Some("STOPPED")
        );
        assert!(self.child.wait().await.unwrap().success());
    }
}

async fn requests_queued_while_the_proxy_restarts_are_not_lost() {
    let config = config("restart");
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(20)))
        .await
        .unwrap();
    let peer = Peer::serve(&config, "svc", &["c"]).await;
    assert_eq!(client.ask("c", Add(1)).await.unwrap(), 1);
    peer.stop().await;

    // Nobody serves the queue now: asks and tells wait in Redis.
    for i in 0..50 {
        client.tell("c", Record(i)).await.unwrap();
    }
    let mut asks = Vec::new();
    for i in 0..50u64 {
        let client = client.clone();
        asks.push(tokio::spawn(async move {
            client.ask("c", Echo(format!("q{i}"))).await
        }));
    }
    let redis = raw_client(&config).await;
    let queue = format!("{}:sys:svc:req", config.namespace);
    eventually(Duration::from_secs(10), "100 queued requests", || {
        let redis = redis.clone();
        let queue = queue.clone();
        async move { raw(&redis, vec![v("XLEN"), v(&queue)]).await.ok() == Some(Value::Integer(100)) }
    })
    .await;

    let peer = Peer::serve(&config, "svc", &["c"]).await;
    for (i, ask) in asks.into_iter().enumerate() {
        assert_eq!(ask.await.unwrap().unwrap(), format!("q{i}"));
    }
    assert_eq!(
        client.ask("c", History).await.unwrap(),
        (0..50).collect::<Vec<_>>()
    );
    peer.stop().await;
    // Everything was acknowledged and trimmed.
    assert_eq!(
        raw(&redis, vec![v("XLEN"), v(&queue)]).await.unwrap(),
        Value::Integer(0)
    );
}

async fn requests_taken_by_a_crashed_proxy_are_handled_by_the_next() {
    let mut config = config("crash");
    config.lease_ttl = Duration::from_millis(600);
    let system = system_with("crash", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(20)))
        .await
        .unwrap();
    let ask = tokio::spawn({
        let client = client.clone();
        async move { client.ask("c", Sleep(200)).await }
    });
    eventually(Duration::from_secs(5), "the request to be taken", || {
        let received = proxy.stats().received;
        async move { received == 1 }
    })
    .await;
    drop(proxy); // a crash: no reply written, nothing acknowledged
    let next = start_proxy(&system, &config).await.unwrap();
    assert_eq!(ask.await.unwrap().unwrap(), 200);
    next.shutdown().await.unwrap();
}

async fn shutdown_finishes_requests_in_flight() {
    let config = config("graceful");
    let system = system_with("graceful", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let ask = tokio::spawn({
        let client = client.clone();
        async move { client.ask("c", Sleep(300)).await }
    });
    eventually(Duration::from_secs(5), "the request to be taken", || {
        let received = proxy.stats().received;
        async move { received == 1 }
    })
    .await;
    proxy.shutdown().await.unwrap();
    assert!(ask.is_finished());
    assert_eq!(ask.await.unwrap().unwrap(), 300);
}

async fn expired_requests_are_dropped_unprocessed() {
    let mut config = config("expired");
    config.tell_ttl = Duration::from_millis(50);
    let system = system_with("expired", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    client.tell("c", Record(1)).await.unwrap();
    assert_eq!(client.ask("c", History).await.unwrap(), vec![1]);
    proxy.shutdown().await.unwrap();

    client.tell("c", Record(2)).await.unwrap();
    // Its system shut down gracefully: restarting, so `Unavailable` rather than `Timeout`.
    let waited = client
        .ask("c", Get)
        .timeout(Duration::from_millis(50))
        .await;
    assert!(
        matches!(waited, Err(AskError::Unavailable(_))),
        "{waited:?}"
    );
    // Let both deadlines pass: this is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    assert_eq!(client.ask("c", History).await.unwrap(), vec![1]);
    eventually(Duration::from_secs(5), "two expired requests", || {
        let expired = proxy.stats().expired;
        async move { expired == 2 }
    })
    .await;
    proxy.shutdown().await.unwrap();
}

async fn namespaces_are_isolated() {
    let a = config("ns-a");
    let b = config("ns-b");
    let sys_a = system_with("same", &["counter"]).await;
    let sys_b = system_with("same", &["counter"]).await;
    let pa = start_proxy(&sys_a, &a).await.unwrap();
    let pb = start_proxy(&sys_b, &b).await.unwrap();
    let ca = ProxyClient::connect(&a).await.unwrap();
    let cb = ProxyClient::connect(&b).await.unwrap();
    assert_eq!(ca.ask("counter", Add(1)).await.unwrap(), 1);
    assert_eq!(cb.ask("counter", Add(10)).await.unwrap(), 10);
    assert_eq!(ca.ask("counter", Get).await.unwrap(), 1);
    let cc = ProxyClient::connect(&config("ns-c")).await.unwrap();
    assert!(matches!(
        cc.ask("counter", Get).await,
        Err(AskError::UnknownUrn { .. })
    ));
    pa.shutdown().await.unwrap();
    pb.shutdown().await.unwrap();
}

async fn a_urn_claimed_by_two_systems_is_served_by_one() {
    let mut config = config("conflict");
    config.lease_ttl = Duration::from_millis(600);
    config.release_on_shutdown = true;
    let first = system_with("first", &["dup", "only-first"]).await;
    let second = system_with("second", &["dup", "only-second"]).await;
    let p1 = start_proxy(&first, &config).await.unwrap();
    let p2 = start_proxy(&second, &config).await.unwrap();
    assert_eq!(p1.served_urns(), vec!["dup", "only-first"]);
    assert_eq!(p2.served_urns(), vec!["only-second"]);
    assert_eq!(p2.conflicts(), vec![("dup".to_owned(), "first".to_owned())]);
    let client = ProxyClient::connect(&config).await.unwrap();
    for _ in 0..20 {
        client.ask("dup", Add(1)).await.unwrap();
    }
    // All traffic went to the first system's actor.
    assert_eq!(first.lookup("dup").unwrap().ask(Get).await.unwrap(), 20);
    assert_eq!(second.lookup("dup").unwrap().ask(Get).await.unwrap(), 0);
    assert_eq!(client.ask("only-second", Add(5)).await.unwrap(), 5);

    // The first goes away and releases its URNs: the second takes over.
    p1.shutdown().await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the second system to take over",
        || {
            let urns = p2.served_urns();
            async move { urns.contains(&"dup".to_owned()) }
        },
    )
    .await;
    assert!(p2.conflicts().is_empty());
    assert_eq!(
        client.resolve("dup").await.unwrap().as_deref(),
        Some("second")
    );
    p2.shutdown().await.unwrap();
}

async fn a_released_system_is_unknown_at_once_to_a_client_holding_its_route() {
    let mut config = config("closing");
    config.release_on_shutdown = true;
    // Retired for good: no grace (with one, its URNs answer `Unavailable` meanwhile).
    config.departed_grace = Duration::ZERO;
    let system = system_with("closing", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let mut client_config = config.clone().with_ask_timeout(Duration::from_secs(30));
    // The client keeps the route it resolved all through the test.
    client_config.resolve_cache_ttl = Duration::from_secs(120);
    let client = ProxyClient::connect(&client_config).await.unwrap();
    assert_eq!(client.ask("c", Add(1)).await.unwrap(), 1);
    proxy.shutdown().await.unwrap();
    // Its stream is gone with its URNs (nothing waited in it): the cached route's request
    // is refused by Redis, and the URN found unknown, long before the ask's 30 s timeout.
    let answer = tokio::time::timeout(Duration::from_secs(10), client.ask("c", Add(1)))
        .await
        .expect("answered before the ask's timeout");
    assert!(
        matches!(answer, Err(AskError::UnknownUrn { .. })),
        "{answer:?}"
    );
    let redis = common::plain_client(&config.url).await;
    let stream = format!("{}:sys:closing:req", config.namespace);
    let exists: i64 = redis.exists(&stream).await.unwrap();
    assert_eq!(exists, 0, "the stream was deleted");
    client.shutdown().await;
}

/// A drained member hands its URNs to others, then deletes its stream while clients may
/// still hold a route to it (`proxy/drain.rs`): such a client's request, refused by Redis
/// for want of the stream, is sent where the URN is served now, not answered `UnknownUrn`.
async fn a_urn_served_elsewhere_is_found_by_a_client_whose_route_led_to_a_closed_stream() {
    let mut config = config("moving");
    config.release_on_shutdown = true;
    config.departed_grace = Duration::ZERO;
    let first = system_with("first", &["c", "d"]).await;
    let proxy = start_proxy(&first, &config).await.unwrap();
    let mut client_config = config.clone().with_ask_timeout(Duration::from_secs(30));
    // The client keeps the routes it resolved all through the test.
    client_config.resolve_cache_ttl = Duration::from_secs(120);
    let client = ProxyClient::connect(&client_config).await.unwrap();
    assert_eq!(client.ask("c", Add(1)).await.unwrap(), 1);
    assert_eq!(client.ask("d", Add(1)).await.unwrap(), 1);
    proxy.shutdown().await.unwrap();
    let redis = common::plain_client(&config.url).await;
    let stream = format!("{}:sys:first:req", config.namespace);
    let exists: i64 = redis.exists(&stream).await.unwrap();
    assert_eq!(exists, 0, "the stream was deleted");
    // Served by another system now; the client's routes still lead to the first.
    let second = system_with("second", &["c", "d"]).await;
    let other = start_proxy(&second, &config).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), client.ask("c", Add(1)))
        .await
        .expect("answered before the ask's timeout");
    assert_eq!(answer.unwrap(), 1, "the second system's own count");
    // A tell, refused by Redis for the same reason, is sent there too.
    tokio::time::timeout(Duration::from_secs(10), client.tell("d", Add(1)))
        .await
        .expect("accepted before the tell's timeout")
        .unwrap();
    assert_eq!(
        client.ask("d", Add(0)).await.unwrap(),
        1,
        "the tell counted"
    );
    other.shutdown().await.unwrap();
    client.shutdown().await;
}

async fn actors_spawned_and_stopped_later_are_tracked() {
    let config = config("later");
    let system = system_with("later", &[]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    assert!(matches!(
        client.ask("late", Get).await,
        Err(AskError::UnknownUrn { .. })
    ));
    let late = system
        .build(Counter::default())
        .urn("late")
        .spawn()
        .await
        .unwrap();
    proxy.refresh().await;
    assert_eq!(client.ask("late", Add(3)).await.unwrap(), 3);
    late.stop();
    late.wait_for_stop().await;
    // Stopped: the proxy answers UnknownUrn at once, and releases the URN.
    assert!(matches!(
        client.ask("late", Get).await,
        Err(AskError::UnknownUrn { .. })
    ));
    proxy.refresh().await;
    assert!(proxy.served_urns().is_empty());
    assert_eq!(client.resolve("late").await.unwrap(), None);
    // Published without refresh(): the system reports the new URN to the proxy.
    system
        .build(Counter::default())
        .urn("later")
        .spawn()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the URN change notification",
        || {
            let urns = proxy.served_urns();
            async move { urns == vec!["later".to_owned()] }
        },
    )
    .await;
    assert_eq!(client.ask("later", Add(1)).await.unwrap(), 1);
    proxy.shutdown().await.unwrap();
}

/// More URN changes at once than the system's journal keeps: the proxy serves them all
/// (following the journal, or looking at every actor when it ran past it), and releases them
/// all when they stop.
async fn a_burst_of_urns_past_the_journal_is_served() {
    let config = config("burst");
    let system = system_with("burst", &[]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let n = conclib_core::URN_JOURNAL_CAPACITY + 1000;
    let mut refs = Vec::with_capacity(n);
    for i in 0..n {
        refs.push(
            system
                .build(Counter::default())
                .urn(format!("burst:{i}"))
                .spawn()
                .await
                .unwrap(),
        );
    }
    eventually(Duration::from_secs(60), "every URN served", || {
        let served = proxy.served_urns().len();
        async move { served == n }
    })
    .await;
    let client = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(
        client
            .ask(format!("burst:{}", n - 1), Add(2))
            .await
            .unwrap(),
        2
    );
    for r in &refs {
        r.stop();
    }
    for r in &refs {
        r.wait_for_stop().await;
    }
    eventually(Duration::from_secs(60), "every URN released", || {
        let served = proxy.served_urns().len();
        async move { served == 0 }
    })
    .await;
    // A URN leaves `served_urns` as its actor stops; its key in Redis goes right after (the
    // release of a burst is one batch of deletes, which may still be on its way).
    for urn in ["burst:0".to_owned(), format!("burst:{}", n - 1)] {
        eventually(Duration::from_secs(30), "the URN's key deleted", || {
            let (client, urn) = (&client, urn.clone());
            async move { client.resolve(&urn).await.unwrap().is_none() }
        })
        .await;
    }
    proxy.shutdown().await.unwrap();
}

async fn a_second_proxy_for_a_live_system_is_refused() {
    let mut config = config("twice");
    config.lease_ttl = Duration::from_millis(300);
    let system = system_with("twice", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    assert_eq!(
        start_proxy(&system, &config).await.unwrap_err(),
        ServeError::SystemInUse {
            system_id: "twice".into()
        }
    );
    assert!(proxy.is_serving());
    proxy.shutdown().await.unwrap();
    // Released at shutdown: a new one starts at once.
    let again = start_proxy(&system, &config).await.unwrap();
    again.shutdown().await.unwrap();
}

#[cfg(feature = "msgpack")]
async fn msgpack_and_bincode_clients_share_a_proxy() {
    let config = config("msgpack");
    let system = system_with("msgpack", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let mp = ProxyClient::connect(&config.clone().with_codec(conclib_redis::codec::MsgPack))
        .await
        .unwrap();
    let bc = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(mp.ask("c", Add(2)).await.unwrap(), 2);
    assert_eq!(bc.ask("c", Add(2)).await.unwrap(), 4);
    assert_eq!(
        mp.ask("c", Forbidden("why".into())).await,
        Err(AskError::Handler(Refusal::NotAllowed {
            reason: "why".into()
        }))
    );
    proxy.shutdown().await.unwrap();
}

async fn the_test_daemon_answers() {
    assert!(daemon().port() > 0);
}
