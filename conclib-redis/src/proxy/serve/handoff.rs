//! Handing a request to its actor: to a live actor, or to a patterned URN's activation (here,
//! placed on another member, or passed to the system holding it), and turning the outcome
//! into the reply and acknowledgement to write. What comes before (checking, routing and
//! decoding a request) is `dispatch.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conclib_core::{AskError, DynActorRef, ErasedMessage, ErasedResult, ExposedMessage};
use fred::bytes::Bytes;

use super::forward;
use super::forward::Origin;
use super::lease;
use super::request::{Request, RouteHint};
use super::stream::Handled;
use super::urn_keys;
use crate::protocol::{self, Status};
use crate::proxy::scale::activation;
use crate::proxy::scale::activations::{Activated, Pattern};
use crate::proxy::scale::group;
use crate::proxy::scale::placement;
use crate::proxy::scale::placement::{Handed, Placed};
use crate::proxy::scale::record::Record;
use crate::proxy::scale::standing::Standing;
use crate::proxy::scale::takeover;
use crate::proxy::shared::{Role, Shared};
use crate::unacked::EntryId;
use conclib_codec::Codec;

/// A request its actor did not start because the lease fence it carried had closed (this
/// process was paused past its lease, or out of Redis's reach as long): left pending, it is
/// read again, and handled here only if it is still this instance's (another member of its
/// group may have claimed it meanwhile).
fn fenced(urn: &str) -> Handled {
    tracing::debug!(%urn, "a request queued before the lease lapsed was not started; read again");
    Handled::LeavePending
}

/// A decoded request, ready for its actor.
pub(in crate::proxy) struct HandOff {
    /// The stream entry it came in.
    pub(in crate::proxy) entry: EntryId,
    pub(in crate::proxy) req: Request,
    pub(in crate::proxy) reply_to: Option<(String, u64)>,
    pub(in crate::proxy) rm: &'static ExposedMessage,
    pub(in crate::proxy) msg: ErasedMessage,
    pub(in crate::proxy) codec: Arc<dyn Codec>,
    pub(in crate::proxy) timeout: Duration,
    pub(in crate::proxy) sent_ms: i64,
    /// Read as new (not from the pending list): a patterned URN's request may be placed on
    /// another member (`placement.rs`).
    pub(in crate::proxy) fresh: bool,
    /// The reading instance's lease fence when it was read, or when its ownership was
    /// checked again since: the actor starts it only while that is open.
    pub(in crate::proxy) fence: conclib_core::Fence,
}

