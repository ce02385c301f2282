//! [`Topic`]: a topic's name, delivery mode, retention and codec; [`TopicError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use conclib_codec::Codec;

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 200;

/// How a topic's events reach its subscribers (see the [module docs](crate::topics)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryMode {
    /// Redis pub/sub: at most once, lowest latency.
    Live,
    /// A Redis stream with a consumer group per subscriber group: at least once, ordered,
    /// resumable, bounded by the topic's [`Retention`].
    Durable,
}

/// How much of a durable topic Redis keeps (trimmed as events are published).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// About the last `n` events (`XADD MAXLEN ~ n`: whole stream nodes, so a little more).
    MaxLen(u64),
    /// Events younger than this, by the publisher's clock (`XADD MINID ~`).
    MaxAge(Duration),
}

/// The default retention of a durable topic: about the last 100,000 events.
pub const DEFAULT_RETENTION: Retention = Retention::MaxLen(100_000);

/// A topic: its name, its delivery mode, its retention, and the codec its events are
/// published with. Publishers and subscribers of a topic use the same description.
///
/// ```
/// use conclib_redis::topics::{DeliveryMode, Retention, Topic};
/// use std::time::Duration;
/// let progress = Topic::live("jobs.progress").unwrap();
/// let orders = Topic::durable("orders.placed").unwrap().retention(Retention::MaxAge(Duration::from_secs(3600)));
/// assert_eq!(orders.delivery(), DeliveryMode::Durable);
/// assert!(Topic::live("has space").is_err());
/// assert!(Topic::live("a{b}").is_err());
/// ```
#[derive(Clone)]
pub struct Topic {
    pub(super) name: Arc<str>,
    pub(super) delivery: DeliveryMode,
    pub(super) retention: Retention,
    pub(super) codec: Option<Arc<dyn Codec>>,
    /// A live pattern (`orders.*`): subscribed to, never published to.
    pub(super) pattern: bool,
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.name)
            .field("delivery", &self.delivery)
            .field("retention", &self.retention)
            .field("codec", &self.codec.as_ref().map(|c| c.name()))
            .field("pattern", &self.pattern)
            .finish()
    }
}

impl Topic {
    /// A live topic (Redis pub/sub).
    ///
    /// # Errors
    /// [`TopicError::InvalidName`] unless the name is 1 to [`MAX_TOPIC_LEN`] bytes of
    /// printable text without whitespace, braces or the glob characters `*?[]`.
    pub fn live(name: impl AsRef<str>) -> Result<Topic, TopicError> {
        Topic::new(name.as_ref(), DeliveryMode::Live)
    }

    /// A durable topic (a Redis stream), keeping [`DEFAULT_RETENTION`] unless told otherwise.
    ///
    /// # Errors
    /// As [`Topic::live`].
    pub fn durable(name: impl AsRef<str>) -> Result<Topic, TopicError> {
        Topic::new(name.as_ref(), DeliveryMode::Durable)
    }

    fn new(name: &str, delivery: DeliveryMode) -> Result<Topic, TopicError> {
        check_name(name)?;
        Ok(Topic {
            name: name.into(),
            delivery,
            retention: DEFAULT_RETENTION,
            codec: None,
            pattern: false,
        })
    }

    /// The live topics whose names match `pattern`, to subscribe to (`orders.*`: `*` any
    /// characters, `?` one; Redis's `PSUBSCRIBE`). Publishing to it is refused, and so is
    /// subscribing to it on a Redis Cluster ([`TopicError::Config`]: pub/sub is sharded
    /// there, by topic).
    ///
    /// ```
    /// let every_order = conclib_redis::topics::Topic::live_pattern("orders.*").unwrap();
    /// assert!(conclib_redis::topics::Topic::live_pattern("orders.[ab]").is_err());
    /// ```
    ///
    /// # Errors
    /// [`TopicError::InvalidName`] as for [`Topic::live`], `*` and `?` allowed.
    pub fn live_pattern(pattern: impl AsRef<str>) -> Result<Topic, TopicError> {
        let pattern = pattern.as_ref();
        check_name(&pattern.replace(['*', '?'], "x"))?;
        let mut topic = Topic::new(&pattern.replace(['*', '?'], "x"), DeliveryMode::Live)?;
        topic.name = pattern.into();
        topic.pattern = true;
        Ok(topic)
    }

