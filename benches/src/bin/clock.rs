//! What one reading of the clock costs here: the floor under the metrics-on ask.
//!
//! With metrics on, an ask is timed by three readings of the clock (the send stamp, the
//! start and the end of handling: two durations, the time in the mailbox and the handling
//! time), and with one ask at a time all three are on the ask's path. This measures a
//! reading of the clock conclib uses (`quanta`'s raw counter, `rdtsc` where the TSC is
//! invariant) and of `Instant::now` (`clock_gettime`), alternated in one run:
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml --no-default-features --bin clock
//! ```
//!
//! It prints `RESULT counter_ns=.. instant_ns=.. three_readings_ns=..`, medians of the rounds.
use std::hint::black_box;
use std::time::Instant;

const READS: u32 = 2_000_000;
const ROUNDS: usize = 7;

fn per_read(mut read: impl FnMut() -> u64) -> f64 {
    let start = Instant::now();
    let mut acc = 0u64;
    for _ in 0..READS {
        acc = acc.wrapping_add(read());
    }
    black_box(acc);
    start.elapsed().as_nanos() as f64 / f64::from(READS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let clock = quanta::Clock::new();
    let epoch = Instant::now();
    let (mut counter, mut instant) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        counter.push(per_read(|| black_box(&clock).raw()));
        instant.push(per_read(|| black_box(epoch).elapsed().as_nanos() as u64));
    }
    let (counter, instant) = (median(counter), median(instant));
    println!(
        "RESULT counter_ns={counter:.1} instant_ns={instant:.1} three_readings_ns={:.1}",
        3.0 * counter
    );
}
