//! Serving one request: decoding and checking it, asking the actor, and turning the outcome
//! into the reply and acknowledgement to write.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use conclib_core::{AskError, DynActorRef, ErasedResult, RemoteMessage};
use fred::bytes::Bytes;
use fred::prelude::*;
use tokio::sync::OwnedSemaphorePermit;

use super::read::{RawEnvelope, Request};
use super::{Completion, FUTURE_ID_TOLERANCE_MS, Handling, Shared};
use crate::conn::{self, bytes, keyed, owned, s};
use crate::protocol::{self, PROTOCOL_VERSION, Status, field};
use crate::unacked::EntryId;
use conclib_codec::Codec;

impl Shared {
    /// Decodes, checks and starts one request: its completion at once when it cannot be
    /// handled (error reply or plain acknowledgement), else the handling to drive.
    pub(super) fn dispatch(
        self: &Arc<Self>,
        entry_id: Bytes,
        id: EntryId,
        fields: Value,
        permit: OwnedSemaphorePermit,
    ) -> Result<Handling, Completion> {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        crate::metrics::received(&self.system_id);
        let done = |reply: Option<(String, Bytes)>| Completion {
            id,
            reply,
            requeue: false,
            _permit: None,
        };
        let fields = match fields {
            Value::Array(f) => f,
            // Deleted while pending: nothing to do but acknowledge.
            _ => return Err(done(None)),
        };
        let env = RawEnvelope::parse(fields);
        let Some(reply_to) = env.address(&self.reply_prefix) else {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            crate::metrics::rejected(&self.system_id, Status::BadRequest.label());
            tracing::warn!(entry = ?entry_id, "dropped a malformed request with no usable reply address");
            return Err(done(None));
        };
        let reject = |status: Status, text: String| {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            crate::metrics::rejected(&self.system_id, status.label());
            tracing::warn!(entry = ?entry_id, %status, "{text}");
            let reply = reply_to.as_ref().map(|(key, id)| {
                (
                    key.clone(),
                    Bytes::from(protocol::encode_reply(*id, status, text.as_bytes())),
                )
            });
            Err(done(reply))
        };
        let req = match env.validate() {
            Ok(req) => req,
            Err(text) => return reject(Status::BadRequest, text),
        };
        // Expired: drop unprocessed, no reply (the asker gave up).
        // The entry id says when Redis took the request, unless a client chose an id in the
        // future: then the proxy's reading time stands in for it (a deadline never rests on
        // a client's word), and the stream is reset once drained (`reset_poisoned`).
        let now = self.redis_now_ms();
        let sent_ms = i64::try_from(id.ms).unwrap_or(i64::MAX);
        if sent_ms > now.saturating_add(FUTURE_ID_TOLERANCE_MS) {
            self.poisoned.store(true, Ordering::Release);
        }
        let remaining_ms = sent_ms.min(now).saturating_add(req.ttl_ms) - now;
        if remaining_ms <= 0 {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            crate::metrics::expired(&self.system_id);
            tracing::debug!(urn = %req.urn, message = %req.message, "dropped an expired request");
            return Err(done(None));
        }
        if req.body.len() > self.config.max_payload {
            return reject(
                Status::TooLarge,
                format!(
                    "the message is {} bytes, the limit is {}",
                    req.body.len(),
                    self.config.max_payload
                ),
            );
        }
        let Some(codec) = self
            .codecs
            .iter()
            .find(|c| c.name().as_bytes() == &req.codec[..])
            .cloned()
        else {
            return reject(
                Status::BadRequest,
                format!("unknown codec {:?}", String::from_utf8_lossy(&req.codec)),
            );
        };
        let owner = self.registry().conflicts.get(&req.urn).cloned();
        if let Some(owner) = owner {
            if reply_to.is_none() {
                // A tell for a URN another system took goes to that system, as one found
                // stale at dispatch does (`not_ours`): an accepted tell is never dropped.
                let shared = self.clone();
                let remaining = Duration::from_millis(remaining_ms as u64);
                return Ok(Box::pin(async move {
                    let (reply, requeue) =
                        shared.not_ours(&req, Some(owner), &None, remaining).await;
                    Completion {
                        id,
                        reply,
                        requeue,
                        _permit: Some(permit),
                    }
                }));
            }
            return reject(
                Status::NotOwner,
                format!("URN {} is served by system {owner}", req.urn),
            );
        }
        let target = match self.system.lookup(&req.urn) {
            Ok(t) => t,
            Err(_) => return reject(Status::UnknownUrn, format!("no actor with URN {}", req.urn)),
        };
        let Some(rm) = target.remote_message(&req.message) else {
            return reject(
                Status::UnknownMessage,
                format!("actor {} does not expose message {}", req.urn, req.message),
            );
        };
        let mut decoded = None;
        if let Err(e) = codec.decode_with(&req.body, &mut |de| {
            decoded = Some(rm.decode(de)?);
            Ok(())
        }) {
            return reject(
                Status::CodecError,
                format!("cannot decode {} for {}: {e}", req.message, req.urn),
            );
        }
        let Some(msg) = decoded else {
            return reject(Status::CodecError, "the codec produced no message".into());
        };
        let timeout = Duration::from_millis(remaining_ms as u64);
        let room_wait = self.config.full_mailbox_wait.min(timeout);
        let shared = self.clone();
        Ok(Box::pin(async move {
            // Never hand a request to the actor without a lease surely still held: after a
            // pause (SIGSTOP, a long GC, a frozen VM) another system may serve the URN now.
            if !shared.lease_fresh() {
                shared.recheck_lease().await;
                let owner = shared.registry().conflicts.get(&req.urn).cloned();
                if owner.is_some() || !shared.lease_fresh() {
                    let (reply, requeue) = shared.not_ours(&req, owner, &reply_to, timeout).await;
                    return Completion {
                        id,
                        reply,
                        requeue,
                        _permit: Some(permit),
                    };
                }
            }
            let request = target
                .erased(rm.name(), rm.type_id(), msg)
                .priority(req.priority)
                .room_timeout(room_wait)
                .trace(req.trace);
            let reply = match &reply_to {
                Some((key, id)) => {
                    // At the deadline the ask is dropped, and the actor never starts a
                    // request still queued then (nobody waits for it).
                    let result = request.timeout(timeout).ask().await;
                    let (status, payload) = shared.outcome(rm, &*codec, &target, result);
                    let since_entry = shared.redis_now_ms().saturating_sub(sent_ms).max(0);
                    crate::metrics::answered(
                        &shared.system_id,
                        status.label(),
                        Duration::from_millis(since_entry as u64),
                    );
                    Some((
                        key.clone(),
                        Bytes::from(protocol::encode_reply(*id, status, &payload)),
                    ))
                }
                None => {
                    // A tell is acknowledged once its handler has finished (or it was
                    // refused), so a crash before that leaves it in Redis for the next proxy.
                    if let Err(e) = request.tell().await {
                        tracing::warn!(urn = %req.urn, message = %req.message, error = %e, "a told message was refused");
                    }
                    None
                }
            };
            Completion {
                id,
                reply,
                requeue: false,
                _permit: Some(permit),
            }
        }))
    }