/// Serves a request for a patterned URN: activates it here if nobody holds it (or places
/// it on the member its pattern's placement chooses: [`Handled::Placed`]), passes it to the
/// system holding it otherwise.
pub(in crate::proxy) async fn activated(
    shared: Arc<Shared>,
    pattern: Arc<Pattern>,
    mut h: HandOff,
) -> Handled {
    let Some(sys) = shared.system_proxy() else {
        return Handled::LeavePending;
    };
    // Its handling here wrote the state already; read again after its acknowledgement
    // failed (`applied.rs`).
    if shared.awaiting_ack.handled_here(h.entry) {
        return answered_already(&h.req.urn, &h.reply_to);
    }
    // A member paused past its lease may have had this request claimed by another.
    if !shared.lease.fresh() {
        lease::recheck_lease(&shared).await;
        if !shared.lease.fresh() || !shared.still_mine(h.entry).await {
            return Handled::LeavePending;
        }
        h.fence = shared.lease.fence();
    }
    // A first request read from the group's stream: the pattern's placement says where
    // the URN is activated (boxed, as the other rare paths below).
    if h.fresh
        && matches!(&shared.role, Role::Member(m) if m.pattern)
        && !sys.activations.is_live(&h.req.urn)
    {
        let (urn, asker) = (h.req.urn.as_str(), h.req.asker.as_deref());
        match Box::pin(place_elsewhere(
            &shared, &sys, &pattern, h.entry, urn, asker,
        ))
        .await
        {
            Some(Handed::Done) => return Handled::Placed,
            Some(Handed::NotPending) => return Handled::LeavePending,
            Some(Handed::Failed) | None => {}
        }
    }
    // A draining system activates nothing more: every request for a URN not live here
    // (moved here by a takeover too) goes to the member it handed the URN to, else to the
    // group (`proxy/drain.rs`). The member it handed the URN to is known here without a
    // round trip: a request that waited for its URN's hand-over waits no longer.
    if sys.draining.load(Ordering::Acquire)
        && !Box::pin(sys.activations.is_live_when_settled(&h.req.urn)).await
    {
        let owner = match sys.activations.handed_to(&h.req.urn) {
            Some(target) => Some(target),
            None => Box::pin(forward::current_owner(&sys, &h.req.urn)).await,
        };
        if owner.is_none() {
            // The key may name this system with nothing live here (handed here by a look
            // taken before the drain began): released, or the group's member would find
            // it held by a member still alive and wait for the drain to end.
            Box::pin(urn_keys::release_urns(&sys, vec![h.req.urn.clone()])).await;
        }
        let to = owner.unwrap_or_else(|| protocol::pattern_group(&pattern.prefix));
        let forward = forward::forward(
            &sys,
            origin_of(&shared, h.entry),
            &h.req,
            &to,
            &h.reply_to,
            h.timeout,
        );
        return Box::pin(forward).await;
    }
    // A rebalancing pattern's URN not (or no longer) active here, asked through this
    // system's own stream (a client's route cached before it was passivated): to the
    // pattern's group, whose placement chooses where it is activated again.
    // (Not a request a takeover moved here, nor a URN a drained member handed here: this
    // system was chosen to activate it.)
    if pattern.rebalance
        && matches!(shared.role, Role::System)
        && h.req.moved.is_none()
        && !Box::pin(sys.activations.is_live_when_settled(&h.req.urn)).await
        && !Box::pin(held_here(&sys, &h.req.urn)).await
    {
        let group = protocol::pattern_group(&pattern.prefix);
        let forward = forward::forward(
            &sys,
            origin_of(&shared, h.entry),
            &h.req,
            &group,
            &h.reply_to,
            h.timeout,
        );
        return Box::pin(forward).await;
    }
    // The rare paths' futures are boxed (here, and inside `recheck_lease`, `still_mine`
    // and `not_ours`): each holds Redis commands, several kilobytes that every request's
    // future would otherwise hold, and copy as it is built. Claiming a URN is one.
    match Box::pin(activation::activate(&sys, &h.req.urn, &pattern)).await {
        Activated::Here(target, standing) => {
            hand_off(&sys, target, h, Some(standing), &shared).await
        }
        Activated::HeldBy(owner) => {
            // Held by a member that is gone (this request was claimed from it, or it died
            // since, perhaps moments after it activated the URN): its URN key is freed
            // once its system lease is gone too, and the URN activated here at once; else
            // the request stays pending here until the key lapses.
            if let crate::proxy::shared::Role::Member(m) = &shared.role
                && Box::pin(group::member_gone(&shared, &m.group, &owner)).await
            {
                if Box::pin(takeover::free_urn_of_gone(&sys, &h.req.urn, &owner)).await
                    && let Activated::Here(target, standing) =
                        Box::pin(activation::activate(&sys, &h.req.urn, &pattern)).await
                {
                    return hand_off(&sys, target, h, Some(standing), &shared).await;
                }
                return Handled::LeavePending;
            }
            crate::metrics::activation(&sys.system_id, &pattern.prefix, "forwarded");
            let forward = forward::forward(
                &sys,
                origin_of(&shared, h.entry),
                &h.req,
                &owner,
                &h.reply_to,
                h.timeout,
            );
            Box::pin(forward).await
        }
        Activated::Refused(text) => {
            let text = format!("{} could not be activated: {text}", h.req.urn);
            tracing::warn!(urn = %h.req.urn, "{text}");
            Handled::reply(&h.reply_to, Status::UnknownUrn, text.as_bytes())
        }
        Activated::Unavailable(e) => {
            tracing::warn!(urn = %h.req.urn, error = %e, "could not claim a URN to activate it; the request stays pending");
            Handled::LeavePending
        }
    }
}

/// Whether `urn`'s key names this system (a drained member handed it here).
async fn held_here(shared: &Shared, urn: &str) -> bool {
    let key = vec![crate::conn::owned(shared.keys.urn(urn))];
    let got = crate::conn::call(&shared.cmd, crate::conn::keyed("GET"), key).await;
    matches!(&got, Ok(v) if crate::conn::as_bytes(v) == Some(shared.system_id.as_bytes()))
}

/// Where the pattern's placement puts a URN nobody holds: `None` here, else what became
/// of the request placed on the member chosen (`placement.rs`).
async fn place_elsewhere(
    shared: &Shared,
    sys: &Shared,
    pattern: &Pattern,
    entry: EntryId,
    urn: &str,
    asker: Option<&str>,
) -> Option<Handed> {
    let placed =
        placement::place(shared, sys, &pattern.prefix, &pattern.placement, urn, asker).await;
    let Placed::There(target) = placed else {
        return None;
    };
    let handed = placement::hand_to(shared, entry, &target).await;
    if matches!(handed, Handed::Done) {
        crate::metrics::activation(&sys.system_id, &pattern.prefix, "placed");
        tracing::debug!(%urn, %target, "placed a URN on another member");
    }
    Some(handed)
}

