//! `/livez` and `/readyz` for an orchestrator's probes, from a proxy's
//! [`ReadinessProbe`]: [`health`].

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclib_redis::readiness::ReadinessProbe;

/// Two routes for a serving process's probes:
/// - `GET /livez`: `200` while the process answers HTTP at all (a liveness probe);
/// - `GET /readyz`: `200 {"ready": true, "state": "ready"}` while the proxy's lease is surely
///   held and it reads its stream, else `503` with the state (`lease_uncertain`,
///   `draining`, `replaced`, `stopped`; see [`Readiness`](conclib_redis::readiness::Readiness)).
///
/// In Kubernetes, point the readiness probe at `/readyz` and send SIGTERM as usual: the
/// probe fails from the moment the proxy's shutdown begins, so a rolling update waits for
/// the next pod to be ready before it stops another. Merge the routes into the live view's
/// router or any router of your own; they read a few atomics, never Redis.
///
/// ```no_run
/// # async fn demo(proxy: conclib_redis::ProxyHandle) -> std::io::Result<()> {
/// let app = conclib_view::health(proxy.readiness());
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8081").await?;
/// conclib_view::serve(listener, app, std::future::pending()).await
/// # }
/// ```
pub fn health(probe: ReadinessProbe) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

async fn readyz(State(probe): State<ReadinessProbe>) -> Response {
    let state = probe.check();
    let status = if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({"ready": state.is_ready(), "state": state.as_str()});
    (status, Json(body)).into_response()
}
