//! What other clients can write to Redis that the proxy did not ask for — malformed
//! request entries, unusable reply lists, a stream trimmed under it, a burst written in one
//! go, requests to a system with no stream, a reply of a status outside the protocol —
//! against a real redis-server.
mod common;

use conclib_core::AskError;
use std::time::Duration;

use common::actors::*;
use common::{config, eventually, raw, raw_client, system_with, v};
use conclib_redis::{ProxyClient, Status, protocol::decode_reply, start_proxy};
use fred::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_rejected_and_the_proxy_goes_on() {
    let mut config = config("malformed");
    config.max_payload = 1024;
    let system = system_with("malformed", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let redis = raw_client(&config).await;
    let ns = config.namespace.clone();
    let queue = format!("{ns}:sys:malformed:req");
    let reply = format!("{ns}:reply:raw");
    let good_body =
        conclib_redis::codec::encode_value(&conclib_redis::codec::Bincode, &Echo("hi".into()))
            .unwrap();

    let entry = |id: &str, overrides: &[(&str, Value)], drop: &[&str]| {
        let mut fields: Vec<(String, Value)> = vec![
            ("v".into(), v("1")),
            ("id".into(), v(id)),
            ("urn".into(), v("c")),
            ("msg".into(), v("test.Echo")),
            ("ttl".into(), v("5000")),
            ("reply".into(), v(&reply)),
            ("codec".into(), v("bincode")),
            ("body".into(), Value::Bytes(good_body.clone().into())),
        ];
        for (k, val) in overrides {
            fields.iter_mut().find(|(f, _)| f == k).unwrap().1 = val.clone();
        }
        fields.retain(|(f, _)| !drop.contains(&f.as_str()));
        let mut args = vec![v("XADD"), v(&queue), v("*")];
        for (f, val) in fields {
            args.push(v(&f));
            args.push(val);
        }
        args
    };
    let cases: Vec<(u64, Vec<Value>, Status)> = vec![
        (1, entry("1", &[("v", v("99"))], &[]), Status::BadRequest),
        (
            2,
            entry("2", &[("msg", v("test.Nope"))], &[]),
            Status::UnknownMessage,
        ),
        (
            3,
            entry("3", &[("body", Value::Bytes(vec![0xff; 3].into()))], &[]),
            Status::CodecError,
        ),
        (
            4,
            entry("4", &[("body", Value::Bytes(vec![0; 5000].into()))], &[]),
            Status::TooLarge,
        ),
        (
            5,
            entry("5", &[("codec", v("json"))], &[]),
            Status::BadRequest,
        ),
        (
            6,
            entry("6", &[("urn", Value::Bytes(vec![0xc3, 0x28].into()))], &[]),
            Status::BadRequest,
        ),
        (
            7,
            entry("7", &[("urn", v("ghost"))], &[]),
            Status::UnknownUrn,
        ),
        (8, entry("8", &[], &["body"]), Status::BadRequest),
        (
            9,
            entry("9", &[("ttl", v("soon"))], &[]),
            Status::BadRequest,
        ),
        (10, entry("10", &[], &[]), Status::Ok),
    ];
    // Entries no reply can be sent for: no fields we know, a reply key outside the
    // namespace, one with nothing after the prefix, an empty reply field (not a tell), an
    // unreadable id.
    raw(
        &redis,
        vec![v("XADD"), v(&queue), v("*"), v("junk"), v("x")],
    )
    .await
    .unwrap();
    raw(&redis, entry("11", &[("reply", v("elsewhere:list"))], &[]))
        .await
        .unwrap();
    let bare_prefix = format!("{ns}:reply:");
    raw(&redis, entry("12", &[("reply", v(&bare_prefix))], &[]))
        .await
        .unwrap();
    raw(&redis, entry("13", &[("reply", v(""))], &[]))
        .await
        .unwrap();
    raw(&redis, entry("x", &[], &[])).await.unwrap();
    for (_, args, _) in &cases {
        raw(&redis, args.clone()).await.unwrap();
    }
    let mut seen = std::collections::HashMap::new();
    while seen.len() < cases.len() {
        let popped = raw(&redis, vec![v("BLPOP"), v(&reply), v("5")])
            .await
            .expect("a reply within 5 s");
        let Value::Array(parts) = popped else {
            panic!("no reply: {popped:?}")
        };
        let frame = parts[1].as_bytes().unwrap().to_vec();
        let (id, status, payload) = decode_reply(&frame).unwrap();
        seen.insert(id, (Status::from_byte(status).unwrap(), payload.to_vec()));
    }
    for (id, _, expected) in &cases {
        assert_eq!(
            seen[id].0,
            *expected,
            "case {id}: {}",
            String::from_utf8_lossy(&seen[id].1)
        );
    }
    let ok: String =
        conclib_redis::codec::decode_value(&conclib_redis::codec::Bincode, &seen[&10].1).unwrap();
    assert_eq!(ok, "hi");
    // The reply list carries a TTL.
    let ttl = raw(&redis, vec![v("PTTL"), v(&reply)]).await.unwrap();
    assert!(
        matches!(ttl, Value::Integer(-2) | Value::Integer(1..)),
        "{ttl:?}"
    );
    eventually(Duration::from_secs(5), "every entry handled", || {
        let stats = proxy.stats();
        async move { stats.completed == 15 }
    })
    .await;
    assert_eq!(proxy.stats().rejected, 14);
    assert_eq!(
        raw(&redis, vec![v("EXISTS"), v(&bare_prefix)])
            .await
            .unwrap(),
        Value::Integer(0),
        "nothing answered to a reply key with nothing after the prefix"
    );
    // Still serving.
    let client = ProxyClient::connect(&config).await.unwrap();
    assert_eq!(client.ask("c", Add(4)).await.unwrap(), 4);
    assert_eq!(pending_count(&redis, &queue).await, 0);
    proxy.shutdown().await.unwrap();
    // Every entry, malformed ones included, was trimmed.
    assert_eq!(
        raw(&redis, vec![v("XLEN"), v(&queue)]).await.unwrap(),
        Value::Integer(0)
    );
}

/// A reply list that cannot take replies (someone wrote a string there) loses only its own
/// replies: the other requests of its answer batch are still answered, and all of them
/// acknowledged and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_reply_list_does_not_block_the_others() {
    let config = config("wrongtype");
    let system = system_with("wrongtype", &["c"]).await;
    // A first proxy creates the request stream and claims the URN, then stops: what is
    // queued next waits for the second, which takes it all in one batch.
    start_proxy(&system, &config)
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let redis = raw_client(&config).await;
    let ns = config.namespace.clone();
    let queue = format!("{ns}:sys:wrongtype:req");
    let broken = format!("{ns}:reply:broken");
    raw(&redis, vec![v("SET"), v(&broken), v("not a list")])
        .await
        .unwrap();
    let body =
        conclib_redis::codec::encode_value(&conclib_redis::codec::Bincode, &Echo("x".into()))
            .unwrap();
    let mut args = vec![v("XADD"), v(&queue), v("*")];
    for (f, val) in [
        ("v", v("1")),
        ("id", v("1")),
        ("urn", v("c")),
        ("msg", v("test.Echo")),
        ("ttl", v("10000")),
        ("reply", v(&broken)),
        ("codec", v("bincode")),
        ("body", Value::Bytes(body.into())),
    ] {
        args.push(v(f));
        args.push(val);
    }
    raw(&redis, args).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let asks: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .ask("c", Echo(format!("{i}")))
                    .timeout(Duration::from_secs(10))
                    .await
            })
        })
        .collect();
    eventually(Duration::from_secs(5), "21 requests queued", || async {
        raw(&redis, vec![v("XLEN"), v(&queue)])
            .await
            .unwrap()
            .as_i64()
            == Some(21)
    })
    .await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    for (i, ask) in asks.into_iter().enumerate() {
        assert_eq!(ask.await.unwrap().unwrap(), format!("{i}"));
    }
    eventually(
        Duration::from_secs(5),
        "every request acknowledged",
        || async { pending_count(&redis, &queue).await == 0 },
    )
    .await;
    // The string is untouched and the proxy still serves.
    let kept = raw(&redis, vec![v("GET"), v(&broken)]).await.unwrap();
    assert_eq!(kept.as_str().as_deref(), Some("not a list"));
    assert_eq!(
        client.ask("c", Echo("after".into())).await.unwrap(),
        "after"
    );
    proxy.shutdown().await.unwrap();
    assert_eq!(
        raw(&redis, vec![v("XLEN"), v(&queue)]).await.unwrap(),
        Value::Integer(0),
        "every request trimmed"
    );
}

