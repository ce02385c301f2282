//! Mixed message versions in one pattern's group: the members of two builds serving side by
//! side during a rolling upgrade.
//!
//! Each member lists the messages its pattern's actor exposes, each as `Name@version`
//! ([`Message::version`](conclib_core::Message::version)), in the pattern's message
//! directory (`{ns}:messages:{prefix}`, a hash: system → `"Add@2 Get@1"`) as it joins the
//! group and with each lease renewal; it takes its line out as it leaves. Which members are
//! live is the pattern's placement directory's word (`placement.rs`): a line left by a
//! member that died counts for nothing.
//!
//! A request carries its message's version (field `mv`, absent: 1). A member decodes it
//! ([`decodes`]) when it exposes the message at that version, or at another under a codec
//! that reads fields by name (MessagePack: an optional field one build lacks is skipped or
//! read as `None`, the changes `conclib-schema check` calls additive). Any other request
//! is never decoded here, so never decoded wrong: [`reroute`] passes it to the URN's holder
//! when another member holds it (which judges for itself), else hands the URN to a live
//! member that decodes it (moving the activation there first when it is live here), or
//! refuses it `UnsupportedVersion` when no live member decodes it.
//!
//! What it costs a request that decodes here: one comparison of two numbers (the field's
//! parsing included, one more field name to compare while reading the entry).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use conclib_codec::Codec;
use conclib_core::ExposedMessage;
use fred::prelude::*;

use super::activations::{HeldElsewhere, LastLook, Look, Pattern};
use super::passivation;
use super::placement;
use super::placement_rule::MemberInfo;
use crate::conn::{self, as_bytes, keyed, owned};
use crate::protocol::Status;
use crate::proxy::serve::forward::{self, Origin};
use crate::proxy::serve::request::Request;
use crate::proxy::serve::stream::Handled;
use crate::proxy::serve::urn_keys::{self, HandedUrn};
use crate::proxy::shared::Shared;

/// Whether a request for `rm` whose fields are of `version`, encoded with `codec`, decodes
/// here as `rm` (the module's docs).
pub(in crate::proxy) fn decodes(rm: &ExposedMessage, version: u32, codec: &dyn Codec) -> bool {
    rm.version() == version || codec.reads_other_versions()
}

/// A member's line in the message directory: `Name@version`, space-separated.
pub(in crate::proxy) fn line(remote: &[ExposedMessage]) -> String {
    let mut line = String::new();
    for rm in remote {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(rm.name());
        line.push('@');
        line.push_str(&rm.version().to_string());
    }
    line
}

/// Whether a member whose line is `line` decodes `message` of `version` (`other_versions`:
/// the request's codec reads other versions' fields).
pub(in crate::proxy) fn line_decodes(
    line: &str,
    message: &str,
    version: u32,
    other_versions: bool,
) -> bool {
    line.split(' ').any(|entry| {
        let Some((name, v)) = entry.rsplit_once('@') else {
            return false;
        };
        name == message && (other_versions || v.parse::<u32>().ok() == Some(version))
    })
}

/// Writes this system's line for pattern `prefix` (`shared`: the system's proxy), unless it
/// no longer activates it.
pub(in crate::proxy) async fn advertise(shared: &Shared, prefix: &str) {
    let Some(pattern) = shared.activations.pattern_for_prefix(prefix) else {
        return;
    };
    let args = vec![
        owned(shared.keys.messages(prefix)),
        owned(shared.system_id.clone()),
        owned(line(pattern.remote)),
    ];
    if let Err(e) = conn::call(&shared.cmd, keyed("HSET"), args).await {
        tracing::debug!(error = %e, "could not write the pattern's message directory");
    }
}

/// Takes this system's line for pattern `prefix` out (it left the group).
pub(in crate::proxy) async fn unlist(shared: &Shared, prefix: &str) {
    let args = vec![
        owned(shared.keys.messages(prefix)),
        owned(shared.system_id.clone()),
    ];
    let _ = conn::call(&shared.cmd, keyed("HDEL"), args).await;
}

