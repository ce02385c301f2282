//! A live view of every conclib actor system on one Redis: an [axum](https://docs.rs/axum)
//! [`Router`] you mount in your own server, or serve alone with [`serve`].
//!
//! Every Redis proxy publishes its system's [snapshot](conclib_core::ActorSystem::snapshot)
//! (see [`conclib_redis::SnapshotReader`]); the view reads them all and shows, for each
//! system, its actor tree with each actor's mailbox depth and message rate (with small plots
//! of the last five minutes), messages handled, errors, panics and restarts (highlighted),
//! updating every second. The page is one HTML file with its script and styles inside:
//! nothing is loaded from elsewhere.
//!
//! ```no_run
//! use conclib_redis::{ProxyConfig, SnapshotReader};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ProxyConfig::new("redis://127.0.0.1:6379");
//! let reader = SnapshotReader::connect(&config).await?;
//! // Mounted under /conclib in your own router:
//! let app: axum::Router = axum::Router::new().merge(conclib_view::mount("/conclib", reader));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Routes
//! Routes are relative to where the view is mounted ([`mount`], or [`router`] nested by
//! hand, or served alone at `/`); the page finds its API wherever that is.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /api/systems` | JSON: every [`PublishedSystem`], sorted by system id, as read at most a second ago; `503` with a text body if Redis could not be read |
//! | `GET /api/history` | JSON: `{"<system_id>/<actor id>": {"mailbox": [..], "rate": [..]}}`, the last five minutes at one sample a second, oldest first |
//!
//! With the feature `prometheus`, [`prometheus::install`] records conclib's metrics and
//! [`prometheus::router`] serves them at `GET /metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclib_redis::{PublishedSystem, SnapshotReader};
use serde::Serialize;

#[cfg(feature = "prometheus")]
pub mod prometheus;

/// The page: HTML, styles and script in one file.
const PAGE: &str = include_str!("page.html");

/// How often the view reads the snapshots, and how many samples of each actor it keeps
/// for the plots (five minutes).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const HISTORY: usize = 300;

/// One actor's recent samples, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
struct Series {
    mailbox: Vec<usize>,
    rate: Vec<f64>,
}

struct ViewState {
    reader: SnapshotReader,
    /// The last read: what `/api/systems` answers (many viewers cost Redis one read a second).
    latest: Mutex<Option<Result<Vec<PublishedSystem>, String>>>,
    /// By `system_id/actor_id`.
    history: Mutex<HashMap<String, Series>>,
    sampling: OnceLock<()>,
}

impl ViewState {
    async fn sample(&self) {
        let read = self.reader.systems().await.map_err(|e| e.to_string());
        if let Ok(systems) = &read {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            let mut seen = HashMap::with_capacity(history.len());
            for system in systems {
                for actor in &system.snapshot.actors {
                    let key = format!("{}/{}", system.system_id, actor.id);
                    let mut series = history.remove(&key).unwrap_or_default();
                    series.mailbox.push(actor.mailbox_len);
                    series.rate.push(actor.rate);
                    if series.mailbox.len() > HISTORY {
                        series.mailbox.remove(0);
                        series.rate.remove(0);
                    }
                    seen.insert(key, series);
                }
            }
            // Actors that stopped leave the plots.
            *history = seen;
        }
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(read);
    }

    /// Starts reading the snapshots every second, once, from inside the runtime; the
    /// sampler ends when the router is dropped.
    async fn start_sampling(self: &Arc<Self>) {
        let mut first = false;
        self.sampling.get_or_init(|| first = true);
        if !first {
            return;
        }
        self.sample().await;
        let weak: Weak<ViewState> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(state) = weak.upgrade() else { return };
                state.sample().await;
            }
        });
    }
}

/// The view's routes (`/`, `/api/systems`, `/api/history`), reading snapshots with `reader`.
///
/// The view reads the snapshots once a second (however many are watching), from now on
/// when called inside a tokio runtime, else from its first request, and keeps five minutes
/// of each actor's mailbox depth and rate for the plots; it stops when the router is
/// dropped.
pub fn router(reader: SnapshotReader) -> Router {
    let state = Arc::new(ViewState {
        reader,
        latest: Mutex::new(None),
        history: Mutex::new(HashMap::new()),
        sampling: OnceLock::new(),
    });
    // Inside a runtime, start sampling now: a page opened later finds its plots filled.
    if tokio::runtime::Handle::try_current().is_ok() {
        let state = state.clone();
        tokio::spawn(async move { state.start_sampling().await });
    }
    Router::new()
        .route("/", get(page))
        .route("/api/systems", get(systems))
        .route("/api/history", get(history))
        .with_state(state)
}

/// The page, with a `<base>` that points its requests (the relative `api/systems` and
/// `api/history`) at this router wherever it is mounted: `nest("/conclib", ..)` serves it
/// at `/conclib`, where a relative path alone would resolve against `/`.
/// The view mounted under `prefix` (e.g. `/conclib`), ready to [`merge`](Router::merge)
/// into your own router: the page answers at `prefix` and, redirected there, at `prefix/`
/// (a router [`nest`](Router::nest)ed by hand answers at `prefix` only).
///
/// ```no_run
/// # async fn demo(reader: conclib_redis::SnapshotReader) {
/// let app: axum::Router = axum::Router::new().merge(conclib_view::mount("/conclib", reader));
/// # }
/// ```
pub fn mount(prefix: &str, reader: SnapshotReader) -> Router {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return router(reader);
    }
    let to = prefix.to_owned();
    Router::new().nest(prefix, router(reader)).route(
        &format!("{prefix}/"),
        get(move || async move { axum::response::Redirect::permanent(&to) }),
    )
}

async fn page(original: axum::extract::OriginalUri, uri: axum::http::Uri) -> Response {
    let (full, nested) = (original.0.path().to_owned(), uri.path().to_owned());
    // What the mount added in front of this router's own path ("" when not nested).
    let prefix = full
        .strip_suffix(nested.as_str())
        .unwrap_or(full.trim_end_matches('/'))
        .trim_end_matches('/');
    let base = format!("<base href=\"{}/\">", html_escape(prefix));
    let page = PAGE.replacen("<head>", &format!("<head>\n{base}"), 1);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    )
        .into_response()
}

/// Escapes text for an HTML attribute.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn systems(State(state): State<Arc<ViewState>>) -> Response {
    state.start_sampling().await;
    if state
        .latest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_none()
    {
        // Another request started the sampler and is still reading.
        state.sample().await;
    }
    let latest = state
        .latest
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match latest {
        Some(Ok(systems)) => axum::Json(systems).into_response(),
        Some(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the snapshots: {e}"),
        )
            .into_response(),
        None => unreachable!("sampled above"),
    }
}

async fn history(State(state): State<Arc<ViewState>>) -> Response {
    state.start_sampling().await;
    let history = state
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    axum::Json(history).into_response()
}

/// Serves `router` on `listener` until `shutdown` resolves.
///
/// # Errors
/// The listener's I/O error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
