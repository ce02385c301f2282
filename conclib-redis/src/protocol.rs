//! The wire protocol: key names, request fields, reply frames and status codes; its Lua
//! scripts in `protocol/scripts.rs`. The crate docs describe it for implementers of other clients.

mod scripts;

pub(crate) use scripts::*;

/// Protocol version carried in each request's `v` field.
pub const PROTOCOL_VERSION: &str = "1";

/// The consumer group (and consumer name) a proxy reads its request stream with.
pub const CONSUMER_GROUP: &str = "proxy";

/// The first character of a group id (no system id may start with it).
pub(crate) const GROUP_MARK: char = '~';

/// The group id of the systems serving `urn` together: `~{urn}`.
pub(crate) fn shared_group(urn: &str) -> String {
    format!("{GROUP_MARK}{urn}")
}

/// The fields of a wake-up entry a proxy appends to a member's own stream (`field::PLACED`
/// naming `group`), with one field more telling a reader that knows it what else to do
/// (`field::JOINED`, `field::MOVED_IN`); a reader that knows only wake-ups (an earlier
/// build, a Python host) reads its pending list again and nothing more.
pub(crate) fn wake_up_fields(
    group: &str,
    what: &'static str,
    value: &str,
) -> [fred::prelude::Value; 6] {
    use fred::prelude::Value;
    [
        Value::from_static_str(field::VERSION),
        Value::from_static_str(PROTOCOL_VERSION),
        Value::from_static_str(field::PLACED),
        Value::from(group),
        Value::from_static_str(what),
        Value::from(value),
    ]
}

/// The group id of the systems activating URNs `{prefix}{id}`: `~{prefix}*`.
pub(crate) fn pattern_group(prefix: &str) -> String {
    format!("{GROUP_MARK}{prefix}*")
}

/// The pattern prefix a client looks up when `{ns}:urn:{urn}` does not exist: the URN up to
/// and including its last `:`, if at least one character follows it.
pub fn pattern_prefix(urn: &str) -> Option<&str> {
    let colon = urn.rfind(':')?;
    (colon + 1 < urn.len()).then(|| &urn[..=colon])
}

/// Request stream field names.
pub(crate) mod field {
    pub const VERSION: &str = "v";
    pub const ID: &str = "id";
    pub const URN: &str = "urn";
    pub const MESSAGE: &str = "msg";
    /// Optional: the version of the message's fields ([`Message::version`]), a decimal
    /// number; absent means 1. A member that cannot decode that version passes the request
    /// to one that can, or answers `UnsupportedVersion` (`proxy/serve/versions.rs`).
    ///
    /// [`Message::version`]: conclib_core::Message::version
    pub const MESSAGE_VERSION: &str = "mv";
    pub const TTL: &str = "ttl";
    pub const REPLY: &str = "reply";
    pub const CODEC: &str = "codec";
    pub const BODY: &str = "body";
    /// Optional: `high` sends the request in the actor's high-priority lane.
    pub const PRIORITY: &str = "prio";
    /// Optional: the asking side's W3C `traceparent`; the actor's handler span joins that
    /// trace. Ignored when malformed.
    pub const TRACEPARENT: &str = "tp";
    /// Optional: the id of the asking system (a client whose [`ProxyConfig::system_id`] is
    /// set sends it), for [`Placement::PreferAsker`]. Ignored by everything else.
    ///
    /// [`ProxyConfig::system_id`]: crate::ProxyConfig::system_id
    /// [`Placement::PreferAsker`]: crate::scale::Placement::PreferAsker
    pub const FROM: &str = "from";
    /// Only in a proxy's own entries (never a client's request): a member of the pattern
    /// group named here placed one of the group's requests on this system; its member
    /// reads its pending list (`PLACE_SCRIPT`).
    pub const PLACED: &str = "placed";
    /// Only in a proxy's own entries, beside [`PLACED`]: a member joined the group of the
    /// pattern whose prefix this names; a member that rebalances it looks at its
    /// directory (`proxy/scale/rebalance.rs`).
    pub const JOINED: &str = "joined";
    /// Only in a proxy's own entries, beside [`PLACED`]: the URN of an activation another
    /// member just moved here (its key handed to this system, its state carried), which
    /// this system activates at once rather than at its first request
    /// (`proxy/serve/urn_keys.rs`, `hand_urn`). A reader that knows only wake-ups (an
    /// earlier build, a Python host) reads its pending list again, and activates the URN
    /// at its first request.
    pub const MOVED_IN: &str = "movedin";
    /// Only in a proxy's own entries: the request's first entry, `<entry id> <stream key>`,
    /// when a takeover moved it out of a gone system's stream (`TAKE_OVER_SCRIPT`), so that
    /// an activation that recorded it as applied under its first entry knows it again.
    pub const MOVED: &str = "moved";
    /// Only in a proxy's own entries: the request's first entry, `<entry id> <stream key>`,
    /// when a proxy passed it on to the system holding its URN (`proxy/serve/forward.rs`)
    /// before any takeover moved it, kept by every later move: an activation that recorded
    /// it as applied under its first entry knows it again (a system that saved its effect,
    /// then read it again after a restart and found its URN held elsewhere, passes it on;
    /// the activation there must not handle it twice). A takeover adds [`MOVED`] beside it,
    /// naming the entry it was passed on as: `first` is the request's identity then.
    pub const FIRST: &str = "first";
    /// Optional: route hints. `1` from an asker that reads them: when another system
    /// passes the ask on to the one holding its URN, the answer names that holder
    /// ([`HOLDER_FLAG`](super::HOLDER_FLAG)), and the asker sends there from then on
    /// instead of through the system it cached. `2` in the entry a proxy passed on
    /// (`proxy/serve/forward.rs`): the one answering adds its id to the reply frame.
    pub const ROUTE_HINT: &str = "rt";
}

