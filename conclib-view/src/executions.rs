//! `/api/executions`: a URN's durable executions with their journals (step names, times,
//! values), read from Redis on request through
//! [`durable::read_executions`](conclib_redis::durable::read_executions)
//! (at most once a second for the same query, however many are watching), and bounded: at
//! most [`MAX_LIMIT`] executions and [`MAX_STEPS_SHOWN`] steps of each per answer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use conclib_redis::durable::ExecutionInfo;
use serde::Serialize;

use crate::sampler::ViewState;

/// Executions per answer by default.
const DEFAULT_LIMIT: usize = 50;
/// The most executions one answer holds.
pub(crate) const MAX_LIMIT: usize = 500;
/// The most steps shown of one execution (its last ones: where it is).
pub(crate) const MAX_STEPS_SHOWN: usize = 100;
/// The most bytes of a step's value shown (in hex).
const VALUE_PREVIEW: usize = 32;
/// The longest query string `/api/executions` takes.
pub(crate) const MAX_QUERY_LEN: usize = 1024;
/// How long an answer is reused for the same query.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Why a query of `/api/executions` was refused (`400`, with this as its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// The query string is longer than [`MAX_QUERY_LEN`] bytes.
    TooLong(usize),
    /// `limit` is not a number from 1 to [`MAX_LIMIT`].
    Limit(String),
    /// No `urn`.
    NoUrn,
    /// The URN is not valid (the reason, cut).
    Invalid(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::TooLong(len) => {
                write!(f, "query string of {len} bytes: at most {MAX_QUERY_LEN}")
            }
            QueryError::Limit(got) => write!(
                f,
                "limit: expected a number from 1 to {MAX_LIMIT}, got {got:?}"
            ),
            QueryError::NoUrn => write!(f, "urn: give the URN whose executions to list"),
            QueryError::Invalid(reason) => write!(f, "invalid URN: {reason}"),
        }
    }
}

/// A parsed query.
#[derive(Debug)]
pub(crate) struct Query {
    urn: String,
    limit: usize,
}

/// Parses the query string of `/api/executions`: `urn` and `limit`.
pub(crate) fn parse(raw: Option<&str>) -> Result<Query, QueryError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY_LEN {
        return Err(QueryError::TooLong(raw.len()));
    }
    let (mut urn, mut limit) = (None, DEFAULT_LIMIT);
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match &*name {
            "urn" if !value.is_empty() => urn = Some(value.into_owned()),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| QueryError::Limit(value.chars().take(32).collect()))?;
            }
            _ => {}
        }
    }
    let urn = urn.ok_or(QueryError::NoUrn)?;
    conclib_core::validate_urn(&urn).map_err(|e| {
        // The reason may quote the URN: at most 300 characters of it.
        let reason = e.to_string();
        let cut: String = reason.chars().take(300).collect();
        let more = if cut.len() < reason.len() { "..." } else { "" };
        QueryError::Invalid(format!("{cut}{more}"))
    })?;
    Ok(Query { urn, limit })
}

/// The answer.
#[derive(Serialize)]
struct Answer<'a> {
    urn: &'a str,
    limit: usize,
    /// Executions listed; `complete`: none left out by the limit.
    listed: usize,
    complete: bool,
    running: usize,
    executions: Vec<Shown>,
}

/// One execution as shown.
#[derive(Serialize)]
struct Shown {
    key: String,
    /// `running` (steps recorded, no result yet) or `finished`.
    state: &'static str,
    finished_at_ms: Option<u64>,
    steps_recorded: u32,
    /// When its last step was recorded, while it runs.
    last_step_at_ms: Option<u64>,
    /// Its recorded steps, at most [`MAX_STEPS_SHOWN`] (the last ones), oldest first.
    steps: Vec<ShownStep>,
    /// Steps left out (the earliest ones).
    steps_not_shown: usize,
}

