//! [`start_redis`]: a private `redis-server` child for tests, demos and single-host setups.

pub use crate::error::DaemonError;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ProxyConfig;

/// A `redis-server` child process started by [`start_redis`], with persistence off.
///
/// [`shutdown`](Self::shutdown) stops it (SIGTERM, then SIGKILL after 5 s); so does dropping
/// it. It also dies with this process, however this process ends (`PR_SET_PDEATHSIG`).
#[derive(Debug)]
pub struct RedisDaemon {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    password: Option<String>,
}

impl RedisDaemon {
    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A URL that reaches it, with the password of the configuration it was started with.
    #[must_use]
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `base` with its URL pointed at this server.
    #[must_use]
    pub fn config(&self, base: &ProxyConfig) -> ProxyConfig {
        base.clone().with_url(self.url())
    }

    /// Its log file.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Stops the server and waits for it to exit.
    ///
    /// # Errors
    /// [`DaemonError::Io`] if it could not be signalled or waited for.
    pub fn shutdown(mut self) -> Result<(), DaemonError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), DaemonError> {
        let result = match self.child.take() {
            Some(child) => terminate(child),
            None => Ok(()),
        };
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }
}

impl Drop for RedisDaemon {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "could not stop redis-server");
        }
    }
}

fn terminate(mut child: Child) -> Result<(), DaemonError> {
    let io = |source| DaemonError::Io {
        what: "stopping redis-server",
        source,
    };
    if child.try_wait().map_err(io)?.is_some() {
        return Ok(());
    }
    // SAFETY: plain system calls on our own child's pid. SIGCONT: a stopped server (SIGSTOP)
    // handles the SIGTERM at once instead of waiting for the SIGKILL.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait().map_err(io)?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().map_err(io)?;
    child.wait().map_err(io)?;
    Ok(())
}

/// Finds `redis-server`: `config.server_binary`, then `CONCLIB_REDIS_SERVER`, then `PATH`,
/// `/usr/bin`, `/usr/local/bin`.
fn find_binary(config: &ProxyConfig) -> Result<PathBuf, DaemonError> {
    let mut searched = Vec::new();
    let explicit = config
        .server_binary
        .clone()
        .or_else(|| std::env::var_os("CONCLIB_REDIS_SERVER").map(PathBuf::from));
    if let Some(path) = explicit {
        if is_executable(&path) {
            return Ok(path);
        }
        searched.push(path);
        return Err(DaemonError::NotInstalled { searched });
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/bin".into());
    dirs.push("/usr/local/bin".into());
    for dir in dirs {
        let candidate = dir.join("redis-server");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        if !searched.contains(&candidate) {
            searched.push(candidate);
        }
    }
    Err(DaemonError::NotInstalled { searched })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn free_port() -> Result<u16, DaemonError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| DaemonError::Io {
            what: "finding a free port",
            source,
        })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| DaemonError::Io {
            what: "finding a free port",
            source,
        })
}

