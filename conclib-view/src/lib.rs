//! A live view of every conclib actor system on one Redis: an [axum](https://docs.rs/axum)
//! [`Router`] you mount in your own server, or serve alone with [`serve`].
//!
//! Every Redis proxy publishes its system's snapshot (see [`conclib_redis::SnapshotReader`]):
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
//! | `GET /` | the page (its search, sort and page in the URL's fragment: `#q=worker:7&sort=mailbox`) |
//! | `GET /api/systems` | JSON: every system, sorted by system id, as read at most a second ago, each with one page of its actors (below); `503` with a text body if Redis could not be read |
//! | `GET /api/history` | JSON: the plots' samples, one a second for the last five minutes (below) |
//!
//! `/api/systems` takes `q` (a search: the actors whose URN or type contains it, ignoring
//! ASCII case, or whose id it is, with or without a leading `#`), `sort` (`telling`, the default: as published, then the
//! actors listed in brief by mailbox depth, rate, failures and id; or `id`, `urn`, `type`,
//! `state`, `mailbox`, `rate`, `handled`, `errors`, `panics`, `restarts`, `skipped`), `order`
//! (`asc` or `desc`; by default descending for figures, ascending otherwise), `limit` (rows
//! per system, default 50, at most 500) and `offset` (the first row; `offset.<system_id>`
//! for one system). Each system is shaped like a [`PublishedSystem`] whose `snapshot.actors`
//! is that page (an actor listed only in brief has no `last_error`, `pid` or `pool`), with
//! `page`: `{"total", "listed", "unlisted", "matched", "failing", "offset",
//! "limit", "sort", "order"}` (`listed`: actors the view can search, in full or in brief;
//! `unlisted`: counted by the snapshot but listed in neither; `failing`: listed actors with
//! an error, panic or restart), and `messages`: per actor type and message type
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
//! With the feature `prometheus`, [`prometheus::install`] records conclib's metrics and
//! [`prometheus::router`] serves them at `GET /metrics`.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use conclib_core::{ActorBrief, ActorSnapshot, ActorState};
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
/// Rows per system in one answer of `/api/systems`: by default, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// How long an actor a page showed keeps its plots sampled, and how many such actors at most.
const WATCH_FOR: Duration = Duration::from_secs(60);
const MAX_WATCHED: usize = 10_000;

/// How a page of actors is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sort {
    Telling,
    Id,
    Urn,
    Type,
    State,
    Mailbox,
    Rate,
    Handled,
    Errors,
    Panics,
    Restarts,
    Skipped,
}

impl Sort {
    const ALL: [(&'static str, Sort); 12] = [
        ("telling", Sort::Telling),
        ("id", Sort::Id),
        ("urn", Sort::Urn),
        ("type", Sort::Type),
        ("state", Sort::State),
        ("mailbox", Sort::Mailbox),
        ("rate", Sort::Rate),
        ("handled", Sort::Handled),
        ("errors", Sort::Errors),
        ("panics", Sort::Panics),
        ("restarts", Sort::Restarts),
        ("skipped", Sort::Skipped),
    ];

    fn parse(name: &str) -> Option<Sort> {
        Sort::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    fn name(self) -> &'static str {
        Sort::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }

    /// Figures read best largest first.
    fn descending_by_default(self) -> bool {
        !matches!(
            self,
            Sort::Telling | Sort::Id | Sort::Urn | Sort::Type | Sort::State
        )
    }

    /// Ascending order of `a` and `b` by this key, then by id.
    fn compare(self, a: Row<'_>, b: Row<'_>) -> Ordering {
        let by = match self {
            Sort::Telling | Sort::Id => Ordering::Equal,
            Sort::Urn => match (a.urn(), b.urn()) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
            Sort::Type => a.type_name().cmp(b.type_name()),
            Sort::State => a.stopping().cmp(&b.stopping()),
            Sort::Mailbox => a.figures().mailbox.cmp(&b.figures().mailbox),
            Sort::Rate => a.figures().rate.total_cmp(&b.figures().rate),
            Sort::Handled => a.figures().handled.cmp(&b.figures().handled),
            Sort::Errors => a.figures().errors.cmp(&b.figures().errors),
            Sort::Panics => a.figures().panics.cmp(&b.figures().panics),
            Sort::Restarts => a.figures().restarts.cmp(&b.figures().restarts),
            Sort::Skipped => a.figures().skipped.cmp(&b.figures().skipped),
        };
        by.then(a.id().cmp(&b.id()))
    }
}

/// An actor the view lists: published in full, or in brief.
#[derive(Clone, Copy)]
enum Row<'a> {
    Full(&'a ActorSnapshot),
    Brief(&'a ActorBrief),
}

/// A row's figures.
struct Figures {
    mailbox: usize,
    rate: f64,
    handled: u64,
    errors: u64,
    panics: u64,
    restarts: u64,
    skipped: u64,
}

impl<'a> Row<'a> {
    fn id(self) -> u64 {
        match self {
            Row::Full(a) => a.id,
            Row::Brief(a) => a.id,
        }
    }

    fn urn(self) -> Option<&'a str> {
        match self {
            Row::Full(a) => a.urn.as_deref(),
            Row::Brief(a) => a.urn.as_deref(),
        }
    }

    fn type_name(self) -> &'a str {
        match self {
            Row::Full(a) => &a.type_name,
            Row::Brief(a) => &a.type_name,
        }
    }

