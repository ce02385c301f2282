//! A durable subscription: a consumer of the topic stream's consumer group, on a connection
//! of its own, driven by the subscription's consumer. Asking for an event when none is
//! buffered sends the next read (`XREADGROUP`: this consumer's own pending entries first,
//! then what the group has not delivered yet; now and then an `XAUTOCLAIM` instead),
//! preceded on the same connection by the acknowledgements of the events finished, once
//! many wait or the oldest waited a few milliseconds (`XACK`): the task that handles the
//! events is the one that reads them, with no task and no channel between it and Redis.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fred::bytes::Bytes;
use fred::prelude::*;

use super::link::{Counters, Raw, SubscribeOptions};
use super::publish::Topics;
use super::topic::{DeliveryMode, Topic, TopicError, redis_error};
use super::{lag, metrics, wire};
use crate::conn::{self, keyed, keyed_at, owned, s};
use crate::script::Script;

/// The most entries one read takes.
const READ_BATCH: usize = 256;
/// Acknowledgements are sent once this many wait ...
const ACK_BATCH: usize = 128;
/// ... or once the oldest waited this long: with the next read, or on their own while
/// events are still buffered.
const ACK_DELAY: Duration = Duration::from_millis(5);
/// Claim pages taken in one claim period at most.
const CLAIM_PAGES: u32 = 16;

/// A future held by the subscription: in a `Mutex` only so that the subscription stays
/// `Sync` (it is reached through `get_mut`, never locked).
type Held<T> = Mutex<Pin<Box<dyn Future<Output = T> + Send>>>;

fn hold<T>(future: impl Future<Output = T> + Send + 'static) -> Held<T> {
    Mutex::new(Box::pin(future))
}

fn poll_held<T>(held: &mut Held<T>, cx: &mut Context<'_>) -> Poll<T> {
    held.get_mut()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .poll(cx)
}

pub(super) async fn start(
    topics: &Topics,
    topic: &Topic,
    options: &SubscribeOptions,
    counters: Arc<Counters>,
) -> Result<Durable, TopicError> {
    let config = topics.config();
    let client = config
        .builder::<std::convert::Infallible>(config.command_timeout + Topics::BLOCK)
        .map_err(|e| TopicError::Config(e.to_string()))?
        .build()
        .map_err(|e| TopicError::Config(e.to_string()))?;
    conn::init_within(&[&client], config.connecting())
        .await
        .map_err(TopicError::Unavailable)?;
    let key = wire::durable_key(&config.namespace, topic.name());
    let start_at = if options.from_start { "0" } else { "$" };
    if let Err(e) = create_group(&client, &key, &options.group, start_at).await {
        let _ = client.quit().await;
        return Err(e);
    }
    let claim_every = (options.claim_idle / 2).max(Duration::from_millis(100));
    let reader = Reader {
        client,
        cmd: topics.cmd().clone(),
        key,
        group: options.group.clone(),
        // A subscriber that gave no consumer name gets 128 random bits, as hex.
        consumer: options
            .consumer
            .clone()
            .unwrap_or_else(crate::random::random_token),
        batch: options.buffer.min(READ_BATCH),
        claim_idle: options.claim_idle,
        codec: config.codec.clone(),
        counters,
    };
    Ok(Durable {
        reader: Arc::new(reader),
        buffer: VecDeque::new(),
        taken: None,
        acks: Vec::new(),
        acks_since: None,
        acking: None,
        step: None,
        pending_from: Some(Bytes::from_static(b"0")),
        claim_from: None,
        claim_pages: 0,
        pause: None,
        backoff: MIN_BACKOFF,
        last_claim: Instant::now(),
        claim_every,
        closed: false,
    })
}

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

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

/// What does not change in a durable subscription (shared with the commands under way).
struct Reader {
    /// The subscription's own connection: its reads and its acknowledgements.
    client: Client,
    /// The client's or proxy's command connection: the group's lag, and the last
    /// acknowledgements at close or drop (not queued behind a blocking read).
    cmd: Client,
    key: String,
    group: String,
    consumer: String,
    batch: usize,
    claim_idle: Duration,
    codec: Arc<dyn conclib_codec::Codec>,
    counters: Arc<Counters>,
}

