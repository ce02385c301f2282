//! conclib's metrics in the Prometheus text format (feature `prometheus`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = conclib_view::prometheus::install()?;      // records from now on
//! let app = conclib_view::prometheus::router(handle);     // GET /metrics
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9100").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # What is exported
//! Counters and gauges as they are. Every histogram as a Prometheus histogram with fixed
//! buckets (`_bucket{le=..}`, `_sum`, `_count`), not a summary: a series holds one counter
//! per bucket whatever it records, where a summary's quantile sketches grow with the
//! values seen (about 15 KiB more memory per thousand operations in the soak example).
//! Durations (the names ending in `_seconds`) use [`SECONDS_BUCKETS`], counts (the proxy's
//! `conclib_proxy_read_batch_size`) use [`COUNT_BUCKETS`]. Quantiles are read with
//! `histogram_quantile()` on the server.
//!
//! # What a sample costs
//! Gauges are `metrics-exporter-prometheus`'s; counters and histograms are this module's
//! own ([`PrometheusRecorder`]), kept per thread: each of up to 16 threads at a time that
//! adds to a series has cells of its own there (128 bytes, which only it writes; a render
//! adds them up), so an increment is a plain load and store, and a histogram sample a
//! search among the bounds and two such adds — no locked instruction, no allocation after
//! a thread's first add to a series, no clock read, nothing to drain later (the exporter's
//! histograms keep every sample until the next render, about 165 instructions each; an
//! actor records two per message; its counters make two locked adds an increment, on a
//! line all the actors of a type share). A counter given absolute values
//! ([`metrics::Counter::absolute`]) shows the largest, or its increments added up if they
//! are more. A NaN sample is dropped. [`install`] also tells conclib's actors the
//! buckets ([`conclib_core::metrics::set_seconds_buckets`]): an actor then adds up a batch
//! of messages' durations per bucket and hands each bucket over in one call.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

mod buckets;
mod cells;
mod counter;
mod histogram;
mod recorder;

pub use buckets::{COUNT_BUCKETS, SECONDS_BUCKETS};
pub use recorder::{PrometheusHandle, PrometheusRecorder};

/// Installs a [`PrometheusRecorder`] as the process's global `metrics` recorder (its
/// histograms with buckets, see [the module's docs](self)) and turns conclib's metrics on
/// ([`conclib_core::metrics::enable`]).
///
/// # Errors
/// [`InstallError::RecorderAlreadyInstalled`] when the process has a global recorder
/// already (then conclib's metrics stay as they were).
pub fn install() -> Result<PrometheusHandle, InstallError> {
    let recorder = PrometheusRecorder::new();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| InstallError::RecorderAlreadyInstalled)?;
    // The recorder keeps only buckets, so actors may add up a batch's samples per bucket
    // and hand each bucket over at once. Refused only if set already (by the caller, who
    // then said what the buckets are): the samples still land in ours, one by one or not.
    let _ = conclib_core::metrics::set_seconds_buckets(&SECONDS_BUCKETS);
    conclib_core::metrics::enable();
    Ok(handle)
}

/// Why [`install`] did not install its recorder.
///
/// ```
/// use conclib_view::prometheus::{InstallError, install};
///
/// install().expect("the first recorder installs");
/// assert!(matches!(install(), Err(InstallError::RecorderAlreadyInstalled)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallError {
    /// The process has a global `metrics` recorder already: the `metrics` facade takes
    /// one, once.
    RecorderAlreadyInstalled,
}

impl std::fmt::Display for InstallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallError::RecorderAlreadyInstalled => {
                f.write_str("a global metrics recorder is installed already")
            }
        }
    }
}

impl std::error::Error for InstallError {}

/// `GET /metrics`: what `handle` recorded, in the Prometheus text format.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let body = handle.render();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    )
}