    /// A request for a URN this proxy cannot confirm it still serves. An ask is answered
    /// `NotOwner` (its client resolves the URN again); a tell goes to the URN's new owner's
    /// stream, or stays pending here when the owner is not known yet. Returns the reply and
    /// whether to leave the request pending.
    async fn not_ours(
        &self,
        req: &Request,
        owner: Option<String>,
        reply_to: &Option<(String, u64)>,
        remaining: Duration,
    ) -> (Option<(String, Bytes)>, bool) {
        if let Some((key, id)) = reply_to {
            let text = match &owner {
                Some(owner) => format!("URN {} is served by system {owner}", req.urn),
                None => format!("this proxy cannot confirm it still serves {}", req.urn),
            };
            tracing::info!(urn = %req.urn, "{text}");
            let frame = protocol::encode_reply(*id, Status::NotOwner, text.as_bytes());
            return (Some((key.clone(), Bytes::from(frame))), false);
        }
        let Some(owner) = owner else {
            return (None, true);
        };
        let mut args = vec![
            owned(self.keys.requests(&owner)),
            s("NOMKSTREAM"),
            s("*"),
            s(field::VERSION),
            s(PROTOCOL_VERSION),
            s(field::URN),
            owned(req.urn.clone()),
            s(field::MESSAGE),
            owned(req.message.clone()),
            s(field::TTL),
            Value::Integer(remaining.as_millis().max(1) as i64),
            s(field::CODEC),
            bytes(req.codec.clone()),
            s(field::BODY),
            bytes(req.body.clone()),
        ];
        if let Some(trace) = req.trace {
            args.extend([s(field::TRACEPARENT), owned(trace.to_string())]);
        }
        let forwarded = conn::call(&self.cmd, keyed("XADD"), args).await;
        match forwarded {
            Ok(Value::Null) => {
                tracing::warn!(urn = %req.urn, %owner, "dropped a told message: its URN's new owner has no request stream");
                (None, false)
            }
            Ok(_) => {
                tracing::info!(urn = %req.urn, %owner, "forwarded a told message to the URN's new owner");
                (None, false)
            }
            Err(e) => {
                tracing::warn!(urn = %req.urn, error = %e, "could not forward a told message; it stays pending");
                (None, true)
            }
        }
    }

    /// The status and payload answering an ask's result.
    fn outcome(
        &self,
        rm: &RemoteMessage,
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
            Err(AskError::ActorStopped) => {
                (Status::ActorStopped, format!("{urn} stopped").into_bytes())
            }
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
        }
    }
}
