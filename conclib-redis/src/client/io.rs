//! The client's I/O: requests written in batches per stream, replies read by one reader,
//! connections and Redis restarts watched.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fred::prelude::*;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{mpsc, oneshot};

use super::{REPLY_BATCH, REPLY_BLOCK_SECS, Shared};
use crate::conn::{self, keyed_at, owned, s};
use crate::error::{ProxyError, is_connection_error, redis_error};
use crate::protocol::SEND_SCRIPT;

/// A request waiting to be written.
pub(super) struct Outgoing {
    pub(super) fields: Vec<(&'static str, Value)>,
    /// The body's size in bytes.
    pub(super) size: usize,
    pub(super) deadline: Instant,
    /// Whether Redis took it (with the count of Redis losses read before the write, see
    /// `Shared::taken`): `UnknownUrn` when the stream does not exist.
    pub(super) done: oneshot::Sender<Result<u64, ProxyError>>,
}

/// The most requests appended by one command. Small enough that a burst leaves as several
/// commands, so Redis hands the proxy the first requests while it still appends the rest
/// and the three processes work at once (with 64 asks in flight, 32 did about 15% more
/// asks/s than 16 or 256 in `proxy_bench` runs); large enough to spare most per-command work.
pub(super) const SEND_BATCH: usize = 32;
/// The most body bytes appended by one command (a single larger request goes alone).
pub(super) const SEND_BATCH_BYTES: usize = 1 << 20;

/// Writes the requests queued for one stream, in commands of at most [`SEND_BATCH`]
/// requests and [`SEND_BATCH_BYTES`], all sent at once.
pub(super) async fn flush(shared: Arc<Shared>, key: Arc<str>) {
    let queued = shared
        .outbox
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key)
        .unwrap_or_default();
    let mut batches: Vec<Vec<Outgoing>> = Vec::new();
    let mut bytes = 0;
    for request in queued {
        match batches.last_mut() {
            Some(batch) if batch.len() < SEND_BATCH && bytes + request.size <= SEND_BATCH_BYTES => {
                bytes += request.size;
                batch.push(request);
            }
            _ => {
                bytes = request.size;
                batches.push(vec![request]);
            }
        }
    }
    let sends = batches
        .into_iter()
        .map(|batch| send_batch(&shared, &key, batch));
    futures_util::future::join_all(sends).await;
}

/// Appends a batch of requests to a stream and tells each asker the outcome: a single
/// request with `XADD`, several with one script call (one command, which Redis runs at
/// once and then hands the proxy all its entries together).
pub(super) async fn send_batch(shared: &Shared, key: &str, batch: Vec<Outgoing>) {
    let Some(deadline) = batch.iter().map(|o| o.deadline).max() else {
        return;
    };
    // Waited for until the last request's deadline and no less: a request that fred still
    // holds when its asker gives up must be expired by the time it could reach the proxy.
    let left = deadline.saturating_duration_since(Instant::now());
    // Read before the write: a loss counted after this may have taken the requests.
    let losses = shared.losses.load(Ordering::Acquire);
    let client = match shared.connection() {
        Ok(client) => client.with_options(&Shared::command_options(left)),
        Err(down) => {
            for request in batch {
                let _ = request.done.send(Err(down.clone()));
            }
            return;
        }
    };
    let mut dones = Vec::with_capacity(batch.len());
    let written = if batch.len() == 1 {
        let Outgoing { fields, done, .. } = batch.into_iter().next().expect("one request");
        dones.push(done);
        // NOMKSTREAM: nil if the stream is gone.
        let xadd = client.xadd::<Value, _, _, _, _>(key, true, None::<()>, "*", fields);
        xadd.await.map(|id| !id.is_null())
    } else {
        let mut args = Vec::with_capacity(3 + batch.len() * 17);
        args.extend([
            owned(shared.send_sha.clone()),
            Value::Integer(1),
            owned(key),
        ]);
        for Outgoing { fields, done, .. } in batch {
            dones.push(done);
            args.push(Value::Integer(2 * fields.len() as i64));
            for (name, value) in fields {
                args.extend([s(name), value]);
            }
        }
        // Values are reference-counted: keeping a copy for a retry copies no payload.
        let mut result = conn::call(&client, keyed_at("EVALSHA", 2, false), args.clone()).await;
        if let Err(e) = &result
            && conn::error_code_is(e, "NOSCRIPT")
        {
            // Redis lost its scripts (restarted, or SCRIPT FLUSH): nothing was appended.
            args[0] = s(SEND_SCRIPT);
            result = conn::call(&client, keyed_at("EVAL", 2, false), args).await;
        }
        result.map(|appended| appended.as_i64() != Some(0))
    };
    let outcome = match written {
        Ok(true) => Ok(losses),
        // The urn is filled in by each asker.
        Ok(false) => Err(ProxyError::UnknownUrn { urn: String::new() }),
        Err(e) => Err(redis_error(&e)),
    };
    for done in dones {
        let _ = done.send(outcome.clone());
    }
}

