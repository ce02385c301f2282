//! Real Redis topologies for end-to-end tests: a TLS server, a primary with a sentinel, a
//! cluster. Every server is a `redis-server` of its own on free ports of 127.0.0.1, without
//! persistence, in a temporary directory; it is killed (and waited for) when its guard drops,
//! also when the test fails, and dies with the test process otherwise (PR_SET_PDEATHSIG).
//! Readiness is polled (PING, `cluster_state:ok`, `SENTINEL get-master-addr-by-name`)
//! against a deadline, never assumed after a sleep.
#![allow(dead_code, missing_docs)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How long any server or topology may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(8);

/// The `redis-server` executable: `CONCLIB_REDIS_SERVER`, or `redis-server` on `PATH`.
fn server_binary() -> OsString {
    std::env::var_os("CONCLIB_REDIS_SERVER").unwrap_or_else(|| "redis-server".into())
}

/// `n` distinct ports of 127.0.0.1 free now, below the kernel's ephemeral range: the
/// testkit's, one series for this process whatever asks (the Sentinel and Cluster harness
/// too), so no two callers are handed one port.
pub use conclib_testkit::redis_ha::free_ports;

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "conclib-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `redis-server` process, killed and reaped on drop. When dropped during a panic it
/// prints the end of its log, so a failing test shows what the server saw.
pub struct Server {
    pub name: String,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

impl Server {
    /// Runs `redis-server <args> --bind 127.0.0.1 --save '' --appendonly no --dir <dir>
    /// --logfile <dir>/<name>.log`. `args` holds the port options (and a config file first,
    /// if any); `port` is the one to talk to.
    pub fn spawn(dir: &Path, name: &str, port: u16, args: &[OsString]) -> Server {
        let log = dir.join(format!("{name}.log"));
        let mut command = Command::new(server_binary());
        command
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Dies with the thread that spawned it (the test's) if the test process is killed
        // before the guard drops.
        conclib_core::child::bind_to_parent(&mut command, false);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {:?} for {name}: {e} (set CONCLIB_REDIS_SERVER?)",
                server_binary()
            )
        });
        Server {
            name: name.to_owned(),
            port,
            log,
            child,
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    /// Panics (with its log) if the server has exited.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} (port {}) exited: {status}; its log ends with:\n{}",
                self.name,
                self.port,
                self.log_tail()
            );
        }
    }

    /// Polls `probe` until it returns `Ok`, checking each time that the server still runs;
    /// panics after [`READY_TIMEOUT`] with the last observation and the server's log.
    pub async fn wait_for<F, Fut>(&mut self, what: &str, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.assert_alive();
            let last = match probe().await {
                Ok(()) => return,
                Err(last) => last,
            };
            assert!(
                Instant::now() < deadline,
                "{}: timed out after {READY_TIMEOUT:?} waiting for {what}; last answer: {last}\n\
                 its log ends with:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the server answers PING (`cli` holds extra redis-cli options, e.g. TLS).
    pub async fn wait_ping(&mut self, cli: &[OsString]) {
        let port = self.port;
        let cli = cli.to_vec();
        self.wait_for("PONG", || {
            let mut args = cli.clone();
            args.push("PING".into());
            async move { expect_output(port, &args, |out| out == "PONG").await }
        })
        .await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} (port {}) log tail ---\n{}",
                self.name,
                self.port,
                self.log_tail()
            );
        }
    }
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args>`; its trimmed stdout, or why it failed.
pub async fn cli(port: u16, args: &[OsString]) -> Result<String, String> {
    let output = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "redis-cli {args:?} exited with {}: {stdout} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// `cli`, accepted when `ok` holds for its output.
async fn expect_output(
    port: u16,
    args: &[OsString],
    ok: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let out = cli(port, args).await?;
    if ok(&out) { Ok(()) } else { Err(out) }
}

/// Arguments from string slices.
pub fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// The keys of a server matching `pattern` (SCAN, through redis-cli).
pub async fn keys(port: u16, pattern: &str) -> Vec<String> {
    let out = cli(port, &args(&["--scan", "--pattern", pattern]))
        .await
        .unwrap_or_else(|e| panic!("scanning port {port}: {e}"));
    let mut keys: Vec<String> = out.lines().map(str::to_owned).collect();
    keys.sort();
    keys
}

/// Runs a command to completion, panicking with its output if it fails.
fn run(what: &str, command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A redis-server that speaks TLS only, with a certificate of a CA made for the test.
pub struct TlsServer {
    pub server: Server,
    /// The TLS port (the plain port is off).
    pub port: u16,
    /// The PEM of the CA that signed the server's certificate.
    pub ca: PathBuf,
    dir: TempDir,
}

/// Makes a CA and a server certificate for `127.0.0.1` and `localhost` (P-256 keys, valid
/// for a day) with openssl, in `dir`. Returns the CA's PEM path.
pub fn make_certificates(dir: &Path) -> PathBuf {
    let path = |name: &str| dir.join(name);
    std::fs::write(
        path("ca.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
         [dn]\nCN = conclib test CA\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(
        path("server.ext"),
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n\
         authorityKeyIdentifier = keyid\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(
        "making the CA",
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509", "-config", "ca.cnf", "-days", "1"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.crt"]),
    );
    run(
        "making the server's request",
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-new", "-subj", "/CN=localhost"])
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"]),
    );
    run(
        "signing the server's certificate",
        Command::new("openssl").current_dir(dir).args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]),
    );
    path("ca.crt")
}

/// Starts a TLS-only redis-server (`--port 0 --tls-port P`, clients not authenticated).
pub async fn start_tls() -> TlsServer {
    let dir = TempDir::new("tls");
    let ca = make_certificates(dir.path());
    let port = free_ports(1)[0];
    let file = |name: &str| OsString::from(dir.path().join(name));
    let mut server = Server::spawn(
        dir.path(),
        "tls",
        port,
        &[
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string().into(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    );
    server
        .wait_ping(&["--tls".into(), "--cacert".into(), ca.clone().into()])
        .await;
    TlsServer {
        server,
        port,
        ca,
        dir,
    }
}

/// A primary and one sentinel monitoring it (quorum 1).
pub struct SentinelSetup {
    pub primary: Server,
    pub sentinel: Server,
    /// The service name the sentinel knows the primary by.
    pub service: &'static str,
    dir: TempDir,
}

impl SentinelSetup {
    /// `redis-sentinel://` URL naming the sentinel (only) and the service.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={}",
            self.sentinel.port, self.service
        )
    }
}

