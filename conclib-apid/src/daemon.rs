//! [`start_api`] and [`ApiDaemon`]: launch, health check, shutdown.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ApiConfig;
use crate::error::{ApiError, HealthAttempt, error_chain};
use crate::output::{OutputLine, OutputLog, OutputStream, pump};

/// How long a failed start or a shutdown waits for the output readers to
/// reach end of file once the process group is gone.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a failed start waits for the child to be reaped after `SIGKILL`.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// How [`ApiDaemon::shutdown`] ended the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownOutcome {
    /// The server had already exited before shutdown was asked for.
    AlreadyExited(ExitStatus),
    /// The server exited within the grace period after `SIGTERM`.
    Terminated(ExitStatus),
    /// The server was still running when the grace period ended and was
    /// killed with `SIGKILL`.
    Killed(ExitStatus),
}

impl ShutdownOutcome {
    /// The server's exit status, however it ended.
    pub fn status(&self) -> ExitStatus {
        match *self {
            ShutdownOutcome::AlreadyExited(s)
            | ShutdownOutcome::Terminated(s)
            | ShutdownOutcome::Killed(s) => s,
        }
    }

    /// Whether the grace period ran out and `SIGKILL` was needed.
    pub fn was_killed(&self) -> bool {
        matches!(self, ShutdownOutcome::Killed(_))
    }
}

/// A running API server that answered its health check.
///
/// The server leads its own process group, and everything in that group
/// lives and dies with the daemon:
///
/// - [`shutdown`](ApiDaemon::shutdown) sends `SIGTERM` to the group, waits
///   the grace period for the server to exit, then sends `SIGKILL`;
/// - once the server itself has exited (seen by `shutdown`,
///   [`wait`](ApiDaemon::wait) or [`is_alive`](ApiDaemon::is_alive)),
///   whatever is left of its group (workers it forked) is killed;
/// - dropping the daemon without `shutdown` kills the group with `SIGKILL`
///   at once (synchronously; no runtime needed);
/// - if this process dies, the server gets `SIGKILL` from the kernel
///   (`PR_SET_PDEATHSIG`, on Linux).
#[derive(Debug)]
pub struct ApiDaemon {
    name: Arc<str>,
    url: String,
    pid: u32,
    /// `None` only once `shutdown` has taken it.
    child: Option<Child>,
    /// Set once the group has been sent `SIGKILL` after the leader exited.
    group_swept: bool,
    output: OutputLog,
    readers: Vec<JoinHandle<()>>,
    shutdown_grace: Duration,
}

