//! Starting and stopping the demo's whole setup: a private Redis, an actor system serving the
//! counter and key-value actors through the Redis proxy, and several web API processes.
//!
//! Shared by the demo binary and the end-to-end tests.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use conclib::ActorSystem;
use conclib::apid::{ApiConfig, ApiDaemon, ApiError, ShutdownOutcome, start_api};
use conclib::redis::{ProxyConfig, ProxyHandle, daemon::RedisDaemon, start_proxy, start_redis};

use crate::BoxError;
use crate::actors::{Counter, HASHERS_URN, Hasher, KvStore, Tracker, counter_urn};

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The executable run as `PROGRAM web --port N ...` for each web process: the demo binary.
    pub web_program: PathBuf,
    /// How many web processes.
    pub web_processes: usize,
    /// The counters to spawn (names; each at `counter:{name}`).
    pub counters: Vec<String>,
    /// The Redis namespace (default: unique to this process).
    pub namespace: String,
    /// The web processes' ask timeout (`CONCLIB_REDIS_TIMEOUT_MS`).
    pub ask_timeout: Duration,
    /// Extra environment variables for the web processes.
    pub web_env: Vec<(OsString, OsString)>,
    /// The size of a pool of [`Hasher`] process actors at [`HASHERS_URN`] (none when 0:
    /// a program that runs one must call `conclib::process::init` first in `main`).
    pub hashers: usize,
}

impl ClusterOptions {
    /// `web_processes` processes of `web_program`, one counter `hits`, a 5 s ask timeout.
    pub fn new(web_program: impl Into<PathBuf>, web_processes: usize) -> Self {
        ClusterOptions {
            web_program: web_program.into(),
            web_processes,
            counters: vec!["hits".to_owned()],
            namespace: format!("demo-{}", std::process::id()),
            ask_timeout: Duration::from_secs(5),
            web_env: Vec::new(),
            hashers: 0,
        }
    }
}

/// One web API process.
#[derive(Debug)]
pub struct WebProcess {
    /// Its name (`web-1`, ...).
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `http://127.0.0.1:{port}`.
    pub base_url: String,
    /// The running process; `None` once stopped.
    pub daemon: Option<ApiDaemon>,
}

/// Everything the demo runs; stop it with [`Cluster::shutdown`].
///
/// The parts are public so that tests can stop one on purpose (a web process, the proxy,
/// Redis) and see what the others do.
pub struct Cluster {
    /// The private Redis; `None` once stopped.
    pub redis: Option<RedisDaemon>,
    /// Its process id.
    pub redis_pid: Option<u32>,
    /// The proxy configuration (URL and namespace) everything uses.
    pub config: ProxyConfig,
    /// The actor system holding the counters and the key-value store.
    pub system: ActorSystem,
    /// The proxy serving the system's actors through Redis; `None` once stopped.
    pub proxy: Option<ProxyHandle>,
    /// The web processes, in start order.
    pub webs: Vec<WebProcess>,
    /// How long starting took.
    pub startup: Duration,
}

/// What [`Cluster::shutdown`] did, part by part.
#[derive(Debug)]
pub struct ShutdownReport {
    /// Each web process that was still running: its name and how it ended.
    pub webs: Vec<(String, Result<ShutdownOutcome, String>)>,
    /// The proxy's shutdown, if it was running.
    pub proxy: Option<Result<(), String>>,
    /// The actor system's shutdown.
    pub system: Result<(), String>,
    /// Redis's shutdown, if it was running.
    pub redis: Option<Result<(), String>>,
    /// Process ids started by the cluster that still exist (should be empty).
    pub leftover_pids: Vec<u32>,
}

impl ShutdownReport {
    /// Whether every part stopped without error and no process is left.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.webs.iter().all(|(_, r)| r.is_ok())
            && self.proxy.as_ref().is_none_or(Result::is_ok)
            && self.system.is_ok()
            && self.redis.as_ref().is_none_or(Result::is_ok)
            && self.leftover_pids.is_empty()
    }
}

impl Cluster {
    /// Starts Redis, the actor system with its counters and key-value store, the proxy, and
    /// the web processes (concurrently; each has answered `/healthz` when this returns).
    /// On error, whatever was started is stopped.
    ///
    /// # Errors
    /// Any part failing to start.
    pub async fn start(options: &ClusterOptions) -> Result<Cluster, BoxError> {
        let started = Instant::now();
        // Snapshots every second: the live view updates that often.
        let base = ProxyConfig::default()
            .with_namespace(options.namespace.clone())
            .with_snapshot_interval(Some(Duration::from_secs(1)));
        let redis = start_redis(&base).await?;
        let config = redis.config(&base);
        let system = ActorSystem::new(format!("{}-backend", options.namespace));
        let mut cluster = Cluster {
            redis_pid: redis.pid(),
            redis: Some(redis),
            config,
            system,
            proxy: None,
            webs: Vec::new(),
            startup: Duration::ZERO,
        };
        match cluster.start_parts(options).await {
            Ok(()) => {
                cluster.startup = started.elapsed();
                Ok(cluster)
            }
            Err(error) => {
                cluster.shutdown().await;
                Err(error)
            }
        }
    }

