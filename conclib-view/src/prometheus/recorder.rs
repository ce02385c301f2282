//! The facade's recorder: the exporter's gauges, and counters and histograms of its own.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_exporter_prometheus::formatting::{sanitize_label_key, sanitize_metric_name};

use super::buckets::{COUNT_BUCKETS, SECONDS_BUCKETS};
use super::counter::ThreadCounter;
use super::histogram::{BucketHistogram, write_sample};

/// A `metrics` recorder that exports in the Prometheus text format: gauges kept by
/// `metrics-exporter-prometheus`'s recorder; counters, and histograms with the fixed
/// buckets of [the module's docs](super), kept here per series and thread.
///
/// [`install`](super::install) makes one the global recorder; build one yourself to use it
/// as a local recorder (tests) or behind a recorder layer of your own.
///
/// ```
/// use conclib_view::prometheus::PrometheusRecorder;
///
/// let recorder = PrometheusRecorder::new();
/// let handle = recorder.handle();
/// metrics::with_local_recorder(&recorder, || {
///     metrics::histogram!("job_seconds", "queue" => "mail").record(0.003);
///     metrics::counter!("jobs_total").increment(2);
/// });
/// let text = handle.render();
/// assert!(text.contains("job_seconds_bucket{queue=\"mail\",le=\"0.01\"} 1"));
/// assert!(text.contains("job_seconds_count{queue=\"mail\"} 1"));
/// assert!(text.contains("jobs_total 2"));
/// ```
#[derive(Debug)]
pub struct PrometheusRecorder {
    exporter: metrics_exporter_prometheus::PrometheusRecorder,
    counters: Arc<Family<ThreadCounter>>,
    histograms: Arc<Family<BucketHistogram>>,
}

impl PrometheusRecorder {
    /// A recorder with nothing recorded yet.
    #[must_use]
    pub fn new() -> Self {
        PrometheusRecorder {
            // Its histogram settings would not be used: it sees only gauges.
            exporter: PrometheusBuilder::new().build_recorder(),
            counters: Arc::default(),
            histograms: Arc::default(),
        }
    }

    /// A handle that renders what this recorder records, for as long as either lives.
    #[must_use]
    pub fn handle(&self) -> PrometheusHandle {
        PrometheusHandle {
            exporter: self.exporter.handle(),
            counters: self.counters.clone(),
            histograms: self.histograms.clone(),
        }
    }
}

impl Default for PrometheusRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl metrics::Recorder for PrometheusRecorder {
    /// Kept for the counter's `# HELP` line, as a histogram's.
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.counters.describe(key.as_str(), &description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.exporter.describe_gauge(key, unit, description);
    }

    /// Kept for the histogram's `# HELP` line (the first description given wins, as with
    /// the exporter's); the unit is not added to the name (nor is it for counters and
    /// gauges: the exporter's default).
    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.histograms.describe(key.as_str(), &description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.counters.register(key, |_| ThreadCounter::new()))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.exporter.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.histograms.register(key, |name| {
            BucketHistogram::new(if name == "conclib_proxy_read_batch_size" {
                &COUNT_BUCKETS
            } else {
                &SECONDS_BUCKETS
            })
        }))
    }
}

/// Renders what a [`PrometheusRecorder`] recorded (from [`install`](super::install) or
/// [`PrometheusRecorder::handle`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct PrometheusHandle {
    exporter: metrics_exporter_prometheus::PrometheusHandle,
    counters: Arc<Family<ThreadCounter>>,
    histograms: Arc<Family<BucketHistogram>>,
}

impl PrometheusHandle {
    /// Everything recorded so far, in the Prometheus text format (version 0.0.4): the
    /// counters, the gauges, then the histograms, each metric's series together under
    /// one `# TYPE` line.
    ///
    /// ```
    /// let recorder = conclib_view::prometheus::PrometheusRecorder::new();
    /// let handle = recorder.handle();
    /// metrics::with_local_recorder(&recorder, || {
    ///     metrics::histogram!("conclib_proxy_read_batch_size").record(3.0);
    /// });
    /// assert!(handle.render().contains("conclib_proxy_read_batch_size_bucket{le=\"4\"} 1"));
    /// ```
    #[must_use]
    pub fn render(&self) -> String {
        let mut text = String::new();
        self.render_counters(&mut text);
        text.push_str(&self.exporter.render());
        self.render_histograms(&mut text);
        text
    }

    /// [`render`](Self::render), written to `output`.
    ///
    /// # Errors
    /// Those of `output`.
    pub fn render_to_write(&self, output: &mut impl io::Write) -> io::Result<()> {
        let mut text = String::new();
        self.render_counters(&mut text);
        output.write_all(text.as_bytes())?;
        self.exporter.render_to_write(output)?;
        text.clear();
        self.render_histograms(&mut text);
        output.write_all(text.as_bytes())
    }

