//! One `redis-server` process of a topology, its temporary directory, and what every
//! topology shares: its time limits and what a promotion took.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::probe::{cli, wait_until};

/// How long a topology may take to form, or a promotion to happen.
pub const HA_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a sentinel waits without an answer before it takes a server for down; also a
/// cluster's node timeout.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// A directory removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "conclib-ha-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Kept to read the servers' logs after a run that went wrong.
        if std::env::var_os("CONCLIB_HA_KEEP_LOGS").is_some() {
            eprintln!("redis_ha: kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawns `command` from a thread that lives as long as this process: `PR_SET_PDEATHSIG`
/// fires when the thread that forked exits, and the callers' threads (a runtime's blocking
/// pool) come and go.
fn spawn_from_lasting_thread(command: Command) -> std::io::Result<Child> {
    type Job = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("redis-ha-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("a spawner thread");
        std::sync::Mutex::new(tx)
    });
    let (reply, spawned) = std::sync::mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    spawned
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// One `redis-server` process (a data server or a sentinel), killed by PID and reaped on
/// drop.
pub struct Node {
    /// Its port on 127.0.0.1.
    pub port: u16,
    pub(super) args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub(super) fn spawn(dir: &Path, port: u16, args: Vec<OsString>) -> Node {
        let log = dir.join(format!("{port}.log"));
        let mut node = Node {
            port,
            args,
            log,
            child: None,
        };
        node.start(dir);
        node
    }

    pub(super) fn start(&mut self, dir: &Path) {
        let mut command = Command::new(
            std::env::var_os("CONCLIB_REDIS_SERVER").unwrap_or_else(|| "redis-server".into()),
        );
        command
            .args(&self.args)
            .args(["--bind", "127.0.0.1", "--save", ""]);
        if !self.args.iter().any(|a| a == "--appendonly") {
            command.args(["--appendonly", "no"]);
        }
        if !self.args.iter().any(|a| a == "--sentinel") {
            // A replica that (re)connects is sent the data set at once, not after Redis's
            // default 5 s wait for more replicas to share one transfer: a shard whose
            // replica rejoins is back at its replica count within a second (docs: Redis
            // topologies and durability, "Recovery after a promotion").
            command.args(["--repl-diskless-sync-delay", "0"]);
            // The data set is sent through a file, not the socket: after a transfer through
            // the socket, Redis 7.0 streams the writes that follow to the replica only from
            // its next acknowledgement, once a second, when its first one came before the
            // primary saw the transfer end; the replica then counts for no `WAIT` for up to
            // a second more (docs: Redis topologies and durability, "Recovery after a
            // promotion"). A file of its own per server: they share the directory.
            command.args(["--repl-diskless-sync", "no", "--dbfilename"]);
            command.arg(format!("dump-{}.rdb", self.port));
        }
        command
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.child = Some(spawn_from_lasting_thread(command).expect("redis-server starts"));
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to it, if it runs.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill(2) on the pid of our own child, not reaped yet.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    pub(super) fn wait_ping(&self) {
        wait_until(
            &format!("port {} to answer PING", self.port),
            HA_TIMEOUT,
            || {
                cli(self.port, &["PING"]).and_then(
                    |out| {
                        if out == "PONG" { Ok(()) } else { Err(out) }
                    },
                )
            },
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A stopped server dies of SIGKILL all the same.
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- redis port {} log tail ---\n{}",
                self.port,
                self.log_tail()
            );
        }
    }
}

/// What a promotion with lag took.
#[derive(Debug, Clone, Copy)]
pub struct Promotion {
    /// When the old primary was SIGKILLed.
    pub killed_at: Instant,
    /// When a replica was seen answering as the new primary.
    pub promoted_at: Instant,
    /// The new primary's port.
    pub new_primary: u16,
}