/// Hands a decoded request to its actor, in three steps: its exactly-once record
/// ([`Record`]: an activation's request handled already is answered from it), the lease
/// check ([`check_lease`]), then the ask or the tell. `standing`: an activation's; when its
/// handling was refused a write (a later activation owns the state) or never ran because
/// another system took the URN, the request goes to that system instead. `origin`: the
/// instance whose stream the request came in.
pub(in crate::proxy) async fn hand_off(
    shared: &Arc<Shared>,
    target: DynActorRef,
    h: HandOff,
    standing: Option<Arc<Standing>>,
    origin: &Shared,
) -> Handled {
    let HandOff {
        entry,
        req,
        reply_to,
        rm,
        msg,
        codec,
        timeout,
        sent_ms,
        fresh: _,
        fence,
    } = h;
    let record = Record::new(standing, &req, &origin.stream.requests_key, entry);
    if record.answered_already(&origin.awaiting_ack, entry) {
        return answered_already(&req.urn, &reply_to);
    }
    let fence = if shared.lease.fresh() {
        fence
    } else {
        // Boxed, as the other rare paths are (see `activated`).
        match Box::pin(check_lease(
            shared, origin, entry, &req, &reply_to, &record, timeout,
        ))
        .await
        {
            Ok(fence) => fence,
            Err(handled) => return handled,
        }
    };
    // The wait for room counts from when Redis took the request, as its deadline does:
    // the time it spent in the stream and in this proxy before its turn counts against
    // it. A request older than the wait gets the room there is now, or `MailboxFull` at
    // once. (An entry id in the future counts as taken now.)
    let age =
        Duration::from_millis(shared.clock.redis_now_ms().saturating_sub(sent_ms).max(0) as u64);
    let room_wait = room_wait(shared.config.full_mailbox_wait, age, timeout);
    record.begin();
    let request = target
        .erased(rm.name(), rm.type_id(), msg)
        .priority(req.priority)
        .room_timeout(room_wait)
        .trace(record.trace)
        .fence(fence);
    let asked = Asked {
        shared,
        origin,
        entry,
        req: &req,
        record: &record,
        timeout,
    };
    match &reply_to {
        Some((key, id)) => {
            // At the deadline the ask is dropped, and the actor never starts a
            // request still queued then (nobody waits for it).
            let result = request.timeout(timeout).ask().await;
            asked
                .answered(result, key, *id, rm, &*codec, &target, sent_ms)
                .await
        }
        None => {
            // A tell is acknowledged once its handler has finished (or it was
            // refused), so a crash before that leaves it in Redis for the next proxy.
            let told = request.tell().await;
            asked.told(told).await
        }
    }
}

/// Never hand a request to the actor without a lease surely still held: after a pause
/// (SIGSTOP, a long GC, a frozen VM) another system may serve the URN now. Checked when
/// the lease is not surely held: the fence to carry, or what becomes of the request
/// instead.
async fn check_lease(
    shared: &Arc<Shared>,
    origin: &Shared,
    entry: EntryId,
    req: &Request,
    reply_to: &Option<(String, u64)>,
    record: &Record,
    timeout: Duration,
) -> Result<conclib_core::Fence, Handled> {
    lease::recheck_lease(shared).await;
    let owner = shared.registry().conflicts.get(&req.urn).cloned();
    // Another process of this very system took its lease meanwhile (this one was taken
    // for dead and restarted): it serves the URN now and reads the system's stream, so
    // the request goes back into the stream for it, with its reply address. Not answered
    // `NotOwner` (the URN still names this system: the client would end with
    // `UnknownUrn`), nor left pending here (the new process reads the pending list at its
    // start only). An activation's request stays pending (a copy with a new entry id
    // would escape its applied record).
    if owner.is_none() && !record.is_activation() && shared.lease.replaced.load(Ordering::Acquire) {
        return Err(Box::pin(forward::forward(
            shared,
            origin_of(origin, entry),
            req,
            &shared.system_id,
            reply_to,
            timeout,
        ))
        .await);
    }
    if owner.is_some() || !shared.lease.fresh() {
        // An ask whose URN key names no other holder (this instance's, or free, or Redis
        // did not answer: out of reach, or a promoted replica whose renewal is not
        // replicated yet) waits pending here for the renewal, within its deadline.
        // Answered `NotOwner`, its client would look the same holder up again and end
        // with `UnknownUrn`.
        let owner = match owner {
            None if reply_to.is_some() => {
                let holder = Box::pin(forward::current_owner(shared, &req.urn)).await;
                let Some(other) = holder.filter(|h| *h != shared.claim_value) else {
                    return Err(Handled::LeavePending);
                };
                Some(other)
            }
            owner => owner,
        };
        let not_ours = forward::not_ours(
            shared,
            origin_of(origin, entry),
            req,
            owner,
            reply_to,
            timeout,
        );
        return Err(not_ours.await);
    }
    if !origin.still_mine(entry).await {
        return Err(Handled::LeavePending);
    }
    Ok(origin.lease.fence())
}

