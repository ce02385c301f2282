//! The Rust serving process of the Python client's tests, and the service its README's
//! quick start talks to (`conclib-pyserver --help`).
//!
//! ```text
//! conclib-pyserver --start-redis PORT [--namespace NS] [--system ID] [--lease-ttl-ms MS] [--shutdown-ms MS] [--exit-with-stdin]
//! conclib-pyserver --redis URL [--namespace NS] [--system ID] [--lease-ttl-ms MS] [--shutdown-ms MS] [--exit-with-stdin]
//! conclib-pyserver --export-schema
//! ```
//!
//! Serving: spawns the actors of [`shapes`] (URNs `py:shapes`, `py:counter`, `py:narrow`),
//! [`cancellable`] (`py:cancellable`, which cancels a handler on timeout) and the
//! conformance actor of [`mirror`] (`conf:counter`, and a second one at `pytest:echo`
//! for the pattern tests), starts the Redis proxy (the
//! client side of its configuration uses MessagePack; the proxy answers each request in the
//! codec it came in; `--lease-ttl-ms` sets its lease and its URN keys' TTL, 4 s and 15 s by
//! default, renewed every third of it), prints `READY` on stdout, and runs until SIGTERM or SIGINT
//! (with `--exit-with-stdin`, also until its standard input ends: the tests' way of never
//! outliving a test process that died), then shuts the poller, the proxy and the actors down
//! within `--shutdown-ms` (the proxy's `shutdown_timeout`, 5 s by default) whatever Redis
//! does, and exits 0 (1 when the shutdown was cut short: Redis unreachable). On SIGTERM the
//! proxy is drained first (`ProxyHandle::drain`: its activations handed to the other
//! servers of the namespace, within half the budget).
//! `--start-redis PORT` first starts a private `redis-server` on 127.0.0.1:PORT (no
//! persistence), serves on it, and stops it at the end.
//!
//! `--export-schema` prints what each actor exposes as JSON ([`conclib::schema`]) and exits.

mod cancellable;
mod mirror;
mod orders;
mod publisher;
mod reminded;
mod shapes;
mod tally;
mod versioned;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use conclib::redis::{
    ProxyClient, ProxyConfig,
    codec::MsgPack,
    reminders::{ReminderPoller, ReminderPollerOptions},
    start_proxy, start_redis,
};
use conclib::{ActorSystem, PanicPolicy};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

const HELP: &str = "\
conclib-pyserver: conclib actors behind the Redis proxy (MessagePack), for Python clients.

usage:
  conclib-pyserver --start-redis PORT [options]   start a private redis-server and serve on it
  conclib-pyserver --redis URL [options]          serve on an existing Redis
  conclib-pyserver --export-schema                print the actors' schema (JSON) and exit
  conclib-pyserver --help

