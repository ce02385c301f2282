//! Errors of the client, the proxy, the Redis daemon and the configuration.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use conclib_core::AskError;

/// Why connecting a [`ProxyClient`](crate::ProxyClient) or resolving a URN failed, and the
/// client's own account of a failed ask or tell.
///
/// Asks and tells themselves answer the core's [`AskError`], as every other kind of ref
/// does (converted with `From`, below): `E` is the message's own error type, and a handler
/// returning `Err(e)` reaches the client as [`AskError::Handler`]`(e)`, decoded from the wire.
/// Every other variant is one distinct failure of the path between client and actor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError<E = Infallible> {
    /// No live actor has this URN in any system serving the namespace (answered at once, not
    /// after a timeout).
    #[error("no actor with URN {urn} is reachable through the proxy")]
    UnknownUrn {
        /// The URN asked for.
        urn: String,
    },
    /// The actor does not expose this message (it is not in its `Actor::REMOTE`), or does not
    /// handle it.
    #[error("actor {urn} does not expose message {message}")]
    UnknownMessage {
        /// The URN asked for.
        urn: String,
        /// The message's wire name.
        message: String,
    },
    /// No member serving the URN has this message at a version it can decode: a rolling
    /// upgrade's new message before any member of the new build serves, or a message
    /// whose fields' version differs under a codec that reads fields by position
    /// (bincode). Refused at once, never decoded wrong; not handled (the README,
    /// "Upgrading a running cluster").
    #[error("no member serving {urn} has message {message} at a version it can decode")]
    UnsupportedVersion {
        /// The URN asked for.
        urn: String,
        /// The message's wire name.
        message: String,
    },
    /// The handler returned this error.
    #[error("the handler returned an error: {0:?}")]
    Handler(E),
    /// The handler panicked; holds the panic message.
    #[error("the handler panicked: {0}")]
    Panicked(String),
    /// No answer within the ask's timeout. The request may still be processed (before its
    /// deadline) or may have been dropped as expired.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The actor stopped before answering.
    #[error("actor {urn} stopped before answering")]
    ActorStopped {
        /// The URN asked for.
        urn: String,
    },
    /// The actor dropped the request without answering.
    #[error("actor {urn} dropped the request without answering")]
    NoResponse {
        /// The URN asked for.
        urn: String,
    },
    /// The actor's mailbox was full.
    #[error("actor {urn} has a full mailbox")]
    MailboxFull {
        /// The URN asked for.
        urn: String,
    },
    /// The proxy refused the request at once, before it queued: more requests were pending
    /// for its URN, its pattern or the whole system than the limit allows (the crate docs,
    /// "Overload"). Not handled; send it again later.
    #[error(
        "actor {urn} is overloaded: {depth} requests pending for its {scope}, the limit is {limit}"
    )]
    Overloaded {
        /// The URN asked for.
        urn: String,
        /// Which limit refused it.
        scope: crate::overload::OverloadScope,
        /// The limit.
        limit: u64,
        /// How many requests were pending there.
        depth: u64,
    },
    /// A payload could not be encoded or decoded: the message (here or at the proxy), or the
    /// response or error (at the proxy or here).
    #[error("codec error: {0}")]
    Codec(String),
    /// The message or its answer is larger than the configured limit.
    #[error("payload too large: {0}")]
    TooLarge(String),
    /// The proxy could not read the request (bad protocol version, unknown codec, ...).
    #[error("the proxy rejected the request: {0}")]
    BadRequest(String),
    /// Redis could not be reached, or the connection was lost while waiting. Like a timeout,
    /// an ask that fails this way after its request was written may still be handled; a
    /// request is never sent later on the caller's behalf (requests fail fast while the
    /// connection is down rather than being queued for after the reconnection).
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    /// Redis answered a command with an error (permissions, wrong key type, ...).
    #[error("Redis error: {0}")]
    Redis(String),
    /// A reply did not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The client was shut down.
    #[error("the client is closed")]
    Closed,
}

impl<E> ProxyError<E> {
    /// Converts the handler error with `f`, keeping every other variant.
    pub fn map_handler<F>(self, f: impl FnOnce(E) -> F) -> ProxyError<F> {
        use ProxyError::*;
        match self {
            Handler(e) => Handler(f(e)),
            UnknownUrn { urn } => UnknownUrn { urn },
            UnknownMessage { urn, message } => UnknownMessage { urn, message },
            UnsupportedVersion { urn, message } => UnsupportedVersion { urn, message },
            Panicked(p) => Panicked(p),
            Timeout(d) => Timeout(d),
            ActorStopped { urn } => ActorStopped { urn },
            NoResponse { urn } => NoResponse { urn },
            MailboxFull { urn } => MailboxFull { urn },
            Overloaded {
                urn,
                scope,
                limit,
                depth,
            } => Overloaded {
                urn,
                scope,
                limit,
                depth,
            },
            Codec(m) => Codec(m),
            TooLarge(m) => TooLarge(m),
            BadRequest(m) => BadRequest(m),
            Unavailable(m) => Unavailable(m),
            Redis(m) => Redis(m),
            Protocol(m) => Protocol(m),
            Config(m) => Config(m),
            Closed => Closed,
        }
    }