/// Goes to the back of the runtime's queue of ready tasks. Unlike `yield_now`, which also
/// waits for the runtime's next poll of its I/O driver (a system call, and the replies of
/// the asks just resumed may come in first), it only lets the tasks ready now run first.
pub(super) async fn behind_ready_tasks() {
    let mut queued = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut queued, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// Reads this client's reply list and hands each reply to the ask waiting for it.
/// Closes the reply reader's connection now. It may sit in a blocking read (or have one
/// queued, about to be sent): its QUIT waits behind that, so the read is interrupted until
/// the QUIT goes through.
pub(super) async fn close_reader(reader: &Client) {
    let quit = reader.quit();
    tokio::pin!(quit);
    loop {
        let _ = reader.unblock_self(None).await;
        tokio::select! {
            _ = &mut quit => return,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

pub(super) async fn read_replies(shared: Arc<Shared>, reader: Client) {
    let mut backoff = Duration::from_millis(10);
    let cmd = keyed_at("BLMPOP", 2, true);
    while !shared.closed.load(Ordering::Acquire) {
        let args = vec![
            Value::Integer(REPLY_BLOCK_SECS as i64),
            Value::Integer(1),
            owned(shared.reply_key.clone()),
            s("LEFT"),
            s("COUNT"),
            Value::Integer(REPLY_BATCH),
        ];
        match conn::call(&reader, cmd.clone(), args).await {
            Ok(Value::Null) => {}
            Ok(Value::Array(mut parts)) if parts.len() == 2 => {
                backoff = Duration::from_millis(10);
                let Value::Array(frames) = parts.pop().expect("two parts") else {
                    tracing::warn!("malformed BLMPOP answer");
                    continue;
                };
                shared.deliver(frames);
                // Let the asks just answered run, then the writer of the requests they make
                // next, before the next read is written: that write wakes Redis, and the
                // next requests should not wait behind it. The asks are tasks ready now
                // (or the runtime's `block_on` future, polled once the queue is through);
                // their writer is spawned by them and queued behind them.
                behind_ready_tasks().await;
                tokio::task::yield_now().await;
            }
            Ok(other) => tracing::warn!(?other, "unexpected BLMPOP answer"),
            Err(e) => {
                if shared.closed.load(Ordering::Acquire) {
                    return;
                }
                if is_connection_error(&e) {
                    shared.disconnects.fetch_add(1, Ordering::AcqRel);
                }
                tracing::debug!(error = %e, "reading replies failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Follows the events fred reports for one connection: marks its link (`Shared::links`; the
/// reply reader has none) down when fred lost the connection and up when it reconnected,
/// counts the loss in `disconnects`, and has `watch_restarts` identify the server of each
/// reconnection.
pub(super) async fn watch_link(
    shared: Arc<Shared>,
    link: Option<usize>,
    mut errors: broadcast::Receiver<(fred::error::Error, Option<Server>)>,
    mut reconnects: broadcast::Receiver<Server>,
    checks: mpsc::UnboundedSender<Option<Server>>,
) {
    let mark = |up: bool| {
        if let Some(link) = link {
            shared.links[link].store(up, Ordering::Release);
        }
    };
    loop {
        tokio::select! {
            // Fred reports a loss before the reconnection that follows it: when both wait,
            // the loss goes first, so the link ends up up.
            biased;
            error = errors.recv() => match error {
                // A connection lost (fred names its server; a failed reconnection attempt
                // names none: nothing new).
                Ok((_, Some(_))) => {
                    mark(false);
                    shared.disconnects.fetch_add(1, Ordering::AcqRel);
                }
                Ok((_, None)) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            server = reconnects.recv() => {
                let server = match server {
                    Ok(server) => Some(server),
                    // Which server is unknown: all are looked at.
                    Err(RecvError::Lagged(_)) => None,
                    Err(RecvError::Closed) => return,
                };
                mark(true);
                if checks.send(server).is_err() {
                    return;
                }
            }
        }
    }
}

/// Identifies the Redis server of each reconnection (`Shared::identified`): a Redis that
/// restarted empty fails the asks whose requests it lost, at once.
pub(super) async fn watch_restarts(
    shared: Arc<Shared>,
    mut checks: mpsc::UnboundedReceiver<Option<Server>>,
) {
    while let Some(first) = checks.recv().await {
        // Reconnections come in bursts (each connection of the pool, the reader): one look
        // per server. Outside a cluster there is one server, whatever its address.
        let mut nodes = vec![first];
        while let Ok(next) = checks.try_recv() {
            nodes.push(next);
        }
        if !shared.clustered {
            nodes = vec![None];
        } else if nodes.contains(&None) {
            nodes = shared
                .run_ids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect();
        }
        nodes.sort();
        nodes.dedup();
        for node in nodes {
            // Right after fred's report the connection may not take commands yet: a few
            // tries (a later reconnection brings another look anyway).
            let mut pause = Duration::from_millis(20);
            for _ in 0..5 {
                if shared.closed.load(Ordering::Acquire) {
                    return;
                }
                if let Some(id) = shared.identify(node.as_ref()).await {
                    shared.identified(node.clone(), &id);
                    break;
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}
