//! What every framework's scenarios share: sizes, metrics, timing and memory helpers.

use std::time::{Duration, Instant};

/// The sizes of one run's scenarios.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Messages told by one sender to one actor.
    pub tell_n: u64,
    /// Sequential asks.
    pub ask_n: u64,
    /// Actors spawned (and kept alive together).
    pub spawn_n: usize,
    /// Senders in the fan-in.
    pub fanin_senders: u64,
    /// Messages per fan-in sender.
    pub fanin_per_sender: u64,
    /// Actors in the ring.
    pub ring_actors: usize,
    /// Hops the token makes around the ring.
    pub ring_hops: u64,
}

impl Params {
    pub const FULL: Params = Params {
        tell_n: 2_000_000,
        ask_n: 200_000,
        spawn_n: 100_000,
        fanin_senders: 8,
        fanin_per_sender: 250_000,
        ring_actors: 1_000,
        ring_hops: 1_000_000,
    };

    /// `--quick`: a tenth of the messages (spawn keeps 100,000 actors: memory per actor needs them).
    pub const QUICK: Params = Params {
        tell_n: 200_000,
        ask_n: 20_000,
        spawn_n: 100_000,
        fanin_senders: 8,
        fanin_per_sender: 25_000,
        ring_actors: 1_000,
        ring_hops: 100_000,
    };

    pub fn fanin_total(&self) -> u64 {
        self.fanin_senders * self.fanin_per_sender
    }
}

/// What one scenario run reports: named numbers.
pub type Metrics = Vec<(&'static str, f64)>;

/// Messages per second.
pub fn rate(count: u64, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

/// Per-ask latencies, in nanoseconds.
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    #[inline]
    pub fn record(&mut self, since: Instant) {
        self.0.push(since.elapsed().as_nanos() as u64);
    }

    /// mean, p50, p99 (ns) and asks/s over the whole run.
    pub fn metrics(mut self, total: Duration) -> Metrics {
        let n = self.0.len().max(1);
        self.0.sort_unstable();
        let mean = self.0.iter().sum::<u64>() as f64 / n as f64;
        let at = |q: f64| self.0[((n as f64 * q) as usize).min(n - 1)] as f64;
        vec![
            ("mean_ns", mean),
            ("p50_ns", at(0.50)),
            ("p99_ns", at(0.99)),
            ("rate", rate(n as u64, total)),
        ]
    }
}

/// Resident memory of this process, in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as u64
}

/// A vector for `n` refs whose pages are already resident, so that filling it does not count
/// as memory of the actors.
pub fn resident_vec<T>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: writing bytes into the spare capacity touches the pages; the length stays 0,
    // so nothing reads them as `T`.
    unsafe { std::ptr::write_bytes(v.as_mut_ptr(), 0, n) };
    v
}

/// Waits until freshly spawned tasks have all run their first poll and memory stopped
/// growing (RSS equal over two readings 20 ms apart, at most a second).
pub async fn settle() -> u64 {
    let mut last = rss_bytes();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = rss_bytes();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// The same for a runtime without tokio's timer (actix runs its own tokio, which has one).
pub fn spawn_metrics(
    n: usize,
    spawn_took: Duration,
    rss_before: u64,
    rss_after: u64,
    stop_took: Duration,
) -> Metrics {
    vec![
        ("spawn_rate", rate(n as u64, spawn_took)),
        (
            "bytes_per_actor",
            rss_after.saturating_sub(rss_before) as f64 / n as f64,
        ),
        ("stop_rate", rate(n as u64, stop_took)),
    ]
}