    fn stopping(self) -> bool {
        match self {
            Row::Full(a) => a.state == ActorState::Stopping,
            Row::Brief(a) => a.state == ActorState::Stopping,
        }
    }

    fn figures(self) -> Figures {
        match self {
            Row::Full(a) => Figures {
                mailbox: a.mailbox_len,
                rate: a.rate,
                handled: a.handled,
                errors: a.errors,
                panics: a.panics,
                restarts: a.restarts,
                skipped: a.asks_skipped,
            },
            Row::Brief(a) => Figures {
                mailbox: a.mailbox_len,
                rate: a.rate,
                handled: a.handled,
                errors: a.errors,
                panics: a.panics,
                restarts: a.restarts,
                skipped: a.asks_skipped,
            },
        }
    }
}

impl Serialize for Row<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Row::Full(a) => a.serialize(serializer),
            Row::Brief(a) => a.serialize(serializer),
        }
    }
}

/// Most telling first among actors listed in brief (no failures-in-the-last-interval for
/// them): deeper mailbox, higher rate, more failures, lower id.
fn brief_telling(a: &ActorBrief, b: &ActorBrief) -> Ordering {
    let failures = |a: &ActorBrief| a.errors + a.panics + a.restarts;
    b.mailbox_len
        .cmp(&a.mailbox_len)
        .then(b.rate.total_cmp(&a.rate))
        .then(failures(b).cmp(&failures(a)))
        .then(a.id.cmp(&b.id))
}

/// Every system as last read, by system id.
type Tables = Arc<Vec<Arc<Table>>>;

/// Rows of a [`Table`] (see [`Table::row`]), in some order.
type Order = Arc<Vec<u32>>;

/// One system as last read: its published snapshot and every actor the view can search.
struct Table {
    /// As published, its actors moved to `full`.
    published: PublishedSystem,
    /// The actors published in full, in their published order.
    full: Vec<ActorSnapshot>,
    full_ids: HashSet<u64>,
    /// The actors published in brief, most telling first (reused while a newer list cannot
    /// be read; those also in `full` are not listed).
    briefs: Arc<Vec<ActorBrief>>,
    briefs_taken_at: u64,
    /// Every row, most telling first: `i` below `full.len()` is `full[i]`, above it
    /// `briefs[i - full.len()]`.
    telling: Vec<u32>,
    /// Counted by the snapshot, listed in neither form.
    unlisted: usize,
    /// Listed actors with an error, panic or restart.
    failing: usize,
    /// Orders of the rows by (sort, descending), made on first use.
    sorted: Mutex<HashMap<(Sort, bool), Order>>,
    /// Per actor type and message: since the previous snapshot.
    messages: Vec<MessageView>,
}

