//! The view's JSON API: `/api/systems`, one page of each system's actors, searched, sorted
//! and paged by the server; `/api/history`, the sampled series the page plots.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::messages::MessageView;
use crate::sampler::ViewState;
use crate::table::{Row, Search, Sort, Table};

#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;

/// Rows per system in one answer of `/api/systems`: by default, and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;
/// The longest query string a page request may carry: a few hundred systems' offsets fit;
/// hyper alone would let one of hundreds of KiB through, parsed and echoed in errors.
const MAX_QUERY_LEN: usize = 8 * 1024;

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
        let raw = raw.unwrap_or_default();
        if raw.len() > MAX_QUERY_LEN {
            return Err(format!(
                "query string of {} bytes: at most {MAX_QUERY_LEN}",
                raw.len()
            ));
        }
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
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
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
    proxy: &'a conclib_redis::stats::ProxyStats,
    snapshot: SnapshotOut<'a>,
    groups: &'a [conclib_redis::snapshots::PublishedGroup],
    persistence: conclib_redis::durability::Persistence,
    /// What the proxy's start-up warning said of Redis's persistence: null when a restart
    /// of Redis loses no accepted tell.
    persistence_warning: Option<String>,
    /// What the system published to topics and what its subscriptions received, dropped
    /// and hold now, and how far its durable subscriptions' groups are behind (`lag`,
    /// `pending`, sampled every snapshot interval); null while it never used topics.
    topics: Option<&'a conclib_redis::topics::TopicsStats>,
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
        persistence: published.persistence,
        persistence_warning: published.persistence.warning(),
        topics: published.topics.as_ref(),
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

pub(crate) async fn systems(
    State(state): State<Arc<ViewState>>,
    RawQuery(raw): RawQuery,
) -> Response {
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
                    history.shown(page.system_id, actor.id, now);
                }
            }
        }
    }
    axum::Json(pages).into_response()
}

/// `/api/history`: every series (or those named by `key`, from `since`, and by `full`,
/// whole), as JSON.
pub(crate) async fn history(
    State(state): State<Arc<ViewState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY_LEN {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "query string of {} bytes: at most {MAX_QUERY_LEN}",
                raw.len()
            ),
        )
            .into_response();
    }
    state.start_sampling().await;
    let (mut since, mut keys, mut full) = (None, Vec::new(), Vec::new());
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
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
    let body = state
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .to_json(since, &keys, &full);
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_is_bounded_in_length() {
        let page = PageQuery::parse(Some("q=abc&limit=9999&offset.s1=3")).unwrap();
        assert_eq!(page.limit, MAX_LIMIT);
        assert_eq!(page.offsets["s1"], 3);
        let fits = format!("q={}", "a".repeat(MAX_QUERY_LEN - 2));
        assert!(PageQuery::parse(Some(&fits)).is_ok());
        let long = format!("q={}", "a".repeat(MAX_QUERY_LEN - 1));
        let err = PageQuery::parse(Some(&long)).err().unwrap();
        assert!(err.len() < 100, "{err}");
    }
}
