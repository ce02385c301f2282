//! Shared code of the conclib examples and demo.
//!
//! The end-to-end demo (`cargo xtask demo`) runs:
//!
//! - a private Redis ([`conclib::redis::start_redis`]);
//! - an actor system with a [`Counter`](actors::Counter) and a [`KvStore`](actors::KvStore),
//!   made reachable through Redis by the proxy ([`conclib::redis::start_proxy`]);
//! - three processes of an axum web API ([`web`]) that ask those actors with a
//!   [`ProxyClient`](conclib::redis::ProxyClient), launched with [`conclib::apid::start_api`];
//! - concurrent HTTP traffic at them ([`load`]), then a summary and a clean shutdown;
//! - a last scene ([`mixed`]): Rust members and a Python member serving one pattern, FastAPI
//!   workers asking them, the Python member SIGKILLed mid-load.
//!
//! [`cluster`] starts and stops the processes; the end-to-end tests (`tests/e2e.rs`) use it
//! too.

pub mod actors;
pub mod cluster;
pub mod durable;
pub mod failover;
pub mod load;
pub mod mixed;
pub mod rolling;
pub mod sse;
pub mod web;

/// The error type of the demo's fallible steps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Logs to standard error with `tracing`, filtered by `RUST_LOG` (default: warnings and
/// errors only). Does nothing if a subscriber is already set.
pub fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