/// Starts a primary, then a sentinel (`redis-server sentinel.conf --sentinel`) monitoring
/// it, and waits until the sentinel names the primary.
pub async fn start_sentinel() -> SentinelSetup {
    let dir = TempDir::new("sentinel");
    let ports = free_ports(2);
    let (primary_port, sentinel_port) = (ports[0], ports[1]);
    let mut primary = Server::spawn(
        dir.path(),
        "primary",
        primary_port,
        &args(&["--port", &primary_port.to_string()]),
    );
    primary.wait_ping(&[]).await;

    let service = "mymaster";
    // The sentinel rewrites its configuration file: it must be writable, in our directory.
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {sentinel_port}\n\
             sentinel resolve-hostnames no\n\
             sentinel monitor {service} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {service} 5000\n"
        ),
    )
    .unwrap();
    let mut sentinel = Server::spawn(
        dir.path(),
        "sentinel",
        sentinel_port,
        &[conf.into(), "--sentinel".into()],
    );
    let expected = format!("127.0.0.1\n{primary_port}");
    sentinel
        .wait_for("the sentinel to name the primary", || {
            let expected = expected.clone();
            async move {
                let out = cli(
                    sentinel_port,
                    &args(&["SENTINEL", "get-master-addr-by-name", service]),
                )
                .await?;
                if out == expected { Ok(()) } else { Err(out) }
            }
        })
        .await;
    SentinelSetup {
        primary,
        sentinel,
        service,
        dir,
    }
}

/// A cluster of primaries without replicas, slots split by `redis-cli --cluster create`.
pub struct Cluster {
    pub nodes: Vec<Server>,
    /// `(first slot, last slot, index in nodes)`, as `CLUSTER NODES` reports them.
    slots: Vec<(u16, u16, usize)>,
    dir: TempDir,
}

impl Cluster {
    /// `redis-cluster://` URL naming every node.
    pub fn url(&self) -> String {
        conclib_testkit::redis_ha::cluster_url(self.nodes.iter().map(|n| n.port))
    }

    /// The index (in `nodes`) of the node serving `slot`.
    pub fn node_of_slot(&self, slot: u16) -> usize {
        self.slots
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .unwrap_or_else(|| panic!("no node serves slot {slot}: {:?}", self.slots))
            .2
    }

    /// The index of the node serving `key`.
    pub fn node_of_key(&self, key: &str) -> usize {
        self.node_of_slot(fred::util::redis_keyslot(key.as_bytes()))
    }
}

/// The slot ranges of `CLUSTER NODES` (`<id> <ip:port@bus> <flags> <primary> <ping> <pong>
/// <epoch> <link> <slot or range>...`), by index in `nodes`.
fn slot_map(cluster_nodes: &str, nodes: &[Server]) -> Vec<(u16, u16, usize)> {
    let mut slots = Vec::new();
    for line in cluster_nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(address) = fields.get(1) else {
            continue;
        };
        let port: u16 = address
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad CLUSTER NODES line {line:?}"));
        let index = nodes
            .iter()
            .position(|n| n.port == port)
            .unwrap_or_else(|| panic!("CLUSTER NODES names an unknown node: {line:?}"));
        for range in fields.iter().skip(8) {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            slots.push((first.parse().unwrap(), last.parse().unwrap(), index));
        }
    }
    slots
}