/// How long one look at a pattern's two directories serves the reroutes that follow it.
/// A build 2 caller's first requests reach many URNs of build 1 members within a few
/// hundred milliseconds; a look for each would be two round trips under its URN's lock,
/// which the URN's other requests and its move wait for. A look reused may name a member
/// that began to drain since (one killed is listed until its lease lapses, reused or not):
/// a request handed to it goes on to the pattern's group, whose members activate the URN
/// once that member's drain is over and its stream gone (`takeover.rs`,
/// `free_urn_of_gone`): later by up to a drain, never lost.
const LOOK_REUSED_FOR: Duration = Duration::from_millis(250);

impl LastLook {
    /// The last look at pattern `prefix`'s directories if it is recent and not `again`,
    /// else a new one; and whether it is new.
    async fn get(
        &self,
        sys: &Shared,
        prefix: &str,
        again: bool,
    ) -> Result<(Arc<Look>, bool), fred::error::Error> {
        let mut last = self.0.lock().await;
        if let Some((at, look)) = &*last
            && !again
            && at.elapsed() < LOOK_REUSED_FOR
        {
            return Ok((look.clone(), false));
        }
        let look = Arc::new(look_at(sys, prefix).await?);
        *last = Some((Instant::now(), look.clone()));
        Ok((look, true))
    }
}

impl Look {
    /// The member other than `me` that decodes `message` of `version` with the fewest
    /// activations, counted one more.
    fn choose(
        &self,
        me: &str,
        message: &str,
        version: u32,
        other_versions: bool,
    ) -> Option<String> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let chosen = live
            .iter_mut()
            .filter(|m| m.system != me)
            .filter(|m| {
                self.lines
                    .get(&m.system)
                    .is_some_and(|l| line_decodes(l, message, version, other_versions))
            })
            .min_by_key(|m| m.activations)?;
        chosen.activations += 1;
        Some(chosen.system.clone())
    }
}

/// The live member of pattern `prefix` other than this system that decodes `message` of
/// `version` with the fewest activations (`sys`: the system's proxy). A recent look that
/// names none is not trusted: a member that decodes it may have joined since.
async fn member_that_decodes(
    sys: &Shared,
    pattern: &Pattern,
    message: &str,
    version: u32,
    other_versions: bool,
) -> Result<Option<String>, fred::error::Error> {
    let (look, new) = pattern.last_look.get(sys, &pattern.prefix, false).await?;
    let chosen = look.choose(&sys.system_id, message, version, other_versions);
    if chosen.is_some() || new {
        return Ok(chosen);
    }
    let (look, _) = pattern.last_look.get(sys, &pattern.prefix, true).await?;
    Ok(look.choose(&sys.system_id, message, version, other_versions))
}

/// Reads pattern `prefix`'s member and message directories.
async fn look_at(sys: &Shared, prefix: &str) -> Result<Look, fred::error::Error> {
    let live = placement::pattern_members(sys, prefix).await?;
    let lines = message_lines(sys, prefix).await?;
    Ok(Look {
        live: std::sync::Mutex::new(live),
        lines,
    })
}

/// Pattern `prefix`'s message directory: system → line.
async fn message_lines(
    shared: &Shared,
    prefix: &str,
) -> Result<HashMap<String, String>, fred::error::Error> {
    let listed = conn::call(
        &shared.cmd,
        keyed("HGETALL"),
        vec![owned(shared.keys.messages(prefix))],
    )
    .await?;
    let mut lines = HashMap::new();
    if let Value::Array(flat) = listed {
        let mut it = flat.into_iter();
        while let (Some(system), Some(line)) = (it.next(), it.next()) {
            if let (Some(system), Some(line)) = (as_bytes(&system), as_bytes(&line)) {
                lines.insert(
                    String::from_utf8_lossy(system).into_owned(),
                    String::from_utf8_lossy(line).into_owned(),
                );
            }
        }
    } else if let Value::Map(map) = listed {
        for (system, line) in map.inner() {
            if let Some(line) = as_bytes(&line) {
                lines.insert(
                    String::from_utf8_lossy(system.as_bytes()).into_owned(),
                    String::from_utf8_lossy(line).into_owned(),
                );
            }
        }
    }
    Ok(lines)
}

