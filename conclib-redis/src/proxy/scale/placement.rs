//! Placement: which member of a pattern's group activates a URN nobody holds yet.
//!
//! The member that reads a URN's first request from the group's stream decides, by the
//! pattern's [`Placement`], among the members live now: itself (it claims the URN and
//! activates it, as before), or another one. Then, in one script ([`PLACE_SCRIPT`]), the
//! entry moves to the chosen member's pending list (it stays in the group's stream) and an
//! entry appended to the chosen system's own stream wakes that member up: it reads its
//! pending list, claims the URN and activates it. An entry is placed only once, when it is
//! first read: one read from a pending list (placed here, claimed from a member that is
//! gone, or read again) is activated by whoever holds it. So a chosen member that dies or
//! is paused before it claims the URN loses nothing: once its member lease lapses (at
//! once when it ran on this host and its process is gone) the others claim its pending
//! entries, the placed one with them, as they claim any gone member's.
//!
//! Which members are live, and how many activations each has, is read from the pattern's
//! directory (`{ns}:placement:{prefix}`), in the same round trip as the URN's key: each
//! member writes its count there as it activates or passivates, and with its lease
//! renewal, live until one lease from then.
//!
//! [`PLACE_SCRIPT`]: crate::protocol::PLACE_SCRIPT

use std::sync::atomic::Ordering;

use fred::prelude::*;

use super::placement_rule::{MemberInfo, Placement};
use crate::conn::{self, as_bytes, keyed, keyed_at, owned, s};
use crate::protocol::{CONSUMER_GROUP, PROTOCOL_VERSION, field};
use crate::proxy::serve::lease;
use crate::proxy::shared::{Role, Shared};
use crate::script::Script;
use crate::unacked::EntryId;

/// Where a URN nobody holds goes, as its first request's reader decided.
pub(in crate::proxy) enum Placed {
    /// Here: the reader claims it (also when someone holds it already, or when the
    /// directory could not be read: the claim decides).
    Here,
    /// On this other member.
    There(String),
}

/// What became of a request placed on another member.
pub(in crate::proxy) enum Handed {
    /// Pending on the chosen member now (nothing to acknowledge here).
    Done,
    /// No longer pending here: another member claimed it (leave it).
    NotPending,
    /// Not placed (no stream for the chosen system, Redis did not answer): activate here.
    Failed,
}

/// The live members of the pattern `prefix` (with `sys`, this system's proxy, when this
/// system is one of them: its count is the one it has now), sorted by system id;
/// `asker`: the system that sent the request. With the holder of `urn` (`None` without
/// one).
pub(in crate::proxy) async fn directory(
    shared: &Shared,
    sys: Option<&Shared>,
    prefix: &str,
    urn: Option<&str>,
    asker: Option<&str>,
) -> Result<(Vec<MemberInfo>, Option<String>), fred::error::Error> {
    let key = shared.keys.placement(prefix);
    let pipeline = shared.cmd.pipeline();
    if let Some(urn) = urn {
        let _ = conn::call(&pipeline, keyed("GET"), vec![owned(shared.keys.urn(urn))]).await;
    }
    let read = |first: Value| vec![first, Value::Integer(1), owned(key.clone())];
    let _ = conn::call(
        &pipeline,
        keyed_at("EVALSHA", 2, false),
        read(shared.scripts.read_directory.sha()),
    )
    .await;
    let mut results = pipeline.try_all::<Value>().await.into_iter();
    let holder = match urn {
        Some(_) => results
            .next()
            .transpose()?
            .and_then(|v| as_bytes(&v).map(|b| String::from_utf8_lossy(b).into_owned())),
        None => None,
    };
    let listed = match results.next() {
        Some(Err(e)) if Script::lost(&e) => {
            let script = &shared.scripts.read_directory;
            script
                .again_by_text(&shared.cmd, read(script.sha()))
                .await?
        }
        Some(other) => other?,
        None => Value::Null,
    };
    let mut members = Vec::new();
    if let Value::Array(flat) = listed {
        let mut it = flat.into_iter();
        while let (Some(system), Some(count)) = (it.next(), it.next()) {
            let Some(system) = as_bytes(&system).map(|b| String::from_utf8_lossy(b).into_owned())
            else {
                continue;
            };
            let activations = as_bytes(&count)
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                .or_else(|| count.as_u64())
                .unwrap_or(0);
            members.push(MemberInfo {
                asker: asker == Some(system.as_str()),
                reader: sys.is_some_and(|me| system == me.system_id),
                system,
                activations,
            });
        }
    }
    // This system is live (it reads), and its own count is the freshest.
    if let Some(sys) = sys {
        let own = sys.activations.count_under(prefix);
        match members.iter_mut().find(|m| m.reader) {
            Some(me) => me.activations = own,
            None => members.push(MemberInfo {
                system: sys.system_id.clone(),
                activations: own,
                reader: true,
                asker: asker == Some(sys.system_id.as_str()),
            }),
        }
    }
    members.sort_by(|a, b| a.system.cmp(&b.system));
    Ok((members, holder))
}

