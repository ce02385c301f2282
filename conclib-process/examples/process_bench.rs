//! Process actors measured against the floor of their transport, in one run.
//!
//! `cargo run --release -p conclib-process --example process_bench`
//!
//! - **floor**: a ping-pong of the same frame sizes over a Unix socket pair between two
//!   processes, with blocking sockets and no runtime (this binary, re-executed);
//! - **evented floor**: the same ping-pong with non-blocking sockets, each side waiting in
//!   `epoll_wait` before it reads, as an event loop (tokio's included) does: what waiting
//!   for several things at once costs by itself, with no runtime around it;
//! - **runtime floor**: the same ping-pong between tokio runtimes (the child's of one
//!   thread, as a process actor's; the asks from a task of this process's runtime), one task
//!   a side reading and writing, nothing of conclib: what the runtimes cost by themselves;
//! - **handoff floor**: the same with the hand-overs an actor in a task of its own needs at
//!   least: in the child a reader task hands each request to a handler task, which writes
//!   the reply itself; here the asking task writes its request itself and a reader task
//!   hands the reply back;
//! - **hops floor**: the same with a link's tasks: in the child a reader, a handler and a
//!   writer task joined by channels; here the asks handed to a writer task and the replies
//!   handed back by a reader task. The least a link that multiplexes asks to an actor in a
//!   task of its own pays on tokio, with nothing of conclib;
//! - **ask p50**: sequential asks to a process actor, measured from a task; the floors and
//!   the asks alternate in blocks of 1,000 (`--block N`), so all see the same machine;
//! - **tells/s**: one-way tells through one process actor, until the last one is handled;
//! - **spawn**: from `spawn()` to the actor's first answer;
//! - **ask by URN**: then the same asks through `system.lookup(urn)` (the local actor that
//!   relays to the process), alternated with the floor again.
//!
//! Last line: `RESULT ask_p50_us=.. floor_p50_us=.. ratio=.. tells_per_s=.. spawn_ms=..
//! urn_ask_p50_us=.. evented_floor_p50_us=.. runtime_floor_p50_us=.. handoff_floor_p50_us=..
//! hops_floor_p50_us=.. hops_ratio=..` (`ratio` and `hops_ratio`: the ask's and the hops
//! floor's p50 over the floor's).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use conclib_core::{
    Actor, Context, ExposedMessage, Handler, Message, MessageDecl, NoError, RemoteHandler,
    RequestEnvelope,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

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
    const REMOTE: &'static [ExposedMessage] = &[
        ExposedMessage::of_infallible::<Echo>(),
        ExposedMessage::of_infallible::<Count>(),
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
impl RemoteHandler<Echo> for Bench {}
impl RemoteHandler<Count> for Bench {}
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
/// ask of `Echo` and its answer take (tag, id, lane, trace, name, body; tag, id, status,
/// payload).
const REQUEST_BYTES: usize = 34;
const REPLY_BYTES: usize = 19;

