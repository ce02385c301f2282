//! What an actor costs in memory before and after it has handled a message.
//!
//! The suite's `spawn` scenario measures actors that never had a message: they are
//! dormant, with no tokio task ("Actors start dormant" in docs/bench-log.md). An actor woken
//! once has a task from then on, and keeps buffers its messages used: its lane's, and the
//! one its handlers' futures run in unless that grew large. This spawns 100,000 actors on a 2-worker
//! runtime, asks each once, and prints the resident memory per actor at both points:
//!
//! ```text
//! cargo run --release --manifest-path benches/Cargo.toml --no-default-features --bin ran_bytes
//! ```
//!
//! With `-- --metrics`, the same with conclib's Prometheus recorder installed (what each
//! actor keeps for its metrics and statistics while recording).
//!
//! Then the actors asked once hibernate (`ActorSystem::set_hibernate_after`: they gave back
//! their tasks and buffers), and the heap bytes each holds are read at the three points from
//! glibc's count of bytes in use (`mallinfo2`: resident memory does not fall when memory is
//! freed between blocks still in use), the CPU time of a sweep over them all is read (a
//! second of sweeps every 50 ms, nothing else running); then each is asked once more, timed
//! (its task spawned again), and once more after that (awake), timed.
//!
//! Then the same with 47 tells before the ask (a burst, which grows the mailbox's buffers),
//! and with actors whose handler's future is a kilobyte (it holds an array across an
//! `.await`). Last line: `RESULT idle_bytes_per_actor=.. ran_bytes_per_actor=..
//! heap_idle_bytes_per_actor=.. heap_ran_bytes_per_actor=.. heap_hibernated_bytes_per_actor=..
//! sweep_cpu_us_100k=.. woken_ask_p50_ns=.. awake_ask_p50_ns=.. burst_ran_bytes_per_actor=.. burst_p50_ns=.. big_future_ran_bytes_per_actor=..
//! big_future_ask_p50_ns=..` (the bytes each against the memory before that kind's first
//! spawn, the registry's table included; `burst_p50_ns`, the median time of a burst to one
//! actor; the last, the median of sequential asks to one actor of the large-future kind:
//! what giving an idle actor's buffers back costs the next time it is busy).
use std::time::{Duration, Instant};

use conclib::{ActorSystem, actor};

// The suite's memory helpers (`rss_bytes`, `resident_vec`, `settle`); the rest unused here.
#[allow(dead_code)]
#[path = "../common.rs"]
mod common;

const ACTORS: usize = 100_000;
/// Sequential asks to one actor with a large handler future.
const ASKS: usize = 200_000;
/// Bursts (47 tells, then an ask) to one actor.
const BURSTS: usize = 20_000;

#[actor]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[handle]
    fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }
}

/// An actor whose handler's future is large (a kilobyte held across an `.await`).
#[actor]
struct Worker {
    done: u64,
}

#[actor]
impl Worker {
    #[handle]
    async fn work(&mut self, n: u64) -> u64 {
        let scratch = [n; 128];
        tokio::task::yield_now().await;
        self.done += 1;
        scratch.iter().sum()
    }
}

