//! The example web API: an axum server whose routes ask the demo's actors
//! ([`crate::actors`]) through a [`ProxyClient`], answering JSON and mapping every
//! [`AskError`] to an HTTP status.
//!
//! | route | asks | answer |
//! |---|---|---|
//! | `GET /healthz` | nothing | `{"status":"ok","name":..,"pid":..}` |
//! | `POST /counters/{name}/increment?by=N` (`by` defaults to 1) | [`Increment`] at `counter:{name}` | `{"counter":..,"value":..}` |
//! | `GET /counters/{name}` | [`ReadCounter`] at `counter:{name}` | `{"counter":..,"value":..}` |
//! | `PUT /kv/{key}` with `{"value":".."}` | [`Put`] at `kv` | `{"key":..,"previous":..}` |
//! | `GET /kv/{key}` | [`Get`] at `kv` | `{"key":..,"value":..}`, or 404 `key_not_found` |
//! | `POST /hash?seed=S&rounds=N` | [`struct@Hash`] at `hashers` (a pool of process actors) | `{"hash":..,"pid":..}` |
//! | `POST /visits/{page}` | tells [`Visit`] to `tracker` | 202 `{"page":..}` |
//! | `GET /visits` | [`ShardCounts`] at `tracker` | `{"shards":[..]}` |
//!
//! Errors are JSON too: `{"error": code, "message": text}`, plus `"detail"` holding the
//! actor's own error for `actor_error`. See [`status_of`] for the mapping.
//!
//! A process of this API is started as `demo web --port N` (see [`run`]): the Redis URL,
//! namespace and ask timeout come from the environment ([`ProxyConfig::from_env`]:
//! `CONCLIB_REDIS_URL`, `CONCLIB_REDIS_NAMESPACE`, `CONCLIB_REDIS_TIMEOUT_MS`), each
//! overridable by an argument.

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use conclib::AskError;
use conclib::redis::{ProxyClient, ProxyConfig};
use conclib::trace::TraceContext;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::BoxError;
use crate::actors::{
    Get, HASHERS_URN, Hash, Hashed, Increment, KV_URN, Put, ReadCounter, ShardCounts, TRACKER_URN,
    Visit, counter_urn,
};

/// How a web process is configured: from its arguments and environment ([`WebConfig::parse`]).
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The address to listen on. `--host`, default 127.0.0.1.
    pub host: IpAddr,
    /// The port to listen on. `--port`, required.
    pub port: u16,
    /// The name the process reports in `/healthz`. `--name`, default `web-{port}`.
    pub name: String,
    /// How to reach the actors: [`ProxyConfig::from_env`], then `--redis-url`,
    /// `--namespace` and `--timeout-ms`.
    pub proxy: ProxyConfig,
}

/// The usage line of a web process.
pub const USAGE: &str = "usage: demo web --port N [--host ADDR] [--name NAME] [--redis-url URL] [--namespace NS] [--timeout-ms MS]";

impl WebConfig {
    /// Reads the arguments that follow `web` (and the `CONCLIB_REDIS_*` environment).
    ///
    /// # Errors
    /// A message saying which argument or variable is wrong.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<WebConfig, String> {
        let mut proxy = ProxyConfig::from_env().map_err(|e| e.to_string())?;
        let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut port = None;
        let mut name = None;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))
            };
            match flag.as_str() {
                "--port" => port = Some(value()?.parse().map_err(|e| format!("--port: {e}"))?),
                "--host" => host = value()?.parse().map_err(|e| format!("--host: {e}"))?,
                "--name" => name = Some(value()?),
                "--redis-url" => proxy.url = value()?,
                "--namespace" => proxy.namespace = value()?,
                "--timeout-ms" => {
                    let ms: u64 = value()?.parse().map_err(|e| format!("--timeout-ms: {e}"))?;
                    proxy.ask_timeout = Duration::from_millis(ms);
                }
                other => return Err(format!("unknown argument {other:?}; {USAGE}")),
            }
        }
        let port: u16 = port.ok_or_else(|| format!("--port is required; {USAGE}"))?;
        Ok(WebConfig {
            host,
            port,
            name: name.unwrap_or_else(|| format!("web-{port}")),
            proxy,
        })
    }
}

/// How long a stopping web process waits for [`ProxyClient::shutdown`].
const CLIENT_SHUTDOWN_WAIT: Duration = Duration::from_millis(300);

/// What the handlers share.
#[derive(Clone)]
struct App {
    client: ProxyClient,
    name: Arc<str>,
}

/// The API's routes, asking actors through `client`; `name` is reported by `/healthz`.
pub fn router(client: ProxyClient, name: &str) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/counters/{name}", get(read_counter))
        .route("/counters/{name}/increment", post(increment))
        .route("/kv/{key}", get(kv_get).put(kv_put))
        .route("/hash", post(hash))
        .route("/visits/{page}", post(visit))
        .route("/visits", get(visits))
        .fallback(|| async { HttpError::new(StatusCode::NOT_FOUND, "no_route", "no such route") })
        .layer(axum::middleware::from_fn(continue_trace))
        .with_state(App {
            client,
            name: name.into(),
        })
}

