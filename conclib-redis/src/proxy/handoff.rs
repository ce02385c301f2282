//! Handing a request to its actor: to a live actor, or to a patterned URN's activation (here,
//! placed on another member, or passed to the system holding it), and turning the outcome
//! into the reply and acknowledgement to write. What comes before (checking, routing and
//! decoding a request) is `dispatch.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conclib_core::trace::TraceContext;
use conclib_core::{AskError, DynActorRef, ErasedMessage, ErasedResult, ExposedMessage};
use fred::bytes::Bytes;
use fred::prelude::*;

use super::activations::{Activated, Pattern};
use super::forward::Origin;
use super::placement::{Handed, Placed};
use super::read::Request;
use super::shared::{Role, Shared};
use super::standing::Standing;
use crate::conn::{self, keyed, owned, s};
use crate::protocol::{self, Status};
use crate::unacked::EntryId;
use conclib_codec::Codec;

/// A request its actor did not start because the lease fence it carried had closed (this
/// process was paused past its lease, or out of Redis's reach as long): left pending, it is
/// read again, and handled here only if it is still this instance's (another member of its
/// group may have claimed it meanwhile).
fn fenced(urn: &str) -> (Option<(String, Bytes)>, bool) {
    tracing::debug!(%urn, "a request queued before the lease lapsed was not started; read again");
    (None, true)
}

/// Whether the request's activation was stopping to rebalance its pattern: a request it
/// did not start is left pending, read again, and activates the URN anew.
fn leaving(standing: &Option<Arc<Standing>>) -> bool {
    standing.as_ref().is_some_and(|s| s.is_leaving())
}

/// A decoded request, ready for its actor.
pub(super) struct HandOff {
    /// The stream entry it came in.
    pub(super) entry: EntryId,
    pub(super) req: Request,
    pub(super) reply_to: Option<(String, u64)>,
    pub(super) rm: &'static ExposedMessage,
    pub(super) msg: ErasedMessage,
    pub(super) codec: Arc<dyn Codec>,
    pub(super) timeout: Duration,
    pub(super) sent_ms: i64,
    /// Read as new (not from the pending list): a patterned URN's request may be placed on
    /// another member (`placement.rs`).
    pub(super) fresh: bool,
    /// The reading instance's lease fence when it was read, or when its ownership was
    /// checked again since: the actor starts it only while that is open.
    pub(super) fence: conclib_core::Fence,
}

