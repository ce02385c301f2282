//! Writing answers: replies pushed and requests acknowledged in batches, then the stream
//! trimmed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::bytes::Bytes;
use fred::prelude::*;
use tokio::sync::mpsc;

use super::stream::{Completion, FUTURE_ID_TOLERANCE_MS};
use crate::conn::{self, bytes, keyed, keyed_at, owned, s};
use crate::error::is_connection_error;
use crate::protocol::CONSUMER_GROUP;
use crate::proxy::shared::Shared;
use crate::script::Script;
use crate::unacked::EntryId;

/// The most completions answered by one script call (Lua's `unpack` has a stack limit).
pub(in crate::proxy) const ANSWER_CHUNK: usize = 1024;

/// Writes the completions it receives on the command connection, batched.
pub(in crate::proxy) async fn write_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Vec<Completion>>,
) {
    let mut received = Vec::with_capacity(64);
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut received, 256).await > 0 {
        batch.extend(received.drain(..).flatten());
        write(&shared, &mut batch).await;
    }
}

/// Writes a batch on the read connection, in front of the next read. A batch that fails
/// goes to the writer, which retries on the command connection (replies pushed twice are
/// harmless: a client discards frames it no longer waits for).
pub(in crate::proxy) async fn write_ahead(
    shared: Arc<Shared>,
    mut batch: Vec<Completion>,
    late: mpsc::UnboundedSender<Vec<Completion>>,
) {
    requeue(&shared, &mut batch);
    if batch.is_empty() {
        return;
    }
    match write_once(&shared, &shared.reader, &batch, false).await {
        Ok(()) => finish(&shared, &mut batch),
        Err(e) => {
            tracing::debug!(error = %e, "writing replies failed; retrying on the command connection");
            let _ = late.send(batch);
        }
    }
}