fn main() {
    conclib_process::init(conclib_process::Registry::new().actor::<Bench>());
    if let Ok(fd) = std::env::var("BENCH_FLOOR_FD") {
        let fd = fd.parse().expect("a descriptor");
        if let Ok(kind) = std::env::var("BENCH_FLOOR_RUNTIME") {
            return runtime_echo(fd, Shape::named(&kind));
        }
        let evented = std::env::var_os("BENCH_FLOOR_EVENTED").is_some();
        return floor_echo(fd, evented);
    }
    let asks: usize = arg("--asks").unwrap_or(20_000);
    let tells: u64 = arg("--tells").unwrap_or(1_000_000);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let spawn = runtime.block_on(async {
        tokio::spawn(async {
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
            spawns[spawns.len() / 2]
        })
        .await
        .unwrap()
    });
    let bench = runtime.block_on(async {
        conclib_process::build(Bench { count: 0 })
            .spawn()
            .await
            .unwrap()
    });

    // The floors and the asks alternate in blocks, so that all see the same machine (its
    // load drifts within seconds): the floors on this thread, the asks from a task of the
    // runtime.
    let mut floor = Floor::start(false);
    let mut evented_floor = Floor::start(true);
    let (runtime_floor, handoff_floor, hops_floor) = runtime.block_on(async {
        (
            RuntimeFloor::start(Shape::Plain),
            RuntimeFloor::start(Shape::Handoff),
            RuntimeFloor::start(Shape::Hops),
        )
    });
    floor.round_trips(1_000);
    evented_floor.round_trips(1_000);
    runtime.block_on(runtime_floor.round_trips(1_000));
    runtime.block_on(handoff_floor.round_trips(1_000));
    runtime.block_on(hops_floor.round_trips(1_000));
    runtime.block_on(ask_block(&bench, 1_000));
    let (mut floor_times, mut ask_times) = (Vec::with_capacity(asks), Vec::with_capacity(asks));
    let mut evented_times = Vec::with_capacity(asks);
    let (mut runtime_times, mut hops_times) = (Vec::with_capacity(asks), Vec::with_capacity(asks));
    let mut handoff_times = Vec::with_capacity(asks);
    let mut block_ratios = Vec::new();
    let block = arg("--block").unwrap_or(1_000usize).clamp(1, asks.max(1));
    while ask_times.len() < asks {
        floor_times.extend(floor.round_trips(block));
        evented_times.extend(evented_floor.round_trips(block));
        runtime_times.extend(runtime.block_on(runtime_floor.round_trips(block)));
        handoff_times.extend(runtime.block_on(handoff_floor.round_trips(block)));
        hops_times.extend(runtime.block_on(hops_floor.round_trips(block)));
        ask_times.extend(runtime.block_on(ask_block(&bench, block)));
        let (f, a) = (
            &floor_times[floor_times.len() - block..],
            &ask_times[ask_times.len() - block..],
        );
        block_ratios.push(us(p50(&mut a.to_vec())) / us(p50(&mut f.to_vec())));
    }
    let (floor_p50, ask_p50) = (p50(&mut floor_times), p50(&mut ask_times));
    let evented_p50 = p50(&mut evented_times);
    let (runtime_p50, hops_p50) = (p50(&mut runtime_times), p50(&mut hops_times));
    let handoff_p50 = p50(&mut handoff_times);
    drop(evented_floor);
    runtime.block_on(async {
        runtime_floor.stop().await;
        handoff_floor.stop().await;
        hops_floor.stop().await;
    });

    // Then the same actor in a system, asked by its URN: through the local actor that relays
    // to its process (what the Redis proxy, pools and `system.lookup` reach), alternated
    // with the floor again.
    let system = conclib_core::ActorSystem::new("bench");
    let by_urn = runtime.block_on(async {
        conclib_process::build(Bench { count: 0 })
            .system(&system)
            .urn("bench")
            .spawn()
            .await
            .unwrap()
    });
    let relay = system.lookup("bench").unwrap();
    runtime.block_on(urn_block(&relay, 1_000));
    let (mut urn_floor_times, mut urn_times) = (Vec::new(), Vec::with_capacity(asks));
    while urn_times.len() < asks {
        urn_floor_times.extend(floor.round_trips(block));
        urn_times.extend(runtime.block_on(urn_block(&relay, block)));
    }
    drop(floor);
    let (urn_floor, urn_p50) = (p50(&mut urn_floor_times), p50(&mut urn_times));
    by_urn.stop();
    runtime.block_on(by_urn.wait_for_stop());

    let tells_per_s = runtime.block_on(async {
        let bench = bench.clone();
        tokio::spawn(async move {
            let before = bench.ask(Echo(0)).await.unwrap();
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
            assert_eq!(total - before, tells);
            bench.stop();
            bench.wait_for_stop().await;
            tells as f64 / took.as_secs_f64()
        })
        .await
        .unwrap()
    });
    block_ratios.sort_by(f64::total_cmp);
    println!(
        "floor (blocking socket pair ping-pong, {REQUEST_BYTES}/{REPLY_BYTES} bytes) p50: {:.1} µs",
        us(floor_p50)
    );
    for (floor, p) in [
        (
            "evented floor (the same, each side waiting in epoll_wait)",
            evented_p50,
        ),
        (
            "runtime floor (the same between tokio runtimes, one task a side)",
            runtime_p50,
        ),
        (
            "runtime floor with an actor's hand-overs (a reader task and a handler task in the child, the replies handed back here)",
            handoff_p50,
        ),
        (
            "runtime floor with a link's hops (three tasks a side, joined by channels)",
            hops_p50,
        ),
    ] {
        println!(
            "{floor} p50: {:.1} µs ({:.2}x the floor)",
            us(p),
            us(p) / us(floor_p50)
        );
    }
    println!(
        "process actor ask p50: {:.1} µs ({:.2}x the floor, {:.2}x the evented floor)",
        us(ask_p50),
        us(ask_p50) / us(floor_p50),
        us(ask_p50) / us(evented_p50)
    );
    println!(
        "ask by URN (through its relay) p50: {:.1} µs ({:.2}x the floor of its phase, {:.1} µs)",
        us(urn_p50),
        us(urn_p50) / us(urn_floor),
        us(urn_floor)
    );
    println!(
        "ask/floor by block of {block}: min {:.2}x, median {:.2}x, max {:.2}x",
        block_ratios[0],
        block_ratios[block_ratios.len() / 2],
        block_ratios[block_ratios.len() - 1]
    );
    println!("one-way tells through one process actor: {tells_per_s:.0}/s");
    println!(
        "spawn to first answer (median of 5): {:.1} ms",
        spawn.as_secs_f64() * 1e3
    );
    println!(
        "RESULT ask_p50_us={:.1} floor_p50_us={:.1} ratio={:.2} tells_per_s={:.0} spawn_ms={:.1} urn_ask_p50_us={:.1} evented_floor_p50_us={:.1} runtime_floor_p50_us={:.1} handoff_floor_p50_us={:.1} hops_floor_p50_us={:.1} hops_ratio={:.2}",
        us(ask_p50),
        us(floor_p50),
        us(ask_p50) / us(floor_p50),
        tells_per_s,
        spawn.as_secs_f64() * 1e3,
        us(urn_p50),
        us(evented_p50),
        us(runtime_p50),
        us(handoff_p50),
        us(hops_p50),
        us(hops_p50) / us(floor_p50)
    );
}