impl Shared {
    /// Serves a request for a patterned URN: activates it here if nobody holds it (or places
    /// it on the member its pattern's placement chooses: then `handed` is set, and it is
    /// neither acknowledged nor read again here), passes it to the system holding it
    /// otherwise.
    pub(super) async fn activated(
        self: Arc<Self>,
        pattern: Arc<Pattern>,
        mut h: HandOff,
        handed: &mut bool,
    ) -> (Option<(String, Bytes)>, bool) {
        let Some(sys) = self.system_proxy() else {
            return (None, true);
        };
        // Its handling here wrote the state already; read again after its acknowledgement
        // failed (`applied.rs`).
        if self.stream.handled_here(h.entry) {
            return answered_already(&h.req.urn, &h.reply_to);
        }
        // A member paused past its lease may have had this request claimed by another.
        if !self.lease.fresh() {
            self.recheck_lease().await;
            if !self.lease.fresh() || !self.still_mine(h.entry).await {
                return (None, true);
            }
            h.fence = self.lease.fence();
        }
        // A first request read from the group's stream: the pattern's placement says where
        // the URN is activated (boxed, as the other rare paths below).
        if h.fresh
            && matches!(&self.role, Role::Member(m) if m.pattern)
            && !sys.activations.is_live(&h.req.urn)
        {
            let (urn, asker) = (h.req.urn.as_str(), h.req.asker.as_deref());
            match Box::pin(self.place_elsewhere(&sys, &pattern, h.entry, urn, asker)).await {
                Some(Handed::Done) => {
                    *handed = true;
                    return (None, false);
                }
                Some(Handed::NotPending) => return (None, true),
                Some(Handed::Failed) | None => {}
            }
        }
        // A rebalancing pattern's URN not (or no longer) active here, asked through this
        // system's own stream (a client's route cached before it was passivated): to the
        // pattern's group, whose placement chooses where it is activated again.
        // (Not a request a takeover moved here: this system was chosen to activate it.)
        if pattern.rebalance
            && matches!(self.role, Role::System)
            && h.req.moved.is_none()
            && !Box::pin(sys.activations.is_live_when_settled(&h.req.urn)).await
        {
            let group = protocol::pattern_group(&pattern.prefix);
            let forward = sys.forward(self.origin(h.entry), &h.req, &group, &h.reply_to, h.timeout);
            return Box::pin(forward).await;
        }
        // The rare paths' futures are boxed (here, and inside `recheck_lease`, `still_mine`
        // and `not_ours`): each holds Redis commands, several kilobytes that every request's
        // future would otherwise hold, and copy as it is built. Claiming a URN is one.
        match Box::pin(sys.activate(&h.req.urn, &pattern)).await {
            Activated::Here(target, standing) => {
                sys.hand_off(target, h, Some(standing), &self).await
            }
            Activated::HeldBy(owner) => {
                // Held by a member that is gone (this request was claimed from it, or it died
                // since, perhaps moments after it activated the URN): its URN key is freed
                // once its system lease is gone too, and the URN activated here at once;
                // else the request stays pending here until the key lapses.
                if let super::shared::Role::Member(m) = &self.role
                    && Box::pin(self.member_gone(&m.group, &owner)).await
                {
                    if Box::pin(sys.free_urn_of_gone(&h.req.urn, &owner)).await
                        && let Activated::Here(target, standing) =
                            Box::pin(sys.activate(&h.req.urn, &pattern)).await
                    {
                        return sys.hand_off(target, h, Some(standing), &self).await;
                    }
                    return (None, true);
                }
                crate::metrics::activation(&sys.system_id, &pattern.prefix, "forwarded");
                let forward =
                    sys.forward(self.origin(h.entry), &h.req, &owner, &h.reply_to, h.timeout);
                Box::pin(forward).await
            }
            Activated::Refused(text) => {
                let text = format!("{} could not be activated: {text}", h.req.urn);
                tracing::warn!(urn = %h.req.urn, "{text}");
                let reply = h.reply_to.as_ref().map(|(key, id)| {
                    let frame = protocol::encode_reply(*id, Status::UnknownUrn, text.as_bytes());
                    (key.clone(), Bytes::from(frame))
                });
                (reply, false)
            }
            Activated::Unavailable(e) => {
                tracing::warn!(urn = %h.req.urn, error = %e, "could not claim a URN to activate it; the request stays pending");
                (None, true)
            }
        }
    }

    /// Where the pattern's placement puts a URN nobody holds: `None` here, else what became
    /// of the request placed on the member chosen (`placement.rs`).
    async fn place_elsewhere(
        &self,
        sys: &Shared,
        pattern: &Pattern,
        entry: EntryId,
        urn: &str,
        asker: Option<&str>,
    ) -> Option<Handed> {
        let placed = self
            .place(sys, &pattern.prefix, &pattern.placement, urn, asker)
            .await;
        let Placed::There(target) = placed else {
            return None;
        };
        let handed = self.hand_to(entry, &target).await;
        if matches!(handed, Handed::Done) {
            crate::metrics::activation(&sys.system_id, &pattern.prefix, "placed");
            tracing::debug!(%urn, %target, "placed a URN on another member");
        }
        Some(handed)
    }

