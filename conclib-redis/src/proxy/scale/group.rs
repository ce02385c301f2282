//! Groups: one URN (or one URN pattern) served by several systems through one shared
//! stream, which each member reads as its own consumer of the stream's consumer group.
//!
//! A member is a proxy instance of its own ([`Shared`] in the role [`Role::Member`]): the
//! read loop, dispatch and writer are the system proxy's, pointed at the group's stream.
//! What only a group has is here: joining and leaving, the member lease, claiming the
//! entries of members that died, and trimming what every member has finished with.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fred::prelude::*;
use tokio::task::JoinHandle;

use super::placement;
use super::rebalance;
use super::takeover;
use super::versions;
use crate::conn::{self, as_bytes, keyed, owned, s};
use crate::error::ServeError;
use crate::protocol::{self, CONSUMER_GROUP, GROUP_FORGET_SCRIPT, GROUP_TRIM_SCRIPT};
use crate::proxy::serve::lease;
use crate::proxy::serve::urn_keys;
use crate::proxy::serve::write;
use crate::proxy::shared::{Member, MemberHandle, Role, Shared};
use crate::script::Script;

/// What a group is formed around.
pub(in crate::proxy) enum GroupOf<'a> {
    /// One URN, served by a local actor in each member.
    Urn(&'a str),
    /// URNs `{prefix}{id}`, activated on demand.
    Pattern(&'a str),
}

/// A member's two instances (its fast lane and its stream's), their lease held and their
/// URN claimed, before they read their streams.
pub(in crate::proxy) struct Entered {
    name: String,
    pattern: bool,
    pub(in crate::proxy) member: Arc<Shared>,
    pub(in crate::proxy) fast: Arc<Shared>,
    /// How long a read of the group's stream blocks.
    pub(in crate::proxy) block: Duration,
}

/// Makes this system (`shared`: its own proxy) a member of a group: its lease held, the
/// group's URN claimed, its consumer groups there. `None`: a member already. The caller
/// starts the reading tasks and hands them to [`serve`] (`proxy/join.rs`).
pub(in crate::proxy) async fn enter(
    shared: &Arc<Shared>,
    of: GroupOf<'_>,
) -> Result<Option<Entered>, ServeError> {
    let (name, pattern) = match of {
        GroupOf::Urn(urn) => (urn, false),
        GroupOf::Pattern(prefix) => (prefix, true),
    };
    if shared.groups().contains_key(name) {
        return Ok(None);
    }
    let (group, claim_key) = if pattern {
        (protocol::pattern_group(name), shared.keys.pattern(name))
    } else {
        (protocol::shared_group(name), shared.keys.urn(name))
    };
    if !pattern {
        // The URN is the group's now, not this system's alone.
        let was_owned = {
            let mut reg = shared.registry();
            reg.shared.insert(name.to_owned());
            reg.local.remove(name);
            reg.conflicts.remove(name);
            reg.owned.remove(name)
        };
        if was_owned {
            urn_keys::release_urns(shared, vec![name.to_owned()]).await;
        }
    }
    let block = Duration::from_secs(1);
    let reader = || {
        shared
            .config
            .builder::<()>(shared.config.command_timeout + block)
            .map_err(|e| ServeError::Config(e.to_string()))?
            .build()
            .map_err(|e| ServeError::Config(e.to_string()))
    };
    let (reader, fast_reader) = (reader()?, reader()?);
    conn::init_within(&[&reader, &fast_reader], shared.config.connecting())
        .await
        .map_err(ServeError::Unavailable)?;
    let instance = |fast: bool, reader: Client| {
        Shared::new(
            &shared.system,
            &shared.config,
            shared.system_id.clone(),
            Role::Member(Box::new(Member {
                group: group.clone(),
                claim_key: claim_key.clone(),
                name: name.to_owned(),
                pattern,
                fast,
                system: Arc::downgrade(shared),
                trim: Script::new(GROUP_TRIM_SCRIPT),
                forget: Script::new(GROUP_FORGET_SCRIPT),
            })),
            (shared.cmd.clone(), reader),
            shared.config.group_in_flight.max(1),
        )
    };
    let instance = |fast: bool, reader: Client| {
        let mut lane = instance(fast, reader);
        // One count of pending requests per system, whichever stream they came in.
        lane.admission = shared.admission.clone();
        lane
    };
    let member = Arc::new(instance(false, reader));
    // The fast lane's instance holds the same member lease, under the same token: both
    // renew it, and a member is gone for both streams at once.
    let mut fast = instance(true, fast_reader);
    fast.lease.token = member.lease.token.clone();
    let fast = Arc::new(fast);
    let started = async {
        let since = std::time::Instant::now();
        lease::acquire_lease(&member).await?;
        member.clock.sync(&member.cmd).await;
        member
            .stream
            .ensure_group(&member.cmd)
            .await
            .map_err(|e| ServeError::from(crate::error::redis_error(&e)))?;
        member
            .stream
            .renew(&member.cmd, member.config.queue_ttl)
            .await;
        fast.clock.sync(&fast.cmd).await;
        fast.stream
            .ensure_group(&fast.cmd)
            .await
            .map_err(|e| ServeError::from(crate::error::redis_error(&e)))?;
        fast.stream.renew(&fast.cmd, fast.config.queue_ttl).await;
        member.registry().local.insert(name.to_owned(), true);
        if !urn_keys::claim_urns(&member, vec![name.to_owned()]).await {
            return Err(ServeError::Unavailable(format!(
                "could not claim {}",
                member.claim_key(name)
            )));
        }
        if let Some(owner) = member.registry().conflicts.get(name).cloned() {
            return Err(ServeError::UrnInUse {
                urn: name.to_owned(),
                owner,
            });
        }
        member.lease.mark_fresh(since);
        fast.lease.mark_fresh(since);
        Ok::<_, ServeError>(())
    };
    if let Err(e) = started.await {
        let _ = lease::release_lease(&member).await;
        let _ = member.reader.quit().await;
        let _ = fast.reader.quit().await;
        return Err(e);
    }
    Ok(Some(Entered {
        name: name.to_owned(),
        pattern,
        member,
        fast,
        block,
    }))
}

/// A member entered, its reading `tasks` started: its heartbeats run, it is listed among
/// this system's groups (and, for a pattern, in the pattern's directory).
pub(in crate::proxy) async fn serve(
    shared: &Arc<Shared>,
    entered: Entered,
    tasks: Vec<JoinHandle<()>>,
) {
    let Entered {
        name,
        pattern,
        member,
        fast,
        ..
    } = entered;
    let heartbeats = vec![
        tokio::spawn(member_loop(member.clone())),
        tokio::spawn(member_loop(fast.clone())),
    ];
    tracing::info!(system = %shared.system_id, group = %member.claim_value, "joined a group");
    crate::metrics::group_joined(&shared.system_id, &member.claim_value);
    shared.groups().insert(
        name.clone(),
        MemberHandle {
            shared: member,
            fast,
            tasks,
            heartbeats,
        },
    );
    if pattern {
        // Its messages listed before it is listed live (`versions.rs`), then in the
        // pattern's directory at once: placement counts on it from now.
        versions::advertise(shared, &name).await;
        placement::report_activations(shared, &name).await;
        // The members that rebalance look at once (`rebalance.rs`).
        if shared
            .activations
            .pattern_for_prefix(&name)
            .is_some_and(|p| p.rebalance)
        {
            rebalance::announce_join(shared, &name).await;
        }
    }
}

/// Leaves a group gracefully: stops reading its stream, finishes and acknowledges what
/// it took, then gives up its place (its consumer, if nothing is pending on it, and its
/// member lease, so that the others claim at once whatever is left). `false`: not a member.
pub(in crate::proxy) async fn leave_group(shared: &Shared, name: &str) -> bool {
    leave(shared, name, AfterLeaving::ForgetPattern).await
}

/// What a system that left a pattern's group does with the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum AfterLeaving {
    /// Forgets it: a request for one of its URNs is no longer this system's.
    ForgetPattern,
    /// Keeps it, so that its live activations go on serving the requests routed here and
    /// those for its other URNs go to the group (a drain, `proxy/drain.rs`).
    KeepPattern,
}

