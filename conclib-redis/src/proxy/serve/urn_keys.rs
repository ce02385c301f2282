//! A system's URN keys: claimed (at a scan, a join, an activation) and renewed in turn,
//! released, or handed to the system that activates the URN next. The lease they hang on is
//! [`lease`](super::lease)'s.

use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use fred::prelude::*;

use crate::conn::{as_bytes, owned, s};
use crate::protocol::{HAND_URN_SCRIPT, field};
use crate::proxy::scale::standing::HandOver;
use crate::proxy::shared::Shared;
use crate::script::Script;

/// Releases URN keys this instance holds (compare-and-delete): of stopped actors, of a
/// passivated or refused activation, of a URN handed to its group.
pub(in crate::proxy) async fn release_urns(shared: &Shared, urns: Vec<String>) {
    if urns.is_empty() {
        return;
    }
    let calls = urns
        .iter()
        .map(|u| (shared.claim_key(u), vec![owned(shared.claim_value.clone())]))
        .collect();
    shared.scripts.release.eval_many(&shared.cmd, calls).await;
    tracing::debug!(count = urns.len(), "released URN keys");
}

/// What became of a URN key to hand over ([`hand_urn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::proxy) enum HandedUrn {
    /// It names the target now.
    Handed,
    /// Another system holds it.
    HeldBy(String),
    /// Not handed: free (and not to be taken), or Redis did not answer.
    NotHanded,
}

/// Which URN key a hand-over gives ([`hand_urn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum Handing<'a> {
    /// The key of an activation that stopped here to move, held by this system: the target
    /// is told in the same step (the moved-in notice, in its stream), and activates the URN
    /// at once, not at its first request. `group` is the URN's pattern's group.
    Moved { group: &'a str },
    /// The key of a URN not live here, held by this system or by nobody.
    HeldOrFree,
}

/// Gives `urn`'s key, held by this system (or, [`Handing::HeldOrFree`], by nobody), to system
/// `target` for `urn_ttl`: the next request goes straight to `target`, which activates the
/// URN (its claim finds the key its own). An activation moved
/// ([`Handing::Moved`]) is activated there as soon as the target reads its notice: its
/// claim, which takes the state carried (`scale/migration.rs`), runs while the requests
/// that waited here for the move travel there, not after the first one came (outside a
/// Redis Cluster: the target's stream is in another slot there).
pub(in crate::proxy) async fn hand_urn(
    shared: &Shared,
    urn: &str,
    target: &str,
    handing: Handing<'_>,
) -> HandedUrn {
    hand(shared, hand_over(shared, urn, target, handing)).await
}

/// Runs hand-over `h` ([`hand_over`]).
pub(in crate::proxy) async fn hand(shared: &Shared, h: HandOver) -> HandedUrn {
    // Its digest computed once, not at every hand-over.
    static HAND_URN: LazyLock<Script> = LazyLock::new(|| Script::new(HAND_URN_SCRIPT));
    let r = HAND_URN.eval(&shared.cmd, h.keys, h.args).await;
    match r {
        Ok(Value::Integer(1)) => HandedUrn::Handed,
        Ok(v) => match crate::conn::as_bytes(&v) {
            Some(holder) => HandedUrn::HeldBy(String::from_utf8_lossy(holder).into_owned()),
            None => HandedUrn::NotHanded,
        },
        Err(_) => HandedUrn::NotHanded,
    }
}

/// The hand-over of `urn`'s key to `target` ([`hand_urn`]).
pub(in crate::proxy) fn hand_over(
    shared: &Shared,
    urn: &str,
    target: &str,
    handing: Handing<'_>,
) -> HandOver {
    let ttl = Value::Integer(shared.config.urn_ttl.as_millis().max(1) as i64);
    let mut keys = vec![owned(shared.keys.urn(urn))];
    let or_free = if handing == Handing::HeldOrFree {
        "1"
    } else {
        "0"
    };
    // Not on a Redis Cluster: a script's `PUBLISH` goes to every node of it, and its
    // clients do not subscribe (`client/moves.rs`).
    let notes = if shared.cmd.is_clustered() {
        String::new()
    } else {
        shared.keys.moves()
    };
    let mut args = vec![
        owned(shared.system_id.clone()),
        owned(target.to_owned()),
        ttl,
        s(or_free),
        owned(notes),
    ];
    if let Handing::Moved { group } = handing
        && !shared.cmd.is_clustered()
    {
        // A wake-up entry: a reader that knows no `movedin` activates the URN at its first
        // request.
        keys.push(owned(shared.keys.requests(target)));
        args.extend(crate::protocol::wake_up_fields(group, field::MOVED_IN, urn));
    }
    HandOver { keys, args }
}

