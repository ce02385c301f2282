//! Turning one stream entry into its handling, in three steps: [`check`]
//! (its fields, its deadline, its size, its codec), [`route`] (which actor or
//! pattern takes it here, or why none does) and [`decode`] (the message the
//! actor exposes); then `handoff.rs` gives it to the actor.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conclib_core::{DynActorRef, ExposedMessage};
use fred::bytes::Bytes;
use fred::prelude::*;
use tokio::sync::OwnedSemaphorePermit;

use super::forward;
use super::handoff;
use super::handoff::HandOff;
use super::request::{RawEnvelope, Request};
use super::stream::{Completion, FUTURE_ID_TOLERANCE_MS, Handling};
use crate::overload::Refusal;
use crate::protocol::{self, Status};
use crate::proxy::scale::activations::Pattern;
use crate::proxy::scale::rebalance;
use crate::proxy::scale::versions;
use crate::proxy::scale::{activation, placement};
use crate::proxy::shared::{Role, Shared};
use crate::unacked::EntryId;
use conclib_codec::Codec;

/// A request whose fields, deadline, size and codec passed: what routing needs.
struct Checked {
    req: Request,
    reply_to: Option<(String, u64)>,
    codec: Arc<dyn Codec>,
    sent_ms: i64,
    remaining: Duration,
}

/// Where a checked request goes here.
enum Route {
    /// A live local actor.
    Actor(DynActorRef),
    /// A URN of a pattern this system activates (active here or not yet).
    Pattern(Arc<Pattern>),
}

/// Why a request is not handed to an actor: its completion now, or (a tell for a URN
/// another system took) the handling that passes it on.
enum Turned {
    Done(Completion),
    Passed(Handling),
}

/// Checks, routes and decodes one request: its completion at once when it cannot be
/// handled (an error reply or a plain acknowledgement), else the handling to drive.
pub(in crate::proxy) fn dispatch(
    shared: &Arc<Shared>,
    entry_id: Bytes,
    id: EntryId,
    fields: Value,
    permit: OwnedSemaphorePermit,
    fresh: bool,
) -> Result<Handling, Completion> {
    shared.counters.received.fetch_add(1, Ordering::Relaxed);
    crate::metrics::received(&shared.system_id);
    let checked = check(shared, &entry_id, id, fields)?;
    let (route, checked, permit) = match route(shared, &entry_id, id, checked, permit) {
        Ok(routed) => routed,
        Err(Turned::Done(done)) => return Err(done),
        Err(Turned::Passed(handling)) => return Ok(handling),
    };
    let pattern = match &route {
        Route::Pattern(p) => Some(&p.limits),
        Route::Actor(_) => None,
    };
    let ticket = match shared.admission.admit(&checked.req.urn, pattern) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            return Err(overloaded(shared, &entry_id, id, &checked, refusal));
        }
    };
    let handoff = match decode(shared, &entry_id, id, checked, &route, fresh) {
        Ok(handoff) => handoff,
        Err(Undecoded::Refused(done)) => return Err(done),
        Err(Undecoded::Elsewhere(checked, pattern)) => {
            // Not decoded here: a member that decodes it takes it (`scale/versions.rs`).
            drop(ticket);
            let shared = shared.clone();
            return Ok(Box::pin(async move {
                let Checked {
                    req,
                    reply_to,
                    codec,
                    remaining,
                    ..
                } = *checked;
                let origin = handoff::origin_of(&shared, id);
                let handled = Box::pin(versions::reroute(
                    &shared, origin, &pattern, &req, &reply_to, remaining, &*codec,
                ))
                .await;
                Completion::of(id, handled, permit)
            }));
        }
    };
    let shared = shared.clone();
    Ok(Box::pin(async move {
        // Pending until answered.
        let _ticket = ticket;
        let handled = match route {
            Route::Actor(target) => {
                handoff::hand_off(&shared, target, handoff, None, &shared).await
            }
            Route::Pattern(pattern) => handoff::activated(shared, pattern, handoff).await,
        };
        Completion::of(id, handled, permit)
    }))
}