options:
  --start-redis PORT   start redis-server on 127.0.0.1:PORT (no persistence), stopped at exit
  --redis URL          the Redis to serve on: redis://[[user]:password@]host[:port][/db], ...
  --namespace NS       the key prefix the proxy serves under (default: conclib, the Python
                       client's default)
  --system ID          the proxy's system id (default: a random one)
  --lease-ttl-ms MS    how long a URN key outlives a proxy that stopped renewing it (15000)
  --shutdown-ms MS     how long stopping may take whatever Redis does (5000); its private
                       redis-server is stopped after it (SIGKILL after 5 s more)
  --exit-with-stdin    also stop when standard input ends (for a parent that may die
                       without stopping it)
  --export-schema      print what each actor exposes (for python -m conclib.stubgen), exit
  --build 1|2          also serve py:ver:{id}, a ledger of build 1 or 2 (2 adds an optional
                       field to Deposit, its version 2, and a message, Audit)
  --rebalance          rebalance conf:pat:{id}: above its share of the pattern's activations,
                       it hands the excess to the member with the fewest (a newcomer)

URNs served: py:counter (Add {n}, Get, Record(u64), History, Reset), py:shapes (every
message shape: Double(i64), Move {point, dx, dy}, Classify(u64), Nap {ms}, ...),
py:narrow (a mailbox of one), py:item:{id} (counters activated on demand), py:remind:{id}
(keep the reminder ticks delivered to them: ReminderTick, py.Ticks), py:tally:{id}
(counters kept in the fenced state store: test.Incr, test.Count), py:carry:{id}
(the same messages, the count kept in memory and carried when drained), py:order:{id}
(a durable workflow: py.Place {key, cents}, py.Charges), conf:counter,
pytest:echo, py:shared, conf:shared, py:publisher (test.Publish {topic, durable, from,
count}: publishes count events {from, seq} to a topic, MessagePack).

Prints READY on stdout once they answer, then runs until SIGINT or SIGTERM (whatever its
standard input does, unless --exit-with-stdin), shuts down and exits 0. On SIGTERM it
drains first: its activations and the requests queued for them go to the other servers
of the namespace.
";

/// The command line.
struct Args {
    redis: String,
    start_redis: Option<u16>,
    namespace: String,
    system: Option<String>,
    lease_ttl: Option<Duration>,
    shutdown: Option<Duration>,
    exit_with_stdin: bool,
    export_schema: bool,
    help: bool,
    /// `--build 1|2`: serve `py:ver:{id}` as that build (`versioned.rs`).
    build: Option<u32>,
    /// `--rebalance`: `conf:pat:{id}` rebalanced (a member joining takes its share).
    rebalance: bool,
}

/// Reads the command line; `Err` holds the message for a wrong one.
fn parse_args() -> Result<Args, String> {
    let usage = "usage: conclib-pyserver (--start-redis PORT | --redis URL) [--namespace NS] [--system ID] [--lease-ttl-ms MS] [--shutdown-ms MS] [--exit-with-stdin] [--build 1|2] [--rebalance] | --export-schema | --help";
    let mut args = Args {
        redis: String::new(),
        start_redis: None,
        namespace: "conclib".to_owned(),
        system: None,
        lease_ttl: None,
        shutdown: None,
        exit_with_stdin: false,
        export_schema: false,
        help: false,
        build: None,
        rebalance: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--redis" => args.redis = value()?,
            "--start-redis" => {
                let port = value()?;
                args.start_redis = Some(
                    port.parse()
                        .map_err(|_| format!("--start-redis needs a port, got {port:?}"))?,
                );
            }
            "--namespace" => args.namespace = value()?,
            "--system" => args.system = Some(value()?),
            "--lease-ttl-ms" => {
                let ms = value()?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("--lease-ttl-ms needs milliseconds, got {ms:?}"))?;
                args.lease_ttl = Some(Duration::from_millis(ms));
            }
            "--shutdown-ms" => {
                let ms = value()?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("--shutdown-ms needs milliseconds, got {ms:?}"))?;
                args.shutdown = Some(Duration::from_millis(ms));
            }
            "--exit-with-stdin" => args.exit_with_stdin = true,
            "--build" => {
                let build = value()?;
                args.build = match build.as_str() {
                    "1" => Some(1),
                    "2" => Some(2),
                    _ => return Err(format!("--build needs 1 or 2, got {build:?}")),
                };
            }
            "--export-schema" => args.export_schema = true,
            "--rebalance" => args.rebalance = true,
            "-h" | "--help" => args.help = true,
            _ => return Err(format!("unknown argument {arg:?}\n{usage}")),
        }
    }
    if args.help || args.export_schema {
        return Ok(args);
    }
    match (args.redis.is_empty(), args.start_redis) {
        (true, None) => Err(format!(
            "--start-redis PORT or --redis URL is needed\n{usage}"
        )),
        (false, Some(_)) => Err(format!(
            "--start-redis and --redis exclude each other\n{usage}"
        )),
        _ => Ok(args),
    }
}

/// The schema of every actor the Python stubs cover.
fn export_schema() -> serde_json::Value {
    use shapes::*;
    let mut export = conclib::schema::Export::new();
    export
        .actor::<Shapes>()
        .infallible::<Move>()
        .message::<Double>()
        .message::<Divide>()
        .infallible::<Swap>()
        .infallible::<Hello>()
        .infallible::<Measure>()
        .infallible::<Command>()
        .infallible::<Classify>()
        .infallible::<Greet>()
        .infallible::<Reverse>()
        .infallible::<Sum>()
        .message::<PlaceOrder>()
        .infallible::<Tally>()
        .infallible::<Explode>()
        .infallible::<Nap>()
        .infallible::<Noop>()
        .done();
    export
        .actor::<Counter>()
        .message::<Add>()
        .infallible::<Get>()
        .infallible::<Record>()
        .infallible::<History>()
        .infallible::<Reset>()
        .infallible::<HoldUntilQueued>()
        .done();
    export.actor::<Narrow>().infallible::<Occupy>().done();
    // Activated by pattern (`py:order:{id}`): its handle takes the URN.
    export
        .actor::<orders::Orders>()
        .message::<orders::Place>()
        .message::<orders::Charges>()
        .done();
    export.to_json()
}

