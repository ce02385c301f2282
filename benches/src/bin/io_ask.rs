//! Asks to a local actor whose handler waits for I/O, against the same I/O done by the
//! asking task itself, alternated in one run.
//!
//! The handler writes a byte to a Unix socket and reads the echo a plain thread sends back
//! (blocking, no runtime): its answer never comes within the scheduler turn that delivered
//! the ask. The floor is the same round trip from the asking task. Sequential asks from a
//! task of a 2-worker runtime, in blocks alternated with the floor:
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml --no-default-features --bin io_ask
//! ```
//!
//! It prints each round, then `RESULT ask_us=.. floor_us=.. ratio=..` (medians of the
//! rounds' p50s, microseconds a round trip). Arguments: round trips a block (default
//! 2,000), rounds (9).
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use conclib::{ActorSystem, actor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[actor]
struct Echoer {
    stream: UnixStream,
}

#[actor]
impl Echoer {
    #[handle]
    async fn round_trip(&mut self) -> u8 {
        let mut byte = [7u8];
        self.stream.write_all(&byte).await.expect("written");
        self.stream.read_exact(&mut byte).await.expect("read");
        byte[0]
    }
}

/// A socket whose other end a plain thread echoes, byte by byte.
fn echoed() -> UnixStream {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    std::thread::spawn(move || {
        let mut theirs = theirs;
        let mut byte = [0u8];
        while theirs.read_exact(&mut byte).is_ok() {
            if theirs.write_all(&byte).is_err() {
                break;
            }
        }
    });
    ours.set_nonblocking(true).expect("non-blocking");
    UnixStream::from_std(ours).expect("registered")
}

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let block: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(9);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (ask, floor) = runtime
        .block_on(runtime.spawn(async move {
            let system = ActorSystem::new("io-ask");
            let echoer = system
                .spawn(Echoer { stream: echoed() })
                .await
                .expect("spawned");
            let mut direct = echoed();
            let (mut asks, mut floors) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let mut times = Vec::with_capacity(block);
                for _ in 0..block {
                    let t = Instant::now();
                    let mut byte = [7u8];
                    direct.write_all(&byte).await.expect("written");
                    direct.read_exact(&mut byte).await.expect("read");
                    times.push(t.elapsed());
                }
                floors.push(p50(times));
                let mut times = Vec::with_capacity(block);
                for _ in 0..block {
                    let t = Instant::now();
                    echoer.round_trip().await.expect("answered");
                    times.push(t.elapsed());
                }
                asks.push(p50(times));
                println!(
                    "round {round}: ask {:.1} µs, floor {:.1} µs",
                    asks[round], floors[round]
                );
            }
            (median(asks), median(floors))
        }))
        .expect("the bench task");
    println!(
        "RESULT ask_us={ask:.1} floor_us={floor:.1} ratio={:.2}",
        ask / floor
    );
}
