//! [`start_proxy`] and the [`ProxyHandle`] it returns: a proxy started, watched and stopped.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conclib_core::ActorSystem;
use fred::prelude::*;
use tokio::task::JoinHandle;

use super::activator::Activator;
use super::readiness::ShutdownPhase;
use super::scale::activations::Activation;
use super::scale::group;
use super::scale::placement;
use super::serve::heartbeat::heartbeat_loop;
use super::serve::lease;
use super::serve::publish;
use super::serve::read;
use super::shared::{Role, Shared};
use crate::config::{ProxyConfig, check_system_id};
use crate::conn;
use crate::error::ServeError;
use crate::stats::ProxyStats;

/// A running proxy; from [`start_proxy`].
///
/// [`shutdown`](Self::shutdown) stops it gracefully. Dropping the handle without it aborts
/// the proxy at once: requests it had taken and not answered are handled again by the next
/// proxy of the same system id (they stay in Redis until acknowledged).
pub struct ProxyHandle {
    pub(super) shared: Arc<Shared>,
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
/// another live system already owns is not served here: it is logged as a warning and listed
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
    conn::init_within(&[&cmd, &reader], config.connecting())
        .await
        .map_err(ServeError::Unavailable)?;
    let shared = Arc::new(Shared::new(
        system,
        config,
        system_id.clone(),
        Role::System,
        (cmd, reader),
        config.max_in_flight,
    ));
    let started = async {
        let since = std::time::Instant::now();
        let persistence =
            crate::persistence::Persistence::read(&shared.cmd, shared.config.command_timeout).await;
        let _ = shared.persistence.set(persistence);
        let durability = shared.config.durability;
        durability
            .check_topology(&shared.cmd, &shared.config.url, &shared.system_id)
            .await;
        lease::acquire_lease(&shared).await?;
        shared.clock.sync(&shared.cmd).await;
        shared
            .stream
            .ensure_group(&shared.cmd)
            .await
            .map_err(|e| ServeError::from(crate::error::redis_error(&e)))?;
        shared
            .stream
            .renew(&shared.cmd, shared.config.queue_ttl)
            .await;
        super::serve::heartbeat::scan(&shared).await;
        shared.lease.mark_fresh(since);
        Ok::<_, ServeError>(())
    };
    if let Err(e) = started.await {
        let _ = shared.cmd.quit().await;
        let _ = shared.reader.quit().await;
        return Err(e);
    }
    let (reader, writer) = read::start_reading(&shared, block);
    // One task, stopped as one: the lease's heartbeat and the activations' housekeeping.
    let heartbeat = tokio::spawn({
        let (lease, activations) = (shared.clone(), shared.clone());
        async move {
            tokio::join!(
                heartbeat_loop(lease),
                super::scale::passivation::housekeeping_loop(activations)
            );
        }
    });
    tracing::info!(
        system = %shared.system_id,
        namespace = %shared.config.namespace,
        urns = shared.registry.lock().unwrap_or_else(|e| e.into_inner()).owned.len(),
        persistence = %shared.persistence(),
        "Redis proxy started"
    );
    shared.persistence().warn_once();
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

    /// The URNs this proxy owns in Redis (and so serves), sorted. A URN leaves the list as
    /// the proxy sees its actor stopped, just before its key in Redis is deleted (a burst
    /// of stops: one batch of deletes, on its way meanwhile).
    #[must_use]
    pub fn served_urns(&self) -> Vec<String> {
        let mut urns: Vec<String> = self.shared.registry().owned.iter().cloned().collect();
        urns.sort();
        urns
    }

    /// Local URNs another system owns, with that system's id: this proxy refuses their
    /// requests ([`AskError::UnknownUrn`](conclib_core::AskError::UnknownUrn) for clients routed here by
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

