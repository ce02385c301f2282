//! A durable subscription: a consumer of the topic stream's consumer group, reading with a
//! connection of its own what the group has not delivered yet (after its own pending
//! entries), acknowledging each event once the next one is asked for.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::bytes::Bytes;
use fred::prelude::*;
use tokio::sync::mpsc;

use super::acks::Acks;
use super::link::{Counters, Link, Raw, SubscribeOptions};
use super::publish::Topics;
use super::topic::{Delivery, Topic, TopicError, redis_error};
use super::{metrics, wire};
use crate::conn::{self, keyed, keyed_at, owned, s};

/// The most entries one read takes.
const READ_BATCH: usize = 256;

pub(super) async fn start(
    topics: &Topics,
    topic: &Topic,
    options: &SubscribeOptions,
    tx: mpsc::Sender<Raw>,
    counters: Arc<Counters>,
) -> Result<Link, TopicError> {
    let config = topics.config();
    let client = config
        .builder::<std::convert::Infallible>(config.command_timeout + Topics::BLOCK)
        .map_err(|e| TopicError::Config(e.to_string()))?
        .build()
        .map_err(|e| TopicError::Config(e.to_string()))?;
    conn::init_within(&[&client], config.connect_timeout)
        .await
        .map_err(TopicError::Unavailable)?;
    let key = wire::durable_key(&config.namespace, topic.name());
    let start_at = if options.from_start { "0" } else { "$" };
    if let Err(e) = create_group(&client, &key, &options.group, start_at).await {
        let _ = client.quit().await;
        return Err(e);
    }
    let acks = Arc::new(Acks::new(
        key.clone(),
        options.group.clone(),
        topics.cmd().clone(),
    ));
    let reader = Reader {
        client: client.clone(),
        key,
        group: options.group.clone(),
        consumer: options.consumer.clone().unwrap_or_else(random_consumer),
        batch: options.buffer.min(READ_BATCH),
        claim_idle: options.claim_idle,
        codec: config.codec.clone(),
        acks: acks.clone(),
        tx,
        counters,
    };
    let tasks = vec![
        tokio::spawn(reader.run()),
        tokio::spawn(super::acks::ack_loop(acks.clone())),
    ];
    Ok(Link {
        tasks,
        client,
        acks: Some(acks),
    })
}

/// `XGROUP CREATE key group <start> MKSTREAM`; a group that exists already is fine.
async fn create_group(
    client: &Client,
    key: &str,
    group: &str,
    start_at: &'static str,
) -> Result<(), TopicError> {
    let args = vec![
        s("CREATE"),
        owned(key.to_owned()),
        owned(group.to_owned()),
        s(start_at),
        s("MKSTREAM"),
    ];
    match conn::call(client, keyed_at("XGROUP", 1, false), args).await {
        Ok(_) => Ok(()),
        Err(e) if conn::error_code_is(&e, "BUSYGROUP") => Ok(()),
        Err(e) => Err(redis_error(&e)),
    }
}

struct Reader {
    client: Client,
    key: String,
    group: String,
    consumer: String,
    batch: usize,
    claim_idle: Duration,
    codec: Arc<dyn conclib_codec::Codec>,
    acks: Arc<Acks>,
    tx: mpsc::Sender<Raw>,
    counters: Arc<Counters>,
}