/// Writes a batch on the command connection, retrying a while (Redis unreachable, busy,
/// out of memory), then giving the requests back to the read loop: they are read again
/// from the pending list, a few seconds apart, until answered or expired.
pub(in crate::proxy) async fn write(shared: &Shared, batch: &mut Vec<Completion>) {
    requeue(shared, batch);
    if batch.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(20);
    for attempt in 0.. {
        let Err(e) = write_once(shared, &shared.cmd, batch, true).await else {
            break;
        };
        if attempt >= 8 {
            // WARN: nothing is lost, the requests are handled again once Redis takes
            // writes.
            tracing::warn!(error = %e, connection = is_connection_error(&e), requests = batch.len(), "could not write replies; the requests will be read again");
            give_up(shared, batch);
            return;
        }
        tracing::debug!(error = %e, "writing replies failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
    finish(shared, batch);
}

/// One attempt at writing a batch: one `EVALSHA` of the answer script per (at most)
/// [`ANSWER_CHUNK`] completions (`EVAL` where Redis lost the script, with `eval_fallback`).
/// A cluster cannot run one script over keys of different slots: there it is one push
/// script per reply list, then `XACK` and `XTRIM`, in one pipeline.
pub(in crate::proxy) async fn write_once(
    shared: &Shared,
    client: &Client,
    batch: &[Completion],
    eval_fallback: bool,
) -> Result<(), fred::error::Error> {
    if client.is_clustered() {
        return write_once_clustered(shared, client, batch, eval_fallback).await;
    }
    let ttl = Value::Integer(shared.config.reply_ttl.as_millis() as i64);
    let trim = trim_below(shared, batch).map_or(s(""), |below| owned(below.to_string()));
    let pipeline = client.pipeline();
    let mut calls = Vec::new();
    let chunks = batch.len().div_ceil(ANSWER_CHUNK);
    for (i, chunk) in batch.chunks(ANSWER_CHUNK).enumerate() {
        let mut by_key: HashMap<&str, Vec<&Bytes>> = HashMap::new();
        for c in chunk {
            if let Some((key, frame)) = &c.reply {
                by_key.entry(key).or_default().push(frame);
            }
        }
        let frames: usize = by_key.values().map(Vec::len).sum();
        let mut args = Vec::with_capacity(by_key.len() * 2 + chunk.len() + frames + 6);
        args.extend([
            shared.scripts.answer.sha(),
            Value::Integer(1 + by_key.len() as i64),
        ]);
        args.push(owned(shared.stream.requests_key.clone()));
        args.extend(by_key.keys().map(|k| owned(*k)));
        args.extend([
            s(CONSUMER_GROUP),
            ttl.clone(),
            Value::Integer(chunk.len() as i64),
        ]);
        args.extend(chunk.iter().map(|c| owned(c.id.to_string())));
        for frames in by_key.values() {
            args.push(Value::Integer(frames.len() as i64));
            args.extend(frames.iter().map(|f| bytes((*f).clone())));
        }
        // Trim once the whole batch is acknowledged: with its last chunk.
        args.push(if i + 1 == chunks { trim.clone() } else { s("") });
        let _ = conn::call(&pipeline, keyed_at("EVALSHA", 2, false), args.clone()).await;
        calls.push(args);
    }
    let results = pipeline.try_all::<Value>().await;
    let mut failure = None;
    for (i, args) in calls.into_iter().enumerate() {
        match results.get(i) {
            Some(Err(e)) if eval_fallback && Script::lost(e) => {
                if let Err(e) = shared.scripts.answer.again_by_text(client, args).await {
                    failure = Some(e);
                }
            }
            Some(Err(e)) => failure = Some(e.clone()),
            _ => {}
        }
    }
    failure.map_or(Ok(()), Err)
}

/// [`write_once`] for a cluster.
pub(in crate::proxy) async fn write_once_clustered(
    shared: &Shared,
    client: &Client,
    batch: &[Completion],
    eval_fallback: bool,
) -> Result<(), fred::error::Error> {
    let mut by_key: HashMap<&str, Vec<Value>> = HashMap::new();
    let mut entries = Vec::with_capacity(batch.len());
    for c in batch {
        entries.push(owned(c.id.to_string()));
        if let Some((key, frame)) = &c.reply {
            by_key.entry(key).or_default().push(bytes(frame.clone()));
        }
    }
    let ttl = Value::Integer(shared.config.reply_ttl.as_millis() as i64);
    let push = |script: Value, key: &str, frames: &[Value]| {
        let mut args = Vec::with_capacity(frames.len() + 4);
        args.extend([script, Value::Integer(1), owned(key), ttl.clone()]);
        args.extend(frames.iter().cloned());
        args
    };
    let pipeline = client.pipeline();
    for (key, frames) in &by_key {
        let args = push(shared.scripts.push.sha(), key, frames);
        let _ = conn::call(&pipeline, keyed_at("EVALSHA", 2, false), args).await;
    }
    let stream = owned(shared.stream.requests_key.clone());
    let mut ack = Vec::with_capacity(entries.len() + 2);
    ack.extend([stream.clone(), s(CONSUMER_GROUP)]);
    ack.extend(entries.iter().cloned());
    let _ = conn::call(&pipeline, keyed("XACK"), ack).await;
    if let Some(below) = trim_below(shared, batch) {
        let trim = vec![stream, s("MINID"), s("~"), owned(below.to_string())];
        let _ = conn::call(&pipeline, keyed("XTRIM"), trim).await;
    }
    let results = pipeline.try_all::<Value>().await;
    let mut failure = None;
    for (i, (key, frames)) in by_key.iter().enumerate() {
        match results.get(i) {
            Some(Err(e)) if eval_fallback && Script::lost(e) => {
                let script = &shared.scripts.push;
                let args = push(script.sha(), key, frames);
                if let Err(e) = script.again_by_text(client, args).await {
                    failure = Some(e);
                }
            }
            Some(Err(e)) => failure = Some(e.clone()),
            _ => {}
        }
    }
    for r in results.iter().skip(by_key.len()) {
        // NOGROUP: Redis lost the stream (restart); nothing left to acknowledge.
        if let Err(e) = r
            && !conn::error_code_is(e, "NOGROUP")
        {
            failure = Some(e.clone());
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Books a written batch as done and releases its in-flight permits.
pub(in crate::proxy) fn finish(shared: &Shared, batch: &mut Vec<Completion>) {
    shared
        .stream
        .unacked()
        .remove(batch.iter().map(|c| c.id), true);
    shared.awaiting_ack.acknowledged(batch);
    shared
        .counters
        .completed
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    batch.clear();
}

/// Takes the completions to leave pending out of `batch`: they are read again; and those
/// placed on another member, pending on it now: forgotten here.
pub(in crate::proxy) fn requeue(shared: &Shared, batch: &mut Vec<Completion>) {
    if batch.iter().any(|c| c.handed) {
        let (handed, keep): (Vec<Completion>, Vec<Completion>) =
            batch.drain(..).partition(|c| c.handed);
        *batch = keep;
        shared
            .stream
            .unacked()
            .remove(handed.iter().map(|c| c.id), true);
    }
    if batch.iter().any(|c| c.requeue) {
        let (mut pending, keep): (Vec<Completion>, Vec<Completion>) =
            batch.drain(..).partition(|c| c.requeue);
        *batch = keep;
        give_up(shared, &mut pending);
    }
}

/// Gives up on writing a batch: its entries stay pending in Redis, and the read loop
/// re-reads the pending list to handle them again.
pub(in crate::proxy) fn give_up(shared: &Shared, batch: &mut Vec<Completion>) {
    shared
        .stream
        .unacked()
        .remove(batch.iter().map(|c| c.id), false);
    shared.stream.reread.store(true, Ordering::Release);
    batch.clear();
}

/// The id below which the stream may be trimmed once `batch` is acknowledged.
pub(in crate::proxy) fn trim_below(shared: &Shared, batch: &[Completion]) -> Option<EntryId> {
    // A group's stream has entries pending on other members: `trim_exact` trims it.
    if !matches!(shared.role, crate::proxy::shared::Role::System) {
        return None;
    }
    let mut ids: Vec<EntryId> = batch.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    sane_trim(shared, shared.stream.unacked().trim_below(&ids))
}

/// No trimming up to an id in the future: a client chose it, and once the stream is
/// reset it would trim the new stream's entries.
pub(in crate::proxy) fn sane_trim(shared: &Shared, below: Option<EntryId>) -> Option<EntryId> {
    below.filter(|b| {
        i64::try_from(b.ms).is_ok_and(|ms| {
            ms <= shared
                .clock
                .redis_now_ms()
                .saturating_add(FUTURE_ID_TOLERANCE_MS)
        })
    })
}

/// Trims the request stream exactly below the oldest entry still pending (the answer
/// script trims only whole stream nodes, which is cheaper but leaves up to a node).
pub(in crate::proxy) async fn trim_exact(shared: &Shared) {
    if !matches!(shared.role, crate::proxy::shared::Role::System) {
        return trim_group(shared).await;
    }
    let Some(below) = sane_trim(shared, shared.stream.unacked().trim_below(&[])) else {
        return;
    };
    let trimmed = conn::call(
        &shared.cmd,
        keyed("XTRIM"),
        vec![
            owned(shared.stream.requests_key.clone()),
            s("MINID"),
            owned(below.to_string()),
        ],
    )
    .await;
    if let Err(e) = trimmed {
        tracing::debug!(error = %e, "could not trim the request stream");
    }
}

/// Trims the group's stream below what every member has finished with.
pub(in crate::proxy) async fn trim_group(shared: &Shared) {
    let crate::proxy::shared::Role::Member(m) = &shared.role else {
        return;
    };
    let r = m
        .trim
        .eval_many(
            &shared.cmd,
            vec![(shared.stream.requests_key.clone(), vec![s(CONSUMER_GROUP)])],
        )
        .await;
    if let Some(Err(e)) = r.first() {
        tracing::debug!(error = %e, "could not trim a group's stream");
    }
}
