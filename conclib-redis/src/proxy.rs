//! [`start_proxy`]: serves an actor system's exposed actors to other processes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclib_core::{ActorSystem, AskError, DynActorRef, ErasedResult, RemoteMessage};
use fred::bytes::Bytes;
use fred::prelude::*;
use fred::types::ClientUnblockFlag;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::random_token;
use crate::codec::{Codec, builtin_codec};
use crate::config::{ProxyConfig, check_system_id};
use crate::conn::{self, as_bytes, bytes, keyed, keyed_at, owned, s};
use crate::error::{ServeError, is_connection_error};
use crate::protocol::{
    self, ANSWER_SCRIPT, CLAIM_SCRIPT, CONSUMER_GROUP, Keys, PROTOCOL_VERSION, PUSH_SCRIPT,
    RELEASE_SCRIPT, RESET_SCRIPT, Status, field,
};
use crate::unacked::{EntryId, Unacked};

/// Counters of what a proxy did since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Requests read from the request stream.
    pub received: u64,
    /// Requests finished and acknowledged: answered (whatever the status), told, refused or
    /// dropped as expired.
    pub completed: u64,
    /// Requests dropped unprocessed because their deadline had passed.
    pub expired: u64,
    /// Requests refused as malformed, unknown, too large or undecodable.
    pub rejected: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    completed: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
}

/// A Lua script with its SHA1, run with EVALSHA and loaded with EVAL when Redis lost it.
struct Script {
    text: &'static str,
    sha: String,
}

impl Script {
    fn new(text: &'static str) -> Self {
        Script {
            text,
            sha: protocol::sha1_hex(text),
        }
    }
}

/// URNs this proxy knows about.
#[derive(Default)]
struct Registry {
    /// Live local URNs, and whether the actor exposes any message.
    local: HashMap<String, bool>,
    /// URNs whose ownership key names this system.
    owned: HashSet<String>,
    /// URNs another system owns: URN → that system's id.
    conflicts: HashMap<String, String>,
}

struct Shared {
    system: ActorSystem,
    config: ProxyConfig,
    system_id: String,
    keys: Keys,
    requests_key: String,
    lease_key: String,
    reply_prefix: String,
    token: String,
    cmd: Client,
    reader: Client,
    codecs: Vec<Arc<dyn Codec>>,
    /// Redis's clock minus ours, in ms.
    clock_offset_ms: AtomicI64,
    registry: Mutex<Registry>,
    scan_lock: tokio::sync::Mutex<()>,
    in_flight: Arc<Semaphore>,
    /// Stream entries read and not yet acknowledged (re-reading the pending list skips
    /// them; the stream is trimmed below them).
    unacked: Mutex<Unacked>,
    /// An answer was given up on: the read loop re-reads the pending list to handle it again.
    reread: AtomicBool,
    counters: Counters,
    claim: Script,
    release: Script,
    push: Script,
    answer: Script,
    serving: AtomicBool,
    stop: watch::Sender<bool>,
    /// Until when, by this process's monotonic clock, the leases renewed last are surely
    /// still held (their TTL, less a margin for clock drift, from before the renewal).
    fresh_until: Mutex<std::time::Instant>,
    /// One lease re-check at a time.
    recheck: tokio::sync::Mutex<()>,
    /// The request stream holds ids far in the future (a hostile client): reset it once
    /// drained.
    poisoned: AtomicBool,
    reset: Script,
}

/// A running proxy; from [`start_proxy`].
///
/// [`shutdown`](Self::shutdown) stops it gracefully. Dropping the handle without it aborts
/// the proxy at once: requests it had taken and not answered are handled again by the next
/// proxy of the same system id (they stay in Redis until acknowledged).
pub struct ProxyHandle {
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

impl fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("system_id", &self.shared.system_id)
            .field("namespace", &self.shared.config.namespace)
            .finish_non_exhaustive()
    }
}

/// Makes the actors of `system` that expose messages ([`Actor::REMOTE`](conclib_core::Actor::REMOTE))
/// reachable through Redis by [`ProxyClient`](crate::ProxyClient)s, and returns once the
/// actors alive now are reachable.
///
/// The proxy serves the system under [`ProxyConfig::system_id`] (default: the system's name).
/// It claims each exposed actor's URN in Redis, and publishes actors spawned or stopped later
/// as soon as the system reports a URN change (also every [`ProxyConfig::scan_interval`], and
/// at once with [`ProxyHandle::refresh`]). A URN
/// another live system already owns is not served here: it is logged as an error and listed
/// by [`ProxyHandle::conflicts`], and taken over only if the other system's ownership lapses.
/// Requests are looked up by URN when they arrive, so a restarted actor is served at once.
///
/// # Errors
/// [`ServeError::Config`], [`ServeError::Unavailable`] if Redis cannot be reached,
/// [`ServeError::SystemInUse`] if another live proxy serves the same system id.
pub async fn start_proxy(
    system: &ActorSystem,
    config: &ProxyConfig,
) -> Result<ProxyHandle, ServeError> {
    let system_id = config
        .system_id
        .clone()
        .unwrap_or_else(|| system.name().to_owned());
    check_system_id(&system_id).map_err(ServeError::Config)?;
    let block = Duration::from_secs(1);
    let cmd = config
        .builder::<()>(config.command_timeout)
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let cmd = cmd.build().map_err(|e| ServeError::Config(e.to_string()))?;
    let reader = config
        .builder::<()>(config.command_timeout + block)
        .map_err(|e| ServeError::Config(e.to_string()))?
        .build()
        .map_err(|e| ServeError::Config(e.to_string()))?;
    let connect = async {
        cmd.init().await?;
        reader.init().await?;
        Ok::<_, fred::error::Error>(())
    };
    match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok(())) => {}
        outcome => {
            let _ = cmd.quit().await;
            let _ = reader.quit().await;
            return Err(ServeError::Unavailable(match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => format!("could not connect within {:?}", config.connect_timeout),
            }));
        }
    }
    let keys = Keys::new(&config.namespace);
    let mut codecs: Vec<Arc<dyn Codec>> = vec![config.codec.clone()];
    for name in ["bincode", "msgpack"] {
        if name != config.codec.name()
            && let Some(c) = builtin_codec(name.as_bytes())
        {
            codecs.push(c);
        }
    }
    let (stop, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        system: system.clone(),
        requests_key: keys.requests(&system_id),
        lease_key: keys.lease(&system_id),
        reply_prefix: keys.reply_prefix(),
        keys,
        token: lease_token(),
        system_id,
        config: config.clone(),
        cmd,
        reader,
        codecs,
        clock_offset_ms: AtomicI64::new(0),
        registry: Mutex::new(Registry::default()),
        scan_lock: tokio::sync::Mutex::new(()),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
        unacked: Mutex::new(Unacked::default()),
        reread: AtomicBool::new(false),
        counters: Counters::default(),
        claim: Script::new(CLAIM_SCRIPT),
        release: Script::new(RELEASE_SCRIPT),
        push: Script::new(PUSH_SCRIPT),
        answer: Script::new(ANSWER_SCRIPT),
        serving: AtomicBool::new(true),
        stop,
        fresh_until: Mutex::new(std::time::Instant::now()),
        recheck: tokio::sync::Mutex::new(()),
        poisoned: AtomicBool::new(false),
        reset: Script::new(RESET_SCRIPT),
    });
    let started = async {
        let since = std::time::Instant::now();
        shared.acquire_lease().await?;
        shared.sync_clock().await;
        shared
            .ensure_group()
            .await
            .map_err(|e| ServeError::from(crate::error::redis_error(&e)))?;
        shared.renew_queue().await;
        shared.scan().await;
        shared.mark_fresh(since);
        Ok::<_, ServeError>(())
    };
    if let Err(e) = started.await {
        let _ = shared.cmd.quit().await;
        let _ = shared.reader.quit().await;
        return Err(e);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(shared.clone(), rx));
    let reader = tokio::spawn(read_loop(shared.clone(), tx, block));
    let heartbeat = tokio::spawn(heartbeat_loop(shared.clone()));
    tracing::info!(
        system = %shared.system_id,
        namespace = %shared.config.namespace,
        urns = shared.registry.lock().unwrap_or_else(|e| e.into_inner()).owned.len(),
        "Redis proxy started"
    );
    Ok(ProxyHandle {
        shared,
        reader: Some(reader),
        writer: Some(writer),
        heartbeat: Some(heartbeat),
    })
}

