//! [`Topics`]: publishing events, and the entry point of subscriptions.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclib_codec::{Codec, encode_value};
use fred::prelude::*;
use fred::types::streams::XCap;
use serde::Serialize;

use super::lag::Subscriptions;
use super::link::Counters;
use super::topic::{DeliveryMode, Retention, Topic, TopicError, redis_error};
use super::wire;
use crate::config::ProxyConfig;

/// Publishes events to topics and subscribes to them: from a
/// [`ProxyClient`](crate::ProxyClient) ([`topics`](crate::ProxyClient::topics)) or a serving
/// system's [`ProxyHandle`](crate::ProxyHandle) ([`topics`](crate::ProxyHandle::topics)).
/// Cloning is cheap; clones share the connection and the counters, so a clone kept by an
/// actor publishes from its handlers. It publishes while the client or proxy it came from
/// runs.
///
/// ```no_run
/// # async fn demo(client: conclib_redis::ProxyClient) -> Result<(), conclib_redis::topics::TopicError> {
/// use conclib_redis::topics::Topic;
/// use futures_util::StreamExt;
///
/// let topic = Topic::durable("orders.placed")?;
/// let mut orders = client.topics().subscribe::<u64>(&topic).group("billing").await?;
/// client.topics().publish(&topic, &42u64).await?;
/// assert_eq!(orders.next().await, Some(Ok(42)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Topics {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) config: ProxyConfig,
    /// A command connection of the client or proxy (shared with its other commands).
    pub(super) cmd: Client,
    published: AtomicU64,
    publish_failures: AtomicU64,
    /// The subscriptions made through this handle that still exist, and their groups' lag
    /// as sampled last.
    subscriptions: Arc<Subscriptions>,
}

impl fmt::Debug for Topics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topics")
            .field("namespace", &self.inner.config.namespace)
            .finish_non_exhaustive()
    }
}

/// What a [`Topics`] handle did so far: its publishing and its subscriptions (those still
/// open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TopicsStats {
    /// Events Redis took from this handle.
    pub published: u64,
    /// Publishes that failed (Redis unavailable or refusing, an event too large or that did
    /// not encode).
    pub publish_failures: u64,
    /// Subscriptions open now.
    pub subscriptions: u64,
    /// Events the open subscriptions received from Redis.
    pub received: u64,
    /// Events they handed to their consumer.
    pub delivered: u64,
    /// Events live subscriptions dropped because their buffer was full.
    pub dropped: u64,
    /// Events durable subscriptions received again (taken before and not acknowledged).
    pub redelivered: u64,
    /// Events buffered in the subscriptions now, received and not yet handed over.
    pub buffered: u64,
    /// Events the groups of the open durable subscriptions have not been delivered yet,
    /// summed over the groups (`XINFO GROUPS`' `lag`; a group whose lag Redis cannot tell,
    /// before Redis 7.0 or after entries were deleted from the middle of its topic, adds
    /// nothing). Sampled every [`snapshot_interval`](ProxyConfig::snapshot_interval) (never,
    /// without one), so as old as that.
    #[serde(default)]
    pub lag: u64,
    /// Events delivered to those groups and not acknowledged yet (being handled, or taken
    /// by a subscriber that is gone), sampled with [`lag`](Self::lag).
    #[serde(default)]
    pub pending: u64,
}

