//! The Redis side of a durable subscription ([`Reader`]): the commands it sends on its own
//! connection (its reads, `XREADGROUP`; its claims, `XAUTOCLAIM`; its acknowledgements,
//! `XACK`; the consumer group created again when Redis lost it; the gone consumers
//! forgotten) and what their answers become. Apart from the subscription's state
//! (`durable.rs`), which decides which step comes next and when acknowledgements go: this
//! is how each step is sent, not when.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use fred::bytes::Bytes;
use fred::prelude::*;

use crate::conn::{self, keyed, keyed_at, owned, s};
use crate::script::Script;
use crate::topics::link::{Counters, Raw};
use crate::topics::publish::Topics;
use crate::topics::topic::{TopicError, redis_error};
use crate::topics::wire;

/// `XGROUP CREATE key group <start> MKSTREAM`; a group that exists already is fine.
pub(super) async fn create_group(
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

/// What does not change in a durable subscription (shared with the commands under way).
pub(super) struct Reader {
    /// The subscription's own connection: its reads and its acknowledgements.
    pub(super) client: Client,
    /// The client's or proxy's command connection: the group's lag, and the last
    /// acknowledgements at close or drop (not queued behind a blocking read).
    pub(super) cmd: Client,
    pub(super) key: String,
    pub(super) group: String,
    pub(super) consumer: String,
    pub(super) batch: usize,
    pub(super) claim_idle: Duration,
    pub(super) codec: Arc<dyn conclib_codec::Codec>,
    pub(super) counters: Arc<Counters>,
}

/// What a step asks of Redis.
pub(super) enum What {
    /// `XREADGROUP` after this pending id (`None`: new entries, blocking).
    Read(Option<Bytes>),
    /// One page of `XAUTOCLAIM` from this id (`forget`: first delete the gone consumers).
    Claim { start: Bytes, forget: bool },
}

/// What a step brought back.
pub(super) struct Done {
    /// The acknowledgements sent before it, and whether Redis took them.
    pub(super) acked: (Vec<Bytes>, bool),
    pub(super) outcome: Outcome,
}

pub(super) enum Outcome {
    /// Entries read (`again`: this consumer's pending ones, or claimed ones).
    Read {
        entries: Vec<(Bytes, Value)>,
    },
    /// A claim page, and where the next one starts (`None`: the last).
    Claimed {
        entries: Vec<(Bytes, Value)>,
        next: Option<Bytes>,
    },
    /// Redis lost the stream (restarted empty, or someone deleted it): the group was
    /// created again (`true`) or that failed.
    GroupGone(bool),
    Failed,
}

/// `XACK` of `ids` (none: nothing sent); whether Redis took them.
pub(super) async fn ack<C: ClientLike>(client: &C, key: &str, group: &str, ids: &[Bytes]) -> bool {
    if ids.is_empty() {
        return true;
    }
    let mut args = Vec::with_capacity(2 + ids.len());
    args.push(owned(key.to_owned()));
    args.push(owned(group.to_owned()));
    args.extend(ids.iter().cloned().map(Value::Bytes));
    match conn::call(client, keyed("XACK"), args).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, key, "acknowledging events failed; retrying");
            false
        }
    }
}

pub(super) fn once(client: &Client) -> fred::clients::WithOptions<Client> {
    client.with_options(&Options {
        max_attempts: Some(1),
        ..Options::default()
    })
}