/// The Redis keys of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    pub fn new(ns: &str) -> Self {
        Keys { ns: ns.to_owned() }
    }

    /// `{ns}:urn:{urn}` → the id of the system serving the URN.
    pub fn urn(&self, urn: &str) -> String {
        format!("{}:urn:{urn}", self.ns)
    }

    /// `{ns}:sys:{system}:req` → the system's request stream.
    pub fn requests(&self, system: &str) -> String {
        format!("{}:sys:{system}:req", self.ns)
    }

    /// `{ns}:sys:{group}:req:hi` → a group's fast lane: a second stream, same consumer
    /// group and consumers, for its `Priority::High` requests, which members read before
    /// the group's stream, so that they overtake a backlog there. Only groups have one (a
    /// system's own stream is read as one stream).
    pub fn fast_requests(&self, group: &str) -> String {
        format!("{}:sys:{group}:req:hi", self.ns)
    }

    /// `{ns}:pattern:{prefix}` → the group id of the systems that activate actors for URNs
    /// `{prefix}{id}` (a lease renewed by each of them).
    pub fn pattern(&self, prefix: &str) -> String {
        format!("{}:pattern:{prefix}", self.ns)
    }

    /// `{ns}:departed:urn:{urn}` → the id of the system that served `urn` and shut down
    /// gracefully less than [`departed_grace`](crate::ProxyConfig::departed_grace) ago: a
    /// client that finds no owner reads it as "restarting" (`Unavailable`, not `UnknownUrn`).
    pub fn departed_urn(&self, urn: &str) -> String {
        format!("{}:departed:urn:{urn}", self.ns)
    }

    /// `{ns}:moves`, a pub/sub channel (not a key): each hand-over of a URN key to another
    /// system (a drain's, a rebalance's, a reroute's move) is published there, as the
    /// target's id, a newline, and the URN key (`{ns}:urn:{urn}`), in the step that hands
    /// it. A client with a route to that URN cached sends there from then on, instead of
    /// through the system it cached (which would pass the request on). Not on a Redis
    /// Cluster (nothing is published there). A note is a hint: a client that missed one
    /// (not subscribed, or reconnecting) sends by its cached route, and is passed on.
    pub fn moves(&self) -> String {
        format!("{}:moves", self.ns)
    }

    /// `{ns}:departed:pattern:{prefix}` → as [`departed_urn`](Self::departed_urn), for the
    /// URNs of a pattern whose group a system left at its graceful shutdown.
    pub fn departed_pattern(&self, prefix: &str) -> String {
        format!("{}:departed:pattern:{prefix}", self.ns)
    }

    /// `{ns}:sys:{group}:member:{system}` → the token of the proxy instance through which
    /// `system` is a member of `group` (a lease).
    pub fn member(&self, group: &str, system: &str) -> String {
        format!("{}:sys:{group}:member:{system}", self.ns)
    }

    /// `{ns}:placement:{prefix}` → the directory of a pattern's group (a hash): for each
    /// member system, `"<activations> <live until, ms since the Unix epoch>"`, written by
    /// the member ([`PLACEMENT_REPORT_SCRIPT`]) and read by whoever places a URN.
    pub fn placement(&self, prefix: &str) -> String {
        format!("{}:placement:{prefix}", self.ns)
    }

    /// `{ns}:messages:{prefix}` → the message directory of a pattern's group (a hash): for
    /// each member system, the messages it decodes as `Name@version`, space-separated
    /// (`proxy/scale/versions.rs`).
    pub fn messages(&self, prefix: &str) -> String {
        format!("{}:messages:{prefix}", self.ns)
    }

    /// `{ns}:state:{urn}` → an activated actor's stored state (a hash: `owner`, `data`).
    pub fn state(&self, urn: &str) -> String {
        format!("{}:state:{urn}", self.ns)
    }

    /// `{ns}:sys:{system}:takeover:{prefix}` → the system taking over the requests of
    /// `system` (gone) for the URNs of pattern `prefix` (a lock with a TTL).
    pub fn takeover(&self, system: &str, prefix: &str) -> String {
        format!("{}:sys:{system}:takeover:{prefix}", self.ns)
    }

    /// `{ns}:sys:{system}:lease` → the token of the proxy instance serving the system.
    pub fn lease(&self, system: &str) -> String {
        format!("{}:sys:{system}:lease", self.ns)
    }

    /// `{ns}:sys:{system}:given` → the URNs whose keys were given away from `system` while its
    /// lease was absent (a set, with a mark; [`SYSTEM_LEASE_SCRIPT`]): what the system claims
    /// again after a lapse, besides its keys that may have expired.
    pub fn given(&self, system: &str) -> String {
        format!("{}:sys:{system}:given", self.ns)
    }

    /// `{ns}:snapshot:{system}` → the system's published snapshot (JSON, with a TTL).
    pub fn snapshot(&self, system: &str) -> String {
        format!("{}:snapshot:{system}", self.ns)
    }

    /// `{ns}:snapshots` → sorted set of the system ids publishing snapshots, scored by when
    /// their snapshot expires (ms since the Unix epoch).
    pub fn snapshot_index(&self) -> String {
        format!("{}:snapshots", self.ns)
    }

    /// `{ns}:snapshots:watched` → set (with a short TTL) by every snapshot reader: while it
    /// exists, proxies publish their snapshots in full every interval.
    pub fn watched(&self) -> String {
        format!("{}:snapshots:watched", self.ns)
    }

    /// `{ns}:reply:` — every reply list starts with this.
    pub fn reply_prefix(&self) -> String {
        format!("{}:reply:", self.ns)
    }

    /// `{ns}:reply:{client}` → a client's reply list.
    pub fn reply(&self, client: &str) -> String {
        format!("{}:reply:{client}", self.ns)
    }
}

