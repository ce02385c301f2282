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

use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
pub use metrics_exporter_prometheus::{BuildError, PrometheusHandle};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The upper bounds (`le`) of the buckets of every histogram of durations, in seconds: from
/// a microsecond (a handler that does little) to 25 s (past the default ask timeout), each
/// four or five times the one before.
pub const SECONDS_BUCKETS: [f64; 12] = [
    1e-6, 5e-6, 2.5e-5, 1e-4, 5e-4, 2.5e-3, 0.01, 0.05, 0.25, 1.0, 5.0, 25.0,
];

/// The upper bounds (`le`) of the buckets of the histograms of counts
/// (`conclib_proxy_read_batch_size`: requests read from Redis at once).
pub const COUNT_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs a Prometheus recorder as the process's global `metrics` recorder, its
/// histograms with buckets (see [the module's docs](self)), turns conclib's metrics on
/// ([`conclib_core::metrics::enable`]), and keeps the recorder's histograms drained (a
/// thread runs its upkeep every 5 s).
///
/// # Errors
/// [`BuildError`], e.g. when another global recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full("conclib_proxy_read_batch_size".into()),
            &COUNT_BUCKETS,
        )?
        .install_recorder()?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("prometheus-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| BuildError::FailedToCreateRuntime(e.to_string()))?;
    conclib_core::metrics::enable();
    Ok(handle)
}

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
