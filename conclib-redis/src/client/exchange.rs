//! An ask's walk through Redis: encode, resolve, write its request, wait for its reply frame
//! (`deliver` hands frames from the reply reader to the asks waiting for them).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use conclib_codec::encode_value;
use conclib_core::trace::TraceContext;
use conclib_core::{Message, Priority};
use fred::bytes::Bytes;
use fred::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::departed;
use super::handle::ProxyClient;
use super::outbox;
use super::queued::{Done, Outgoing};
use super::resolved::Resolved;
use super::shared::Shared;
use super::waiter::Waiter;
use crate::conn::{bytes, owned, s, shared_bytes};
use crate::error::ProxyError;
use crate::protocol::{self, PROTOCOL_VERSION, Status, field};

/// A message's wire name and its fields' version ([`Message::version`]), as a request
/// carries them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Named {
    pub(super) name: &'static str,
    pub(super) version: u32,
}

impl Named {
    /// Message `M`'s.
    pub(super) fn of<M: Message>() -> Named {
        Named {
            name: M::name(),
            version: M::version(),
        }
    }
}

impl ProxyClient {
    pub(super) fn encode<M: Serialize, E>(&self, msg: &M) -> Result<Vec<u8>, ProxyError<E>> {
        let body = encode_value(&*self.shared.config.codec, msg)
            .map_err(|e| ProxyError::Codec(e.to_string()))?;
        if body.len() > self.shared.config.max_payload {
            return Err(ProxyError::TooLarge(format!(
                "the message is {} bytes, the limit is {}",
                body.len(),
                self.shared.config.max_payload
            )));
        }
        Ok(body)
    }

    /// Sends an encoded ask and waits for its reply frame's status and payload.
    pub(super) async fn ask_raw(
        &self,
        urn: &str,
        name: Named,
        body: Vec<u8>,
        timeout: Duration,
        priority: Priority,
    ) -> Result<(Status, Bytes), ProxyError> {
        let _in_flight = crate::metrics::InFlight::start();
        let started = Instant::now();
        let span = tracing::debug_span!(
            "conclib.ask",
            urn,
            message = name.name,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        // The span's own OpenTelemetry position where one is exported (feature `otel`): the
        // actor's `handle` span is then a child of this very span.
        let trace = TraceContext::next_hop_from(&span);
        span.record("trace_id", tracing::field::display(trace.trace_id()));
        span.record("span_id", tracing::field::display(trace.span_id()));
        let result = match self
            .exchange(urn, name, body, timeout, priority, started, trace)
            .instrument(span)
            .await
        {
            // Its system shut down meanwhile (it restarts or is being replaced): retryable.
            // Boxed: a rare path, which every ask's future would otherwise hold.
            Err(e @ ProxyError::Timeout(_)) => {
                Err(Box::pin(departed::unavailable_if_departed(&self.shared, e, urn)).await)
            }
            other => other,
        };
        crate::metrics::client_ask(
            match &result {
                Ok((status, _)) => status.label(),
                Err(e) => crate::metrics::error_label(e),
            },
            started.elapsed(),
        );
        result
    }

    /// Resolves, sends and waits for the reply (once more after a stale route).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange(
        &self,
        urn: &str,
        name: Named,
        body: Vec<u8>,
        timeout: Duration,
        priority: Priority,
        started: Instant,
        trace: TraceContext,
    ) -> Result<(Status, Bytes), ProxyError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(ProxyError::Closed);
        }
        // A URN this client holds full is refused here, as its proxy would (`holds.rs`).
        let _counted = match shared.holds.admit(urn) {
            Ok(counted) => counted,
            Err(refusal) => {
                crate::metrics::refused_at_send();
                return Ok((Status::Overloaded, Bytes::from(refusal.payload())));
            }
        };
        let deadline = started + timeout;
        let disconnects = shared.disconnects.load(Ordering::Acquire);
        let body = Bytes::from(body);
        let mut route = shared
            .resolve(urn, deadline, false)
            .await
            .map_err(|e| shared.at_deadline(e, timeout, disconnects))?;
        let mut retried = false;
        loop {
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    id,
                    Waiter {
                        reply: tx,
                        written: false,
                    },
                );
            let pending = PendingGuard { shared, id };
            let fields = shared.request_fields(id, urn, name, true, priority, &trace, &body);
            // The writer marks the ask written once Redis took its request, or ends it
            // through its reply if the write fails: it waits for one thing, its reply.
            let fast = priority == Priority::High || shared.config.asks_overtake_tells;
            let key = route.key_for(fast).clone();
            outbox::queue(
                shared,
                &key,
                Outgoing {
                    fields,
                    size: body.len(),
                    deadline,
                    // The TTL counts from here: it ends with the ask.
                    expires: deadline,
                    done: Done::Ask(id),
                },
            );
            let frame = match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(Ok(frame))) => frame,
                // The stream is gone (NOMKSTREAM, or the script found no stream), so is its
                // system, unless Redis lost its data moments ago: then resolve and send
                // again.
                Ok(Ok(Err(ProxyError::UnknownUrn { .. }))) => {
                    drop(pending);
                    // A group without a fast lane (older members): its stream, then.
                    if key != route.requests_key {
                        shared.no_fast_lane(urn);
                        route.fast_key = None;
                        continue;
                    }
                    route = shared
                        .resolve_again(urn, &route.system, deadline)
                        .await
                        .map_err(|e| shared.at_deadline(e, timeout, disconnects))?;
                    continue;
                }
                // The write failed, or Redis restarted without the request (`Shared::restarted`,
                // `Shared::writes_done`).
                Ok(Ok(Err(e))) => return Err(shared.at_deadline(e, timeout, disconnects)),
                Ok(Err(_)) => return Err(ProxyError::Closed),
                Err(_) => return Err(shared.timed_out(timeout, disconnects)),
            };
            drop(pending);
            let (status, parts) = reply_parts(&frame)?;
            let payload_at = parts.payload_at;
            // Passed on by the system the route named to the one holding the URN now, which
            // named itself: the next asks go there.
            if let Some(holder) = parts.holder {
                shared.learn_route(urn, &route.system, holder);
            }
            if status == Status::Overloaded
                && let Some(refusal) = crate::overload::Refusal::parse(&frame[payload_at..])
            {
                shared.holds.refused(urn, &refusal);
            }
            // The URN moved to another system since we resolved it: resolve again, once.
            if matches!(status, Status::NotOwner | Status::UnknownUrn) && !retried {
                retried = true;
                shared.forget(urn);
                match shared.resolve(urn, deadline, true).await {
                    Ok(fresh) if fresh.system != route.system => {
                        route = fresh;
                        continue;
                    }
                    // Its system departed and no successor came within the deadline:
                    // restarting, not unknown.
                    Err(e @ ProxyError::Unavailable(_)) => {
                        return Err(shared.at_deadline(e, timeout, disconnects));
                    }
                    _ => {}
                }
            }
            let payload = frame.slice(payload_at..);
            return Ok((status, payload));
        }
    }
}

