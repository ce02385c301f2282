//! The live view of every conclib system on one Redis, served alone.
//!
//! ```text
//! cargo run -p conclib-examples --bin view -- --redis redis://127.0.0.1:6379 [--namespace NS] [--port N]
//! ```
//!
//! Prints `live view: http://127.0.0.1:PORT/` and serves until Ctrl-C. Every proxy on that
//! Redis and namespace publishes its system's snapshot; the page shows them all.

use std::process::ExitCode;

use conclib::redis::{ProxyConfig, snapshots::SnapshotReader};
use conclib_examples::{BoxError, init_tracing};

const USAGE: &str = "usage: view --redis URL [--namespace NS] [--port N] [--bind ADDR]";

struct Options {
    config: ProxyConfig,
    bind: String,
    port: u16,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut config = ProxyConfig::default();
    let mut bind = "127.0.0.1".to_owned();
    let mut port = 0;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--redis" => config = config.with_url(value()?),
            "--namespace" => config = config.with_namespace(value()?),
            "--bind" => bind = value()?,
            "--port" => {
                let v = value()?;
                port = v
                    .parse()
                    .map_err(|_| format!("--port: expected a port number, got {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Options { config, bind, port })
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match serve(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("view: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<(), BoxError> {
    let reader = SnapshotReader::connect(&options.config).await?;
    let listener = tokio::net::TcpListener::bind((options.bind.as_str(), options.port)).await?;
    println!("live view: http://{}/", listener.local_addr()?);
    conclib::view::serve(listener, conclib::view::router(reader), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
