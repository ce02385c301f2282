//! A proxy instance ([`Shared`]): what its parts are (each in a file of its own: the lease,
//! the request stream, the scripts, the URN registry, the counters, the clock) and what it
//! serves ([`Role`]: a system's own stream, or a group's as one of its members).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};

use conclib_core::ActorSystem;
use fred::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ProxyConfig;
use crate::protocol::{self, Keys};
use crate::unacked::EntryId;
use conclib_codec::{Codec, builtin_codec};

use super::scale::activations::Activations;
use super::scale::record::AwaitingAck;
use super::scripts::{Script, Scripts};
use super::serve::admission::Admission;
use super::serve::clock::Clock;
use super::serve::counters::Counters;
use super::serve::lease_state::Lease;
use super::serve::registry::Registry;
use super::serve::stream::Stream;

/// What one proxy instance serves.
pub(super) enum Role {
    /// The system's own request stream and the URNs of its actors.
    System,
    /// One group's shared stream, as one of its members.
    Member(Box<Member>),
}

/// A proxy instance (a system's own, or one lane of a group member: see [`Role`]): what
/// it is configured with, and its parts, which the other files of the proxy act on.
pub(super) struct Shared {
    pub(super) system: ActorSystem,
    pub(super) config: ProxyConfig,
    pub(super) system_id: String,
    pub(super) role: Role,
    /// What the URN keys this instance claims hold: the system id, or the group id.
    pub(super) claim_value: String,
    /// The request stream this instance reads, and what it read and has not acknowledged.
    pub(super) stream: Stream,
    /// Requests read here whose handling wrote an activation's state, until acknowledged
    /// (`scale/applied.rs`).
    pub(super) awaiting_ack: AwaitingAck,
    /// The groups this system's proxy is a member of, by URN or pattern prefix.
    pub(super) groups: Mutex<HashMap<String, MemberHandle>>,
    /// URN patterns this system activates actors for, and the activations alive.
    pub(super) activations: Activations,
    /// The system's pending counts and limits, shared with its group members' instances
    /// (`serve/admission.rs`).
    pub(super) admission: Arc<Admission>,
    pub(super) keys: Keys,
    pub(super) reply_prefix: String,
    /// The lease this instance holds, and until when it surely holds it.
    pub(super) lease: Lease,
    pub(super) cmd: Client,
    pub(super) reader: Client,
    pub(super) codecs: Vec<Arc<dyn Codec>>,
    /// Redis's clock, as far as this process can tell.
    pub(super) clock: Clock,
    pub(super) registry: Mutex<Registry>,
    /// One look at the system's URNs at a time; holds the position in the system's URN
    /// journal read up to ([`ActorSystem::urn_changes_since`]).
    pub(super) scan_lock: tokio::sync::Mutex<u64>,
    pub(super) counters: Counters,
    pub(super) scripts: Scripts,
    pub(super) serving: AtomicBool,
    /// Where its handle's shutdown is ([`ShutdownPhase`](super::readiness::ShutdownPhase) as
    /// a number): readiness probes fail from its first step.
    pub(super) shutdown_phase: std::sync::atomic::AtomicU8,
    /// Set while [`ProxyHandle::drain`](crate::ProxyHandle::drain) hands the system's
    /// activations to the other members: a request for a pattern's URN not live here goes
    /// to the pattern's group, never activated here again (`proxy/drain.rs`).
    pub(super) draining: AtomicBool,
    pub(super) stop: watch::Sender<bool>,
    /// What the snapshots published of the actors in brief; one publish at a time.
    pub(super) briefs: tokio::sync::Mutex<crate::snapshots::Briefs>,
    /// Redis's persistence settings, read once as the proxy started.
    pub(super) persistence: std::sync::OnceLock<crate::persistence::Persistence>,
    /// Topics published and subscribed through this proxy ([`ProxyHandle::topics`]), made on
    /// first use; their counters go into the snapshot.
    ///
    /// [`ProxyHandle::topics`]: crate::ProxyHandle::topics
    pub(super) topics: std::sync::OnceLock<crate::topics::Topics>,
}

impl Shared {
    /// Whether a request's entry is still this instance's to handle: always in a system's
    /// own stream; in a group's, while it is pending on this member.
    pub(super) async fn still_mine(&self, entry: EntryId) -> bool {
        matches!(self.role, Role::System)
            || super::serve::stream::still_pending(&self.cmd, &self.stream, entry).await
    }

