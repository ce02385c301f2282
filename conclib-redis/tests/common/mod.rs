//! Test helpers: one redis-server per test binary, unique namespaces.
#![allow(dead_code, missing_docs)]

pub mod actors;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use conclib_core::{ActorSystem, PanicPolicy};
use conclib_redis::{ProxyConfig, daemon::RedisDaemon, start_redis};
use fred::prelude::{Builder, Client, ClientLike, Config, Value};

use actors::Counter;

/// The lines of `text` that a newline ended: a process may be writing its last one as its
/// notes file is read (a torn line was read as `tick` alone once; a torn number would count
/// as another).
pub fn complete_lines(text: &str) -> std::str::Lines<'_> {
    text.rsplit_once('\n').map_or("", |(done, _)| done).lines()
}

/// The redis-server of this test binary, started on first use on a free port. It is never
/// dropped: it dies with the test process (PR_SET_PDEATHSIG).
pub fn daemon() -> &'static RedisDaemon {
    static DAEMON: OnceLock<RedisDaemon> = OnceLock::new();
    DAEMON.get_or_init(|| {
        // Started from a plain thread: tests call this from inside their own runtimes.
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(start_redis(&ProxyConfig::default()))
                .expect("redis-server starts")
        })
        .join()
        .unwrap()
    })
}

/// A configuration for this binary's Redis with a namespace no other test uses.
pub fn config(test: &str) -> ProxyConfig {
    static N: AtomicU32 = AtomicU32::new(0);
    let ns = format!(
        "t{}-{test}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    daemon().config(&ProxyConfig::default().with_namespace(ns))
}

#[allow(unused_imports)]
pub use conclib_testkit::eventually;

/// A plain fred client of the Redis at `url`: a client in another language, or an operator.
pub async fn plain_client(url: &str) -> fred::prelude::Client {
    use fred::prelude::*;
    let client = Builder::from_config(Config::from_url(url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// Runs one Redis command given as words.
pub async fn command(
    client: &fred::prelude::Client,
    words: &[&str],
) -> Result<fred::prelude::Value, fred::error::Error> {
    use fred::prelude::*;
    let (name, args) = words.split_first().unwrap();
    let args: Vec<Value> = args.iter().map(|a| Value::from(a.to_string())).collect();
    client
        .custom::<Value, Value>(
            fred::types::CustomCommand::new(
                name.to_string(),
                fred::types::ClusterHash::FirstKey,
                false,
            ),
            args,
        )
        .await
}

/// A system with a `Counter` (resuming after panics) at each URN.
pub async fn system_with(name: &str, urns: &[&str]) -> ActorSystem {
    let system = ActorSystem::new(name);
    for urn in urns {
        system
            .build(Counter::default())
            .urn(*urn)
            .on_panic(PanicPolicy::Resume)
            .spawn()
            .await
            .unwrap();
    }
    system
}

/// A plain fred client of this test's Redis.
pub async fn raw_client(config: &ProxyConfig) -> Client {
    let client = Builder::from_config(Config::from_url(&config.url).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// Runs one Redis command given as values.
pub async fn raw(client: &Client, args: Vec<Value>) -> Result<Value, fred::error::Error> {
    let (name, args) = args.split_first().unwrap();
    let name = name.as_str().unwrap().into_owned();
    client
        .custom::<Value, Value>(
            fred::types::CustomCommand::new(name, fred::types::ClusterHash::FirstKey, false),
            args.to_vec(),
        )
        .await
}

/// A Redis string value.
pub fn v(s: &str) -> Value {
    Value::from(s.to_owned())
}

/// A peer process's orders: the lines of its stdin, trimmed, read on a thread of their own
/// (stdin blocks); `stop` when the input ends (the parent closed it, or died).
pub fn orders() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim().to_owned()).is_err() {
                return;
            }
        }
        let _ = tx.send("stop".to_owned());
    });
    rx
}
