//! The facade's Prometheus recorder exports histograms with buckets, not summaries.
#![cfg(feature = "prometheus")]

#[test]
fn histograms_are_exported_with_buckets() {
    let handle = conclib_view::prometheus::install().expect("the recorder installs");
    metrics::histogram!("conclib_actor_handling_seconds", "actor" => "a").record(0.003);
    metrics::histogram!("conclib_proxy_read_batch_size", "system" => "s").record(3.0);
    let text = handle.render();
    assert!(
        text.contains("# TYPE conclib_actor_handling_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("conclib_actor_handling_seconds_bucket{actor=\"a\",le=\"0.01\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("conclib_actor_handling_seconds_bucket{actor=\"a\",le=\"0.0025\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("conclib_proxy_read_batch_size_bucket{system=\"s\",le=\"4\"} 1"),
        "{text}"
    );
    assert!(!text.contains("quantile="), "{text}");
}
