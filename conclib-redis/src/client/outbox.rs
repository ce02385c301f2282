//! Requests on their way into Redis: queued by request stream, and written by at most
//! [`WRITERS`] writers a stream, each taking everything queued since its last command.
//!
//! Why a few writers that loop rather than a write spawned for the first of the requests
//! queued together: on a multi-threaded runtime an idle worker took that write at once,
//! before the asks woken with the first had queued theirs, and every request went alone
//! (one command each: `proxy_bench` with 2-worker runtimes counted 1.0 request a command
//! at 64 asks in flight, and did a quarter fewer asks a second than on one thread). Here a
//! request queued while its stream's writers wait for Redis leaves in their next command:
//! the batches grow with the load and the round trip, whatever the runtime. A lone request
//! still finds a writer free and leaves at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;

use super::queued::{Done, Outgoing, StreamOutbox};
use super::shared::Shared;
use super::waiter::Waiter;
use crate::conn::{self, keyed_at, owned, s};
use crate::error::{ProxyError, redis_error};
use crate::protocol::field;
use crate::script::Script;

/// The most requests appended by one command. Small enough that a burst leaves as several
/// commands, so Redis hands the proxy the first requests while it still appends the rest
/// and the three processes work at once (with 64 asks in flight, 32 did about 15% more
/// asks/s than 16 or 256 in `proxy_bench` runs); large enough to spare most per-command work.
pub(super) const SEND_BATCH: usize = 32;
/// The most body bytes appended by one command (a single larger request goes alone).
pub(super) const SEND_BATCH_BYTES: usize = 1 << 20;
/// Writers at work on one stream at most. Two, so that a request queued while one writer
/// waits for Redis can leave at once with the other; the requests queued behind both leave
/// together as soon as either is back.
const WRITERS: usize = 2;

/// Tells each request's waiter how its write went: the tells' senders, and the asks through
/// `pending` (one lock for the batch).
fn report(shared: &Shared, dones: Vec<Done>, outcome: Result<u64, ProxyError>) {
    let mut asks = Vec::new();
    for done in dones {
        match done {
            Done::Tell(tx) => {
                let _ = tx.send(outcome.clone());
            }
            Done::Ask(id) => asks.push(id),
        }
    }
    if !asks.is_empty() {
        shared.writes_done(&asks, outcome);
    }
}

/// Queues a request for stream `key`, and starts a writer for it unless [`WRITERS`] are at
/// work already (one of them takes it when back from Redis).
pub(super) fn queue(shared: &Arc<Shared>, key: &Arc<str>, request: Outgoing) {
    let start = {
        let mut outbox = shared.outbox.lock().unwrap_or_else(|e| e.into_inner());
        let stream = outbox.entry(key.clone()).or_default();
        stream.queue.push(request);
        let start = stream.writers < WRITERS;
        stream.writers += usize::from(start);
        start
    };
    if start {
        let writer = Writer {
            shared: shared.clone(),
            key: key.clone(),
            counted: true,
        };
        tokio::spawn(writer.run());
    }
}

/// One of a stream's writers. Counted in its [`StreamOutbox`] until it finds nothing queued
/// (or is dropped: the runtime shut down under it).
struct Writer {
    shared: Arc<Shared>,
    key: Arc<str>,
    counted: bool,
}

