//! [`SubscribeRequest`] and the [`Subscription`] it gives: a `Stream` of typed events.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use conclib_codec::{Codec, decode_value};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::durable;
use super::link::{Counters, Link, Raw, SubscribeOptions, SubscriptionStats};
use super::live;
use super::publish::{Topics, Typed};
use super::topic::{DeliveryMode, Topic, TopicError, check_name};
use super::wire;

/// The default [`buffer`](SubscribeRequest::buffer) of a subscription, in events.
pub const DEFAULT_BUFFER: usize = 1024;
/// The default subscriber group of a durable subscription.
pub const DEFAULT_GROUP: &str = "default";

impl Topics {
    /// Subscribes to `topic`; `.await` the request (after its options) for a
    /// [`Subscription`]: a `Stream` of the events decoded as `E`.
    /// A live subscription receives what is published once the `.await` returned; a durable
    /// one, in a subscriber group new to the topic, too (or everything retained:
    /// [`from_start`](SubscribeRequest::from_start)), and in a group that exists, what the
    /// group has not acknowledged yet.
    pub fn subscribe<E>(&self, topic: &Topic) -> SubscribeRequest<E> {
        SubscribeRequest::new(self.clone(), topic.clone())
    }
}

/// A subscription's options; `.await` it for the [`Subscription`]. From
/// [`Topics::subscribe`].
#[must_use = "a subscription request does nothing until awaited"]
pub struct SubscribeRequest<E> {
    pub(super) topics: Topics,
    pub(super) topic: Topic,
    options: SubscribeOptions,
    _event: Typed<E>,
}

impl<E> SubscribeRequest<E> {
    pub(super) fn new(topics: Topics, topic: Topic) -> Self {
        SubscribeRequest {
            topics,
            topic,
            options: SubscribeOptions {
                group: DEFAULT_GROUP.to_owned(),
                consumer: None,
                buffer: DEFAULT_BUFFER,
                from_start: false,
                claim_idle: Duration::from_secs(30),
            },
            _event: Typed::default(),
        }
    }

    /// A durable topic's subscriber group (default [`DEFAULT_GROUP`]): every group receives
    /// every event; the subscribers of one group share them. Ignored for a live topic.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.options.group = group.into();
        self
    }

    /// This subscriber's name in its durable group. A subscriber started again under the
    /// same name (after a crash, a restart) resumes at once with the events it had taken
    /// and not finished; one under a new name leaves them to be claimed by a member of the
    /// group after [`claim_idle`](Self::claim_idle). Default: a random name.
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.options.consumer = Some(consumer.into());
        self
    }

    /// How many events the subscription holds, received and not yet taken (default
    /// [`DEFAULT_BUFFER`], at least 1). A live subscription drops the events that find it
    /// full (counted, reported as [`TopicError::Lagged`]); a durable one reads at most this
    /// many at a time (and at most 256), when it is asked for an event and holds none.
    pub fn buffer(mut self, events: usize) -> Self {
        self.options.buffer = events.max(1);
        self
    }

    /// For a durable subscriber group new to the topic: start with the oldest event the
    /// topic keeps, rather than with those published from now on.
    pub fn from_start(mut self) -> Self {
        self.options.from_start = true;
        self
    }

    /// How long an event taken by another subscriber of the group stays unfinished before
    /// this one takes it over (that subscriber is taken to be gone). Default 30 s.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.options.claim_idle = idle;
        self
    }
}

impl<E: DeserializeOwned + Send + 'static> IntoFuture for SubscribeRequest<E> {
    type Output = Result<Subscription<E>, TopicError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}

impl<E: DeserializeOwned + Send + 'static> SubscribeRequest<E> {
    async fn start(self) -> Result<Subscription<E>, TopicError> {
        check_name(&self.options.group)?;
        if let Some(consumer) = &self.options.consumer {
            check_name(consumer)?;
        }
        let delivery = self.topic.delivery();
        if self.topic.is_pattern() && delivery != DeliveryMode::Live {
            return Err(TopicError::InvalidName(
                "only live topics have patterns".into(),
            ));
        }
        let mut counters = Counters::default();
        if delivery == DeliveryMode::Durable {
            let key = wire::durable_key(&self.topics.config().namespace, self.topic.name());
            counters.durable = Some((key, self.options.group.clone()));
        }
        let counters = Arc::new(counters);
        let source = match delivery {
            DeliveryMode::Live => {
                let (tx, rx) = mpsc::channel(self.options.buffer);
                let link = live::start(&self.topics, &self.topic, tx, counters.clone()).await?;
                Source::Live { rx, _link: link }
            }
            DeliveryMode::Durable => Source::Durable(Box::new(
                durable::start(&self.topics, &self.topic, &self.options, counters.clone()).await?,
            )),
        };
        self.topics.register(&counters);
        Ok(Subscription {
            source,
            counters,
            reported_drops: 0,
            codec: self.topics.config().codec.clone(),
            topic: self.topic,
            close_bound: self.topics.config().shutdown_timeout,
            _event: Typed::default(),
        })
    }
}

