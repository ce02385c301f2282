//! Reading requests: the request loop (a request's fields are in `request.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use fred::bytes::Bytes;
use fred::prelude::*;
use fred::types::ClientUnblockFlag;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::dispatch;
use super::stream::{Completion, Handling};
use super::write;
use super::write::write_loop;
use crate::conn::{self, bytes, keyed_at, owned, s};
use crate::error::is_connection_error;
use crate::protocol::CONSUMER_GROUP;
use crate::proxy::shared::Shared;
use crate::unacked::EntryId;

/// Requests being handled, driven by the read loop.
pub(in crate::proxy) type Running = FuturesUnordered<Handling>;

/// Resolves once the stop flag is set (or its sender is gone).
pub(in crate::proxy) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Polls a future once; gives it back if it is not done.
pub(in crate::proxy) fn poll_once<T>(
    mut fut: Pin<Box<dyn Future<Output = T> + Send>>,
) -> Result<T, Pin<Box<dyn Future<Output = T> + Send>>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(fut),
    }
}

/// Takes the completions of `running` that are ready now.
pub(in crate::proxy) fn take_ready(running: &mut Running, into: &mut Vec<Completion>) {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while let Poll::Ready(Some(c)) = Pin::new(&mut *running).poll_next(&mut cx) {
        into.push(c);
    }
}

/// Starts the read loop and the writer: (reader, writer).
pub(in crate::proxy) fn start_reading(
    shared: &Arc<Shared>,
    block: Duration,
) -> (JoinHandle<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(shared.clone(), rx));
    let reader = tokio::spawn(read_loop(shared.clone(), tx, block));
    (reader, writer)
}

