//! The Server-Sent Events example (`examples/sse.rs`): its router served on a port of its
//! own with a real redis-server and the `Jobs` actor behind the proxy, read over HTTP the
//! way `curl -N` reads it.

use std::time::Duration;

use conclib::ActorSystem;
use conclib::redis::{
    ProxyClient, ProxyConfig, codec::MsgPack, daemon::RedisDaemon, start_proxy, start_redis,
    topics::Topic,
};
use conclib_examples::sse::{Jobs, Progress, router};
use serde_json::{Value, json};

/// Reads an SSE response's lines as they come, each read bounded.
struct SseReader {
    response: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn open(http: &reqwest::Client, url: &str) -> SseReader {
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let kind = response.headers()["content-type"].to_str().unwrap();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        SseReader {
            response,
            buf: String::new(),
        }
    }

    /// The next non-empty line; `None` at the end of the stream.
    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.find('\n') {
                let line: String = self.buf.drain(..=end).collect();
                let line = line.trim_end().to_owned();
                if line.is_empty() {
                    continue;
                }
                return Some(line);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.response.chunk())
                .await
                .expect("a line within 20 s")
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The JSON of the next `data:` line.
    async fn data(&mut self) -> Value {
        let line = self.line().await.expect("an event");
        let json = line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("{line}"));
        serde_json::from_str(json).unwrap()
    }
}

struct App {
    base: String,
    http: reqwest::Client,
    client: ProxyClient,
    _redis: RedisDaemon,
    server: tokio::task::JoinHandle<()>,
}

async fn app() -> App {
    let redis = start_redis(&ProxyConfig::default()).await.unwrap();
    let config = redis.config(&ProxyConfig::default().with_namespace("sse"));
    let system = ActorSystem::new("sse-test");
    let proxy = start_proxy(&system, &config).await.unwrap();
    system
        .spawn(Jobs {
            topics: proxy.topics(),
        })
        .await
        .unwrap();
    proxy.refresh().await; // serves the actor spawned after it started, now
    // The proxy serves for the test's length (its system and handle live in the task).
    let client = ProxyClient::connect(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = router(client.clone());
    let server = tokio::spawn(async move {
        let _serving = (system, proxy);
        axum::serve(listener, routes).await.unwrap();
    });
    App {
        base,
        http: reqwest::Client::new(),
        client,
        _redis: redis,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_progress_streams_to_every_sse_client_and_a_durable_topic_too() {
    let app = app().await;
    // Two streams of job 7's topic, like two browsers.
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream =
            SseReader::open(&app.http, &format!("{}/events/jobs.7?count=20", app.base)).await;
        assert_eq!(stream.line().await.as_deref(), Some(": subscribed"));
        streams.push(stream);
    }
    let started = app
        .http
        .post(format!("{}/jobs/7?steps=20&pause_ms=0", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    assert_eq!(
        started.json::<Value>().await.unwrap(),
        json!({"job": "7", "topic": "jobs.7"})
    );
    for (i, stream) in streams.iter_mut().enumerate() {
        for step in 1..=20 {
            let progress: Progress = serde_json::from_value(stream.data().await).unwrap();
            assert_eq!(
                progress,
                Progress {
                    job: "7".into(),
                    step,
                    of: 20
                },
                "stream {i} {:?}",
                app.client.topics().stats()
            );
        }
        // `count=20`: the stream ends there.
        assert_eq!(stream.line().await, None);
    }

    // A durable topic, published by any client in MessagePack, read in a group.
    let orders = Topic::durable("orders").unwrap().codec(MsgPack);
    let mut stream = SseReader::open(
        &app.http,
        &format!("{}/events/orders?durable=true&group=dash&count=3", app.base),
    )
    .await;
    assert_eq!(stream.line().await.as_deref(), Some(": subscribed"));
    for n in 0..3u32 {
        app.client
            .publish(&orders, &json!({"order": n, "items": ["a", "b"]}))
            .await
            .unwrap();
    }
    for n in 0..3u32 {
        assert_eq!(
            stream.data().await,
            json!({"order": n, "items": ["a", "b"]})
        );
    }
    assert_eq!(stream.line().await, None);

    // A stream whose client goes away ends its subscription.
    let open = SseReader::open(&app.http, &format!("{}/events/jobs.8", app.base)).await;
    assert!(app.client.topics().stats().subscriptions >= 1);
    drop(open);
    conclib_testkit::eventually(Duration::from_secs(10), "the subscription ends", || async {
        app.client.topics().stats().subscriptions == 0
    })
    .await;

    // Names a topic cannot have: 400, with the reason.
    for bad in ["/events/two%20words", "/jobs/a%7Bb%7D"] {
        let method = if bad.starts_with("/jobs") {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let answer = app
            .http
            .request(method, format!("{}{bad}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{bad}");
        let body: Value = answer.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("invalid name"),
            "{body}"
        );
    }
    app.server.abort();
}
