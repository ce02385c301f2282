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

use std::sync::Arc;
use std::time::Duration;

use conclib_codec::Codec;
use conclib_core::ExposedMessage;
use fred::prelude::*;

use super::activation;
use super::activations::Pattern;
use super::placement;
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

/// The live members of pattern `prefix` other than this system that decode `message` of
/// `version`, fewest activations first (`sys`: the system's proxy).
async fn members_that_decode(
    sys: &Shared,
    prefix: &str,
    message: &str,
    version: u32,
    other_versions: bool,
) -> Result<Vec<String>, fred::error::Error> {
    let mut live = placement::pattern_members(sys, prefix).await?;
    live.retain(|m| m.system != sys.system_id);
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let listed = conn::call(
        &sys.cmd,
        keyed("HGETALL"),
        vec![owned(sys.keys.messages(prefix))],
    )
    .await?;
    let mut lines = std::collections::HashMap::new();
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
    live.sort_by_key(|m| m.activations);
    Ok(live
        .into_iter()
        .filter(|m| {
            lines
                .get(&m.system)
                .is_some_and(|l| line_decodes(l, message, version, other_versions))
        })
        .map(|m| m.system)
        .collect())
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
    let settled = entry.lock.lock().await;
    // Another member holds it: that member judges (it decodes it, or reroutes it).
    if !sys.activations.is_live(urn)
        && let Some(holder) = forward::current_owner(&sys, urn).await
    {
        drop(settled);
        return forward::forward(&sys, origin, req, &holder, reply_to, remaining).await;
    }
    let able = members_that_decode(
        &sys,
        &pattern.prefix,
        &req.message,
        req.version,
        codec.reads_other_versions(),
    )
    .await;
    let target = match able {
        Ok(able) => able.into_iter().next(),
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
    let settled = if sys.activations.is_live(urn) {
        // Its requests queued here finish first (in their order), its state is carried,
        // then its key is the target's.
        drop(settled);
        activation::move_away(&sys, urn, Some(&target)).await;
        let settled = entry.lock.lock().await;
        if sys.activations.is_live(urn) {
            // Activated here again meanwhile: read again.
            return Handled::LeavePending;
        }
        settled
    } else {
        settled
    };
    let handed = urn_keys::hand_urn(&sys, urn, &target, urn_keys::Handing::HeldOrFree).await;
    drop(settled);
    match handed {
        HandedUrn::Handed | HandedUrn::NotHanded => {
            forward::forward(&sys, origin, req, &target, reply_to, remaining).await
        }
        HandedUrn::HeldBy(holder) => {
            forward::forward(&sys, origin, req, &holder, reply_to, remaining).await
        }
    }
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
    use conclib_codec::Bincode;

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