/// How the server was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM (an orchestrator replacing it): drained, its work handed to the others.
    Drain,
    /// SIGINT, or standard input ended: shut down.
    Shutdown,
}

/// The handlers of SIGTERM and SIGINT, installed before READY is printed: a signal sent
/// right after READY is caught, not the default action (an exit that leaves the private
/// `redis-server` behind).
fn stop_signals() -> (tokio::signal::unix::Signal, tokio::signal::unix::Signal) {
    let term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    (term, int)
}

/// Resolves at SIGTERM or SIGINT, or (`exit_with_stdin`) when standard input ends.
async fn stop_requested(
    (mut term, mut int): (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    exit_with_stdin: bool,
) -> Stop {
    let stdin_closed = async {
        if !exit_with_stdin {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = term.recv() => Stop::Drain,
        _ = int.recv() => Stop::Shutdown,
        () = stdin_closed => Stop::Shutdown,
    }
}

/// Spawns the actors, serves them until asked to stop, shuts down.
async fn serve(mut args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let daemon = match args.start_redis {
        Some(port) => {
            let mut wanted = ProxyConfig::default();
            wanted.server_port = Some(port);
            let daemon = start_redis(&wanted).await?;
            args.redis = daemon.url();
            Some(daemon)
        }
        None => None,
    };
    let served = serve_on(args).await;
    if let Some(daemon) = daemon {
        daemon.shutdown()?;
    }
    served
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Serves on `args.redis` until asked to stop.
async fn serve_on(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let redis = args.redis.clone();
    let namespace = args.namespace.clone();
    let build = args.build;
    let rebalance = args.rebalance;
    let mut config = ProxyConfig::new(args.redis)
        .with_namespace(args.namespace)
        .with_codec(MsgPack)
        .with_snapshot_interval(None);
    if let Some(system) = args.system {
        config = config.with_system_id(system);
    }
    if let Some(bound) = args.shutdown {
        config.shutdown_timeout = bound;
    }
    // A drain (SIGTERM) hands over within half the budget, leaving the rest to the shutdown.
    config.drain_timeout = config.shutdown_timeout / 2;
    if let Some(ttl) = args.lease_ttl {
        // The tests' leases are short for the URNs too: a plain URN moves once its key lapses.
        config.lease_ttl = ttl;
        config.urn_ttl = ttl;
    }
    // A stopped server frees its URNs at once: clients get `UnknownUrn`, not a timeout (once
    // the route they cached, for `resolve_cache_ttl`, lapsed).
    config.release_on_shutdown = true;
    let system = ActorSystem::new("pyserver");
    system
        .build(shapes::Shapes::default())
        .on_panic(PanicPolicy::Resume)
        .spawn()
        .await?;
    system.build(shapes::Counter::default()).spawn().await?;
    system.build(shapes::Narrow).spawn().await?;
    system
        .build(cancellable::Cancellable::default())
        .spawn()
        .await?;
    system
        .build(mirror::Mirror::default())
        .urn("conf:counter")
        .on_panic(PanicPolicy::Resume)
        .spawn()
        .await?;
    // Found through a pattern key by the tests that delete its URN key.
    system
        .build(mirror::Mirror::default())
        .urn("pytest:echo")
        .spawn()
        .await?;
    // Served as groups by every test server of the namespace (`test_groups.py`, and the
    // conformance cases' `conf:shared`).
    for urn in ["py:shared", "conf:shared"] {
        system
            .build(mirror::Mirror::default())
            .urn(urn)
            .spawn()
            .await?;
    }
    // Publishes to topics (`test_topics.py`) through the proxy's `Topics`, set below.
    let publisher = publisher::Publisher::default();
    let publisher_topics = publisher.topics.clone();
    system.build(publisher).urn("py:publisher").spawn().await?;
    let proxy = start_proxy(&system, &config).await?;
    let _ = publisher_topics.set(proxy.topics());
    proxy.join("py:shared").await?;
    proxy.join("conf:shared").await?;
    // Activated on demand by URN (`py:item:7`).
    proxy
        .activate(
            "py:item:{id}",
            |_a: conclib::redis::scale::Activation| async move {
                Ok::<_, String>(shapes::Counter::default())
            },
        )
        .await?;
    // The conformance actor by pattern, beside the Python actor hosts that serve the same
    // pattern with the same actor written in Python (`test_host_group.py`).
    let conf_pat = proxy.activate(
        "conf:pat:{id}",
        |_a: conclib::redis::scale::Activation| async move {
            Ok::<_, String>(mirror::Mirror::default())
        },
    );
    if rebalance {
        conf_pat.rebalance().await?;
    } else {
        conf_pat.await?;
    }
    // Counters kept in the fenced state store, beside Python members serving the same
    // pattern with the same actor written in Python (`test_host_store.py`).
    proxy
        .activate("py:tally:{id}", tally::Tally::activate)
        .await?;
    // Counts in memory only, carried when a server is drained (`test_host_carry.py`).
    proxy
        .activate("py:carry:{id}", tally::Carry::activate)
        .await?;
    // At most one request pending per URN (`test_overload.py`): a second one while a `Nap`
    // runs is refused `Overloaded` at once.
    proxy
        .activate(
            "py:busy:{id}",
            |_a: conclib::redis::scale::Activation| async move {
                Ok::<_, String>(shapes::Shapes::default())
            },
        )
        .max_pending_per_urn(1)
        .await?;
    // Reminders (`test_reminders.py`): `py:remind:{id}` keeps the ticks delivered by this
    // server's poller.
    proxy
        .activate(
            "py:remind:{id}",
            |_a: conclib::redis::scale::Activation| async move {
                Ok::<_, String>(reminded::Reminded::default())
            },
        )
        .await?;
    // A durable workflow (`test_durable.py`): its steps journaled in the URN's state.
    proxy
        .activate(
            "py:order:{id}",
            |a: conclib::redis::scale::Activation| async move {
                Ok::<_, String>(orders::Orders::new(conclib::redis::durable::Journal::new(
                    a.into_store(),
                )))
            },
        )
        .await?;
    // Two builds of one pattern (`test_versions.py`): `--build 1` or `--build 2`.
    if let Some(build) = build {
        let system = config.system_id.clone().unwrap_or_default();
        let pattern = "py:ver:{id}";
        let activator = if build == 1 {
            proxy.activate(pattern, move |_a: conclib::redis::scale::Activation| {
                let system = system.clone();
                async move { Ok::<_, String>(versioned::LedgerV1 { total: 0, system }) }
            })
        } else {
            proxy.activate(pattern, move |_a: conclib::redis::scale::Activation| {
                let system = system.clone();
                async move { Ok::<_, String>(versioned::LedgerV2 { total: 0, system }) }
            })
        };
        activator.never_passivate().await?;
    }
    let reminder_client = ProxyClient::connect(&config).await?;
    let poller = ReminderPoller::start(
        &reminder_client,
        ReminderPollerOptions::default().with_poll_interval(Duration::from_millis(50)),
    )?;
    eprintln!(
        "conclib-pyserver: serving py:counter, py:shapes, ... on {} namespace {namespace}; \
         SIGINT (Ctrl-C) or SIGTERM stops it",
        redact(&redis)
    );
    let signals = stop_signals();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY")?;
        out.flush()?;
    }
    let stop = stop_requested(signals, args.exit_with_stdin).await;
    // One budget for the whole stop, whatever Redis does: each part is bounded by it, and
    // together too (a part cut short leaves what it held in Redis for the next holder).
    let bound = config.shutdown_timeout;
    let drain = async {
        poller.shutdown().await;
        reminder_client.shutdown().await;
        match stop {
            Stop::Drain => proxy.drain().await.map(|drained| {
                eprintln!(
                    "conclib-pyserver: drained: {} activations handed over in {:?}",
                    drained.handed, drained.took
                );
            }),
            Stop::Shutdown => proxy.shutdown().await,
        }
    };
    let drained = match tokio::time::timeout(bound, drain).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("the shutdown did not finish within {bound:?}")),
    };
    system.shutdown(Duration::from_secs(5)).await?;
    drained.map_err(Into::into)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    if args.export_schema {
        let schema = export_schema();
        println!(
            "{}",
            serde_json::to_string_pretty(&schema).expect("JSON of a JSON value")
        );
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let served = runtime.block_on(serve(args));
    // The task reading standard input sits in a blocking read: do not wait for it.
    runtime.shutdown_background();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclib-pyserver: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// The schema describes every exposed message of every actor (`done` checks it).
    #[test]
    fn the_schema_lists_what_each_actor_exposes() {
        let schema = super::export_schema();
        let actors = schema["actors"].as_array().unwrap();
        assert_eq!(actors.len(), 4);
        assert!(schema["$defs"]["PlaceOrder"].is_object());
    }
}
