//! Topics: events out of actors, to subscribers anywhere on the same Redis.
//!
//! A [`Topic`] is a name (validated like a URN, inside the namespace) and a delivery mode:
//!
//! - [`DeliveryMode::Live`]: Redis pub/sub. **At most once**: a subscriber receives the events
//!   published while it is subscribed and keeps up; one that is gone (or reconnecting after
//!   a Redis restart) misses what was published meanwhile, and one slower than the events
//!   loses those that find its buffer full, each counted in
//!   [`SubscriptionStats::dropped`] and reported to it as [`TopicError::Lagged`] before its
//!   next event. Lowest latency. On a Redis Cluster it is sharded pub/sub (`SSUBSCRIBE`,
//!   `SPUBLISH`: Redis 7.0 or later): a topic's events go to the node of its slot only, so
//!   patterns ([`Topic::live_pattern`]) are refused there ([`TopicError::Config`]).
//! - [`DeliveryMode::Durable`]: a Redis stream with one consumer group per subscriber group.
//!   **At least once, in order**: every subscriber group receives every event kept by the
//!   topic's [`Retention`], in the order Redis took them (so in publishing order for each
//!   publisher that waits for its `publish`); an event is acknowledged only once the
//!   subscriber asked for the next one, so a subscriber that crashes (or loses Redis)
//!   resumes after the last event it finished, the ones it had taken and not finished
//!   coming again (counted in [`SubscriptionStats::redelivered`]), and so do the few it
//!   finished whose acknowledgement was not sent yet (they are sent in batches as it is
//!   asked for events, once 128 wait or the oldest waited 5 ms, with its next read or on
//!   their own; and when it is closed or dropped). Subscribers of one group share its events (each event
//!   to one of them). A durable subscription reads in the task that asks it for events:
//!   when it holds none, asking sends the next read, so no other task stands between Redis
//!   and its consumer; a subscription nobody asks reads nothing, and takes over nothing from
//!   gone members of its group (those that read do).
//!
//! Nothing grows without bound: a subscription holds at most its
//! [`buffer`](SubscribeRequest::buffer) of events (a live one drops what does not fit, a
//! durable one reads at most that many, and at most 256, once it holds none); a publisher
//! waits for Redis for each event and keeps none; Redis keeps at most the topic's retention of a durable topic, and
//! the pub/sub output buffer of a subscriber that reads all the time.
//!
//! Publish with [`Topics::publish`] (from [`ProxyClient::topics`](crate::ProxyClient::topics)
//! or [`ProxyHandle::topics`](crate::ProxyHandle::topics), a clone of which a handler may
//! keep); subscribe with [`Topics::subscribe`] (a [`Subscription`], a `Stream` of typed
//! events) or [`Topics::subscribe_actor`] (events told, or for a durable topic asked, to an
//! actor: its mailbox's back-pressure reaches Redis). How far durable subscriber groups are
//! behind is in [`Subscription::lag`] and, sampled every
//! [`snapshot_interval`](crate::ProxyConfig::snapshot_interval), in [`TopicsStats::lag`] and
//! [`TopicsStats::pending`] (so in the system's snapshot and the live view) and the
//! `conclib_topic_lag` and `conclib_topic_pending` gauges.

mod actor;
mod durable;
mod lag;
mod link;
mod live;
mod metrics;
mod publish;
mod subscription;
mod topic;
mod wire;

pub use actor::ActorSubscription;
pub use actor::DEFAULT_HANDLE_TIMEOUT;
pub use link::SubscriptionStats;
pub use publish::{Topics, TopicsStats};
pub use subscription::{DEFAULT_BUFFER, DEFAULT_GROUP, SubscribeRequest, Subscription};
pub use topic::{DEFAULT_RETENTION, DeliveryMode, MAX_TOPIC_LEN, Retention, Topic, TopicError};