/// Leaves the group `name` (a URN or a pattern prefix): [`leave_group`], keeping the
/// pattern or not.
pub(in crate::proxy) async fn leave(shared: &Shared, name: &str, after: AfterLeaving) -> bool {
    let Some(mut handle) = shared.groups().remove(name) else {
        return false;
    };
    let member = handle.shared.clone();
    let lanes = handle.lanes();
    for lane in &lanes {
        lane.serving.store(false, Ordering::Release);
        let _ = lane.stop.send_replace(true);
    }
    for t in std::mem::take(&mut handle.tasks) {
        let _ = t.await;
    }
    for h in std::mem::take(&mut handle.heartbeats) {
        h.abort();
        let _ = h.await;
    }
    for lane in &lanes {
        write::trim_group(lane).await;
    }
    if let Role::Member(m) = &member.role
        && m.pattern
    {
        placement::unlist(shared, &m.name).await;
        versions::unlist(shared, &m.name).await;
    }
    for lane in &lanes {
        forget_consumer(lane, &lane.stream.consumer).await;
    }
    let _ = lease::release_lease(&member).await;
    for lane in &lanes {
        let _ = lane.reader.quit().await;
    }
    if let Role::Member(m) = &member.role
        && m.pattern
        && after == AfterLeaving::ForgetPattern
    {
        shared.activations.remove_pattern(&m.name);
    }
    tracing::info!(system = %shared.system_id, group = %member.claim_value, "left a group");
    true
}

