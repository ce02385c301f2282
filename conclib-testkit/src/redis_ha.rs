//! Real Redis high-availability topologies on loopback, to fail over on purpose: a
//! [`Sentinel`] set-up (a primary, 2 replicas, 3 sentinels) and a [`Cluster`] (3 primaries,
//! 3 replicas), each server a `redis-server` process of its own on free ports of 127.0.0.1,
//! without persistence, in a temporary directory; and one [`Persistent`] server, restarted
//! on purpose with what it acknowledged.
//!
//! Operations: [`Sentinel::promote_with_lag`] / [`Cluster::promote_with_lag`] stall the
//! replicas (SIGSTOP) and close the primary's replication links for a while, SIGKILL the
//! primary, resume the replicas (SIGCONT) and
//! wait until one of them is the primary: a promotion that loses the primary's last writes,
//! as asynchronous replication does when a replica lags. The killed server is started again
//! as a replica, so a topology can fail over again and again. Every process is killed by
//! its PID and reaped when the topology drops (also during a panic), and dies with the
//! process that started it otherwise (`PR_SET_PDEATHSIG`). Every wait is polled against a
//! deadline, never assumed after a sleep.
//!
//! `redis-server` is `CONCLIB_REDIS_SERVER` or the one on `PATH`; `redis-cli` is on `PATH`.
//! With `CONCLIB_HA_KEEP_LOGS` set, a topology's directory (the servers' logs and
//! `nodes-*.conf`) is kept when it drops, its path printed on standard error.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a topology may take to form, or a promotion to happen.
pub const HA_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a sentinel waits without an answer before it takes a server for down; also a
/// cluster's node timeout.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// `n` distinct ports of 127.0.0.1 free now, below the kernel's ephemeral range (a port
/// `bind(0)` hands out may be given to an outgoing connection before the server binds it).
pub fn free_ports(n: usize) -> Vec<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 10_000;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&low| low > FIRST + 1_000 && low <= 65_536)
        .unwrap_or(32_768);
    let span = low - FIRST;
    let start = std::process::id().wrapping_mul(15_485_863) % span;
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..span {
        let port = FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
            if listeners.len() == n {
                break;
            }
        }
    }
    assert_eq!(listeners.len(), n, "no {n} free ports in {FIRST}..{low}");
    listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args>` (2 s at most); its trimmed stdout, or
/// why it failed.
pub fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    cli_within(port, args, Duration::from_secs(2))
}

/// [`cli`], killed after `limit`.
fn cli_within(port: u16, args: &[&str], limit: Duration) -> Result<String, String> {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    // A stopped server never answers: redis-cli would wait for ever.
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-cli {args:?} on port {port}: no answer"));
            }
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() && !stdout.starts_with("ERR") {
        Ok(stdout)
    } else {
        Err(format!(
            "redis-cli {args:?} on port {port}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Polls `probe` every 20 ms until it gives `Some`; panics after `timeout` with `what` and
/// the last observation.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
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
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn spawn(dir: &Path, port: u16, args: Vec<OsString>) -> Node {
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

    fn start(&mut self, dir: &Path) {
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

    fn wait_ping(&self) {
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

/// One field of `INFO` output.
fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(name)?
            .strip_prefix(':')
            .map(str::to_owned)
    })
}

/// Closes `primary`'s replication links (`CLIENT KILL TYPE replica`) while its replicas are
/// stalled: what it takes from then on reaches no replica. (A stalled replica would
/// otherwise find seconds of writes waiting in its socket's buffers when it resumes, and
/// lose nothing.)
fn cut_replication(primary: u16) {
    if let Err(e) = cli(primary, &["CLIENT", "KILL", "TYPE", "replica"]) {
        eprintln!("CLIENT KILL TYPE replica on {primary}: {e}");
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

/// A primary, 2 replicas and 3 sentinels (quorum 2, down after [`DOWN_AFTER`]).
pub struct Sentinel {
    /// The data servers (the primary among them; which one changes with each promotion).
    pub servers: Vec<Node>,
    /// The sentinels.
    pub sentinels: Vec<Node>,
    /// The service name the sentinels know the primary by.
    pub service: &'static str,
    dir: TempDir,
}

impl Sentinel {
    /// Starts the topology and waits until every sentinel knows both replicas and the
    /// other sentinels, and both replicas are in sync.
    pub fn start() -> Sentinel {
        let dir = TempDir::new("sentinel");
        let ports = free_ports(6);
        let service = "ha";
        let primary = ports[0];
        let servers: Vec<Node> = ports[..3]
            .iter()
            .map(|&port| {
                let mut args: Vec<OsString> = vec!["--port".into(), port.to_string().into()];
                if port != primary {
                    args.extend([
                        "--replicaof".into(),
                        "127.0.0.1".into(),
                        primary.to_string().into(),
                    ]);
                }
                Node::spawn(&dir.0, port, args)
            })
            .collect();
        for server in &servers {
            server.wait_ping();
        }
        let sentinels = ports[3..]
            .iter()
            .map(|&port| {
                let conf = dir.0.join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\n\
                         sentinel resolve-hostnames no\n\
                         sentinel monitor {service} 127.0.0.1 {primary} 2\n\
                         sentinel down-after-milliseconds {service} {}\n\
                         sentinel failover-timeout {service} 4000\n",
                        DOWN_AFTER.as_millis()
                    ),
                )
                .expect("write a sentinel's configuration");
                Node::spawn(&dir.0, port, vec![conf.into(), "--sentinel".into()])
            })
            .collect();
        let setup = Sentinel {
            servers,
            sentinels,
            service,
            dir,
        };
        setup.wait_settled();
        setup
    }

    /// `redis-sentinel://` URL naming the three sentinels and the service.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={}",
            self.sentinels[0].port, self.service
        );
        for s in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", s.port));
        }
        url
    }

    /// The primary's port, as the first sentinel that answers names it.
    pub fn primary_port(&self) -> Result<u16, String> {
        let mut last = String::from("no sentinel");
        for s in &self.sentinels {
            match cli(
                s.port,
                &["SENTINEL", "get-master-addr-by-name", self.service],
            ) {
                Ok(out) => {
                    if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                        return Ok(port);
                    }
                    last = out;
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Waits until all sentinels agree on a primary that answers as one, with both
    /// replicas in sync with it, and each sentinel knows 2 replicas (not down) and 2 other
    /// sentinels: ready to fail over.
    pub fn wait_settled(&self) -> u16 {
        wait_until("the sentinel topology to settle", HA_TIMEOUT, || {
            let primary = self.primary_port()?;
            for s in &self.sentinels {
                let named = cli(
                    s.port,
                    &["SENTINEL", "get-master-addr-by-name", self.service],
                )?;
                if !named.ends_with(&primary.to_string()) {
                    return Err(format!("sentinel {} names {named}", s.port));
                }
                let replicas = cli(s.port, &["SENTINEL", "replicas", self.service])?;
                let healthy = replicas
                    .split("\nname\n")
                    .filter(|r| {
                        r.contains("\nslave\n")
                            && !r.contains("s_down")
                            && !r.contains("disconnected")
                    })
                    .count();
                if healthy < 2 {
                    return Err(format!(
                        "sentinel {} sees {healthy} healthy replicas",
                        s.port
                    ));
                }
                let others = cli(s.port, &["SENTINEL", "sentinels", self.service])?;
                if others.matches("\nname\n").count() + usize::from(others.starts_with("name")) < 2
                {
                    return Err(format!(
                        "sentinel {} knows too few sentinels: {others}",
                        s.port
                    ));
                }
            }
            let info = cli(primary, &["INFO", "replication"])?;
            if info_field(&info, "role").as_deref() != Some("master") {
                return Err(format!("{primary} is not a primary yet"));
            }
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            if online < 2 {
                return Err(format!("{online} replicas online"));
            }
            Ok(primary)
        })
    }

    fn server_at(&mut self, port: u16) -> &mut Node {
        self.servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server of the topology")
    }

    /// Stalls every replica of the primary (SIGSTOP) and closes the primary's replication
    /// links, for `lag`, during which the primary takes writes they never see; then SIGKILLs the primary, resumes the replicas
    /// (SIGCONT) and waits until the sentinels promote one (it answers as the primary).
    /// The killed server is started again as a replica of the new primary, and the
    /// topology waits to settle before it returns.
    pub fn promote_with_lag(&mut self, lag: Duration) -> Promotion {
        let old = self.wait_settled();
        let replicas: Vec<u16> = self
            .servers
            .iter()
            .map(|s| s.port)
            .filter(|&p| p != old)
            .collect();
        if !lag.is_zero() {
            for &r in &replicas {
                self.server_at(r).signal(libc::SIGSTOP);
            }
            cut_replication(old);
            std::thread::sleep(lag);
        }
        let killed_at = Instant::now();
        self.server_at(old).kill();
        for &r in &replicas {
            self.server_at(r).signal(libc::SIGCONT);
        }
        let new_primary = wait_until("a replica's promotion", HA_TIMEOUT, || {
            let port = self.primary_port()?;
            if port == old {
                return Err("the sentinels still name the old primary".into());
            }
            let info = cli(port, &["INFO", "replication"])?;
            if info_field(&info, "role").as_deref() == Some("master") {
                Ok(port)
            } else {
                Err(format!("{port} is not a primary yet"))
            }
        });
        let promoted_at = Instant::now();
        let dir = self.dir.0.clone();
        let node = self.server_at(old);
        node.args = vec![
            "--port".into(),
            old.to_string().into(),
            "--replicaof".into(),
            "127.0.0.1".into(),
            new_primary.to_string().into(),
        ];
        node.start(&dir);
        self.wait_settled();
        Promotion {
            killed_at,
            promoted_at,
            new_primary,
        }
    }
}

/// One server that keeps what it acknowledged across a SIGKILL: an append-only file flushed
/// before each write is answered (`appendonly yes`, `appendfsync always`), started again on
/// the same port and files by [`restart`](Persistent::restart).
pub struct Persistent {
    /// The server.
    pub server: Node,
    dir: TempDir,
}

impl Persistent {
    /// Starts it and waits until it answers.
    pub fn start() -> Persistent {
        let dir = TempDir::new("persistent");
        let port = free_ports(1)[0];
        let args = [
            "--port",
            &port.to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let server = Node::spawn(&dir.0, port, args);
        server.wait_ping();
        Persistent { server, dir }
    }

    /// SIGKILL, then the same server again on its port and files; returns once it answers
    /// `PING` (its append-only file loaded).
    pub fn restart(&mut self) {
        self.server.kill();
        self.server.start(&self.dir.0);
        self.server.wait_ping();
    }

    /// `redis://` URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.server.port)
    }
}

/// A primary with one replica, nothing to fail over: to measure what waiting for a replica
/// costs.
pub struct Replicated {
    /// The primary, then the replica.
    pub servers: Vec<Node>,
    _dir: TempDir,
}

impl Replicated {
    /// Starts both and waits until the replica is in sync.
    pub fn start() -> Replicated {
        let dir = TempDir::new("replicated");
        let ports = free_ports(2);
        let primary = Node::spawn(
            &dir.0,
            ports[0],
            vec!["--port".into(), ports[0].to_string().into()],
        );
        let replica = Node::spawn(
            &dir.0,
            ports[1],
            vec![
                "--port".into(),
                ports[1].to_string().into(),
                "--replicaof".into(),
                "127.0.0.1".into(),
                ports[0].to_string().into(),
            ],
        );
        primary.wait_ping();
        replica.wait_ping();
        wait_until("the replica to be in sync", HA_TIMEOUT, || {
            let info = cli(ports[0], &["INFO", "replication"])?;
            if info
                .lines()
                .any(|l| l.starts_with("slave0") && l.contains("state=online"))
            {
                Ok(())
            } else {
                Err(info)
            }
        });
        Replicated {
            servers: vec![primary, replica],
            _dir: dir,
        }
    }

    /// `redis://` URL of the primary.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.servers[0].port)
    }
}

/// One row of `CLUSTER NODES`.
#[derive(Debug)]
struct Row {
    port: u16,
    primary: bool,
    /// Its primary's id (`-` for a primary).
    primary_id: String,
    id: String,
    has_slots: bool,
}

/// A cluster of 3 primaries with a replica each (node timeout [`DOWN_AFTER`]).
pub struct Cluster {
    /// Its nodes; which are primaries changes with each promotion.
    pub nodes: Vec<Node>,
    buses: Vec<u16>,
    dir: TempDir,
}

impl Cluster {
    /// Starts 6 cluster-enabled servers, joins them with `redis-cli --cluster create
    /// --cluster-replicas 1`, and waits until every node reports `cluster_state:ok`.
    pub fn start() -> Cluster {
        let dir = TempDir::new("cluster");
        let ports = free_ports(12);
        let (ports, buses) = (ports[..6].to_vec(), ports[6..].to_vec());
        let nodes: Vec<Node> = ports
            .iter()
            .zip(&buses)
            .map(|(&port, &bus)| {
                let args: Vec<OsString> = [
                    "--port".to_owned(),
                    port.to_string(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-port".into(),
                    bus.to_string(),
                    "--cluster-config-file".into(),
                    dir.0
                        .join(format!("nodes-{port}.conf"))
                        .display()
                        .to_string(),
                    "--cluster-node-timeout".into(),
                    DOWN_AFTER.as_millis().to_string(),
                    // A replica stalled on purpose may still take over.
                    "--cluster-replica-validity-factor".into(),
                    "0".into(),
                ]
                .into_iter()
                .map(OsString::from)
                .collect();
                Node::spawn(&dir.0, port, args)
            })
            .collect();
        for node in &nodes {
            node.wait_ping();
        }
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        create.extend([
            "--cluster-replicas".into(),
            "1".into(),
            "--cluster-yes".into(),
        ]);
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        // `--cluster create` waits for the nodes to join, seconds on a loaded machine: cut
        // short, it left nodes without their primary (every one a primary, never settling).
        if let Err(e) = cli_within(ports[0], &create, HA_TIMEOUT) {
            eprintln!("redis-cli --cluster create: {e}");
        }
        let cluster = Cluster { nodes, buses, dir };
        cluster.wait_settled();
        cluster
    }

    /// `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port);
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port));
        }
        url
    }

    /// The `CLUSTER NODES` rows of the nodes not failed, as `port` sees them.
    fn rows(&self, port: u16) -> Result<Vec<Row>, String> {
        let listing = cli(port, &["CLUSTER", "NODES"])?;
        Ok(listing
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let flags = f.get(2)?;
                if flags.contains("fail") {
                    return None;
                }
                Some(Row {
                    port,
                    primary: flags.contains("master"),
                    primary_id: (*f.get(3)?).to_owned(),
                    id: (*f.first()?).to_owned(),
                    has_slots: f.len() > 8,
                })
            })
            .collect())
    }

    /// Waits until every running node reports `cluster_state:ok`, sees 3 primaries with
    /// slots each with a replica; returns the primaries' ports.
    pub fn wait_settled(&self) -> Vec<u16> {
        wait_until("the cluster to settle", HA_TIMEOUT, || {
            let mut primaries = Vec::new();
            for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
                let info = cli(node.port, &["CLUSTER", "INFO"])?;
                if !info.contains("cluster_state:ok") {
                    return Err(format!("{}: {}", node.port, info.replace("\r\n", " ")));
                }
                let rows = self.rows(node.port)?;
                let masters: Vec<&Row> = rows.iter().filter(|r| r.primary && r.has_slots).collect();
                if masters.len() != 3 || rows.len() != 6 {
                    return Err(format!("{} sees {rows:?}", node.port));
                }
                for m in &masters {
                    if !rows.iter().any(|r| !r.primary && r.primary_id == m.id) {
                        return Err(format!(
                            "{} sees primary {} without a replica",
                            node.port, m.port
                        ));
                    }
                }
                primaries = masters.iter().map(|m| m.port).collect();
            }
            // Each replica in sync with its primary.
            for &p in &primaries {
                let info = cli(p, &["INFO", "replication"])?;
                if !info
                    .lines()
                    .any(|l| l.starts_with("slave0") && l.contains("state=online"))
                {
                    return Err(format!("{p}'s replica not online"));
                }
            }
            primaries.sort_unstable();
            Ok(primaries)
        })
    }

    /// The port of the primary serving `slot`.
    pub fn primary_of_slot(&self, slot: u16) -> Result<u16, String> {
        for node in self.nodes.iter().filter(|n| n.pid().is_some()) {
            let Ok(listing) = cli(node.port, &["CLUSTER", "NODES"]) else {
                continue;
            };
            for line in listing.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if !f
                    .get(2)
                    .is_some_and(|flags| flags.contains("master") && !flags.contains("fail"))
                {
                    continue;
                }
                for range in f.iter().skip(8) {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                        && (a..=b).contains(&slot)
                    {
                        let port = f[1].split('@').next().and_then(|a| a.rsplit(':').next());
                        return port
                            .and_then(|p| p.parse().ok())
                            .ok_or_else(|| format!("bad row {line}"));
                    }
                }
            }
            return Err(format!("no primary serves slot {slot}"));
        }
        Err("no node answers".into())
    }

    fn node_at(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// Stalls the replica of the primary serving `slot` (SIGSTOP) and closes the primary's
    /// replication link, for `lag` (writes it takes then reach no replica), SIGKILLs the
    /// primary, resumes the replica and waits until it serves the slot. The killed node is
    /// started again (it rejoins as a replica), and the cluster waits to settle.
    pub fn promote_with_lag(&mut self, slot: u16, lag: Duration) -> Promotion {
        self.wait_settled();
        let old = self
            .primary_of_slot(slot)
            .expect("a primary serves the slot");
        let rows = self.rows(old).expect("CLUSTER NODES");
        let old_id = rows
            .iter()
            .find(|r| r.port == old)
            .map(|r| r.id.clone())
            .expect("own row");
        let replica = rows
            .iter()
            .find(|r| r.primary_id == old_id)
            .map(|r| r.port)
            .expect("the primary has a replica");
        if !lag.is_zero() {
            self.node_at(replica).signal(libc::SIGSTOP);
            cut_replication(old);
            std::thread::sleep(lag);
        }
        let killed_at = Instant::now();
        self.node_at(old).kill();
        self.node_at(replica).signal(libc::SIGCONT);
        let new_primary = wait_until("the replica's promotion", HA_TIMEOUT, || {
            let info = cli(replica, &["INFO", "replication"])?;
            if info_field(&info, "role").as_deref() == Some("master") {
                Ok(replica)
            } else {
                Err(format!("{replica} is not a primary yet"))
            }
        });
        let promoted_at = Instant::now();
        let dir = self.dir.0.clone();
        self.node_at(old).start(&dir);
        self.wait_settled();
        Promotion {
            killed_at,
            promoted_at,
            new_primary,
        }
    }

    /// The bus ports (the cluster's own links).
    pub fn bus_ports(&self) -> &[u16] {
        &self.buses
    }
}
