//! One trace across processes: an HTTP request with a W3C `traceparent` enters a web
//! process (a real child process), which asks the counter through Redis; the counter's
//! `handle` span, in this process, records the same trace id and the web process's ask
//! span as its parent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclib_examples::cluster::{Cluster, ClusterOptions};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

type Spans = Arc<Mutex<HashMap<u64, HashMap<String, String>>>>;

/// Keeps the fields of every `handle` span.
struct Capture(Spans);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "handle" {
            let mut fields = HashMap::new();
            attrs.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().insert(id.into_u64(), fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(fields) = self.0.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_follows_a_web_request_into_the_actor_in_another_process() {
    let spans: Spans = Arc::default();
    let subscriber = tracing_subscriber::registry()
        .with(Capture(spans.clone()).with_filter(tracing_subscriber::filter::LevelFilter::TRACE));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut options = ClusterOptions::new(DEMO, 1);
    options.namespace = format!("trace-{}", std::process::id());
    let cluster = Cluster::start(&options).await.unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let web_span = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .post(format!(
            "{}/counters/hits/increment?by=1",
            cluster.base_urls()[0]
        ))
        .header("traceparent", format!("00-{trace_id}-{web_span}-01"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    // And one without a trace: the proxy's client starts a trace of its own.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/counters/hits/increment?by=1",
            cluster.base_urls()[0]
        ))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    // The answer came after the handler ran: its span is recorded by now.
    let handled: Vec<HashMap<String, String>> = spans.lock().unwrap().values().cloned().collect();
    let traced: Vec<&HashMap<String, String>> = handled
        .iter()
        .filter(|f| f.get("trace_id").map(String::as_str) == Some(trace_id))
        .collect();
    assert_eq!(
        traced.len(),
        1,
        "one handled message in the trace: {handled:#?}"
    );
    let span = traced[0];
    assert_eq!(span["message"], "demo.Increment");
    let parent = &span["parent_span_id"];
    // The parent is the web process's ask span: a child of the web handler's span.
    assert_eq!(parent.len(), 16);
    assert!(parent.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(parent, web_span);
    assert_ne!(parent, "0000000000000000");
    // The untraced request got a trace of its own.
    let others: Vec<&HashMap<String, String>> = handled
        .iter()
        .filter(|f| f.get("trace_id").is_some_and(|t| t != trace_id))
        .collect();
    assert_eq!(others.len(), 1, "{handled:#?}");

    let report = cluster.shutdown().await;
    assert!(report.is_clean(), "{report:#?}");
}