/// Launches the server described by `config` and waits until its health
/// check answers `200 OK`.
///
/// The child runs the program directly (no shell unless the config was
/// made with [`ApiConfig::shell`]), with standard input closed and its
/// standard output and error forwarded to `tracing` (`INFO` and `WARN`,
/// target `conclib_apid::output`, field `api` = the name) and kept in the
/// daemon's [`OutputLog`].
///
/// The health-check URL is polled with HTTP `GET` every
/// [`poll_interval`](ApiConfig::poll_interval), bypassing any proxy, until
/// it answers exactly `200` (a redirect is not followed: it counts as its
/// status). Polling stops at once if the child exits.
///
/// Must be called within a Tokio runtime with I/O and time enabled.
///
/// # Errors
///
/// - [`ApiError::ProgramNotFound`] or [`ApiError::Spawn`] if the child
///   cannot be launched;
/// - [`ApiError::EarlyExit`] if it exits before answering 200 (with its exit
///   status and last output lines);
/// - [`ApiError::HealthTimeout`] if it does not answer 200 within
///   [`startup_timeout`](ApiConfig::startup_timeout) (with the URL, the last
///   status or request error, and the last output lines);
/// - [`ApiError::InvalidConfig`] for an unusable URL (not `http://`) or an
///   empty program.
///
/// On every error, the child's process group has been killed. If the
/// returned future is dropped before it finishes, the group is killed too.
pub async fn start_api(config: ApiConfig) -> Result<ApiDaemon, ApiError> {
    let name = config.name.clone();
    let program = config.command.to_string_lossy().into_owned();
    let invalid = |reason: String| ApiError::InvalidConfig {
        name: name.clone(),
        reason,
    };

    let url = Url::parse(&config.healthcheck_url).map_err(|e| {
        invalid(format!(
            "health-check URL `{}` is not valid: {e}",
            config.healthcheck_url
        ))
    })?;
    // The client is built without TLS: an https:// URL would fail every request until the
    // startup timeout, so it is refused here.
    if url.scheme() != "http" {
        return Err(invalid(format!(
            "health-check URL `{url}` must use http:// (the health check speaks plain HTTP/1.1)"
        )));
    }
    if config.command.is_empty() {
        return Err(invalid("the program to run is empty".to_owned()));
    }
    // A redirect is not a 200: the health URL itself must answer it.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| invalid(format!("cannot build the HTTP client: {}", error_chain(&e))))?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| ApiError::Spawn {
        name: name.clone(),
        program: program.clone(),
        source: io::Error::other(e),
    })?;

    let mut command = Command::new(&config.command);
    command
        .args(&config.args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &config.cwd {
        command.current_dir(dir);
    }
    // Its own process group (the whole tree is signalled at shutdown), killed if we die.
    conclib_core::child::bind_to_parent(command.as_std_mut(), true);
    // Default dispositions for the signals that stop a server, whatever this process
    // ignores: a process started in the background by a non-interactive shell (or under
    // `nohup`) ignores SIGINT and SIGQUIT (or SIGHUP), and exec keeps what is ignored, so
    // its server would survive a Ctrl-C or `kill -INT` meant for it.
    // SAFETY: runs in the forked child before exec; `signal` is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.as_std_mut().pre_exec(|| {
            for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM] {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let spawn = move || {
        // The child's pipes and reaper belong to the caller's runtime.
        let _entered = runtime.enter();
        command.spawn()
    };
    let mut child = conclib_core::child::spawn_bound(spawn, |mut orphan: Child| {
        // The caller gave up while we were forking: leave nothing behind.
        if let Some(pid) = orphan.id() {
            // SAFETY: plain system call; the child leads its own group.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
        let _ = orphan.start_kill();
    })
    .await
    .map_err(|source| spawn_error(&config, source))?;
    let Some(pid) = child.id() else {
        // Only possible if the child was already reaped, which nothing did.
        return Err(ApiError::Spawn {
            name,
            program,
            source: io::Error::other("the child has no process id"),
        });
    };

    let name: Arc<str> = Arc::from(config.name.as_str());
    let output = OutputLog::new(config.output_capacity);
    let mut readers = Vec::with_capacity(2);
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(pump(
            stdout,
            OutputStream::Stdout,
            name.clone(),
            pid,
            output.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(pump(
            stderr,
            OutputStream::Stderr,
            name.clone(),
            pid,
            output.clone(),
        )));
    }
    tracing::info!(api = %name, pid, program = %program, url = %url, "API server launched; waiting for its health check");

    // From here on, dropping `daemon` (error or cancellation) kills the group.
    let mut daemon = ApiDaemon {
        name,
        url: config.healthcheck_url.clone(),
        pid,
        child: Some(child),
        group_swept: false,
        output,
        readers,
        shutdown_grace: config.shutdown_grace,
    };
    daemon.await_healthy(&client, url, &config).await?;
    Ok(daemon)
}

fn spawn_error(config: &ApiConfig, source: io::Error) -> ApiError {
    let name = config.name.clone();
    let program = config.command.to_string_lossy().into_owned();
    // A missing working directory also reports `NotFound`.
    let cwd_missing = config.cwd.as_ref().is_some_and(|dir| !dir.is_dir());
    if source.kind() == io::ErrorKind::NotFound && !cwd_missing {
        ApiError::ProgramNotFound {
            name,
            program,
            source,
        }
    } else {
        let source = if cwd_missing {
            io::Error::new(
                source.kind(),
                format!(
                    "working directory `{}` does not exist: {source}",
                    config
                        .cwd
                        .as_deref()
                        .unwrap_or_else(|| ".".as_ref())
                        .display()
                ),
            )
        } else {
            source
        };
        ApiError::Spawn {
            name,
            program,
            source,
        }
    }
}

enum Startup {
    Healthy,
    Exited(io::Result<ExitStatus>),
    TimedOut,
}

impl ApiDaemon {
    async fn await_healthy(
        &mut self,
        client: &reqwest::Client,
        url: Url,
        config: &ApiConfig,
    ) -> Result<(), ApiError> {
        let deadline = Instant::now() + config.startup_timeout;
        let mut last = HealthAttempt::NoResponse;
        let startup = {
            let child = self.child.as_mut().expect("child present until shutdown");
            let poll = poll_until_ok(
                client,
                &url,
                config.poll_interval,
                config.request_timeout,
                deadline,
                &mut last,
            );
            tokio::select! {
                biased;
                status = child.wait() => Startup::Exited(status),
                healthy = tokio::time::timeout_at(deadline, poll) => match healthy {
                    Ok(()) => Startup::Healthy,
                    Err(_) => Startup::TimedOut,
                },
            }
        };

        let startup = match startup {
            // Answered 200, but was it our child? (Another server may hold
            // the port our child failed to bind.)
            Startup::Healthy => match self.child_mut().try_wait() {
                Ok(Some(status)) => Startup::Exited(Ok(status)),
                _ => Startup::Healthy,
            },
            other => other,
        };

        match startup {
            Startup::Healthy => {
                tracing::info!(api = %self.name, pid = self.pid, url = %self.url, "API server is healthy");
                Ok(())
            }
            Startup::Exited(status) => {
                let status = status.map_err(|source| self.wait_error(source))?;
                self.sweep_group();
                self.drain_output().await;
                tracing::warn!(api = %self.name, pid = self.pid, %status, "API server exited during startup");
                Err(ApiError::EarlyExit {
                    name: self.name.to_string(),
                    pid: self.pid,
                    url: self.url.clone(),
                    status,
                    output: self.output.lines(),
                })
            }
            Startup::TimedOut => {
                self.kill_group();
                let _ = tokio::time::timeout(REAP_TIMEOUT, self.child_mut().wait()).await;
                self.group_swept = true;
                self.drain_output().await;
                tracing::warn!(api = %self.name, pid = self.pid, url = %self.url, last = %last, "API server health check timed out");
                Err(ApiError::HealthTimeout {
                    name: self.name.to_string(),
                    pid: self.pid,
                    url: self.url.clone(),
                    timeout: config.startup_timeout,
                    last,
                    output: self.output.lines(),
                })
            }
        }
    }

    /// The configured server name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The health-check URL the server answered on.
    pub fn healthcheck_url(&self) -> &str {
        &self.url
    }

    /// Whether the server process is still running.
    ///
    /// If it has exited, this reaps it and kills what is left of its
    /// process group.
    pub fn is_alive(&mut self) -> bool {
        match self.child_mut().try_wait() {
            Ok(None) => true,
            Ok(Some(_)) => {
                self.sweep_group();
                false
            }
            Err(_) => false,
        }
    }

    /// Waits for the server process to exit and returns its exit status.
    ///
    /// This does not ask it to stop (see [`shutdown`](ApiDaemon::shutdown)).
    /// Once it has exited, what is left of its process group is killed.
    /// Cancel-safe.
    ///
    /// # Errors
    ///
    /// [`ApiError::Wait`] if waiting fails.
    pub async fn wait(&mut self) -> Result<ExitStatus, ApiError> {
        let status = self
            .child_mut()
            .wait()
            .await
            .map_err(|source| self.wait_error(source))?;
        self.sweep_group();
        Ok(status)
    }

    /// The last lines the server printed, oldest first (both streams, in the order read:
    /// see [`OutputLog`]).
    ///
    /// Lines are read in the background, so a line printed a moment ago may
    /// not be here yet; after [`shutdown`](ApiDaemon::shutdown) an
    /// [`output_log`](ApiDaemon::output_log) handle holds everything.
    pub fn recent_output(&self) -> Vec<OutputLine> {
        self.output.lines()
    }

    /// A handle on the server's output log that outlives the daemon.
    pub fn output_log(&self) -> OutputLog {
        self.output.clone()
    }

    /// Stops the server: `SIGTERM` to its whole process group, up to the
    /// [grace period](ApiConfig::shutdown_grace) for the server to exit,
    /// then `SIGKILL` to the group. Once the server has exited, whatever is
    /// left of its group is killed too, so no worker survives.
    ///
    /// When this returns, the server has been reaped and its output has
    /// been read to the end (or for at most two seconds, if some process
    /// outside the group still holds its pipes).
    ///
    /// # Errors
    ///
    /// [`ApiError::Wait`] if waiting for the server fails.
    pub async fn shutdown(mut self) -> Result<ShutdownOutcome, ApiError> {
        let outcome = self.stop().await;
        if outcome.is_err() {
            // Could not tell whether the server exited: make sure it did.
            self.kill_group();
        }
        self.drain_output().await;
        // Everything is done: make `Drop` a no-op.
        self.child = None;
        match &outcome {
            Ok(outcome) => {
                tracing::info!(api = %self.name, pid = self.pid, ?outcome, "API server shut down")
            }
            Err(error) => {
                tracing::warn!(api = %self.name, pid = self.pid, %error, "API server shutdown failed")
            }
        }
        outcome
    }

    async fn stop(&mut self) -> Result<ShutdownOutcome, ApiError> {
        match self.child_mut().try_wait() {
            Ok(Some(status)) => {
                self.sweep_group();
                return Ok(ShutdownOutcome::AlreadyExited(status));
            }
            Ok(None) => {}
            Err(source) => return Err(self.wait_error(source)),
        }
        self.signal_group(libc::SIGTERM);
        let grace = self.shutdown_grace;
        let waited = tokio::time::timeout(grace, self.child_mut().wait()).await;
        match waited {
            Ok(status) => {
                let status = status.map_err(|source| self.wait_error(source))?;
                self.sweep_group();
                Ok(ShutdownOutcome::Terminated(status))
            }
            Err(_) => {
                tracing::warn!(api = %self.name, pid = self.pid, ?grace, "API server ignored SIGTERM; sending SIGKILL");
                self.kill_group();
                let status = self
                    .child_mut()
                    .wait()
                    .await
                    .map_err(|source| self.wait_error(source))?;
                self.group_swept = true;
                Ok(ShutdownOutcome::Killed(status))
            }
        }
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present until shutdown")
    }

    fn wait_error(&self, source: io::Error) -> ApiError {
        ApiError::Wait {
            name: self.name.to_string(),
            pid: self.pid,
            source,
        }
    }

    fn signal_group(&self, signal: libc::c_int) {
        // SAFETY: plain system call. The child called setpgid(0, 0), so its
        // pid is its group id; the group cannot be reused while the child is
        // unreaped or shortly after, when this is called.
        unsafe { libc::kill(-(self.pid as libc::pid_t), signal) };
    }

    fn kill_group(&mut self) {
        self.signal_group(libc::SIGKILL);
        if let Some(child) = self.child.as_mut() {
            // In case the server left its group.
            let _ = child.start_kill();
        }
    }

    /// Kills what is left of the group once the leader has exited.
    fn sweep_group(&mut self) {
        if !self.group_swept {
            self.group_swept = true;
            self.signal_group(libc::SIGKILL);
        }
    }

    async fn drain_output(&mut self) {
        let readers = std::mem::take(&mut self.readers);
        let all = async {
            for reader in readers {
                let _ = reader.await;
            }
        };
        if tokio::time::timeout(OUTPUT_DRAIN_TIMEOUT, all)
            .await
            .is_err()
        {
            tracing::debug!(api = %self.name, pid = self.pid, "output still open after the process group ended");
        }
    }
}

impl Drop for ApiDaemon {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        if !self.group_swept {
            tracing::debug!(api = %self.name, pid = self.pid, "API daemon dropped without shutdown; killing its process group");
            self.kill_group();
        }
    }
}

/// Sends health-check requests until one answers 200, recording in `last`
/// what each failed one got. Never returns otherwise: the caller bounds it.
async fn poll_until_ok(
    client: &reqwest::Client,
    url: &Url,
    interval: Duration,
    request_timeout: Duration,
    deadline: Instant,
    last: &mut HealthAttempt,
) {
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let cut_short = remaining < request_timeout;
        let timeout = request_timeout.min(remaining).max(Duration::from_millis(1));
        match client.get(url.clone()).timeout(timeout).send().await {
            Ok(response) if response.status() == StatusCode::OK => return,
            Ok(response) => *last = HealthAttempt::Status(response.status().as_u16()),
            // An attempt the start's deadline cut short says nothing of the server (it may
            // have been sent a moment before the end): the last whole attempt's answer stays.
            Err(error) if error.is_timeout() && cut_short => {}
            // Connected (or not) but no answer in time: the server is up and silent.
            Err(error) if error.is_timeout() => *last = HealthAttempt::NoResponse,
            Err(error) => *last = HealthAttempt::Error(error_chain(&error)),
        }
        tracing::trace!(url = %url, last = %last, "health check not passing yet");
        tokio::time::sleep(interval).await;
    }
}
