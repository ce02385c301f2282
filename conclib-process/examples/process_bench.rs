//! Process actors measured against the floor of their transport, in one run.
//!
//! `cargo run --release -p conclib-process --example process_bench`
//!
//! - **floor**: a ping-pong of the same frame sizes over a Unix socket pair between two
//!   processes, with blocking sockets and no runtime (this binary, re-executed);
//! - **ask p50**: sequential asks to a process actor, measured from a task;
//! - **tells/s**: one-way tells through one process actor, until the last one is handled;
//! - **spawn**: from `spawn()` to the actor's first answer.
//!
//! Last line: `RESULT ask_p50_us=.. floor_p50_us=.. ratio=.. tells_per_s=.. spawn_ms=..`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use conclib_core::{
    Actor, Context, Handler, Message, MessageDecl, NoError, RemoteMessage, RequestEnvelope,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Bench {
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct Echo(u64);
impl Message for Echo {
    type Response = u64;
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "bench.Echo"
    }
}
impl MessageDecl for Echo {
    type WireError = NoError;
}

#[derive(Serialize, Deserialize)]
struct Count;
impl Message for Count {
    type Response = ();
    type Error = std::convert::Infallible;
    fn name() -> &'static str {
        "bench.Count"
    }
}
impl MessageDecl for Count {
    type WireError = NoError;
}

impl Actor for Bench {
    const REMOTE: &'static [RemoteMessage] = &[
        RemoteMessage::of_infallible::<Echo>(),
        RemoteMessage::of_infallible::<Count>(),
    ];
    async fn handle_request(&mut self, req: RequestEnvelope, _: &mut Context<Self>) {
        let req = match req.extract::<Echo>() {
            Ok((Echo(_), r)) => return r.respond(Ok(self.count)),
            Err(req) => req,
        };
        match req.extract::<Count>() {
            Ok((Count, r)) => {
                self.count += 1;
                r.respond(Ok(()));
            }
            Err(req) => req.reject(),
        }
    }
}
impl Handler<Echo> for Bench {
    async fn handle(
        &mut self,
        _: Echo,
        _: &mut Context<Self>,
    ) -> Result<u64, std::convert::Infallible> {
        Ok(self.count)
    }
}
impl Handler<Count> for Bench {
    async fn handle(
        &mut self,
        _: Count,
        _: &mut Context<Self>,
    ) -> Result<(), std::convert::Infallible> {
        self.count += 1;
        Ok(())
    }
}

/// Bytes of a request and of a reply frame on the link (length prefix included): what an
/// ask of `Echo` and its answer take (tag, id, lane, name, body; tag, id, status, payload).
const REQUEST_BYTES: usize = 33;
const REPLY_BYTES: usize = 19;

fn main() {
    conclib_process::init(conclib_process::Registry::new().actor::<Bench>());
    if let Ok(fd) = std::env::var("BENCH_FLOOR_FD") {
        return floor_echo(fd.parse().expect("a descriptor"));
    }
    let asks: usize = arg("--asks").unwrap_or(20_000);
    let tells: u64 = arg("--tells").unwrap_or(1_000_000);

    let floor = floor_p50(asks);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (ask_p50, tells_per_s, spawn) = runtime.block_on(async move {
        tokio::spawn(async move {
            let mut spawns = Vec::new();
            for _ in 0..5 {
                let started = Instant::now();
                let b = conclib_process::build(Bench { count: 0 })
                    .spawn()
                    .await
                    .unwrap();
                spawns.push(started.elapsed());
                b.kill();
                b.wait_for_stop().await;
            }
            spawns.sort();
            let bench = conclib_process::build(Bench { count: 0 })
                .spawn()
                .await
                .unwrap();
            for _ in 0..1_000 {
                bench.ask(Echo(0)).await.unwrap();
            }
            let mut times = Vec::with_capacity(asks);
            for _ in 0..asks {
                let t = Instant::now();
                bench.ask(Echo(0)).await.unwrap();
                times.push(t.elapsed());
            }
            times.sort();
            let started = Instant::now();
            for _ in 0..tells {
                bench.try_tell(Count).unwrap();
            }
            // In order: once this is answered, every tell before it was handled.
            let total = bench
                .ask(Echo(0))
                .timeout(Duration::from_secs(600))
                .await
                .unwrap();
            let took = started.elapsed();
            assert_eq!(total, tells);
            bench.stop();
            bench.wait_for_stop().await;
            (
                times[times.len() / 2],
                tells as f64 / took.as_secs_f64(),
                spawns[spawns.len() / 2],
            )
        })
        .await
        .unwrap()
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "floor (blocking socket pair ping-pong, {REQUEST_BYTES}/{REPLY_BYTES} bytes) p50: {:.1} µs",
        us(floor)
    );
    println!(
        "process actor ask p50: {:.1} µs ({:.2}x the floor)",
        us(ask_p50),
        us(ask_p50) / us(floor)
    );
    println!("one-way tells through one process actor: {tells_per_s:.0}/s");
    println!(
        "spawn to first answer (median of 5): {:.1} ms",
        spawn.as_secs_f64() * 1e3
    );
    println!(
        "RESULT ask_p50_us={:.1} floor_p50_us={:.1} ratio={:.2} tells_per_s={:.0} spawn_ms={:.1}",
        us(ask_p50),
        us(floor),
        us(ask_p50) / us(floor),
        tells_per_s,
        spawn.as_secs_f64() * 1e3
    );
}

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// The floor's child: answers each request frame with a reply frame, blocking, no runtime.
fn floor_echo(fd: i32) {
    // SAFETY: the parent passed this descriptor for us alone.
    let mut sock = unsafe { UnixStream::from_raw_fd(fd) };
    let mut request = [0u8; REQUEST_BYTES];
    let reply = [1u8; REPLY_BYTES];
    while sock.read_exact(&mut request).is_ok() {
        if sock.write_all(&reply).is_err() {
            return;
        }
    }
}

/// p50 of `n` round trips through the floor's child.
fn floor_p50(n: usize) -> Duration {
    let (mut parent, child) = UnixStream::pair().unwrap();
    let fd = child.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own: let it survive exec.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
    }
    let mut echo = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_FLOOR_FD", fd.to_string())
        .spawn()
        .unwrap();
    drop(child);
    let request = [2u8; REQUEST_BYTES];
    let mut reply = [0u8; REPLY_BYTES];
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 1_000 {
        let t = Instant::now();
        parent.write_all(&request).unwrap();
        parent.read_exact(&mut reply).unwrap();
        if i >= 1_000 {
            times.push(t.elapsed());
        }
    }
    drop(parent);
    let _ = echo.wait();
    times.sort();
    times[times.len() / 2]
}
