//! Feature `otel`: a request that carries a trace becomes, in an OpenTelemetry export, a
//! `handle` span that is a child of the asking side's span; and an asker inside an
//! OpenTelemetry-instrumented span passes that span on without a scope of its own.
#![cfg(feature = "otel")]

use std::any::TypeId;

use conclib::trace::TraceContext;
use conclib::*;
#[allow(unused_imports)]
use conclib::{
    context::*, dynamic::*, error::*, mailbox::*, pool::*, remote::*, request::*, snapshot::*,
    supervision::*, system::*, urn::*,
};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

#[actor]
struct Echo;

#[message(response = u64)]
#[derive(serde::Serialize, serde::Deserialize)]
struct Ping(u64);

#[actor]
impl Echo {
    #[handle(remote)]
    fn ping(&mut self, Ping(n): Ping) -> u64 {
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_trace_makes_the_handler_span_a_child_in_the_export() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let system = ActorSystem::new("otel");
    let echo = system.build(Echo).urn("echo").spawn().await.unwrap();

    // The asking side, as the proxy passes it on: a remote trace position.
    let asker =
        TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let dynamic = system.lookup("echo").unwrap();
    let answer = dynamic
        .erased(Ping::name(), TypeId::of::<Ping>(), Box::new(Ping(7)))
        .trace(Some(asker))
        .ask()
        .await
        .unwrap();
    assert_eq!(*answer.downcast::<u64>().unwrap(), 7);

    // An asker inside an OpenTelemetry span: `current()` is that span's position.
    let web = tracing::info_span!("web request");
    let inside = {
        let _entered = web.enter();
        TraceContext::current().expect("the current span's OpenTelemetry context")
    };
    drop(web);
    echo.ping(Ping(1)).await.unwrap();
    echo.stop();
    echo.wait_for_stop().await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().unwrap();
    let handle = spans
        .iter()
        .find(|s| s.name == "handle" && s.parent_span_id.to_string() == "00f067aa0ba902b7")
        .unwrap_or_else(|| panic!("no handle span under the asker's span: {spans:#?}"));
    assert_eq!(
        handle.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(handle.parent_span_is_remote);
    let web = spans.iter().find(|s| s.name == "web request").unwrap();
    assert_eq!(inside.trace_id(), web.span_context.trace_id().to_string());
    assert_eq!(inside.span_id(), web.span_context.span_id().to_string());

    // The run loop runs inside the actor's span (it ends when the actor's task is dropped,
    // just after `wait_for_stop` returns): a message without a carried trace is handled in
    // a child of it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spans = loop {
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        if spans.iter().any(|s| s.name == "actor") {
            break spans;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no actor span: {spans:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let actor = spans
        .iter()
        .find(|s| {
            s.name == "actor"
                && s.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "urn" && kv.value.as_str() == "echo")
        })
        .unwrap_or_else(|| panic!("no actor span with urn echo: {spans:#?}"));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "handle" && s.parent_span_id == actor.span_context.span_id()),
        "no handle span under the actor's span: {spans:#?}"
    );
    #[cfg(feature = "redis")]
    through_the_proxy(&provider, &exporter).await;
}

/// A `ProxyClient` ask inside an OpenTelemetry span: the actor's `handle` span is a child
/// of the client's exported `conclib.ask` span (not of a span no one exported).
#[cfg(feature = "redis")]
async fn through_the_proxy(provider: &SdkTracerProvider, exporter: &InMemorySpanExporter) {
    use conclib::redis::{ProxyClient, ProxyConfig, start_proxy, start_redis};
    use tracing::Instrument;
    let redis = start_redis(&ProxyConfig::default()).await.unwrap();
    let config = redis.config(&ProxyConfig::default().with_namespace("otel"));
    let system = ActorSystem::new("otel-proxied");
    system
        .build(Echo)
        .urn("echo-proxied")
        .spawn()
        .await
        .unwrap();
    let proxy = start_proxy(&system, &config).await.unwrap();
    let client = ProxyClient::connect(&config).await.unwrap();
    let answer: u64 = client
        .ask("echo-proxied", Ping(3))
        .instrument(tracing::info_span!("proxied web request"))
        .await
        .unwrap();
    assert_eq!(answer, 3);
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let web = spans
        .iter()
        .find(|s| s.name == "proxied web request")
        .unwrap_or_else(|| panic!("no web request span: {spans:#?}"));
    let ask = spans
        .iter()
        .find(|s| s.name == "conclib.ask" && s.parent_span_id == web.span_context.span_id())
        .unwrap_or_else(|| panic!("no conclib.ask span under the web request: {spans:#?}"));
    assert!(
        spans
            .iter()
            .any(|s| s.name == "handle" && s.parent_span_id == ask.span_context.span_id()),
        "no handle span under the client's conclib.ask span: {spans:#?}"
    );
    client.shutdown().await;
    proxy.shutdown().await.unwrap();
}
