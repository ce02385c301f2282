//! Redis restarted mid-run, or its script cache flushed: proxy and client recover by themselves.
mod common;

use std::time::{Duration, Instant};

use common::actors::*;
use conclib_core::ActorSystem;
use conclib_redis::{ProxyClient, ProxyConfig, ProxyError, ProxyHandle, start_proxy, start_redis};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_client_survive_a_redis_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
        let started = Instant::now();
        let result = client
            .ask("c", Add(1))
            .timeout(Duration::from_millis(300))
            .await;
        assert!(
            matches!(result, Err(ProxyError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert!(matches!(
        client.tell("c", Record(1)).await,
        Err(ProxyError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));

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
            Err(ProxyError::Unavailable(_) | ProxyError::Timeout(_)) => {
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
    common::eventually(5, "31 requests completed", || async {
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
    common::eventually(5, "the request to be taken", || async {
        proxy.stats().received == 1
    })
    .await;
    command(vec!["CONFIG", "SET", "maxmemory", "1"]).await;
    common::eventually(5, "Redis to refuse the answer", || async {
        oom_errors().await > 0
    })
    .await;
    command(vec!["CONFIG", "SET", "maxmemory", "0"]).await;
    assert_eq!(ask.await.unwrap().unwrap(), 300);
    proxy.shutdown().await.unwrap();
    daemon.shutdown().unwrap();
}
