//! How late a runtime runs a task, and how much of that its thread waited for a CPU: what a
//! load test needs to tell a slow call of the code under test from a machine that did not
//! run the caller (a shared 2-core machine keeps a runnable thread waiting up to a second).

use std::time::{Duration, Instant};

/// How long the calling thread has waited for a CPU while it could run, so far (Linux's
/// `/proc/thread-self/schedstat`, second field; zero where the kernel keeps none).
pub fn run_delay() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Sleeps `tick` on the current runtime; then how late it woke past `tick`, and how long
/// the thread waited for a CPU while it could run meanwhile ([`run_delay`]'s growth: the
/// machine's other load; the rest of the lateness, the runtime was busy or blocked). A
/// watcher calls it in a loop and reports the ticks late past its threshold.
///
/// ```
/// # async fn watch() {
/// use std::time::Duration;
/// let (late, waited) = conclib_testkit::stalls::late_tick(Duration::from_millis(10)).await;
/// if late >= Duration::from_millis(100) {
///     eprintln!("stalled {late:?}, {waited:?} of it waiting for a CPU");
/// }
/// # }
/// ```
pub async fn late_tick(tick: Duration) -> (Duration, Duration) {
    let (t, before) = (Instant::now(), run_delay());
    tokio::time::sleep(tick).await;
    let late = t.elapsed().saturating_sub(tick);
    (late, run_delay().saturating_sub(before))
}