/// The state of a durable subscription, driven by [`poll_next`](Durable::poll_next).
pub(super) struct Durable {
    reader: Arc<Reader>,
    /// Entries read and not yet taken: one read's at most.
    buffer: VecDeque<Raw>,
    /// The entry the consumer took last: finished once it asks for the next.
    taken: Option<Bytes>,
    /// Finished entries not yet acknowledged; since when the oldest waits.
    acks: Vec<Bytes>,
    acks_since: Option<Instant>,
    /// An `XACK` sent on its own (while events are buffered), with its ids.
    acking: Option<(Vec<Bytes>, Held<bool>)>,
    /// The read (or claim) under way, with the acknowledgements sent before it.
    step: Option<Held<Done>>,
    /// `Some(id)`: reading this consumer's pending entries after `id`; `None`: new ones.
    pending_from: Option<Bytes>,
    /// Claiming, from this id on (the next page of an `XAUTOCLAIM`).
    claim_from: Option<Bytes>,
    claim_pages: u32,
    /// A pause before the next step (after a failure).
    pause: Option<Duration>,
    backoff: Duration,
    last_claim: Instant,
    claim_every: Duration,
    closed: bool,
}

/// What a step asks of Redis.
enum What {
    /// `XREADGROUP` after this pending id (`None`: new entries, blocking).
    Read(Option<Bytes>),
    /// One page of `XAUTOCLAIM` from this id (`forget`: first delete the gone consumers).
    Claim { start: Bytes, forget: bool },
}

/// What a step brought back.
struct Done {
    /// The acknowledgements sent before it, and whether Redis took them.
    acked: (Vec<Bytes>, bool),
    outcome: Outcome,
}