    /// A probe of this proxy's [`Readiness`](super::Readiness) for an orchestrator
    /// (Kubernetes' readiness probe, a load balancer's health check): ready once
    /// `start_proxy` returned and while its lease is surely held; not ready from the moment
    /// [`shutdown`](Self::shutdown) begins. `conclib_view::health` serves it over HTTP.
    #[must_use]
    pub fn readiness(&self) -> super::readiness::ReadinessProbe {
        super::readiness::ReadinessProbe {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// How the Redis this proxy serves through persists what it holds, as read when the
    /// proxy started (also in its snapshot: [`PublishedSystem::persistence`](crate::snapshots::PublishedSystem::persistence)):
    /// whether a restart of Redis can lose tells it accepted.
    ///
    /// ```no_run
    /// # async fn demo(proxy: conclib_redis::ProxyHandle) {
    /// if !proxy.persistence().tells_survive_restart() {
    ///     eprintln!("{:?}: tells may be lost", proxy.persistence().tell_loss());
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn persistence(&self) -> crate::persistence::Persistence {
        self.shared.persistence()
    }

    /// Publishing to topics and subscribing to them through the proxy's Redis (see
    /// [`topics`](crate::topics)); keep a clone in an actor to publish from its handlers.
    /// Its publishes share the proxy's command connection (and stop with
    /// [`shutdown`](Self::shutdown)); each subscription has a connection of its own.
    #[must_use]
    pub fn topics(&self) -> crate::topics::Topics {
        self.shared.topics().clone()
    }

    /// What the proxy did so far.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }

    /// Publishes the system's snapshot now rather than at the next
    /// [`ProxyConfig::snapshot_interval`] (see [`SnapshotReader`](crate::snapshots::SnapshotReader)).
    ///
    /// # Errors
    /// [`ServeError::Redis`] if Redis refused the write.
    pub async fn publish_snapshot(&self) -> Result<(), ServeError> {
        publish::publish_snapshot(&self.shared, true)
            .await
            .map_err(|e| ServeError::Redis(e.to_string()))
    }

    /// Serves the local actor `urn` as one member of its URN's group: several systems (in
    /// other processes, on other machines) serve one URN together, each with its own actor
    /// or pool under it, and clients ask it like any URN. Requests wait in the group's one
    /// stream and each member takes what it has room for
    /// ([`ProxyConfig::group_in_flight`](crate::ProxyConfig::group_in_flight)), so a busy
    /// member takes less. Requests taken by a member that dies are handled by the others
    /// once its member lease lapses (at once when it provably died on the same host).
    /// Returns once this system reads the group's stream.
    ///
    /// ```no_run
    /// # async fn demo(proxy: conclib_redis::ProxyHandle) -> Result<(), conclib_redis::ServeError> {
    /// proxy.join("resize").await?;     // this system's actor `resize` serves in its group
    /// // ...
    /// proxy.leave("resize").await;     // finishes what it took, then leaves
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ServeError::Invalid`] if no local actor has this URN; [`ServeError::UrnInUse`] if
    /// one system serves the URN alone; [`ServeError::Unavailable`].
    pub async fn join(&self, urn: &str) -> Result<(), ServeError> {
        if self.shared.system.lookup(urn).is_err() {
            return Err(ServeError::Invalid(format!(
                "no actor of system {} has the URN {urn}: spawn it before joining its group",
                self.shared.system_id
            )));
        }
        super::join::join_group(&self.shared, group::GroupOf::Urn(urn)).await
    }

    /// Leaves the group of a URN or pattern prefix gracefully: this system takes no more of
    /// its requests, finishes and acknowledges those it took, and gives up its place (the
    /// group goes on with its other members; with none left, its URN lapses after a lease).
    /// The local actor stays, no longer served through Redis. Activations of a pattern left
    /// stay until passivated. `false` if this system was not a member.
    pub async fn leave(&self, urn_or_prefix: &str) -> bool {
        group::leave_group(&self.shared, urn_or_prefix).await
    }

    /// The groups this system is a member of: shared URNs and pattern prefixes, sorted.
    #[must_use]
    pub fn groups(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.groups().keys().cloned().collect();
        names.sort();
        names
    }

    /// Activates actors on demand for the URNs of a pattern (`user:{id}`): the first request
    /// for `user:42` through Redis makes one system of the pattern's group claim the URN and
    /// construct the actor with `make` (which may load its state, e.g. from the
    /// [`Activation::store`]); later requests go straight to it; after
    /// [`passivate_after`](Activator::passivate_after) without requests it is stopped
    /// gracefully (its `on_stop` may save) and its URN released, to be activated again,
    /// anywhere in the group, by the next request. Every system declaring the pattern joins
    /// its group. Never two live activations of a URN handle messages at once: a system
    /// hands a request to an activation only while its lease on the URN is surely held, and
    /// an activation whose URN another system took is stopped. When the system holding
    /// activations is gone, another member moves the requests queued for them, in order and
    /// with their deadlines, and they are activated again elsewhere; with
    /// `.rebalance()`, members share the activations again when one joins (the crate docs:
    /// "Failover by membership", "Rebalancing").
    ///
    /// ```no_run
    /// # use conclib_core::Actor;
    /// # struct User { name: String }
    /// # impl Actor for User {}
    /// # async fn demo(proxy: conclib_redis::ProxyHandle) -> Result<(), conclib_redis::ServeError> {
    /// use std::time::Duration;
    /// proxy
    ///     .activate("user:{id}", |a: conclib_redis::scale::Activation| async move {
    ///         let name = a.store().load::<String>().await?.unwrap_or_default();
    ///         Ok::<_, conclib_redis::scale::StoreError>(User { name })
    ///     })
    ///     .passivate_after(Duration::from_secs(300))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn activate<A, F, Fut, E>(&self, pattern: &str, make: F) -> Activator<'_>
    where
        A: conclib_core::Actor,
        F: Fn(Activation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<A, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        Activator::new(&self.shared, pattern, make)
    }

    /// The URNs activated in this system now, sorted.
    #[must_use]
    pub fn activations(&self) -> Vec<String> {
        self.shared.activations.active()
    }

    /// The live members of a pattern's group (`user:{id}`, or its prefix `user:`) and how
    /// many of its URNs each has activated, sorted by system id: the directory that
    /// [`Placement`](crate::scale::Placement) reads, as each member last wrote it (at each
    /// activation and passivation, and with each lease renewal). Read-only; this system's
    /// own count is the one it has now.
    ///
    /// ```no_run
    /// # async fn demo(proxy: conclib_redis::ProxyHandle) -> Result<(), conclib_redis::ServeError> {
    /// for m in proxy.pattern_members("user:{id}").await? {
    ///     println!("{}: {} activations", m.system, m.activations);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ServeError::Invalid`] for a pattern that is not `prefix:{id}` or `prefix:`,
    /// [`ServeError::Unavailable`] if Redis did not answer.
    pub async fn pattern_members(
        &self,
        pattern: &str,
    ) -> Result<Vec<crate::proxy::scale::placement_rule::MemberInfo>, ServeError> {
        let prefix = match pattern.strip_suffix("{id}") {
            Some(_) => super::activator::parse_pattern(pattern)?,
            None => super::activator::parse_pattern(&format!("{pattern}{{id}}"))?,
        };
        placement::pattern_members(&self.shared, &prefix)
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))
    }

