//! `/api/reminders`: the namespace's durable reminders, read from Redis on request (at most
//! once a second for the same query, however many are watching) and bounded: a URN's, a
//! prefix's or the soonest due, at most [`MAX_REMINDERS_LISTED`] per answer, with the
//! counts and the pollers' own reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use conclib_redis::reminders::{
    MAX_REMINDERS_LISTED, ReminderError, ReminderQuery, RemindersOverview,
};
use serde::Serialize;

use crate::sampler::ViewState;

/// Reminders per answer by default.
const DEFAULT_LIMIT: usize = 50;
/// The longest query string `/api/reminders` takes: a URN of the longest, percent-encoded,
/// and the limit fit.
pub(crate) const MAX_QUERY_LEN: usize = 1024;
/// How long an answer is reused for the same query.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Why a query of `/api/reminders` was refused (`400`, with this as its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// The query string is longer than [`MAX_QUERY_LEN`] bytes.
    TooLong(usize),
    /// `limit` is not a number from 1 to [`MAX_REMINDERS_LISTED`].
    Limit(String),
    /// Both `urn` and `prefix` were given.
    UrnAndPrefix,
    /// The URN or the prefix is not valid.
    Invalid(ReminderError),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::TooLong(len) => {
                write!(f, "query string of {len} bytes: at most {MAX_QUERY_LEN}")
            }
            QueryError::Limit(got) => write!(
                f,
                "limit: expected a number from 1 to {MAX_REMINDERS_LISTED}, got {got:?}"
            ),
            QueryError::UrnAndPrefix => write!(f, "urn and prefix: give one of them, not both"),
            QueryError::Invalid(e) => {
                // The reason may quote the URN: at most 300 characters of it.
                let reason = e.to_string();
                let cut: String = reason.chars().take(300).collect();
                let more = if cut.len() < reason.len() { "..." } else { "" };
                write!(f, "{cut}{more}")
            }
        }
    }
}

/// A parsed query: what to ask the reader, and what the answer echoes.
#[derive(Debug)]
pub(crate) struct Query {
    pub(crate) reminders: ReminderQuery,
    urn: Option<String>,
    prefix: Option<String>,
    limit: usize,
}

/// Parses the query string of `/api/reminders`: `urn` (exact) or `prefix`, and `limit`.
pub(crate) fn parse(raw: Option<&str>) -> Result<Query, QueryError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY_LEN {
        return Err(QueryError::TooLong(raw.len()));
    }
    let (mut urn, mut prefix, mut limit) = (None, None, DEFAULT_LIMIT);
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        match &*name {
            "urn" if !value.is_empty() => urn = Some(value.into_owned()),
            "prefix" if !value.is_empty() => prefix = Some(value.into_owned()),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_REMINDERS_LISTED).contains(n))
                    .ok_or_else(|| QueryError::Limit(value.chars().take(32).collect()))?;
            }
            _ => {}
        }
    }
    let reminders = match (&urn, &prefix) {
        (Some(_), Some(_)) => return Err(QueryError::UrnAndPrefix),
        (Some(urn), None) => ReminderQuery::urn(urn, limit),
        (None, Some(prefix)) => ReminderQuery::prefix(prefix, limit),
        (None, None) => ReminderQuery::soonest(limit),
    }
    .map_err(QueryError::Invalid)?;
    Ok(Query {
        reminders,
        urn,
        prefix,
        limit,
    })
}

/// The answer: the query echoed, then the overview's fields.
#[derive(Serialize)]
struct Answer<'a> {
    urn: Option<&'a str>,
    prefix: Option<&'a str>,
    limit: usize,
    #[serde(flatten)]
    overview: &'a RemindersOverview,
}

/// `GET /api/reminders`.
pub(crate) async fn reminders(
    State(state): State<Arc<ViewState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = match parse(raw.as_deref()) {
        Ok(query) => query,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let raw = raw.unwrap_or_default();
    if let Some(kept) = state.reminders.fresh(&raw, FRESH_FOR) {
        return kept;
    }
    let overview = match state.reader.reminders(&query.reminders).await {
        Ok(overview) => overview,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the reminders: {e}"),
            )
                .into_response();
        }
    };
    let answer = Answer {
        urn: query.urn.as_deref(),
        prefix: query.prefix.as_deref(),
        limit: query.limit,
        overview: &overview,
    };
    state.reminders.keep(&raw, &answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_is_bounded() {
        let q = parse(Some("urn=user%3A42&limit=7")).unwrap();
        assert_eq!((q.urn.as_deref(), q.limit), (Some("user:42"), 7));
        assert_eq!(parse(None).unwrap().limit, DEFAULT_LIMIT);
        assert!(parse(Some("prefix=user%3A")).is_ok());
        assert_eq!(
            parse(Some("urn=a%3A1&prefix=a%3A")).unwrap_err(),
            QueryError::UrnAndPrefix
        );
        for limit in ["0", "501", "-1", "ten"] {
            assert!(
                matches!(
                    parse(Some(&format!("limit={limit}"))),
                    Err(QueryError::Limit(_))
                ),
                "{limit}"
            );
        }
        assert!(matches!(
            parse(Some("urn=has+space")),
            Err(QueryError::Invalid(_))
        ));
        let long = format!("prefix={}", "a".repeat(conclib_core::MAX_URN_LEN + 1));
        assert!(matches!(parse(Some(&long)), Err(QueryError::Invalid(_))));
        let longer = format!("urn={}", "a".repeat(MAX_QUERY_LEN));
        let err = parse(Some(&longer)).unwrap_err();
        assert_eq!(err, QueryError::TooLong(MAX_QUERY_LEN + 4));
        assert!(err.to_string().len() < 100);
        let controls = format!("urn={}", "%01".repeat(250));
        let err = parse(Some(&controls)).unwrap_err();
        assert!(err.to_string().len() < 400, "{err}");
        let huge_limit = format!("limit={}", "9".repeat(900));
        assert!(parse(Some(&huge_limit)).unwrap_err().to_string().len() < 120);
    }
}
