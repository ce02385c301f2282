//! A request as read from a stream: its fields as read ([`RawEnvelope`]) and validated
//! ([`Request`]). Plain data and checks: the read loop, the scale-out's exactly-once records
//! and the fuzz targets use it without the loop.

use fred::bytes::Bytes;
use fred::prelude::*;

use conclib_core::Priority;
use conclib_core::trace::TraceContext;

use crate::conn::as_bytes;
use crate::protocol::{PROTOCOL_VERSION, field};

/// A request's fields as read, before validation.
#[derive(Default)]
pub(in crate::proxy) struct RawEnvelope {
    version: Option<Value>,
    id: Option<Value>,
    urn: Option<Value>,
    message: Option<Value>,
    message_version: Option<Value>,
    ttl: Option<Value>,
    reply: Option<Value>,
    codec: Option<Value>,
    body: Option<Value>,
    priority: Option<Value>,
    trace: Option<Value>,
    from: Option<Value>,
    placed: Option<Value>,
    joined: Option<Value>,
    moved_in: Option<Value>,
    moved: Option<Value>,
    first: Option<Value>,
    route_hint: Option<Value>,
    bad_shape: bool,
}

/// A validated request.
pub(in crate::proxy) struct Request {
    pub(in crate::proxy) urn: String,
    pub(in crate::proxy) message: String,
    /// `mv`: the version of the message's fields, 1 when absent.
    pub(in crate::proxy) version: u32,
    pub(in crate::proxy) ttl_ms: i64,
    pub(in crate::proxy) codec: Bytes,
    pub(in crate::proxy) body: Bytes,
    /// `prio high`: the actor's high-priority lane. Any other value: the normal lane.
    pub(in crate::proxy) priority: Priority,
    /// `tp`: the W3C `traceparent` of the asking side, if valid (an invalid one is ignored).
    pub(in crate::proxy) trace: Option<TraceContext>,
    /// `from`: the id of the asking system, if its client sent it.
    pub(in crate::proxy) asker: Option<String>,
    /// `moved`: the request's first entry (`<entry id> <stream key>`), if a takeover moved
    /// it from a gone system's stream: the request's identity for `applied.rs`.
    pub(in crate::proxy) moved: Option<String>,
    /// `first`: the request's first entry, if a proxy passed it on (`forward.rs`): its
    /// identity for `applied.rs` when no takeover moved it.
    pub(in crate::proxy) first: Option<String>,
    /// `rt`: whether the asker reads route hints, and whether this entry was passed on.
    pub(in crate::proxy) route_hint: RouteHint,
}

impl Request {
    /// The first entry its fields name (`<entry id> <stream key>`): `first` (a proxy passed
    /// it on), else `moved` (a takeover moved it: one adds `moved` to an entry passed on
    /// before, naming the entry it was passed on as). Its identity for `applied.rs`.
    pub(in crate::proxy) fn first_entry(&self) -> Option<&str> {
        self.first.as_deref().or(self.moved.as_deref())
    }
}

/// A request's `rt` field ([`field::ROUTE_HINT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum RouteHint {
    /// Absent (or a value not known): the asker reads no route hints.
    Unread,
    /// `1`: the asker reads them; sent to the system it resolved.
    Read,
    /// `2`: the asker reads them, and a proxy passed the request on to this system: the
    /// answer names it.
    PassedOn,
}

pub(in crate::proxy) fn text(v: &Option<Value>) -> Option<&str> {
    v.as_ref()
        .and_then(as_bytes)
        .and_then(|b| std::str::from_utf8(b).ok())
}