/// Where `urn` (under `prefix`, placed by `placement`) is to be activated; `shared` is
/// the member instance that read its first request, `sys` its system's proxy.
pub(in crate::proxy) async fn place(
    shared: &Shared,
    sys: &Shared,
    prefix: &str,
    placement: &Placement,
    urn: &str,
    asker: Option<&str>,
) -> Placed {
    let (members, holder) = match directory(shared, Some(sys), prefix, Some(urn), asker).await {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(%urn, error = %e, "could not read the pattern's directory; activating here");
            return Placed::Here;
        }
    };
    if holder.is_some() || members.len() < 2 {
        return Placed::Here;
    }
    match placement.choose(urn, &members) {
        // A member that died stays listed until its last count lapses (a lease): a request
        // placed on it would wait for the others to claim it back from the gone member.
        Some(chosen) if chosen != sys.system_id && !member_gone(shared, chosen).await => {
            Placed::There(chosen.to_owned())
        }
        _ => Placed::Here,
    }
}

/// Whether `system`, a member of `shared`'s group, is gone: its member lease lapsed, or
/// names a process of this host that no longer exists (as `group.rs` tells a gone member).
async fn member_gone(shared: &Shared, system: &str) -> bool {
    match &shared.role {
        Role::Member(m) => lease::lease_gone(shared, shared.keys.member(&m.group, system)).await,
        Role::System => false,
    }
}

/// Moves entry `entry` of this member's stream to member `target`'s pending list and
/// wakes that member up ([`PLACE_SCRIPT`](crate::protocol::PLACE_SCRIPT)).
pub(in crate::proxy) async fn hand_to(shared: &Shared, entry: EntryId, target: &str) -> Handed {
    let Role::Member(m) = &shared.role else {
        return Handed::Failed;
    };
    let wake = owned(shared.keys.requests(target));
    let wake_fields = [
        s(field::VERSION),
        s(PROTOCOL_VERSION),
        s(field::PLACED),
        owned(m.group.clone()),
    ];
    if shared.cmd.is_clustered() {
        // Two keys in two slots: checked, moved, then the wake-up appended (a member
        // not woken up finds the entry at its next look at its pending list).
        if !shared.still_mine(entry).await {
            return Handed::NotPending;
        }
        let claim = vec![
            owned(shared.stream.requests_key.clone()),
            s(CONSUMER_GROUP),
            owned(target),
            Value::Integer(0),
            owned(entry.to_string()),
            s("JUSTID"),
        ];
        if conn::call(&shared.cmd, keyed("XCLAIM"), claim)
            .await
            .is_err()
        {
            return Handed::Failed;
        }
        let mut add = vec![wake, s("NOMKSTREAM"), s("*")];
        add.extend(wake_fields);
        let _ = conn::call(&shared.cmd, keyed("XADD"), add).await;
        return Handed::Done;
    }
    let keys = vec![owned(shared.stream.requests_key.clone()), wake];
    let mut args = vec![
        s(CONSUMER_GROUP),
        owned(shared.stream.consumer.clone()),
        owned(entry.to_string()),
        owned(target),
    ];
    args.extend(wake_fields);
    match shared.scripts.place.eval(&shared.cmd, keys, args).await {
        Ok(v) => match v.as_i64() {
            Some(1) => Handed::Done,
            Some(-1) => Handed::NotPending,
            _ => Handed::Failed,
        },
        Err(e) => {
            tracing::debug!(error = %e, %target, "could not place a request on another member");
            Handed::Failed
        }
    }
}

