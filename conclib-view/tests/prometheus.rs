//! The facade's Prometheus recorder exports histograms with buckets, not summaries, and
//! its own histograms count every sample exactly, from any number of threads.
#![cfg(feature = "prometheus")]

use std::collections::BTreeMap;
use std::sync::Arc;

use conclib_view::prometheus::{PrometheusRecorder, SECONDS_BUCKETS};

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
    // A second recorder cannot replace the first: a typed error, not a panic.
    assert!(conclib_view::prometheus::install().is_err());
}

/// One sample line of the text format: `name{labels} value`, labels as written.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format as a scraper would, checking what it must: `# TYPE` once per
/// metric and before its samples, label values quoted with `\\`, `\"` and `\n` escaped,
/// values that parse as numbers (`+Inf`, `NaN` included).
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "# TYPE {name} twice in\n{text}"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?} in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
            None => (series, BTreeMap::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "{name}: no # TYPE before it in\n{text}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (types, samples)
}

fn parse_labels(mut s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect("key=\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("a closing quote") {
                (_, '\\') => match chars.next().expect("an escaped character").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "{key} twice"
        );
        s = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .unwrap_or_else(|| panic!("{name} {labels:?} not in {samples:#?}"))
}

#[test]
fn rendered_text_parses_with_every_bucket_sum_and_count() {
    let recorder = PrometheusRecorder::new();
    let handle = recorder.handle();
    let odd = "say \"hi\"\\\nbye";
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_histogram!("job_seconds", "Time a job \"took\".");
        let a = metrics::histogram!("job_seconds", "queue" => "a");
        // 2 µs, 0.3 ms twice, 3 s, and one past every bound.
        a.record(2e-6);
        a.record_many(3e-4, 2);
        a.record(3.0);
        a.record(100.0);
        metrics::histogram!("job_seconds", "queue" => odd).record(0.02);
        metrics::describe_counter!("jobs_total", "Jobs done.");
        metrics::counter!("jobs_total", "queue" => "a").increment(5);
        metrics::counter!("jobs_total", "queue" => "b").increment(1);
        metrics::counter!("jobs_total", "queue" => "b").increment(2);
        metrics::counter!("jobs_seen_total").absolute(9);
        metrics::gauge!("jobs_queued").set(3.0);
    });
    let text = handle.render();
    let (types, samples) = parse(&text);
    assert_eq!(types["job_seconds"], "histogram", "{text}");
    assert_eq!(types["jobs_total"], "counter", "{text}");
    assert_eq!(types["jobs_queued"], "gauge", "{text}");
    assert!(text.contains("# HELP job_seconds Time a job"), "{text}");
    assert!(text.contains("# HELP jobs_total Jobs done.\n"), "{text}");

    let a = [("queue", "a")];
    let mut previous = 0.0;
    for bound in SECONDS_BUCKETS {
        let le = bound.to_string();
        let n = find(&samples, "job_seconds_bucket", &[a[0], ("le", &le)]).value;
        let want = [2e-6, 3e-4, 3e-4, 3.0, 100.0]
            .iter()
            .filter(|v| **v <= bound)
            .count() as f64;
        assert_eq!(n, want, "le={le}\n{text}");
        assert!(n >= previous, "buckets are cumulative\n{text}");
        previous = n;
    }
    assert_eq!(
        find(&samples, "job_seconds_bucket", &[a[0], ("le", "+Inf")]).value,
        5.0
    );
    assert_eq!(find(&samples, "job_seconds_count", &a).value, 5.0);
    let sum = find(&samples, "job_seconds_sum", &a).value;
    assert!((sum - 103.000602).abs() < 1e-9, "{sum}");

    // The odd label value comes back whole from its escaped form.
    let odd = [("queue", odd)];
    assert_eq!(find(&samples, "job_seconds_count", &odd).value, 1.0);
    assert_eq!(
        find(&samples, "job_seconds_bucket", &[odd[0], ("le", "0.05")]).value,
        1.0
    );
    assert_eq!(find(&samples, "jobs_total", &a).value, 5.0);
    assert_eq!(find(&samples, "jobs_total", &[("queue", "b")]).value, 3.0);
    assert_eq!(find(&samples, "jobs_seen_total", &[]).value, 9.0);

    // Written to an `io::Write`: the same text.
    let mut written = Vec::new();
    handle.render_to_write(&mut written).unwrap();
    assert_eq!(String::from_utf8(written).unwrap(), text);
    assert_eq!(find(&samples, "jobs_queued", &[]).value, 3.0);
}

#[test]
fn threads_recording_into_one_series_lose_no_sample_nor_count() {
    const THREADS: usize = 4;
    const SAMPLES: usize = 50_000;
    const TINY: f64 = 1.0 / (1u64 << 20) as f64;
    const SMALL: f64 = 1.0 / 1024.0;
    let recorder = Arc::new(PrometheusRecorder::new());
    let handle = recorder.handle();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let recorder = recorder.clone();
            std::thread::spawn(move || {
                // Each thread registers the series itself: one series all the same.
                let (h, c) = metrics::with_local_recorder(&*recorder, || {
                    (
                        metrics::histogram!("work_seconds", "actor" => "w"),
                        metrics::counter!("work_total", "actor" => "w"),
                    )
                });
                for i in 0..SAMPLES {
                    // 2^-20 s (under 1 µs) and 2^-10 s (in the 0.0025 bucket): exact in
                    // binary, so the sum is exact whatever the order.
                    h.record(if i % 2 == 0 { TINY } else { SMALL });
                    c.increment(1);
                }
                h.record_many(0.5, 1_000);
                c.increment(1_000);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a recording thread panicked");
    }
    let text = handle.render();
    let (_, samples) = parse(&text);
    let labels = [("actor", "w")];
    let total = (THREADS * (SAMPLES + 1_000)) as f64;
    assert_eq!(find(&samples, "work_seconds_count", &labels).value, total);
    assert_eq!(find(&samples, "work_total", &labels).value, total);
    let bucket = |le: &str| find(&samples, "work_seconds_bucket", &[labels[0], ("le", le)]).value;
    let half = (THREADS * SAMPLES / 2) as f64;
    assert_eq!(bucket("0.000001"), half);
    assert_eq!(bucket("0.0005"), half);
    assert_eq!(bucket("0.0025"), 2.0 * half);
    assert_eq!(bucket("0.25"), 2.0 * half);
    assert_eq!(bucket("1"), total);
    assert_eq!(bucket("+Inf"), total);
    let want = half * TINY + half * SMALL + (THREADS * 1_000) as f64 * 0.5;
    // The text format writes the shortest decimal that reads back as the same `f64`.
    assert_eq!(find(&samples, "work_seconds_sum", &labels).value, want);
}
