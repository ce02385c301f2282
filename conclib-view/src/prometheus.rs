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

use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
pub use metrics_exporter_prometheus::{BuildError, PrometheusHandle};

/// Installs a Prometheus recorder as the process's global `metrics` recorder, turns
/// conclib's metrics on ([`conclib_core::metrics::enable`]), and keeps the recorder's
/// histograms drained (a thread runs its upkeep every 5 s).
///
/// # Errors
/// [`BuildError`], e.g. when another global recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
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