/// The status byte of a reply frame: one enum for both wires (the Redis protocol and the
/// process actors' link), defined in `conclib-codec`.
pub use conclib_codec::Status;

/// Length of a reply frame's header: request id (8 bytes, big-endian) and status (1 byte).
pub const REPLY_HEADER_LEN: usize = 9;

/// Set in a reply frame's status byte when the system that answered follows the header
/// (a **route hint**, [`encode_reply_with_holder`]): sent only to an asker that said it
/// reads them (request field `rt`), for a request another system passed on to this one.
pub const HOLDER_FLAG: u8 = 0x80;

/// Builds a reply frame: `id` (u64 big-endian), `status` (one byte), payload.
#[must_use]
pub fn encode_reply(id: u64, status: Status, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REPLY_HEADER_LEN + payload.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(status as u8);
    out.extend_from_slice(payload);
    out
}

/// Builds a reply frame with a route hint: `id`, `status` with [`HOLDER_FLAG`] set, the
/// length of `holder` (one byte) and `holder` (the id of the system that answered, which
/// holds the URN now), then the payload. A `holder` longer than 255 bytes goes without:
/// a plain frame ([`encode_reply`]).
#[must_use]
pub fn encode_reply_with_holder(id: u64, status: Status, holder: &str, payload: &[u8]) -> Vec<u8> {
    let Ok(len) = u8::try_from(holder.len()) else {
        return encode_reply(id, status, payload);
    };
    let mut out = Vec::with_capacity(REPLY_HEADER_LEN + 1 + holder.len() + payload.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(status as u8 | HOLDER_FLAG);
    out.push(len);
    out.extend_from_slice(holder.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// A reply frame taken apart ([`split_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyParts<'a> {
    /// The request id.
    pub id: u64,
    /// The status byte, without [`HOLDER_FLAG`].
    pub status: u8,
    /// The route hint: the id of the system that answered, when the frame has one.
    pub holder: Option<&'a [u8]>,
    /// Where the payload starts in the frame.
    pub payload_at: usize,
    /// The payload.
    pub payload: &'a [u8],
}

/// Takes a reply frame apart; `None` if shorter than its header, or than the route hint
/// its status byte announces.
///
/// ```
/// use conclib_redis::protocol::{Status, encode_reply_with_holder, split_reply};
///
/// let frame = encode_reply_with_holder(7, Status::Ok, "s2", b"\x06");
/// let parts = split_reply(&frame).unwrap();
/// assert_eq!((parts.id, parts.status, parts.holder), (7, 0, Some(&b"s2"[..])));
/// assert_eq!(parts.payload, b"\x06");
/// ```
#[must_use]
pub fn split_reply(frame: &[u8]) -> Option<ReplyParts<'_>> {
    let id = reply_id(frame)?;
    let status = frame[8];
    if status & HOLDER_FLAG == 0 {
        return Some(ReplyParts {
            id,
            status,
            holder: None,
            payload_at: REPLY_HEADER_LEN,
            payload: &frame[REPLY_HEADER_LEN..],
        });
    }
    let len = usize::from(*frame.get(REPLY_HEADER_LEN)?);
    let payload_at = REPLY_HEADER_LEN + 1 + len;
    let holder = frame.get(REPLY_HEADER_LEN + 1..payload_at)?;
    Some(ReplyParts {
        id,
        status: status & !HOLDER_FLAG,
        holder: Some(holder),
        payload_at,
        payload: &frame[payload_at..],
    })
}

/// A reply frame's request id; `None` if the frame is shorter than its header. What a
/// reader dispatches a frame by, whatever the rest holds ([`split_reply`] judges that).
#[must_use]
pub fn reply_id(frame: &[u8]) -> Option<u64> {
    if frame.len() < REPLY_HEADER_LEN {
        return None;
    }
    Some(u64::from_be_bytes(frame[..8].try_into().ok()?))
}

/// Splits a reply frame into id, status byte and payload (a route hint left out: see
/// [`split_reply`]); `None` if shorter than its header.
#[must_use]
pub fn decode_reply(frame: &[u8]) -> Option<(u64, u8, &[u8])> {
    split_reply(frame).map(|p| (p.id, p.status, p.payload))
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn reply_frames_roundtrip() {
        let frame = encode_reply(0x0102_0304_0506_0708, Status::HandlerError, b"xyz");
        assert_eq!(&frame[..9], &[1, 2, 3, 4, 5, 6, 7, 8, 1]);
        assert_eq!(
            decode_reply(&frame),
            Some((0x0102_0304_0506_0708, 1, &b"xyz"[..]))
        );
        assert_eq!(decode_reply(&frame[..8]), None);
        // With a route hint: the status without its flag, the payload after the holder.
        let frame = encode_reply_with_holder(9, Status::Ok, "s2", b"ok");
        assert_eq!(frame[8], HOLDER_FLAG);
        assert_eq!(decode_reply(&frame), Some((9, 0, &b"ok"[..])));
        let parts = split_reply(&frame).unwrap();
        assert_eq!((parts.holder, parts.payload_at), (Some(&b"s2"[..]), 12));
        // A hint cut short is a broken frame.
        assert_eq!(split_reply(&frame[..10]), None);
        assert_eq!(split_reply(&frame[..9]), None);
        // A holder too long for its length byte: a plain frame.
        let long = "s".repeat(256);
        assert_eq!(
            encode_reply_with_holder(9, Status::Ok, &long, b"ok"),
            encode_reply(9, Status::Ok, b"ok")
        );
        for b in 0..=255u8 {
            if let Some(s) = Status::from_byte(b) {
                assert_eq!(s as u8, b);
            }
        }
    }

    #[test]
    fn keys() {
        let k = Keys::new("app");
        assert_eq!(k.urn("shop:cart"), "app:urn:shop:cart");
        assert_eq!(k.requests("web"), "app:sys:web:req");
        assert_eq!(k.fast_requests("~g"), "app:sys:~g:req:hi");
        assert_eq!(k.lease("web"), "app:sys:web:lease");
        assert_eq!(k.reply("abc"), "app:reply:abc");
        assert!(k.reply("abc").starts_with(&k.reply_prefix()));
    }
}
