//! The last answer of an endpoint that reads Redis on request, by its query string: reused
//! while fresh, so that however many pages watch, the same query reaches Redis at most once
//! in that time. Its own module because the state that holds it ([`crate::sampler`]) and
//! the endpoint that uses it ([`crate::reminders`]) would otherwise name each other.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The last answer and its query string, and when it was made.
#[derive(Default)]
pub(crate) struct LastAnswer(Mutex<Option<(String, Instant, Arc<String>)>>);

impl LastAnswer {
    /// The last answer as a response, if it answered `raw` less than `fresh_for` ago.
    pub(crate) fn fresh(&self, raw: &str, fresh_for: Duration) -> Option<Response> {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .filter(|(q, at, _)| q == raw && at.elapsed() < fresh_for)
            .map(|(_, _, body)| json(body))
    }

    /// `answer` as JSON, kept as the answer to `raw` made now, and as a response.
    pub(crate) fn keep(&self, raw: &str, answer: &impl Serialize) -> Response {
        match serde_json::to_string(answer) {
            Ok(body) => {
                let response = json(&body);
                *self.0.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((raw.to_owned(), Instant::now(), Arc::new(body)));
                response
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

/// A JSON body as a response.
fn json(body: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_owned(),
    )
        .into_response()
}