    fn render_counters(&self, out: &mut String) {
        self.counters
            .render(out, "counter", |counter, out, name, labels| {
                write_sample(out, name, "", labels, counter.value());
            });
    }

    fn render_histograms(&self, out: &mut String) {
        self.histograms
            .render(out, "histogram", |histogram, out, name, labels| {
                histogram.snapshot().write_text(out, name, labels);
            });
    }
}

/// Every series of one kind of metric (counters, histograms) registered, by key.
struct Family<M> {
    /// Registration is rare (an actor registers its series per message type once),
    /// rendering rarer still, and adding never comes here: a plain lock is enough.
    series: RwLock<HashMap<Key, Series<M>>>,
    /// `# HELP` text by sanitized name, already escaped.
    descriptions: Mutex<HashMap<String, String>>,
}

impl<M> Default for Family<M> {
    fn default() -> Self {
        Family {
            series: RwLock::default(),
            descriptions: Mutex::default(),
        }
    }
}

impl<M> std::fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Family")
            .field("series", &series.len())
            .finish_non_exhaustive()
    }
}

/// One series: its metric and what its lines start with, computed once.
struct Series<M> {
    metric: Arc<M>,
    /// The metric's name, sanitized.
    name: String,
    /// Its labels as `k="v"` pairs joined by commas, sanitized and escaped.
    labels: String,
}

impl<M> Family<M> {
    fn describe(&self, name: &str, description: &str) {
        self.descriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(sanitize_metric_name(name))
            .or_insert_with(|| escape(description, false));
    }

    /// The series of `key`, made by `make` (given its sanitized name) the first time.
    fn register(&self, key: &Key, make: impl FnOnce(&str) -> M) -> Arc<M> {
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return series.metric.clone();
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        series
            .entry(key.clone())
            .or_insert_with(|| {
                let (name, labels) = name_and_labels(key);
                Series {
                    metric: Arc::new(make(&name)),
                    name,
                    labels,
                }
            })
            .metric
            .clone()
    }

    /// Appends every series, grouped by name (the text format wants a metric's series
    /// together) under `# TYPE {name} {kind}`, names and label sets in order so that
    /// renders compare line by line; `write` appends one series' lines.
    fn render(&self, out: &mut String, kind: &str, write: impl Fn(&M, &mut String, &str, &str)) {
        let mut by_name: BTreeMap<&str, Vec<&Series<M>>> = BTreeMap::new();
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        for s in series.values() {
            by_name.entry(&s.name).or_default().push(s);
        }
        let descriptions = self
            .descriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, mut family) in by_name {
            family.sort_by(|a, b| a.labels.cmp(&b.labels));
            if let Some(help) = descriptions.get(name) {
                out.push_str("# HELP ");
                out.push_str(name);
                out.push(' ');
                out.push_str(help);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            for s in family {
                write(&s.metric, out, name, &s.labels);
            }
            out.push('\n');
        }
    }
}

/// A key's name, sanitized, and its labels as `k="v"` pairs joined by commas, sanitized
/// and escaped. A label given twice keeps its last value, in the place of its first (as
/// the exporter does): Prometheus rejects a series with a label twice.
fn name_and_labels(key: &Key) -> (String, String) {
    let name = sanitize_metric_name(key.name());
    let mut pairs: Vec<(String, String)> = Vec::new();
    for label in key.labels() {
        let k = sanitize_label_key(label.key());
        let v = escape(label.value(), true);
        match pairs.iter_mut().find(|(existing, _)| *existing == k) {
            Some(pair) => pair.1 = v,
            None => pairs.push((k, v)),
        }
    }
    let labels = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",");
    (name, labels)
}

/// `text` escaped as the text format wants a label value (`quoted`: `\\`, `\"` and `\n`)
/// or a `# HELP` text (`\\` and `\n`). Not the exporter's `sanitize_label_value`: that
/// one takes a backslash before a quote or a line feed for an escape already made and
/// drops it.
fn escape(text: &str, quoted: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quoted => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn label_values_and_help_texts_are_escaped_as_the_text_format_says() {
        assert_eq!(escape("a\\b\"c\nd", true), "a\\\\b\\\"c\\nd");
        assert_eq!(escape("a\\b\"c\nd", false), "a\\\\b\"c\\nd");
        // A backslash before a quote or a line feed is the user's, kept.
        assert_eq!(escape("\\\"\\\n", true), "\\\\\\\"\\\\\\n");
    }
}