/// A request handed to its actor, whose result is turned into what becomes of it.
struct Asked<'a> {
    shared: &'a Arc<Shared>,
    origin: &'a Shared,
    entry: EntryId,
    req: &'a Request,
    record: &'a Record,
    timeout: Duration,
}

impl Asked<'_> {
    /// An ask's result: its reply to `key`, or (the actor did not take it) the request
    /// left pending or passed on.
    #[allow(clippy::too_many_arguments)]
    async fn answered(
        &self,
        result: ErasedResult,
        key: &str,
        id: u64,
        rm: &ExposedMessage,
        codec: &dyn Codec,
        target: &DynActorRef,
        sent_ms: i64,
    ) -> Handled {
        let (shared, req) = (self.shared, self.req);
        let wrote = self.record.end(&self.origin.awaiting_ack, self.entry);
        if matches!(result, Err(AskError::Fenced)) {
            return fenced(&req.urn);
        }
        let ran = !matches!(result, Err(AskError::ActorStopped));
        if !ran && !wrote && self.record.leaving() {
            return Handled::LeavePending;
        }
        if self.record.redeliver(ran, wrote) {
            shared.activations.taken_away(&req.urn);
            return self.not_ours(None, &Some((key.to_owned(), id))).await;
        }
        let (status, payload) = outcome(shared, rm, codec, target, result);
        let since_entry = shared.clock.redis_now_ms().saturating_sub(sent_ms).max(0);
        crate::metrics::answered(
            &shared.system_id,
            status.label(),
            Duration::from_millis(since_entry as u64),
        );
        // Passed on here by the system the asker's route named: this one holds the URN.
        let frame = if req.route_hint == RouteHint::PassedOn {
            protocol::encode_reply_with_holder(id, status, &shared.system_id, &payload)
        } else {
            protocol::encode_reply(id, status, &payload)
        };
        Handled::Reply {
            key: key.to_owned(),
            frame: Bytes::from(frame),
        }
    }

    /// Not this instance's to handle after all: to `owner`, or answered `NotOwner`
    /// ([`forward::not_ours`]).
    async fn not_ours(&self, owner: Option<String>, reply_to: &Option<(String, u64)>) -> Handled {
        let origin = origin_of(self.origin, self.entry);
        forward::not_ours(self.shared, origin, self.req, owner, reply_to, self.timeout).await
    }

    /// A tell's result: acknowledged (handled, or refused), or (the actor did not take it)
    /// left pending or passed on.
    async fn told(&self, told: Result<(), AskError>) -> Handled {
        let (shared, req) = (self.shared, self.req);
        let wrote = self.record.end(&self.origin.awaiting_ack, self.entry);
        if matches!(told, Err(AskError::Fenced)) {
            return fenced(&req.urn);
        }
        if matches!(told, Err(AskError::ActorStopped)) && !wrote && self.record.leaving() {
            return Handled::LeavePending;
        }
        if self.record.redeliver(told.is_ok(), wrote) {
            // The URN's current activation handles it (unless another member of its group
            // took the request meanwhile: `forward` checks).
            shared.activations.taken_away(&req.urn);
            // Boxed, as the rare paths in `activated` are.
            let owner = Box::pin(forward::current_owner(shared, &req.urn)).await;
            return self.not_ours(owner, &None).await;
        }
        if let Err(e) = told {
            // No room within `full_mailbox_wait`: refused before the actor had it, counted
            // as a rejected request (the protocol docs).
            if matches!(e, AskError::MailboxFull) {
                shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                crate::metrics::rejected(&shared.system_id, Status::MailboxFull.label());
            }
            tracing::warn!(urn = %req.urn, message = %req.message, error = %e, "a told message was refused");
        }
        Handled::Acknowledge
    }
}