/// Starts a `redis-server` child on 127.0.0.1 and returns once it answers PING.
///
/// The port is `config.server_port` if set, else a free one. Persistence is off (no RDB, no
/// AOF); its working directory and log live in a temporary directory removed at shutdown. If
/// `config.url` has a password, the server requires it.
///
/// The server refuses what no proxy would accept, so that a hostile client cannot make a
/// proxy read it: one value (a request's body) of more than
/// [`max_payload`](ProxyConfig::max_payload) + 64 KiB (`proto-max-bulk-len`, at least 1 MiB),
/// one command of more than twice that plus 1 MiB (`client-query-buffer-limit`). A proxy
/// then holds at most [`batch_size`](ProxyConfig::batch_size) such entries at once.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use conclib_redis::{ProxyConfig, start_redis};
/// let daemon = start_redis(&ProxyConfig::default()).await?;
/// let config = daemon.config(&ProxyConfig::default());
/// // ... start_proxy(&system, &config), ProxyClient::connect(&config) ...
/// daemon.shutdown()?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`DaemonError::NotInstalled`] (with how to install it or use an existing Redis), or the
/// server failed to start or to answer in time.
pub async fn start_redis(config: &ProxyConfig) -> Result<RedisDaemon, DaemonError> {
    let binary = find_binary(config)?;
    remove_stale_dirs();
    let password = fred::types::config::Config::from_url(&config.url)
        .ok()
        .and_then(|c| c.password);
    let attempts = if config.server_port.is_some() { 1 } else { 3 };
    let mut last = None;
    for _ in 0..attempts {
        let port = match config.server_port {
            Some(port) => port,
            None => free_port()?,
        };
        match start_once(
            &binary,
            port,
            password.clone(),
            config.max_payload,
            config.startup_timeout,
        )
        .await
        {
            Ok(daemon) => return Ok(daemon),
            // Someone else took the free port between our probe and the server's bind.
            Err(DaemonError::Exited { status, log }) if log.contains("Address already in use") => {
                last = Some(DaemonError::Exited { status, log });
            }
            Err(other) => return Err(other),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Removes the directories of servers whose parent process is gone (a process that never
/// dropped its daemon, e.g. one kept in a `static`, cannot clean up after itself).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("conclib-redis-")) else {
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .next()
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn start_once(
    binary: &Path,
    port: u16,
    password: Option<String>,
    max_payload: usize,
    timeout: Duration,
) -> Result<RedisDaemon, DaemonError> {
    const MIB: usize = 1024 * 1024;
    let bulk = (max_payload.saturating_add(64 * 1024)).max(MIB);
    let query = bulk.saturating_mul(2).saturating_add(MIB);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "conclib-redis-{}-{}-{port}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| DaemonError::Io {
        what: "creating the redis-server directory",
        source,
    })?;
    let log = dir.join("redis.log");
    let mut command = Command::new(binary);
    command
        .arg("--port")
        .arg(port.to_string())
        .args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .args(["--loglevel", "notice"])
        .arg("--proto-max-bulk-len")
        .arg(bulk.to_string())
        .arg("--client-query-buffer-limit")
        .arg(query.to_string())
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(pw) = &password {
        command.arg("--requirepass").arg(pw);
    }
    // A process group of its own: the terminal's Ctrl-C (SIGINT to the foreground group)
    // reaches the program, which shuts its proxies down and then this server, and not the
    // server first, under the proxies' feet. It still dies with this process.
    conclib_core::child::bind_to_parent(&mut command, true);
    let spawn = move || command.spawn();
    let abandoned = |mut orphan: Child| {
        let _ = orphan.kill();
        let _ = orphan.wait();
    };
    let spawned = conclib_core::child::spawn_bound(spawn, abandoned).await;
    let child = spawned.map_err(|source| DaemonError::Spawn {
        binary: binary.to_owned(),
        source,
    })?;
    let mut daemon = RedisDaemon {
        child: Some(child),
        port,
        dir,
        password,
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = daemon
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok())
            .flatten()
        {
            daemon.child = None;
            return Err(DaemonError::Exited {
                status: status.to_string(),
                log: log_tail(&log),
            });
        }
        if ping(port).await {
            return Ok(daemon);
        }
        if Instant::now() >= deadline {
            let tail = log_tail(&log);
            drop(daemon);
            return Err(DaemonError::StartTimeout {
                port,
                timeout,
                log: tail,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether something on `port` answers PING like Redis (`+PONG`, or `-NOAUTH` when a
/// password is required).
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.ok()?;
        let answer = &buf[..n];
        Some(answer.starts_with(b"+PONG") || answer.starts_with(b"-NOAUTH"))
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A private Redis server for a unit test (keys under namespace `ns`), and a client of it
/// whose commands time out after `command_timeout`.
#[cfg(test)]
pub(crate) async fn with_client(
    ns: &str,
    command_timeout: Duration,
) -> (RedisDaemon, fred::prelude::Client) {
    use fred::prelude::ClientLike;
    let base = ProxyConfig::default().with_namespace(ns);
    let daemon = start_redis(&base).await.unwrap();
    let client = daemon
        .config(&base)
        .builder::<std::convert::Infallible>(command_timeout)
        .unwrap()
        .build()
        .unwrap();
    client.init().await.unwrap();
    (daemon, client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_says_how_to_install() {
        let config = ProxyConfig {
            server_binary: Some("/nonexistent/redis-server".into()),
            ..ProxyConfig::default()
        };
        let err = find_binary(&config).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("apt-get install redis-server"), "{text}");
        assert!(text.contains("CONCLIB_REDIS_URL"), "{text}");
    }
}