impl Writer {
    async fn run(mut self) {
        // A task spawned on a worker of a multi-threaded runtime runs next there, before
        // the asks woken with the one that spawned it (tokio's LIFO slot): behind them, it
        // finds their requests queued too. (On one thread it runs after them anyway.)
        super::io::behind_ready_tasks().await;
        loop {
            let queued = {
                let mut outbox = self.shared.outbox.lock().unwrap_or_else(|e| e.into_inner());
                match outbox.get_mut(&self.key) {
                    Some(stream) if !stream.queue.is_empty() => std::mem::take(&mut stream.queue),
                    // Nothing queued: leave under the same lock a sender counts writers
                    // under, so no request is queued for a writer that is gone.
                    _ => return leave(&mut self.counted, &self.key, &mut outbox),
                }
            };
            write(&self.shared, &self.key, queued).await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.counted {
            let mut outbox = self.shared.outbox.lock().unwrap_or_else(|e| e.into_inner());
            leave(&mut self.counted, &self.key, &mut outbox);
        }
    }
}

/// A writer stops counting among its stream's (once).
fn leave(counted: &mut bool, key: &Arc<str>, outbox: &mut HashMap<Arc<str>, StreamOutbox>) {
    if !std::mem::replace(counted, false) {
        return;
    }
    if let Some(stream) = outbox.get_mut(key) {
        stream.writers -= 1;
        if stream.writers == 0 && stream.queue.is_empty() {
            outbox.remove(key);
        }
    }
}

/// Writes requests taken from a stream's queue, all at once in the commands [`batches`]
/// makes of them.
async fn write(shared: &Shared, key: &str, queued: Vec<Outgoing>) {
    let (batches, expired) = {
        let pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        batches(queued, Instant::now(), &pending)
    };
    if !expired.is_empty() {
        report(shared, expired, Err(ProxyError::Timeout(Duration::ZERO)));
    }
    let sends = batches
        .into_iter()
        .map(|batch| send_batch(shared, key, batch));
    futures_util::future::join_all(sends).await;
}

/// Splits requests taken from a stream's queue into commands of at most [`SEND_BATCH`]
/// requests and [`SEND_BATCH_BYTES`], in their order. A request whose sender gave up while
/// it waited (its future was dropped, or its ask is no longer in `pending`) is left out;
/// one that expired is returned apart, to be answered `Timeout`: neither is written.
fn batches(
    queued: Vec<Outgoing>,
    now: Instant,
    pending: &HashMap<u64, Waiter>,
) -> (Vec<Vec<Outgoing>>, Vec<Done>) {
    let mut batches: Vec<Vec<Outgoing>> = Vec::new();
    let mut expired = Vec::new();
    let mut bytes = 0;
    let mut left = queued.len();
    for request in queued {
        left -= 1;
        if request.done.given_up(pending) {
            continue;
        }
        if request.expires <= now {
            expired.push(request.done);
            continue;
        }
        match batches.last_mut() {
            Some(batch) if batch.len() < SEND_BATCH && bytes + request.size <= SEND_BATCH_BYTES => {
                bytes += request.size;
                batch.push(request);
            }
            _ => {
                bytes = request.size;
                // Room for the requests left, as far as a command takes them.
                let mut batch = Vec::with_capacity(SEND_BATCH.min(left + 1));
                batch.push(request);
                batches.push(batch);
            }
        }
    }
    (batches, expired)
}

/// Appends a batch of requests to a stream and tells each asker the outcome: a single
/// request with `XADD`, several with one script call (one command, which Redis runs at
/// once and then hands the proxy all its entries together).
async fn send_batch(shared: &Shared, key: &str, batch: Vec<Outgoing>) {
    let Some(deadline) = batch.iter().map(|o| o.deadline).max() else {
        return;
    };
    // Waited for until the last request's deadline and no less: a request that fred still
    // holds when its asker gives up must be expired by the time it could reach the proxy.
    let now = Instant::now();
    let left = deadline.saturating_duration_since(now);
    // Read before the write: a loss counted after this may have taken the requests.
    let losses = shared.losses.load(std::sync::atomic::Ordering::Acquire);
    let client = match shared.connection() {
        Ok(client) => client.with_options(&Shared::command_options(left)),
        Err(down) => {
            let dones = batch.into_iter().map(|request| request.done).collect();
            report(shared, dones, Err(down));
            return;
        }
    };
    // What a tell's `WAIT` checks its connection against (`Durability::replicated`).
    let sent = shared.config.durability.sending(&client);
    let mut dones = Vec::with_capacity(batch.len());
    let ttl_ms = |expires: Instant| {
        let ms = expires.saturating_duration_since(now).as_millis();
        Value::Integer(ms.clamp(1, u128::from(u32::MAX)) as i64)
    };
    let written = if batch.len() == 1 {
        let Outgoing {
            mut fields,
            done,
            expires,
            ..
        } = batch.into_iter().next().expect("one request");
        fields.push((field::TTL, ttl_ms(expires)));
        dones.push(done);
        // NOMKSTREAM: nil if the stream is gone.
        let xadd = client.xadd::<Value, _, _, _, _>(key, true, None::<()>, "*", fields);
        xadd.await.map(|id| !id.is_null())
    } else {
        let mut args = Vec::with_capacity(3 + batch.len() * 17);
        args.extend([shared.send.sha(), Value::Integer(1), owned(key)]);
        for Outgoing {
            mut fields,
            done,
            expires,
            ..
        } in batch
        {
            fields.push((field::TTL, ttl_ms(expires)));
            dones.push(done);
            args.push(Value::Integer(2 * fields.len() as i64));
            for (name, value) in fields {
                args.extend([s(name), value]);
            }
        }
        // Values are reference-counted: keeping a copy for a retry copies no payload.
        let mut result = conn::call(&client, keyed_at("EVALSHA", 2, false), args.clone()).await;
        if let Err(e) = &result
            && Script::lost(e)
        {
            // Redis lost its scripts (restarted, or SCRIPT FLUSH): nothing was appended.
            result = shared.send.again_by_text(&client, args).await;
        }
        result.map(|appended| appended.as_i64() != Some(0))
    };
    // A tell is reported accepted once a promotion would keep it (`Durability`); an ask's
    // answer is its acknowledgement, so asks alone wait for no replica.
    let written = match written {
        Ok(true) if dones.iter().any(|d| matches!(d, Done::Tell(_))) => {
            match shared
                .config
                .durability
                .replicated(&client, key, &sent)
                .await
            {
                Ok(()) => Ok(true),
                Err(e) => {
                    let e =
                        ProxyError::Unavailable(format!("{e}; the tell may or may not be handled"));
                    report(shared, dones, Err(e));
                    return;
                }
            }
        }
        other => other,
    };
    let outcome = match written {
        Ok(true) => Ok(losses),
        // The urn is filled in by each asker.
        Ok(false) => Err(ProxyError::UnknownUrn { urn: String::new() }),
        Err(e) => Err(redis_error(&e)),
    };
    report(shared, dones, outcome);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;

    use std::collections::HashMap;

    use super::super::waiter::Waiter;
    use super::batches as split;
    use super::{Done, Outgoing, SEND_BATCH, SEND_BATCH_BYTES};
    use crate::error::ProxyError;

    type Written = oneshot::Receiver<Result<u64, ProxyError>>;

    fn request(size: usize, expires: Instant) -> (Outgoing, Written) {
        let (done, rx) = oneshot::channel();
        (outgoing(size, expires, Done::Tell(done)), rx)
    }

    fn outgoing(size: usize, expires: Instant, done: Done) -> Outgoing {
        Outgoing {
            fields: Vec::new(),
            size,
            deadline: expires,
            expires,
            done,
        }
    }

    /// The commands made of `queued`, none expired, with no ask waiting.
    fn batches(queued: Vec<Outgoing>, now: Instant) -> Vec<Vec<Outgoing>> {
        let (made, expired) = split(queued, now, &HashMap::new());
        assert!(expired.is_empty());
        made
    }

    fn sizes(batches: &[Vec<Outgoing>]) -> Vec<Vec<usize>> {
        batches
            .iter()
            .map(|b| b.iter().map(|r| r.size).collect())
            .collect()
    }

    #[test]
    fn requests_leave_in_order_in_commands_of_bounded_count_and_bytes() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut receivers = Vec::new();
        let mut queued = Vec::new();
        for i in 0..SEND_BATCH + 3 {
            let (r, rx) = request(i, later);
            queued.push(r);
            receivers.push(rx);
        }
        let made = batches(queued, now);
        assert_eq!(
            sizes(&made),
            vec![
                (0..SEND_BATCH).collect::<Vec<_>>(),
                (SEND_BATCH..SEND_BATCH + 3).collect()
            ]
        );

        // Bytes: a request that would take a command past the limit starts the next one;
        // one larger than the limit goes alone.
        let half = SEND_BATCH_BYTES / 2;
        let queued: Vec<Outgoing> = [half, half, 1, SEND_BATCH_BYTES + 1, 1]
            .into_iter()
            .map(|size| {
                let (r, rx) = request(size, later);
                receivers.push(rx);
                r
            })
            .collect();
        assert_eq!(
            sizes(&batches(queued, now)),
            vec![
                vec![half, half],
                vec![1],
                vec![SEND_BATCH_BYTES + 1],
                vec![1]
            ]
        );
    }

    #[test]
    fn requests_given_up_or_expired_while_queued_are_not_written() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let (live, _live_rx) = request(1, later);
        let (dropped, dropped_rx) = request(2, later);
        drop(dropped_rx);
        let (expired, _expired_rx) = request(3, now);
        // Asks: one still waiting for its reply, one that gave up (no longer pending), one
        // expired.
        let waiter = || Waiter {
            reply: oneshot::channel().0,
            written: false,
        };
        let pending = HashMap::from([(7, waiter()), (9, waiter())]);
        let asked = outgoing(4, later, Done::Ask(7));
        let gone = outgoing(5, later, Done::Ask(8));
        let late = outgoing(6, now, Done::Ask(9));
        let (made, expired) = split(
            vec![live, dropped, expired, asked, gone, late],
            now,
            &pending,
        );
        assert_eq!(sizes(&made), vec![vec![1, 4]]);
        assert!(matches!(expired.as_slice(), [Done::Tell(_), Done::Ask(9)]));
    }
}
