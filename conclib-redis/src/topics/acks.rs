//! A durable subscription's acknowledgements: sent as its consumer finishes events.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::bytes::Bytes;
use fred::prelude::*;
use tokio::sync::Notify;

use super::topic::{TopicError, redis_error};
use crate::conn::{self, keyed, keyed_at, owned, s};

/// Acknowledgements waiting that are sent at once; fewer wait [`ACK_DELAY`] for company.
const ACK_BATCH: usize = 128;
/// How long a few acknowledgements wait for more.
const ACK_DELAY: Duration = Duration::from_millis(5);

/// The acknowledgements a durable subscription still has to send, and the entries it holds
/// (in its buffer, or taken and not finished): a re-read of its pending list skips those.
pub(super) struct Acks {
    key: String,
    group: String,
    cmd: Client,
    ids: Mutex<Vec<Bytes>>,
    pub(super) held: Mutex<HashSet<Bytes>>,
    wake: Notify,
}

impl Acks {
    /// The consumer finished the event with this entry id.
    pub(super) fn push(&self, id: Bytes) {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        self.wake.notify_one();
    }

    /// Sends the acknowledgements waiting (`XACK`); on failure they wait for the next try.
    pub(super) async fn flush(&self) -> bool {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()));
        if ids.is_empty() {
            return true;
        }
        let mut args = vec![owned(self.key.clone()), owned(self.group.clone())];
        args.extend(ids.iter().cloned().map(Value::Bytes));
        match conn::call(&self.cmd, keyed("XACK"), args).await {
            Ok(_) => {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                for id in &ids {
                    held.remove(id);
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, key = %self.key, "acknowledging events failed; retrying");
                let mut waiting = self.ids.lock().unwrap_or_else(|e| e.into_inner());
                let later = std::mem::replace(&mut *waiting, ids);
                waiting.extend(later);
                false
            }
        }
    }
}

impl Acks {
    /// The group's lag (`XINFO GROUPS`, Redis 7): entries in the stream not yet delivered
    /// to any subscriber of the group; `None` when Redis cannot tell (an older Redis, or
    /// entries deleted in the middle of the stream).
    pub(super) async fn lag(&self) -> Result<Option<u64>, TopicError> {
        let args = vec![s("GROUPS"), owned(self.key.clone())];
        let groups = conn::call(&self.cmd, keyed_at("XINFO", 1, false), args)
            .await
            .map_err(|e| redis_error(&e))?;
        let Value::Array(groups) = groups else {
            return Ok(None);
        };
        for group in groups {
            let Value::Array(fields) = group else {
                continue;
            };
            let field = |name: &[u8]| {
                fields
                    .chunks_exact(2)
                    .find(|pair| conn::as_bytes(&pair[0]) == Some(name))
                    .map(|pair| pair[1].clone())
            };
            if field(b"name").as_ref().and_then(conn::as_bytes) == Some(self.group.as_bytes()) {
                return Ok(match field(b"lag") {
                    Some(Value::Integer(n)) => u64::try_from(n).ok(),
                    _ => None,
                });
            }
        }
        Ok(None)
    }
}

/// Sends the acknowledgements as the consumer finishes events (and retries failed ones), a
/// few milliseconds apart unless many wait: one `XACK` for many events, on the connection
/// publishes use too.
pub(super) async fn ack_loop(acks: Arc<Acks>) {
    loop {
        tokio::select! {
            () = acks.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if acks.ids.lock().unwrap_or_else(|e| e.into_inner()).len() < ACK_BATCH {
            tokio::time::sleep(ACK_DELAY).await;
        }
        if !acks.flush().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Acks {
    pub(super) fn new(key: String, group: String, cmd: Client) -> Acks {
        Acks {
            key,
            group,
            cmd,
            ids: Mutex::new(Vec::new()),
            held: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        }
    }
}