    /// Registers actors spawned (and releases those stopped) since the last scan, now rather
    /// than at the next [`ProxyConfig::scan_interval`].
    pub async fn refresh(&self) {
        super::serve::heartbeat::scan(&self.shared).await;
    }

    /// Stops taking requests, finishes the ones taken (their replies are written and
    /// acknowledged), releases the system's lease, and returns. Requests still queued stay in
    /// Redis for the next proxy of this system id. URN ownerships lapse after
    /// [`ProxyConfig::urn_ttl`] unless [`ProxyConfig::release_on_shutdown`] is set; first, it
    /// marks the URNs it served as departed for [`ProxyConfig::departed_grace`], so that
    /// clients answer `Unavailable` (retryable), not `UnknownUrn`, until a successor serves
    /// them. It returns within [`ProxyConfig::shutdown_timeout`] whatever Redis does.
    ///
    /// # Errors
    /// [`ServeError::Unavailable`] if Redis could not be told (the lease then lapses by
    /// itself); [`ServeError::ShutdownCut`] when the bound passed first: its tasks are
    /// stopped, and what it had not handed over stays in Redis for the next holder, as after
    /// a crash.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        ShutdownPhase::Draining.enter(&self.shared);
        let tasks = super::departure::Tasks {
            reader: self.reader.take(),
            writer: self.writer.take(),
            heartbeat: self.heartbeat.take(),
        };
        super::departure::depart(self.shared.clone(), tasks).await
    }
}