/// What a claim does with a URN key nobody holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IfFree {
    /// Takes it: a URN new here, or every URN again after the lease lapsed.
    Take,
    /// Leaves it free: a renewal in turn, whose list of keys may predate a key's release
    /// (a passivation, a drain). Taking it back would leave the URN naming this system,
    /// which no longer serves it, until the key's TTL (`CLAIM_SCRIPT`'s `renew`).
    Leave,
}

/// Claims (or renews) these URNs and records which we own and which another system does,
/// each with its TTL (`urn_ttl`, or an activation's own when it is one held already).
/// `false` if Redis did not answer for some of them.
pub(in crate::proxy) async fn claim_urns(shared: &Shared, urns: Vec<String>) -> bool {
    if urns.is_empty() {
        return true;
    }
    let plain = shared.config.urn_ttl;
    let mut by_ttl: Vec<(std::time::Duration, Vec<String>)> = Vec::new();
    {
        let reg = shared.registry();
        for urn in urns {
            let ttl = reg.owned.ttl(&urn).unwrap_or(plain);
            match by_ttl.iter_mut().find(|(t, _)| *t == ttl) {
                Some((_, list)) => list.push(urn),
                None => by_ttl.push((ttl, vec![urn])),
            }
        }
    }
    let mut answered = true;
    for (ttl, urns) in by_ttl {
        let keys: Vec<Value> = urns.iter().map(|u| owned(shared.claim_key(u))).collect();
        answered &= claim_keys(shared, &urns, &keys, ttl, None, IfFree::Take).await;
    }
    answered
}