impl RawEnvelope {
    pub(in crate::proxy) fn parse(fields: Vec<Value>) -> RawEnvelope {
        let mut env = RawEnvelope {
            bad_shape: !fields.len().is_multiple_of(2),
            ..RawEnvelope::default()
        };
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let slot = match as_bytes(&k) {
                Some(b) if b == field::VERSION.as_bytes() => &mut env.version,
                Some(b) if b == field::ID.as_bytes() => &mut env.id,
                Some(b) if b == field::URN.as_bytes() => &mut env.urn,
                Some(b) if b == field::MESSAGE.as_bytes() => &mut env.message,
                Some(b) if b == field::TTL.as_bytes() => &mut env.ttl,
                Some(b) if b == field::MESSAGE_VERSION.as_bytes() => &mut env.message_version,
                Some(b) if b == field::REPLY.as_bytes() => &mut env.reply,
                Some(b) if b == field::CODEC.as_bytes() => &mut env.codec,
                Some(b) if b == field::BODY.as_bytes() => &mut env.body,
                Some(b) if b == field::PRIORITY.as_bytes() => &mut env.priority,
                Some(b) if b == field::TRACEPARENT.as_bytes() => &mut env.trace,
                Some(b) if b == field::FROM.as_bytes() => &mut env.from,
                Some(b) if b == field::PLACED.as_bytes() => &mut env.placed,
                Some(b) if b == field::JOINED.as_bytes() => &mut env.joined,
                Some(b) if b == field::MOVED_IN.as_bytes() => &mut env.moved_in,
                Some(b) if b == field::MOVED.as_bytes() => &mut env.moved,
                Some(b) if b == field::FIRST.as_bytes() => &mut env.first,
                Some(b) if b == field::ROUTE_HINT.as_bytes() => &mut env.route_hint,
                _ => continue,
            };
            *slot = Some(v);
        }
        env
    }

    /// Where to answer: `Some(None)` for a tell (no `reply` field), `Some(Some(..))` for an
    /// ask with a usable reply list and id, `None` when a reply is wanted but cannot be sent.
    pub(in crate::proxy) fn address(&self, prefix: &str) -> Option<Option<(String, u64)>> {
        if self.reply.is_none() {
            return Some(None);
        }
        let key = text(&self.reply)?;
        if !key.starts_with(prefix) || key.len() > prefix.len() + 256 || key.len() == prefix.len() {
            return None;
        }
        let id = text(&self.id)?.parse::<u64>().ok()?;
        Some(Some((key.to_owned(), id)))
    }

    /// The group named by a wake-up entry a member of it appended after placing one of its
    /// requests on this system (`placement.rs`); `None` for a request.
    pub(in crate::proxy) fn placed(&self) -> Option<&str> {
        if self.urn.is_some() {
            return None;
        }
        text(&self.placed)
    }

    /// The prefix of the pattern a member just joined the group of, in a wake-up entry
    /// that member appended (`scale/rebalance.rs`, `announce_join`).
    pub(in crate::proxy) fn joined(&self) -> Option<&str> {
        self.placed().and(text(&self.joined))
    }

    /// The URN of an activation a member just moved to this system, in a wake-up entry
    /// that member's hand-over appended (`serve/urn_keys.rs`, `hand_urn`).
    pub(in crate::proxy) fn moved_in(&self) -> Option<&str> {
        self.placed().and(text(&self.moved_in))
    }

    pub(in crate::proxy) fn validate(self) -> Result<Request, String> {
        if self.bad_shape {
            return Err("the request's fields are not name/value pairs".into());
        }
        match text(&self.version) {
            Some(PROTOCOL_VERSION) => {}
            Some(other) => {
                return Err(format!(
                    "unsupported protocol version {other:?} (this proxy speaks {PROTOCOL_VERSION})"
                ));
            }
            None => return Err("missing field v (protocol version)".into()),
        }
        let urn = text(&self.urn)
            .ok_or("missing or non-UTF-8 field urn")?
            .to_owned();
        let message = text(&self.message)
            .ok_or("missing or non-UTF-8 field msg")?
            .to_owned();
        let version = match &self.message_version {
            None => 1,
            Some(_) => text(&self.message_version)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|v| *v >= 1)
                .ok_or("invalid field mv (the message's version, 1 to 4294967295)")?,
        };
        let ttl_ms = text(&self.ttl)
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|t| (1..=i64::from(u32::MAX)).contains(t))
            .ok_or("missing or invalid field ttl (milliseconds, 1 to 4294967295)")?;
        let codec = self
            .codec
            .and_then(Value::into_bytes)
            .ok_or("missing field codec")?;
        let body = match self.body {
            Some(Value::Null) | None => return Err("missing field body".into()),
            Some(v) => v.into_bytes().ok_or("field body is not a string")?,
        };
        let priority = match text(&self.priority) {
            Some("high") => Priority::High,
            _ => Priority::Normal,
        };
        let trace = text(&self.trace).and_then(TraceContext::parse);
        let asker = text(&self.from)
            .filter(|f| !f.is_empty() && f.len() <= 256)
            .map(str::to_owned);
        let entry_key = |v: &Option<Value>| {
            text(v)
                .filter(|m| !m.is_empty() && m.len() <= 1024)
                .map(str::to_owned)
        };
        let (moved, first) = (entry_key(&self.moved), entry_key(&self.first));
        let route_hint = match text(&self.route_hint) {
            Some("1") => RouteHint::Read,
            Some("2") => RouteHint::PassedOn,
            _ => RouteHint::Unread,
        };
        Ok(Request {
            asker,
            moved,
            first,
            route_hint,
            urn,
            message,
            version,
            ttl_ms,
            codec,
            body,
            priority,
            trace,
        })
    }
}
