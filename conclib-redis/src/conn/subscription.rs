//! A connection of its own subscribed to one channel: subscribed (once Redis confirms it),
//! and subscribed again after each reconnection, a restarted Redis knowing no
//! subscriptions. Topics' live subscriptions (`topics/live.rs`) and a client's hand-over
//! notes (`client/moves.rs`) listen this way.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;

/// How a subscription listens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// `SUBSCRIBE channel`.
    Channel,
    /// `PSUBSCRIBE pattern` (not on a Cluster).
    Pattern,
    /// `SSUBSCRIBE channel`, on a Redis Cluster (7.0 and later): the channel lives on the
    /// node of its slot (a topic's name is its hash tag), where publishers `SPUBLISH`.
    Sharded,
}

/// Sets up `builder` for a connection that only listens: fred keeps `queue` messages
/// between its reader and ours, and does not time commands for unresponsiveness (fred's
/// check times the commands other than pub/sub ones, which are the only ones such a
/// connection sends: it would find nothing, at the price of a timer and a clock read for
/// each message read).
pub(crate) fn listening(builder: &mut Builder, queue: usize) {
    builder.with_performance_config(|p| p.broadcast_channel_capacity = queue);
    builder.with_connection_config(|c| c.unresponsive = UnresponsiveConfig::default());
}

/// Subscribes, and returns once Redis has: fred answers `SUBSCRIBE` and `PSUBSCRIBE` when
/// they are written, not when Redis confirms (`SSUBSCRIBE` it waits for), so a `PING` on
/// the same connection follows them: Redis answers it after it took the subscription. A
/// message published after this returned reaches the subscription (without it, one
/// published a few milliseconds later was sometimes missed on a loaded machine).
pub(crate) async fn subscribe(
    client: &Client,
    channel: &str,
    kind: Kind,
) -> Result<(), fred::error::Error> {
    match kind {
        Kind::Channel => client.subscribe(channel.to_owned()).await?,
        Kind::Pattern => client.psubscribe(channel.to_owned()).await?,
        Kind::Sharded => return client.ssubscribe(channel.to_owned()).await,
    }
    // Outside a Cluster (the only place these two are used) there is one connection.
    super::call(client, super::unkeyed("PING"), Vec::new())
        .await
        .map(|_| ())
}

/// Subscribes again, until Redis takes it: right after fred's report of a reconnection
/// the connection may not take commands yet, or Redis may be gone again.
pub(crate) async fn resubscribe(client: &Client, channel: &str, kind: Kind) {
    let mut pause = Duration::from_millis(20);
    loop {
        match subscribe(client, channel, kind).await {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = %e, channel, "subscribing again failed; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