/// A reply frame as an ask reads it: its status and its parts. A frame shorter than its
/// header, or than the route hint its status byte announces, or a status that no proxy
/// sends, is a protocol error.
pub(crate) fn reply_parts(frame: &[u8]) -> Result<(Status, protocol::ReplyParts<'_>), ProxyError> {
    let byte = *frame
        .get(protocol::REPLY_HEADER_LEN - 1)
        .ok_or_else(|| ProxyError::Protocol("short reply frame".into()))?;
    // `Alive` belongs to the process actors' link: no proxy answers it.
    let status = Status::from_byte(byte & !protocol::HOLDER_FLAG)
        .filter(|s| *s != Status::Alive)
        .ok_or_else(|| ProxyError::Protocol(format!("unknown reply status {byte}")))?;
    let parts = protocol::split_reply(frame)
        .ok_or_else(|| ProxyError::Protocol("a reply frame cut short in its route hint".into()))?;
    Ok((status, parts))
}

struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Shared {
    /// Options of an ask's commands: fail at once while disconnected, and write a command
    /// once at most (a connection lost after the write fails it at once, instead of keeping
    /// it for a rewrite after reconnecting). `timeout` is how long the caller waits for it.
    pub(super) fn command_options(timeout: Duration) -> Options {
        Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(timeout.max(Duration::from_millis(1))),
            ..Options::default()
        }
    }

    /// A request's stream entry but its TTL (added as it is written); `ask`: with this
    /// client's reply list.
    ///
    /// Its own text (the id, the URN, the traceparent) is written into one buffer that the
    /// three fields share, and the reply list's name is shared by every ask: the fields,
    /// and the copy of a batch's arguments kept for a retry (`outbox::send_batch`), take
    /// references to them. (Each in a string of its own took seven allocations a request:
    /// three strings, a copy of the traceparent, and four shared headers for the copy.)
    #[allow(clippy::too_many_arguments)]
    fn request_fields(
        &self,
        id: u64,
        urn: &str,
        name: Named,
        ask: bool,
        priority: Priority,
        trace: &TraceContext,
        body: &Bytes,
    ) -> Vec<(&'static str, Value)> {
        use std::io::Write;
        // A decimal u64 is at most 20 digits, a traceparent 55 characters.
        let mut text = Vec::with_capacity(20 + urn.len() + 55);
        let _ = write!(text, "{id}");
        let id_end = text.len();
        text.extend_from_slice(urn.as_bytes());
        let urn_end = text.len();
        let _ = write!(text, "{trace}");
        let text = shared_bytes(text);
        let mut fields: Vec<(&'static str, Value)> = Vec::with_capacity(10);
        fields.push((field::VERSION, s(PROTOCOL_VERSION)));
        fields.push((field::ID, bytes(text.slice(..id_end))));
        fields.push((field::URN, bytes(text.slice(id_end..urn_end))));
        fields.push((field::MESSAGE, s(name.name)));
        if name.version != 1 {
            // Version 1 goes without the field: what every request carried before versions.
            fields.push((field::MESSAGE_VERSION, owned(name.version.to_string())));
        }
        if ask {
            fields.push((field::REPLY, bytes(self.reply_field.clone())));
            // Its answer names the system holding the URN when another passed it on.
            fields.push((field::ROUTE_HINT, s("1")));
        }
        if priority == Priority::High {
            fields.push((field::PRIORITY, s("high")));
        }
        fields.push((field::TRACEPARENT, bytes(text.slice(urn_end..))));
        if let Some(system) = &self.config.system_id {
            // Who asks, for a pattern placed on the asking system (`Placement::PreferAsker`).
            fields.push((field::FROM, owned(system.clone())));
        }
        fields.push((field::CODEC, s(self.config.codec.name())));
        fields.push((field::BODY, bytes(body.clone())));
        fields
    }

    /// Appends a tell's request to the serving system's stream (through the stream's outbox:
    /// requests queued together leave together), and waits until Redis took it.
    /// Returns the count of [`losses`](Self::losses) read just before the write.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_tell(
        self: &Arc<Self>,
        route: &Resolved,
        urn: &str,
        name: Named,
        ttl: Duration,
        priority: Priority,
        body: Bytes,
        deadline: Instant,
        trace: TraceContext,
    ) -> Result<u64, ProxyError> {
        // The TTL counts from here, through any retry.
        let expires = Instant::now() + ttl;
        let mut route = route.clone();
        loop {
            // A tell's id is 0: nobody waits for its reply.
            let fields = self.request_fields(0, urn, name, false, priority, &trace, &body);
            let (tx, rx) = oneshot::channel();
            let request = Outgoing {
                fields,
                size: body.len(),
                deadline,
                expires,
                done: Done::Tell(tx),
            };
            let key = route.key_for(priority == Priority::High).clone();
            outbox::queue(self, &key, request);
            let sent = match tokio::time::timeout_at(deadline.into(), rx).await {
                Ok(Ok(sent)) => sent,
                Ok(Err(_)) => Err(ProxyError::Closed),
                Err(_) => Err(ProxyError::Timeout(Duration::ZERO)),
            };
            if !matches!(sent, Err(ProxyError::UnknownUrn { .. })) {
                return sent;
            }
            // A group without a fast lane (older members): its stream, then.
            if key != route.requests_key {
                self.no_fast_lane(urn);
                route.fast_key = None;
                continue;
            }
            route = self.resolve_again(urn, &route.system, deadline).await?;
        }
    }

    /// A request found the stream of system `gone` missing (NOMKSTREAM, or the script found
    /// no stream): the URN's route now, or why not. Looked up first: a drained member
    /// handed its URNs to others before closing its stream (`proxy/drain.rs`), so a route
    /// cached before that leads elsewhere now. Still `gone`'s (or nobody's): that system is
    /// gone, and the URN is unknown, unless the system departed (its successor is waited
    /// for) or Redis lost its data moments ago. A pattern's URN whose key still names that
    /// system (one handed to a member that drained before it was asked there) goes to the
    /// pattern's group, not cached: its members free such a key and activate the URN
    /// (`proxy/scale/takeover.rs`, `free_urn_of_gone`).
    async fn resolve_again(
        &self,
        urn: &str,
        gone: &str,
        deadline: Instant,
    ) -> Result<Resolved, ProxyError> {
        self.forget(urn);
        // Boxed: rare, and a large future (see `resolve`).
        Box::pin(async {
            let fresh = self.resolve(urn, deadline, true).await?;
            if &*fresh.system != gone {
                return Ok(fresh);
            }
            self.forget(urn);
            // A departed system's URN is looked up until its successor or the deadline.
            if departed::departed(self, self.connection()?, urn, deadline).await? {
                departed::wait_for_successor(urn, deadline).await?;
            } else if let Some(group) = self.group_route(urn, deadline).await? {
                return Ok(group);
            } else {
                self.wait_if_redis_lost_it(urn, deadline).await?;
            }
            self.resolve(urn, deadline, true).await
        })
        .await
    }

    /// An error met before the reply: a command timeout becomes the ask's timeout, or
    /// `Unavailable` when the connection is down.
    pub(super) fn at_deadline(
        &self,
        e: ProxyError,
        timeout: Duration,
        disconnects: u64,
    ) -> ProxyError {
        match e {
            ProxyError::Timeout(_) => self.timed_out(timeout, disconnects),
            other => other,
        }
    }

    pub(super) fn timed_out(&self, timeout: Duration, disconnects: u64) -> ProxyError {
        if !self.pool.is_connected() || self.disconnects.load(Ordering::Acquire) != disconnects {
            ProxyError::Unavailable(format!(
                "the connection to Redis was lost; no answer within {timeout:?}"
            ))
        } else {
            ProxyError::Timeout(timeout)
        }
    }

    /// Hands each reply frame to the ask waiting for it.
    pub(super) fn deliver(&self, frames: Vec<Value>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for frame in frames {
            let Some(frame) = frame.into_bytes() else {
                continue;
            };
            // By its id alone: the ask judges the rest (`reply_parts`), so that a frame it
            // cannot read fails it rather than leaving it to its deadline.
            let Some(id) = protocol::reply_id(&frame) else {
                tracing::warn!(len = frame.len(), "dropped a malformed reply frame");
                continue;
            };
            // No waiter: the ask timed out or was dropped; the reply is discarded.
            if let Some(waiter) = pending.remove(&id) {
                let _ = waiter.reply.send(Ok(frame));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use conclib_core::Priority;

    use super::super::handle::ProxyClient;
    use super::super::shared::Shared;
    use super::Named;
    use crate::future_size::{future_size, never};

    /// What an ask makes of a reply frame's status byte: a route hint's flag is not part of
    /// the status; a hint cut short, or a status no proxy sends (flag or not), is a protocol
    /// error naming the byte.
    #[test]
    fn a_reply_status_reads_past_the_route_hint_flag_and_refuses_what_is_broken() {
        use crate::error::ProxyError;
        use crate::protocol::{HOLDER_FLAG, Status, encode_reply, encode_reply_with_holder};

        let status = |frame: &[u8]| crate::client::exchange::reply_parts(frame).map(|(s, _)| s);
        assert_eq!(
            status(&encode_reply(1, Status::NotOwner, b"")),
            Ok(Status::NotOwner)
        );
        let hinted = encode_reply_with_holder(1, Status::Ok, "s2", b"x");
        assert_eq!(status(&hinted), Ok(Status::Ok));
        let protocol = |frame: &[u8]| match status(frame) {
            Err(ProxyError::Protocol(text)) => text,
            other => panic!("{other:?}"),
        };
        assert!(protocol(&hinted[..11]).contains("cut short in its route hint"));
        assert!(protocol(&hinted[..9]).contains("cut short in its route hint"));
        assert!(protocol(&hinted[..8]).contains("short reply frame"));
        let mut unknown = 1u64.to_be_bytes().to_vec();
        unknown.extend([200, 1, b'x']);
        assert_eq!(protocol(&unknown), "unknown reply status 200");
        unknown[8] = 99;
        assert_eq!(protocol(&unknown), "unknown reply status 99");
        unknown[8] = HOLDER_FLAG | Status::Alive as u8;
        assert!(protocol(&unknown).starts_with("unknown reply status"));
    }

    /// An ask's future holds what its common path needs: a URN lookup in Redis and the wait
    /// for a restarted Redis are boxed (6,952 bytes an ask before, every byte copied as the
    /// future was built and moved; 13% of the client's CPU was `memmove` at 64 asks in
    /// flight).
    #[test]
    fn an_asks_future_leaves_its_rare_paths_boxed() {
        let ask = future_size(|| {
            never::<&ProxyClient>().ask_raw(
                "u",
                Named {
                    name: "m",
                    version: 1,
                },
                Vec::new(),
                Duration::ZERO,
                Priority::Normal,
            )
        });
        let resolve = future_size(|| never::<&Arc<Shared>>().resolve("u", Instant::now(), false));
        assert!(ask <= 2048, "an ask's future is {ask} bytes");
        assert!(resolve <= 128, "a resolve's future is {resolve} bytes");
    }
}