impl Reader {
    /// One step: the acknowledgements, then the read or claim, sent together (Redis takes
    /// them in that order, so a re-read of the pending entries does not return them).
    pub(super) async fn step(
        self: Arc<Self>,
        acks: Vec<Bytes>,
        what: What,
        pause: Option<Duration>,
    ) -> Done {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let once = once(&self.client);
        let acking = ack(&once, &self.key, &self.group, &acks);
        match what {
            What::Read(from) => {
                let (acked, reply) =
                    futures_util::future::join(acking, self.read(&once, from)).await;
                let outcome = match reply {
                    Ok(value) => Outcome::Read {
                        entries: conn::stream_entries(value),
                    },
                    Err(e) if conn::error_code_is(&e, "NOGROUP") => {
                        tracing::info!(key = %self.key, group = %self.group, "consumer group gone; creating it again");
                        let created = create_group(&self.client, &self.key, &self.group, "0").await;
                        if let Err(e) = &created {
                            tracing::debug!(error = %e, "creating the consumer group failed");
                        }
                        Outcome::GroupGone(created.is_ok())
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, key = %self.key, "reading the topic failed; retrying");
                        Outcome::Failed
                    }
                };
                Done {
                    acked: (acks, acked),
                    outcome,
                }
            }
            What::Claim { start, forget } => {
                let acked = acking.await;
                if forget {
                    self.forget_gone(&once).await;
                }
                let (entries, next) = self.claim_page(&once, start).await;
                Done {
                    acked: (acks, acked),
                    outcome: Outcome::Claimed { entries, next },
                }
            }
        }
    }

    async fn read<C: ClientLike>(
        &self,
        client: &C,
        from: Option<Bytes>,
    ) -> Result<Value, fred::error::Error> {
        let blocking = from.is_none();
        let mut args = Vec::with_capacity(10);
        args.extend([
            s("GROUP"),
            owned(self.group.clone()),
            owned(self.consumer.clone()),
            s("COUNT"),
            Value::Integer(self.batch as i64),
        ]);
        if blocking {
            args.extend([s("BLOCK"), Value::Integer(Topics::BLOCK.as_millis() as i64)]);
        }
        args.extend([
            s("STREAMS"),
            owned(self.key.clone()),
            match from {
                Some(id) => Value::Bytes(id),
                None => s(">"),
            },
        ]);
        let offset = args.len() - 2;
        conn::call(client, keyed_at("XREADGROUP", offset, blocking), args).await
    }

    /// One page of the entries other subscribers of the group took and left unfinished
    /// for `claim_idle` (`XAUTOCLAIM`), taken over; and where the next page starts.
    async fn claim_page<C: ClientLike>(
        &self,
        client: &C,
        start: Bytes,
    ) -> (Vec<(Bytes, Value)>, Option<Bytes>) {
        let args = vec![
            owned(self.key.clone()),
            owned(self.group.clone()),
            owned(self.consumer.clone()),
            Value::Integer(self.claim_idle.as_millis() as i64),
            Value::Bytes(start),
            s("COUNT"),
            Value::Integer(self.batch as i64),
        ];
        let Ok(Value::Array(mut parts)) = conn::call(client, keyed("XAUTOCLAIM"), args).await
        else {
            return (Vec::new(), None);
        };
        if parts.len() < 2 {
            return (Vec::new(), None);
        }
        let claimed = parts.swap_remove(1);
        let next = parts.swap_remove(0).into_bytes().unwrap_or_default();
        let wrapped = Value::Array(vec![Value::Array(vec![s(""), claimed])]);
        let next = (!next.is_empty() && next.as_ref() != b"0-0").then_some(next);
        (conn::stream_entries(wrapped), next)
    }

    /// The entry as an event: its body a view of the bytes fred read (no copy).
    pub(super) fn parse(&self, id: Bytes, fields: Value) -> Option<Raw> {
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
}

impl Reader {
    /// Deletes the group's consumers that hold nothing and were not heard of for
    /// [`GONE_AFTER_CLAIMS`] claim periods (at least [`GONE_AT_LEAST`]): subscribers gone
    /// under names of their own (random ones, by default) would otherwise pile up in Redis.
    async fn forget_gone<C: ClientLike>(&self, client: &C) {
        let idle = (self.claim_idle * GONE_AFTER_CLAIMS).max(GONE_AT_LEAST);
        static FORGET_GONE: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_GONE_SCRIPT));
        let args = vec![
            owned(self.group.clone()),
            owned(self.consumer.clone()),
            Value::Integer(idle.as_millis() as i64),
        ];
        let forgotten = FORGET_GONE.eval(client, vec![owned(self.key.clone())], args);
        if let Err(e) = forgotten.await {
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
