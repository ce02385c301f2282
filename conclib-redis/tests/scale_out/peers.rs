//! The peer processes of the scale-out tests: this test binary started again in a role
//! (`main.rs` dispatches them), and what the tests read of them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conclib_redis::ProxyConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Set in the environment of this binary started again as a peer.
pub(crate) const ROLE: &str = "CONCLIB_SCALE_OUT_PEER";

/// A peer's proxy configuration: its system id and lease, four group requests in flight.
pub(crate) fn peer_config(url: &str, ns: &str, system: &str, lease_ms: &str) -> ProxyConfig {
    let mut config = ProxyConfig::new(url)
        .with_namespace(ns)
        .with_system_id(system)
        .with_snapshot_interval(None);
    config.lease_ttl = Duration::from_millis(lease_ms.parse().unwrap());
    config.group_in_flight = 4;
    config
}

/// Waits for `stop` (graceful), `leave URN` (prints LEFT) or `crash` on stdin.
pub(crate) async fn wait_for_orders(proxy: &conclib_redis::ProxyHandle) {
    let mut orders = crate::common::orders();
    while let Some(cmd) = orders.recv().await {
        if let Some(urn) = cmd.strip_prefix("leave ") {
            assert!(proxy.leave(urn).await);
            println!("LEFT");
        } else if cmd == "stop" {
            break;
        }
    }
}

/// A peer process: this test binary in a role.
pub(crate) struct Peer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    pid: i32,
}

impl Peer {
    pub(crate) async fn start(args: &[&str]) -> Peer {
        Peer::start_on(None, args).await
    }

    /// [`start`](Self::start), on another host as far as the others can tell (`Some`: a
    /// host name, set in a UTS namespace of its own, `unshare -u`): its death is not
    /// provable from here, its lease must lapse.
    pub(crate) async fn start_on(host: Option<&str>, args: &[&str]) -> Peer {
        let exe = std::env::current_exe().unwrap();
        let mut command = match host {
            None => tokio::process::Command::new(&exe),
            Some(host) => {
                let mut c = tokio::process::Command::new("unshare");
                // `exec`: the peer keeps the pid the test signals.
                c.args([
                    "-u",
                    "sh",
                    "-c",
                    &format!("hostname {host} && exec \"$0\" \"$@\""),
                ])
                .arg(&exe);
                c
            }
        };
        let mut child = command
            .env(ROLE, "1")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id().unwrap()).unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut peer = Peer {
            child,
            stdin,
            stdout,
            pid,
        };
        assert_eq!(peer.line(30).await, "READY", "{args:?} starts");
        peer
    }

    pub(crate) async fn line(&mut self, secs: u64) -> String {
        tokio::time::timeout(Duration::from_secs(secs), self.stdout.next_line())
            .await
            .expect("the peer answers in time")
            .unwrap()
            .unwrap_or_default()
    }

    pub(crate) async fn say(&mut self, what: &str) {
        self.stdin
            .write_all(format!("{what}\n").as_bytes())
            .await
            .unwrap();
    }

    /// SIGSTOP, returning once every thread of it stopped.
    pub(crate) async fn freeze(&self) {
        conclib_testkit::freeze(self.pid.unsigned_abs()).await;
    }

    /// Its process id (the reminders' tests find the poller holding a claim by it).
    #[allow(dead_code)]
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0);
    }

    pub(crate) async fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("a killed child is reaped");
    }

    pub(crate) async fn stop(self) {
        self.stop_saying().await;
    }

    /// Stops it gracefully; what it printed before `STOPPED`.
    pub(crate) async fn stop_saying(mut self) -> Vec<String> {
        self.say("stop").await;
        let mut said = Vec::new();
        loop {
            let line = self.line(30).await;
            if line == "STOPPED" {
                break;
            }
            assert!(!line.is_empty(), "the peer ends before STOPPED");
            said.push(line);
        }
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the peer exits")
            .unwrap();
        assert!(status.success());
        said
    }
}

impl Peer {
    /// What it prints until `STOPPED` (it stops by itself: a signal), then its exit,
    /// all within `secs`.
    pub(crate) async fn said_until_stopped(mut self, secs: u64) -> Vec<String> {
        let mut said = Vec::new();
        loop {
            let line = self.line(secs).await;
            if line == "STOPPED" {
                break;
            }
            assert!(!line.is_empty(), "the peer ends before STOPPED: {said:?}");
            said.push(line);
        }
        let status = tokio::time::timeout(Duration::from_secs(secs), self.child.wait())
            .await
            .expect("the peer exits")
            .unwrap();
        assert!(status.success(), "{said:?}");
        said
    }
}

pub(crate) fn temp_notes(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "conclib-scale-{}-{tag}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

fn rand_suffix() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u64
}

/// The numbers recorded in notes files, with how often each was.
pub(crate) fn noted(paths: &[PathBuf]) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::new();
    for p in paths {
        if let Ok(text) = std::fs::read_to_string(p) {
            for line in crate::common::complete_lines(&text) {
                if let Ok(n) = line.parse() {
                    *seen.entry(n).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}
