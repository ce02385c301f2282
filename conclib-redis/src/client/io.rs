//! The client's I/O besides writing requests (`outbox`): replies read by one reader,
//! connections and Redis restarts watched.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;
use fred::types::ClientUnblockFlag;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use super::shared::{REPLY_BATCH, REPLY_BLOCK_SECS, Shared};
use crate::conn::{self, keyed_at, owned, s};
use crate::error::is_connection_error;

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
    let _ = conn::unblocking(reader, ClientUnblockFlag::Error, quit).await;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fred::prelude::*;
    use fred::types::ClientUnblockFlag;

    use crate::conn::{self, keyed_at, owned};

    /// A blocking read interrupted before it is even sent (an interruption then finds
    /// nothing to interrupt, and the read would block for its whole minute) ends all the
    /// same, answering as if it timed out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_not_yet_sent_is_interrupted_all_the_same() {
        let (daemon, reader) =
            crate::daemon::with_client("unblocking", Duration::from_secs(120)).await;
        // A read of a list nothing is pushed to, for a minute; not polled yet: not sent.
        let read = conn::call(
            &reader,
            keyed_at("BLPOP", 0, true),
            vec![owned("nothing"), Value::Integer(60)],
        );
        tokio::pin!(read);
        assert!(
            reader
                .unblock_self(Some(ClientUnblockFlag::Timeout))
                .await
                .is_err(),
            "an interruption before the read is sent finds nothing blocked"
        );
        let read = conn::unblocking(&reader, ClientUnblockFlag::Timeout, read);
        let got = tokio::time::timeout(Duration::from_secs(30), read).await;
        let got = got.expect("interrupted long before its minute ends");
        assert_eq!(
            got.unwrap(),
            Value::Null,
            "answered as a read that timed out"
        );
        let _ = reader.quit().await;
        drop(daemon);
    }
}