/// Leaves every group (at shutdown).
pub(in crate::proxy) async fn leave_all(shared: &Shared) -> Result<(), ServeError> {
    let names: Vec<String> = shared.groups().keys().cloned().collect();
    for name in names {
        leave_group(shared, &name).await;
    }
    Ok(())
}

/// Deletes `consumer` from the group if nothing is pending on it (checked and deleted
/// at once: a consumer that reads meanwhile keeps what it read).
async fn forget_consumer(shared: &Shared, consumer: &str) {
    let Role::Member(m) = &shared.role else {
        return;
    };
    let r = m
        .forget
        .eval_many(
            &shared.cmd,
            vec![(
                shared.stream.requests_key.clone(),
                vec![s(CONSUMER_GROUP), owned(consumer)],
            )],
        )
        .await;
    if let Some(Err(e)) = r.first() {
        tracing::debug!(error = %e, consumer, "could not delete a group's consumer");
    }
}

/// Takes over the entries pending on members that are gone: their member lease lapsed,
/// or they ran on this host under a pid that no longer exists. Returns how many.
pub(in crate::proxy) async fn claim_from_dead(shared: &Shared) -> usize {
    let Role::Member(m) = &shared.role else {
        return 0;
    };
    let Ok(Value::Array(summary)) = conn::call(
        &shared.cmd,
        keyed("XPENDING"),
        vec![owned(shared.stream.requests_key.clone()), s(CONSUMER_GROUP)],
    )
    .await
    else {
        return 0;
    };
    let Some(Value::Array(consumers)) = summary.get(3).cloned() else {
        return 0;
    };
    let mut claimed = 0;
    for c in consumers {
        let Value::Array(pair) = c else { continue };
        let Some(name) = pair.first().and_then(as_bytes) else {
            continue;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        if name == shared.stream.consumer {
            // More pending here than this member knows of: requests another member
            // placed here whose wake-up went astray (`placement.rs`). Read them.
            let count = pair
                .get(1)
                .and_then(|c| {
                    as_bytes(c)
                        .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                        .or_else(|| c.as_u64())
                })
                .unwrap_or(0);
            if m.pattern && count > shared.stream.unacked().len() as u64 {
                shared.stream.reread.store(true, Ordering::Release);
            }
            continue;
        }
        if !member_gone(shared, &m.group, &name).await {
            continue;
        }
        claimed += claim_entries_of(shared, &name).await;
        forget_consumer(shared, &name).await;
    }
    if claimed > 0 {
        tracing::info!(system = %shared.system_id, group = %m.group, claimed, "took over the requests of a member that is gone");
        crate::metrics::group_claimed(&shared.system_id, &m.group, claimed);
        // The read loop reads our pending list again, where they are now.
        shared.stream.reread.store(true, Ordering::Release);
    }
    claimed
}

/// Whether the member `system` of `group` is gone: no member lease, or a lease of a
/// process on this host that no longer exists (then the lease is freed).
pub(in crate::proxy) async fn member_gone(shared: &Shared, group: &str, system: &str) -> bool {
    lease::lease_gone(shared, shared.keys.member(group, system)).await
}

/// Claims every entry pending on `consumer` for this member (those idle for a while, so
/// that two members claiming at once do not take them from each other).
async fn claim_entries_of(shared: &Shared, consumer: &str) -> usize {
    // The idle floor only has to outlast the gap between another member's `XPENDING` and
    // its `XCLAIM` (a claim resets the idle time): a longer one left the entries a gone
    // member read in its last half second for the look after next, a failover of up to a
    // second more.
    let min_idle = Value::Integer(CLAIM_MIN_IDLE_MS);
    let mut claimed = 0;
    for _ in 0..1000 {
        let Ok(Value::Array(list)) = conn::call(
            &shared.cmd,
            keyed("XPENDING"),
            vec![
                owned(shared.stream.requests_key.clone()),
                s(CONSUMER_GROUP),
                s("IDLE"),
                min_idle.clone(),
                s("-"),
                s("+"),
                Value::Integer(100),
                owned(consumer),
            ],
        )
        .await
        else {
            break;
        };
        let ids: Vec<Value> = list
            .into_iter()
            .filter_map(|e| match e {
                Value::Array(mut parts) if !parts.is_empty() => Some(parts.swap_remove(0)),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            break;
        }
        let n = ids.len();
        let mut args = vec![
            owned(shared.stream.requests_key.clone()),
            s(CONSUMER_GROUP),
            owned(shared.stream.consumer.clone()),
            min_idle.clone(),
        ];
        args.extend(ids);
        args.push(s("JUSTID"));
        match conn::call(&shared.cmd, keyed("XCLAIM"), args).await {
            Ok(Value::Array(got)) => claimed += got.len(),
            _ => break,
        }
        if n < 100 {
            break;
        }
    }
    claimed
}

/// How long an entry pending on a gone member must have been idle before a member claims
/// it (`claim_entries_of`).
const CLAIM_MIN_IDLE_MS: i64 = 100;

/// How often a member looks for gone members at most (`member_loop`). A death on this
/// host is provable at once (its pid is gone), so this period is most of such a failover
/// (at 500 ms, an ask sent at a SIGKILL was answered up to 0.56 s later: docs/bench-log.md,
/// "Python member failover: the look period"). Each look costs an `XPENDING`, an `HKEYS`
/// and a `GET` per system in the pattern's directory.
const LOOK_AT_MOST: Duration = Duration::from_millis(100);

/// A member's upkeep: its leases and the group key renewed every third of the lease; gone
/// members' entries claimed, and gone systems' requests taken over, every eighth of the
/// lease (every 100 ms at most, `LOOK_AT_MOST`): a failover takes a lease and up to an
/// eighth more, or, a death on this host, up to 100 ms and the move.
async fn member_loop(shared: Arc<Shared>) {
    let lease = shared.config.lease_ttl;
    let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check =
        tokio::time::interval((lease / 8).clamp(Duration::from_millis(10), LOOK_AT_MOST));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    renew.tick().await;
    let mut reconnects = shared.cmd.reconnect_rx();
    let mut events = true;
    let mut stop = shared.stop.subscribe();
    loop {
        tokio::select! {
            _ = renew.tick() => {
                lease::renew(&shared).await;
                // The member's count in its pattern's directory, live for another lease.
                if let Role::Member(m) = &shared.role
                    && m.pattern
                    && let Some(sys) = m.system.upgrade()
                {
                    placement::report_activations(&sys, &m.name).await;
                    if !m.fast {
                        // Written again: a Redis that lost it (a restart) has it back.
                        versions::advertise(&sys, &m.name).await;
                    }
                    if !m.fast {
                        rebalance::start(&sys, &m.name, rebalance::Look::Renewal);
                    }
                }
            }
            _ = check.tick() => {
                claim_from_dead(&shared).await;
                // A pattern's group: what gone systems left for its URNs in their streams.
                if let Role::Member(m) = &shared.role
                    && m.pattern
                    && !m.fast
                {
                    takeover::take_over_gone(&shared, &m.name).await;
                }
            }
            event = reconnects.recv(), if events => match event {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Err(e) = shared.stream.ensure_group(&shared.cmd).await {
                        tracing::warn!(error = %e, "could not recreate a group's consumer group");
                    }
                    shared.lease.renew_all_urns();
                    lease::renew(&shared).await;
                }
                Err(_) => events = false,
            },
            // The watch's guard is not `Send`: dropped inside the block.
            _ = async { drop(stop.wait_for(|stopped| *stopped).await) } => break,
        }
    }
}