/// Whether the build whose line is `a` is newer than the one whose line is `b`: it has
/// every message `b` has, each at the same version or a later one, and a message more or
/// one at a later version. Two lines neither of which is newer (the same build, or builds
/// that each dropped something) are not ordered, and neither is a line that cannot be
/// read, or none (a member that has not listed its messages yet).
fn newer(a: &str, b: &str) -> bool {
    let (Some(a), Some(b)) = (parse_line(a), parse_line(b)) else {
        return false;
    };
    let covers = b
        .iter()
        .all(|(name, vb)| a.get(name).is_some_and(|va| va >= vb));
    covers && (a.len() > b.len() || b.iter().any(|(name, vb)| a[name] > *vb))
}

/// A line's messages and their versions; `None` when it is empty or an entry is not
/// `Name@version`.
fn parse_line(line: &str) -> Option<HashMap<&str, u32>> {
    let mut out = HashMap::new();
    for entry in line.split(' ').filter(|e| !e.is_empty()) {
        let (name, version) = entry.rsplit_once('@')?;
        out.insert(name, version.parse().ok()?);
    }
    (!out.is_empty()).then_some(out)
}

/// The builds of pattern `prefix`'s members, as they list them in its message directory
/// (one round trip): which members a rebalance shares with, and which a drain hands to,
/// mid-roll (README, "Upgrading a running cluster"). Empty when it cannot be read: then
/// every member is of one build.
pub(in crate::proxy) async fn builds(shared: &Shared, prefix: &str) -> Builds {
    Builds(message_lines(shared, prefix).await.unwrap_or_default())
}

/// Each member's line in a pattern's message directory ([`builds`]).
#[derive(Debug, Default)]
pub(in crate::proxy) struct Builds(HashMap<String, String>);

impl Builds {
    fn line(&self, system: &str) -> &str {
        self.0.get(system).map_or("", String::as_str)
    }

    /// Of `others`, those not of a build older than `me`'s: the members a rebalancing
    /// member shares its pattern's activations with. Mid-roll, one of the new build that
    /// rebalanced onto one of the old would get its URNs back at the first request only
    /// the new build decodes, and pass them on again at its next look; one of the old
    /// build shares with every member (what it gives to the new build stays there).
    pub(in crate::proxy) fn not_older_than(&self, me: &str, others: &mut Vec<MemberInfo>) {
        let mine = self.line(me);
        others.retain(|m| !newer(mine, self.line(&m.system)));
    }

    /// Keeps of `members` those of the newest build among them (none of the others has a
    /// newer one): where a draining member hands its activations, so that none moves again
    /// when the rest of the old build drains. One build, or none listed: every member.
    pub(in crate::proxy) fn newest(&self, members: &mut Vec<MemberInfo>) {
        let lines: Vec<&str> = members.iter().map(|m| self.line(&m.system)).collect();
        let mut own = lines.iter();
        members.retain(|_| {
            let mine = own.next().copied().unwrap_or_default();
            !lines.iter().any(|other| newer(other, mine))
        });
    }
}