/// The request's fields, deadline, size and codec. An entry deleted while pending, a
/// wake-up from a group member, an expired request and a malformed one without a usable
/// reply address are acknowledged without a reply; any other refusal is answered.
fn check(
    shared: &Arc<Shared>,
    entry_id: &Bytes,
    id: EntryId,
    fields: Value,
) -> Result<Checked, Completion> {
    let fields = match fields {
        Value::Array(f) => f,
        // Deleted while pending: nothing to do but acknowledge.
        _ => return Err(done(id, None)),
    };
    let env = RawEnvelope::parse(fields);
    // A member of one of this system's groups placed a request on it: that member reads
    // its pending list. Or a member joined a pattern's group: a look to rebalance it. Or
    // a member moved an activation here: activated now (`scale/activation.rs`).
    if matches!(shared.role, Role::System)
        && let Some(group) = env.placed()
    {
        if let Some(urn) = env.moved_in() {
            activation::activate_moved_in(shared, urn);
        } else {
            placement::wake_member(shared, group);
        }
        if let Some(prefix) = env.joined() {
            rebalance::start(shared, prefix, rebalance::Look::Joined);
        }
        return Err(done(id, None));
    }
    let Some(reply_to) = env.address(&shared.reply_prefix) else {
        shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
        crate::metrics::rejected(&shared.system_id, Status::BadRequest.label());
        tracing::warn!(entry = ?entry_id, "dropped a malformed request with no usable reply address");
        return Err(done(id, None));
    };
    let req = match env.validate() {
        Ok(req) => req,
        Err(text) => {
            return Err(reject(
                shared,
                entry_id,
                id,
                &reply_to,
                Status::BadRequest,
                text,
            ));
        }
    };
    // Expired: drop unprocessed, no reply (the asker gave up).
    // The entry id says when Redis took the request, unless a client chose an id in the
    // future: then the proxy's reading time stands in for it (a deadline never rests on
    // a client's word), and the stream is reset once drained (`reset_poisoned`).
    let now = shared.clock.redis_now_ms();
    let sent_ms = i64::try_from(id.ms).unwrap_or(i64::MAX);
    if sent_ms > now.saturating_add(FUTURE_ID_TOLERANCE_MS) {
        shared.stream.poisoned.store(true, Ordering::Release);
    }
    let remaining_ms = sent_ms.min(now).saturating_add(req.ttl_ms) - now;
    if remaining_ms <= 0 {
        shared.counters.expired.fetch_add(1, Ordering::Relaxed);
        crate::metrics::expired(&shared.system_id);
        tracing::debug!(urn = %req.urn, message = %req.message, "dropped an expired request");
        return Err(done(id, None));
    }
    if req.body.len() > shared.config.max_payload {
        let text = format!(
            "the message is {} bytes, the limit is {}",
            req.body.len(),
            shared.config.max_payload
        );
        return Err(reject(
            shared,
            entry_id,
            id,
            &reply_to,
            Status::TooLarge,
            text,
        ));
    }
    let Some(codec) = shared
        .codecs
        .iter()
        .find(|c| c.name().as_bytes() == &req.codec[..])
        .cloned()
    else {
        let text = format!("unknown codec {:?}", String::from_utf8_lossy(&req.codec));
        return Err(reject(
            shared,
            entry_id,
            id,
            &reply_to,
            Status::BadRequest,
            text,
        ));
    };
    Ok(Checked {
        req,
        reply_to,
        codec,
        sent_ms,
        remaining: Duration::from_millis(remaining_ms as u64),
    })
}

/// Which actor or pattern takes the request here (with the request's place among those
/// in flight, kept for its handling), or why none does: a group member takes only its
/// group's; a URN another system took is answered `NotOwner` (a tell is passed on to
/// that system: an accepted tell is never dropped); a URN with no actor here is answered
/// `UnknownUrn`.
fn route(
    shared: &Arc<Shared>,
    entry_id: &Bytes,
    id: EntryId,
    checked: Checked,
    permit: OwnedSemaphorePermit,
) -> Result<(Route, Checked, OwnedSemaphorePermit), Turned> {
    let (req, reply_to) = (&checked.req, &checked.reply_to);
    let reject = |status: Status, text: String| {
        Turned::Done(reject(shared, entry_id, id, reply_to, status, text))
    };
    let mut pattern = None;
    match &shared.role {
        Role::Member(m) if !m.serves(&req.urn) => {
            let text = format!("URN {} is not served by group {}", req.urn, m.group);
            return Err(reject(Status::UnknownUrn, text));
        }
        Role::Member(m) if m.pattern => {
            pattern = shared
                .system_proxy()
                .and_then(|sys| sys.activations.pattern_for(&req.urn));
            if pattern.is_none() {
                let text = format!("this system no longer activates {}", req.urn);
                return Err(reject(Status::UnknownUrn, text));
            }
        }
        Role::Member(_) => {}
        Role::System => pattern = shared.activations.pattern_for(&req.urn),
    }
    if let Some(pattern) = pattern {
        return Ok((Route::Pattern(pattern), checked, permit));
    }
    let owner = shared.registry().conflicts.get(&req.urn).cloned();
    if let Some(owner) = owner {
        if reply_to.is_none() {
            // A tell for a URN another system took goes to that system, as one found
            // stale at dispatch does (`not_ours`).
            let shared = shared.clone();
            let Checked { req, remaining, .. } = checked;
            return Err(Turned::Passed(Box::pin(async move {
                let handled = forward::not_ours(
                    &shared,
                    handoff::origin_of(&shared, id),
                    &req,
                    Some(owner),
                    &None,
                    remaining,
                )
                .await;
                Completion::of(id, handled, permit)
            })));
        }
        let text = format!("URN {} is served by system {owner}", req.urn);
        return Err(reject(Status::NotOwner, text));
    }
    match shared.system.lookup(&req.urn) {
        Ok(target) => Ok((Route::Actor(target), checked, permit)),
        Err(_) => Err(reject(
            Status::UnknownUrn,
            format!("no actor with URN {}", req.urn),
        )),
    }
}