/// [`claim_urns`] with the URNs' claim keys made already (`keys[i]` is the key of
/// `urns[i]`), all with `ttl`; `renewal`: a renewal of keys owned already, sent after that
/// instant (else a claim, sent now).
async fn claim_keys(
    shared: &Shared,
    urns: &[String],
    keys: &[Value],
    ttl_of_keys: std::time::Duration,
    renewal: Option<std::time::Instant>,
    if_free: IfFree,
) -> bool {
    if urns.is_empty() {
        return true;
    }
    let sent = renewal.unwrap_or_else(std::time::Instant::now);
    let ttl = Value::Integer(ttl_of_keys.as_millis().max(1) as i64);
    let mode = s(match if_free {
        IfFree::Take => "take",
        IfFree::Leave => "renew",
    });
    let results: Vec<Result<Value, fred::error::Error>> = if shared.cmd.is_clustered() {
        // One key per command: each goes to its slot's node.
        let calls = keys
            .iter()
            .map(|k| {
                (
                    k.as_string().unwrap_or_default(),
                    vec![owned(shared.claim_value.clone()), ttl.clone(), mode.clone()],
                )
            })
            .collect();
        shared.scripts.claim.eval_many(&shared.cmd, calls).await
    } else {
        // Hundreds of keys per command, one command at a time (`Script::eval_keys`).
        match shared
            .scripts
            .claim_many
            .eval_keys(
                &shared.cmd,
                keys,
                &[owned(shared.claim_value.clone()), ttl, mode],
            )
            .await
        {
            Ok(values) => values.into_iter().map(Ok).collect(),
            Err(e) => urns.iter().map(|_| Err(e.clone())).collect(),
        }
    };
    let mut answered = true;
    let mut taken_away = Vec::new();
    let mut vanished = Vec::new();
    {
        let mut reg = shared.registry();
        for (urn, result) in urns.iter().zip(results) {
            if renewal.is_some()
                && reg.conflicts.is_empty()
                && matches!(result, Ok(Value::Integer(1)))
            {
                // Most often: a renewal of a URN owned already, without a conflict.
                reg.owned.renewed(urn, sent);
                continue;
            }
            if !reg.local.contains_key(urn) {
                continue; // stopped meanwhile; the next scan releases it
            }
            match result {
                Ok(Value::Integer(1)) => {
                    // Most often a renewal of a URN owned already, without a conflict: no
                    // copy of the URN, no change to the set (its renewal stays prepared).
                    if !reg.conflicts.is_empty() && reg.conflicts.remove(urn).is_some() {
                        tracing::info!(%urn, "took over a URN whose previous owner's lease lapsed");
                    }
                    if renewal.is_some() {
                        reg.owned.renewed(urn, sent);
                    } else {
                        reg.owned.insert(urn.clone(), sent, ttl_of_keys);
                    }
                }
                Ok(Value::Integer(0)) => {
                    // Free, left free by a renewal, though the URN is still served here: its
                    // key expired or was deleted while this system held it (the lease did not
                    // lapse, or this would be a claim). Taken again below.
                    tracing::warn!(%urn, system = %shared.system_id, "URN key found free at its renewal; claiming it again");
                    vanished.push(urn.clone());
                }
                Ok(other) => {
                    let owner = as_bytes(&other)
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_else(|| format!("{other:?}"));
                    let was_owned = reg.owned.remove(urn);
                    if was_owned {
                        taken_away.push(urn.clone());
                    }
                    let known = reg.conflicts.insert(urn.clone(), owner.clone());
                    if known.as_deref() == Some(owner.as_str()) {
                        // Known already: said once.
                    } else if owner == crate::protocol::FOREIGN_KEY {
                        tracing::error!(
                            %urn,
                            system = %shared.system_id,
                            "URN key holds something other than a string (written by something other than a proxy); this proxy refuses the URN until the key is deleted"
                        );
                    } else {
                        // WARN: most often a race that settles itself (a system taking over
                        // a URN whose lease lapsed, a hand-over between deployments); one
                        // that lasts is listed by `ProxyHandle::conflicts`.
                        tracing::warn!(
                            %urn,
                            %owner,
                            system = %shared.system_id,
                            was_owned,
                            "URN is served by another system; this proxy refuses it until that one releases it (if both are meant to serve it, rename one of the actors or serve it as a group)"
                        );
                    }
                }
                Err(e) => {
                    answered = false;
                    tracing::warn!(%urn, error = %e, "could not claim URN; will retry");
                }
            }
        }
    }
    if !vanished.is_empty() {
        // Boxed: a claim's future holds the renewal's.
        answered &= Box::pin(claim_urns(shared, vanished)).await;
    }
    // An activation whose URN another system took (this process was paused past its
    // lease) must not run beside the new one.
    for urn in taken_away {
        shared.activations.taken_away(&urn);
    }
    answered
}

/// Renews the URN keys this instance holds that are past a third of their TTL
/// ([`OwnedUrns::due`](super::owned::OwnedUrns::due)), once the lease was: one renewal at a
/// time, under the scan lock (no claim or release of a scan between a key's claim and its
/// check), counted fresh from when it began unless every URN key was asked for meanwhile
/// (a lapse). At 100,000 keys due it takes a second or more (`Script::eval_keys` sends its
/// calls one by one); neither the lease's freshness, on which every request's fence hangs,
/// nor a lease re-check waits for it (`docs/bench-log.md`, "Overload: URN key renewal at
/// the cap").
pub(super) async fn renew_urns_in_turn(shared: &Shared) {
    /// Clears the flag however the renewal ends.
    struct Renewing<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Renewing<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }
    if shared.lease.urns_renewing.swap(true, Ordering::AcqRel) {
        return;
    }
    let _renewing = Renewing(&shared.lease.urns_renewing);
    let since = std::time::Instant::now();
    let epoch = shared.lease.urns_epoch();
    // After a lapse, the lease's renewal claims the keys it may have lost (every one, or
    // those given away and those due) before the keys count as fresh: a pass over the keys
    // due does not stand for it. Counted, it would mark the keys fresh, the lease's renewal
    // would find nothing more asked, and an activation whose key was given away would serve
    // beside its successor. (Read after the epoch: the ask is made before a new epoch.)
    if shared.lease.all_urns_asked() {
        return;
    }
    // As the lease's renewal: replicated once a `WAIT` on the connection that wrote them
    // says so (`renew_lease`).
    let sent = shared.config.durability.sending(&shared.cmd);
    let renewed = {
        let _guard = shared.scan_lock.lock().await;
        renew_urn_keys(shared, IfFree::Leave, Which::Due).await
    };
    if let Some(until) = renewed
        && claims_replicated(shared, &sent).await
    {
        shared.lease.mark_urns_fresh_until(since, until, epoch);
    }
}

