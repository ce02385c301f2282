//! The last answer of an endpoint that reads Redis on request, by its query string: reused
//! while fresh, so that however many pages watch, the same query reaches Redis at most once
//! in that time. Its own module because the state that holds it ([`crate::sampler`]) and
//! the endpoint that uses it ([`crate::reminders`]) would otherwise name each other.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The last answer and its query string, and when it was made.
#[derive(Default)]
pub(crate) struct LastAnswer(Mutex<Option<(String, Instant, Arc<String>)>>);

impl LastAnswer {
    /// The last answer, if it answered `raw` less than `fresh_for` ago.
    pub(crate) fn fresh(&self, raw: &str, fresh_for: Duration) -> Option<Arc<String>> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(q, at, _)| q == raw && at.elapsed() < fresh_for)
            .map(|(_, _, body)| body.clone())
    }

    /// Keeps `body` as the answer to `raw`, made now.
    pub(crate) fn keep(&self, raw: &str, body: Arc<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((raw.to_owned(), Instant::now(), body));
    }
}

/// A kept answer (a JSON body) as a response.
pub(crate) fn json(body: Arc<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        String::clone(&body),
    )
        .into_response()
}
