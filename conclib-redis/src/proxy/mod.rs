//! [`start_proxy`]: serves an actor system's exposed actors to other processes.
//!
//! This module holds what a proxy's parts share; `handle` starts and stops a proxy, and
//! the parts read requests (`read`), turn each into its handling (`dispatch`), write answers
//! (`write`) and keep the leases (`lease`).

mod activation;
mod applied;
mod clock;
mod counters;
mod dispatch;
mod forward;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod group;
mod handle;
mod handoff;
mod lease;
mod lease_state;
mod owned;
mod placement;
mod read;
mod rebalance;
mod registry;
mod scripts;
mod store;
mod stream;
mod takeover;
mod write;

pub use activation::{Activation, Activator, DEFAULT_PASSIVATE_AFTER};
pub use handle::{ProxyHandle, start_proxy};
pub use placement::{MemberInfo, PlaceFn, Placement};
pub use store::{StateStore, StoreError};
pub(crate) use takeover::TakenOver;

use clock::Clock;
use counters::Counters;
use lease_state::Lease;
use read::read_loop;
use registry::Registry;
use scripts::Scripts;
use stream::Stream;
use write::write_loop;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclib_core::ActorSystem;
use fred::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::ProxyConfig;
use crate::conn::{self, keyed, owned};
use crate::protocol::{self, Keys};
use conclib_codec::{Codec, builtin_codec};

/// What one proxy instance serves.
enum Role {
    /// The system's own request stream and the URNs of its actors.
    System,
    /// One group's shared stream, as one of its members.
    Member(Box<group::Member>),
}

struct Shared {
    system: ActorSystem,
    config: ProxyConfig,
    system_id: String,
    role: Role,
    /// What the URN keys this instance claims hold: the system id, or the group id.
    claim_value: String,
    /// The request stream this instance reads, and what it read and has not acknowledged.
    stream: Stream,
    /// The groups this system's proxy is a member of, by URN or pattern prefix.
    groups: Mutex<HashMap<String, group::MemberHandle>>,
    /// URN patterns this system activates actors for, and the activations alive.
    activations: activation::Activations,
    keys: Keys,
    reply_prefix: String,
    /// The lease this instance holds, and until when it surely holds it.
    lease: Lease,
    cmd: Client,
    reader: Client,
    codecs: Vec<Arc<dyn Codec>>,
    /// Redis's clock, as far as this process can tell.
    clock: Clock,
    registry: Mutex<Registry>,
    /// One look at the system's URNs at a time; holds the position in the system's URN
    /// journal read up to ([`ActorSystem::urn_changes_since`]).
    scan_lock: tokio::sync::Mutex<u64>,
    counters: Counters,
    scripts: Scripts,
    serving: AtomicBool,
    stop: watch::Sender<bool>,
    /// What the snapshots published of the actors in brief; one publish at a time.
    briefs: tokio::sync::Mutex<crate::snapshots::Briefs>,
    /// Redis's persistence settings, read once as the proxy started.
    persistence: std::sync::OnceLock<crate::Persistence>,
    /// Topics published and subscribed through this proxy ([`ProxyHandle::topics`]), made on
    /// first use; their counters go into the snapshot.
    topics: std::sync::OnceLock<crate::topics::Topics>,
}

impl Shared {
    /// A proxy instance in `role`, with its command and (blocking) reading connections.
    fn new(
        system: &ActorSystem,
        config: &ProxyConfig,
        system_id: String,
        role: Role,
        (cmd, reader): (Client, Client),
        in_flight: usize,
    ) -> Self {
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
        let (requests_key, lease_key, consumer, claim_value) = match &role {
            Role::System => (
                keys.requests(&system_id),
                keys.lease(&system_id),
                protocol::CONSUMER_GROUP.to_owned(),
                system_id.clone(),
            ),
            Role::Member(m) => (
                if m.fast {
                    keys.fast_requests(&m.group)
                } else {
                    keys.requests(&m.group)
                },
                keys.member(&m.group, &system_id),
                system_id.clone(),
                m.group.clone(),
            ),
        };
        Shared {
            system: system.clone(),
            stream: Stream::new(requests_key, consumer, in_flight),
            claim_value,
            role,
            groups: Mutex::new(HashMap::new()),
            activations: activation::Activations::default(),
            reply_prefix: keys.reply_prefix(),
            keys,
            lease: Lease::new(lease_key, config.lease_ttl, config.urn_ttl),
            system_id,
            config: config.clone(),
            cmd,
            reader,
            codecs,
            clock: Clock::default(),
            registry: Mutex::new(Registry::default()),
            scan_lock: tokio::sync::Mutex::new(0),
            counters: Counters::default(),
            scripts: Scripts::new(),
            serving: AtomicBool::new(true),
            stop,
            briefs: tokio::sync::Mutex::default(),
            persistence: std::sync::OnceLock::new(),
            topics: std::sync::OnceLock::new(),
        }
    }

