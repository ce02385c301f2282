//! A second process for the tests of conclib-redis: the test binary itself, started again
//! with `CONCLIB_REDIS_PEER` set (see [`command`]).
//!
//! - `<test binary> serve <url> <namespace> <system-id> <urn>...`: spawns a test
//!   counter at each URN, starts a proxy, prints `READY`; then on stdin `stop` (or end of
//!   input) shuts the proxy down gracefully and prints `STOPPED`, `crash` exits at once.
//!   `CONCLIB_TEST_LEASE_MS` sets the proxy's lease and its URN keys' TTL; `CONCLIB_TEST_NOTES` is where the
//!   counters record the `Note`s they handle; `CONCLIB_TEST_RELEASE` set: `release_on_shutdown`;
//!   `CONCLIB_TEST_BULK_URNS` = N: N more counters, at `bulk:0`..; `CONCLIB_TEST_URN_TTL_MS`:
//!   the URN keys' TTL (after `CONCLIB_TEST_LEASE_MS`); `CONCLIB_TEST_PATTERN`: a pattern
//!   (`acct:{id}`) whose URNs it activates as counters. On stdin, `activations` prints
//!   `ACTIVATIONS` and the URNs activated in it now.
//! - `<test binary> ask <url> <namespace> <urn> <total> <concurrency> <tag>`: asks
//!   `total` echoes, `concurrency` at a time, checks every answer, prints `OK <total>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conclib_core::{ActorSystem, PanicPolicy};
use conclib_redis::{ProxyClient, ProxyConfig, start_proxy};

use crate::common::actors;

/// Set in the environment of the test binary started again as the peer.
const ROLE: &str = "CONCLIB_REDIS_PEER";

/// The peer's command: this test binary in the peer's role; add the arguments.
pub fn command() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command.env(ROLE, "1");
    command
}

/// Plays the peer if this process was started as one (the first thing `main` does).
pub fn run_if_started_as_one() {
    if std::env::var_os(ROLE).is_some() {
        run();
    }
}

fn run() -> ! {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let code = match args.get(1).map(String::as_str) {
        Some("serve") if args.len() >= 5 => {
            rt.block_on(serve(&args[2], &args[3], &args[4], &args[5..]))
        }
        Some("ask") if args.len() == 8 => rt.block_on(ask(
            &args[2], &args[3], &args[4], &args[5], &args[6], &args[7],
        )),
        _ => {
            eprintln!(
                "usage: peer serve URL NS SYSTEM URN... | ask URL NS URN TOTAL CONCURRENCY TAG"
            );
            2
        }
    };
    std::process::exit(code);
}

async fn serve(url: &str, ns: &str, system_id: &str, urns: &[String]) -> i32 {
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id(system_id);
    if let Some(ms) = std::env::var("CONCLIB_TEST_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Plain URNs here: another system takes one over once its key lapses.
        config.lease_ttl = Duration::from_millis(ms);
        config.urn_ttl = config.lease_ttl;
    }
    if let Some(ms) = std::env::var("CONCLIB_TEST_URN_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.urn_ttl = Duration::from_millis(ms);
    }
    // As the Python tests' server does: a stopped system deletes its URN keys at once.
    config.release_on_shutdown = std::env::var_os("CONCLIB_TEST_RELEASE").is_some();
    let system = ActorSystem::new(system_id);
    let bulk: usize = std::env::var("CONCLIB_TEST_BULK_URNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bulk: Vec<String> = (0..bulk).map(|i| format!("bulk:{i}")).collect();
    for urn in urns.iter().chain(&bulk) {
        if let Err(e) = system
            .build(actors::Counter::default())
            .urn(urn.clone())
            .on_panic(PanicPolicy::Resume)
            .spawn()
            .await
        {
            eprintln!("spawn {urn}: {e}");
            return 1;
        }
    }
    let proxy = match start_proxy(&system, &config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("start_proxy: {e}");
            return 1;
        }
    };
    if let Ok(pattern) = std::env::var("CONCLIB_TEST_PATTERN") {
        let activated = proxy
            .activate(&pattern, |_activation| async {
                Ok::<_, String>(actors::Counter::default())
            })
            .never_passivate()
            .await;
        if let Err(e) = activated {
            eprintln!("activate: {e}");
            return 1;
        }
    }
    println!("READY");
    let mut orders = crate::common::orders();
    while let Some(cmd) = orders.recv().await {
        match cmd.as_str() {
            "crash" => std::process::exit(0),
            "stop" => break,
            "activations" => println!("ACTIVATIONS {}", proxy.activations().join(" ")),
            _ => {}
        }
    }
    let result = proxy.shutdown().await;
    let _ = system.shutdown(Duration::from_secs(5)).await;
    println!("STOPPED");
    if let Err(e) = result {
        eprintln!("shutdown: {e}");
        return 1;
    }
    0
}

async fn ask(url: &str, ns: &str, urn: &str, total: &str, concurrency: &str, tag: &str) -> i32 {
    let (Ok(total), Ok(concurrency)) = (total.parse::<usize>(), concurrency.parse::<usize>())
    else {
        eprintln!("TOTAL and CONCURRENCY must be numbers");
        return 2;
    };
    let config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_ask_timeout(Duration::from_secs(20));
    let client = match ProxyClient::connect(&config).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connect: {e}");
            return 1;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let next = next.clone();
        let urn = urn.to_owned();
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok(ok);
                }
                let text = format!("{tag}-{i}");
                match client.ask(urn.as_str(), actors::Echo(text.clone())).await {
                    Ok(answer) if answer == text => ok += 1,
                    Ok(answer) => return Err(format!("ask {i}: wrong answer {answer:?}")),
                    Err(e) => return Err(format!("ask {i}: {e}")),
                }
            }
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => ok += n,
            Ok(Err(e)) => {
                eprintln!("{e}");
                return 1;
            }
            Err(e) => {
                eprintln!("task: {e}");
                return 1;
            }
        }
    }
    println!("OK {ok}");
    i32::from(ok != total)
}