impl ProxyHandle {
    /// The system id served.
    #[must_use]
    pub fn system_id(&self) -> &str {
        &self.shared.system_id
    }

    /// The URNs this proxy owns in Redis (and so serves), sorted.
    #[must_use]
    pub fn served_urns(&self) -> Vec<String> {
        let mut urns: Vec<String> = self.shared.registry().owned.iter().cloned().collect();
        urns.sort();
        urns
    }

    /// Local URNs another system owns, with that system's id: this proxy refuses their
    /// requests ([`ProxyError::UnknownUrn`](crate::ProxyError::UnknownUrn) for clients routed here by
    /// stale information) until the other system releases them.
    #[must_use]
    pub fn conflicts(&self) -> Vec<(String, String)> {
        let mut list: Vec<(String, String)> = self
            .shared
            .registry()
            .conflicts
            .iter()
            .map(|(u, o)| (u.clone(), o.clone()))
            .collect();
        list.sort();
        list
    }

    /// Whether the proxy still reads requests (false after shutdown began, or after another
    /// instance took the system's lease).
    #[must_use]
    pub fn is_serving(&self) -> bool {
        self.shared.serving.load(Ordering::Acquire)
    }

    /// What the proxy did so far.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            received: c.received.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
        }
    }

    /// Registers actors spawned (and releases those stopped) since the last scan, now rather
    /// than at the next [`ProxyConfig::scan_interval`].
    pub async fn refresh(&self) {
        self.shared.scan().await;
    }

    /// Stops taking requests, finishes the ones taken (their replies are written and
    /// acknowledged), releases the system's lease, and returns. Requests still queued stay in
    /// Redis for the next proxy of this system id. URN ownerships lapse after
    /// [`ProxyConfig::lease_ttl`] unless [`ProxyConfig::release_on_shutdown`] is set.
    ///
    /// # Errors
    /// [`ServeError::Unavailable`] if Redis could not be told (the lease then lapses by itself).
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        let shared = self.shared.clone();
        shared.serving.store(false, Ordering::Release);
        let _ = shared.stop.send_replace(true);
        if let Some(reader) = self.reader.take() {
            let _ = reader.await;
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.abort();
            let _ = heartbeat.await;
        }
        shared.trim_exact().await;
        let mut result = Ok(());
        if shared.config.release_on_shutdown {
            let urns: Vec<String> = shared.registry().owned.drain().collect();
            let calls = urns
                .iter()
                .map(|u| (shared.keys.urn(u), vec![owned(shared.system_id.clone())]))
                .collect();
            for r in shared.eval_many(&shared.release, calls).await {
                if let Err(e) = r {
                    result = Err(ServeError::Unavailable(e.to_string()));
                }
            }
        }
        let release = shared
            .eval_many(
                &shared.release,
                vec![(shared.lease_key.clone(), vec![owned(shared.token.clone())])],
            )
            .await;
        if let Some(Err(e)) = release.into_iter().next() {
            result = Err(ServeError::Unavailable(e.to_string()));
        }
        let _ = shared.cmd.quit().await;
        let _ = shared.reader.quit().await;
        tracing::info!(system = %shared.system_id, "Redis proxy stopped");
        result
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        for task in [
            self.reader.take(),
            self.writer.take(),
            self.heartbeat.take(),
        ]
        .into_iter()
        .flatten()
        {
            task.abort();
        }
        if self.shared.serving.swap(false, Ordering::AcqRel) {
            let shared = self.shared.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = shared.cmd.quit().await;
                    let _ = shared.reader.quit().await;
                });
            }
        }
    }
}

/// The lease value of one proxy instance: a random token, then where it runs.
fn lease_token() -> String {
    format!("{}@{}:{}", random_token(), this_host(), std::process::id())
}

/// The host and pid a lease value names.
fn lease_holder(token: &str) -> Option<(&str, u32)> {
    let (_, at) = token.split_once('@')?;
    let (host, pid) = at.rsplit_once(':')?;
    Some((host, pid.parse().ok()?))
}