/// A request for a URN of `pattern` that this member does not decode (the module's docs):
/// passed to the URN's holder or to a member that decodes it, or refused
/// `UnsupportedVersion`. `shared`: the instance that read it (the system, or its member
/// of the pattern's group).
pub(in crate::proxy) async fn reroute(
    shared: &Arc<Shared>,
    origin: Origin<'_>,
    pattern: &Pattern,
    req: &Request,
    reply_to: &Option<(String, u64)>,
    remaining: Duration,
    codec: &dyn Codec,
) -> Handled {
    let Some(sys) = shared.system_proxy() else {
        return Handled::LeavePending;
    };
    let urn = req.urn.as_str();
    // Decided and handed over under the URN's lock: no activation here starts (or stops,
    // its state carried) between the look and the hand-over.
    let entry = sys.activations.lock_for(urn);
    let (mut settled, went) = entry.take().await;
    // Another member holds it: that member judges (it decodes it, or reroutes it). Known
    // without asking when it went there while this request waited (`HeldElsewhere`).
    if !sys.activations.is_live(urn) {
        let holder = match went {
            Some(went) => Some(went),
            None => {
                let owner = forward::current_owner(&sys, urn).await;
                if let Some(owner) = &owner {
                    *settled = HeldElsewhere::now(owner.clone());
                }
                owner
            }
        };
        if let Some(holder) = holder {
            drop(settled);
            return forward::forward(&sys, origin, req, &holder, reply_to, remaining).await;
        }
    }
    let able = member_that_decodes(
        &sys,
        pattern,
        &req.message,
        req.version,
        codec.reads_other_versions(),
    )
    .await;
    let target = match able {
        Ok(able) => able,
        Err(e) => {
            tracing::warn!(%urn, error = %e, "could not read the pattern's directories; the request stays pending");
            return Handled::LeavePending;
        }
    };
    let Some(target) = target else {
        return unsupported(&sys, req, reply_to);
    };
    crate::metrics::activation(&sys.system_id, &pattern.prefix, "rerouted");
    tracing::info!(%urn, message = %req.message, version = req.version, %target, "a message this member does not decode: its URN goes to a member that does");
    let mut settled = if sys.activations.is_live(urn) {
        // Its requests queued here finish first (in their order), its state is carried,
        // then its key is the target's.
        drop(settled);
        let moved = passivation::move_away(&sys, urn, Some(&target)).await;
        if moved.handed {
            // The target holds the key now: this request waits for no look at it.
            return forward::forward(&sys, origin, req, &target, reply_to, remaining).await;
        }
        let settled = entry.lock.lock().await;
        if sys.activations.is_live(urn) {
            // Activated here again meanwhile: read again.
            return Handled::LeavePending;
        }
        settled
    } else {
        settled
    };
    let to = match urn_keys::hand_urn(&sys, urn, &target, urn_keys::Handing::HeldOrFree).await {
        HandedUrn::Handed => target,
        HandedUrn::HeldBy(holder) => holder,
        // Not known held by it: the target judges, and the next request asks again.
        HandedUrn::NotHanded => {
            drop(settled);
            return forward::forward(&sys, origin, req, &target, reply_to, remaining).await;
        }
    };
    *settled = HeldElsewhere::now(to.clone());
    drop(settled);
    forward::forward(&sys, origin, req, &to, reply_to, remaining).await
}