/// Why a request was not decoded here.
enum Undecoded {
    /// Refused: its completion.
    Refused(Completion),
    /// A pattern's URN whose message this member does not decode at the request's
    /// version: for a member that does (`scale/versions.rs`).
    Elsewhere(Box<Checked>, Arc<Pattern>),
}

impl From<Completion> for Undecoded {
    fn from(done: Completion) -> Self {
        Undecoded::Refused(done)
    }
}

/// The message the request carries, decoded as the actor (or, for a URN not active yet,
/// its pattern's actor type) exposes it: the request ready for its actor. A message not
/// exposed here, or not at a version this member decodes (`scale/versions.rs`), is a
/// pattern's member's to pass on; a live actor's is refused (`UnknownMessage`,
/// `UnsupportedVersion`).
fn decode(
    shared: &Shared,
    entry_id: &Bytes,
    id: EntryId,
    checked: Checked,
    route: &Route,
    fresh: bool,
) -> Result<HandOff, Undecoded> {
    let exposed: Option<&'static ExposedMessage> = match route {
        Route::Actor(target) => target.remote_message(&checked.req.message),
        Route::Pattern(p) => p.remote.iter().find(|m| m.name() == checked.req.message),
    };
    let decodable =
        exposed.filter(|rm| versions::decodes(rm, checked.req.version, &*checked.codec));
    let Some(rm) = decodable else {
        if let Route::Pattern(p) = route {
            return Err(Undecoded::Elsewhere(Box::new(checked), p.clone()));
        }
        let req = &checked.req;
        let (status, text) = match exposed {
            None => (
                Status::UnknownMessage,
                format!("actor {} does not expose message {}", req.urn, req.message),
            ),
            Some(rm) => (
                Status::UnsupportedVersion,
                format!(
                    "actor {} has message {} at version {}, not {}",
                    req.urn,
                    req.message,
                    rm.version(),
                    req.version
                ),
            ),
        };
        return Err(reject(shared, entry_id, id, &checked.reply_to, status, text).into());
    };
    let Checked {
        req,
        reply_to,
        codec,
        sent_ms,
        remaining,
    } = checked;
    let mut decoded = None;
    if let Err(e) = codec.decode_with(&req.body, &mut |de| {
        decoded = Some(rm.decode(de)?);
        Ok(())
    }) {
        let text = format!("cannot decode {} for {}: {e}", req.message, req.urn);
        return Err(reject(shared, entry_id, id, &reply_to, Status::CodecError, text).into());
    }
    let Some(msg) = decoded else {
        let text = "the codec produced no message".to_owned();
        return Err(reject(shared, entry_id, id, &reply_to, Status::CodecError, text).into());
    };
    Ok(HandOff {
        entry: id,
        req,
        reply_to,
        rm,
        msg,
        codec,
        timeout: remaining,
        sent_ms,
        fresh,
        fence: shared.lease.fence(),
    })
}

/// A request refused: counted, logged, answered with `status` and `text` when it has a
/// reply address, and acknowledged.
fn reject(
    shared: &Shared,
    entry_id: &Bytes,
    id: EntryId,
    reply_to: &Option<(String, u64)>,
    status: Status,
    text: String,
) -> Completion {
    shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
    crate::metrics::rejected(&shared.system_id, status.label());
    tracing::warn!(entry = ?entry_id, %status, "{text}");
    let reply = reply_to.as_ref().map(|(key, rid)| {
        (
            key.clone(),
            Bytes::from(protocol::encode_reply(*rid, status, text.as_bytes())),
        )
    });
    done(id, reply)
}

/// A request refused for `refusal`: an ask answered `Overloaded` with the limit and the
/// depth, a tell dropped; counted, acknowledged.
fn overloaded(
    shared: &Shared,
    entry_id: &Bytes,
    id: EntryId,
    checked: &Checked,
    refusal: Refusal,
) -> Completion {
    let tell = checked.reply_to.is_none();
    if tell {
        shared.admission.tell_dropped();
    }
    crate::metrics::overloaded(&shared.system_id, refusal.scope.label(), tell);
    tracing::debug!(entry = ?entry_id, urn = %checked.req.urn, scope = %refusal.scope, limit = refusal.limit, depth = refusal.depth, tell, "refused: overloaded");
    let reply = checked.reply_to.as_ref().map(|(key, rid)| {
        let frame = protocol::encode_reply(*rid, Status::Overloaded, refusal.payload().as_bytes());
        (key.clone(), Bytes::from(frame))
    });
    done(id, reply)
}

/// Entry `id` finished here without a handling: acknowledged, with `reply` if any.
fn done(id: EntryId, reply: Option<(String, Bytes)>) -> Completion {
    Completion {
        id,
        reply,
        requeue: false,
        handed: false,
        _permit: None,
    }
}