fn this_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a process with this pid exists on this host (a zombie counts: not reaped yet).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unacked(&self) -> std::sync::MutexGuard<'_, Unacked> {
        self.unacked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Trims the request stream exactly below the oldest entry still pending (the answer
    /// script trims only whole stream nodes, which is cheaper but leaves up to a node).
    async fn trim_exact(&self) {
        let Some(below) = self.sane_trim(self.unacked().trim_below(&[])) else {
            return;
        };
        let trimmed = conn::call(
            &self.cmd,
            keyed("XTRIM"),
            vec![
                owned(self.requests_key.clone()),
                s("MINID"),
                owned(below.to_string()),
            ],
        )
        .await;
        if let Err(e) = trimmed {
            tracing::debug!(error = %e, "could not trim the request stream");
        }
    }

    /// Redis's clock now, as far as we can tell, in ms.
    fn redis_now_ms(&self) -> i64 {
        now_ms() + self.clock_offset_ms.load(Ordering::Relaxed)
    }

    async fn sync_clock(&self) {
        let before = now_ms();
        let Ok(Value::Array(parts)) = conn::call(&self.cmd, conn::unkeyed("TIME"), vec![]).await
        else {
            return;
        };
        let after = now_ms();
        let num =
            |v: &Value| as_bytes(v).and_then(|b| std::str::from_utf8(b).ok()?.parse::<i64>().ok());
        if let [secs, micros] = &parts[..]
            && let (Some(secs), Some(micros)) = (num(secs), num(micros))
        {
            let redis = secs * 1000 + micros / 1000;
            self.clock_offset_ms
                .store(redis - (before + after) / 2, Ordering::Relaxed);
        }
    }

    /// Takes the system's instance lease, waiting up to one lease time for a crashed
    /// predecessor's lease to lapse.
    async fn acquire_lease(&self) -> Result<(), ServeError> {
        let deadline = tokio::time::Instant::now() + self.config.lease_ttl + Duration::from_secs(1);
        loop {
            let set = conn::call(
                &self.cmd,
                keyed("SET"),
                vec![
                    owned(self.lease_key.clone()),
                    owned(self.token.clone()),
                    s("NX"),
                    s("PX"),
                    Value::Integer(self.config.lease_ttl.as_millis() as i64),
                ],
            )
            .await
            .map_err(|e| ServeError::from(crate::error::redis_error(&e)))?;
            if !set.is_null() {
                return Ok(());
            }
            if self.take_over_dead_holder().await {
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ServeError::SystemInUse {
                    system_id: self.system_id.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Frees the system's lease if its holder provably died: it ran on this host (same host
    /// name) under a pid that no longer exists. A crashed proxy restarted on the same host
    /// then serves at once instead of after a whole lease.
    async fn take_over_dead_holder(&self) -> bool {
        let Ok(holder) =
            conn::call(&self.cmd, keyed("GET"), vec![owned(self.lease_key.clone())]).await
        else {
            return false;
        };
        let Some(holder) = as_bytes(&holder).map(|b| String::from_utf8_lossy(b).into_owned())
        else {
            return false;
        };
        let Some((host, pid)) = lease_holder(&holder) else {
            return false;
        };
        if host != this_host() || pid == std::process::id() || process_exists(pid) {
            return false;
        }
        let released = self
            .eval_many(
                &self.release,
                vec![(self.lease_key.clone(), vec![owned(holder.clone())])],
            )
            .await;
        let taken = matches!(released.first(), Some(Ok(Value::Integer(1))));
        if taken {
            tracing::info!(system = %self.system_id, pid, "took over the lease of a dead proxy on this host");
        }
        taken
    }

    /// Creates the request stream and its consumer group, reading from the stream's start
    /// (so requests queued before the group existed are served).
    async fn ensure_group(&self) -> Result<(), fred::error::Error> {
        let created = conn::call(
            &self.cmd,
            keyed_at("XGROUP", 1, false),
            vec![
                s("CREATE"),
                owned(self.requests_key.clone()),
                s(CONSUMER_GROUP),
                s("0"),
                s("MKSTREAM"),
            ],
        )
        .await;
        match created {
            Err(e) if !conn::error_code_is(&e, "BUSYGROUP") => Err(e),
            _ => Ok(()),
        }
    }

    async fn renew_queue(&self) {
        let _ = conn::call(
            &self.cmd,
            keyed("PEXPIRE"),
            vec![
                owned(self.requests_key.clone()),
                Value::Integer(self.config.queue_ttl.as_millis() as i64),
            ],
        )
        .await;
    }

    /// Runs one script per (key, args) in a pipeline; re-runs with EVAL the calls that met
    /// NOSCRIPT (Redis restarted or flushed its script cache).
    async fn eval_many(
        &self,
        script: &Script,
        calls: Vec<(String, Vec<Value>)>,
    ) -> Vec<Result<Value, fred::error::Error>> {
        if calls.is_empty() {
            return Vec::new();
        }
        let mut results = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(1000) {
            let pipeline = self.cmd.pipeline();
            for (key, args) in chunk {
                let mut a = Vec::with_capacity(args.len() + 3);
                a.push(owned(script.sha.clone()));
                a.push(Value::Integer(1));
                a.push(owned(key.clone()));
                a.extend(args.iter().cloned());
                let _ = conn::call(&pipeline, keyed_at("EVALSHA", 2, false), a).await;
            }
            let mut out = pipeline.try_all::<Value>().await;
            for (i, (key, args)) in chunk.iter().enumerate() {
                if let Some(Err(e)) = out.get(i)
                    && conn::error_code_is(e, "NOSCRIPT")
                {
                    let mut a = Vec::with_capacity(args.len() + 3);
                    a.push(s(script.text));
                    a.push(Value::Integer(1));
                    a.push(owned(key.clone()));
                    a.extend(args.iter().cloned());
                    out[i] = conn::call(&self.cmd, keyed_at("EVAL", 2, false), a).await;
                }
            }
            results.extend(out);
        }
        results
    }

    /// Looks at the system's actors: claims the URNs of new exposed actors, releases those
    /// of stopped ones.
    async fn scan(&self) {
        let _guard = self.scan_lock.lock().await;
        let mut now: HashMap<String, bool> = HashMap::new();
        let known: HashMap<String, bool> = self.registry().local.clone();
        for actor in self.system.named_actors() {
            let Some(urn) = actor.urn() else { continue };
            if !actor.is_alive() {
                continue;
            }
            let urn = urn.as_str().to_owned();
            let exposes = match known.get(&urn) {
                Some(e) => *e,
                None => !actor.remote_messages().is_empty(),
            };
            now.insert(urn, exposes);
        }
        let added: Vec<String> = now
            .iter()
            .filter(|(u, e)| **e && !known.contains_key(*u))
            .map(|(u, _)| u.clone())
            .collect();
        let removed: Vec<String> = {
            let mut reg = self.registry();
            let removed: Vec<String> = reg
                .local
                .keys()
                .filter(|u| !now.contains_key(*u))
                .cloned()
                .collect();
            for u in &removed {
                reg.conflicts.remove(u);
            }
            reg.local = now;
            removed
                .into_iter()
                .filter(|u| reg.owned.remove(u))
                .collect()
        };
        if !removed.is_empty() {
            let calls = removed
                .iter()
                .map(|u| (self.keys.urn(u), vec![owned(self.system_id.clone())]))
                .collect();
            self.eval_many(&self.release, calls).await;
            tracing::debug!(count = removed.len(), "released URNs of stopped actors");
        }
        let _ = self.claim_urns(added).await;
    }

    /// Claims (or renews) these URNs and records which we own and which another system does.
    /// `false` if Redis did not answer for some of them.
    async fn claim_urns(&self, urns: Vec<String>) -> bool {
        if urns.is_empty() {
            return true;
        }
        let ttl = Value::Integer(self.config.lease_ttl.as_millis() as i64);
        let calls = urns
            .iter()
            .map(|u| {
                (
                    self.keys.urn(u),
                    vec![owned(self.system_id.clone()), ttl.clone()],
                )
            })
            .collect();
        let results = self.eval_many(&self.claim, calls).await;
        let mut answered = true;
        let mut reg = self.registry();
        for (urn, result) in urns.into_iter().zip(results) {
            if !reg.local.contains_key(&urn) {
                continue; // stopped meanwhile; the next scan releases it
            }
            match result {
                Ok(Value::Integer(1)) => {
                    if reg.conflicts.remove(&urn).is_some() {
                        tracing::info!(%urn, "took over a URN whose previous owner's lease lapsed");
                    }
                    reg.owned.insert(urn);
                }
                Ok(other) => {
                    let owner = as_bytes(&other)
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_else(|| format!("{other:?}"));
                    let was_owned = reg.owned.remove(&urn);
                    let known = reg.conflicts.insert(urn.clone(), owner.clone());
                    if known.as_deref() != Some(owner.as_str()) {
                        tracing::error!(
                            %urn,
                            %owner,
                            system = %self.system_id,
                            was_owned,
                            "URN is served by another system; this proxy refuses it (rename one of the actors)"
                        );
                    }
                }
                Err(e) => {
                    answered = false;
                    tracing::warn!(%urn, error = %e, "could not claim URN; will retry");
                }
            }
        }
        answered
    }

    /// Whether the leases are surely still held (see `fresh_until`).
    fn lease_fresh(&self) -> bool {
        std::time::Instant::now() < *self.fresh_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records leases renewed by commands sent after `since`.
    fn mark_fresh(&self, since: std::time::Instant) {
        let ttl = self.config.lease_ttl;
        // Redis counts the TTL from when it ran the command, after `since`; the margin
        // covers the two clocks running at slightly different rates.
        let margin = (ttl / 10).max(Duration::from_millis(50));
        *self.fresh_until.lock().unwrap_or_else(|e| e.into_inner()) =
            since + ttl.saturating_sub(margin);
    }

    /// Renews the leases now unless another task just did (a request met stale leases:
    /// this process was paused, or Redis was unreachable).
    async fn recheck_lease(&self) {
        let _one_at_a_time = self.recheck.lock().await;
        if !self.lease_fresh() {
            self.renew().await;
        }
    }

    /// Renews the instance lease, the URN ownerships and the queue's TTL, and trims the queue.
    async fn renew(&self) {
        let since = std::time::Instant::now();
        let ttl = Value::Integer(self.config.lease_ttl.as_millis() as i64);
        let lease = self
            .eval_many(
                &self.claim,
                vec![(self.lease_key.clone(), vec![owned(self.token.clone()), ttl])],
            )
            .await;
        match lease.into_iter().next() {
            Some(Ok(Value::Integer(1))) => {}
            Some(Ok(other)) => {
                tracing::error!(system = %self.system_id, holder = ?other, "another proxy instance took this system's lease; this one stops reading");
                self.serving.store(false, Ordering::Release);
                let _ = self.stop.send_replace(true);
                return;
            }
            _ => return, // Redis unreachable: try again next time
        }
        let urns: Vec<String> = {
            let reg = self.registry();
            reg.owned
                .iter()
                .chain(reg.conflicts.keys())
                .cloned()
                .collect()
        };
        let _guard = self.scan_lock.lock().await;
        if self.claim_urns(urns).await {
            self.mark_fresh(since);
        }
        self.renew_queue().await;
        self.trim_exact().await;
        self.sync_clock().await;
        self.reset_poisoned().await;
    }

    /// Replaces a request stream whose ids run ahead of the clock (a client added an entry
    /// with an id in the future) by an empty one, once all its entries were handled.
    async fn reset_poisoned(&self) {
        if !self.poisoned.load(Ordering::Acquire) {
            return;
        }
        let args = vec![
            s(CONSUMER_GROUP),
            Value::Integer(FUTURE_ID_TOLERANCE_MS),
            Value::Integer(self.config.queue_ttl.as_millis() as i64),
        ];
        let reset = self
            .eval_many(&self.reset, vec![(self.requests_key.clone(), args)])
            .await;
        match reset.first() {
            Some(Ok(Value::Integer(1))) => {
                self.unacked().reset();
                self.poisoned.store(false, Ordering::Release);
                tracing::warn!(system = %self.system_id, "reset the request stream: a client had added ids far in the future");
            }
            Some(Ok(Value::Integer(0))) => self.poisoned.store(false, Ordering::Release),
            Some(Ok(_)) => {} // entries still to handle: next renewal
            Some(Err(e)) => tracing::debug!(error = %e, "could not reset the request stream"),
            None => {}
        }
    }

    /// Decodes, checks and starts one request: its completion at once when it cannot be
    /// handled (error reply or plain acknowledgement), else the handling to drive.
    fn dispatch(
        self: &Arc<Self>,
        entry_id: Bytes,
        id: EntryId,
        fields: Value,
        permit: OwnedSemaphorePermit,
    ) -> Result<Handling, Completion> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let done = |reply: Option<(String, Bytes)>| Completion {
            id,
            reply,
            requeue: false,
            _permit: None,
        };
        let fields = match fields {
            Value::Array(f) => f,
            // Deleted while pending: nothing to do but acknowledge.
            _ => return Err(done(None)),
        };
        let env = RawEnvelope::parse(fields);
        let Some(reply_to) = env.address(&self.reply_prefix) else {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(entry = ?entry_id, "dropped a malformed request with no usable reply address");
            return Err(done(None));
        };
        let reject = |status: Status, text: String| {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(entry = ?entry_id, %status, "{text}");
            let reply = reply_to.as_ref().map(|(key, id)| {
                (
                    key.clone(),
                    Bytes::from(protocol::encode_reply(*id, status, text.as_bytes())),
                )
            });
            Err(done(reply))
        };
        let req = match env.validate() {
            Ok(req) => req,
            Err(text) => return reject(Status::BadRequest, text),
        };
        // Expired: drop unprocessed, no reply (the asker gave up).
        // The entry id says when Redis took the request, unless a client chose an id in the
        // future: then the proxy's reading time stands in for it (a deadline never rests on
        // a client's word), and the stream is reset once drained (`reset_poisoned`).
        let now = self.redis_now_ms();
        let sent_ms = i64::try_from(id.ms).unwrap_or(i64::MAX);
        if sent_ms > now.saturating_add(FUTURE_ID_TOLERANCE_MS) {
            self.poisoned.store(true, Ordering::Release);
        }
        let remaining_ms = sent_ms.min(now).saturating_add(req.ttl_ms) - now;
        if remaining_ms <= 0 {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(urn = %req.urn, message = %req.message, "dropped an expired request");
            return Err(done(None));
        }
        if req.body.len() > self.config.max_payload {
            return reject(
                Status::TooLarge,
                format!(
                    "the message is {} bytes, the limit is {}",
                    req.body.len(),
                    self.config.max_payload
                ),
            );
        }
        let Some(codec) = self
            .codecs
            .iter()
            .find(|c| c.name().as_bytes() == &req.codec[..])
            .cloned()
        else {
            return reject(
                Status::BadRequest,
                format!("unknown codec {:?}", String::from_utf8_lossy(&req.codec)),
            );
        };
        if let Some(owner) = self.registry().conflicts.get(&req.urn) {
            return reject(
                Status::NotOwner,
                format!("URN {} is served by system {owner}", req.urn),
            );
        }
        let target = match self.system.lookup(&req.urn) {
            Ok(t) => t,
            Err(_) => return reject(Status::UnknownUrn, format!("no actor with URN {}", req.urn)),
        };
        let Some(rm) = target.remote_message(&req.message) else {
            return reject(
                Status::UnknownMessage,
                format!("actor {} does not expose message {}", req.urn, req.message),
            );
        };
        let mut decoded = None;
        if let Err(e) = codec.decode_with(&req.body, &mut |de| {
            decoded = Some(rm.decode(de)?);
            Ok(())
        }) {
            return reject(
                Status::CodecError,
                format!("cannot decode {} for {}: {e}", req.message, req.urn),
            );
        }
        let Some(msg) = decoded else {
            return reject(Status::CodecError, "the codec produced no message".into());
        };
        let timeout = Duration::from_millis(remaining_ms as u64);
        let room_wait = self.config.full_mailbox_wait.min(timeout);
        let shared = self.clone();
        Ok(Box::pin(async move {
            // Never hand a request to the actor without a lease surely still held: after a
            // pause (SIGSTOP, a long GC, a frozen VM) another system may serve the URN now.
            if !shared.lease_fresh() {
                shared.recheck_lease().await;
                let owner = shared.registry().conflicts.get(&req.urn).cloned();
                if owner.is_some() || !shared.lease_fresh() {
                    let (reply, requeue) = shared.not_ours(&req, owner, &reply_to, timeout).await;
                    return Completion {
                        id,
                        reply,
                        requeue,
                        _permit: Some(permit),
                    };
                }
            }
            let request = target
                .erased(rm.name(), rm.type_id(), msg)
                .room_timeout(room_wait);
            let reply = match &reply_to {
                Some((key, id)) => {
                    // At the deadline the ask is dropped, and the actor never starts a
                    // request still queued then (nobody waits for it).
                    let result = request.timeout(timeout).ask().await;
                    let (status, payload) = shared.outcome(rm, &*codec, &target, result);
                    Some((
                        key.clone(),
                        Bytes::from(protocol::encode_reply(*id, status, &payload)),
                    ))
                }
                None => {
                    // A tell is acknowledged once its handler has finished (or it was
                    // refused), so a crash before that leaves it in Redis for the next proxy.
                    if let Err(e) = request.tell().await {
                        tracing::warn!(urn = %req.urn, message = %req.message, error = %e, "a told message was refused");
                    }
                    None
                }
            };
            Completion {
                id,
                reply,
                requeue: false,
                _permit: Some(permit),
            }
        }))
    }

    /// A request for a URN this proxy cannot confirm it still serves. An ask is answered
    /// `NotOwner` (its client resolves the URN again); a tell goes to the URN's new owner's
    /// stream, or stays pending here when the owner is not known yet. Returns the reply and
    /// whether to leave the request pending.
    async fn not_ours(
        &self,
        req: &Request,
        owner: Option<String>,
        reply_to: &Option<(String, u64)>,
        remaining: Duration,
    ) -> (Option<(String, Bytes)>, bool) {
        if let Some((key, id)) = reply_to {
            let text = match &owner {
                Some(owner) => format!("URN {} is served by system {owner}", req.urn),
                None => format!("this proxy cannot confirm it still serves {}", req.urn),
            };
            tracing::info!(urn = %req.urn, "{text}");
            let frame = protocol::encode_reply(*id, Status::NotOwner, text.as_bytes());
            return (Some((key.clone(), Bytes::from(frame))), false);
        }
        let Some(owner) = owner else {
            return (None, true);
        };
        let forwarded = conn::call(
            &self.cmd,
            keyed("XADD"),
            vec![
                owned(self.keys.requests(&owner)),
                s("NOMKSTREAM"),
                s("*"),
                s(field::VERSION),
                s(PROTOCOL_VERSION),
                s(field::URN),
                owned(req.urn.clone()),
                s(field::MESSAGE),
                owned(req.message.clone()),
                s(field::TTL),
                Value::Integer(remaining.as_millis().max(1) as i64),
                s(field::CODEC),
                bytes(req.codec.clone()),
                s(field::BODY),
                bytes(req.body.clone()),
            ],
        )
        .await;
        match forwarded {
            Ok(Value::Null) => {
                tracing::warn!(urn = %req.urn, %owner, "dropped a told message: its URN's new owner has no request stream");
                (None, false)
            }
            Ok(_) => {
                tracing::info!(urn = %req.urn, %owner, "forwarded a told message to the URN's new owner");
                (None, false)
            }
            Err(e) => {
                tracing::warn!(urn = %req.urn, error = %e, "could not forward a told message; it stays pending");
                (None, true)
            }
        }
    }

    /// The status and payload answering an ask's result.
    fn outcome(
        &self,
        rm: &RemoteMessage,
        codec: &dyn Codec,
        target: &DynActorRef,
        result: ErasedResult,
    ) -> (Status, Vec<u8>) {
        let urn = target
            .urn()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default();
        let encoded =
            |status: Status, value: Option<&dyn erased_serde::Serialize>, what: &str| match value {
                None => (
                    Status::CodecError,
                    format!("the {what} is not of the message's {what} type").into_bytes(),
                ),
                Some(v) => match codec.encode(v) {
                    Ok(bytes) if bytes.len() > self.config.max_payload => (
                        Status::TooLarge,
                        format!(
                            "the {what} is {} bytes, the limit is {}",
                            bytes.len(),
                            self.config.max_payload
                        )
                        .into_bytes(),
                    ),
                    Ok(bytes) => (status, bytes),
                    Err(e) => (
                        Status::CodecError,
                        format!("cannot encode the {what}: {e}").into_bytes(),
                    ),
                },
            };
        match result {
            Ok(response) => encoded(Status::Ok, rm.response(&*response), "response"),
            Err(AskError::Handler(error)) => {
                encoded(Status::HandlerError, rm.error(&*error), "error")
            }
            Err(AskError::Panicked(p)) => (Status::Panicked, p.into_bytes()),
            Err(AskError::Timeout(d)) => (
                Status::Timeout,
                format!("{urn} did not answer within {d:?}").into_bytes(),
            ),
            Err(AskError::ActorStopped) => {
                (Status::ActorStopped, format!("{urn} stopped").into_bytes())
            }
            Err(AskError::NoResponse) => (
                Status::NoResponse,
                format!("{urn} dropped the request").into_bytes(),
            ),
            Err(AskError::MailboxFull) => (
                Status::MailboxFull,
                format!("{urn} has a full mailbox").into_bytes(),
            ),
            Err(AskError::UnknownMessage { message, .. }) => (
                Status::UnknownMessage,
                format!("{urn} does not handle {message}").into_bytes(),
            ),
        }
    }
}

/// What is left to do for one request: push its reply (if any) and acknowledge it.
struct Completion {
    id: EntryId,
    reply: Option<(String, Bytes)>,
    /// Not acknowledged: left pending in Redis, to be read again (a tell this proxy could
    /// not confirm it may still serve).
    requeue: bool,
    /// The request's place among those in flight, given back once the answer is written.
    _permit: Option<OwnedSemaphorePermit>,
}

/// A request being handled: resolves to its completion.
type Handling = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// How far ahead of Redis's clock a request's entry id may be and still date the request.
const FUTURE_ID_TOLERANCE_MS: i64 = 2_000;

/// The most completions answered by one script call (Lua's `unpack` has a stack limit).
const ANSWER_CHUNK: usize = 1024;

/// Requests being handled, driven by the read loop.
type Running = FuturesUnordered<Handling>;

/// A request's fields as read, before validation.
#[derive(Default)]
struct RawEnvelope {
    version: Option<Value>,
    id: Option<Value>,
    urn: Option<Value>,
    message: Option<Value>,
    ttl: Option<Value>,
    reply: Option<Value>,
    codec: Option<Value>,
    body: Option<Value>,
    bad_shape: bool,
}

/// A validated request.
struct Request {
    urn: String,
    message: String,
    ttl_ms: i64,
    codec: Bytes,
    body: Bytes,
}

fn text(v: &Option<Value>) -> Option<&str> {
    v.as_ref()
        .and_then(as_bytes)
        .and_then(|b| std::str::from_utf8(b).ok())
}

impl RawEnvelope {
    fn parse(fields: Vec<Value>) -> RawEnvelope {
        let mut env = RawEnvelope {
            bad_shape: !fields.len().is_multiple_of(2),
            ..RawEnvelope::default()
        };
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let slot = match as_bytes(&k) {
                Some(b) if b == field::VERSION.as_bytes() => &mut env.version,
                Some(b) if b == field::ID.as_bytes() => &mut env.id,
                Some(b) if b == field::URN.as_bytes() => &mut env.urn,
                Some(b) if b == field::MESSAGE.as_bytes() => &mut env.message,
                Some(b) if b == field::TTL.as_bytes() => &mut env.ttl,
                Some(b) if b == field::REPLY.as_bytes() => &mut env.reply,
                Some(b) if b == field::CODEC.as_bytes() => &mut env.codec,
                Some(b) if b == field::BODY.as_bytes() => &mut env.body,
                _ => continue,
            };
            *slot = Some(v);
        }
        env
    }

    /// Where to answer: `Some(None)` for a tell (no `reply` field), `Some(Some(..))` for an
    /// ask with a usable reply list and id, `None` when a reply is wanted but cannot be sent.
    fn address(&self, prefix: &str) -> Option<Option<(String, u64)>> {
        if self.reply.is_none() {
            return Some(None);
        }
        let key = text(&self.reply)?;
        if !key.starts_with(prefix) || key.len() > prefix.len() + 256 || key.len() == prefix.len() {
            return None;
        }
        let id = text(&self.id)?.parse::<u64>().ok()?;
        Some(Some((key.to_owned(), id)))
    }

    fn validate(self) -> Result<Request, String> {
        if self.bad_shape {
            return Err("the request's fields are not name/value pairs".into());
        }
        match text(&self.version) {
            Some(PROTOCOL_VERSION) => {}
            Some(other) => {
                return Err(format!(
                    "unsupported protocol version {other:?} (this proxy speaks {PROTOCOL_VERSION})"
                ));
            }
            None => return Err("missing field v (protocol version)".into()),
        }
        let urn = text(&self.urn)
            .ok_or("missing or non-UTF-8 field urn")?
            .to_owned();
        let message = text(&self.message)
            .ok_or("missing or non-UTF-8 field msg")?
            .to_owned();
        let ttl_ms = text(&self.ttl)
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|t| (1..=i64::from(u32::MAX)).contains(t))
            .ok_or("missing or invalid field ttl (milliseconds, 1 to 4294967295)")?;
        let codec = self
            .codec
            .and_then(Value::into_bytes)
            .ok_or("missing field codec")?;
        let body = match self.body {
            Some(Value::Null) | None => return Err("missing field body".into()),
            Some(v) => v.into_bytes().ok_or("field body is not a string")?,
        };
        Ok(Request {
            urn,
            message,
            ttl_ms,
            codec,
            body,
        })
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Polls a future once; gives it back if it is not done.
fn poll_once<T>(
    mut fut: Pin<Box<dyn Future<Output = T> + Send>>,
) -> Result<T, Pin<Box<dyn Future<Output = T> + Send>>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(fut),
    }
}

/// Takes the completions of `running` that are ready now.
fn take_ready(running: &mut Running, into: &mut Vec<Completion>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while let Poll::Ready(Some(c)) = Pin::new(&mut *running).poll_next(&mut cx) {
        into.push(c);
    }
}

/// The proxy's request loop, one task: reads requests, starts their handling, drives it,
/// and writes the replies of requests answered at once in front of its next read, on the
/// same connection (one write, one wake-up of Redis, and the reply goes out before Redis
/// is asked for more). Replies that come later go to the writer (`late`), which writes on
/// the command connection while this one waits in a blocking read.
async fn read_loop(
    shared: Arc<Shared>,
    late: mpsc::UnboundedSender<Vec<Completion>>,
    block: Duration,
) {
    let mut stop = shared.stop.subscribe();
    // First the entries delivered to us before and never acknowledged (a crash, a lost
    // answer), then new ones.
    let mut pending_phase = true;
    let mut pending_from: Bytes = Bytes::from_static(b"0");
    let mut backoff = Duration::from_millis(10);
    let cmd = keyed_at("XREADGROUP", 4, true);
    let mut running = Running::new();
    let mut writes: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>> =
        FuturesUnordered::new();
    let mut ready: Vec<Completion> = Vec::new();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        if shared.reread.swap(false, Ordering::AcqRel) {
            pending_phase = true;
            pending_from = Bytes::from_static(b"0");
        }
        // Handlers that answer at once do so now, so their replies precede the next read.
        if !running.is_empty() {
            tokio::task::yield_now().await;
            take_ready(&mut running, &mut ready);
        }
        if !ready.is_empty() {
            let write = Box::pin(
                shared
                    .clone()
                    .write_ahead(std::mem::take(&mut ready), late.clone()),
            );
            // Its commands are queued on the connection before the read's.
            if let Err(rest) = poll_once(write) {
                writes.push(rest);
            }
        }
        // Wait for room before reading more.
        let first = loop {
            tokio::select! {
                p = shared.in_flight.clone().acquire_owned() => match p {
                    Ok(p) => break Some(p),
                    Err(_) => break None,
                },
                Some(c) = running.next() => { let _ = late.send(vec![c]); }
                Some(()) = writes.next() => {}
                _ = stopped(&mut stop) => break None,
            }
        };
        let Some(first) = first else { break };
        let count = (shared.in_flight.available_permits() + 1).min(shared.config.batch_size);
        let mut args = vec![
            s("GROUP"),
            s(CONSUMER_GROUP),
            s(CONSUMER_GROUP),
            s("COUNT"),
            Value::Integer(count as i64),
        ];
        if !pending_phase {
            args.push(s("BLOCK"));
            args.push(Value::Integer(block.as_millis() as i64));
        }
        args.push(s("STREAMS"));
        args.push(owned(shared.requests_key.clone()));
        args.push(if pending_phase {
            bytes(pending_from.clone())
        } else {
            s(">")
        });
        // XREADGROUP's key is after GROUP g c COUNT n [BLOCK ms] STREAMS.
        let offset = args.len() - 2;
        let mut read_cmd = cmd.clone();
        read_cmd.cluster_hash = fred::types::ClusterHash::Offset(offset);
        let read = conn::call(&shared.reader, read_cmd, args);
        tokio::pin!(read);
        let result = loop {
            tokio::select! {
                r = &mut read => break r,
                Some(c) = running.next() => { let _ = late.send(vec![c]); }
                Some(()) = writes.next() => {}
                _ = stopped(&mut stop) => {
                    // Wake the blocked read as if it timed out, and handle whatever it got.
                    let _ = shared.reader.unblock_self(Some(ClientUnblockFlag::Timeout)).await;
                    break read.await;
                }
            }
        };
        let entries = match result {
            Ok(Value::Null) => {
                if pending_phase {
                    pending_phase = false;
                    shared.unacked().set_complete(true);
                }
                continue;
            }
            Ok(value) => {
                backoff = Duration::from_millis(10);
                stream_entries(value)
            }
            Err(e) => {
                if conn::error_code_is(&e, "NOGROUP") {
                    tracing::info!(system = %shared.system_id, "the request stream or its group is gone (Redis restarted?); recreating it");
                    if let Err(e) = shared.ensure_group().await {
                        tracing::warn!(error = %e, "could not recreate the consumer group");
                    }
                } else {
                    tracing::warn!(error = %e, connection = is_connection_error(&e), "reading requests failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut stop) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                // An answer lost with the connection leaves entries delivered to us: re-read them.
                pending_phase = true;
                pending_from = Bytes::from_static(b"0");
                shared.unacked().set_complete(false);
                continue;
            }
        };
        if pending_phase && entries.is_empty() {
            pending_phase = false;
            shared.unacked().set_complete(true);
            continue;
        }
        let mut permit = Some(first);
        for (entry_id, fields) in entries {
            let Some(id) = EntryId::parse(&entry_id) else {
                tracing::warn!(entry = ?entry_id, "skipped a stream entry with a malformed id");
                continue;
            };
            if pending_phase {
                pending_from = entry_id.clone();
            }
            // Re-reading the pending list: skip what is being handled already.
            if !shared.unacked().insert(id) {
                continue;
            }
            let permit = match permit.take() {
                Some(p) => p,
                None => match shared.in_flight.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            match shared.dispatch(entry_id, id, fields, permit) {
                Err(done) => ready.push(done),
                // Started here, in arrival order, so one client's messages to one actor enter
                // its mailbox in order.
                Ok(handling) => match poll_once(handling) {
                    Ok(done) => ready.push(done),
                    Err(rest) => running.push(rest),
                },
            }
        }
    }
    // Stopping: finish what was taken; the writer writes it.
    take_ready(&mut running, &mut ready);
    if !ready.is_empty() {
        let _ = late.send(ready);
    }
    while let Some(c) = running.next().await {
        let _ = late.send(vec![c]);
    }
    while writes.next().await.is_some() {}
    tracing::debug!(system = %shared.system_id, "stopped reading requests");
}

/// The `(id, fields)` of an XREADGROUP answer for one stream.
fn stream_entries(value: Value) -> Vec<(Bytes, Value)> {
    let mut out = Vec::new();
    let Value::Array(streams) = value else {
        return out;
    };
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let Value::Array(entries) = parts.pop().expect("two parts") else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut pair) = entry else {
                continue;
            };
            if pair.len() != 2 {
                continue;
            }
            let fields = pair.pop().expect("two parts");
            let Some(id) = pair.pop().and_then(Value::into_bytes) else {
                continue;
            };
            out.push((id, fields));
        }
    }
    out
}

/// Writes the completions it receives on the command connection, batched.
async fn write_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Vec<Completion>>) {
    let mut received = Vec::with_capacity(64);
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut received, 256).await > 0 {
        batch.extend(received.drain(..).flatten());
        shared.write(&mut batch).await;
    }
}