    async fn start_parts(&mut self, options: &ClusterOptions) -> Result<(), BoxError> {
        for name in &options.counters {
            self.system
                .build(Counter::default())
                .urn(counter_urn(name))
                .spawn()
                .await?;
        }
        self.system.spawn(KvStore::default()).await?;
        // A small supervised tree: the tracker and its shards.
        self.system.spawn(Tracker::new(3)).await?;
        if options.hashers > 0 {
            self.system
                .pool(|| conclib::process::build(Hasher).into_actor())
                .size(options.hashers)
                .routing(conclib::Routing::LeastLoaded)
                .urn(HASHERS_URN)
                .spawn()
                .await?;
        }
        self.proxy = Some(start_proxy(&self.system, &self.config).await?);

        let mut starting = tokio::task::JoinSet::new();
        for i in 1..=options.web_processes {
            let name = format!("web-{i}");
            let options = options.clone();
            let config = self.config.clone();
            starting.spawn(async move { (i, start_web(&name, &options, &config).await) });
        }
        let mut webs = Vec::new();
        let mut first_error = None;
        while let Some(joined) = starting.join_next().await {
            match joined {
                Ok((i, Ok(web))) => webs.push((i, web)),
                Ok((_, Err(error))) => first_error = first_error.or(Some(error)),
                Err(join) => first_error = first_error.or(Some(join.into())),
            }
        }
        webs.sort_by_key(|(i, _)| *i);
        self.webs = webs.into_iter().map(|(_, web)| web).collect();
        first_error.map_or(Ok(()), Err)
    }

    /// The web processes' base URLs, in order.
    #[must_use]
    pub fn base_urls(&self) -> Vec<String> {
        self.webs.iter().map(|w| w.base_url.clone()).collect()
    }

    /// Every process id the cluster started: Redis and the web processes.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        self.redis_pid
            .into_iter()
            .chain(self.webs.iter().map(|w| w.pid))
            .collect()
    }

    /// Stops the proxy (clients' asks then time out: the URNs stay registered).
    ///
    /// # Errors
    /// The proxy could not tell Redis it stopped.
    pub async fn stop_proxy(&mut self) -> Result<(), BoxError> {
        match self.proxy.take() {
            Some(proxy) => Ok(proxy.shutdown().await?),
            None => Ok(()),
        }
    }

    /// Stops Redis.
    ///
    /// # Errors
    /// The server could not be signalled or waited for.
    pub async fn stop_redis(&mut self) -> Result<(), BoxError> {
        match self.redis.take() {
            Some(redis) => Ok(tokio::task::spawn_blocking(move || redis.shutdown()).await??),
            None => Ok(()),
        }
    }

    /// Stops everything, in order: the web processes (SIGTERM, then SIGKILL after the grace
    /// period), the proxy, the actor system, Redis; then checks that no process it started
    /// is left.
    pub async fn shutdown(mut self) -> ShutdownReport {
        let mut report = ShutdownReport {
            webs: Vec::new(),
            proxy: None,
            system: Ok(()),
            redis: None,
            leftover_pids: Vec::new(),
        };
        let mut stopping = tokio::task::JoinSet::new();
        for web in &mut self.webs {
            if let Some(daemon) = web.daemon.take() {
                let name = web.name.clone();
                stopping.spawn(async move {
                    (name, daemon.shutdown().await.map_err(|e| e.to_string()))
                });
            }
        }
        while let Some(joined) = stopping.join_next().await {
            if let Ok(result) = joined {
                report.webs.push(result);
            }
        }
        report.webs.sort_by(|a, b| a.0.cmp(&b.0));
        if self.proxy.is_some() {
            report.proxy = Some(self.stop_proxy().await.map_err(|e| e.to_string()));
        }
        report.system = self
            .system
            .shutdown(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string());
        if self.redis.is_some() {
            report.redis = Some(self.stop_redis().await.map_err(|e| e.to_string()));
        }
        report.leftover_pids = self
            .pids()
            .into_iter()
            .filter(|&pid| !process_gone(pid))
            .collect();
        report
    }
}

/// Starts one web process on a free port, retrying on another port if the port was taken
/// between choosing it and the server binding it.
async fn start_web(
    name: &str,
    options: &ClusterOptions,
    config: &ProxyConfig,
) -> Result<WebProcess, BoxError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port()?;
        let base_url = format!("http://127.0.0.1:{port}");
        let api = ApiConfig::new(name, &options.web_program, format!("{base_url}/healthz"))
            .args(["web", "--port", &port.to_string(), "--name", name])
            .env("CONCLIB_REDIS_URL", &config.url)
            .env("CONCLIB_REDIS_NAMESPACE", &config.namespace)
            .env(
                "CONCLIB_REDIS_TIMEOUT_MS",
                options.ask_timeout.as_millis().to_string(),
            )
            .envs(options.web_env.iter().cloned())
            .startup_timeout(Duration::from_secs(20))
            .poll_interval(Duration::from_millis(20))
            .shutdown_grace(Duration::from_secs(5));
        match start_api(api).await {
            Ok(daemon) => {
                return Ok(WebProcess {
                    name: name.to_owned(),
                    pid: daemon.pid(),
                    port,
                    base_url,
                    daemon: Some(daemon),
                });
            }
            Err(error @ ApiError::EarlyExit { .. }) if attempt < 3 => {
                tracing::debug!(%name, %error, "web process exited at start; retrying on another port");
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Whether the process `pid` is gone: it does not exist, or it is a zombie (exited, not
/// yet reaped).
#[must_use]
pub fn process_gone(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return true;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let exists = unsafe { libc::kill(pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
    if !exists {
        return true;
    }
    // `/proc/<pid>/stat`: "pid (comm) S ...", the state after the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state == 'Z' || state == 'X')
}