/// Runs the handler in the trace of the request's W3C `traceparent` header, if it has a
/// valid one: the asks it sends through the proxy carry the trace on to the actors.
async fn continue_trace(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let trace = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    match trace {
        Some(trace) => {
            let span = tracing::info_span!(
                "http",
                method = %request.method(),
                path = %request.uri().path(),
                trace_id = %trace.trace_id(),
                parent_span_id = %trace.span_id(),
            );
            trace
                .child()
                .scope(next.run(request))
                .instrument(span)
                .await
        }
        None => next.run(request).await,
    }
}

/// Serves the API until `shutdown` completes, then lets requests in progress finish.
///
/// Connects to Redis first: a process that cannot reach its actors never answers `/healthz`.
///
/// # Errors
/// Redis unreachable, or the address cannot be bound.
pub async fn serve(
    config: WebConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let client = ProxyClient::connect(&config.proxy).await?;
    let address = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    tracing::info!(name = %config.name, %address, namespace = %config.proxy.namespace, "web API listening");
    let result = axum::serve(listener, router(client.clone(), &config.name))
        .with_graceful_shutdown(shutdown)
        .await;
    // The reply reader's blocking read holds `shutdown` up to 2 s after the reply list is
    // deleted and the command connections closed; nothing is left to wait for by then.
    let _ = tokio::time::timeout(CLIENT_SHUTDOWN_WAIT, client.shutdown()).await;
    result?;
    tracing::info!(name = %config.name, "web API stopped");
    Ok(())
}

/// The entry point of a web process: parses `args` (what follows `web`), serves until
/// SIGTERM or Ctrl-C, and returns the process's exit code.
pub async fn run(args: impl IntoIterator<Item = String>) -> std::process::ExitCode {
    let config = match WebConfig::parse(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    match serve(config, stop_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("web API failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes at SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// An error answer: a status and `{"error": code, "message": text, "detail": ..}`.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short machine-readable code (`unknown_actor`, `timeout`, ...).
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
    /// The actor's own error, as JSON, for `actor_error`.
    pub detail: Option<Value>,
}

impl HttpError {
    /// An error without detail.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: message.into(),
            detail: None,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let Some(detail) = self.detail {
            body["detail"] = detail;
        }
        (self.status, Json(body)).into_response()
    }
}

/// The status and code an [`AskError`] is answered with:
///
/// | error | status | code |
/// |---|---|---|
/// | `UnknownUrn` | 404 Not Found | `unknown_actor` |
/// | `UnknownMessage` | 501 Not Implemented | `unknown_message` |
/// | `Handler` (the actor's own error) | 502 Bad Gateway | `actor_error` |
/// | `Panicked` | 502 Bad Gateway | `actor_panicked` |
/// | `NoResponse` | 502 Bad Gateway | `no_response` |
/// | `Transport` (the proxy refused, Redis errors, a closed client) | 502 Bad Gateway | `proxy_error` |
/// | `ActorStopped` | 503 Service Unavailable | `actor_stopped` |
/// | `MailboxFull` | 503 Service Unavailable | `overloaded` |
/// | `Unavailable` | 503 Service Unavailable | `redis_unavailable` |
/// | `Timeout` | 504 Gateway Timeout | `timeout` |
/// | `Codec` | 400 Bad Request | `bad_request` |
/// | `TooLarge` | 413 Content Too Large | `too_large` |
/// | anything else | 500 Internal Server Error | `internal` |
pub fn status_of<E>(error: &AskError<E>) -> (StatusCode, &'static str) {
    match error {
        AskError::UnknownUrn { .. } => (StatusCode::NOT_FOUND, "unknown_actor"),
        AskError::UnknownMessage { .. } => (StatusCode::NOT_IMPLEMENTED, "unknown_message"),
        AskError::Handler(_) => (StatusCode::BAD_GATEWAY, "actor_error"),
        AskError::Panicked(_) => (StatusCode::BAD_GATEWAY, "actor_panicked"),
        AskError::NoResponse => (StatusCode::BAD_GATEWAY, "no_response"),
        AskError::Transport(_) => (StatusCode::BAD_GATEWAY, "proxy_error"),
        AskError::ActorStopped => (StatusCode::SERVICE_UNAVAILABLE, "actor_stopped"),
        AskError::MailboxFull => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        AskError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable"),
        AskError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        AskError::Codec(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        AskError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl<E: Serialize + Debug> From<AskError<E>> for HttpError {
    fn from(error: AskError<E>) -> Self {
        let (status, code) = status_of(&error);
        let detail = error
            .handler_error()
            .and_then(|e| serde_json::to_value(e).ok());
        HttpError {
            status,
            code,
            message: error.to_string(),
            detail,
        }
    }
}

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> Self {
        HttpError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> Self {
        HttpError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

/// `GET /healthz`.
async fn healthz(State(app): State<App>) -> Json<Value> {
    Json(json!({ "status": "ok", "name": &*app.name, "pid": std::process::id() }))
}

/// The parameters of `POST /counters/{name}/increment`.
#[derive(Debug, Deserialize)]
struct IncrementParams {
    by: Option<u64>,
}

/// The answer of the counter routes.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CounterValue {
    /// The counter's name.
    pub counter: String,
    /// Its value.
    pub value: u64,
}

/// `POST /counters/{name}/increment?by=N`.
async fn increment(
    State(app): State<App>,
    Path(name): Path<String>,
    params: Result<Query<IncrementParams>, QueryRejection>,
) -> Result<Json<CounterValue>, HttpError> {
    let Query(params) = params?;
    let by = params.by.unwrap_or(1);
    let value = app.client.ask(counter_urn(&name), Increment { by }).await?;
    Ok(Json(CounterValue {
        counter: name,
        value,
    }))
}

/// `GET /counters/{name}`.
async fn read_counter(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<CounterValue>, HttpError> {
    let value = app.client.ask(counter_urn(&name), ReadCounter).await?;
    Ok(Json(CounterValue {
        counter: name,
        value,
    }))
}

/// The body of `PUT /kv/{key}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PutBody {
    /// The value to store.
    pub value: String,
}

/// `PUT /kv/{key}`.
async fn kv_put(
    State(app): State<App>,
    Path(key): Path<String>,
    body: Result<Json<PutBody>, JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let Json(PutBody { value }) = body?;
    let previous = app
        .client
        .ask(
            KV_URN,
            Put {
                key: key.clone(),
                value,
            },
        )
        .await?;
    Ok(Json(json!({ "key": key, "previous": previous })))
}

/// `GET /kv/{key}`.
async fn kv_get(State(app): State<App>, Path(key): Path<String>) -> Result<Json<Value>, HttpError> {
    match app.client.ask(KV_URN, Get { key: key.clone() }).await? {
        Some(value) => Ok(Json(json!({ "key": key, "value": value }))),
        None => Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            format!("no value under {key:?}"),
        )),
    }
}

/// The parameters of `POST /hash`.
#[derive(Debug, Deserialize)]
struct HashParams {
    seed: u64,
    rounds: u32,
}

/// `POST /hash?seed=S&rounds=N`: CPU-bound work, done by a member of a pool of process
/// actors.
async fn hash(
    State(app): State<App>,
    params: Result<Query<HashParams>, QueryRejection>,
) -> Result<Json<Hashed>, HttpError> {
    let Query(HashParams { seed, rounds }) = params?;
    Ok(Json(
        app.client.ask(HASHERS_URN, Hash { seed, rounds }).await?,
    ))
}

/// `POST /visits/{page}`: a tell (accepted once Redis holds it).
async fn visit(
    State(app): State<App>,
    Path(page): Path<String>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    app.client
        .tell(TRACKER_URN, Visit { page: page.clone() })
        .await
        .map_err(|e| {
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        })?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "page": page }))))
}

