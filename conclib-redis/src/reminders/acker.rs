//! Acknowledging handled ticks in batches: every tick of a shard handled while the previous
//! acknowledgements ran goes in one script call (`ACK`), instead of one call per tick.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use tokio::sync::OwnedSemaphorePermit;

use super::keys::ShardKeys;
use super::store::scripts;
use crate::conn::owned;

/// The most ticks one `ACK` call acknowledges.
pub(crate) const MAX_ACK_BATCH: usize = 256;

/// A tick handled by its URN, waiting for its acknowledgement; it holds its delivery slot
/// until then.
pub(crate) struct Handled {
    pub(crate) member: Arc<str>,
    pub(crate) urn: String,
    pub(crate) name: String,
    pub(crate) token: Arc<str>,
    pub(crate) missed: u64,
    /// From its due time to its handling.
    pub(crate) lag: Duration,
    pub(crate) _slot: OwnedSemaphorePermit,
}

/// Acknowledges `ticks`, all of shard `keys`, in one call: per tick, in order, its next due
/// time, -1 (a one-shot reminder, removed) or 0 (the claim was not this one's any more).
pub(crate) async fn ack_shard(
    cmd: &Client,
    keys: &ShardKeys,
    ticks: &[Handled],
) -> Result<Vec<i64>, String> {
    let mut args = Vec::with_capacity(2 + 5 * ticks.len());
    args.push(owned(keys.record_prefix()));
    args.push(owned(keys.index_prefix()));
    for t in ticks {
        args.extend([
            owned(&*t.member),
            owned(&*t.token),
            owned(t.name.clone()),
            owned(t.missed.to_string()),
            owned(t.urn.clone()),
        ]);
    }
    let answer = scripts()
        .ack
        .eval(cmd, vec![keys.due()], args)
        .await
        .map_err(|e| e.to_string())?;
    match answer {
        Value::Array(results) if results.len() == ticks.len() => Ok(results
            .iter()
            .map(|v| match v {
                Value::Integer(i) => *i,
                _ => 0,
            })
            .collect()),
        other => Err(format!("unexpected ACK answer {other:?}")),
    }
}
