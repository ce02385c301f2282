//! A system's record of the URN keys given away while its lease was absent in Redis: the
//! takeover gives a gone system's keys to the members it moves their requests to, and a
//! gone holder's key is freed for a request read elsewhere (`scale/takeover.rs`), each adding
//! the URN to the record while it exists. After a lapse in Redis the system claims again
//! only those and its keys that may have expired, not every key it holds
//! (`docs/bench-log.md`, "Overload: a lapse claims what it may have lost").
//!
//! The record is made when the lease is taken and made again, emptied, in the same step as
//! each retake of the lease (`SYSTEM_LEASE_SCRIPT`), and renewed with the lease. A mark in it
//! says it is whole: a record that expired (a lapse longer than any key lives) or was lost
//! (a Redis restarted, a replica promoted) lacks it, and then every key is claimed again. Not
//! in a Redis Cluster (the lease and the record live in different slots; no takeover runs
//! there), nor for a group member's lease (the URN keys are the system's).

use fred::prelude::*;

use crate::conn::{self, as_bytes, keyed, owned, s};
use crate::protocol::GIVEN_WHOLE as WHOLE;
use crate::proxy::shared::{Role, Shared};

/// What a renewal of a system's lease with its record found.
pub(super) enum Renewed {
    /// It named this instance: renewed, and the record with it.
    Kept,
    /// Absent, and taken again; the URNs the record held when it was whole (`None`: not whole).
    Retaken(Option<Vec<String>>),
    /// Absent, not taken (a renewal beside a pass: `retake` was `false`).
    Absent,
    /// Another instance holds it.
    Replaced,
    /// Redis did not answer.
    Unanswered,
}

/// Whether this instance keeps the record beside its lease: a system's proxy outside a
/// Redis Cluster.
pub(super) fn kept(shared: &Shared) -> bool {
    matches!(shared.role, Role::System) && !shared.cmd.is_clustered()
}

/// How long the record lives past each renewal of the lease: longer than any URN key this
/// system holds may live after it (a key claimed just before the lease's last renewal), so
/// that a record that lapsed means no key it held can still be alive.
fn record_ttl(shared: &Shared) -> Value {
    let ttl = shared.activation_urn_ttl().max(shared.config.urn_ttl) + shared.config.lease_ttl;
    Value::Integer(ttl.as_millis() as i64)
}

/// Renews the system's lease with its record (`SYSTEM_LEASE_SCRIPT`), taking it again when it
/// had lapsed if `retake`.
pub(super) async fn renew(shared: &Shared, retake: bool) -> Renewed {
    let lease = &shared.lease;
    let keys = vec![
        owned(lease.key.clone()),
        owned(shared.keys.given(&shared.system_id)),
    ];
    let args = vec![
        owned(lease.token.clone()),
        Value::Integer(shared.config.lease_ttl.as_millis() as i64),
        record_ttl(shared),
        s(WHOLE),
        s(if retake { "1" } else { "0" }),
    ];
    let Ok(Value::Array(answer)) = shared
        .scripts
        .system_lease
        .eval(&shared.cmd, keys, args)
        .await
    else {
        return Renewed::Unanswered;
    };
    let mut answer = answer.into_iter();
    match answer.next().and_then(|v| v.as_i64()) {
        Some(1) => Renewed::Kept,
        Some(2) => Renewed::Replaced,
        Some(0) => Renewed::Absent,
        Some(3) => Renewed::Retaken(match answer.next() {
            Some(Value::Array(urns)) => Some(
                urns.iter()
                    .filter_map(|u| as_bytes(u).map(|b| String::from_utf8_lossy(b).into_owned()))
                    .filter(|u| u != WHOLE)
                    .collect(),
            ),
            _ => None,
        }),
        _ => Renewed::Unanswered,
    }
}

/// Makes the record anew, empty and whole, once the lease was taken at start (nothing is
/// held yet, so nothing given away before can matter). Not made (Redis did not answer):
/// the first lapse claims every key again.
pub(super) async fn open(shared: &Shared) {
    if !kept(shared) {
        return;
    }
    let key = shared.keys.given(&shared.system_id);
    let pipeline = shared.cmd.pipeline();
    let _ = conn::call(&pipeline, keyed("DEL"), vec![owned(key.clone())]).await;
    let _ = conn::call(&pipeline, keyed("SADD"), vec![owned(key.clone()), s(WHOLE)]).await;
    let _ = conn::call(
        &pipeline,
        keyed("PEXPIRE"),
        vec![owned(key), record_ttl(shared)],
    )
    .await;
    if let Err(e) = pipeline.all::<Value>().await {
        tracing::debug!(error = %e, "could not make the record of URN keys given away");
    }
}
