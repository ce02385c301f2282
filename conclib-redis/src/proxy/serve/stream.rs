//! The request stream a proxy instance reads ([`Stream`]): its key, the consumer it reads
//! as, the entries read and not acknowledged, and the requests in flight. `read.rs` reads
//! it, `write.rs` answers and acknowledges.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::bytes::Bytes;
use fred::prelude::*;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::conn::{self, keyed, keyed_at, owned, s};
use crate::protocol::{self, CONSUMER_GROUP, Status};
use crate::unacked::{EntryId, Unacked};

/// The request stream of a proxy instance (a system's own, or a group's), as this
/// instance reads it.
pub(in crate::proxy) struct Stream {
    /// The stream's key.
    pub(in crate::proxy) requests_key: String,
    /// The consumer this instance reads the stream as: `proxy` for a system's own stream,
    /// the system id in a group's.
    pub(in crate::proxy) consumer: String,
    /// Places for requests in flight (read and not answered yet).
    pub(in crate::proxy) in_flight: Arc<Semaphore>,
    /// Stream entries read and not yet acknowledged (re-reading the pending list skips
    /// them; the stream is trimmed below them).
    unacked: Mutex<Unacked>,
    /// An answer was given up on: the read loop re-reads the pending list to handle it again.
    pub(in crate::proxy) reread: AtomicBool,
    /// Ends the read loop's blocking read now, to re-read the pending list ([`Stream::wake`]).
    pub(in crate::proxy) woken: Notify,
    /// The request stream holds ids far in the future (a hostile client): reset it once
    /// drained.
    pub(in crate::proxy) poisoned: AtomicBool,
}

impl Stream {
    /// The stream at `requests_key`, read as `consumer`, with at most `in_flight` requests
    /// in flight.
    pub(in crate::proxy) fn new(requests_key: String, consumer: String, in_flight: usize) -> Self {
        Stream {
            requests_key,
            consumer,
            in_flight: Arc::new(Semaphore::new(in_flight)),
            unacked: Mutex::new(Unacked::default()),
            reread: AtomicBool::new(false),
            woken: Notify::new(),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Has the read loop re-read the pending list now: its blocking read is ended (a
    /// member handed a request, which waits there: `placement.rs`, `wake_member`).
    pub(in crate::proxy) fn wake(&self) {
        self.reread.store(true, Ordering::Release);
        self.woken.notify_one();
    }

    /// Creates the request stream and its consumer group, reading from the stream's start
    /// (so requests queued before the group existed are served).
    pub(in crate::proxy) async fn ensure_group(
        &self,
        cmd: &Client,
    ) -> Result<(), fred::error::Error> {
        let created = conn::call(
            cmd,
            keyed_at("XGROUP", 1, false),
            vec![
                s("CREATE"),
                owned(self.requests_key.clone()),
                s(CONSUMER_GROUP),
                s("0"),
                s("MKSTREAM"),
            ],
        )
        .await;
        match created {
            Err(e) if !conn::error_code_is(&e, "BUSYGROUP") => Err(e),
            _ => Ok(()),
        }
    }

    /// Renews the stream's TTL (`queue_ttl`): it lives that long after its last renewal.
    pub(in crate::proxy) async fn renew(&self, cmd: &Client, ttl: Duration) {
        let _ = conn::call(
            cmd,
            keyed("PEXPIRE"),
            vec![
                owned(self.requests_key.clone()),
                Value::Integer(ttl.as_millis() as i64),
            ],
        )
        .await;
    }

    /// The entries read and not acknowledged.
    pub(in crate::proxy) fn unacked(&self) -> std::sync::MutexGuard<'_, Unacked> {
        lock(&self.unacked)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What is left to do for one request: push its reply (if any) and acknowledge it.
pub(in crate::proxy) struct Completion {
    pub(in crate::proxy) id: EntryId,
    pub(in crate::proxy) reply: Option<(String, Bytes)>,
    /// Not acknowledged: left pending in Redis, to be read again (a tell this proxy could
    /// not confirm it may still serve).
    pub(in crate::proxy) requeue: bool,
    /// Placed on another member of its group: pending on that member now, so neither
    /// acknowledged nor read again here (`placement.rs`).
    pub(in crate::proxy) handed: bool,
    /// The request's place among those in flight, given back once the answer is written.
    pub(in crate::proxy) _permit: Option<OwnedSemaphorePermit>,
}

/// What becomes of a request's stream entry once its handling here is over.
pub(in crate::proxy) enum Handled {
    /// Answer the ask with `frame` pushed to `key`, then acknowledge the entry.
    Reply { key: String, frame: Bytes },
    /// Acknowledge the entry with no reply: a tell handled or refused, a request passed
    /// on, or one that cannot be answered.
    Acknowledge,
    /// Leave the entry pending, to be read again: this instance cannot settle it now.
    LeavePending,
    /// Placed on another member of its group: pending on that member now, so neither
    /// acknowledged nor read again here (`placement.rs`).
    Placed,
}

impl Handled {
    /// An ask's reply (`reply_to`: its reply key and id) of `status` and `payload`; a tell
    /// (no reply address) is acknowledged.
    pub(in crate::proxy) fn reply(
        reply_to: &Option<(String, u64)>,
        status: Status,
        payload: &[u8],
    ) -> Handled {
        match reply_to {
            Some((key, id)) => Handled::Reply {
                key: key.clone(),
                frame: Bytes::from(protocol::encode_reply(*id, status, payload)),
            },
            None => Handled::Acknowledge,
        }
    }
}

impl Completion {
    /// The completion of entry `id` handled as `handled`, giving back its place among those
    /// in flight once written.
    pub(in crate::proxy) fn of(
        id: EntryId,
        handled: Handled,
        permit: OwnedSemaphorePermit,
    ) -> Completion {
        let (reply, requeue, handed) = match handled {
            Handled::Reply { key, frame } => (Some((key, frame)), false, false),
            Handled::Acknowledge => (None, false, false),
            Handled::LeavePending => (None, true, false),
            Handled::Placed => (None, false, true),
        };
        Completion {
            id,
            reply,
            requeue,
            handed,
            _permit: Some(permit),
        }
    }
}

/// A request being handled: resolves to its completion.
pub(in crate::proxy) type Handling = Pin<Box<dyn Future<Output = Completion> + Send>>;

/// How far ahead of Redis's clock a request's entry id may be and still date the request.
pub(in crate::proxy) const FUTURE_ID_TOLERANCE_MS: i64 = 2_000;

/// Whether entry `entry` is still pending on `stream`'s consumer (in a group, another member
/// claims the entries of one paused past its lease). `false` when Redis does not say: the
/// entry is left pending and read again.
pub(in crate::proxy) async fn still_pending(cmd: &Client, stream: &Stream, entry: EntryId) -> bool {
    let id = entry.to_string();
    // Boxed: the command would otherwise sit in every request's future.
    let pending = Box::pin(conn::call(
        cmd,
        keyed("XPENDING"),
        vec![
            owned(stream.requests_key.clone()),
            s(CONSUMER_GROUP),
            owned(id.clone()),
            owned(id),
            Value::Integer(1),
            owned(stream.consumer.clone()),
        ],
    ))
    .await;
    matches!(pending, Ok(Value::Array(list)) if !list.is_empty())
}