/// The proxy's request loop, one task: reads requests, starts their handling, drives it,
/// and writes the replies of requests answered at once in front of its next read, on the
/// same connection (one write, one wake-up of Redis, and the reply goes out before Redis
/// is asked for more). Replies that come later go to the writer (`late`), which writes on
/// the command connection while this one waits in a blocking read.
pub(in crate::proxy) async fn read_loop(
    shared: Arc<Shared>,
    late: mpsc::UnboundedSender<Vec<Completion>>,
    block: Duration,
) {
    let mut stop = shared.stop.subscribe();
    // First the entries delivered to us before and never acknowledged (a crash, a lost
    // answer), then new ones.
    let mut position = Position::PENDING_FROM_START;
    let mut backoff = Duration::from_millis(10);
    let cmd = keyed_at("XREADGROUP", 4, true);
    let mut running = Running::new();
    let mut writes: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>> =
        FuturesUnordered::new();
    let mut ready: Vec<Completion> = Vec::new();
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        if shared.stream.reread.swap(false, Ordering::AcqRel) {
            position = Position::PENDING_FROM_START;
        }
        // Handlers that answer at once do so now, so their replies precede the next read.
        if !running.is_empty() {
            tokio::task::yield_now().await;
            take_ready(&mut running, &mut ready);
        }
        if !ready.is_empty() {
            let write = Box::pin(write::write_ahead(
                shared.clone(),
                std::mem::take(&mut ready),
                late.clone(),
            ));
            // Its commands are queued on the connection before the read's.
            if let Err(rest) = poll_once(write) {
                writes.push(rest);
            }
        }
        // Wait for room before reading more.
        let first = loop {
            tokio::select! {
                p = shared.stream.in_flight.clone().acquire_owned() => match p {
                    Ok(p) => break Some(p),
                    Err(_) => break None,
                },
                Some(c) = running.next() => { let _ = late.send(vec![c]); }
                Some(()) = writes.next() => {}
                _ = stopped(&mut stop) => break None,
            }
        };
        let Some(first) = first else { break };
        let count = (shared.stream.in_flight.available_permits() + 1).min(shared.config.batch_size);
        let mut args = vec![
            s("GROUP"),
            s(CONSUMER_GROUP),
            owned(shared.stream.consumer.clone()),
            s("COUNT"),
            Value::Integer(count as i64),
        ];
        if !position.is_pending() {
            args.push(s("BLOCK"));
            args.push(Value::Integer(block.as_millis() as i64));
        }
        args.push(s("STREAMS"));
        args.push(owned(shared.stream.requests_key.clone()));
        args.push(position.read_after());
        // XREADGROUP's key is after GROUP g c COUNT n [BLOCK ms] STREAMS.
        let offset = args.len() - 2;
        // What is acknowledged from here on may still be listed by a re-read's reply.
        shared.stream.unacked().rereading(position.is_pending());
        let mut read_cmd = cmd.clone();
        read_cmd.cluster_hash = fred::types::ClusterHash::Offset(offset);
        // Sent once at most: fred would otherwise send a read lost with its connection
        // again after reconnecting, and the entries Redis had delivered to the lost one
        // would stay pending, unknown here (no re-read of the pending list), and be trimmed
        // away unhandled (accepted tells were lost so across a restart of a Redis with an
        // append-only file). An error here re-reads the pending list instead.
        let reader = shared.reader.with_options(&Options {
            max_attempts: Some(1),
            ..Options::default()
        });
        let read = conn::call(&reader, read_cmd, args);
        tokio::pin!(read);
        let answered = loop {
            tokio::select! {
                r = &mut read => break Some(r),
                Some(c) = running.next() => { let _ = late.send(vec![c]); }
                Some(()) = writes.next() => {}
                _ = stopped(&mut stop) => break None,
                () = shared.stream.woken.notified() => break None,
            }
        };
        // Stopping, or woken to read the pending list again (a member handed a request:
        // `placement.rs`, `wake_member`): the read is ended as if it timed out, and
        // whatever it got is handled.
        let result = match answered {
            Some(r) => r,
            None => conn::unblocking(&shared.reader, ClientUnblockFlag::Timeout, read).await,
        };
        let entries = match result {
            Ok(Value::Null) => {
                if position.is_pending() {
                    position = Position::New;
                    shared.stream.unacked().set_complete(true);
                }
                continue;
            }
            Ok(value) => {
                backoff = Duration::from_millis(10);
                conn::stream_entries(value)
            }
            Err(e) => {
                if conn::error_code_is(&e, "NOGROUP") {
                    tracing::info!(system = %shared.system_id, "the request stream or its group is gone (Redis restarted?); recreating it");
                    if let Err(e) = shared.stream.ensure_group(&shared.cmd).await {
                        tracing::warn!(error = %e, "could not recreate the consumer group");
                    }
                } else {
                    tracing::warn!(error = %e, connection = is_connection_error(&e), "reading requests failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut stop) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                // An answer lost with the connection leaves entries delivered to us: re-read them.
                position = Position::PENDING_FROM_START;
                shared.stream.unacked().set_complete(false);
                continue;
            }
        };
        if !entries.is_empty() {
            crate::metrics::read_batch(&shared.system_id, entries.len());
        }
        if position.is_pending() && entries.is_empty() {
            position = Position::New;
            shared.stream.unacked().set_complete(true);
            continue;
        }
        let mut permit = Some(first);
        for (entry_id, fields) in entries {
            let Some(id) = EntryId::parse(&entry_id) else {
                tracing::warn!(entry = ?entry_id, "skipped a stream entry with a malformed id");
                continue;
            };
            position.read_past(&entry_id);
            // Re-reading the pending list: skip what is being handled already.
            if !shared.stream.unacked().insert(id) {
                continue;
            }
            let permit = match permit.take() {
                Some(p) => p,
                None => match shared.stream.in_flight.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            // Read from the pending list: placed here, claimed from a member gone, or read
            // again; never placed elsewhere again (`placement.rs`).
            match dispatch::dispatch(
                &shared,
                entry_id,
                id,
                fields,
                permit,
                !position.is_pending(),
            ) {
                Err(done) => ready.push(done),
                // Started here, in arrival order, so one client's messages to one actor enter
                // its mailbox in order.
                Ok(handling) => match poll_once(handling) {
                    Ok(done) => ready.push(done),
                    Err(rest) => running.push(rest),
                },
            }
        }
    }
    // Stopping: finish what was taken; the writer writes it.
    take_ready(&mut running, &mut ready);
    if !ready.is_empty() {
        let _ = late.send(ready);
    }
    while let Some(c) = running.next().await {
        let _ = late.send(vec![c]);
    }
    while writes.next().await.is_some() {}
    tracing::debug!(system = %shared.system_id, "stopped reading requests");
}

/// Where the read loop reads in its stream: the entries delivered to this consumer before
/// and never acknowledged (a crash, a lost answer), or new ones.
enum Position {
    /// Re-reading the pending list, after this entry id (`0`: from its start).
    Pending(Bytes),
    /// Reading new entries (`>`), blocking for them.
    New,
}

impl Position {
    /// The pending list from its start: where the loop begins, and where it goes back to
    /// after a failed read (an answer lost with the connection leaves entries delivered
    /// to it) or when asked to read it again.
    const PENDING_FROM_START: Position = Position::Pending(Bytes::from_static(b"0"));

    fn is_pending(&self) -> bool {
        matches!(self, Position::Pending(_))
    }

    /// XREADGROUP's id argument: the last pending entry read, or `>` for new ones.
    fn read_after(&self) -> Value {
        match self {
            Position::Pending(from) => bytes(from.clone()),
            Position::New => s(">"),
        }
    }

    /// Entry `entry_id` was read: a re-read of the pending list goes on after it.
    fn read_past(&mut self, entry_id: &Bytes) {
        if let Position::Pending(from) = self {
            *from = entry_id.clone();
        }
    }
}