/// `n` sequential asks, timed one by one, from a task of the runtime (as a server asks).
async fn ask_block(bench: &conclib_process::ProcessRef<Bench>, n: usize) -> Vec<Duration> {
    let bench = bench.clone();
    tokio::spawn(async move {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            bench.ask(Echo(0)).await.unwrap();
            times.push(t.elapsed());
        }
        times
    })
    .await
    .unwrap()
}

/// `n` sequential asks by URN (a `DynActorRef`), timed one by one, from a task.
async fn urn_block(relay: &conclib_core::DynActorRef, n: usize) -> Vec<Duration> {
    let relay = relay.clone();
    tokio::spawn(async move {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            relay.ask(Echo(0)).await.unwrap();
            times.push(t.elapsed());
        }
        times
    })
    .await
    .unwrap()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn p50(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// The floor's child: answers each request frame with a reply frame, with no runtime;
/// `evented`: waiting in `epoll_wait` before each read, else in a blocking read.
fn floor_echo(fd: i32, evented: bool) {
    // SAFETY: the parent passed this descriptor for us alone.
    let sock = unsafe { UnixStream::from_raw_fd(fd) };
    let mut side = Side::new(sock, evented);
    let mut request = [0u8; REQUEST_BYTES];
    let reply = [1u8; REPLY_BYTES];
    while side.read_exact(&mut request).is_ok() {
        if side.sock.write_all(&reply).is_err() {
            return;
        }
    }
}

/// One side of a floor's socket pair.
struct Side {
    sock: UnixStream,
    /// The epoll instance an evented side waits in (edge-triggered, as tokio registers).
    epoll: Option<std::os::fd::OwnedFd>,
}

impl Side {
    fn new(sock: UnixStream, evented: bool) -> Side {
        let epoll = evented.then(|| {
            sock.set_nonblocking(true).unwrap();
            // SAFETY: plain system calls on descriptors we own; the event outlives the call.
            unsafe {
                let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
                assert!(epoll >= 0, "epoll_create1");
                let mut event = libc::epoll_event {
                    events: (libc::EPOLLIN | libc::EPOLLET) as u32,
                    u64: 0,
                };
                let added =
                    libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, sock.as_raw_fd(), &mut event);
                assert!(added == 0, "epoll_ctl");
                std::os::fd::OwnedFd::from_raw_fd(epoll)
            }
        });
        Side { sock, epoll }
    }

    /// Reads a whole frame. Evented: waits for readiness first (the last read took all there
    /// was, as an event loop knows from a short read), then reads.
    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let Some(epoll) = &self.epoll else {
            return self.sock.read_exact(buf);
        };
        let mut got = 0;
        while got < buf.len() {
            let mut event = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: one event's room, for the kernel to fill.
            if unsafe { libc::epoll_wait(epoll.as_raw_fd(), &mut event, 1, -1) } < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            match self.sock.read(&mut buf[got..]) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Starts an echo child (this binary, re-executed with `env` set besides its descriptor) on a
/// socket pair; returns this process's end.
fn echo_child(env: &[(&str, &str)]) -> (UnixStream, std::process::Child) {
    let (sock, child) = UnixStream::pair().unwrap();
    let fd = child.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own: let it survive exec.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
    }
    let echo = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_FLOOR_FD", fd.to_string())
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    // The child has its copy of its end.
    drop(child);
    (sock, echo)
}

/// A floor: this process and an echo child (this binary, re-executed) on a socket pair.
struct Floor {
    side: Side,
    echo: std::process::Child,
}

impl Floor {
    fn start(evented: bool) -> Floor {
        let evented_env: &[_] = if evented {
            &[("BENCH_FLOOR_EVENTED", "1")]
        } else {
            &[]
        };
        let (sock, echo) = echo_child(evented_env);
        Floor {
            side: Side::new(sock, evented),
            echo,
        }
    }

    /// `n` round trips, timed one by one.
    fn round_trips(&mut self, n: usize) -> Vec<Duration> {
        let request = [2u8; REQUEST_BYTES];
        let mut reply = [0u8; REPLY_BYTES];
        (0..n)
            .map(|_| {
                let t = Instant::now();
                self.side.sock.write_all(&request).unwrap();
                self.side.read_exact(&mut reply).unwrap();
                t.elapsed()
            })
            .collect()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        // The echo child ends at the end of its stream.
        let _ = self.side.sock.shutdown(std::net::Shutdown::Both);
        let _ = self.echo.wait();
    }
}

/// One end of a runtime floor's socket: registered with the runtime for reading only (as a
/// process actor's link is), written straight to the non-blocking socket (its small frames
/// never find it full in a ping-pong).
struct RuntimeSide {
    sock: tokio::io::unix::AsyncFd<UnixStream>,
    /// Bytes read past the last frame taken.
    buf: Vec<u8>,
}

impl RuntimeSide {
    fn new(sock: UnixStream) -> RuntimeSide {
        sock.set_nonblocking(true).unwrap();
        // SAFETY: the stream owns its descriptor, open until the `AsyncFd` drops it.
        let sock = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE)
        };
        RuntimeSide {
            sock: sock.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Reads `len` bytes, into room for more: a short read drains the socket, so the next
    /// read waits for the runtime's word first (as tokio's own sockets and the link do).
    async fn read(&mut self, len: usize) -> std::io::Result<()> {
        let mut room = [0u8; 256];
        while self.buf.len() < len {
            let mut ready = self.sock.readable().await?;
            match ready.try_io(|sock| sock.get_ref().read(&mut room)) {
                Ok(Ok(0)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(n)) => {
                    if n < room.len() {
                        ready.clear_ready();
                    }
                    self.buf.extend_from_slice(&room[..n]);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        self.buf.drain(..len);
        Ok(())
    }

    fn write(&self, data: &[u8]) -> std::io::Result<()> {
        self.sock.get_ref().write_all(data)
    }

    /// A handle for writing from another task: the same socket, not registered (a
    /// second registration would wake the runtime twice for each reply).
    fn writer(&self) -> UnixStream {
        self.sock.get_ref().try_clone().unwrap()
    }
}

/// How a runtime floor's two sides are built of tasks.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// One task a side reads and writes the socket.
    Plain,
    /// The hand-overs an actor in a task of its own needs at least: in the child a reader
    /// task hands each request to a handler task, which writes the reply itself; here the
    /// asking task writes its request itself and a reader task hands each reply back.
    Handoff,
    /// A link's tasks: the same with a writer task on each side that the handler and the
    /// askers hand their frames to.
    Hops,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Plain => "plain",
            Shape::Handoff => "handoff",
            Shape::Hops => "hops",
        }
    }

    fn named(name: &str) -> Shape {
        [Shape::Plain, Shape::Handoff, Shape::Hops]
            .into_iter()
            .find(|shape| shape.name() == name)
            .expect("a floor's shape")
    }
}

/// The runtime floor's child: a one-thread runtime, as a process actor's, its tasks as
/// `shape` says (unbounded channels between them): a process actor's reader, actor and
/// writer, with nothing of conclib in between.
fn runtime_echo(fd: i32, shape: Shape) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // SAFETY: the parent passed this descriptor for us alone.
        let mut side = RuntimeSide::new(unsafe { UnixStream::from_raw_fd(fd) });
        let reply = [1u8; REPLY_BYTES];
        if shape == Shape::Plain {
            while side.read(REQUEST_BYTES).await.is_ok() {
                if side.write(&reply).is_err() {
                    return;
                }
            }
            return;
        }
        let mut writing = side.writer();
        let (to_handler, mut requests) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (to_writer, mut replies) = tokio::sync::mpsc::unbounded_channel::<[u8; REPLY_BYTES]>();
        let mut tasks = Vec::new();
        if shape == Shape::Hops {
            tasks.push(tokio::spawn(async move {
                while requests.recv().await.is_some() {
                    if to_writer.send(reply).is_err() {
                        return;
                    }
                }
            }));
            tasks.push(tokio::spawn(async move {
                while let Some(reply) = replies.recv().await {
                    if writing.write_all(&reply).is_err() {
                        return;
                    }
                }
            }));
        } else {
            drop((to_writer, replies));
            tasks.push(tokio::spawn(async move {
                while requests.recv().await.is_some() {
                    if writing.write_all(&reply).is_err() {
                        return;
                    }
                }
            }));
        }
        while side.read(REQUEST_BYTES).await.is_ok() {
            if to_handler.send(()).is_err() {
                break;
            }
        }
        drop(to_handler);
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// The askers waiting for their replies, in order.
type Waiting = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<oneshot::Sender<()>>>>;

/// A runtime floor: asks from a task of this process's runtime to an echo child on a
/// runtime of its own (this binary, re-executed), both sides' tasks as its [`Shape`] says.
struct RuntimeFloor {
    asking: Asking,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    echo: std::process::Child,
}

/// How a runtime floor's asks go out.
#[derive(Clone)]
enum Asking {
    /// The asking task writes and reads the socket itself.
    Plain(std::sync::Arc<tokio::sync::Mutex<RuntimeSide>>),
    /// The asking task writes its request itself; a reader task answers it.
    Handoff(Waiting, std::sync::Arc<UnixStream>),
    /// A writer task writes what the askers hand it; a reader task answers them.
    Hops(tokio::sync::mpsc::UnboundedSender<oneshot::Sender<()>>),
}

impl RuntimeFloor {
    /// Needs the runtime (its socket is registered with it).
    fn start(shape: Shape) -> RuntimeFloor {
        let (sock, echo) = echo_child(&[("BENCH_FLOOR_RUNTIME", shape.name())]);
        let reading = RuntimeSide::new(sock);
        if shape == Shape::Plain {
            return RuntimeFloor {
                asking: Asking::Plain(std::sync::Arc::new(tokio::sync::Mutex::new(reading))),
                tasks: Vec::new(),
                echo,
            };
        }
        let waiting = Waiting::default();
        let writing = reading.writer();
        let reader = tokio::spawn({
            let waiting = waiting.clone();
            async move {
                let mut reading = reading;
                while reading.read(REPLY_BYTES).await.is_ok() {
                    let asker = waiting.lock().unwrap().pop_front();
                    if let Some(asker) = asker {
                        let _ = asker.send(());
                    }
                }
            }
        });
        if shape == Shape::Handoff {
            return RuntimeFloor {
                asking: Asking::Handoff(waiting, std::sync::Arc::new(writing)),
                tasks: vec![reader],
                echo,
            };
        }
        let (requests, mut to_write) =
            tokio::sync::mpsc::unbounded_channel::<oneshot::Sender<()>>();
        let writer = tokio::spawn(async move {
            let mut writing = writing;
            let request = [2u8; REQUEST_BYTES];
            while let Some(asker) = to_write.recv().await {
                waiting.lock().unwrap().push_back(asker);
                if writing.write_all(&request).is_err() {
                    return;
                }
            }
            // The echo child ends at the end of its stream.
            let _ = writing.shutdown(std::net::Shutdown::Write);
        });
        RuntimeFloor {
            asking: Asking::Hops(requests),
            tasks: vec![writer, reader],
            echo,
        }
    }

    /// `n` round trips from a task of the runtime, timed one by one.
    async fn round_trips(&self, n: usize) -> Vec<Duration> {
        let asking = self.asking.clone();
        tokio::spawn(async move {
            let request = [2u8; REQUEST_BYTES];
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                match &asking {
                    Asking::Plain(side) => {
                        let mut side = side.lock().await;
                        side.write(&request).unwrap();
                        side.read(REPLY_BYTES).await.unwrap();
                    }
                    Asking::Handoff(waiting, writing) => {
                        let (tx, rx) = oneshot::channel();
                        waiting.lock().unwrap().push_back(tx);
                        (&**writing).write_all(&request).unwrap();
                        rx.await.unwrap();
                    }
                    Asking::Hops(requests) => {
                        let (tx, rx) = oneshot::channel();
                        requests.send(tx).unwrap();
                        rx.await.unwrap();
                    }
                }
                times.push(t.elapsed());
            }
            times
        })
        .await
        .unwrap()
    }

    /// Ends the echo child (the end of its stream) and waits for it.
    async fn stop(self) {
        match &self.asking {
            Asking::Plain(side) => {
                let _ = side
                    .lock()
                    .await
                    .sock
                    .get_ref()
                    .shutdown(std::net::Shutdown::Write);
            }
            Asking::Handoff(_, writing) => {
                let _ = writing.shutdown(std::net::Shutdown::Write);
            }
            Asking::Hops(_) => {}
        }
        drop(self.asking);
        for task in self.tasks {
            let _ = task.await;
        }
        let mut echo = self.echo;
        let _ = echo.wait();
    }
}