impl Topics {
    pub(crate) fn new(config: ProxyConfig, cmd: Client) -> Topics {
        Topics {
            inner: Arc::new(Inner {
                config,
                subscriptions: Arc::new(Subscriptions::new(cmd.clone())),
                cmd,
                published: AtomicU64::new(0),
                publish_failures: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes `event` to `topic`, encoded with the topic's codec (default: the
    /// configuration's), and returns once Redis took it: a live event is then on its way to
    /// the subscribers connected now, a durable one is kept for every subscriber group (up
    /// to the topic's retention). At [`Durability::Replicas`](crate::Durability::Replicas)
    /// a durable event is published once the replicas asked for hold it too, so that the
    /// promotion of one of them keeps it (a live one waits for nothing: it is delivered at
    /// most once). Events one task publishes one after the other reach each subscriber in
    /// that order.
    ///
    /// # Errors
    /// [`TopicError::Codec`], [`TopicError::TooLarge`] (over
    /// [`ProxyConfig::max_payload`]), [`TopicError::Unavailable`] (nothing was published:
    /// Redis did not take it within [`ProxyConfig::command_timeout`]; or a durable event
    /// did not reach the replicas the durability asks for in time: it may be delivered;
    /// the write and its `WAIT`s together within the command timeout),
    /// [`TopicError::Redis`].
    pub async fn publish<E: Serialize + ?Sized>(
        &self,
        topic: &Topic,
        event: &E,
    ) -> Result<(), TopicError> {
        let config = &self.inner.config;
        // A durable event's write and its `WAIT`s within the command timeout, as a lone
        // write is (a live event's one command is bounded by it on its own).
        let result = if matches!(topic.delivery, DeliveryMode::Durable) {
            config
                .durability
                .within(
                    config.command_timeout,
                    self.publish_now(topic, event),
                    || {
                        TopicError::Unavailable(format!(
                            "not replicated within the command timeout ({:?}); the event may or may not be delivered",
                            config.command_timeout
                        ))
                    },
                )
                .await
        } else {
            self.publish_now(topic, event).await
        };
        let counter = match result {
            Ok(()) => &self.inner.published,
            Err(_) => &self.inner.publish_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::topics::metrics::published(topic.delivery(), result.is_ok());
        result
    }

    async fn publish_now<E: Serialize + ?Sized>(
        &self,
        topic: &Topic,
        event: &E,
    ) -> Result<(), TopicError> {
        if topic.pattern {
            return Err(TopicError::InvalidName(format!(
                "{} is a pattern: subscribe to it, publish to a topic",
                topic.name
            )));
        }
        let config = &self.inner.config;
        let codec: &dyn Codec = match &topic.codec {
            Some(c) => &**c,
            None => &*config.codec,
        };
        let body = encode_value(codec, event).map_err(|e| TopicError::Codec(e.to_string()))?;
        if body.len() > config.max_payload {
            return Err(TopicError::TooLarge(format!(
                "{} bytes, the limit is {}",
                body.len(),
                config.max_payload
            )));
        }
        let ns = &config.namespace;
        let cmd = &self.inner.cmd;
        // fred's typed commands, not `conn::call`: fred writes a custom command out on its
        // own (a system call and a packet each), while typed ones queued together leave in
        // one write, as many tasks publishing at once need.
        // Bounded by the connection's command timeout (`ProxyConfig::command_timeout`).
        let sent: Result<Value, _> = match topic.delivery {
            DeliveryMode::Live => {
                let frame = Value::Bytes(wire::encode_live(codec.name(), &body).into());
                let channel = wire::live_channel(ns, &topic.name);
                // On a Cluster, sharded pub/sub: to the node of the channel's slot only,
                // where its subscribers are (`PUBLISH` would go to every node).
                if cmd.is_clustered() {
                    cmd.spublish(channel, frame).await
                } else {
                    cmd.publish(channel, frame).await
                }
            }
            DeliveryMode::Durable => {
                let cap: XCap = match topic.retention {
                    Retention::MaxLen(n) => ("MAXLEN", "~", clamp(n)).try_into(),
                    Retention::MaxAge(age) => {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap_or_default();
                        let min = now.saturating_sub(age).as_millis();
                        ("MINID", "~", min.to_string()).try_into()
                    }
                }
                .map_err(|e| redis_error(&e))?;
                let fields: [(&'static str, Value); 3] = [
                    (wire::field::VERSION, Value::Integer(wire::VERSION.into())),
                    (wire::field::CODEC, Value::from_static_str(codec.name())),
                    (wire::field::BODY, Value::Bytes(body.into())),
                ];
                let key = wire::durable_key(ns, &topic.name);
                let sent = config.durability.sending(cmd);
                let added: Result<Value, _> =
                    cmd.xadd(&key, false, cap, "*", Vec::from(fields)).await;
                added.map_err(|e| redis_error(&e))?;
                // Published once a promotion would keep the event (`Durability`): the
                // promoted replica's stream would lack it, and no subscriber would see it.
                return config
                    .durability
                    .replicated(cmd, &key, &sent)
                    .await
                    .map_err(|e| {
                        TopicError::Unavailable(format!(
                            "{e}; the event may or may not be delivered"
                        ))
                    });
            }
        };
        sent.map(drop).map_err(|e| redis_error(&e))
    }

    /// What this handle did so far (see [`TopicsStats`]).
    #[must_use]
    pub fn stats(&self) -> TopicsStats {
        let mut stats = TopicsStats {
            published: self.inner.published.load(Ordering::Relaxed),
            publish_failures: self.inner.publish_failures.load(Ordering::Relaxed),
            lag: self.inner.subscriptions.lag.load(Ordering::Relaxed),
            pending: self.inner.subscriptions.pending.load(Ordering::Relaxed),
            ..TopicsStats::default()
        };
        let mut subscriptions = self.inner.subscriptions.registry();
        subscriptions.list.retain(|weak| {
            let Some(c) = weak.upgrade() else {
                return false;
            };
            let read = c.read();
            stats.subscriptions += 1;
            stats.received += read.received;
            stats.delivered += read.delivered;
            stats.dropped += read.dropped;
            stats.redelivered += read.redelivered;
            stats.buffered += read.buffered;
            true
        });
        stats
    }

    pub(super) fn register(&self, counters: &Arc<Counters>) {
        self.inner
            .subscriptions
            .register(counters, self.inner.config.snapshot_interval);
    }

    pub(super) fn config(&self) -> &ProxyConfig {
        &self.inner.config
    }

    pub(super) fn cmd(&self) -> &Client {
        &self.inner.cmd
    }

    /// How long a durable subscriber blocks in one read.
    pub(super) const BLOCK: Duration = Duration::from_millis(1000);
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Keeps a type parameter without owning one (the subscription's event type).
pub(super) type Typed<E> = PhantomData<fn() -> E>;