    /// Hands a decoded request to its actor, and turns the outcome into its reply; `true`:
    /// leave the request pending. `standing`: an activation's; when its handling was refused
    /// a write (a later activation owns the state) or never ran because another system took
    /// the URN, the request goes to that system instead. `origin`: the instance whose stream
    /// the request came in.
    pub(super) async fn hand_off(
        self: &Arc<Self>,
        target: DynActorRef,
        h: HandOff,
        standing: Option<Arc<Standing>>,
        origin: &Shared,
    ) -> (Option<(String, Bytes)>, bool) {
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
            mut fence,
        } = h;
        // An activation's message is handled in a trace context of its own, by which its
        // store tells whether a write of this very handling was refused, and records the
        // request with what it wrote (`applied.rs`).
        let trace = match &standing {
            Some(_) => Some(req.trace.map_or_else(TraceContext::new_root, |t| t.child())),
            None => req.trace,
        };
        let applied = standing.as_ref().zip(trace).map(|(s, t)| {
            // A request a takeover moved is known by its first entry (`field::MOVED`).
            let key = req
                .moved
                .clone()
                .unwrap_or_else(|| super::applied::request_key(&origin.stream.requests_key, entry));
            (s, t, key)
        });
        if let Some((standing, _, key)) = &applied
            && standing.applied.already(key)
        {
            return answered_already(&req.urn, &reply_to);
        }
        // Never hand a request to the actor without a lease surely still held: after a
        // pause (SIGSTOP, a long GC, a frozen VM) another system may serve the URN now.
        if !self.lease.fresh() {
            self.recheck_lease().await;
            let owner = self.registry().conflicts.get(&req.urn).cloned();
            // Another process of this very system took its lease meanwhile (this one was
            // taken for dead and restarted): it serves the URN now and reads the system's
            // stream, so the request goes back into the stream for it, with its reply
            // address. Not answered `NotOwner` (the URN still names this system: the client
            // would end with `UnknownUrn`), nor left pending here (the new process reads
            // the pending list at its start only). An activation's request stays pending
            // (a copy with a new entry id would escape its applied record).
            if owner.is_none() && standing.is_none() && self.lease.replaced.load(Ordering::Acquire)
            {
                return Box::pin(self.forward(
                    origin.origin(entry),
                    &req,
                    &self.system_id,
                    &reply_to,
                    timeout,
                ))
                .await;
            }
            if owner.is_some() || !self.lease.fresh() {
                return self
                    .not_ours(origin.origin(entry), &req, owner, &reply_to, timeout)
                    .await;
            }
            if !origin.still_mine(entry).await {
                return (None, true);
            }
            fence = origin.lease.fence();
        }
        // The wait for room counts from when Redis took the request, as its deadline does:
        // the time it spent in the stream and in this proxy before its turn counts against
        // it. A request older than the wait gets the room there is now, or `MailboxFull` at
        // once. (An entry id in the future counts as taken now.)
        let age =
            Duration::from_millis(self.clock.redis_now_ms().saturating_sub(sent_ms).max(0) as u64);
        let room_wait = room_wait(self.config.full_mailbox_wait, age, timeout);
        if let Some((standing, trace, key)) = &applied {
            standing.applied.begin(*trace, key.clone());
        }
        // The handling is over: `true` if it wrote the state (its request then waits for
        // its acknowledgement in the records, here and with the state).
        let ended = || {
            let wrote = applied
                .as_ref()
                .is_some_and(|(standing, trace, _)| standing.applied.end(trace));
            if let (true, Some((standing, _, key))) = (wrote, &applied) {
                origin.stream.await_ack(entry, standing, key);
            }
            wrote
        };
        let request = target
            .erased(rm.name(), rm.type_id(), msg)
            .priority(req.priority)
            .room_timeout(room_wait)
            .trace(trace)
            .fence(fence);
        // Not to be handled here after all: a write of its handling was refused, or it
        // never ran (nor wrote the state) because the activation was taken away.
        let redeliver = |ran: bool, wrote: bool| {
            standing.as_ref().is_some_and(|s| {
                trace.is_some_and(|t| s.take_refusal(&t)) || (!ran && !wrote && s.is_taken())
            })
        };
        match &reply_to {
            Some((key, id)) => {
                // At the deadline the ask is dropped, and the actor never starts a
                // request still queued then (nobody waits for it).
                let result = request.timeout(timeout).ask().await;
                let wrote = ended();
                if matches!(result, Err(AskError::Fenced)) {
                    return fenced(&req.urn);
                }
                let ran = !matches!(result, Err(AskError::ActorStopped));
                if !ran && !wrote && leaving(&standing) {
                    return (None, true);
                }
                if redeliver(ran, wrote) {
                    self.activations.taken_away(&req.urn);
                    return self
                        .not_ours(origin.origin(entry), &req, None, &reply_to, timeout)
                        .await;
                }
                let (status, payload) = self.outcome(rm, &*codec, &target, result);
                let since_entry = self.clock.redis_now_ms().saturating_sub(sent_ms).max(0);
                crate::metrics::answered(
                    &self.system_id,
                    status.label(),
                    Duration::from_millis(since_entry as u64),
                );
                let frame = protocol::encode_reply(*id, status, &payload);
                (Some((key.clone(), Bytes::from(frame))), false)
            }
            None => {
                // A tell is acknowledged once its handler has finished (or it was
                // refused), so a crash before that leaves it in Redis for the next proxy.
                let told = request.tell().await;
                let wrote = ended();
                if matches!(told, Err(AskError::Fenced)) {
                    return fenced(&req.urn);
                }
                if matches!(told, Err(AskError::ActorStopped)) && !wrote && leaving(&standing) {
                    return (None, true);
                }
                if redeliver(told.is_ok(), wrote) {
                    // The URN's current activation handles it (unless another member of
                    // its group took the request meanwhile: `forward` checks).
                    self.activations.taken_away(&req.urn);
                    // Boxed, as the rare paths in `activated` are.
                    let owner = Box::pin(self.current_owner(&req.urn)).await;
                    return self
                        .not_ours(origin.origin(entry), &req, owner, &None, timeout)
                        .await;
                }
                if let Err(e) = told {
                    // No room within `full_mailbox_wait`: refused before the actor had it,
                    // counted as a rejected request (the protocol docs).
                    if matches!(e, AskError::MailboxFull) {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        crate::metrics::rejected(&self.system_id, Status::MailboxFull.label());
                    }
                    tracing::warn!(urn = %req.urn, message = %req.message, error = %e, "a told message was refused");
                }
                (None, false)
            }
        }
    }

    /// Entry `entry` of this instance's stream, as the origin of a request passed on.
    pub(super) fn origin(&self, entry: EntryId) -> Origin<'_> {
        Origin {
            shared: self,
            entry,
        }
    }

    /// Whether a group's entry is still pending on this member (another member claims the
    /// entries of one paused past its lease). Always true in a system's own stream.
    pub(super) async fn still_mine(&self, entry: EntryId) -> bool {
        if matches!(self.role, Role::System) {
            return true;
        }
        let id = entry.to_string();
        // Boxed: the command would otherwise sit in every request's future.
        let pending = Box::pin(conn::call(
            &self.cmd,
            keyed("XPENDING"),
            vec![
                owned(self.stream.requests_key.clone()),
                s(crate::protocol::CONSUMER_GROUP),
                owned(id.clone()),
                owned(id),
                Value::Integer(1),
                owned(self.stream.consumer.clone()),
            ],
        ))
        .await;
        match pending {
            Ok(Value::Array(list)) => !list.is_empty(),
            // Redis did not say: leave it pending, it is read again.
            _ => false,
        }
    }

    /// The status and payload answering an ask's result.
    fn outcome(
        &self,
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
                    Ok(bytes) if bytes.len() > self.config.max_payload => (
                        Status::TooLarge,
                        format!(
                            "the {what} is {} bytes, the limit is {}",
                            bytes.len(),
                            self.config.max_payload
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
            Err(AskError::Handler(error)) => {
                encoded(Status::HandlerError, rm.error(&*error), "error")
            }
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
fn answered_already(
    urn: &str,
    reply_to: &Option<(String, u64)>,
) -> (Option<(String, Bytes)>, bool) {
    let reply = reply_to.as_ref().map(|(key, id)| {
        let text = format!("{urn} handled this request already, and its answer was lost");
        let frame = protocol::encode_reply(*id, Status::NoResponse, text.as_bytes());
        (key.clone(), Bytes::from(frame))
    });
    (reply, false)
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
            shared.hand_off(never(), never(), None, shared)
        });
        let mut handed = false;
        let activated =
            future_size(|| never::<Arc<Shared>>().activated(never(), never(), &mut handed));
        assert!(hand_off <= 3072, "handing off is {hand_off} bytes");
        assert!(
            activated <= 3072,
            "an activated URN's request is {activated} bytes"
        );
    }
}