/// `GET /visits`: what each shard of the tracker counted.
async fn visits(State(app): State<App>) -> Result<Json<Value>, HttpError> {
    let shards = app.client.ask(TRACKER_URN, ShardCounts).await?;
    Ok(Json(json!({ "shards": shards })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::CounterError;

    #[test]
    fn proxy_errors_map_to_statuses() {
        let cases: Vec<(AskError<CounterError>, u16)> = vec![
            (
                AskError::UnknownUrn {
                    urn: "counter:x".into(),
                },
                404,
            ),
            (AskError::Timeout(Duration::from_secs(1)), 504),
            (
                AskError::Handler(CounterError::StepOutOfRange { by: 0, max: 1 }),
                502,
            ),
            (AskError::Unavailable("gone".into()), 503),
            (AskError::Codec("bad".into()), 400),
            (AskError::TooLarge("big".into()), 413),
            (AskError::Panicked("boom".into()), 502),
            (AskError::Transport("closed".into()), 502),
            (AskError::MailboxFull, 503),
        ];
        for (error, status) in cases {
            assert_eq!(status_of(&error).0.as_u16(), status, "{error:?}");
        }
        let http = HttpError::from(AskError::Handler(CounterError::StepOutOfRange {
            by: 0,
            max: 1,
        }));
        assert_eq!(
            http.detail,
            Some(json!({ "step_out_of_range": { "by": 0, "max": 1 } }))
        );
    }

    #[test]
    fn arguments_override_the_environment() {
        let args = [
            "--port",
            "8080",
            "--name",
            "w",
            "--namespace",
            "ns",
            "--timeout-ms",
            "250",
        ];
        let config = WebConfig::parse(args.map(String::from)).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.name, "w");
        assert_eq!(config.proxy.namespace, "ns");
        assert_eq!(config.proxy.ask_timeout, Duration::from_millis(250));
        assert!(
            WebConfig::parse(["--name".to_owned(), "w".to_owned()])
                .unwrap_err()
                .contains("--port")
        );
        assert!(
            WebConfig::parse(["--bogus".to_owned()])
                .unwrap_err()
                .contains("unknown argument")
        );
    }
}