/// What one actor type handled of one message type: over the interval between the last two
/// snapshots read (`interval_ms`), or since the actors started when there is no earlier one
/// (`interval_ms` null).
#[derive(Debug, Clone, Serialize)]
struct MessageView {
    actor_type: String,
    message: String,
    interval_ms: Option<u64>,
    /// Messages handled in the interval (or since start), and per second.
    handled: u64,
    rate: Option<f64>,
    /// Of those, handlers that returned an error, in percent.
    error_pct: Option<f64>,
    /// Handling time percentiles: upper bounds of the power-of-two buckets they fall in.
    p50_us: Option<u64>,
    p95_us: Option<u64>,
    p99_us: Option<u64>,
}

/// The per-message figures of `now` since `before` (`ms` apart), or since start.
fn message_views(
    now: &[conclib_core::MessageTotals],
    before: Option<(&[conclib_core::MessageTotals], u64)>,
) -> Vec<MessageView> {
    now.iter()
        .map(|m| {
            let earlier = before.and_then(|(before, ms)| {
                before
                    .iter()
                    .find(|b| b.actor_type == m.actor_type && b.message == m.message)
                    .map(|b| (b, ms))
            });
            let (handled, errors, buckets, interval_ms) = match (before, earlier) {
                (Some((_, ms)), Some((b, _))) => (
                    m.handled.saturating_sub(b.handled),
                    m.errors.saturating_sub(b.errors),
                    m.handling_us
                        .iter()
                        .zip(b.handling_us.iter().chain(std::iter::repeat(&0)))
                        .map(|(n, b)| n.saturating_sub(*b))
                        .collect::<Vec<_>>(),
                    Some(ms),
                ),
                // New since the previous snapshot: all of it is in the interval.
                (Some((_, ms)), None) => (m.handled, m.errors, m.handling_us.clone(), Some(ms)),
                (None, _) => (m.handled, m.errors, m.handling_us.clone(), None),
            };
            let percentile = |p: f64| {
                let total: u64 = buckets.iter().sum();
                if total == 0 {
                    return None;
                }
                let wanted = ((total as f64) * p).ceil().max(1.0) as u64;
                let mut seen = 0;
                buckets
                    .iter()
                    .position(|n| {
                        seen += n;
                        seen >= wanted
                    })
                    .map(|i| 1u64 << i)
            };
            MessageView {
                actor_type: m.actor_type.to_string(),
                message: m.message.to_string(),
                interval_ms,
                handled,
                rate: interval_ms
                    .filter(|ms| *ms > 0)
                    .map(|ms| handled as f64 * 1000.0 / ms as f64),
                error_pct: (handled > 0).then(|| errors as f64 * 100.0 / handled as f64),
                p50_us: percentile(0.5),
                p95_us: percentile(0.95),
                p99_us: percentile(0.99),
            }
        })
        .collect()
}

impl Table {
    /// `briefs` most telling first.
    fn new(
        mut published: PublishedSystem,
        briefs: Arc<Vec<ActorBrief>>,
        briefs_taken_at: u64,
        messages: Vec<MessageView>,
    ) -> Table {
        let full = std::mem::take(&mut published.snapshot.actors);
        let full_ids: HashSet<u64> = full.iter().map(|a| a.id).collect();
        let n = full.len();
        let mut telling: Vec<u32> = (0..n as u32).collect();
        telling.extend(
            briefs
                .iter()
                .enumerate()
                .filter(|(_, b)| !full_ids.contains(&b.id))
                .map(|(j, _)| (n + j) as u32),
        );
        let unlisted = (n + published.snapshot.omitted_actors).saturating_sub(telling.len());
        let mut table = Table {
            published,
            full,
            full_ids,
            briefs,
            briefs_taken_at,
            telling,
            unlisted,
            failing: 0,
            sorted: Mutex::new(HashMap::new()),
            messages,
        };
        table.failing = table
            .rows()
            .filter(|r| {
                let f = r.figures();
                f.errors + f.panics + f.restarts > 0
            })
            .count();
        table
    }