#[derive(Serialize)]
struct ShownStep {
    number: u32,
    name: String,
    /// `step`, `sleep`, `promise` or `version`.
    kind: &'static str,
    at_ms: u64,
    /// What was recorded: its size, and its first bytes in hex (as the proxy's codec
    /// encoded it).
    value_bytes: usize,
    value_hex: String,
}

fn shown(info: ExecutionInfo) -> Shown {
    let total = info.steps.len();
    let skip = total.saturating_sub(MAX_STEPS_SHOWN);
    let last_step_at_ms = info.steps.iter().map(|s| s.at_ms).max();
    let steps = info
        .steps
        .into_iter()
        .skip(skip)
        .map(|s| {
            let (kind, name) = kind_of(&s.name);
            ShownStep {
                number: s.number,
                name: name.to_owned(),
                kind,
                at_ms: s.at_ms,
                value_bytes: s.value.len(),
                value_hex: s.value[..s.value.len().min(VALUE_PREVIEW)]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            }
        })
        .collect();
    Shown {
        state: if info.finished_at_ms.is_some() {
            "finished"
        } else {
            "running"
        },
        key: info.key,
        finished_at_ms: info.finished_at_ms,
        steps_recorded: info.steps_recorded,
        last_step_at_ms,
        steps,
        steps_not_shown: skip,
    }
}

/// A recorded step's kind and its own name (without the `@sleep ` etc. the journal adds).
fn kind_of(name: &str) -> (&'static str, &str) {
    for (prefix, kind) in [
        ("@sleep ", "sleep"),
        ("@promise ", "promise"),
        ("@version ", "version"),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return (kind, rest);
        }
    }
    ("step", name)
}

/// `GET /api/executions`.
pub(crate) async fn executions(
    State(state): State<Arc<ViewState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match parse(raw.as_deref()) {
        Ok(query) => query,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let raw = raw.unwrap_or_default();
    if let Some(kept) = state.executions.fresh(&raw, FRESH_FOR) {
        return kept;
    }
    // One more than asked: whether any was left out.
    let found =
        match conclib_redis::durable::read_executions(&state.reader, &query.urn, query.limit + 1)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read the executions: {e}"),
                )
                    .into_response();
            }
        };
    let complete = found.len() <= query.limit;
    let mut executions: Vec<Shown> = found.into_iter().take(query.limit).map(shown).collect();
    // Running first (the most recently active first), then finished (the latest first).
    executions.sort_by_key(|e| {
        (
            e.finished_at_ms.is_some(),
            std::cmp::Reverse(e.finished_at_ms.or(e.last_step_at_ms)),
        )
    });
    let answer = Answer {
        urn: &query.urn,
        limit: query.limit,
        listed: executions.len(),
        complete,
        running: executions.iter().filter(|e| e.state == "running").count(),
        executions,
    };
    state.executions.keep(&raw, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_is_bounded() {
        let q = parse(Some("urn=wf%3A42&limit=7")).unwrap();
        assert_eq!((q.urn.as_str(), q.limit), ("wf:42", 7));
        assert_eq!(parse(Some("urn=wf%3A1")).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(parse(None).unwrap_err(), QueryError::NoUrn);
        for limit in ["0", "501", "-1", "ten"] {
            assert!(
                matches!(
                    parse(Some(&format!("urn=a%3A1&limit={limit}"))),
                    Err(QueryError::Limit(_))
                ),
                "{limit}"
            );
        }
        assert!(matches!(
            parse(Some("urn=has+space")),
            Err(QueryError::Invalid(_))
        ));
        let longer = format!("urn={}", "a".repeat(MAX_QUERY_LEN));
        let err = parse(Some(&longer)).unwrap_err();
        assert_eq!(err, QueryError::TooLong(MAX_QUERY_LEN + 4));
        let controls = format!("urn={}", "%01".repeat(250));
        let err = parse(Some(&controls)).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
        assert_eq!(kind_of("@sleep nap"), ("sleep", "nap"));
        assert_eq!(kind_of("charge"), ("step", "charge"));
    }
}