    /// Whether this is a pattern ([`Topic::live_pattern`]).
    #[must_use]
    pub fn is_pattern(&self) -> bool {
        self.pattern
    }

    /// How much of a durable topic Redis keeps (ignored for a live one).
    #[must_use]
    pub fn retention(mut self, retention: Retention) -> Topic {
        self.retention = retention;
        self
    }

    /// The codec events are published with; default: the configuration's
    /// ([`ProxyConfig::codec`](crate::ProxyConfig::codec)). Subscribers decode each event
    /// with the codec it names, so a topic read by the Python client is published with
    /// `MsgPack`.
    #[must_use]
    pub fn codec(mut self, codec: impl Codec) -> Topic {
        self.codec = Some(Arc::new(codec));
        self
    }

    /// The topic's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its delivery mode.
    #[must_use]
    pub fn delivery(&self) -> DeliveryMode {
        self.delivery
    }

    /// Its retention (meaningful for a durable topic).
    #[must_use]
    pub fn retention_policy(&self) -> Retention {
        self.retention
    }
}

/// Topic names become parts of key names and channel names, inside a hash tag.
pub(super) fn check_name(name: &str) -> Result<(), TopicError> {
    let bad = |why: &str| TopicError::InvalidName(format!("topic {name:?}: {why}"));
    if name.is_empty() || name.len() > MAX_TOPIC_LEN {
        return Err(bad(&format!("must be 1 to {MAX_TOPIC_LEN} bytes long")));
    }
    conclib_core::validate_urn(name).map_err(|e| bad(&e.to_string()))?;
    if let Some(c) = name.chars().find(|c| "{}*?[]".contains(*c)) {
        return Err(bad(&format!(
            "contains {c:?}: no braces or glob characters"
        )));
    }
    Ok(())
}

/// Why publishing or subscribing failed, or what a subscription reports between events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic name (or a subscriber group or consumer name) is not usable.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// The event could not be encoded, or one received could not be decoded as the
    /// subscription's type (the subscription goes on with the next one; a durable one
    /// acknowledges it as it would a handled event).
    #[error("codec error: {0}")]
    Codec(String),
    /// The encoded event is larger than [`ProxyConfig::max_payload`](crate::ProxyConfig::max_payload).
    #[error("event too large: {0}")]
    TooLarge(String),
    /// A live subscription was too slow: this many events found its buffer full and were
    /// dropped (reported once, before the next event it receives).
    #[error("the subscriber fell behind: {missed} events dropped")]
    Lagged {
        /// Events dropped since the last report.
        missed: u64,
    },
    /// Redis could not be reached (nothing was published), or, at
    /// [`Durability::Replicas`](crate::Durability::Replicas), a durable event did not reach
    /// the replicas in time (it may still be delivered).
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    /// Redis refused a command.
    #[error("Redis error: {0}")]
    Redis(String),
    /// The configuration is unusable (or a pattern was subscribed to on a Redis Cluster).
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub(crate) fn redis_error(error: &fred::error::Error) -> TopicError {
    if crate::error::is_connection_error(error) {
        TopicError::Unavailable(error.to_string())
    } else {
        TopicError::Redis(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Topic::live("orders.placed").is_ok());
        assert!(Topic::durable("shop:orders:7").is_ok());
        for bad in ["", "a b", "a{b", "a}b", "a*", "a?", "a[b]", "tab\t"] {
            assert!(
                matches!(Topic::live(bad), Err(TopicError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(Topic::live("x".repeat(MAX_TOPIC_LEN)).is_ok());
        assert!(Topic::live("x".repeat(MAX_TOPIC_LEN + 1)).is_err());
    }
}