/// Entry `entry` of this instance's stream, as the origin of a request passed on.
pub(in crate::proxy) fn origin_of(shared: &Shared, entry: EntryId) -> Origin<'_> {
    Origin { shared, entry }
}

/// The status and payload answering an ask's result.
fn outcome(
    shared: &Shared,
    rm: &ExposedMessage,
    codec: &dyn Codec,
    target: &DynActorRef,
    result: ErasedResult,
) -> (Status, Vec<u8>) {
    let urn = target
        .urn()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_default();
    let encoded =
        |status: Status, value: Option<&dyn erased_serde::Serialize>, what: &str| match value {
            None => (
                Status::CodecError,
                format!("the {what} is not of the message's {what} type").into_bytes(),
            ),
            Some(v) => match codec.encode(v) {
                Ok(bytes) if bytes.len() > shared.config.max_payload => (
                    Status::TooLarge,
                    format!(
                        "the {what} is {} bytes, the limit is {}",
                        bytes.len(),
                        shared.config.max_payload
                    )
                    .into_bytes(),
                ),
                Ok(bytes) => (status, bytes),
                Err(e) => (
                    Status::CodecError,
                    format!("cannot encode the {what}: {e}").into_bytes(),
                ),
            },
        };
    match result {
        Ok(response) => encoded(Status::Ok, rm.response(&*response), "response"),
        Err(AskError::Handler(error)) => encoded(Status::HandlerError, rm.error(&*error), "error"),
        Err(AskError::Panicked(p)) => (Status::Panicked, p.into_bytes()),
        Err(AskError::Timeout(d)) => (
            Status::Timeout,
            format!("{urn} did not answer within {d:?}").into_bytes(),
        ),
        Err(AskError::NoResponse) => (
            Status::NoResponse,
            format!("{urn} dropped the request").into_bytes(),
        ),
        Err(AskError::MailboxFull) => (
            Status::MailboxFull,
            format!("{urn} has a full mailbox").into_bytes(),
        ),
        Err(AskError::UnknownMessage { message, .. }) => (
            Status::UnknownMessage,
            format!("{urn} does not handle {message}").into_bytes(),
        ),
        // A process actor's process died under the ask: as the protocol has no status
        // of its own for it, a panic with the exit in its text (what it always said).
        Err(AskError::Exited(exit)) => (
            Status::Panicked,
            format!("the process died: {exit}").into_bytes(),
        ),
        Err(AskError::Codec(e)) => (Status::CodecError, e.into_bytes()),
        Err(AskError::TooLarge(e)) => (Status::TooLarge, e.into_bytes()),
        // `ActorStopped`, and what only another transport reports (an actor relayed to
        // elsewhere that cannot be reached): the actor is gone for this ask.
        Err(_) => (Status::ActorStopped, format!("{urn} stopped").into_bytes()),
    }
}

/// How long a request `age` old (since Redis took it) may still wait for room in a full
/// mailbox: what is left of `full_mailbox_wait`, within its `timeout`; zero when the wait
/// is spent (it takes the room there is at once, or is refused).
fn room_wait(full_mailbox_wait: Duration, age: Duration, timeout: Duration) -> Duration {
    full_mailbox_wait.saturating_sub(age).min(timeout)
}

/// The answer to a request whose handling wrote an activation's state already and that is
/// not acknowledged yet (`applied.rs`): read again after its acknowledgement failed, or
/// recorded by an earlier activation of the URN, paused or killed before it. Its effect is in
/// the state: it is acknowledged without being handled again, and an ask is answered
/// `NoResponse` (the first handling's answer was lost).
fn answered_already(urn: &str, reply_to: &Option<(String, u64)>) -> Handled {
    let text = format!("{urn} handled this request already, and its answer was lost");
    Handled::reply(reply_to, Status::NoResponse, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::future_size::{future_size, never};

    /// Every request's future is as large as the largest of its paths: the rare ones (a
    /// lease to check again, a request to pass on, a URN to claim for an activation) are
    /// boxed, so a request holds about 2.5 KB instead of 7.4 KB (copied as it is built).
    #[test]
    fn a_requests_future_leaves_its_rare_paths_boxed() {
        let hand_off = future_size(|| {
            let shared = never::<&Arc<Shared>>();
            hand_off(shared, never(), never(), None, shared)
        });
        let activated = future_size(|| activated(never::<Arc<Shared>>(), never(), never()));
        assert!(hand_off <= 3072, "handing off is {hand_off} bytes");
        assert!(
            activated <= 3072,
            "an activated URN's request is {activated} bytes"
        );
    }
}
