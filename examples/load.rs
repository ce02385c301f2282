//! Driving HTTP traffic at the web processes and summing up what happened: requests, errors,
//! latency percentiles, per process and in total.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::{Semaphore, watch};

/// One HTTP request of the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `POST /counters/{counter}/increment?by={by}`.
    Increment {
        /// The counter's name.
        counter: String,
        /// The step.
        by: u64,
    },
    /// `GET /counters/{counter}`.
    ReadCounter {
        /// The counter's name.
        counter: String,
    },
    /// `PUT /kv/{key}` with `{"value": value}`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// `GET /kv/{key}`.
    Get {
        /// The key.
        key: String,
    },
}

impl Op {
    /// A short name of the operation, for tables.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Increment { .. } => "increment",
            Op::ReadCounter { .. } => "read",
            Op::Put { .. } => "put",
            Op::Get { .. } => "get",
        }
    }

    /// Sends the request to the web process at `base`.
    fn send(&self, http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
        match self {
            Op::Increment { counter, by } => {
                http.post(format!("{base}/counters/{counter}/increment?by={by}"))
            }
            Op::ReadCounter { counter } => http.get(format!("{base}/counters/{counter}")),
            Op::Put { key, value } => http
                .put(format!("{base}/kv/{key}"))
                .json(&serde_json::json!({ "value": value })),
            Op::Get { key } => http.get(format!("{base}/kv/{key}")),
        }
    }
}

/// One request of the traffic: which web process gets which operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The index of the web process.
    pub target: usize,
    /// What to send it.
    pub op: Op,
}

/// What happened to one [`Request`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request.
    pub request: Request,
    /// When it was sent.
    pub sent: Instant,
    /// How long it took to get the whole answer (or the error).
    pub latency: Duration,
    /// The HTTP status, or why there was none (connection refused, ...).
    pub status: Result<StatusCode, String>,
    /// The answer's JSON body, if it had one.
    pub body: Option<serde_json::Value>,
}

impl Outcome {
    /// Whether the answer was a 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.status.as_ref().is_ok_and(StatusCode::is_success)
    }

    /// `"200"`, `"404 unknown_actor"`, or the transport error's kind.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.status {
            Ok(status) => match self
                .body
                .as_ref()
                .and_then(|b| b.get("error"))
                .and_then(|e| e.as_str())
            {
                Some(code) => format!("{} {code}", status.as_u16()),
                None => status.as_u16().to_string(),
            },
            Err(error) => error.clone(),
        }
    }
}

/// A plain HTTP/1.1 client for the traffic: no proxy, a connection pool as large as the
/// concurrency, a 30 s limit per request.
///
/// # Panics
/// If the client cannot be built (no TLS or DNS features are involved, so it can).
#[must_use]
pub fn http_client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain HTTP client")
}

/// `requests` increments, spread round-robin over `targets` processes.
#[must_use]
pub fn increments(counter: &str, requests: usize, targets: usize) -> Vec<Request> {
    (0..requests)
        .map(|i| Request {
            target: i % targets.max(1),
            op: Op::Increment {
                counter: counter.to_owned(),
                by: 1,
            },
        })
        .collect()
}

/// How many keys [`mixed`] and [`seed_keys`] use.
pub const KEYS: usize = 16;

/// One put of each of the [`KEYS`] keys [`mixed`] reads, spread over `targets` processes.
#[must_use]
pub fn seed_keys(targets: usize) -> Vec<Request> {
    (0..KEYS)
        .map(|i| Request {
            target: i % targets.max(1),
            op: Op::Put {
                key: format!("key-{i}"),
                value: "seed".to_owned(),
            },
        })
        .collect()
}

/// A mixed workload spread round-robin over `targets` processes: 70 % increments of
/// `counter`, 10 % reads of it, 10 % puts and 10 % gets of [`KEYS`] keys (run
/// [`seed_keys`] first, so that every get finds its key).
#[must_use]
pub fn mixed(counter: &str, requests: usize, targets: usize) -> Vec<Request> {
    (0..requests)
        .map(|i| {
            let key = format!("key-{}", i % KEYS);
            let op = match i % 10 {
                0 => Op::Put {
                    key,
                    value: format!("value-{i}"),
                },
                1 => Op::ReadCounter {
                    counter: counter.to_owned(),
                },
                2 => Op::Get { key },
                _ => Op::Increment {
                    counter: counter.to_owned(),
                    by: 1,
                },
            };
            Request {
                target: i % targets.max(1),
                op,
            }
        })
        .collect()
}

/// Holds a run after its first `after` requests until `open` turns `true`: lets a test act
/// (stop a process, ...) at a known point of the traffic.
#[derive(Debug)]
pub struct Gate {
    /// How many requests are sent before the gate.
    pub after: usize,
    /// The gate opens when this is `true` (or its sender is dropped).
    pub open: watch::Receiver<bool>,
}

