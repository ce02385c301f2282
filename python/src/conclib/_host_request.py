"""One request stream entry, checked as the Rust proxy checks it (``proxy/serve/read.rs``
``RawEnvelope``, ``proxy/serve/dispatch.rs`` ``check``): its fields, its reply address, its
deadline, its size and its codec. What passes is a :class:`Request`; what does not is
answered (:class:`Refused`) or dropped unanswered (:class:`Dropped`)."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import PROTOCOL_VERSION, Status

__all__ = ["Dropped", "Placed", "Refused", "Request", "check"]

# How far ahead of Redis's clock an entry id may be before the host's own reading time
# stands in for it (as the Rust proxy's FUTURE_ID_TOLERANCE_MS).
FUTURE_ID_TOLERANCE_MS = 60_000


@dataclass(slots=True)
class Request:
    """A request that passed the checks."""

    entry: bytes
    urn: str
    message: str
    reply: str | None
    request_id: int
    body: bytes
    high: bool
    deadline_ms: int
    """When its caller stops waiting, by Redis's clock (ms since the epoch)."""
    fields: dict[bytes, bytes]
    stream: str = ""
    """The stream it came in (set by the lane that read it)."""
    first: bool = False
    """Read new from a group's stream (not from a pending list): placed by the pattern's
    placement, as a Rust member places only an entry it reads first."""


@dataclass(slots=True)
class Refused:
    """Answered ``status`` with ``text`` (an ask; a tell is only acknowledged)."""

    reply: str | None
    request_id: int
    status: Status
    text: str


@dataclass(slots=True)
class Dropped:
    """Acknowledged without an answer: no usable reply address, or the deadline passed."""

    why: str


@dataclass(slots=True)
class Placed:
    """A wake-up another member of ``group`` appended after placing one of the group's
    requests on this system: its pending list in the group's stream is read again."""

    group: str


def _text(v: bytes | None) -> str | None:
    if v is None:
        return None
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check(
    entry: bytes,
    fields: dict[bytes, bytes] | None,
    *,
    reply_prefix: str,
    now_ms: int,
    max_payload: int,
) -> Request | Refused | Dropped | Placed:
    """What the host does with entry ``entry`` of fields ``fields`` (``None``: deleted while
    pending) at Redis time ``now_ms``."""
    if fields is None:
        return Dropped("deleted while pending")
    urn_raw = fields.get(b"urn")
    placed = fields.get(b"placed")
    if urn_raw is None and placed is not None:
        group = _text(placed)
        if group is not None:
            return Placed(group)
    reply: str | None = None
    request_id = 0
    if b"reply" in fields:
        key = _text(fields[b"reply"])
        if key is None or not key.startswith(reply_prefix) or len(key) == len(reply_prefix) or len(key) > len(reply_prefix) + 256:
            return Dropped("no usable reply address")
        rid = _text(fields.get(b"id"))
        try:
            request_id = int(rid) if rid is not None and rid.isdigit() else -1
        except ValueError:
            request_id = -1
        if not 0 <= request_id < 2**64:
            return Dropped("no usable request id")
        reply = key

    def refuse(text: str, status: Status = Status.BAD_REQUEST) -> Refused:
        return Refused(reply, request_id, status, text)

    version = _text(fields.get(b"v"))
    if version is None:
        return refuse("missing field v (protocol version)")
    if version != PROTOCOL_VERSION:
        return refuse(f"unsupported protocol version {version!r} (this proxy speaks {PROTOCOL_VERSION})")
    urn = _text(urn_raw)
    if urn is None:
        return refuse("missing or non-UTF-8 field urn")
    message = _text(fields.get(b"msg"))
    if message is None:
        return refuse("missing or non-UTF-8 field msg")
    ttl_text = _text(fields.get(b"ttl"))
    ttl = int(ttl_text) if ttl_text is not None and ttl_text.isdigit() and len(ttl_text) < 12 else 0
    if not 1 <= ttl <= 4_294_967_295:
        return refuse("missing or invalid field ttl (milliseconds, 1 to 4294967295)")
    codec = fields.get(b"codec")
    if codec is None:
        return refuse("missing field codec")
    body = fields.get(b"body")
    if body is None:
        return refuse("missing field body")
    # The entry id says when Redis took the request, unless it lies in the future.
    try:
        sent_ms = int(entry.split(b"-", 1)[0])
    except ValueError:
        sent_ms = now_ms
    deadline = min(sent_ms, now_ms) + ttl
    if sent_ms > now_ms + FUTURE_ID_TOLERANCE_MS:
        deadline = now_ms + ttl
    if deadline <= now_ms:
        return Dropped("expired")
    if len(body) > max_payload:
        return refuse(f"the message is {len(body)} bytes, the limit is {max_payload}", Status.TOO_LARGE)
    if codec != b"msgpack":
        name = codec.decode("utf-8", "replace")
        return refuse(f"unknown codec {name!r} (a Python actor host speaks msgpack)")
    return Request(
        entry=entry,
        urn=urn,
        message=message,
        reply=reply,
        request_id=request_id,
        body=body,
        high=fields.get(b"prio") == b"high",
        deadline_ms=deadline,
        fields=fields,
    )
