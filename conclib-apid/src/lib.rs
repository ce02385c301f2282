//! Run a web server as a child process for as long as you need it.
//!
//! [`start_api`] launches the server, polls its health-check URL with a real
//! HTTP client until it answers `200 OK`, and hands back an [`ApiDaemon`];
//! [`ApiDaemon::shutdown`] stops the server and every process it forked.
//!
//! ```no_run
//! use std::time::Duration;
//! use conclib_apid::{start_api, ApiConfig, ApiError};
//!
//! # async fn run() -> Result<(), ApiError> {
//! let config = ApiConfig::new("users-api", "./target/debug/users-api", "http://127.0.0.1:8080/healthz")
//!     .args(["--port", "8080"])
//!     .env("RUST_LOG", "info")
//!     .startup_timeout(Duration::from_secs(10))
//!     .shutdown_grace(Duration::from_secs(3));
//!
//! let daemon = start_api(config).await?; // returns once /healthz answered 200
//! println!("{} is up as pid {}", daemon.name(), daemon.pid());
//!
//! // ... talk to http://127.0.0.1:8080 ...
//!
//! let outcome = daemon.shutdown().await?; // SIGTERM, grace period, SIGKILL
//! println!("stopped: {:?} (killed: {})", outcome.status(), outcome.was_killed());
//! # Ok(())
//! # }
//! ```
//!
//! # What you get
//!
//! - **Precise startup errors** ([`ApiError`]): the program is not found;
//!   the server exits early (exit status and its last output lines); the
//!   health check never answers 200 in time (the URL, the last HTTP status
//!   or connection error, and the last output lines). Polling stops as soon
//!   as the child exits.
//! - **Output**: the child's standard output and error are logged with
//!   `tracing` (`INFO` and `WARN`, target `conclib_apid::output`, field
//!   `api` = the server's name) and the last lines kept in a bounded ring
//!   ([`ApiDaemon::recent_output`], [`OutputLog`]).
//! - **No leftovers**: the server leads its own process group, and
//!   shutdown, drop and a failed start all signal the whole group, so
//!   workers the server forked go with it. Dropping an [`ApiDaemon`] kills
//!   the group with `SIGKILL` synchronously. On Linux the server also gets
//!   `SIGKILL` if this process dies (`PR_SET_PDEATHSIG`); children are
//!   forked from one long-lived internal thread so that the signal does not
//!   fire when a short-lived runtime thread exits. That signal reaches the
//!   server alone, not the workers it forked: if this process is killed
//!   (`SIGKILL`, so nothing of it runs to signal the group), workers that do
//!   not watch their own parent outlive it.
//! - **Signals as by default**: the server starts with the default
//!   dispositions of `SIGINT`, `SIGQUIT`, `SIGHUP` and `SIGTERM`, even when
//!   this process ignores them (started in the background by a shell, or
//!   under `nohup`), so a signal meant for the server stops it.
//!
//! # Requirements
//!
//! Unix only. [`start_api`] must run inside a Tokio runtime with I/O and
//! time enabled (`#[tokio::main]` and `#[tokio::test]` do). The health
//! check speaks plain HTTP/1.1 and ignores proxy settings.

#![cfg(unix)]

mod config;
mod daemon;
mod error;
mod output;

pub use config::{
    ApiConfig, DEFAULT_OUTPUT_CAPACITY, DEFAULT_POLL_INTERVAL, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_STARTUP_TIMEOUT,
};
pub use daemon::{ApiDaemon, ShutdownOutcome, start_api};
pub use error::{ApiError, HealthAttempt};
pub use output::{OutputLine, OutputLog, OutputStream};