/// Which of the URN keys held a pass claims again ([`renew_urn_keys`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Which<'a> {
    /// Those past a third of their TTL: a renewal.
    Due,
    /// Every one: after a lapse whose takeovers are not known (a reconnection, the record of
    /// URN keys given away lost).
    Every,
    /// Those due and those given away while the lease was absent (a lapse whose record is
    /// whole): the others cannot have expired, and nothing else takes a key that lives.
    DueAnd(&'a std::collections::HashSet<String>),
}

/// Claims again the URN keys this instance holds that `which` names, with `if_free` for
/// those found free ([`IfFree::Leave`]: a renewal; [`IfFree::Take`]: after a lapse); until
/// when every key surely lives if Redis answered every claim.
pub(super) async fn renew_urn_keys(
    shared: &Shared,
    if_free: IfFree,
    which: Which<'_>,
) -> Option<std::time::Instant> {
    let since = std::time::Instant::now();
    let due = shared.registry().owned.due(
        since,
        |u| match which {
            Which::Due => false,
            Which::Every => true,
            Which::DueAnd(given) => given.contains(u),
        },
        |u| shared.claim_key(u),
    );
    let mut answered = true;
    for (ttl, urns, keys) in &due.batches {
        answered &= claim_keys(shared, urns, keys, *ttl, Some(since), if_free).await;
    }
    if !answered {
        return None;
    }
    if due.len() > 0 {
        tracing::debug!(renewed = due.len(), system = %shared.system_id, "renewed URN keys");
    }
    // None held: as if one had just been claimed with `urn_ttl`.
    Some(
        due.fresh_until(since)
            .unwrap_or_else(|| super::lease_state::surely_until(since, shared.config.urn_ttl)),
    )
}