/// How many entries of a request stream are delivered and not acknowledged.
async fn pending_count(redis: &Client, queue: &str) -> i64 {
    let pending = raw(redis, vec![v("XPENDING"), v(queue), v("proxy")])
        .await
        .unwrap();
    match &pending {
        Value::Array(parts) => parts.first().and_then(|c| c.as_i64()).unwrap(),
        other => panic!("XPENDING answered {other:?}"),
    }
}

/// Answered requests leave the stream as it is trimmed, but never one still being handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_trimmed_but_never_past_a_request_in_flight() {
    let config = config("trim").with_ask_timeout(Duration::from_secs(20));
    let system = system_with("trim", &["slow", "fast"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let redis = raw_client(&config).await;
    let queue = format!("{}:sys:trim:req", config.namespace);
    let first_entry = || async {
        match raw(
            &redis,
            vec![v("XRANGE"), v(&queue), v("-"), v("+"), v("COUNT"), v("1")],
        )
        .await
        .unwrap()
        {
            Value::Array(entries) => entries.into_iter().next(),
            other => panic!("XRANGE answered {other:?}"),
        }
    };
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.ask("slow", Sleep(2000)).await }
    });
    eventually(
        Duration::from_secs(5),
        "the slow request to be taken",
        || {
            let received = proxy.stats().received;
            async move { received == 1 }
        },
    )
    .await;
    for i in 1..=150 {
        assert_eq!(client.ask("fast", Add(1)).await.unwrap(), i);
    }
    // 150 answered, but the slow request is still the stream's first entry.
    let Some(Value::Array(entry)) = first_entry().await else {
        panic!("the stream is empty")
    };
    let fields = format!("{:?}", entry[1]);
    assert!(fields.contains("test.Sleep"), "first entry: {fields}");
    assert_eq!(
        raw(&redis, vec![v("XLEN"), v(&queue)]).await.unwrap(),
        Value::Integer(151)
    );
    assert_eq!(slow.await.unwrap().unwrap(), 2000);
    // Once it is answered, trimming goes on: whole stream nodes (at most 100 entries each)
    // are dropped as requests are answered.
    for i in 151..=300 {
        assert_eq!(client.ask("fast", Add(1)).await.unwrap(), i);
    }
    let len = raw(&redis, vec![v("XLEN"), v(&queue)])
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    assert!(len <= 100, "{len} entries left in the stream");
    assert_eq!(pending_count(&redis, &queue).await, 0);
    proxy.shutdown().await.unwrap();
    assert_eq!(first_entry().await, None, "trimmed exactly at shutdown");
}

