//! [`ApiConfig`]: what to launch and how to judge and stop it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Default for [`ApiConfig::startup_timeout`]: 30 seconds.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`ApiConfig::poll_interval`]: 100 milliseconds.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Default for [`ApiConfig::request_timeout`]: 2 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for [`ApiConfig::shutdown_grace`]: 10 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default for [`ApiConfig::output_capacity`]: the last 200 lines.
pub const DEFAULT_OUTPUT_CAPACITY: usize = 200;

/// How to launch an API server, where to check its health, and how long to
/// wait at start and at shutdown.
///
/// Build one with [`ApiConfig::new`] (program and arguments, no shell) or
/// [`ApiConfig::shell`] (a `/bin/sh -c` script), then adjust it with the
/// builder-style setters:
///
/// ```
/// use std::time::Duration;
/// use conclib_apid::ApiConfig;
///
/// let config = ApiConfig::new("users-api", "./target/debug/users-api", "http://127.0.0.1:8080/healthz")
///     .args(["--port", "8080"])
///     .env("RUST_LOG", "info")
///     .startup_timeout(Duration::from_secs(10))
///     .shutdown_grace(Duration::from_secs(3));
/// assert_eq!(config.name, "users-api");
/// assert_eq!(config.args.len(), 2);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// A short name for the server, used in log fields and error messages.
    pub name: String,
    /// The program to run: a path, or a bare name looked up in `PATH`.
    pub command: OsString,
    /// The program's arguments, passed as they are (no shell involved).
    pub args: Vec<OsString>,
    /// Environment variables set for the child, on top of the inherited ones.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory of the child; the parent's when `None`.
    pub cwd: Option<PathBuf>,
    /// The URL polled with HTTP `GET` until it answers `200 OK`.
    pub healthcheck_url: String,
    /// How long the server has to answer `200` before start is given up.
    pub startup_timeout: Duration,
    /// The pause between two health-check requests.
    pub poll_interval: Duration,
    /// The longest one health-check request may take (it is also cut at the
    /// start deadline).
    pub request_timeout: Duration,
    /// How long [`ApiDaemon::shutdown`](crate::ApiDaemon::shutdown) waits
    /// after `SIGTERM` before it sends `SIGKILL`.
    pub shutdown_grace: Duration,
    /// How many of the child's most recent output lines are kept.
    pub output_capacity: usize,
}

impl ApiConfig {
    /// A configuration that runs `command` directly (no shell) and polls
    /// `healthcheck_url`, with the default timeouts.
    pub fn new(
        name: impl Into<String>,
        command: impl Into<OsString>,
        healthcheck_url: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            command: command.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            healthcheck_url: healthcheck_url.into(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            output_capacity: DEFAULT_OUTPUT_CAPACITY,
        }
    }

    /// A configuration that runs `script` with `/bin/sh -c`.
    ///
    /// Use this only when shell features (pipes, expansion, `&&`) are
    /// wanted; [`ApiConfig::new`] avoids quoting problems. The whole process
    /// group is signalled at shutdown, so the shell and what it started both
    /// go.
    pub fn shell(
        name: impl Into<String>,
        script: impl Into<OsString>,
        healthcheck_url: impl Into<String>,
    ) -> Self {
        Self::new(name, "/bin/sh", healthcheck_url).args([OsString::from("-c"), script.into()])
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable for the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets several environment variables for the child.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the child's working directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets [`ApiConfig::startup_timeout`].
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Sets [`ApiConfig::poll_interval`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`ApiConfig::request_timeout`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`ApiConfig::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets [`ApiConfig::output_capacity`] (at least one line is kept).
    pub fn output_capacity(mut self, lines: usize) -> Self {
        self.output_capacity = lines;
        self
    }
}