    fn row(&self, i: u32) -> Row<'_> {
        let i = i as usize;
        match self.full.get(i) {
            Some(actor) => Row::Full(actor),
            None => Row::Brief(&self.briefs[i - self.full.len()]),
        }
    }

    /// Every row, most telling first.
    fn rows(&self) -> impl Iterator<Item = Row<'_>> {
        self.telling.iter().map(|&i| self.row(i))
    }

    /// The rows' order by `sort` (`None`: most telling first, as `telling`).
    fn order(&self, sort: Sort, descending: bool) -> Option<Order> {
        if sort == Sort::Telling && !descending {
            return None;
        }
        let mut cache = self.sorted.lock().unwrap_or_else(|e| e.into_inner());
        let order = cache.entry((sort, descending)).or_insert_with(|| {
            let mut order = self.telling.clone();
            if sort == Sort::Telling {
                order.reverse();
            } else if descending {
                order.sort_unstable_by(|&a, &b| sort.compare(self.row(b), self.row(a)));
            } else {
                order.sort_unstable_by(|&a, &b| sort.compare(self.row(a), self.row(b)));
            }
            Arc::new(order)
        });
        Some(order.clone())
    }
}

/// Whether `haystack` contains `needle` (already ASCII-lowercased), ignoring ASCII case.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty()
        || h.len() >= n.len()
            && h.windows(n.len())
                .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

/// A search: its text (ASCII-lowercased) and, if it is a number (or `#` and a number), an id.
struct Search {
    text: String,
    id: Option<u64>,
    /// Whether each type name seen matches, by its address (the reader shares one copy of
    /// each name among the actors listed in brief).
    types: HashMap<(usize, usize), bool>,
}

impl Search {
    fn matches(&mut self, row: Row<'_>) -> bool {
        if self.id == Some(row.id())
            || row
                .urn()
                .is_some_and(|u| contains_ignoring_case(u, &self.text))
        {
            return true;
        }
        let name = row.type_name();
        let text = &self.text;
        *self
            .types
            .entry((name.as_ptr() as usize, name.len()))
            .or_insert_with(|| contains_ignoring_case(name, text))
    }
}

/// One actor's recent samples, oldest first; the last one is sample number `last`.
#[derive(Debug, Clone, Default)]
struct Series {
    last: u64,
    mailbox: VecDeque<usize>,
    rate: VecDeque<f64>,
}

#[derive(Default)]
struct History {
    /// Samples taken so far.
    seq: u64,
    /// By `system_id/actor_id`.
    series: HashMap<String, Series>,
    /// Actors a page showed, by system and id: when last shown.
    watched: HashMap<(String, u64), Instant>,
}

fn key(system: &str, id: u64) -> String {
    format!("{system}/{id}")
}

struct ViewState {
    reader: SnapshotReader,
    /// The last read: what `/api/systems` answers (many viewers cost Redis one read a second).
    latest: RwLock<Option<Result<Tables, String>>>,
    /// The last tables read, kept across a failed read (their briefs are reused).
    tables: Mutex<HashMap<String, Arc<Table>>>,
    history: Mutex<History>,
    /// The orders pages asked for lately, by when: a new table is sorted so in advance.
    wanted: Mutex<HashMap<(Sort, bool), Instant>>,
    sampling: OnceLock<()>,
    /// One sample at a time.
    sampler: tokio::sync::Mutex<()>,
}

/// How long an order a page asked for is made in advance for each new table.
const WANTED_FOR: Duration = Duration::from_secs(10);

impl ViewState {
    async fn sample(&self) {
        let _one = self.sampler.lock().await;
        let read = match self.reader.systems().await {
            Ok(systems) => Ok(self.tables(systems).await),
            Err(e) => Err(e.to_string()),
        };
        if let Ok(tables) = &read {
            self.sample_history(tables);
        }
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(read);
    }