/// Concurrent asks to one system leave in one command; each gets its own answer, in the
/// order of its own requests. On a current-thread runtime the asks spawned here all queue
/// their requests before the client's writer runs, so they are written as one batch.
#[tokio::test]
async fn concurrent_asks_written_together_are_each_answered() {
    let config = config("batch");
    let system = system_with("batch", &["c"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let asks: Vec<_> = (0..50)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let echoed = client.ask("c", Echo(format!("e{i}"))).await;
                client.tell("c", Record(i)).await.unwrap();
                echoed
            })
        })
        .collect();
    for (i, ask) in asks.into_iter().enumerate() {
        assert_eq!(ask.await.unwrap().unwrap(), format!("e{i}"));
    }
    let mut recorded = client.ask("c", History).await.unwrap();
    recorded.sort_unstable();
    assert_eq!(recorded, (0..50).collect::<Vec<_>>());
    assert_eq!(proxy.stats().received, 101);
    proxy.shutdown().await.unwrap();
}

/// A URN whose system has no request stream (it is gone, or Redis lost its data) is
/// unknown, whether its ask is written alone or with others.
#[tokio::test]
async fn asks_to_a_system_without_a_stream_fail_as_unknown() {
    let config = config("nostream");
    let redis = raw_client(&config).await;
    let urn_key = format!("{}:urn:ghost", config.namespace);
    raw(&redis, vec![v("SET"), v(&urn_key), v("vanished")])
        .await
        .unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    // Alone: one XADD with NOMKSTREAM.
    assert_eq!(
        client.ask("ghost", Add(1)).await,
        Err(AskError::UnknownUrn {
            urn: "ghost".into()
        })
    );
    // Together: one script call, which appends nothing.
    let asks: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.ask("ghost", Add(1)).await })
        })
        .collect();
    for ask in asks {
        assert_eq!(
            ask.await.unwrap(),
            Err(AskError::UnknownUrn {
                urn: "ghost".into()
            })
        );
    }
    let stream = format!("{}:sys:vanished:req", config.namespace);
    assert_eq!(
        raw(&redis, vec![v("EXISTS"), v(&stream)]).await.unwrap(),
        Value::Integer(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_with_a_status_outside_the_protocol_fails_its_ask() {
    // No proxy: the test answers in its place, with a frame of status 14 (no proxy sends it).
    let config = config("badstatus");
    let redis = raw_client(&config).await;
    let ns = config.namespace.clone();
    let stream = format!("{ns}:sys:fake:req");
    raw(&redis, vec![v("SET"), v(&format!("{ns}:urn:x")), v("fake")])
        .await
        .unwrap();
    raw(
        &redis,
        vec![
            v("XGROUP"),
            v("CREATE"),
            v(&stream),
            v("proxy"),
            v("0"),
            v("MKSTREAM"),
        ],
    )
    .await
    .unwrap();
    let client = ProxyClient::connect(&config.clone().with_ask_timeout(Duration::from_secs(20)))
        .await
        .unwrap();
    let ask = {
        let client = client.clone();
        tokio::spawn(async move { client.ask("x", Add(1)).await })
    };
    let request_id = eventually(Duration::from_secs(10), "the ask is sent", || async {
        let entries = raw(&redis, vec![v("XRANGE"), v(&stream), v("-"), v("+")])
            .await
            .unwrap();
        let Value::Array(entries) = entries else {
            return None;
        };
        let Some(Value::Array(entry)) = entries.first() else {
            return None;
        };
        let Some(Value::Array(fields)) = entry.get(1) else {
            return None;
        };
        fields
            .chunks(2)
            .find(|f| f[0].as_str().as_deref() == Some("id"))
            .and_then(|f| f[1].as_str()?.parse::<u64>().ok())
    })
    .await;
    let mut frame = request_id.to_be_bytes().to_vec();
    // A status no version of the protocol has (the highest is far below).
    frame.push(200);
    frame.extend_from_slice(b"from a newer protocol");
    raw(
        &redis,
        vec![
            v("RPUSH"),
            v(client.reply_key()),
            Value::Bytes(frame.into()),
        ],
    )
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .expect("the ask ends")
        .unwrap();
    assert!(
        matches!(&answer, Err(AskError::Transport(text)) if text.contains("unknown reply status 200")),
        "{answer:?}"
    );
    client.shutdown().await;
}

/// A URN key overwritten with another type than a string (something other than a proxy
/// wrote it): that URN is refused until the key is deleted, and every other URN of the
/// system stays claimed and served (their keys were renewed in the same script, which the
/// bad key failed as a whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_urn_key_of_another_type_spoils_only_its_own_urn() {
    let lease = Duration::from_millis(900);
    let mut config = config("foreign-key");
    config.lease_ttl = lease;
    config.urn_ttl = lease;
    config.resolve_cache_ttl = Duration::from_millis(100);
    let system = system_with("foreign", &["a", "b"]).await;
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let redis = raw_client(&config).await;
    let key_a = format!("{}:urn:a", config.namespace);
    let key_b = format!("{}:urn:b", config.namespace);
    raw(&redis, vec![v("DEL"), v(&key_a)]).await.unwrap();
    raw(&redis, vec![v("HSET"), v(&key_a), v("x"), v("y")])
        .await
        .unwrap();
    // Four leases: b's key is renewed all along, and b answers every ask.
    let until = std::time::Instant::now() + lease * 4;
    while std::time::Instant::now() < until {
        assert_eq!(client.ask("b", Get).await, Ok(0));
        let ttl = raw(&redis, vec![v("PTTL"), v(&key_b)]).await.unwrap();
        assert!(ttl.as_i64().is_some_and(|ms| ms > 0), "b's key: {ttl:?}");
        // Paced: this checks what holds over time, not an event.
        tokio::time::sleep(lease / 10).await;
    }
    // Deleted, a's key is claimed again at the next renewal, and a is served.
    raw(&redis, vec![v("DEL"), v(&key_a)]).await.unwrap();
    eventually(Duration::from_secs(10), "a served again", || {
        let client = client.clone();
        async move { client.ask("a", Get).await == Ok(0) }
    })
    .await;
    proxy.shutdown().await.unwrap();
}
