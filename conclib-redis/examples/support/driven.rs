//! `proxy_bench --drive`: the Rust client measured on command, so that another process
//! (`python/bench.py`) can alternate it with other clients in short slices against one
//! proxy, each measured the same way.
//!
//! One connected `ProxyClient` (its request pool `--pool N` connections, plus its reply
//! reader) lives as long as the process. Each line of standard input is a command; each
//! answer is one line on standard output:
//!
//! - `seq N`: 200 sequential asks of `test.Get` to warm up, then `N` timed ones:
//!   `OK p50_us=.. p99_us=..`;
//! - `c64 SECS WARM`: 64 tasks asking `test.Get` in a loop; after a warm-up of `WARM`
//!   seconds, a window of `SECS` seconds: `OK asks=.. secs=.. cpu_us=..`, then per process
//!   of `--watch NAME=PID` `cpu_us_NAME=..` (CPU time each used in the window, in µs, from
//!   `/proc`).
//!
//! It exits when standard input closes.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclib_redis::ProxyClient;

use crate::actors::Get;

/// How many asks are in flight in a `c64` window.
const IN_FLIGHT: usize = 64;

/// Answers the commands of standard input until it closes.
pub async fn drive(client: ProxyClient, watched: Vec<(String, u32)>) {
    // Standard input is read on a thread of its own: the runtime (one thread) keeps serving
    // the client's connections between commands.
    let (lines, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    println!("READY");
    std::io::stdout().flush().unwrap();
    while let Some(line) = commands.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["seq", n] => match n.parse() {
                Ok(n) => sequential(&client, n).await,
                Err(_) => format!("ERR seq takes a count, got {n:?}"),
            },
            ["c64", secs, warm] => match (secs.parse::<f64>(), warm.parse::<f64>()) {
                (Ok(secs), Ok(warm)) if secs > 0.0 && warm >= 0.0 => {
                    let (secs, warm) =
                        (Duration::from_secs_f64(secs), Duration::from_secs_f64(warm));
                    window(&client, secs, warm, &watched).await
                }
                _ => format!("ERR c64 takes seconds and warm-up seconds, got {secs:?} {warm:?}"),
            },
            _ => format!("ERR unknown command {line:?}"),
        };
        println!("{answer}");
        std::io::stdout().flush().unwrap();
    }
}

async fn sequential(client: &ProxyClient, n: usize) -> String {
    for _ in 0..200 {
        client.ask("bench:counter", Get).await.unwrap();
    }
    let mut samples = Vec::with_capacity(n.max(1));
    for _ in 0..n.max(1) {
        let started = Instant::now();
        client.ask("bench:counter", Get).await.unwrap();
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    format!(
        "OK p50_us={:.1} p99_us={:.1}",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    )
}

async fn window(
    client: &ProxyClient,
    secs: Duration,
    warm: Duration,
    watched: &[(String, u32)],
) -> String {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, stop, done) = (client.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client.ask("bench:counter", Get).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Tasks started, asks flowing, before counting starts.
    tokio::time::sleep(warm).await;
    let own = std::process::id();
    let cpu = || {
        std::iter::once(crate::cpu_us(own))
            .chain(watched.iter().map(|(_, pid)| crate::cpu_us(*pid)))
            .collect::<Vec<f64>>()
    };
    let (count, started, before) = (done.load(Ordering::Relaxed), Instant::now(), cpu());
    tokio::time::sleep(secs).await;
    let (count, elapsed, after) = (
        done.load(Ordering::Relaxed) - count,
        started.elapsed(),
        cpu(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let used: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let mut answer = format!(
        "OK asks={count} secs={:.6} cpu_us={:.0}",
        elapsed.as_secs_f64(),
        used[0]
    );
    for ((name, _), us) in watched.iter().zip(&used[1..]) {
        answer.push_str(&format!(" cpu_us_{name}={us:.0}"));
    }
    answer
}
