//! What an increment of one counter series costs when several threads add to it: the
//! series of all the actors of one type, which every worker handling their messages
//! increments.
//!
//! Compares `metrics-exporter-prometheus`'s counter (an atomic count and an atomic
//! generation: two locked adds, on one line every thread writes) with the facade's
//! (`conclib_view::prometheus::PrometheusRecorder`: cells per thread, a plain load and
//! store), on one thread and on `--threads N` (default 2) at once, alternated in rounds:
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml --no-default-features --bin shared_series
//! ```
//!
//! It prints `RESULT threads=.. exporter_ns=.. conclib_ns=.. exporter_1t_ns=..
//! conclib_1t_ns=..`: nanoseconds an increment (wall time of a thread over its
//! increments), medians of the rounds.
use std::sync::{Arc, Barrier};
use std::time::Instant;

const INCREMENTS: u64 = 5_000_000;
const ROUNDS: usize = 7;

/// Nanoseconds an increment, each of `threads` threads adding `INCREMENTS` at once.
fn per_increment(counter: &metrics::Counter, threads: usize) -> f64 {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (counter, start) = (counter.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                for _ in 0..INCREMENTS {
                    counter.increment(1);
                }
                began.elapsed().as_nanos() as f64 / INCREMENTS as f64
            })
        })
        .collect();
    let times: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    times.iter().sum::<f64>() / times.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let threads: usize = std::env::args()
        .skip_while(|a| a != "--threads")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let exporter = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let conclib = conclib_view::prometheus::PrometheusRecorder::new();
    let series = || metrics::counter!("conclib_actor_messages_handled_total", "actor" => "A");
    let exporter_counter = metrics::with_local_recorder(&exporter, series);
    let conclib_counter = metrics::with_local_recorder(&conclib, series);
    let (mut e, mut c, mut e1, mut c1) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        e.push(per_increment(&exporter_counter, threads));
        c.push(per_increment(&conclib_counter, threads));
        e1.push(per_increment(&exporter_counter, 1));
        c1.push(per_increment(&conclib_counter, 1));
    }
    println!(
        "RESULT threads={threads} exporter_ns={:.2} conclib_ns={:.2} exporter_1t_ns={:.2} conclib_1t_ns={:.2}",
        median(e),
        median(c),
        median(e1),
        median(c1)
    );
}