    /// Starts the read loop and the writer: (reader, writer).
    fn start_reading(self: &Arc<Self>, block: Duration) -> (JoinHandle<()>, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(self.clone(), rx));
        let reader = tokio::spawn(read_loop(self.clone(), tx, block));
        (reader, writer)
    }

    /// The system's own proxy: this one, or the one a group member belongs to (`None` once
    /// that one is gone).
    fn system_proxy(self: &Arc<Self>) -> Option<Arc<Shared>> {
        match &self.role {
            Role::System => Some(self.clone()),
            Role::Member(m) => m.system.upgrade(),
        }
    }

    /// The Redis key a claimed name stands for: a URN key, or for a pattern group its
    /// pattern key.
    fn claim_key(&self, name: &str) -> String {
        match &self.role {
            Role::Member(m) => m.claim_key.clone(),
            Role::System => self.keys.urn(name),
        }
    }

    /// Redis's persistence settings as read when the system's proxy started.
    fn persistence(&self) -> crate::Persistence {
        self.persistence.get().copied().unwrap_or_default()
    }

    /// This proxy's topics (made on first use).
    pub(super) fn topics(&self) -> &crate::topics::Topics {
        self.topics
            .get_or_init(|| crate::topics::Topics::new(self.config.clone(), self.cmd.clone()))
    }

    /// Publishes the system's snapshot; `watched`: someone reads the snapshots, so it lists
    /// every actor in brief too (what changed since the last base, and now and then a new
    /// base) and lives three intervals, else only those listed in full, living as long as
    /// the next unwatched publish takes.
    async fn publish_snapshot(&self, watched: bool) -> Result<(), fred::error::Error> {
        let interval = self
            .config
            .snapshot_interval
            .unwrap_or(crate::config::DEFAULT_SNAPSHOT_INTERVAL);
        let max_actors = self.config.snapshot_max_actors;
        let mut briefs = self.briefs.lock().await;
        let (snapshot, out, lives) = if watched {
            let (snapshot, out) = briefs.take(&self.system, max_actors).map_err(|e| {
                fred::error::Error::new(fred::error::ErrorKind::Parse, e.to_string())
            })?;
            (snapshot, out, interval)
        } else {
            let snapshot = crate::snapshots::Briefs::take_unwatched(&self.system, max_actors);
            (snapshot, None, interval * crate::snapshots::UNWATCHED_EVERY)
        };
        let published = crate::snapshots::PublishedSystem {
            system_id: self.system_id.clone(),
            interval_ms: interval.as_millis() as u64,
            proxy: self.counters.stats(),
            snapshot,
            groups: self.published_groups(),
            persistence: self.persistence(),
            topics: self.topics.get().map(crate::topics::Topics::stats),
        };
        crate::snapshots::publish(
            &self.cmd,
            &self.keys,
            &published,
            out,
            crate::snapshots::snapshot_ttl(lives),
            self.clock.redis_now_ms().max(0) as u64,
        )
        .await
    }

    /// Whether someone read the snapshots lately (`{ns}:snapshots:watched`).
    async fn watched(&self) -> bool {
        matches!(
            conn::call(&self.cmd, keyed("EXISTS"), vec![owned(self.keys.watched())]).await,
            Ok(Value::Integer(1))
        )
    }

    /// The groups this system is a member of, for its snapshot.
    fn published_groups(&self) -> Vec<crate::snapshots::PublishedGroup> {
        let members: Vec<[Arc<Shared>; 2]> = self.groups().values().map(|h| h.lanes()).collect();
        let mut groups: Vec<crate::snapshots::PublishedGroup> = members
            .iter()
            .filter_map(|[m, fast]| {
                let Role::Member(member) = &m.role else {
                    return None;
                };
                let (name, activations) = if member.pattern {
                    (
                        format!("{}{{id}}", member.name),
                        self.activations.count_under(&member.name),
                    )
                } else {
                    (member.name.clone(), 0)
                };
                Some(crate::snapshots::PublishedGroup {
                    name,
                    group: member.group.clone(),
                    received: m.counters.received.load(Ordering::Relaxed)
                        + fast.counters.received.load(Ordering::Relaxed),
                    activations,
                })
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }
}