/// A subscription to a topic: a `Stream` of its events decoded as `E`, from
/// [`Topics::subscribe`].
///
/// Each item is an event, or a [`TopicError`] about the events between two: `Lagged` (a
/// live subscription dropped events), `Codec` (an event that is not an `E`). The stream
/// ends only when the subscription is dropped. A durable subscription takes an event as
/// finished when the next one is asked for (or at [`close`](Self::close)), and acknowledges
/// it in a batch soon after (see the [module docs](crate::topics)): an event being handled
/// when the process dies is received again. Redis restarts are handled inside:
/// the subscription subscribes again (a durable one creates its group again if Redis lost
/// it, and reads from the oldest event then).
///
/// A durable subscription talks to Redis in the task that polls it: asked for an event when
/// it holds none, it sends the next read (after the acknowledgements that are due); while
/// nobody asks, it reads nothing and claims nothing.
pub struct Subscription<E> {
    source: Source,
    counters: Arc<Counters>,
    reported_drops: u64,
    codec: Arc<dyn Codec>,
    topic: Topic,
    /// How long [`close`](Subscription::close) may take
    /// ([`ProxyConfig::shutdown_timeout`](crate::ProxyConfig::shutdown_timeout)).
    close_bound: Duration,
    _event: Typed<E>,
}

/// Where a subscription's events come from.
enum Source {
    /// A live subscription's buffer, filled by the task reading its connection (which
    /// counts the drops while the consumer is busy).
    Live {
        rx: mpsc::Receiver<Raw>,
        _link: Link,
    },
    /// A durable subscription's reads, made by its consumer's task as it asks for events.
    Durable(Box<durable::Durable>),
}

impl<E> std::fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<E> Subscription<E> {
    /// The topic subscribed to.
    #[must_use]
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// What the subscription did so far.
    #[must_use]
    pub fn stats(&self) -> SubscriptionStats {
        self.counters.read()
    }

    /// How far a durable subscription's group is behind: the events in the topic not yet
    /// delivered to any subscriber of the group (Redis 7's `XINFO GROUPS` `lag`). `None` for a
    /// live subscription, or when Redis cannot tell.
    ///
    /// # Errors
    /// [`TopicError::Unavailable`], [`TopicError::Redis`].
    pub async fn lag(&self) -> Result<Option<u64>, TopicError> {
        match &self.source {
            Source::Durable(durable) => durable.lag().await,
            Source::Live { .. } => Ok(None),
        }
    }

    /// Ends the subscription: acknowledges the events taken so far, the last one included
    /// (a durable topic's), and closes its connection. Dropping it does the same without
    /// waiting, except that the last event taken is not acknowledged (it may not have been
    /// finished): it comes again. Returns within the
    /// [`shutdown_timeout`](crate::ProxyConfig::shutdown_timeout) of its client's
    /// configuration whatever Redis does (what was not acknowledged by then comes again).
    pub async fn close(self) {
        let bound = self.close_bound;
        let closing = async move {
            match self.source {
                Source::Durable(durable) => durable.close().await,
                Source::Live { rx, _link: link } => {
                    drop(rx);
                    for task in &link.tasks {
                        task.abort();
                    }
                    let _ = fred::prelude::ClientLike::quit(&link.client).await;
                }
            }
        };
        let _ = tokio::time::timeout(bound, closing).await;
    }
}

impl<E: DeserializeOwned> Subscription<E> {
    /// The next item, as `StreamExt::next` gives it (without needing the trait): an event,
    /// or a [`TopicError`] about the events between two.
    pub async fn recv(&mut self) -> Option<Result<E, TopicError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<E: DeserializeOwned> Stream for Subscription<E> {
    type Item = Result<E, TopicError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let raw = match &mut this.source {
            // The consumer asks for the next event: it finished the last one.
            Source::Durable(durable) => std::task::ready!(durable.poll_next(cx)),
            Source::Live { rx, .. } => {
                let dropped = this.counters.dropped.load(Ordering::Relaxed);
                if dropped > this.reported_drops {
                    let missed = dropped - this.reported_drops;
                    this.reported_drops = dropped;
                    return Poll::Ready(Some(Err(TopicError::Lagged { missed })));
                }
                let Some(raw) = std::task::ready!(rx.poll_recv(cx)) else {
                    return Poll::Ready(None);
                };
                raw
            }
        };
        this.counters.delivered.fetch_add(1, Ordering::Relaxed);
        let decoded = match raw.codec {
            Some(codec) => {
                decode_value::<E>(&*codec, &raw.body).map_err(|e| TopicError::Codec(e.to_string()))
            }
            None => Err(TopicError::Codec(format!(
                "the event names a codec this process does not know (this one uses {})",
                this.codec.name()
            ))),
        };
        if decoded.is_err() {
            this.counters.undecodable.fetch_add(1, Ordering::Relaxed);
        }
        Poll::Ready(Some(decoded))
    }
}

#[cfg(test)]
mod tests {
    use super::Subscription;

    /// A subscription moves between tasks and is shared by reference, as before its
    /// durable reads moved into it.
    #[test]
    fn a_subscription_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Subscription<u64>>();
    }
}
