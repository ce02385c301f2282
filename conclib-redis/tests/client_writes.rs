//! How the client writes its requests into Redis on a multi-threaded runtime: requests
//! queued while Redis holds the writers' commands leave together, and the time they waited
//! comes off their TTL. A binary of its own: the test pauses Redis's writes, which would
//! stall the tests beside it.
mod common;

use std::time::Duration;

use common::actors::Add;
use common::{config, eventually, raw, raw_client, v};
use conclib_redis::ProxyClient;
use fred::prelude::*;

/// The answer of a command that answers an array.
async fn array(redis: &Client, command: Vec<Value>) -> Vec<Value> {
    match raw(redis, command).await.unwrap() {
        Value::Array(items) => items,
        other => panic!("an array expected, not {other:?}"),
    }
}

/// The commands clients sent (not those scripts ran) that write requests, from the slow
/// log, which records every command here (`slowlog-log-slower-than 0`). A script's own
/// commands are logged from the client `?:0`.
async fn request_writes(redis: &Client) -> Vec<String> {
    let mut writes = Vec::new();
    for entry in array(redis, vec![v("SLOWLOG"), v("GET"), v("-1")]).await {
        let Value::Array(entry) = entry else {
            panic!("a slow log entry is an array")
        };
        let (Some(Value::Array(args)), Some(addr)) = (entry.get(3), entry.get(4)) else {
            panic!("a slow log entry has its arguments and client")
        };
        let command = args[0].as_str().unwrap_or_default().to_lowercase();
        if addr.as_str().as_deref() != Some("?:0")
            && matches!(command.as_str(), "xadd" | "evalsha" | "eval")
        {
            writes.push(command);
        }
    }
    writes
}

/// Waits (at most 10 s) until Redis holds `n` of the client's writes of requests. A write
/// held by the pause is a client blocked (`flags=b` in `CLIENT LIST`) in one of the commands
/// that write them; a second write sent on the same connection waits unread behind it, in
/// its query buffer (`qbuf` above zero). Not `INFO`'s `blocked_clients`: the client's reply
/// reader sits in a blocking `BLMPOP`, which counts there too. Redis says so only when
/// asked: polled.
async fn until_writes_are_held(redis: &Client, n: usize) {
    eventually(
        Duration::from_secs(10),
        "writes held by the pause",
        || async {
            let list = raw(redis, vec![v("CLIENT"), v("LIST")]).await.unwrap();
            let list = list.as_str().map(|s| s.to_string()).unwrap_or_default();
            let held: usize = list
                .lines()
                .map(|client| {
                    let field = |name: &str| {
                        client
                            .split(' ')
                            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                    };
                    let blocked = field("flags").is_some_and(|flags| flags.contains('b'))
                        && field("cmd")
                            .is_some_and(|cmd| matches!(cmd, "xadd" | "evalsha" | "eval"));
                    let behind = field("qbuf").is_some_and(|qbuf| qbuf != "0");
                    if blocked { 1 + usize::from(behind) } else { 0 }
                })
                .sum();
            held >= n
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_behind_busy_writers_leave_together_with_their_ttl_shortened() {
    let config = config("writes");
    let redis = raw_client(&config).await;
    let ns = config.namespace.clone();
    // A URN whose system has a request stream and no proxy: requests are written, not read.
    raw(
        &redis,
        vec![v("SET"), v(&format!("{ns}:urn:quiet")), v("quiet")],
    )
    .await
    .unwrap();
    let stream = format!("{ns}:sys:quiet:req");
    let create = vec![
        v("XGROUP"),
        v("CREATE"),
        v(&stream),
        v("g"),
        v("$"),
        v("MKSTREAM"),
    ];
    raw(&redis, create).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    // Resolved before the pause.
    client.tell("quiet", Add(0)).await.unwrap();

    let log_all = vec![v("CONFIG"), v("SET"), v("slowlog-log-slower-than"), v("0")];
    raw(&redis, log_all).await.unwrap();
    let log_len = vec![v("CONFIG"), v("SET"), v("slowlog-max-len"), v("10000")];
    raw(&redis, log_len).await.unwrap();
    raw(&redis, vec![v("SLOWLOG"), v("RESET")]).await.unwrap();
    // Paused for longer than the test holds it: lifted by `CLIENT UNPAUSE` once the queued
    // requests have waited `hold`.
    let pause = vec![v("CLIENT"), v("PAUSE"), v("30000"), v("WRITE")];
    raw(&redis, pause).await.unwrap();
    let tell = |i| {
        let client = client.clone();
        tokio::spawn(async move { client.tell("quiet", Add(i)).await })
    };
    // Both writers busy first, each with a request held in Redis; only then come the rest,
    // which queue behind them. Spawned all at once, the 64 could all find a writer free,
    // which takes everything queued, and none would wait.
    let mut tells = vec![tell(1)];
    until_writes_are_held(&redis, 1).await;
    tells.push(tell(2));
    until_writes_are_held(&redis, 2).await;
    tells.extend((3..=64).map(tell));
    let hold = Duration::from_millis(1_000);
    tokio::time::sleep(hold).await;
    raw(&redis, vec![v("CLIENT"), v("UNPAUSE")]).await.unwrap();
    for tell in tells {
        tell.await.unwrap().unwrap();
    }

    let writes = request_writes(&redis).await;
    // One command per request before the writers were bounded (an idle worker took each
    // write as it was spawned); now two at most wait in Redis, then the queue leaves in
    // commands of up to 32 (an `EVALSHA` refused before the script is loaded is followed
    // by its `EVAL`).
    assert!(
        writes.len() <= 12,
        "{} commands for 64 requests: {writes:?}",
        writes.len()
    );
    let Value::Integer(len) = raw(&redis, vec![v("XLEN"), v(&stream)]).await.unwrap() else {
        panic!("XLEN answers an integer");
    };
    assert_eq!(len, 65);

    // Each entry's TTL counts from its write: the requests that waited for a writer
    // through the hold were granted less.
    let mut ttls = Vec::new();
    for entry in array(&redis, vec![v("XRANGE"), v(&stream), v("-"), v("+")]).await {
        let Value::Array(mut entry) = entry else {
            panic!("an entry is an array")
        };
        let Some(Value::Array(fields)) = entry.pop() else {
            panic!("an entry ends with its fields")
        };
        let ttl = fields
            .chunks(2)
            .find(|pair| pair[0].as_str().as_deref() == Some("ttl"))
            .and_then(|pair| pair[1].as_str()?.parse::<u128>().ok())
            .expect("every request has a TTL");
        ttls.push(ttl);
    }
    let granted = config.tell_ttl.as_millis();
    assert!(ttls.iter().all(|ttl| *ttl <= granted), "{ttls:?}");
    let least = ttls.iter().min().copied().unwrap();
    assert!(
        least <= granted - hold.as_millis() / 2,
        "no request was granted less for waiting through the hold: {ttls:?}"
    );
    client.shutdown().await;
}