    /// The tables of `systems`: those whose snapshot did not change as they were, the
    /// others rebuilt with their briefs (read only for a new snapshot).
    async fn tables(&self, systems: Vec<PublishedSystem>) -> Tables {
        let previous = std::mem::take(&mut *self.tables.lock().unwrap_or_else(|e| e.into_inner()));
        let wanted: Vec<(Sort, bool)> = {
            let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
            wanted.retain(|_, at| at.elapsed() < WANTED_FOR);
            wanted.keys().copied().collect()
        };
        let mut tables = Vec::with_capacity(systems.len());
        for system in systems {
            let old = previous.get(&system.system_id);
            let taken_at = system.snapshot.taken_at_ms;
            if let Some(old) = old
                && old.published.snapshot.taken_at_ms == taken_at
            {
                tables.push(old.clone());
                continue;
            }
            let read = if system.snapshot.omitted_actors == 0 {
                Some(Vec::new())
            } else {
                self.reader
                    .others(&system.system_id, taken_at)
                    .await
                    .ok()
                    .flatten()
            };
            let reused = old.map(|old| (old.briefs.clone(), old.briefs_taken_at));
            let messages = message_views(
                &system.snapshot.messages,
                old.map(|old| {
                    let before = &old.published.snapshot;
                    (
                        before.messages.as_slice(),
                        taken_at.saturating_sub(before.taken_at_ms),
                    )
                }),
            );
            let wanted = wanted.clone();
            // Building a table of many actors takes milliseconds: off the runtime's workers.
            let table = tokio::task::spawn_blocking(move || {
                let (briefs, briefs_taken_at) = match (read, reused) {
                    (Some(mut briefs), _) => {
                        briefs.sort_unstable_by(brief_telling);
                        (Arc::new(briefs), taken_at)
                    }
                    (None, Some(reused)) => reused,
                    (None, None) => (Arc::new(Vec::new()), 0),
                };
                let table = Table::new(system, briefs, briefs_taken_at, messages);
                for (sort, descending) in wanted {
                    table.order(sort, descending);
                }
                Arc::new(table)
            })
            .await
            .expect("building a table does not panic");
            tables.push(table);
        }
        *self.tables.lock().unwrap_or_else(|e| e.into_inner()) = tables
            .iter()
            .map(|t| (t.published.system_id.clone(), t.clone()))
            .collect();
        Arc::new(tables)
    }

    /// One more sample of every actor published in full, and of every actor watched.
    fn sample_history(&self, tables: &[Arc<Table>]) {
        let mut guard = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let history = &mut *guard;
        history.seq += 1;
        let seq = history.seq;
        let now = Instant::now();
        history
            .watched
            .retain(|_, shown| now.duration_since(*shown) < WATCH_FOR);
        let mut watched: HashMap<&str, HashSet<u64>> = HashMap::new();
        for (system, id) in history.watched.keys() {
            watched.entry(system.as_str()).or_default().insert(*id);
        }
        let mut series = HashMap::with_capacity(history.series.len());
        for table in tables {
            let system = table.published.system_id.as_str();
            let mut push = |id: u64, mailbox: usize, rate: f64| {
                let key = key(system, id);
                let mut s = history.series.remove(&key).unwrap_or_default();
                s.last = seq;
                s.mailbox.push_back(mailbox);
                s.rate.push_back(rate);
                if s.mailbox.len() > HISTORY {
                    s.mailbox.pop_front();
                    s.rate.pop_front();
                }
                series.insert(key, s);
            };
            for actor in &table.full {
                push(actor.id, actor.mailbox_len, actor.rate);
            }
            if let Some(ids) = watched.get(system) {
                for brief in table.briefs.iter() {
                    if ids.contains(&brief.id) && !table.full_ids.contains(&brief.id) {
                        push(brief.id, brief.mailbox_len, brief.rate);
                    }
                }
            }
        }
        // Actors that stopped, or are neither published in full nor watched, leave the plots.
        history.series = series;
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

    /// The last read, reading now if none was made yet.
    async fn latest(self: &Arc<Self>) -> Result<Tables, String> {
        self.start_sampling().await;
        loop {
            if let Some(latest) = self
                .latest
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return latest;
            }
            // Another request started the sampler and is still reading: wait for it (and
            // let it run, if it has not taken the lock yet).
            drop(self.sampler.lock().await);
            tokio::task::yield_now().await;
        }
    }
}

