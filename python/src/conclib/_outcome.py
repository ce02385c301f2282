"""What an ask through Redis returns for a reply frame's status and payload, or the error it
raises (both paths of ``AsyncClient.ask``)."""

from __future__ import annotations

from typing import Any

from . import codec
from .errors import (
    ActorStopped,
    BadRequest,
    CodecError,
    HandlerError,
    MailboxFull,
    NoResponse,
    NotExposed,
    overloaded_from,
    Panicked,
    ProtocolError,
    Timeout,
    TooLarge,
    UnknownUrn,
    UnsupportedVersion,
)
from .protocol import Status

__all__ = ["interpret"]


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


def interpret(urn: str, message: str, timeout: float, status: int, payload: bytes) -> Any:
    """The ask's result for a reply's status and payload, or the error it means."""
    if status == Status.OK:
        try:
            return codec.decode(payload)
        except CodecError as e:
            raise CodecError(f"cannot decode the response: {e}") from None
    if status == Status.HANDLER_ERROR:
        try:
            error = codec.decode(payload)
        except CodecError as e:
            raise CodecError(f"cannot decode the handler's error: {e}") from None
        raise HandlerError(error, urn, message)
    if status in (Status.UNKNOWN_URN, Status.NOT_OWNER):
        raise UnknownUrn(urn, _text(payload))
    if status == Status.UNKNOWN_MESSAGE:
        raise NotExposed(urn, message)
    if status == Status.UNSUPPORTED_VERSION:
        raise UnsupportedVersion(urn, message, _text(payload))
    if status == Status.PANICKED:
        raise Panicked(_text(payload))
    if status == Status.TIMEOUT:
        raise Timeout(timeout, _text(payload))
    if status == Status.ACTOR_STOPPED:
        raise ActorStopped(urn)
    if status == Status.NO_RESPONSE:
        raise NoResponse(urn)
    if status == Status.MAILBOX_FULL:
        raise MailboxFull(urn)
    if status == Status.OVERLOADED:
        error = overloaded_from(urn, payload)
        if error is None:
            raise ProtocolError(f"an Overloaded reply without its limit: {_text(payload)!r}")
        raise error
    if status == Status.BAD_REQUEST:
        raise BadRequest(_text(payload))
    if status == Status.CODEC_ERROR:
        raise CodecError(_text(payload))
    if status == Status.TOO_LARGE:
        raise TooLarge(_text(payload))
    raise ProtocolError(f"unknown reply status {status}")
