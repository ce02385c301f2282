//! A live view of every conclib actor system on one Redis: an [axum](https://docs.rs/axum)
//! [`Router`] you mount in your own server, or serve alone with [`serve`].
//!
//! Every Redis proxy publishes its system's snapshot (see [`conclib_redis::snapshots::SnapshotReader`]):
//! its most telling actors in full, most telling first (failures in the last interval, deep
//! mailboxes, high rates: [`ActorSystem::snapshot_first`](conclib_core::ActorSystem::snapshot_first)),
//! and the rest in brief. The view reads them all once a second and shows, for each system,
//! one page of its actors at a time — most telling first, or sorted by any column, or
//! found by a search on URN, type or id, all done by the server — with each actor's mailbox
//! depth and message rate (with small plots of the last five minutes), messages handled,
//! errors, panics and restarts (highlighted), updating every second. The page asks only for
//! the rows it shows and for the plots' samples it does not have yet, and redraws only what
//! changed. With [metrics](conclib_core::metrics) on in a system's process, its section also
//! shows, per actor type and message type, the calls per second, error rate and
//! handling-time percentiles between its last two snapshots. The page is one HTML file with
//! its script and styles inside: nothing is loaded from elsewhere.
//!
//! ```no_run
//! use conclib_redis::{ProxyConfig, snapshots::SnapshotReader};
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
//! | `GET /` | the page (its search, sort and page in the URL's fragment: `#q=worker:7&sort=mailbox`) |
//! | `GET /api/systems` | JSON: every system, sorted by system id, as read at most a second ago, each with one page of its actors (below); `503` with a text body if Redis could not be read |
//! | `GET /api/history` | JSON: the plots' samples, one a second for the last five minutes (below) |
//! | `GET /api/reminders` | JSON: the namespace's durable reminders, read from Redis on request (below); `503` with a text body if Redis could not be read |
//! | `GET /api/executions` | JSON: a URN's durable executions with their journals, read from Redis on request (below); `503` with a text body if Redis could not be read |
//!
//! `/api/systems` takes `q` (a search: the actors whose URN or type contains it, ignoring
//! ASCII case, or whose id it is, with or without a leading `#`), `sort` (`telling`, the default: as published, then the
//! actors listed in brief by mailbox depth, rate, failures and id; or `id`, `urn`, `type`,
//! `state`, `mailbox`, `rate`, `handled`, `errors`, `panics`, `restarts`, `skipped`), `order`
//! (`asc` or `desc`; by default descending for figures, ascending otherwise), `limit` (rows
//! per system, default 50, at most 500) and `offset` (the first row; `offset.<system_id>`
//! for one system). Each system is shaped like a
//! [`PublishedSystem`](conclib_redis::snapshots::PublishedSystem) whose `snapshot.actors` is that page
//! (an actor listed only in brief has no `last_error`, `pid` or `pool`), with
//! `page`: `{"total", "listed", "unlisted", "matched", "failing", "offset",
//! "limit", "sort", "order"}` (`listed`: actors the view can search, in full or in brief;
//! `unlisted`: counted by the snapshot but listed in neither; `failing`: listed actors with
//! an error, panic or restart), `persistence_warning`: what the proxy's start-up warning
//! said of Redis's [`persistence`](conclib_redis::snapshots::PublishedSystem::persistence) (null when a
//! restart of Redis loses no accepted tell: `appendonly yes`, `appendfsync always`; the page
//! shows it beside the proxy's figures), and `messages`: per actor type and message type
//! ([`SystemSnapshot::messages`](conclib_core::SystemSnapshot::messages)), `{"actor_type",
//! "message", "interval_ms", "handled", "rate", "error_pct", "p50_us", "p95_us", "p99_us"}`
//! between the last two snapshots read (`interval_ms` apart; null with no earlier one: then
//! since the actors started), the percentiles as the upper bounds of the power-of-two
//! buckets they fall in. An actor that stopped takes its counts with it.
//!
//! `/api/history` answers `{"seq": N, "series": {"<system_id>/<actor id>": {"from": S,
//! "mailbox": [..], "rate": [..]}}}`: `seq` counts the view's samples, and each series holds
//! the samples numbered `from` to `seq`, oldest first. With `key=<system_id>/<id>` (repeated)
//! and `since=<seq>`, only those series and only their samples after `since` (a series
//! younger than that is sent whole: its `from` says so); with `full=<system_id>/<id>`
//! (repeated), those series whole; with neither, every series whole. The view keeps samples
//! of each system's actors published in full, and of any other actor for a minute after a
//! page of `/api/systems` last showed it.
//!
//! `/api/reminders` shows the durable reminders of the namespace
//! ([`conclib_redis::reminders::Reminders`]; the page's section "reminders"): with `urn=<URN>`, that
//! URN's reminders (all of them up to the limit, read through its index); with
//! `prefix=<text>` (a pattern's prefix such as `user:`), the reminders due soonest whose URN
//! starts with it, among the first [`SCAN_PER_SHARD`](conclib_redis::reminders::SCAN_PER_SHARD) of each
//! shard; with neither, the soonest due of any URN. `limit`: reminders per answer, 1 to
//! [`MAX_REMINDERS_LISTED`](conclib_redis::reminders::MAX_REMINDERS_LISTED) (default 50). A query
//! string over 1 KiB, a limit out of bounds, both `urn` and `prefix`, or a URN or prefix
//! that is not valid is refused with `400` and a text that says which. The answer is a
//! [`RemindersOverview`](conclib_redis::reminders::RemindersOverview) with the query echoed:
//! `{"urn", "prefix", "limit", "now_ms", "registered", "due", "matched", "complete",
//! "reminders": [{"urn", "name", "due_ms", "period_ms", "claimed", "deliveries", "fired",
//! "coalesced", "missed", "each_ms", "payload_bytes", "codec"}], "pollers": [{"system",
//! "pid", "interval_ms", "claimed", "fired", "coalesced", "retried", "stale", "in_flight",
//! "fired_per_s", "lag_p50_ms", "lag_p99_ms", "age_ms"}]}`: `pollers` holds what each
//! running [`ReminderPoller`](conclib_redis::reminders::ReminderPoller) reported of itself (every
//! [`snapshot_interval`](conclib_redis::ProxyConfig::snapshot_interval) of its client: its
//! firing rate and lag percentiles over that interval, its counts since it started). The
//! same query is read from Redis at most once a second, however many are watching.
//!
//! `/api/executions?urn=<URN>` shows the durable executions of that URN's journal
//! ([`conclib_redis::durable`]; the page's section "durable executions"), read through
//! [`durable::read_executions`](conclib_redis::durable::read_executions):
//! running ones first (the most recently active first), then finished ones (the latest
//! first). `limit`: executions per answer, 1 to 500 (default 50). A query string over 1 KiB,
//! no `urn`, a URN that is not valid or a limit out of bounds is refused with `400` and a
//! text that says which. The answer is `{"urn", "limit", "listed", "complete", "running",
//! "executions": [{"key", "state", "finished_at_ms", "steps_recorded", "last_step_at_ms",
//! "steps": [{"number", "name", "kind", "at_ms", "value_bytes", "value_hex"}],
//! "steps_not_shown"}]}`: `state` is `running` (no result recorded yet: the steps are its
//! journal so far) or `finished` (its steps were deleted with its result; `steps_recorded`
//! says how many there were); `kind` is `step`, `sleep`, `promise` or `version` (the
//! journal's `@sleep`, `@promise` and `@version` records, `name` without that prefix); a
//! step's value shows as its size and its first 32 bytes in hex, as the proxy's codec
//! encoded it; of an execution with more than 100 recorded steps the last 100 show
//! (`steps_not_shown` counts the others). The same query is read from Redis at most once a
//! second, however many are watching.
//!
//! With the feature `prometheus`, [`prometheus::install`] records conclib's metrics and
//! [`prometheus::router`] serves them at `GET /metrics`.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclib_redis::snapshots::SnapshotReader;