/// The view's routes (`/`, `/api/systems`, `/api/history`), reading snapshots with `reader`.
///
/// The view reads the snapshots once a second (however many are watching), from now on
/// when called inside a tokio runtime, else from its first request, and keeps five minutes
/// of samples of the actors it plots (see the crate's docs); it stops when the router is
/// dropped.
pub fn router(reader: SnapshotReader) -> Router {
    let state = Arc::new(ViewState {
        reader,
        latest: RwLock::new(None),
        tables: Mutex::new(HashMap::new()),
        history: Mutex::new(History::default()),
        wanted: Mutex::new(HashMap::new()),
        sampling: OnceLock::new(),
        sampler: tokio::sync::Mutex::new(()),
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

/// The query of `/api/systems`.
struct PageQuery {
    query: String,
    id: Option<u64>,
    sort: Sort,
    descending: bool,
    limit: usize,
    offset: usize,
    offsets: HashMap<String, usize>,
}

impl PageQuery {
    fn parse(raw: Option<&str>) -> Result<PageQuery, String> {
        let mut page = PageQuery {
            query: String::new(),
            id: None,
            sort: Sort::Telling,
            descending: false,
            limit: DEFAULT_LIMIT,
            offset: 0,
            offsets: HashMap::new(),
        };
        let mut order = None;
        let number = |name: &str, value: &str| {
            value
                .parse::<usize>()
                .map_err(|_| format!("{name}: expected a number, got {value:?}"))
        };
        for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            match &*name {
                "q" => {
                    page.query = value.trim().to_ascii_lowercase();
                    page.id = page.query.trim_start_matches('#').parse().ok();
                }
                "sort" => {
                    page.sort =
                        Sort::parse(&value).ok_or_else(|| format!("sort: unknown {value:?}"))?
                }
                "order" => match &*value {
                    "asc" => order = Some(false),
                    "desc" => order = Some(true),
                    other => return Err(format!("order: expected asc or desc, got {other:?}")),
                },
                "limit" => page.limit = number("limit", &value)?.min(MAX_LIMIT),
                "offset" => page.offset = number("offset", &value)?,
                other => {
                    if let Some(system) = other.strip_prefix("offset.") {
                        page.offsets
                            .insert(system.to_owned(), number(other, &value)?);
                    }
                }
            }
        }
        page.descending = order.unwrap_or(page.sort.descending_by_default());
        Ok(page)
    }
}

#[derive(Serialize)]
struct SystemOut<'a> {
    system_id: &'a str,
    interval_ms: u64,
    proxy: &'a conclib_redis::ProxyStats,
    snapshot: SnapshotOut<'a>,
    groups: &'a [conclib_redis::PublishedGroup],
    page: PageOut,
    messages: &'a [MessageView],
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    system: &'a str,
    pid: u32,
    taken_at_ms: u64,
    actors: Vec<Row<'a>>,
    omitted_actors: usize,
}

#[derive(Serialize)]
struct PageOut {
    total: usize,
    listed: usize,
    unlisted: usize,
    matched: usize,
    failing: usize,
    offset: usize,
    limit: usize,
    sort: &'static str,
    order: &'static str,
}

/// One page of `table`'s actors.
fn page_of<'a>(table: &'a Table, query: &PageQuery) -> SystemOut<'a> {
    let order = table.order(query.sort, query.descending);
    let order: &[u32] = order.as_deref().map_or(&table.telling, |o| o.as_slice());
    let offset = query
        .offsets
        .get(&table.published.system_id)
        .copied()
        .unwrap_or(query.offset);
    let mut rows = Vec::with_capacity(query.limit.min(order.len()));
    let matched = if query.query.is_empty() {
        rows.extend(
            order
                .iter()
                .skip(offset)
                .take(query.limit)
                .map(|&i| table.row(i)),
        );
        order.len()
    } else {
        let mut search = Search {
            text: query.query.clone(),
            id: query.id,
            types: HashMap::new(),
        };
        let mut matched = 0;
        for &i in order {
            let row = table.row(i);
            if !search.matches(row) {
                continue;
            }
            if matched >= offset && rows.len() < query.limit {
                rows.push(row);
            }
            matched += 1;
        }
        matched
    };
    let published = &table.published;
    SystemOut {
        system_id: &published.system_id,
        interval_ms: published.interval_ms,
        proxy: &published.proxy,
        snapshot: SnapshotOut {
            system: &published.snapshot.system,
            pid: published.snapshot.pid,
            taken_at_ms: published.snapshot.taken_at_ms,
            actors: rows,
            omitted_actors: published.snapshot.omitted_actors,
        },
        groups: &published.groups,
        page: PageOut {
            total: table.telling.len() + table.unlisted,
            listed: table.telling.len(),
            unlisted: table.unlisted,
            matched,
            failing: table.failing,
            offset,
            limit: query.limit,
            sort: query.sort.name(),
            order: if query.descending { "desc" } else { "asc" },
        },
        messages: &table.messages,
    }
}

