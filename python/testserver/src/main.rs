//! The Rust serving process of the Python client's tests.
//!
//! ```text
//! conclib-pyserver --redis redis://127.0.0.1:PORT --namespace NS [--system ID] [--lease-ttl-ms MS]
//! conclib-pyserver --export-schema
//! ```
//!
//! Serving: spawns the actors of [`shapes`] (URNs `py:shapes`, `py:counter`, `py:narrow`)
//! and the conformance actor of [`mirror`] (`conf:counter`, and a second one at `pytest:echo`
//! for the pattern tests), starts the Redis proxy (the
//! client side of its configuration uses MessagePack; the proxy answers each request in the
//! codec it came in; `--lease-ttl-ms` sets its lease time, 15 s by default: the URN keys are
//! renewed every third of it), prints `READY` on stdout, and runs until SIGTERM, SIGINT or the end of
//! its standard input, then shuts the proxy and the actors down and exits 0.
//!
//! `--export-schema` prints what each actor exposes as JSON ([`schema`]) and exits.

mod mirror;
mod schema;
mod shapes;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use conclib::redis::{MsgPack, ProxyConfig, start_proxy};
use conclib::{ActorSystem, PanicPolicy};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

/// The command line.
struct Args {
    redis: String,
    namespace: String,
    system: Option<String>,
    lease_ttl: Option<Duration>,
    export_schema: bool,
}

/// Reads the command line; `Err` holds the usage message.
fn parse_args() -> Result<Args, String> {
    let usage = "usage: conclib-pyserver --redis URL --namespace NS [--system ID] [--lease-ttl-ms MS] | --export-schema";
    let mut args = Args {
        redis: String::new(),
        namespace: "conclib".to_owned(),
        system: None,
        lease_ttl: None,
        export_schema: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{usage}"))
        };
        match arg.as_str() {
            "--redis" => args.redis = value()?,
            "--namespace" => args.namespace = value()?,
            "--system" => args.system = Some(value()?),
            "--lease-ttl-ms" => {
                let ms = value()?;
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("--lease-ttl-ms needs milliseconds, got {ms:?}"))?;
                args.lease_ttl = Some(Duration::from_millis(ms));
            }
            "--export-schema" => args.export_schema = true,
            _ => return Err(format!("unknown argument {arg:?}\n{usage}")),
        }
    }
    if !args.export_schema && args.redis.is_empty() {
        return Err(usage.to_owned());
    }
    Ok(args)
}

/// The schema of every actor the Python stubs cover.
fn export_schema() -> serde_json::Value {
    use shapes::*;
    let mut export = schema::Export::default();
    export
        .actor::<Shapes>("py:shapes")
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
        .actor::<Counter>("py:counter")
        .message::<Add>()
        .infallible::<Get>()
        .infallible::<Record>()
        .infallible::<History>()
        .infallible::<Reset>()
        .infallible::<HoldUntilQueued>()
        .done();
    export
        .actor::<Narrow>("py:narrow")
        .infallible::<Occupy>()
        .done();
    export.finish()
}

/// Resolves at SIGTERM, SIGINT, or when standard input ends (the test process died).
async fn stop_requested() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        () = stdin_closed => {}
    }
}

/// Spawns the actors, serves them until asked to stop, shuts down.
async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ProxyConfig::new(args.redis)
        .with_namespace(args.namespace)
        .with_codec(MsgPack)
        .with_snapshot_interval(None);
    if let Some(system) = args.system {
        config = config.with_system_id(system);
    }
    if let Some(ttl) = args.lease_ttl {
        config.lease_ttl = ttl;
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
    let proxy = start_proxy(&system, &config).await?;
    proxy.join("py:shared").await?;
    proxy.join("conf:shared").await?;
    // Activated on demand by URN (`py:item:7`).
    proxy
        .activate("py:item:{id}", |_a: conclib::redis::Activation| async move {
            Ok::<_, String>(shapes::Counter::default())
        })
        .await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "READY")?;
        out.flush()?;
    }
    stop_requested().await;
    proxy.shutdown().await?;
    system.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
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
        assert_eq!(actors.len(), 3);
        assert!(schema["$defs"]["PlaceOrder"].is_object());
    }
}