/// Resident bytes per actor after spawning `ACTORS` with `$spawn`, and after `$ask` of each
/// (`$r`, a ref): `(f64, f64)`.
macro_rules! measure {
    ($spawn:expr, |$r:ident| $ask:expr) => {{
        // The vector's pages resident before the first reading: not counted as actors'.
        let mut refs = common::resident_vec(ACTORS);
        let before = common::settle().await;
        for _ in 0..ACTORS {
            refs.push($spawn.await.expect("spawn"));
        }
        let idle = common::settle().await;
        for $r in &refs {
            $ask;
        }
        let ran = common::settle().await;
        let per_actor = |after: u64| after.saturating_sub(before) as f64 / ACTORS as f64;
        (per_actor(idle), per_actor(ran))
    }};
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        tokio::spawn(async {
            if std::env::args().any(|a| a == "--metrics") {
                conclib_view::prometheus::install().expect("the only recorder of this process");
            }
            let system = ActorSystem::new("ran-bytes");
            // No hibernation but where this asks for it.
            system.set_hibernate_after(None);
            let (idle, ran) = measure!(system.spawn(Counter { total: 0 }), |r| assert_eq!(
                r.add(1).await.expect("ask"),
                1
            ));
            // In a system of its own: only its actors hibernate.
            let hibernated = hibernated(&ActorSystem::new("hibernated")).await;
            let (_, burst_ran) = measure!(system.spawn(Counter { total: 0 }), |r| {
                for _ in 0..47 {
                    r.add(1).tell().await.expect("tell");
                }
                assert_eq!(r.add(1).await.expect("ask"), 48)
            });
            let (_, big_ran) = measure!(system.spawn(Worker { done: 0 }), |r| assert_eq!(
                r.work(1).await.expect("ask"),
                128
            ));
            // What giving the lane's buffers back costs: bursts of 47 tells and an ask to
            // one actor, each finding it idle (its buffers grown again and given back).
            let counter = system.spawn(Counter { total: 0 }).await.expect("spawn");
            let mut bursts = Vec::with_capacity(BURSTS);
            for _ in 0..BURSTS {
                let start = Instant::now();
                for _ in 0..47 {
                    counter.add(1).tell().await.expect("tell");
                }
                counter.add(1).await.expect("ask");
                bursts.push(start.elapsed());
            }
            bursts.sort();
            // What giving that buffer back costs: sequential asks to one such actor, each
            // of which finds it idle (its buffer made again and given back).
            let worker = system.spawn(Worker { done: 0 }).await.expect("spawn");
            let mut took = Vec::with_capacity(ASKS);
            for _ in 0..ASKS {
                let start = Instant::now();
                worker.work(1).await.expect("ask");
                took.push(start.elapsed());
            }
            took.sort();
            let Hibernated {
                heap: (heap_idle, heap_ran, heap_hibernated),
                sweep_cpu,
                woken_p50,
                awake_p50,
            } = hibernated;
            println!(
                "RESULT idle_bytes_per_actor={idle:.0} ran_bytes_per_actor={ran:.0} \
                 heap_idle_bytes_per_actor={heap_idle:.0} heap_ran_bytes_per_actor={heap_ran:.0} \
                 heap_hibernated_bytes_per_actor={heap_hibernated:.0} \
                 sweep_cpu_us_100k={:.0} woken_ask_p50_ns={} awake_ask_p50_ns={} \
                 burst_ran_bytes_per_actor={burst_ran:.0} burst_p50_ns={} \
                 big_future_ran_bytes_per_actor={big_ran:.0} big_future_ask_p50_ns={}",
                sweep_cpu.as_secs_f64() * 1e6,
                woken_p50.as_nanos(),
                awake_p50.as_nanos(),
                bursts[BURSTS / 2].as_nanos(),
                took[ASKS / 2].as_nanos()
            );
        })
        .await
        .expect("bench task");
    });
}

/// Bytes in use on glibc's heap (not resident memory: freed blocks between blocks in use stay
/// resident).
fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 has no preconditions.
    unsafe { libc::mallinfo2() }.uordblks as u64
}

/// What [`hibernated`] measured.
struct Hibernated {
    /// Heap bytes per actor: spawned, asked once, hibernated.
    heap: (f64, f64, f64),
    /// The CPU time of one sweep over the 100,000, all hibernated.
    sweep_cpu: Duration,
    /// The median ask to a hibernated actor (its task spawned again).
    woken_p50: Duration,
    /// The median ask to the same actors, awake and idle.
    awake_p50: Duration,
}

/// Spawns `ACTORS` counters, asks each once, lets them hibernate, and asks each twice more,
/// timed: heap bytes per actor at each step, and what the first ask after hibernating costs.
async fn hibernated(system: &ActorSystem) -> Hibernated {
    system.set_hibernate_after(None);
    let mut refs = common::resident_vec(ACTORS);
    let before = heap_bytes();
    for _ in 0..ACTORS {
        refs.push(system.spawn(Counter { total: 0 }).await.expect("spawn"));
    }
    common::settle().await;
    let idle = heap_bytes();
    for r in &refs {
        assert_eq!(r.add(1).await.expect("ask"), 1);
    }
    common::settle().await;
    let ran = heap_bytes();
    // A sweep every 50 ms: the first finds each actor asked since the one before, the
    // second asks it to hibernate; then until the heap stops shrinking.
    system.set_hibernate_after(Some(Duration::from_millis(50)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut hibernated = heap_bytes();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = heap_bytes();
        if now == hibernated {
            break;
        }
        hibernated = now;
    }
    // What the sweeps cost when none of the 100,000 has anything to give back: this
    // process's CPU time over a second of sweeps every 50 ms (nothing else runs).
    let cpu_before = cpu_time();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sweeps = started.elapsed().as_secs_f64() / 0.05;
    let sweep_cpu = (cpu_time() - cpu_before).div_f64(sweeps);
    system.set_hibernate_after(None);
    let timed = |n: u64| {
        let refs = &refs;
        async move {
            let mut took = Vec::with_capacity(ACTORS);
            for r in refs {
                let start = Instant::now();
                assert_eq!(r.add(1).await.expect("ask"), n);
                took.push(start.elapsed());
            }
            took.sort();
            took[ACTORS / 2]
        }
    };
    let woken_p50 = timed(2).await;
    let awake_p50 = timed(3).await;
    let per_actor = |after: u64| after.saturating_sub(before) as f64 / ACTORS as f64;
    Hibernated {
        heap: (per_actor(idle), per_actor(ran), per_actor(hibernated)),
        sweep_cpu,
        woken_p50,
        awake_p50,
    }
}

/// This process's CPU time (user and system) so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}
