//! No input aborts a process: a 1 KB request whose MessagePack body carries a
//! field the message does not have, nested 700 levels deep (`{"ms": 1, "junk": [[[...]]]}`),
//! overflowed a tokio worker's stack in a debug serving process and aborted it. Here a real
//! serving process (this test binary in that role, a debug build, on a multi-thread runtime:
//! workers with tokio's 2 MiB stacks, as `#[tokio::main]`'s) gets such requests of 700 and
//! 100,000 levels from a client writing raw Redis commands, as one in another language does;
//! each asker gets a `CodecError` answer within its TTL and the same process then answers a
//! normal ask. Real redis-server on a free port, every wait bounded, the child reaped.
#![cfg(feature = "msgpack")]
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use conclib_core::{Actor, ActorSystem, Context, ExposedMessage, RequestEnvelope};
use conclib_macros::message;
use conclib_redis::{
    ProxyClient, ProxyConfig, Status,
    codec::{MAX_DEPTH, MsgPack},
    protocol::decode_reply,
    start_proxy,
};
use fred::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use common::{config, raw, raw_client, v};

/// Set in the environment of this binary started again as the serving process.
const ROLE: &str = "CONCLIB_DEEP_PAYLOADS_SERVER";

/// A struct message: MessagePack clients send it as a map of its fields.
#[message(response = u64, error = String, name = "test.Nap")]
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Nap {
    ms: u64,
}

/// Answers a `Nap` with its `ms`.
struct Napper;

impl Actor for Napper {
    const REMOTE: &'static [ExposedMessage] = &[ExposedMessage::of::<Nap>()];

    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        match req.extract::<Nap>() {
            Ok((Nap { ms }, r)) => r.respond(Ok(ms)),
            Err(req) => req.reject(),
        }
    }
}

fn main() {
    if std::env::var_os(ROLE).is_some() {
        serve();
    }
    conclib_testkit::run(conclib_testkit::tests![
        a_request_nested_past_any_stack_gets_a_codec_error_and_the_process_serves_on,
    ]);
}

/// The serving process: `<binary> URL NAMESPACE`, a `Napper` at URN `napper` of system
/// `deep`, `READY` once served; `stop` on stdin (or its end) shuts down, then `STOPPED`.
fn serve() -> ! {
    let args: Vec<String> = std::env::args().collect();
    // Tokio's default worker stack (2 MiB): the one that overflowed.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let code = rt.block_on(async {
        let config = ProxyConfig::new(&args[1])
            .with_namespace(&args[2])
            .with_system_id("deep");
        let system = ActorSystem::new("deep");
        system.build(Napper).urn("napper").spawn().await.unwrap();
        let proxy = start_proxy(&system, &config).await.unwrap();
        println!("READY");
        let mut orders = common::orders();
        while let Some(order) = orders.recv().await {
            if order == "stop" {
                break;
            }
        }
        let result = proxy.shutdown().await;
        let _ = system.shutdown(Duration::from_secs(5)).await;
        println!("STOPPED");
        i32::from(result.is_err())
    });
    std::process::exit(code);
}

/// `{"ms": 1, "junk": [[[...1...]]]}` with `arrays` nested arrays.
fn nested_junk(arrays: usize) -> Vec<u8> {
    let mut body = vec![0x82, 0xa2, b'm', b's', 0x01, 0xa4, b'j', b'u', b'n', b'k'];
    body.extend(std::iter::repeat_n(0x91, arrays));
    body.push(0x01);
    body
}

async fn a_request_nested_past_any_stack_gets_a_codec_error_and_the_process_serves_on() {
    let config = config("deep");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "1")
        .args([&config.url, &config.namespace])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("the server starts within 30 s");
    assert_eq!(ready.unwrap().as_deref(), Some("READY"));

    let redis = raw_client(&config).await;
    let ns = &config.namespace;
    let requests = format!("{ns}:sys:deep:req");
    let reply_key = format!("{ns}:reply:deep");
    const TTL_MS: u64 = 5_000;
    for (id, arrays) in [(1u64, 700usize), (2, 100_000), (3, MAX_DEPTH - 1)] {
        let body = nested_junk(arrays);
        let asked = Instant::now();
        let entry = raw(
            &redis,
            vec![
                v("XADD"),
                v(&requests),
                v("*"),
                v("v"),
                v("1"),
                v("id"),
                v(&id.to_string()),
                v("urn"),
                v("napper"),
                v("msg"),
                v("test.Nap"),
                v("ttl"),
                v(&TTL_MS.to_string()),
                v("reply"),
                v(&reply_key),
                v("codec"),
                v("msgpack"),
                v("body"),
                Value::Bytes(body.into()),
            ],
        )
        .await
        .unwrap();
        assert!(!entry.is_null());
        // Waits no longer than the request's TTL: an aborted server never answers.
        let popped = raw(
            &redis,
            vec![v("BLPOP"), v(&reply_key), v(&(TTL_MS / 1000).to_string())],
        )
        .await
        .unwrap();
        let Value::Array(parts) = popped else {
            panic!("no answer within the TTL to {arrays} nested arrays: {popped:?}")
        };
        let frame = parts[1].as_bytes().unwrap().to_vec();
        let (answered, status, payload) = decode_reply(&frame).unwrap();
        let text = String::from_utf8_lossy(payload);
        assert_eq!(answered, id);
        assert!(asked.elapsed() < Duration::from_millis(TTL_MS));
        // One level for the struct, one per array.
        if arrays < MAX_DEPTH {
            assert_eq!(Status::from_byte(status), Some(Status::Ok), "{text}");
            let ms: u64 = conclib_redis::codec::decode_value(&MsgPack, payload).unwrap();
            assert_eq!(ms, 1);
        } else {
            assert_eq!(
                Status::from_byte(status),
                Some(Status::CodecError),
                "{arrays} nested arrays: {text}"
            );
            assert!(
                text.contains(&format!("nesting deeper than {MAX_DEPTH} levels")),
                "{text}"
            );
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the server exited after {arrays} nested arrays"
        );
    }

    // The same process answers a normal ask, of a typed client.
    let client = ProxyClient::connect(
        &config
            .clone()
            .with_codec(MsgPack)
            .with_ask_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(client.ask("napper", Nap { ms: 7 }).await.unwrap(), 7);
    client.shutdown().await;

    stdin.write_all(b"stop\n").await.unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
        .await
        .expect("the server stops within 20 s");
    assert_eq!(stopped.unwrap().as_deref(), Some("STOPPED"));
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the server exits")
        .unwrap();
    assert!(status.success());
}