impl Shared {
    /// Writes a batch on the read connection, in front of the next read. A batch that fails
    /// goes to the writer, which retries on the command connection (replies pushed twice are
    /// harmless: a client discards frames it no longer waits for).
    async fn write_ahead(
        self: Arc<Self>,
        mut batch: Vec<Completion>,
        late: mpsc::UnboundedSender<Vec<Completion>>,
    ) {
        self.requeue(&mut batch);
        if batch.is_empty() {
            return;
        }
        match self.write_once(&self.reader, &batch, false).await {
            Ok(()) => self.finish(&mut batch),
            Err(e) => {
                tracing::debug!(error = %e, "writing replies failed; retrying on the command connection");
                let _ = late.send(batch);
            }
        }
    }

    /// Writes a batch on the command connection, retrying a while (Redis unreachable, busy,
    /// out of memory), then giving the requests back to the read loop: they are read again
    /// from the pending list, a few seconds apart, until answered or expired.
    async fn write(&self, batch: &mut Vec<Completion>) {
        self.requeue(batch);
        if batch.is_empty() {
            return;
        }
        let mut backoff = Duration::from_millis(20);
        for attempt in 0.. {
            let Err(e) = self.write_once(&self.cmd, batch, true).await else {
                break;
            };
            if attempt >= 8 {
                tracing::error!(error = %e, connection = is_connection_error(&e), requests = batch.len(), "could not write replies; the requests will be read again");
                self.give_up(batch);
                return;
            }
            tracing::debug!(error = %e, "writing replies failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        self.finish(batch);
    }

    /// One attempt at writing a batch: one `EVALSHA` of the answer script per (at most)
    /// [`ANSWER_CHUNK`] completions (`EVAL` where Redis lost the script, with `eval_fallback`).
    /// A cluster cannot run one script over keys of different slots: there it is one push
    /// script per reply list, then `XACK` and `XTRIM`, in one pipeline.
    async fn write_once(
        &self,
        client: &Client,
        batch: &[Completion],
        eval_fallback: bool,
    ) -> Result<(), fred::error::Error> {
        if client.is_clustered() {
            return self
                .write_once_clustered(client, batch, eval_fallback)
                .await;
        }
        let ttl = Value::Integer(self.config.reply_ttl.as_millis() as i64);
        let trim = self
            .trim_below(batch)
            .map_or(s(""), |below| owned(below.to_string()));
        let pipeline = client.pipeline();
        let mut calls = Vec::new();
        let chunks = batch.len().div_ceil(ANSWER_CHUNK);
        for (i, chunk) in batch.chunks(ANSWER_CHUNK).enumerate() {
            let mut by_key: HashMap<&str, Vec<&Bytes>> = HashMap::new();
            for c in chunk {
                if let Some((key, frame)) = &c.reply {
                    by_key.entry(key).or_default().push(frame);
                }
            }
            let frames: usize = by_key.values().map(Vec::len).sum();
            let mut args = Vec::with_capacity(by_key.len() * 2 + chunk.len() + frames + 6);
            args.extend([
                owned(self.answer.sha.clone()),
                Value::Integer(1 + by_key.len() as i64),
            ]);
            args.push(owned(self.requests_key.clone()));
            args.extend(by_key.keys().map(|k| owned(*k)));
            args.extend([
                s(CONSUMER_GROUP),
                ttl.clone(),
                Value::Integer(chunk.len() as i64),
            ]);
            args.extend(chunk.iter().map(|c| owned(c.id.to_string())));
            for frames in by_key.values() {
                args.push(Value::Integer(frames.len() as i64));
                args.extend(frames.iter().map(|f| bytes((*f).clone())));
            }
            // Trim once the whole batch is acknowledged: with its last chunk.
            args.push(if i + 1 == chunks { trim.clone() } else { s("") });
            let _ = conn::call(&pipeline, keyed_at("EVALSHA", 2, false), args.clone()).await;
            calls.push(args);
        }
        let results = pipeline.try_all::<Value>().await;
        let mut failure = None;
        for (i, mut args) in calls.into_iter().enumerate() {
            match results.get(i) {
                Some(Err(e)) if eval_fallback && conn::error_code_is(e, "NOSCRIPT") => {
                    args[0] = s(self.answer.text);
                    if let Err(e) = conn::call(client, keyed_at("EVAL", 2, false), args).await {
                        failure = Some(e);
                    }
                }
                Some(Err(e)) => failure = Some(e.clone()),
                _ => {}
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// [`write_once`](Self::write_once) for a cluster.
    async fn write_once_clustered(
        &self,
        client: &Client,
        batch: &[Completion],
        eval_fallback: bool,
    ) -> Result<(), fred::error::Error> {
        let mut by_key: HashMap<&str, Vec<Value>> = HashMap::new();
        let mut entries = Vec::with_capacity(batch.len());
        for c in batch {
            entries.push(owned(c.id.to_string()));
            if let Some((key, frame)) = &c.reply {
                by_key.entry(key).or_default().push(bytes(frame.clone()));
            }
        }
        let ttl = Value::Integer(self.config.reply_ttl.as_millis() as i64);
        let push = |script: Value, key: &str, frames: &[Value]| {
            let mut args = Vec::with_capacity(frames.len() + 4);
            args.extend([script, Value::Integer(1), owned(key), ttl.clone()]);
            args.extend(frames.iter().cloned());
            args
        };
        let pipeline = client.pipeline();
        for (key, frames) in &by_key {
            let args = push(owned(self.push.sha.clone()), key, frames);
            let _ = conn::call(&pipeline, keyed_at("EVALSHA", 2, false), args).await;
        }
        let stream = owned(self.requests_key.clone());
        let mut ack = Vec::with_capacity(entries.len() + 2);
        ack.extend([stream.clone(), s(CONSUMER_GROUP)]);
        ack.extend(entries.iter().cloned());
        let _ = conn::call(&pipeline, keyed("XACK"), ack).await;
        if let Some(below) = self.trim_below(batch) {
            let trim = vec![stream, s("MINID"), s("~"), owned(below.to_string())];
            let _ = conn::call(&pipeline, keyed("XTRIM"), trim).await;
        }
        let results = pipeline.try_all::<Value>().await;
        let mut failure = None;
        for (i, (key, frames)) in by_key.iter().enumerate() {
            match results.get(i) {
                Some(Err(e)) if eval_fallback && conn::error_code_is(e, "NOSCRIPT") => {
                    let args = push(s(self.push.text), key, frames);
                    if let Err(e) = conn::call(client, keyed_at("EVAL", 2, false), args).await {
                        failure = Some(e);
                    }
                }
                Some(Err(e)) => failure = Some(e.clone()),
                _ => {}
            }
        }
        for r in results.iter().skip(by_key.len()) {
            // NOGROUP: Redis lost the stream (restart); nothing left to acknowledge.
            if let Err(e) = r
                && !conn::error_code_is(e, "NOGROUP")
            {
                failure = Some(e.clone());
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Books a written batch as done and releases its in-flight permits.
    fn finish(&self, batch: &mut Vec<Completion>) {
        self.unacked().remove(batch.iter().map(|c| c.id), true);
        self.counters
            .completed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
    }

    /// Takes the completions to leave pending out of `batch`: they are read again.
    fn requeue(&self, batch: &mut Vec<Completion>) {
        if batch.iter().any(|c| c.requeue) {
            let (mut pending, keep): (Vec<Completion>, Vec<Completion>) =
                batch.drain(..).partition(|c| c.requeue);
            *batch = keep;
            self.give_up(&mut pending);
        }
    }

    /// Gives up on writing a batch: its entries stay pending in Redis, and the read loop
    /// re-reads the pending list to handle them again.
    fn give_up(&self, batch: &mut Vec<Completion>) {
        self.unacked().remove(batch.iter().map(|c| c.id), false);
        self.reread.store(true, Ordering::Release);
        batch.clear();
    }

    /// The id below which the stream may be trimmed once `batch` is acknowledged.
    fn trim_below(&self, batch: &[Completion]) -> Option<EntryId> {
        let mut ids: Vec<EntryId> = batch.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        self.sane_trim(self.unacked().trim_below(&ids))
    }

    /// No trimming up to an id in the future: a client chose it, and once the stream is
    /// reset it would trim the new stream's entries.
    fn sane_trim(&self, below: Option<EntryId>) -> Option<EntryId> {
        below.filter(|b| {
            i64::try_from(b.ms)
                .is_ok_and(|ms| ms <= self.redis_now_ms().saturating_add(FUTURE_ID_TOLERANCE_MS))
        })
    }
}

async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut scan = tokio::time::interval(shared.config.scan_interval);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renew =
        tokio::time::interval((shared.config.lease_ttl / 3).max(Duration::from_millis(10)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both were just done by start_proxy.
    scan.tick().await;
    renew.tick().await;
    let mut reconnects = shared.cmd.reconnect_rx();
    let mut events = true;
    // A URN taken or freed is published at once; the periodic scan is the safety net.
    let mut urn_changes = shared.system.urn_changes();
    urn_changes.mark_unchanged();
    loop {
        tokio::select! {
            Ok(()) = urn_changes.changed() => shared.scan().await,
            _ = scan.tick() => shared.scan().await,
            _ = renew.tick() => shared.renew().await,
            event = reconnects.recv(), if events => match event {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Redis may have restarted empty: recreate the group, claim everything again.
                    tracing::info!(system = %shared.system_id, "reconnected to Redis; renewing registrations");
                    if let Err(e) = shared.ensure_group().await {
                        tracing::warn!(error = %e, "could not recreate the consumer group");
                    }
                    shared.renew().await;
                }
                Err(_) => events = false,
            },
        }
    }
}