mod api;
mod executions;
mod health;
mod history;
mod last_answer;
mod messages;
#[cfg(feature = "prometheus")]
pub mod prometheus;
mod reminders;
mod sampler;
mod table;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;

pub use health::health;
use sampler::ViewState;

/// The page: HTML, styles and script in one file.
const PAGE: &str = include_str!("page.html");

/// The view's routes (`/`, `/api/systems`, `/api/history`, `/api/reminders`,
/// `/api/executions`), reading snapshots, reminders and durable executions with `reader`.
///
/// The view reads the snapshots once a second (however many are watching), from now on
/// when called inside a tokio runtime, else from its first request, and keeps five minutes
/// of samples of the actors it plots (see the crate's docs); it stops when the router is
/// dropped.
pub fn router(reader: SnapshotReader) -> Router {
    let state = Arc::new(ViewState::new(reader));
    // Inside a runtime, start sampling now: a page opened later finds its plots filled.
    if tokio::runtime::Handle::try_current().is_ok() {
        let state = state.clone();
        tokio::spawn(async move { state.start_sampling().await });
    }
    Router::new()
        .route("/", get(page))
        .route("/api/systems", get(api::systems))
        .route("/api/history", get(api::history))
        .route("/api/reminders", get(reminders::reminders))
        .route("/api/executions", get(executions::executions))
        .with_state(state)
}

/// The view mounted under `prefix` (e.g. `/conclib`), ready to [`merge`](Router::merge)
/// into your own router: the page answers at `prefix` and, redirected there, at `prefix/`
/// (a router [`nest`](Router::nest)ed by hand answers at `prefix` only).
///
/// ```no_run
/// # async fn demo(reader: conclib_redis::snapshots::SnapshotReader) {
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

/// The page, with a `<base>` that points its requests (the relative `api/systems` and
/// `api/history`) at this router wherever it is mounted: `nest("/conclib", ..)` serves it
/// at `/conclib`, where a relative path alone would resolve against `/`.
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