/// No live member decodes the request: an ask answered `UnsupportedVersion`, a tell
/// refused (counted, logged).
fn unsupported(sys: &Shared, req: &Request, reply_to: &Option<(String, u64)>) -> Handled {
    let status = Status::UnsupportedVersion;
    sys.counters
        .rejected
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::metrics::rejected(&sys.system_id, status.label());
    let text = format!(
        "no member serving {} has message {} at version {} (or one its codec reads)",
        req.urn, req.message, req.version
    );
    tracing::warn!(urn = %req.urn, "{text}");
    Handled::reply(reply_to, status, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::scale::placement_rule::MemberInfo;
    use conclib_codec::Bincode;

    #[test]
    fn a_build_is_newer_when_it_has_every_message_at_its_version_or_later_and_more() {
        let v1 = "Add@1 Total@1";
        let v2 = "Add@2 Total@1 Audit@1";
        assert!(newer(v2, v1));
        assert!(!newer(v1, v2));
        // A field's version raised, nothing added: newer.
        assert!(newer("Add@2 Total@1", v1));
        // The same build; builds that each dropped something; a line unread or unknown.
        assert!(!newer(v1, "Total@1 Add@1"));
        assert!(!newer("Add@2 Audit@1", v1));
        assert!(!newer(v2, ""));
        assert!(!newer(v2, "Add@x"));
        assert!(!newer("", v1));
    }

    #[test]
    fn a_rebalance_shares_with_none_of_an_older_build_and_a_drain_hands_to_the_newest() {
        let member = |system: &str| MemberInfo {
            system: system.into(),
            activations: 0,
            reader: false,
            asker: false,
        };
        let builds = Builds(
            [
                ("old-a", "Add@1"),
                ("old-b", "Add@1"),
                ("new-a", "Add@2 Audit@1"),
                ("new-b", "Add@2 Audit@1"),
            ]
            .into_iter()
            .map(|(s, l)| (s.to_owned(), l.to_owned()))
            .collect(),
        );
        let not_older = |me: &str, systems: &[&str]| {
            let mut ms = systems.iter().map(|s| member(s)).collect();
            builds.not_older_than(me, &mut ms);
            ms.into_iter().map(|m| m.system).collect::<Vec<_>>()
        };
        // One of the old build shares with every member; one of the new, with the new.
        assert_eq!(not_older("old-a", &["old-b", "new-a"]), ["old-b", "new-a"]);
        assert_eq!(not_older("new-a", &["old-a", "old-b", "new-b"]), ["new-b"]);
        assert!(not_older("new-a", &["old-a", "old-b"]).is_empty());
        // One build, or a member not listed yet (nor this one): every member.
        assert_eq!(
            not_older("old-a", &["old-b", "unlisted"]),
            ["old-b", "unlisted"]
        );
        assert_eq!(
            not_older("unlisted", &["old-a", "new-a"]),
            ["old-a", "new-a"]
        );
        assert_eq!(not_older("new-a", &["unlisted"]), ["unlisted"]);
        // A drain hands to the newest build among the others; of one build, to every one.
        let newest = |systems: &[&str]| {
            let mut ms = systems.iter().map(|s| member(s)).collect();
            builds.newest(&mut ms);
            ms.into_iter().map(|m| m.system).collect::<Vec<_>>()
        };
        assert_eq!(newest(&["old-b", "new-a", "new-b"]), ["new-a", "new-b"]);
        assert_eq!(newest(&["old-a", "old-b"]), ["old-a", "old-b"]);
        assert_eq!(newest(&["new-b", "unlisted"]), ["new-b", "unlisted"]);
    }

    #[test]
    fn a_look_chooses_the_member_that_decodes_with_the_fewest_counting_each_choice() {
        let member = |system: &str, activations| MemberInfo {
            system: system.into(),
            activations,
            reader: false,
            asker: false,
        };
        let look = Look {
            live: std::sync::Mutex::new(vec![
                member("me", 0),
                member("v1", 0),
                member("a", 5),
                member("b", 6),
            ]),
            lines: [
                ("me", "Audit@1"),
                ("v1", "Add@1"),
                ("a", "Audit@1"),
                ("b", "Audit@1"),
            ]
            .into_iter()
            .map(|(s, l)| (s.to_owned(), l.to_owned()))
            .collect(),
        };
        let chosen: Vec<_> = (0..4)
            .map(|_| look.choose("me", "Audit", 1, false))
            .collect();
        // `a` (5), then `a` or `b` at 6 each, each choice counted: never `me` nor `v1`.
        assert_eq!(chosen[0].as_deref(), Some("a"));
        let to_b = chosen.iter().filter(|c| c.as_deref() == Some("b")).count();
        assert_eq!(to_b, 1, "{chosen:?}");
        assert_eq!(look.choose("me", "Nope", 1, false), None);
    }

    #[test]
    fn a_line_lists_each_message_with_its_version() {
        let line = "Add@2 Get@1 Audit@1";
        assert!(line_decodes(line, "Add", 2, false));
        assert!(
            !line_decodes(line, "Add", 1, false),
            "bincode: another version"
        );
        assert!(line_decodes(line, "Add", 1, true), "msgpack: any version");
        assert!(line_decodes(line, "Audit", 1, false));
        assert!(!line_decodes(line, "Aud", 1, true));
        assert!(!line_decodes(line, "Nope", 1, true));
        assert!(!line_decodes("", "Add", 1, true));
        assert!(
            !line_decodes("Add", "Add", 1, true),
            "no version: not listed"
        );
        // A name with an `@` in it: the version is after the last one.
        assert!(line_decodes("a@b@3", "a@b", 3, false));
    }

    #[test]
    fn bincode_decodes_only_its_own_version() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Add;
        impl conclib_core::Message for Add {
            type Response = ();
            type Error = String;
            fn name() -> &'static str {
                "Add"
            }
            fn version() -> u32 {
                2
            }
        }
        let rm = ExposedMessage::of::<Add>();
        assert!(decodes(&rm, 2, &Bincode));
        assert!(!decodes(&rm, 1, &Bincode));
        assert!(!decodes(&rm, 3, &Bincode));
        assert_eq!(line(&[rm]), "Add@2");
    }
}
