//! The worked example of the crate docs ("One ask in raw Redis commands"), run exactly as
//! written there, with the bytes shown there.
#![cfg(feature = "msgpack")]
mod common;

use common::actors::*;
use common::config;
use conclib_core::ActorSystem;
use conclib_redis::start_proxy;
use fred::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ask_in_raw_redis_commands() {
    let mut config = config("raw");
    config.namespace = "shop".into();
    let system = ActorSystem::new("backend");
    let counter = system
        .build(Counter::default())
        .urn("counter")
        .spawn()
        .await
        .unwrap();
    counter.to_dyn().ask(Add(1)).await.unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let redis = Builder::from_config(Config::from_url(&config.url).unwrap())
        .build()
        .unwrap();
    redis.init().await.unwrap();
    let cmd = |name: &str, args: Vec<Value>| {
        let redis = redis.clone();
        let name = name.to_owned();
        async move {
            redis
                .custom::<Value, Value>(
                    fred::types::CustomCommand::new(
                        name,
                        fred::types::ClusterHash::FirstKey,
                        false,
                    ),
                    args,
                )
                .await
                .unwrap()
        }
    };
    let t = |s: &str| Value::from(s.to_owned());

    // 1. GET shop:urn:counter -> "backend"
    let system_id = cmd("GET", vec![t("shop:urn:counter")]).await;
    assert_eq!(system_id.as_str().as_deref(), Some("backend"));
    // 2. XADD shop:sys:backend:req NOMKSTREAM * v 1 id 7 urn counter msg test.Add ttl 5000
    //    reply shop:reply:0123456789abcdef0123456789abcdef codec msgpack body \x05
    let reply_key = "shop:reply:0123456789abcdef0123456789abcdef";
    let entry = cmd(
        "XADD",
        vec![
            t("shop:sys:backend:req"),
            t("NOMKSTREAM"),
            t("*"),
            t("v"),
            t("1"),
            t("id"),
            t("7"),
            t("urn"),
            t("counter"),
            t("msg"),
            t("test.Add"),
            t("ttl"),
            t("5000"),
            t("reply"),
            t(reply_key),
            t("codec"),
            t("msgpack"),
            t("body"),
            Value::Bytes(vec![0x05].into()),
        ],
    )
    .await;
    assert!(!entry.is_null());
    // 3. BLMPOP 5 1 shop:reply:0123... LEFT COUNT 16
    let popped = cmd(
        "BLMPOP",
        vec![
            Value::Integer(5),
            Value::Integer(1),
            t(reply_key),
            t("LEFT"),
            t("COUNT"),
            Value::Integer(16),
        ],
    )
    .await;
    let Value::Array(mut parts) = popped else {
        panic!("{popped:?}")
    };
    let Value::Array(frames) = parts.pop().unwrap() else {
        panic!()
    };
    let frame = frames[0].as_bytes().unwrap().to_vec();
    // id 7 (8 bytes, big-endian), status 0 (Ok), payload: msgpack 6 (1 + 5).
    assert_eq!(frame, [0, 0, 0, 0, 0, 0, 0, 7, 0, 0x06]);
    proxy.shutdown().await.unwrap();
}