/// Starts `n` (at least 3) cluster-enabled servers, joins them with `redis-cli --cluster
/// create`, and waits until every node reports `cluster_state:ok` and knows all `n` nodes.
pub async fn start_cluster(n: usize) -> Cluster {
    assert!(n >= 3, "redis-cli --cluster create needs 3 primaries");
    let dir = TempDir::new("cluster");
    // A port and a bus port for each node: the default bus port (port + 10000) may be taken
    // or beyond 65535.
    let ports = free_ports(2 * n);
    let mut nodes: Vec<Server> = (0..n)
        .map(|i| {
            let (port, bus) = (ports[2 * i], ports[2 * i + 1]);
            Server::spawn(
                dir.path(),
                &format!("node-{port}"),
                port,
                &[
                    "--port".into(),
                    port.to_string().into(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-port".into(),
                    bus.to_string().into(),
                    "--cluster-config-file".into(),
                    dir.path().join(format!("nodes-{port}.conf")).into(),
                    "--cluster-node-timeout".into(),
                    "5000".into(),
                ],
            )
        })
        .collect();
    for node in &mut nodes {
        node.wait_ping(&[]).await;
    }

    let mut create = args(&["--cluster", "create"]);
    create.extend(nodes.iter().map(|s| format!("127.0.0.1:{}", s.port).into()));
    create.extend(args(&["--cluster-replicas", "0", "--cluster-yes"]));
    if let Err(e) = cli(nodes[0].port, &create).await {
        for node in &mut nodes {
            node.assert_alive();
        }
        panic!("redis-cli --cluster create failed: {e}");
    }

    let known = format!("cluster_known_nodes:{n}");
    for node in &mut nodes {
        let port = node.port;
        let known = known.clone();
        node.wait_for("cluster_state:ok with every node known", || {
            let known = known.clone();
            async move {
                let info = cli(port, &args(&["CLUSTER", "INFO"])).await?;
                let has = |line: &str| info.lines().any(|l| l.trim() == line);
                if has("cluster_state:ok") && has(&known) && has("cluster_slots_ok:16384") {
                    Ok(())
                } else {
                    Err(info.replace("\r\n", " "))
                }
            }
        })
        .await;
    }
    let listing = cli(nodes[0].port, &args(&["CLUSTER", "NODES"]))
        .await
        .unwrap_or_else(|e| panic!("CLUSTER NODES: {e}"));
    let slots = slot_map(&listing, &nodes);
    let covered: u32 = slots
        .iter()
        .map(|(first, last, _)| u32::from(last - first) + 1)
        .sum();
    assert_eq!(covered, 16384, "CLUSTER NODES:\n{listing}");
    Cluster { nodes, slots, dir }
}

/// A redis-server of a test's own on `port`, to kill, freeze and start again: with `aof`, it
/// keeps what it acknowledged across a SIGKILL (an append-only file in `dir`, fsynced before
/// each write is answered: `appendfsync always`); without, it keeps nothing. Killed (SIGKILL,
/// by PID) and reaped by [`kill`](Self::kill) or on drop; it dies with the test process too.
pub struct OwnRedis {
    child: Option<Child>,
    dir: PathBuf,
}

impl OwnRedis {
    /// Starts it and waits until it answers PING (it answers LOADING while it loads its file).
    pub async fn start(port: u16, dir: &Path, aof: bool) -> OwnRedis {
        OwnRedis::start_with(port, dir, aof, &[]).await
    }

    /// [`start`](Self::start), with more options (`--rename-command CONFIG ""`) after the
    /// usual ones.
    pub async fn start_with(port: u16, dir: &Path, aof: bool, extra: &[&str]) -> OwnRedis {
        let mut command = Command::new(server_binary());
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(if aof {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .args(["--daemonize", "no"])
            .args(extra)
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        conclib_core::child::bind_to_parent(&mut command, false);
        let child = conclib_core::child::spawn_bound(
            move || command.spawn(),
            |mut orphan: Child| {
                let _ = orphan.kill();
                let _ = orphan.wait();
            },
        )
        .await
        .expect("redis-server starts");
        let mut redis = OwnRedis {
            child: Some(child),
            dir: dir.to_owned(),
        };
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        while !ping(port).await {
            if let Some(status) = redis.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "redis-server exited: {status}; its log:\n{}",
                    std::fs::read_to_string(redis.dir.join("redis.log")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server does not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        redis
    }

    /// Sends it `signal` (SIGSTOP, SIGCONT).
    pub fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the server runs");
        let pid = i32::try_from(child.id()).expect("a pid fits an i32");
        // SAFETY: kill(2) on the pid of our own child, not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child, not reaped yet.
            assert_eq!(
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) },
                0
            );
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen server dies of SIGKILL all the same.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a Redis answers PING on this port of 127.0.0.1 (within a second).
pub async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut answer = [0u8; 7];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(&answer == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), exchange).await,
        Ok(Ok(true))
    )
}
