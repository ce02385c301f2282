//! Server-Sent Events from actors: an axum router that streams a topic's events to
//! `curl -N` or a browser's `EventSource`, and the [`Jobs`] actor whose progress it streams.
//! The example `cargo run -p conclib-examples --example sse` serves it (`sse_server.rs`).
//!
//! | route | does | answer |
//! |---|---|---|
//! | `POST /jobs/{id}?steps=N&pause_ms=P` | tells [`Jobs`] (at [`JOBS_URN`], through Redis) to run job `id`: `N` steps (default 5), `P` ms apart (default 200), a [`Progress`] event published to the live topic `jobs.{id}` after each | 202 `{"job":..,"topic":..}` |
//! | `GET /events/{topic}?durable=true&group=G&count=N` | subscribes to the topic (live, or durable in subscriber group `G`, default `web`) | `text/event-stream`: `: subscribed` once subscribed, then `data: <JSON>` per event (a gap or an undecodable event: a comment line saying so); `: ping` after 15 s without one; ends after `N` events if given |
//!
//! Events are published in MessagePack (the [`Jobs`] actor's topic, like a Python
//! publisher's), which decodes into JSON whatever the event's type: the stream shows any
//! topic's events. A bad topic name is a 400, Redis unreachable a 503. The subscription ends
//! when the HTTP client goes away (axum drops the stream, the subscription with it).
//!
//! ```text
//! curl -N localhost:3000/events/jobs.7 &
//! curl -X POST 'localhost:3000/jobs/7?steps=3'
//! : subscribed
//! data: {"job":"7","step":1,"of":3}
//! ...
//! ```

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conclib::actor;
use conclib::redis::{
    ProxyClient,
    codec::MsgPack,
    topics::{Topic, TopicError, Topics},
};
use futures_util::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The URN of the [`Jobs`] actor.
pub const JOBS_URN: &str = "jobs";

/// A job's progress: published after each step to the live topic `jobs.{job}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The job's id.
    pub job: String,
    /// Steps done (1 to `of`).
    pub step: u32,
    /// Steps in all.
    pub of: u32,
}

/// The live topic of job `id`'s progress.
///
/// # Errors
/// [`TopicError::InvalidName`] for an id a topic name cannot hold.
pub fn job_topic(id: &str) -> Result<Topic, TopicError> {
    Ok(Topic::live(format!("jobs.{id}"))?.codec(MsgPack))
}

/// Runs jobs one after the other, publishing each one's progress from its handler (through
/// a clone of its system's proxy's [`Topics`]).
#[actor(urn = "jobs")]
pub struct Jobs {
    /// The serving proxy's topics.
    pub topics: Topics,
}

#[actor]
impl Jobs {
    /// Runs job `id`: `steps` steps `pause_ms` apart, a [`Progress`] event after each.
    #[handle(remote)]
    async fn run(&mut self, id: String, steps: u32, pause_ms: u64) -> Result<(), String> {
        let topic = job_topic(&id).map_err(|e| e.to_string())?;
        for step in 1..=steps {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await; // the step's work
            let progress = Progress {
                job: id.clone(),
                step,
                of: steps,
            };
            self.topics
                .publish(&topic, &progress)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The router of the example; its routes reach Redis through `client`.
pub fn router(client: ProxyClient) -> Router {
    Router::new()
        .route("/jobs/{id}", post(start_job))
        .route("/events/{topic}", get(events))
        .with_state(client)
}

#[derive(Debug, Deserialize)]
struct JobParams {
    steps: Option<u32>,
    pause_ms: Option<u64>,
}

async fn start_job(
    State(client): State<ProxyClient>,
    Path(id): Path<String>,
    Query(params): Query<JobParams>,
) -> Response {
    let topic = match job_topic(&id) {
        Ok(topic) => topic,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let jobs = client.actor::<Jobs>(JOBS_URN);
    let told = jobs
        .run(
            id.clone(),
            params.steps.unwrap_or(5),
            params.pause_ms.unwrap_or(200),
        )
        .tell()
        .await;
    match told {
        Ok(()) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"job": id, "topic": topic.name()})),
        )
            .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct EventParams {
    #[serde(default)]
    durable: bool,
    group: Option<String>,
    count: Option<usize>,
}

async fn events(
    State(client): State<ProxyClient>,
    Path(topic): Path<String>,
    Query(params): Query<EventParams>,
) -> Response {
    let topic = if params.durable {
        Topic::durable(&topic)
    } else {
        Topic::live(&topic)
    };
    let topic = match topic {
        Ok(topic) => topic,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let subscription = client
        .subscribe::<Value>(&topic)
        .group(params.group.unwrap_or_else(|| "web".to_owned()))
        .await;
    let subscription = match subscription {
        Ok(s) => s,
        Err(e @ TopicError::InvalidName(_)) => {
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    // `count` events (comments aside), then the stream ends, and the subscription with it.
    let left = params.count.unwrap_or(usize::MAX);
    let events = stream::unfold(
        (subscription, left),
        |(mut subscription, left)| async move {
            if left == 0 {
                return None;
            }
            match subscription.next().await? {
                Ok(value) => {
                    let event = Event::default()
                        .json_data(value)
                        .unwrap_or_else(|e| comment(&e.to_string()));
                    Some((event, (subscription, left - 1)))
                }
                // Between events: a gap (a live stream too slow dropped some) or an event that
                // is not MessagePack; said as a comment, and the stream goes on.
                Err(e) => Some((comment(&e.to_string()), (subscription, left))),
            }
        },
    );
    let subscribed = stream::once(async { comment("subscribed") });
    sse(subscribed.chain(events)).into_response()
}

fn sse(events: impl Stream<Item = Event> + Send + 'static) -> impl IntoResponse {
    Sse::new(events.map(Ok::<_, Infallible>)).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("ping"),
    )
}

/// An SSE comment line (`: text`); newlines, which would end it, become spaces.
fn comment(text: &str) -> Event {
    Event::default().comment(text.replace(['\r', '\n'], " "))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}