/// A member of this system's groups was handed a request (an entry naming `group` came
/// in this system's stream): it reads its pending list now.
pub(in crate::proxy) fn wake_member(shared: &Shared, group: &str) {
    // Both lanes: the entry was placed from the group's stream or from its fast lane.
    let lanes = shared
        .groups()
        .values()
        .find(|h| matches!(&h.shared().role, Role::Member(x) if x.group == group))
        .map(crate::proxy::shared::MemberHandle::lanes);
    let Some(lanes) = lanes else { return };
    for member in lanes {
        member.stream.wake();
    }
}

/// Writes this system's count of activations of pattern `prefix` in the pattern's
/// directory, live for one lease (`shared`: the system's proxy). Returns once a write that
/// began after this call was made is done: concurrent callers (a burst of activations)
/// share one write, which reads the count as it begins, so it holds every activation
/// made before its callers called.
pub(in crate::proxy) async fn report_activations(shared: &Shared, prefix: &str) {
    let Some(pattern) = shared.activations.pattern_for_prefix(prefix) else {
        report_count(shared, prefix, shared.activations.count_under(prefix)).await;
        return;
    };
    let reporting = &pattern.reporting;
    let ticket = reporting.asked.fetch_add(1, Ordering::AcqRel) + 1;
    let _one_at_a_time = reporting.writing.lock().await;
    if reporting.written.load(Ordering::Acquire) >= ticket {
        return;
    }
    let covers = reporting.asked.load(Ordering::Acquire);
    report_count(shared, prefix, shared.activations.count_under(prefix)).await;
    reporting.written.store(covers, Ordering::Release);
}

/// Writes `count` as this system's count of activations of pattern `prefix`.
pub(in crate::proxy) async fn report_count(shared: &Shared, prefix: &str, count: u64) {
    // Not a member any more (it left, is shutting down or draining): not listed.
    if shared.draining.load(Ordering::Acquire) || !shared.groups().contains_key(prefix) {
        return;
    }
    let lease = Value::Integer(shared.config.lease_ttl.as_millis() as i64);
    // A gone member stays listed while its activations' URN keys may live.
    let keep =
        (shared.config.lease_ttl * 10).max(shared.activation_urn_ttl() + shared.config.lease_ttl);
    let r = shared
        .scripts
        .report
        .eval_many(
            &shared.cmd,
            vec![(
                shared.keys.placement(prefix),
                vec![
                    owned(shared.system_id.clone()),
                    Value::Integer(count as i64),
                    lease,
                    Value::Integer(keep.as_millis() as i64),
                ],
            )],
        )
        .await;
    if let Some(Err(e)) = r.first() {
        tracing::debug!(error = %e, "could not write the pattern's directory");
    }
}

/// Takes this system out of the pattern's directory (it left the group).
pub(in crate::proxy) async fn unlist(shared: &Shared, prefix: &str) {
    let _ = conn::call(
        &shared.cmd,
        keyed("HDEL"),
        vec![
            owned(shared.keys.placement(prefix)),
            owned(shared.system_id.clone()),
        ],
    )
    .await;
}

/// The live members of pattern `prefix` and their counts of activations (`shared`: the
/// system's proxy).
pub(in crate::proxy) async fn pattern_members(
    shared: &Shared,
    prefix: &str,
) -> Result<Vec<MemberInfo>, fred::error::Error> {
    let me = shared.groups().contains_key(prefix).then_some(shared);
    let (members, _) = directory(shared, me, prefix, None, None).await?;
    Ok(members)
}