    /// The handler error, if that is what this is.
    pub fn handler_error(&self) -> Option<&E> {
        match self {
            ProxyError::Handler(e) => Some(e),
            _ => None,
        }
    }
}

impl ProxyError<Infallible> {
    /// Widens an error that cannot hold a handler error to any handler error type.
    pub fn widen<E>(self) -> ProxyError<E> {
        self.map_handler(|never| match never {})
    }
}

/// An ask or tell through the proxy answers the core's [`AskError`], like every other kind of
/// ref: what only this transport reports keeps its own variant where the core has one
/// ([`UnknownUrn`](AskError::UnknownUrn), [`Codec`](AskError::Codec),
/// [`TooLarge`](AskError::TooLarge), [`Unavailable`](AskError::Unavailable)); the proxy's
/// rejections, Redis errors, protocol breaches, an unusable configuration and a closed client
/// become [`AskError::Transport`] with this error's text.
impl<E> From<ProxyError<E>> for AskError<E> {
    fn from(error: ProxyError<E>) -> Self {
        match error {
            ProxyError::Handler(e) => AskError::Handler(e),
            ProxyError::UnknownUrn { urn } => AskError::UnknownUrn { urn },
            ProxyError::UnknownMessage { urn, message } => AskError::UnknownMessage {
                actor: urn,
                message,
            },
            ProxyError::UnsupportedVersion { urn, message } => {
                AskError::UnsupportedVersion { urn, message }
            }
            ProxyError::Panicked(p) => AskError::Panicked(p),
            ProxyError::Timeout(d) => AskError::Timeout(d),
            ProxyError::ActorStopped { .. } => AskError::ActorStopped,
            ProxyError::NoResponse { .. } => AskError::NoResponse,
            ProxyError::MailboxFull { .. } => AskError::MailboxFull,
            ProxyError::Overloaded { limit, depth, .. } => AskError::Overloaded { limit, depth },
            ProxyError::Codec(m) => AskError::Codec(m),
            ProxyError::TooLarge(m) => AskError::TooLarge(m),
            ProxyError::Unavailable(m) => AskError::Unavailable(m),
            ProxyError::BadRequest(m) => transport(ProxyError::BadRequest(m)),
            ProxyError::Redis(m) => transport(ProxyError::Redis(m)),
            ProxyError::Protocol(m) => transport(ProxyError::Protocol(m)),
            ProxyError::Config(m) => transport(ProxyError::Config(m)),
            ProxyError::Closed => transport(ProxyError::Closed),
        }
    }
}

/// [`AskError::Transport`] with the text of a proxy error that holds no handler error.
fn transport<E>(error: ProxyError) -> AskError<E> {
    AskError::Transport(error.to_string())
}

/// Classifies a fred error: connection trouble is [`ProxyError::Unavailable`], anything Redis
/// itself answered is [`ProxyError::Redis`].
pub(crate) fn redis_error<E>(error: &fred::error::Error) -> ProxyError<E> {
    if is_connection_error(error) {
        ProxyError::Unavailable(error.to_string())
    } else {
        ProxyError::Redis(error.to_string())
    }
}

pub(crate) fn is_connection_error(error: &fred::error::Error) -> bool {
    use fred::error::ErrorKind::*;
    match error.kind() {
        IO | Canceled | Timeout | Routing | Backpressure | Cluster | Sentinel => true,
        // What fred answers a command written at most once (`max_attempts`) when no
        // connection can take it, or when the connection was lost after the write.
        Unknown => {
            let details = error.details();
            details.contains("Failed to route command") || details.contains("failed write attempts")
        }
        _ => false,
    }
}

