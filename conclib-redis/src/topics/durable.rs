//! A durable subscription: a consumer of the topic stream's consumer group, on a connection
//! of its own, driven by the subscription's consumer. Asking for an event when none is
//! buffered sends the next read (`XREADGROUP`: this consumer's own pending entries first,
//! then what the group has not delivered yet; now and then an `XAUTOCLAIM` instead),
//! preceded on the same connection by the acknowledgements of the events finished, once
//! many wait or the oldest waited a few milliseconds (`XACK`): the task that handles the
//! events is the one that reads them, with no task and no channel between it and Redis.
//!
//! This file is the subscription's state ([`Durable`]): what it holds, which step comes
//! next, when acknowledgements go. How each step is sent to Redis and its answer read is
//! `durable/commands.rs`.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use fred::bytes::Bytes;
use fred::prelude::*;

use super::link::{Counters, Raw, SubscribeOptions};
use super::publish::Topics;
use super::topic::{DeliveryMode, Topic, TopicError};
use super::{lag, metrics, wire};
use crate::conn;

mod commands;

use commands::{Done, Outcome, Reader, What, ack, create_group, once};

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
