//! A live subscription: a connection of its own subscribed to the topic's channel, whose
//! messages go into the subscription's buffer, or are dropped (counted) when it is full.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fred::prelude::*;
use fred::types::Message;
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::link::{Counters, Link, Raw};
use super::publish::Topics;
use super::topic::{DeliveryMode, Topic, TopicError, redis_error};
use super::{metrics, wire};
use crate::conn;
use crate::conn::subscription::{self, Kind, resubscribe, subscribe};

/// Fred's own queue of pub/sub messages for one connection, between its reader and ours;
/// ours empties it at once, so it fills only if that task is starved (counted as drops).
const FRED_QUEUE: usize = 4096;

pub(super) async fn start(
    topics: &Topics,
    topic: &Topic,
    tx: mpsc::Sender<Raw>,
    counters: Arc<Counters>,
) -> Result<Link, TopicError> {
    let config = topics.config();
    let mut builder = config
        .builder::<std::convert::Infallible>(config.command_timeout)
        .map_err(|e| TopicError::Config(e.to_string()))?;
    subscription::listening(&mut builder, FRED_QUEUE);
    let client = builder
        .build()
        .map_err(|e| TopicError::Config(e.to_string()))?;
    // Taken before connecting: no message goes unseen.
    let messages = client.message_rx();
    conn::init_within(&[&client], config.connecting())
        .await
        .map_err(TopicError::Unavailable)?;
    // Taken after: fred reports the first connection as a reconnection too (every
    // subscription subscribed twice, and counted a re-subscription). A reconnection from
    // here on comes before or after our `SUBSCRIBE`: the connection it gives is subscribed
    // either way.
    let reconnects = client.reconnect_rx();
    let channel = wire::live_channel(&config.namespace, topic.name());
    let kind = match (topic.is_pattern(), client.is_clustered()) {
        (false, false) => Kind::Channel,
        (true, false) => Kind::Pattern,
        (false, true) => Kind::Sharded,
        (true, true) => {
            let _ = client.quit().await;
            return Err(TopicError::Config(format!(
                "{}: a Redis Cluster shards pub/sub by channel, so patterns are not available \
                 on it; subscribe to each topic",
                topic.name()
            )));
        }
    };
    if let Err(e) = subscribe(&client, &channel, kind).await {
        let _ = client.quit().await;
        return Err(redis_error(&e));
    }
    let tasks = vec![
        tokio::spawn(forward(
            messages,
            config.codec.clone(),
            tx,
            counters.clone(),
        )),
        tokio::spawn(resubscribe_on_reconnect(
            client.clone(),
            (channel, kind),
            reconnects,
            counters,
        )),
    ];
    Ok(Link { tasks, client })
}

/// Moves the channel's messages into the buffer, or drops them (counted) when it is full.
async fn forward(
    mut messages: broadcast::Receiver<Message>,
    codec: Arc<dyn conclib_codec::Codec>,
    tx: mpsc::Sender<Raw>,
    counters: Arc<Counters>,
) {
    loop {
        // What arrived meanwhile is taken without waiting again.
        let mut next = messages.recv().await;
        loop {
            match next {
                // The connection is this subscription's own: every message is for it.
                Ok(message) => {
                    if !put(message, &codec, &tx, &counters) {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    counters.dropped.fetch_add(n, Ordering::Relaxed);
                    metrics::dropped(n);
                    counters.received.fetch_add(n, Ordering::Release);
                }
                Err(RecvError::Closed) => return,
            }
            next = match messages.try_recv() {
                Ok(message) => Ok(message),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Empty) => break,
            };
        }
    }
}

/// Puts one message into the buffer (its body a view of the bytes fred read, not a copy);
/// `false` once the subscription is gone.
///
/// An event is counted received once its fate is counted too (buffered or dropped): who
/// reads `received` (with `Acquire`) and finds every event there finds every drop counted.
fn put(
    message: Message,
    codec: &Arc<dyn conclib_codec::Codec>,
    tx: &mpsc::Sender<Raw>,
    counters: &Counters,
) -> bool {
    metrics::received(DeliveryMode::Live, 1);
    let frame = match message.value {
        Value::Bytes(b) => b,
        Value::String(s) => s.inner().clone(),
        // Not a live frame: handed over as an event that does not decode.
        _ => fred::bytes::Bytes::new(),
    };
    let raw = match wire::decode_live(&frame) {
        Some((name, body)) => Raw {
            codec: wire::codec_named(codec, name),
            body: frame.slice_ref(body),
            id: None,
        },
        None => Raw {
            codec: None,
            body: fred::bytes::Bytes::new(),
            id: None,
        },
    };
    match tx.try_send(raw) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::dropped(1);
        }
        Err(TrySendError::Closed(_)) => return false,
    }
    counters.received.fetch_add(1, Ordering::Release);
    true
}

/// Subscribes again after each reconnection (a restarted Redis knows no subscriptions).
async fn resubscribe_on_reconnect(
    client: Client,
    (channel, kind): (String, Kind),
    mut reconnects: broadcast::Receiver<Server>,
    counters: Arc<Counters>,
) {
    loop {
        if let Err(RecvError::Closed) = reconnects.recv().await {
            return;
        }
        resubscribe(&client, &channel, kind).await;
        counters.resubscribes.fetch_add(1, Ordering::Relaxed);
    }
}
