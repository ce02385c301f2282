//! A serving process stops within its shutdown bound whatever Redis does: the Python tests'
//! server (`conclib-pyserver`: a proxy with groups and activations, a reminder poller, topics)
//! gets SIGTERM while its Redis is frozen (SIGSTOP) or dead (SIGKILL), and exits within
//! `--shutdown-ms` plus a margin, its private `redis-server` reaped. This test process is a
//! child subreaper: a `redis-server` the server left unreaped would be handed to it, and is
//! caught by `waitpid`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server's `--shutdown-ms`.
const BOUND: Duration = Duration::from_millis(2000);
/// What exiting may take past the bound: the actors' shutdown, stopping `redis-server`,
/// process exit, on a loaded machine.
const MARGIN: Duration = Duration::from_millis(3000);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started (or its server's child).
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Kills and reaps the server when a test fails midway.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `conclib-pyserver` with `args` and waits for READY.
fn start_server(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conclib-pyserver"))
        .args(args)
        .args([
            "--shutdown-ms",
            &BOUND.as_millis().to_string(),
            "--lease-ttl-ms",
            "2000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = std::thread::spawn(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.is_finished() {
        assert!(Instant::now() < deadline, "the server is READY in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ready.join().unwrap().trim(), "READY");
    Server(child)
}

/// The children of `pid` (every thread's: `redis-server` is started from one of them).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// SIGTERM, then how long the server took to exit (bounded: a server that overstays is
/// killed and the test fails).
fn terminate(server: &mut Server) -> Duration {
    let sent = Instant::now();
    signal(server.0.id(), libc::SIGTERM);
    loop {
        if server.0.try_wait().unwrap().is_some() {
            return sent.elapsed();
        }
        assert!(
            sent.elapsed() < BOUND + MARGIN * 3,
            "the server still runs {:?} after SIGTERM",
            sent.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `pid` was left to this subreaper unreaped (and reaps it).
fn left_unreaped(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on a pid that is ours only if the server did not reap it.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    r == pid as libc::pid_t
}

/// Its private Redis frozen or killed: SIGTERM stops it within its bound, the Redis child
/// reaped by it.
fn private_redis_case(fault: i32) {
    let port = free_port().to_string();
    let mut server = start_server(&["--start-redis", &port]);
    let redis = children(server.0.id());
    assert_eq!(redis.len(), 1, "one redis-server child: {redis:?}");
    let redis = redis[0];
    signal(redis, fault);
    let took = terminate(&mut server);
    let fault_name = if fault == libc::SIGSTOP {
        "sigstop"
    } else {
        "sigkill"
    };
    println!(
        "RESULT test=shutdown_bound redis=private fault={fault_name} exit_ms={} bound_ms={}",
        took.as_millis(),
        BOUND.as_millis()
    );
    assert!(took <= BOUND + MARGIN, "exited {took:?} after SIGTERM");
    // Give an orphan the moment it takes to reach the subreaper.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!left_unreaped(redis), "the server reaped its redis-server");
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(redis as libc::pid_t, 0) } == 0;
    assert!(!alive, "its redis-server is gone");
}

/// An external Redis frozen: SIGTERM stops the server within its bound.
fn external_redis_frozen() {
    let port = free_port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server listens in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut server = start_server(&["--redis", &url]);
    signal(redis.id(), libc::SIGSTOP);
    let took = terminate(&mut server);
    signal(redis.id(), libc::SIGCONT);
    let _ = redis.kill();
    let _ = redis.wait();
    println!(
        "RESULT test=shutdown_bound redis=external fault=sigstop exit_ms={} bound_ms={}",
        took.as_millis(),
        BOUND.as_millis()
    );
    assert!(took <= BOUND + MARGIN, "exited {took:?} after SIGTERM");
}

#[test]
fn a_serving_process_stops_within_its_bound_whatever_redis_does() {
    // SAFETY: makes orphaned descendants this process's children (see the module docs).
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
    private_redis_case(libc::SIGSTOP);
    private_redis_case(libc::SIGKILL);
    external_redis_frozen();
}
