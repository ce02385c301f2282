//! A Rust caller of an actor written in Python: asks the Python actor host's conformance
//! actor (`python/tests/mirror_host.py`, at `conf:counter`) with the message types generated
//! from its schema (`src/python_mirror.rs`, by `python -m conclib.rustgen`), and prints what
//! it answered, one line per ask (`python/tests/test_host_contract.py` reads them).
//!
//! ```text
//! ask_python --redis URL --namespace NS
//! ```

// The generated module declares every message of the actor; this caller asks some of them.
#[allow(dead_code)]
#[path = "../python_mirror.rs"]
mod python_mirror;

use conclib::redis::{ProxyClient, ProxyConfig, codec::MsgPack};
use python_mirror::{Add, Echo, Forbidden, Get, History, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut namespace) = (String::new(), String::new());
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--redis" => url = args.next().unwrap_or_default(),
            "--namespace" => namespace = args.next().unwrap_or_default(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let config = ProxyConfig::new(url)
        .with_namespace(namespace)
        .with_codec(MsgPack);
    let client = ProxyClient::connect(&config).await?;
    let urn = "conf:counter";
    let before: i64 = client.ask(urn, Get).await?;
    println!("add {}", client.ask(urn, Add(5)).await? - before);
    println!("echo {}", client.ask(urn, Echo("from rust".into())).await?);
    client.tell(urn, Record(42)).await?;
    println!("recorded {}", client.ask(urn, History).await?.contains(&42));
    match client.ask(urn, Forbidden("no".into())).await {
        Err(conclib::AskError::Handler(e)) => println!("refused {}", e["NotAllowed"]["reason"]),
        other => println!("unexpected {other:?}"),
    }
    client.shutdown().await;
    Ok(())
}
