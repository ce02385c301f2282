"""What a request carries, checked and encoded before it is sent: a message's wire name and
MessagePack payload (``Message``: a typed message object), its mailbox lane (``Priority``)
and its W3C trace context. Used by ``AsyncClient``'s ask and tell and by the fakes of
:mod:`conclib.testing`, which check what they take as the client does; apart from the
client's connection and sending.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from . import codec
from ._contracts import NOTHING
from .errors import TooLarge
from .trace import current_traceparent, valid_traceparent

__all__ = ["NIL", "Message", "Priority", "checked_traceparent", "encode_message", "priority_high"]

Priority = Literal["normal", "high"]
"""The actor's mailbox lane: ``high`` overtakes its queued normal messages."""


class Message(Protocol):
    """A typed message: any object whose class names its wire name.

    Dataclasses are encoded as maps of their fields; define ``__conclib_encode__`` for any
    other shape (a Rust newtype struct is its bare value, a tuple struct a list).
    """

    __conclib_name__: str


NIL = b"\xc0"  # MessagePack's nil


def encode_message(message: str | Message, payload: Any, max_payload: int) -> tuple[str, bytes]:
    """A message's wire name and encoded payload, as ``ask`` and ``tell`` send them (also
    the fakes of :mod:`conclib.testing`)."""
    if isinstance(message, str):
        name = message
        # A unit message (no payload) is nil, the most common body: not encoded each time.
        body = NIL if payload is NOTHING or payload is None else codec.encode(payload)
    else:
        found: Any = getattr(type(message), "__conclib_name__", None) or getattr(message, "__conclib_name__", None)
        if not isinstance(found, str):
            raise TypeError(
                f"a message is a wire name (str) and a payload, or an object whose class has "
                f"__conclib_name__; got {type(message).__name__}"
            )
        if payload is not NOTHING:
            raise TypeError("a typed message carries its own payload: pass no payload")
        name = found
        body = codec.encode(message)
    if len(body) > max_payload:
        raise TooLarge(f"the message is {len(body)} bytes, the limit is {max_payload}")
    return name, body


def priority_high(priority: str) -> bool:
    """Whether ``priority`` is the high-priority lane (``ValueError`` if it is neither)."""
    if priority == "high":
        return True
    if priority == "normal":
        return False
    raise ValueError(f"priority must be 'normal' or 'high', got {priority!r}")


def checked_traceparent(traceparent: str | None) -> str:
    """The trace context to send: the current one if none is given (``ValueError`` for one
    that is not W3C's)."""
    if traceparent is None:
        return current_traceparent()
    if not valid_traceparent(traceparent):
        raise ValueError(f"not a W3C traceparent: {traceparent!r}")
    return traceparent