impl ProxyHandle {
    /// Drains this member, then shuts it down: what a serving process does on SIGTERM
    /// during a rolling update, so that no request sent meanwhile is refused or left to
    /// time out. Readiness turns [`Draining`](super::Readiness::Draining) at once; the
    /// system leaves its groups (no more group work, no more placements on it), hands its
    /// activations over (each stops once its mailbox is empty, its state carried if its
    /// `on_stop` calls [`StateStore::dehydrate`](crate::scale::StateStore::dehydrate), then its
    /// URN key is given to the member placement picks among the others, so that its next
    /// request goes straight there; requests for it read meanwhile follow, in order),
    /// passes on what
    /// clients with a cached route still send it for one
    /// [`resolve_cache_ttl`](crate::ProxyConfig::resolve_cache_ttl), moves what is left in
    /// its stream for its patterns' URNs to their groups, and shuts down as
    /// [`shutdown`](Self::shutdown) does. Handing over is bounded by
    /// [`drain_timeout`](crate::ProxyConfig::drain_timeout), the shutdown by
    /// [`shutdown_timeout`](crate::ProxyConfig::shutdown_timeout).
    ///
    /// ```no_run
    /// # async fn demo(proxy: conclib_redis::ProxyHandle) -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::signal::unix::{SignalKind, signal};
    /// signal(SignalKind::terminate())?.recv().await;
    /// let drained = proxy.drain().await?;
    /// println!("handed {} activations in {:?}", drained.handed, drained.took);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`shutdown`](Self::shutdown).
    pub async fn drain(mut self) -> Result<super::drain::Drained, ServeError> {
        let tasks = super::departure::Tasks {
            reader: self.reader.take(),
            writer: self.writer.take(),
            heartbeat: self.heartbeat.take(),
        };
        super::drain::drain(self.shared.clone(), tasks).await
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        // The end of `shutdown` too (it consumes the handle).
        ShutdownPhase::Stopped.enter(&self.shared);
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

#[cfg(test)]
mod tests {
    use conclib_core::{Actor, ActorSystem};

    use crate::config::ProxyConfig;

    struct Account;
    impl Actor for Account {}

    /// A scan leaves a stopping activation to its passivation: not counted live again (its
    /// key would be released as it stops, a move's key released instead of handed over),
    /// whereas the same actor not stopping is counted live. On a real Redis.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_leaves_a_stopping_activation_to_its_passivation() {
        let base = ProxyConfig::default().with_namespace("scan-stopping");
        let daemon = crate::daemon::start_redis(&base).await.unwrap();
        let system = ActorSystem::new("scan-stopping");
        system.build(Account).urn("acct:1").spawn().await.unwrap();
        let proxy = crate::proxy::handle::start_proxy(&system, &daemon.config(&base))
            .await
            .unwrap();
        let shared = proxy.shared.clone();
        assert!(shared.registry().local.contains_key("acct:1"));
        // As a passivation marks it when its stop begins.
        {
            let mut reg = shared.registry();
            reg.local.remove("acct:1");
            reg.stopping.insert("acct:1".to_owned());
        }
        crate::proxy::serve::heartbeat::scan(&shared).await;
        assert!(
            !shared.registry().local.contains_key("acct:1"),
            "a scan counted a stopping activation live"
        );
        shared.registry().stopping.remove("acct:1");
        crate::proxy::serve::heartbeat::scan(&shared).await;
        assert!(shared.registry().local.contains_key("acct:1"));
        proxy.shutdown().await.unwrap();
        daemon.shutdown().unwrap();
    }
}