    /// A proxy instance in `role`, with its command and (blocking) reading connections.
    pub(super) fn new(
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
            awaiting_ack: AwaitingAck::default(),
            claim_value,
            role,
            groups: Mutex::new(HashMap::new()),
            activations: {
                let activations = Activations::default();
                activations.cap.configure(&config.overload);
                activations
            },
            admission: Arc::new(Admission::new(&config.overload)),
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
            shutdown_phase: std::sync::atomic::AtomicU8::new(0),
            draining: AtomicBool::new(false),
            stop,
            briefs: tokio::sync::Mutex::default(),
            persistence: std::sync::OnceLock::new(),
            topics: std::sync::OnceLock::new(),
        }
    }

    /// The system's own proxy: this one, or the one a group member belongs to (`None` once
    /// that one is gone).
    pub(super) fn system_proxy(self: &Arc<Self>) -> Option<Arc<Shared>> {
        match &self.role {
            Role::System => Some(self.clone()),
            Role::Member(m) => m.system.upgrade(),
        }
    }

    /// The Redis key a claimed name stands for: a URN key, or for a pattern group its
    /// pattern key.
    pub(super) fn claim_key(&self, name: &str) -> String {
        match &self.role {
            Role::Member(m) => m.claim_key.clone(),
            Role::System => self.keys.urn(name),
        }
    }

    /// The TTL of an activation's URN key: `activation_urn_ttl`, or `urn_ttl` in a Redis
    /// Cluster, where no takeover frees a gone holder's keys ([`ProxyConfig::activation_urn_ttl`]).
    ///
    /// [`ProxyConfig::activation_urn_ttl`]: crate::ProxyConfig::activation_urn_ttl
    pub(super) fn activation_urn_ttl(&self) -> std::time::Duration {
        if self.cmd.is_clustered() {
            self.config.urn_ttl
        } else {
            self.config.activation_urn_ttl.max(self.config.urn_ttl)
        }
    }

    /// Redis's persistence settings as read when the system's proxy started.
    pub(super) fn persistence(&self) -> crate::persistence::Persistence {
        self.persistence.get().copied().unwrap_or_default()
    }

    /// This proxy's topics (made on first use).
    pub(super) fn topics(&self) -> &crate::topics::Topics {
        self.topics
            .get_or_init(|| crate::topics::Topics::new(self.config.clone(), self.cmd.clone()))
    }

    /// What the proxy did so far: its counters, and the system's refusals for overload,
    /// requests pending, evictions and activations shed.
    pub(super) fn stats(&self) -> crate::stats::ProxyStats {
        let mut stats = self.counters.stats();
        let (overloaded, overloaded_tells, pending) = self.admission.counts();
        let (evicted, shed) = self.activations.cap.counts();
        stats.overloaded = overloaded;
        stats.overloaded_tells = overloaded_tells;
        stats.pending = pending;
        stats.evicted = evicted;
        stats.shed = shed;
        stats.activations = self.activations.live().len() as u64;
        stats
    }

    pub(super) fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn groups(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, MemberHandle>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a member instance serves.
pub(super) struct Member {
    /// The group id: `~{urn}` or `~{prefix}*`.
    pub(super) group: String,
    /// The key naming the group: `{ns}:urn:{urn}` or `{ns}:pattern:{prefix}`.
    pub(super) claim_key: String,
    /// The URN served, or the pattern's prefix.
    pub(super) name: String,
    /// Whether `name` is a pattern prefix.
    pub(super) pattern: bool,
    /// Whether this instance reads the group's fast lane ([`Keys::fast_requests`]: its
    /// `Priority::High` requests) rather than its stream.
    ///
    /// [`Keys::fast_requests`]: crate::protocol::Keys::fast_requests
    pub(super) fast: bool,
    /// The system's own proxy.
    pub(super) system: Weak<Shared>,
    pub(super) trim: Script,
    /// Deletes a consumer with nothing pending ([`GROUP_FORGET_SCRIPT`]).
    ///
    /// [`GROUP_FORGET_SCRIPT`]: crate::protocol::GROUP_FORGET_SCRIPT
    pub(super) forget: Script,
}

impl Member {
    /// Whether a request for `urn` belongs in this group's stream.
    pub(super) fn serves(&self, urn: &str) -> bool {
        if self.pattern {
            protocol::pattern_prefix(urn) == Some(self.name.as_str())
        } else {
            urn == self.name
        }
    }
}

/// A running membership, held by the system's proxy: the instance reading the group's
/// stream, and the one reading its fast lane (same member lease, same token).
pub(super) struct MemberHandle {
    pub(super) shared: Arc<Shared>,
    pub(super) fast: Arc<Shared>,
    /// The read loops and writers of both instances.
    pub(super) tasks: Vec<JoinHandle<()>>,
    /// Their upkeep loops.
    pub(super) heartbeats: Vec<JoinHandle<()>>,
}

impl MemberHandle {
    pub(super) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Both instances: the group's stream's, then its fast lane's.
    pub(super) fn lanes(&self) -> [Arc<Shared>; 2] {
        [self.shared.clone(), self.fast.clone()]
    }
}

impl Drop for MemberHandle {
    /// Dropped without leaving (the proxy handle was dropped): stops at once, as the
    /// system's proxy does; what it took is claimed by the others once its lease lapses.
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(&self.heartbeats) {
            t.abort();
        }
        if !self.tasks.is_empty()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let readers = [self.shared.reader.clone(), self.fast.reader.clone()];
            rt.spawn(async move {
                for reader in readers {
                    let _ = reader.quit().await;
                }
            });
        }
    }
}