/// Sends every request to `bases[request.target]`, at most `concurrency` at a time, and
/// returns the outcomes in request order. `progress`, if given, counts finished requests;
/// `gate`, if given, holds the requests after its first ones until it opens.
pub async fn run(
    http: &reqwest::Client,
    bases: &[String],
    requests: Vec<Request>,
    concurrency: usize,
    progress: Option<watch::Sender<usize>>,
    mut gate: Option<Gate>,
) -> Vec<Outcome> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let progress = progress.map(Arc::new);
    let mut tasks = tokio::task::JoinSet::new();
    let count = requests.len();
    for (index, request) in requests.into_iter().enumerate() {
        if let Some(held) = gate.as_mut().filter(|g| g.after == index) {
            let _ = held.open.wait_for(|&open| open).await;
            gate = None;
        }
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let http = http.clone();
        let base = bases[request.target].clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let answer = request.op.send(&http, &base).send().await;
            let (status, body) = match answer {
                Ok(response) => {
                    let status = response.status();
                    match response.bytes().await {
                        Ok(bytes) => (Ok(status), serde_json::from_slice(&bytes).ok()),
                        Err(error) => (Err(describe(&error)), None),
                    }
                }
                Err(error) => (Err(describe(&error)), None),
            };
            let latency = sent.elapsed();
            drop(permit);
            if let Some(progress) = progress {
                progress.send_modify(|n| *n += 1);
            }
            (
                index,
                Outcome {
                    request,
                    sent,
                    latency,
                    status,
                    body,
                },
            )
        });
    }
    let mut outcomes: Vec<Option<Outcome>> = vec![None; count];
    while let Some(joined) = tasks.join_next().await {
        let (index, outcome) = joined.expect("a request task panicked");
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every request finished"))
        .collect()
}

/// A short name for a transport error.
fn describe(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "connection refused".to_owned()
    } else if error.is_timeout() {
        "client timeout".to_owned()
    } else if error.is_request() || error.is_body() {
        "connection lost".to_owned()
    } else {
        format!("transport error: {error}")
    }
}

/// Latency percentiles of a set of outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

/// The `p`-th percentile (0 < p ≤ 100) of sorted latencies, by nearest rank.
#[must_use]
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Percentiles {
    /// The percentiles of these latencies.
    #[must_use]
    pub fn of(latencies: impl IntoIterator<Item = Duration>) -> Self {
        let mut sorted: Vec<Duration> = latencies.into_iter().collect();
        sorted.sort_unstable();
        Percentiles {
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// Totals of a set of outcomes.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// How many requests.
    pub requests: usize,
    /// How many got a 2xx.
    pub ok: usize,
    /// The others, by [`Outcome::label`].
    pub errors: BTreeMap<String, usize>,
    /// Latency percentiles of all requests.
    pub latency: Percentiles,
}

impl Summary {
    /// Sums up these outcomes.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Self {
        let mut summary = Summary::default();
        let mut latencies = Vec::new();
        for outcome in outcomes {
            summary.requests += 1;
            latencies.push(outcome.latency);
            if outcome.is_success() {
                summary.ok += 1;
            } else {
                *summary.errors.entry(outcome.label()).or_default() += 1;
            }
        }
        summary.latency = Percentiles::of(latencies);
        summary
    }

    /// How many requests failed.
    #[must_use]
    pub fn error_count(&self) -> usize {
        self.requests - self.ok
    }
}

/// A table of the outcomes: one row per web process, then per operation, then the total.
///
/// `names[i]` names the web process `i`.
#[must_use]
pub fn table(names: &[String], outcomes: &[Outcome], wall: Duration) -> String {
    let mut rows: Vec<(String, Summary)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        rows.push((
            name.clone(),
            Summary::of(outcomes.iter().filter(|o| o.request.target == i)),
        ));
    }
    let mut kinds: Vec<&'static str> = outcomes.iter().map(|o| o.request.op.kind()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let processes = rows.len();
    for kind in kinds {
        rows.push((
            format!("  {kind}"),
            Summary::of(outcomes.iter().filter(|o| o.request.op.kind() == kind)),
        ));
    }
    let total = Summary::of(outcomes);
    let mut out = String::new();
    let line = |out: &mut String, name: &str, s: &Summary| {
        let _ = writeln!(
            out,
            "{name:<12} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
            s.requests,
            s.ok,
            s.error_count(),
            Ms(s.latency.p50),
            Ms(s.latency.p90),
            Ms(s.latency.p99),
            Ms(s.latency.max),
        );
    };
    let _ = writeln!(
        out,
        "{:<12} {:>8} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "", "requests", "ok", "errors", "p50", "p90", "p99", "max"
    );
    for (i, (name, summary)) in rows.iter().enumerate() {
        if i == processes {
            let _ = writeln!(out, "by operation");
        }
        line(&mut out, name, summary);
    }
    line(&mut out, "total", &total);
    let secs = wall.as_secs_f64().max(f64::EPSILON);
    let _ = writeln!(
        out,
        "{} requests in {:.2} s: {:.0} requests/s",
        total.requests,
        wall.as_secs_f64(),
        total.requests as f64 / secs
    );
    for (label, count) in &total.errors {
        let _ = writeln!(out, "  error {label}: {count}");
    }
    out
}

/// A duration in milliseconds, for tables.
struct Ms(Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{:.1} ms", self.0.as_secs_f64() * 1000.0);
        f.pad(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms = |n| Duration::from_millis(n);
        let p = Percentiles::of((1..=100).rev().map(ms));
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max),
            (ms(50), ms(90), ms(99), ms(100))
        );
        assert_eq!(Percentiles::of([ms(7)]).p50, ms(7));
        assert_eq!(Percentiles::of([]), Percentiles::default());
        assert_eq!(
            format!("{:>8}", Ms(Duration::from_micros(1500))),
            "  1.5 ms"
        );
    }

    #[test]
    fn workloads_spread_round_robin() {
        let plan = mixed("hits", 30, 3);
        assert_eq!(plan.iter().filter(|r| r.target == 2).count(), 10);
        assert_eq!(
            plan.iter().filter(|r| r.op.kind() == "increment").count(),
            21
        );
        assert!(
            increments("hits", 5, 2)
                .iter()
                .all(|r| r.op.kind() == "increment")
        );
    }
}
