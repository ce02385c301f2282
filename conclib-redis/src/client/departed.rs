//! A URN whose system left gracefully less than
//! [`departed_grace`](crate::ProxyConfig::departed_grace) ago (it restarts, or is being
//! replaced) is not unknown: its proxy left a marker at shutdown (`{ns}:departed:urn:{urn}`,
//! or `{ns}:departed:pattern:{prefix}` for a pattern's URNs), and a look-up that finds no
//! owner but a marker waits for the successor within the ask's deadline, then answers
//! `Unavailable`.

use std::time::{Duration, Instant};

use fred::prelude::*;

use super::shared::Shared;
use crate::conn::{self, as_bytes, keyed, owned};
use crate::error::{ProxyError, redis_error};

/// How long a look-up pauses before looking again for a departed URN's successor.
const SUCCESSOR_POLL: Duration = Duration::from_millis(25);

/// How long past its deadline an ask that timed out may look for a departed marker.
const DEPARTED_CHECK: Duration = Duration::from_millis(25);

/// Whether the system that served `urn` (or activated its pattern) left gracefully
/// within the grace period: one `GET`, two for a URN with a pattern prefix, and only on
/// a look-up that found no owner.
pub(super) async fn departed(
    shared: &Shared,
    client: &Client,
    urn: &str,
    deadline: Instant,
) -> Result<bool, ProxyError> {
    let mut keys = vec![shared.keys.departed_urn(urn)];
    if let Some(prefix) = crate::protocol::pattern_prefix(urn) {
        keys.push(shared.keys.departed_pattern(prefix));
    }
    for key in keys {
        let get = conn::call(client, keyed("GET"), vec![owned(key)]);
        match tokio::time::timeout_at(deadline.into(), get).await {
            Ok(Ok(v)) if as_bytes(&v).is_some() => return Ok(true),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(redis_error(&e)),
            Err(_) => return Err(ProxyError::Timeout(Duration::ZERO)),
        }
    }
    Ok(false)
}

/// Pauses before looking for a departed URN's successor again (`Ok`), or answers
/// `Unavailable` when the deadline comes first.
pub(super) async fn wait_for_successor(urn: &str, deadline: Instant) -> Result<(), ProxyError> {
    let next = Instant::now() + SUCCESSOR_POLL;
    if next >= deadline {
        return Err(ProxyError::Unavailable(format!(
            "the system serving {urn} shut down moments ago and no successor serves it yet \
             (it restarts or is being replaced): try again"
        )));
    }
    tokio::time::sleep_until(next.into()).await;
    Ok(())
}

/// An ask's `Timeout`, or `Unavailable` when the system its URN was routed to departed
/// meanwhile (its request waits in the stream for the successor, which may still handle
/// it). Looked up only on a timeout, within [`DEPARTED_CHECK`] past the deadline.
pub(super) async fn unavailable_if_departed(
    shared: &Shared,
    e: ProxyError,
    urn: &str,
) -> ProxyError {
    if !matches!(e, ProxyError::Timeout(_)) {
        return e;
    }
    let Ok(client) = shared.connection() else {
        return e;
    };
    let deadline = Instant::now() + DEPARTED_CHECK;
    match departed(shared, client, urn, deadline).await {
        Ok(true) => ProxyError::Unavailable(format!(
            "no answer in time: the system serving {urn} shut down meanwhile (it restarts \
             or is being replaced; its successor may still handle the request)"
        )),
        _ => e,
    }
}