enum Outcome {
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
async fn ack<C: ClientLike>(client: &C, key: &str, group: &str, ids: &[Bytes]) -> bool {
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

fn once(client: &Client) -> fred::clients::WithOptions<Client> {
    client.with_options(&Options {
        max_attempts: Some(1),
        ..Options::default()
    })
}

impl Reader {
    /// One step: the acknowledgements, then the read or claim, sent together (Redis takes
    /// them in that order, so a re-read of the pending entries does not return them).
    async fn step(self: Arc<Self>, acks: Vec<Bytes>, what: What, pause: Option<Duration>) -> Done {
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
}

impl Durable {
    /// The next event (its entry id in `id`), reading when none is buffered; the one taken
    /// before is finished now. Never ends.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Raw> {
        if let Some(id) = self.taken.take() {
            self.finished(id);
        }
        loop {
            self.poll_acking(cx);
            if let Some(raw) = self.buffer.pop_front() {
                self.taken.clone_from(&raw.id);
                if !self.buffer.is_empty() {
                    self.send_waiting_acks(cx);
                }
                return Poll::Ready(raw);
            }
            if self.step.is_none() {
                self.start_step();
            }
            let step = self.step.as_mut().expect("a step was just started");
            let done = std::task::ready!(poll_held(step, cx));
            self.step = None;
            self.took(done);
        }
    }

    /// Whether the acknowledgements waiting are to be sent now: many, or one waited
    /// [`ACK_DELAY`].
    fn acks_due(&self) -> bool {
        !self.acks.is_empty()
            && (self.acks.len() >= ACK_BATCH
                || self.acks_since.is_some_and(|t| t.elapsed() >= ACK_DELAY))
    }

    fn finished(&mut self, id: Bytes) {
        if self.acks.is_empty() {
            self.acks_since = Some(Instant::now());
        }
        self.acks.push(id);
    }

    /// Sends the acknowledgements waiting on their own, if many wait or for long (they go
    /// with the next read otherwise, once the buffer is empty).
    fn send_waiting_acks(&mut self, cx: &mut Context<'_>) {
        if self.acking.is_some() || !self.acks_due() {
            return;
        }
        let ids = std::mem::take(&mut self.acks);
        self.acks_since = None;
        let r = self.reader.clone();
        let sent = ids.clone();
        self.acking = Some((
            ids,
            hold(async move { ack(&once(&r.client), &r.key, &r.group, &sent).await }),
        ));
        // Polled once now: that sends it.
        self.poll_acking(cx);
    }

    fn poll_acking(&mut self, cx: &mut Context<'_>) {
        let Some((_, held)) = &mut self.acking else {
            return;
        };
        if let Poll::Ready(ok) = poll_held(held, cx) {
            let (ids, _) = self.acking.take().expect("polled just now");
            if !ok {
                self.retry_acks(ids);
            }
        }
    }

    /// Acknowledgements Redis did not take: sent again with the next ones.
    fn retry_acks(&mut self, mut ids: Vec<Bytes>) {
        ids.append(&mut self.acks);
        self.acks = ids;
        self.acks_since.get_or_insert_with(Instant::now);
    }

    fn start_step(&mut self) {
        let what = if let Some(start) = self.claim_from.take() {
            What::Claim {
                start,
                forget: false,
            }
        } else if self.last_claim.elapsed() >= self.claim_every {
            self.last_claim = Instant::now();
            self.claim_pages = 0;
            What::Claim {
                start: Bytes::from_static(b"0-0"),
                forget: true,
            }
        } else {
            What::Read(self.pending_from.clone())
        };
        // The acknowledgements go with the read once many wait or for long: not one `XACK`
        // per event when events come one at a time. One that waits less goes with a later
        // read (a read blocks a second at most) or at the end.
        let acks = if self.acks_due() {
            self.acks_since = None;
            std::mem::take(&mut self.acks)
        } else {
            Vec::new()
        };
        let pause = self.pause.take();
        self.step = Some(hold(self.reader.clone().step(acks, what, pause)));
    }

    /// Takes in what a step brought.
    fn took(&mut self, done: Done) {
        let (acks, acked) = done.acked;
        if !acked {
            self.retry_acks(acks);
        }
        match done.outcome {
            Outcome::Read { entries } => {
                self.backoff = MIN_BACKOFF;
                let again = self.pending_from.is_some();
                if again {
                    self.pending_from = entries.last().map(|(id, _)| id.clone());
                }
                self.buffer_entries(entries, again);
            }
            Outcome::Claimed { entries, next } => {
                self.claim_pages += 1;
                if self.claim_pages < CLAIM_PAGES {
                    self.claim_from = next;
                }
                self.buffer_entries(entries, true);
            }
            Outcome::GroupGone(created) => {
                self.reader
                    .counters
                    .resubscribes
                    .fetch_add(1, Ordering::Relaxed);
                self.pending_from = Some(Bytes::from_static(b"0"));
                if !created {
                    self.back_off();
                }
            }
            Outcome::Failed => {
                // What a lost answer delivered is pending on this consumer: read it.
                self.pending_from = Some(Bytes::from_static(b"0"));
                self.back_off();
            }
        }
    }

    fn back_off(&mut self) {
        self.pause = Some(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Puts entries in the buffer. `again`: entries this subscription may have had already
    /// (its pending ones, claimed ones): those it finished and has not had acknowledged yet
    /// are left out (the buffer is empty and nothing is taken when a step ends).
    fn buffer_entries(&mut self, entries: Vec<(Bytes, Value)>, again: bool) {
        let known: HashSet<Bytes> = if again {
            let acking = self.acking.iter().flat_map(|(ids, _)| ids.iter());
            self.acks.iter().chain(acking).cloned().collect()
        } else {
            HashSet::new()
        };
        let mut n = 0;
        for (id, fields) in entries {
            if again && known.contains(&id) {
                continue;
            }
            let Some(raw) = self.reader.parse(id.clone(), fields) else {
                // Trimmed away while pending (nil fields): nothing to hand over.
                self.finished(id);
                continue;
            };
            n += 1;
            self.buffer.push_back(raw);
        }
        let counters = &self.reader.counters;
        counters.received.fetch_add(n, Ordering::Relaxed);
        metrics::received(DeliveryMode::Durable, n);
        if again && n > 0 {
            counters.redelivered.fetch_add(n, Ordering::Relaxed);
            metrics::redelivered(n);
        }
    }

    /// The group's lag (see [`lag::of_group`]).
    pub(super) async fn lag(&self) -> Result<Option<u64>, TopicError> {
        let r = &self.reader;
        lag::of_group(&r.cmd, &r.key, &r.group).await
    }

    /// Acknowledges everything taken (the last event included) and closes the connection.
    pub(super) async fn close(mut self) {
        if let Some(id) = self.taken.take() {
            self.finished(id);
        }
        self.closed = true;
        let mut ids = std::mem::take(&mut self.acks);
        if let Some((sent, mut held)) = self.acking.take()
            && !std::future::poll_fn(|cx| poll_held(&mut held, cx)).await
        {
            ids.extend(sent);
        }
        let r = &self.reader;
        ack(&r.cmd, &r.key, &r.group, &ids).await;
        let _ = r.client.quit().await;
    }
}

impl Drop for Durable {
    /// Sends the acknowledgements waiting (not the last event taken: it may not be
    /// finished) and closes the connection, without waiting.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let r = self.reader.clone();
        let mut ids = std::mem::take(&mut self.acks);
        // An `XACK` under way was sent: the connection answers it before the `QUIT`. One
        // that failed is not known to have: its ids go again.
        if let Some((sent, _)) = self.acking.take() {
            ids.extend(sent);
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                ack(&r.cmd, &r.key, &r.group, &ids).await;
                let _ = r.client.quit().await;
            });
        }
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