async fn systems(State(state): State<Arc<ViewState>>, RawQuery(raw): RawQuery) -> Response {
    let query = match PageQuery::parse(raw.as_deref()) {
        Ok(query) => query,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let tables = match state.latest().await {
        Ok(tables) => tables,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the snapshots: {e}"),
            )
                .into_response();
        }
    };
    let now = Instant::now();
    if query.sort != Sort::Telling || query.descending {
        state
            .wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((query.sort, query.descending), now);
    }
    let pages: Vec<SystemOut<'_>> = tables.iter().map(|t| page_of(t, &query)).collect();
    // The actors shown keep their plots sampled (those published in full always are).
    {
        let mut history = state.history.lock().unwrap_or_else(|e| e.into_inner());
        for page in &pages {
            for row in &page.snapshot.actors {
                if let Row::Brief(actor) = row {
                    let key = (page.system_id.to_owned(), actor.id);
                    if history.watched.len() < MAX_WATCHED || history.watched.contains_key(&key) {
                        history.watched.insert(key, now);
                    }
                }
            }
        }
    }
    axum::Json(pages).into_response()
}

#[derive(Serialize)]
struct HistoryOut<'a> {
    seq: u64,
    series: HashMap<&'a str, SeriesOut>,
}

#[derive(Serialize)]
struct SeriesOut {
    from: u64,
    mailbox: Vec<usize>,
    rate: Vec<f64>,
}

/// `series`'s samples after `since`, or all of them.
fn series_since(series: &Series, since: Option<u64>) -> SeriesOut {
    let len = series.mailbox.len();
    let first = series.last + 1 - len as u64;
    let skip = since.map_or(0, |since| {
        since
            .saturating_add(1)
            .saturating_sub(first)
            .min(len as u64)
    }) as usize;
    SeriesOut {
        from: first + skip as u64,
        mailbox: series.mailbox.iter().skip(skip).copied().collect(),
        // Plots need no more than two decimals.
        rate: series
            .rate
            .iter()
            .skip(skip)
            .map(|r| (r * 100.0).round() / 100.0)
            .collect(),
    }
}

async fn history(State(state): State<Arc<ViewState>>, RawQuery(raw): RawQuery) -> Response {
    state.start_sampling().await;
    let (mut since, mut keys, mut full) = (None, Vec::new(), Vec::new());
    for (name, value) in form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes()) {
        match &*name {
            "since" => match value.parse() {
                Ok(n) => since = Some(n),
                Err(_) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("since: expected a number, got {value:?}"),
                    )
                        .into_response();
                }
            },
            "key" => keys.push(value),
            "full" => full.push(value),
            _ => {}
        }
    }
    let history = state.history.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = HistoryOut {
        seq: history.seq,
        series: HashMap::new(),
    };
    if keys.is_empty() && full.is_empty() {
        for (key, series) in &history.series {
            out.series.insert(key, series_since(series, None));
        }
    } else {
        let asked = keys
            .iter()
            .map(|k| (k, since))
            .chain(full.iter().map(|k| (k, None)));
        for (key, since) in asked {
            if let Some((key, series)) = history.series.get_key_value(key.as_ref()) {
                out.series.insert(key, series_since(series, since));
            }
        }
    }
    let body = serde_json::to_vec(&out);
    drop(history);
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
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