impl Reader {
    async fn run(self) {
        // `Some(id)`: reading this consumer's pending entries after `id`; `None`: new ones.
        let mut pending_from: Option<Bytes> = Some(Bytes::from_static(b"0"));
        let mut backoff = Duration::from_millis(10);
        let mut last_claim = Instant::now();
        let claim_every = (self.claim_idle / 2).max(Duration::from_millis(100));
        let once = self.client.with_options(&Options {
            max_attempts: Some(1),
            ..Options::default()
        });
        loop {
            if self.tx.is_closed() {
                return;
            }
            if last_claim.elapsed() >= claim_every {
                last_claim = Instant::now();
                if !self.claim(&once).await {
                    return;
                }
            }
            let mut args = vec![
                s("GROUP"),
                owned(self.group.clone()),
                owned(self.consumer.clone()),
                s("COUNT"),
                Value::Integer(self.batch as i64),
            ];
            if pending_from.is_none() {
                args.extend([s("BLOCK"), Value::Integer(Topics::BLOCK.as_millis() as i64)]);
            }
            args.extend([
                s("STREAMS"),
                owned(self.key.clone()),
                match &pending_from {
                    Some(id) => Value::Bytes(id.clone()),
                    None => s(">"),
                },
            ]);
            let offset = args.len() - 2;
            let command = keyed_at("XREADGROUP", offset, pending_from.is_none());
            match conn::call(&once, command, args).await {
                Ok(value) => {
                    backoff = Duration::from_millis(10);
                    let entries = stream_entries(value);
                    let rereading = pending_from.is_some();
                    if rereading {
                        pending_from = entries.last().map(|(id, _)| id.clone());
                    }
                    if !self.deliver(entries, rereading).await {
                        return;
                    }
                }
                Err(e) if conn::error_code_is(&e, "NOGROUP") => {
                    // Redis lost the stream (restarted empty, or someone deleted it): what
                    // is published from now on is read from its start.
                    tracing::info!(key = %self.key, group = %self.group, "consumer group gone; creating it again");
                    if let Err(e) = create_group(&self.client, &self.key, &self.group, "0").await {
                        tracing::debug!(error = %e, "creating the consumer group failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                    self.counters.resubscribes.fetch_add(1, Ordering::Relaxed);
                    pending_from = Some(Bytes::from_static(b"0"));
                }
                Err(e) => {
                    tracing::debug!(error = %e, key = %self.key, "reading the topic failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    // What a lost answer delivered is pending on this consumer: read it.
                    pending_from = Some(Bytes::from_static(b"0"));
                }
            }
        }
    }

    /// Hands entries to the buffer (waiting for room); `false` once the subscription is gone.
    async fn deliver(&self, entries: Vec<(Bytes, Value)>, again: bool) -> bool {
        let n = entries.len() as u64;
        for (id, fields) in entries {
            if !self
                .acks
                .held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone())
            {
                continue;
            }
            let Some(raw) = self.parse(id.clone(), fields) else {
                // Trimmed away while pending (nil fields): nothing to hand over.
                self.acks.push(id);
                continue;
            };
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            if again {
                self.counters.redelivered.fetch_add(1, Ordering::Relaxed);
                metrics::redelivered(1);
            }
            if self.tx.send(raw).await.is_err() {
                return false;
            }
        }
        metrics::received(Delivery::Durable, n);
        true
    }

    /// The entry as an event: its body a view of the bytes fred read (no copy).
    fn parse(&self, id: Bytes, fields: Value) -> Option<Raw> {
        let Value::Array(fields) = fields else {
            return None;
        };
        let (mut codec, mut body) = (None, None);
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            match conn::as_bytes(&name) {
                Some(b"codec") => {
                    codec = conn::as_bytes(&value).map(|name| wire::codec_named(&self.codec, name));
                }
                Some(b"body") => body = value.into_bytes(),
                _ => {}
            }
        }
        Some(Raw {
            codec: codec.flatten(),
            body: body.unwrap_or_default(),
            id: Some(id),
        })
    }

    /// Takes over the entries other subscribers of the group took and left unfinished for
    /// `claim_idle` (`XAUTOCLAIM`), and hands them over; `false` once the subscription is
    /// gone.
    async fn claim<C: ClientLike>(&self, client: &C) -> bool {
        self.forget_gone(client).await;
        let mut start = Bytes::from_static(b"0-0");
        for _ in 0..16 {
            let args = vec![
                owned(self.key.clone()),
                owned(self.group.clone()),
                owned(self.consumer.clone()),
                Value::Integer(self.claim_idle.as_millis() as i64),
                Value::Bytes(start.clone()),
                s("COUNT"),
                Value::Integer(self.batch as i64),
            ];
            let Ok(Value::Array(mut parts)) = conn::call(client, keyed("XAUTOCLAIM"), args).await
            else {
                return true;
            };
            if parts.len() < 2 {
                return true;
            }
            let claimed = parts.swap_remove(1);
            let next = parts.swap_remove(0).into_bytes().unwrap_or_default();
            let wrapped = Value::Array(vec![Value::Array(vec![s(""), claimed])]);
            let entries = stream_entries(wrapped);
            if !self.deliver(entries, true).await {
                return false;
            }
            if next.as_ref() == b"0-0" || next.is_empty() {
                return true;
            }
            start = next;
        }
        true
    }
}

impl Reader {
    /// Deletes the group's consumers that hold nothing and were not heard of for
    /// [`GONE_AFTER_CLAIMS`] claim periods (at least [`GONE_AT_LEAST`]): subscribers gone
    /// under names of their own (random ones, by default) would otherwise pile up in Redis.
    async fn forget_gone<C: ClientLike>(&self, client: &C) {
        let idle = (self.claim_idle * GONE_AFTER_CLAIMS).max(GONE_AT_LEAST);
        let args = vec![
            s(FORGET_GONE_SCRIPT),
            Value::Integer(1),
            owned(self.key.clone()),
            owned(self.group.clone()),
            owned(self.consumer.clone()),
            Value::Integer(idle.as_millis() as i64),
        ];
        if let Err(e) = conn::call(client, keyed_at("EVAL", 2, false), args).await {
            tracing::debug!(error = %e, key = %self.key, "forgetting gone subscribers failed");
        }
    }
}

/// A consumer counts as gone after this many claim periods without a word (and nothing
/// pending on it).
const GONE_AFTER_CLAIMS: u32 = 10;
/// ... and at least this long.
const GONE_AT_LEAST: Duration = Duration::from_secs(5);

/// `KEYS[1]` = a topic's stream, `ARGV[1]` = a consumer group, `ARGV[2]` = the calling
/// consumer, `ARGV[3]` = idle ms: deletes the group's other consumers that have nothing
/// pending and were idle longer (checked and deleted in one script: one that reads in
/// between would lose what it read). Returns how many.
const FORGET_GONE_SCRIPT: &str = r"local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local n = 0
for _, c in ipairs(consumers) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
    if c[i] == 'idle' then idle = c[i + 1] end
  end
  if name ~= ARGV[2] and pending == 0 and idle ~= nil and idle > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    n = n + 1
  end
end
return n";

/// The `(id, fields)` of an `XREADGROUP` answer (one stream): nil fields for an entry
/// trimmed away while pending.
fn stream_entries(value: Value) -> Vec<(Bytes, Value)> {
    let Value::Array(streams) = value else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut parts) = stream else {
            continue;
        };
        let Some(Value::Array(entries)) = parts.pop() else {
            continue;
        };
        for entry in entries {
            let Value::Array(mut pair) = entry else {
                continue;
            };
            if pair.len() != 2 {
                continue;
            }
            let fields = pair.pop().unwrap_or(Value::Null);
            if let Some(id) = pair.pop().and_then(Value::into_bytes) {
                out.push((id, fields));
            }
        }
    }
    out
}

/// A consumer name for a subscriber that gave none: 128 bits from a randomly keyed hasher
/// over the time, the process and a counter, as hex (unique, not secret).
fn random_consumer() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
