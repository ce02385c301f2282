//! Entry ids a hostile client chose, a proxy restarted after a crash, clients dropped by
//! the hundred, entries larger than any proxy accepts.

use super::*;

/// an entry id a client chose far in the future neither disables deadlines nor
/// stops later requests; the stream is reset once drained.
pub(crate) async fn an_entry_id_from_the_future_does_not_poison_the_stream() {
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

/// a proxy restarted after its predecessor died on this host serves at once, not
/// after the dead one's lease.
pub(crate) async fn a_restarted_proxy_takes_over_at_once_when_its_predecessor_provably_died() {
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

/// dropping a client closes its connections at once, not after its blocking read.
pub(crate) async fn dropped_clients_close_their_connections_at_once() {
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

/// a Redis from `start_redis` refuses entries no proxy would accept, so a hostile
/// client cannot make a proxy read (and hold) them.
pub(crate) async fn start_redis_refuses_entries_larger_than_any_proxy_accepts() {
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