/// Whether the lease and the URN claims written so far reached the replicas the durability
/// level asks for (at once at `Durability::Primary`).
pub(super) async fn claims_replicated(shared: &Shared, sent: &crate::durability::Sent) -> bool {
    let durability = shared.config.durability;
    if matches!(durability, crate::Durability::Primary) {
        return true;
    }
    let owned: Vec<String> = if shared.cmd.is_clustered() {
        shared
            .registry()
            .owned
            .iter()
            .map(|u| shared.claim_key(u))
            .collect()
    } else {
        Vec::new()
    };
    let mut keys = vec![shared.lease.key.as_str()];
    keys.extend(owned.iter().map(String::as_str));
    match durability.replicated_keys(&shared.cmd, &keys, sent).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(system = %shared.system_id, error = %e, "lease renewal not replicated: the lease is not counted as renewed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    /// A URN key's claim takes a free key; a renewal (`renew`) leaves it free (answered 0)
    /// and extends only its own: a key released after a renewal listed it stays released.
    /// Both scripts, on a real Redis.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_renewal_does_not_take_back_a_released_urn_key() {
        use fred::prelude::*;

        use crate::conn::s;
        use crate::protocol::{CLAIM_MANY_SCRIPT, CLAIM_SCRIPT};
        use crate::script::Script;

        let base = crate::config::ProxyConfig::default().with_namespace("claim-renew");
        let daemon = crate::daemon::start_redis(&base).await.unwrap();
        let redis = Builder::from_config(Config::from_url(&daemon.url()).unwrap())
            .build()
            .unwrap();
        redis.init().await.unwrap();
        let _: () = redis
            .set("theirs", "sys-b", None, None, false)
            .await
            .unwrap();
        let _: () = redis.set("mine", "sys-a", None, None, false).await.unwrap();
        let (one, many) = (Script::new(CLAIM_SCRIPT), Script::new(CLAIM_MANY_SCRIPT));
        let args = |mode: &'static str| vec![s("sys-a"), Value::Integer(60_000), s(mode)];
        for key in ["free", "mine", "theirs"] {
            let renewed = one.eval(&redis, vec![key], args("renew")).await.unwrap();
            let expected = match key {
                "free" => Value::Integer(0),
                "mine" => Value::Integer(1),
                _ => Value::from("sys-b"),
            };
            assert_eq!(renewed, expected, "{key}");
        }
        let keys: Vec<Value> = ["free", "mine", "theirs"].map(Value::from).to_vec();
        let renewed = many.eval_keys(&redis, &keys, &args("renew")).await.unwrap();
        assert_eq!(
            renewed,
            vec![Value::Integer(0), Value::Integer(1), Value::from("sys-b")]
        );
        let left: Option<String> = redis.get("free").await.unwrap();
        assert_eq!(left, None, "a renewal left the free key free");
        let ttl: i64 = redis.pttl("mine").await.unwrap();
        assert!(ttl > 0, "a renewal extended its own key: {ttl}");
        // A claim (any other mode, or none, as the Python host sends) takes it.
        let taken = many.eval_keys(&redis, &keys, &args("take")).await.unwrap();
        assert_eq!(taken[0], Value::Integer(1));
        let _: () = redis.del("free").await.unwrap();
        let taken = one
            .eval(
                &redis,
                vec!["free"],
                vec![s("sys-a"), Value::Integer(60_000)],
            )
            .await
            .unwrap();
        assert_eq!(taken, Value::Integer(1));
        let now: Option<String> = redis.get("free").await.unwrap();
        assert_eq!(now.as_deref(), Some("sys-a"));
    }

    /// A proxy whose ACL user predates the hand-over notes' channel (`acl::proxy_acl`
    /// without `&{ns}:moves`) still hands URN keys over: the note's `PUBLISH` is refused
    /// inside `pcall`, the hand-over is done. With the channel granted, a subscriber reads
    /// the note (`target \n {ns}:urn:{urn}`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hand_over_is_made_whether_or_not_its_note_may_be_published() {
        use fred::prelude::*;

        use crate::conn::{keyed, owned, s};
        use crate::protocol::HAND_URN_SCRIPT;
        use crate::script::Script;

        let ns = "hand-acl";
        let base = crate::config::ProxyConfig::default().with_namespace(ns);
        let daemon = crate::daemon::start_redis(&base).await.unwrap();
        let connect = |url: String| async move {
            let c = Builder::from_config(Config::from_url(&url).unwrap())
                .build()
                .unwrap();
            c.init().await.unwrap();
            c
        };
        let admin = connect(daemon.url()).await;
        let keys = crate::protocol::Keys::new(ns);
        let moves = keys.moves();
        for (user, with_channel) in [("old", false), ("new", true)] {
            let mut rules: Vec<String> = crate::acl::proxy_acl(ns);
            if !with_channel {
                rules.retain(|r| *r != format!("&{moves}"));
            }
            let mut args = vec![owned("SETUSER"), owned(user), s("on"), s(">secret")];
            args.extend(rules.into_iter().map(owned));
            crate::conn::call(&admin, keyed("ACL"), args).await.unwrap();
        }
        let listener = connect(daemon.url()).await;
        let mut notes = listener.message_rx();
        listener.subscribe(moves.clone()).await.unwrap();
        let script = Script::new(HAND_URN_SCRIPT);
        let port = daemon.port();
        for (user, urn) in [("old", "acct:1"), ("new", "acct:2")] {
            let proxy = connect(format!("redis://{user}:secret@127.0.0.1:{port}")).await;
            let key = keys.urn(urn);
            let _: () = admin.set(&key, "sys-a", None, None, false).await.unwrap();
            let mut args = ["sys-a", "sys-b", "60000", "0"].map(owned).to_vec();
            args.push(owned(moves.clone()));
            let handed = script.eval(&proxy, vec![owned(key.clone())], args).await;
            assert_eq!(handed.unwrap(), Value::Integer(1), "{user}");
            let now: String = admin.get(&key).await.unwrap();
            assert_eq!(now, "sys-b", "{user}");
            let _ = proxy.quit().await;
        }
        // Only the second hand-over's note was published.
        let note = tokio::time::timeout(std::time::Duration::from_secs(5), notes.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            crate::conn::as_bytes(&note.value),
            Some(format!("sys-b\n{}", keys.urn("acct:2")).as_bytes())
        );
        let _ = listener.quit().await;
        let _ = admin.quit().await;
        daemon.shutdown().unwrap();
    }
}