/// Why [`start_proxy`](crate::start_proxy) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is unusable (bad URL, invalid system id or namespace).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Redis could not be reached.
    #[error("Redis is unavailable: {0}")]
    Unavailable(String),
    /// Redis answered a command with an error.
    #[error("Redis error: {0}")]
    Redis(String),
    /// Another live proxy instance serves this system id (its lease did not expire within
    /// the lease time).
    #[error("system id {system_id} is served by another live proxy instance")]
    SystemInUse {
        /// The contested system id.
        system_id: String,
    },
    /// A URN or URN pattern could not be served by a group: one system serves it alone.
    #[error("{urn} is served by system {owner} alone: it cannot be served by a group")]
    UrnInUse {
        /// The URN, or the pattern's prefix.
        urn: String,
        /// What its key names: the system id serving it.
        owner: String,
    },
    /// The URN or pattern is unusable, or the actor to serve is not there.
    #[error("{0}")]
    Invalid(String),
    /// [`ProxyHandle::shutdown`](crate::ProxyHandle::shutdown) did not finish within
    /// [`ProxyConfig::shutdown_timeout`](crate::ProxyConfig::shutdown_timeout) (Redis
    /// unreachable or too slow): it stopped its tasks and dropped its connections; what it
    /// had not handed over stays in Redis for the next holder, as after a crash.
    #[error(
        "the shutdown did not finish within {bound:?}: what was not handed over stays in Redis for the next holder"
    )]
    ShutdownCut {
        /// The bound it ran into.
        bound: std::time::Duration,
    },
}

impl From<ProxyError> for ServeError {
    fn from(e: ProxyError) -> Self {
        match e {
            ProxyError::Unavailable(m) => ServeError::Unavailable(m),
            ProxyError::Config(m) => ServeError::Config(m),
            other => ServeError::Redis(other.to_string()),
        }
    }
}

/// Why [`start_redis`](crate::start_redis) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// No `redis-server` executable was found.
    #[error(
        "redis-server is not installed (looked in {searched:?}): install it (e.g. `apt-get install redis-server`), \
         set CONCLIB_REDIS_SERVER to its path, or point CONCLIB_REDIS_URL at an existing Redis instead of starting one"
    )]
    NotInstalled {
        /// The places looked at.
        searched: Vec<PathBuf>,
    },
    /// The process could not be started.
    #[error("cannot start {binary:?}: {source}")]
    Spawn {
        /// The executable.
        binary: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server exited during startup.
    #[error("redis-server exited during startup ({status}); its log ends with:\n{log}")]
    Exited {
        /// How it exited.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// The server did not answer PING in time.
    #[error(
        "redis-server on port {port} did not answer PING within {timeout:?}; its log ends with:\n{log}"
    )]
    StartTimeout {
        /// The port it was started on.
        port: u16,
        /// How long we waited.
        timeout: Duration,
        /// The end of its log.
        log: String,
    },
    /// A local I/O operation failed (free port, temporary directory, log file).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// An environment variable of [`ProxyConfig::from_env`](crate::ProxyConfig::from_env) holds
/// an unusable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {message}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ask_through_redis_answers_the_cores_ask_error() {
        let cases: Vec<(ProxyError<String>, AskError<String>)> = vec![
            (
                ProxyError::Handler("no".into()),
                AskError::Handler("no".into()),
            ),
            (
                ProxyError::UnknownUrn { urn: "u".into() },
                AskError::UnknownUrn { urn: "u".into() },
            ),
            (
                ProxyError::UnknownMessage {
                    urn: "u".into(),
                    message: "m".into(),
                },
                AskError::UnknownMessage {
                    actor: "u".into(),
                    message: "m".into(),
                },
            ),
            (
                ProxyError::UnsupportedVersion {
                    urn: "u".into(),
                    message: "m".into(),
                },
                AskError::UnsupportedVersion {
                    urn: "u".into(),
                    message: "m".into(),
                },
            ),
            (
                ProxyError::ActorStopped { urn: "u".into() },
                AskError::ActorStopped,
            ),
            (
                ProxyError::MailboxFull { urn: "u".into() },
                AskError::MailboxFull,
            ),
            (
                ProxyError::Timeout(Duration::from_secs(1)),
                AskError::Timeout(Duration::from_secs(1)),
            ),
            (
                ProxyError::TooLarge("big".into()),
                AskError::TooLarge("big".into()),
            ),
            (
                ProxyError::Unavailable("down".into()),
                AskError::Unavailable("down".into()),
            ),
            (
                ProxyError::BadRequest("v9".into()),
                AskError::Transport("the proxy rejected the request: v9".into()),
            ),
            (
                ProxyError::Redis("NOPERM".into()),
                AskError::Transport("Redis error: NOPERM".into()),
            ),
            (
                ProxyError::Closed,
                AskError::Transport("the client is closed".into()),
            ),
        ];
        for (proxy, ask) in cases {
            assert_eq!(AskError::from(proxy), ask);
        }
    }

    #[test]
    fn an_ask_error_displays_for_any_handler_error() {
        #[derive(Debug)]
        struct OnlyDebug;
        let error: AskError<OnlyDebug> = AskError::Handler(OnlyDebug);
        assert_eq!(
            error.to_string(),
            "the handler returned an error: OnlyDebug"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(AskError::<String>::MailboxFull);
        assert_eq!(boxed.to_string(), "the mailbox is full");
    }
}
