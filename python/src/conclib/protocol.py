"""The wire protocol, version 1: key names, request fields, reply frames, status codes.

The reference is the crate documentation of ``conclib-redis`` ("Protocol (version 1)") and
``conclib-redis/src/protocol.rs``; this module follows it byte for byte.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Final

__all__ = [
    "DEFAULT_NAMESPACE",
    "GROUP_MARK",
    "MAX_URN_LEN",
    "PROTOCOL_VERSION",
    "REPLY_HEADER_LEN",
    "Keys",
    "Status",
    "check_name",
    "decode_reply",
    "encode_reply",
    "pattern_group",
    "pattern_prefix",
    "request_fields",
    "shared_group",
    "ttl_ms",
    "valid_urn",
]

PROTOCOL_VERSION: Final = "1"
"""The ``v`` field of every request."""

DEFAULT_NAMESPACE: Final = "conclib"
"""The namespace when none is given (as ``ProxyConfig``'s)."""

REPLY_HEADER_LEN: Final = 9
"""A reply frame's header: request id (8 bytes, big-endian) and status (1 byte)."""

HOLDER_FLAG: Final = 0x80
"""Set in a reply frame's status byte when a route hint follows the header: the length of
the id of the system that answered (one byte), then that id. Sent only to an asker whose
request said it reads them (field ``rt`` ``1``), for an ask another system passed on to the
one holding its URN (as the Rust proxy's ``protocol::HOLDER_FLAG``)."""

GROUP_MARK: Final = "~"
"""The first character of a group id: a holder or stream owner starting with it is the
systems serving a URN or a pattern together, not one system (no system id starts with it)."""

MAX_URN_LEN: Final = 256
"""The longest URN, in bytes."""

MAX_TTL_MS: Final = 4_294_967_295


class Status(enum.IntEnum):
    """The status byte of a reply frame."""

    OK = 0
    HANDLER_ERROR = 1
    UNKNOWN_URN = 2
    UNKNOWN_MESSAGE = 3
    PANICKED = 4
    TIMEOUT = 5
    ACTOR_STOPPED = 6
    NO_RESPONSE = 7
    BAD_REQUEST = 8
    CODEC_ERROR = 9
    NOT_OWNER = 10
    TOO_LARGE = 11
    MAILBOX_FULL = 12
    OVERLOADED = 13
    UNSUPPORTED_VERSION = 14

    @property
    def label(self) -> str:
        """Its name in snake case (``ok``, ``handler_error``, ...), as the Rust metrics."""
        return self.name.lower()


class Keys:
    """The Redis keys of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def urn(self, urn: str) -> str:
        """``{ns}:urn:{urn}``: the id of the system serving the URN."""
        return f"{self.namespace}:urn:{urn}"

    def pattern(self, prefix: str) -> str:
        """``{ns}:pattern:{prefix}``: the id of the group of systems that activate actors
        for the URNs ``{prefix}{id}`` (used like a system id)."""
        return f"{self.namespace}:pattern:{prefix}"

    def departed_urn(self, urn: str) -> str:
        """``{ns}:departed:urn:{urn}``: set by a system's graceful shutdown for
        ``departed_grace`` (30 s): the URN's system restarts or is being replaced, so a
        look-up that finds no owner waits for the successor (then ``Unavailable``), not
        ``UnknownUrn``."""
        return f"{self.namespace}:departed:urn:{urn}"

    def moves(self) -> str:
        """``{ns}:moves``, a pub/sub channel (not a key): each hand-over of a URN key to
        another system (a drain's, a rebalance's, a reroute's move) is published there, as
        the target's id, a newline, and the URN key, in the step that hands it. A client with
        a route to the URN cached sends there from then on. Not on a Redis Cluster."""
        return f"{self.namespace}:moves"

    def departed_pattern(self, prefix: str) -> str:
        """``{ns}:departed:pattern:{prefix}``: as :meth:`departed_urn`, for a pattern's URNs."""
        return f"{self.namespace}:departed:pattern:{prefix}"

    def requests(self, system: str) -> str:
        """``{ns}:sys:{system}:req``: the system's request stream."""
        return f"{self.namespace}:sys:{system}:req"

    def fast_requests(self, group: str) -> str:
        """``{ns}:sys:{group}:req:hi``: a group's fast lane, for its high-priority requests."""
        return f"{self.namespace}:sys:{group}:req:hi"

    def lease(self, system: str) -> str:
        """``{ns}:sys:{system}:lease``: the token of the instance serving the system."""
        return f"{self.namespace}:sys:{system}:lease"

    def given(self, system: str) -> str:
        """``{ns}:sys:{system}:given``: the URNs whose keys were given away from the system
        while its lease was absent (a set the takeover and the freeing of a gone holder's
        URN key add to while it exists; a Rust system claims them again after a lapse)."""
        return f"{self.namespace}:sys:{system}:given"

    def member(self, group: str, system: str) -> str:
        """``{ns}:sys:{group}:member:{system}``: the token of the instance through which
        ``system`` is a member of ``group`` (a lease)."""
        return f"{self.namespace}:sys:{group}:member:{system}"

    def placement(self, prefix: str) -> str:
        """``{ns}:placement:{prefix}``: a pattern group's directory (a hash: per member,
        ``"<activations> <live until, ms since the epoch>"``)."""
        return f"{self.namespace}:placement:{prefix}"

    def messages(self, prefix: str) -> str:
        """``{ns}:messages:{prefix}``: a pattern's message directory (a hash: per member, Rust
        or Python, the messages it decodes, ``"Add@2 Get@1"``), which orders the builds of a
        rolling upgrade and says where a message a member does not expose goes (README,
        "Upgrading a running cluster"; ``_host_versions.py``)."""
        return f"{self.namespace}:messages:{prefix}"

    def takeover(self, system: str, prefix: str) -> str:
        """``{ns}:sys:{system}:takeover:{prefix}``: the member taking over the requests that
        ``system`` (gone) left for the URNs of pattern ``prefix`` (a lock with a TTL)."""
        return f"{self.namespace}:sys:{system}:takeover:{prefix}"

    def state(self, urn: str) -> str:
        """``{ns}:state:{urn}``: an activated URN's state (a hash: its fenced store's fields,
        ``owner``, ``data``, ``applied``, and its durable executions' journal,
        ``conclib.durable``), written by its fenced store."""
        return f"{self.namespace}:state:{urn}"

    def reply_prefix(self) -> str:
        """``{ns}:reply:``: every reply list starts with this."""
        return f"{self.namespace}:reply:"

    def reply(self, client: str) -> str:
        """``{ns}:reply:{client}``: a client's reply list."""
        return f"{self.namespace}:reply:{client}"


def encode_reply(request_id: int, status: int, payload: bytes) -> bytes:
    """A reply frame: id (u64 big-endian), status (one byte), payload."""
    return request_id.to_bytes(8, "big") + bytes([status]) + payload


def encode_reply_with_holder(request_id: int, status: int, holder: str, payload: bytes) -> bytes:
    """A reply frame with a route hint naming ``holder`` (``HOLDER_FLAG``); a plain frame
    when ``holder`` is longer than 255 bytes."""
    name = holder.encode()
    if len(name) > 255:
        return encode_reply(request_id, status, payload)
    return request_id.to_bytes(8, "big") + bytes([status | HOLDER_FLAG, len(name)]) + name + payload


def split_reply(frame: bytes) -> tuple[int, int, bytes | None, int] | None:
    """Id, status byte (without ``HOLDER_FLAG``), the route hint's holder (``None``: none) and
    where the payload starts; ``None`` if shorter than the header, or than the hint its
    status byte announces."""
    if len(frame) < REPLY_HEADER_LEN:
        return None
    status = frame[8]
    if not status & HOLDER_FLAG:
        return int.from_bytes(frame[:8], "big"), status, None, REPLY_HEADER_LEN
    if len(frame) <= REPLY_HEADER_LEN:
        return None
    payload_at = REPLY_HEADER_LEN + 1 + frame[REPLY_HEADER_LEN]
    if len(frame) < payload_at:
        return None
    return int.from_bytes(frame[:8], "big"), status & ~HOLDER_FLAG, frame[REPLY_HEADER_LEN + 1 : payload_at], payload_at


def decode_reply(frame: bytes) -> tuple[int, int, bytes] | None:
    """Id, status byte and payload of a frame (a route hint left out: ``split_reply``);
    ``None`` if shorter than the header."""
    parts = split_reply(frame)
    if parts is None:
        return None
    request_id, status, _, payload_at = parts
    return request_id, status, frame[payload_at:]


def valid_urn(urn: str) -> bool:
    """Whether ``urn`` can name an actor: 1 to 256 bytes, no whitespace or control
    characters (as ``conclib_core::validate_urn``)."""
    n = len(urn.encode("utf-8", "surrogatepass"))
    if n == 0 or n > MAX_URN_LEN:
        return False
    return not any(c.isspace() or not c.isprintable() for c in urn)


def pattern_prefix(urn: str) -> str | None:
    """The pattern prefix looked up when ``{ns}:urn:{urn}`` does not exist: the URN up to and
    including its last ``:``, if at least one character follows it (``user:42`` ->
    ``user:``, ``a:b:c`` -> ``a:b:``); ``None`` for a URN without ``:`` or ending in one."""
    colon = urn.rfind(":")
    if colon < 0 or colon + 1 >= len(urn):
        return None
    return urn[: colon + 1]


def shared_group(urn: str) -> str:
    """The group id of the systems serving ``urn`` together: ``~{urn}`` (as the Rust
    ``protocol::shared_group``)."""
    return f"{GROUP_MARK}{urn}"


def text(v: Any) -> str:
    """A value Redis answered as text: bytes decoded as UTF-8 (what is not valid replaced),
    anything else through ``str``."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def wake_up(group: str) -> list[str]:
    """The fields of a wake-up entry for pattern group ``group`` (Rust's
    ``protocol::wake_up_fields``): appended to a member's stream when a request of the group
    was placed on it, and, followed by ``movedin`` and a URN, when that URN was handed to it
    (a Python member reads either as a wake-up, ``_host_request.Placed``)."""
    return ["v", PROTOCOL_VERSION, "placed", group]


def pattern_group(prefix: str) -> str:
    """The group id of the systems serving the pattern ``{prefix}{id}``: ``~{prefix}*``."""
    return f"{GROUP_MARK}{prefix}*"


def check_name(what: str, name: str) -> str | None:
    """Why ``name`` cannot be a namespace or system id (``None`` if it can): 1 to 128 bytes,
    no whitespace, control characters or braces."""
    if not name or len(name.encode()) > 128:
        return f"the {what} must be 1 to 128 bytes long, got {name!r}"
    for c in name:
        if c.isspace() or not c.isprintable() or c in "{}":
            return f"the {what} {name!r} contains {c!r}: no whitespace, control characters or braces"
    return None


def ttl_ms(seconds: float) -> int:
    """A ``ttl`` field: milliseconds, rounded up, clamped to 1..4294967295."""
    if seconds != seconds:  # NaN
        return 1
    return max(1, min(MAX_TTL_MS, math.ceil(seconds * 1000)))


def request_fields(
    *,
    request_id: int,
    urn: str,
    message: str,
    ttl: int,
    reply: str | None,
    priority_high: bool,
    traceparent: str | None,
    codec: str,
    body: bytes,
) -> list[bytes | str | int]:
    """The field/value list of one request entry, in the Rust client's order."""
    fields: list[bytes | str | int] = [
        "v", PROTOCOL_VERSION,
        "id", str(request_id),
        "urn", urn,
        "msg", message,
        "ttl", str(ttl),
    ]
    if reply is not None:
        # ``rt 1``: its answer names the system holding the URN when another passed it on.
        fields += ["reply", reply, "rt", "1"]
    if priority_high:
        fields += ["prio", "high"]
    if traceparent:
        fields += ["tp", traceparent]
    fields += ["codec", codec, "body", body]
    return fields
