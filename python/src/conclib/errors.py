"""Errors of the conclib client: one base class, one subclass per way an ask can fail.

They mirror the Rust client's ``ProxyError`` (``conclib-redis/src/error.rs``; a Rust ask
reports the same failures as the core's ``AskError``) and the reply
statuses of the protocol (``conclib-redis/src/protocol.rs``). Each has a ``label``: the
``status`` label of the metrics hook (``timeout``, ``unavailable``, ...).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Generic

if TYPE_CHECKING:
    # A default (PEP 696): a bare ``HandlerError`` is ``HandlerError[Any]`` to the type
    # checkers (which know typing_extensions without it being installed); at run time the
    # parameter only has to exist.
    from typing_extensions import TypeVar

    E = TypeVar("E", default=Any)
else:
    from typing import TypeVar

    E = TypeVar("E")

__all__ = [
    "ActorStopped",
    "BadRequest",
    "Closed",
    "CodecError",
    "ConclibError",
    "ConfigError",
    "HandlerError",
    "Lagged",
    "MailboxFull",
    "NoResponse",
    "NotExposed",
    "NotReplicated",
    "Overloaded",
    "Panicked",
    "ProtocolError",
    "RedisError",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "UnknownMessage",
    "UnknownUrn",
    "UnsupportedVersion",
]


class ConclibError(Exception):
    """Base of every error the client raises for an ask or a tell. Errors pickle (a
    worker of a process pool hands them to its parent) with their message and attributes."""

    label = "error"

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the message and attributes, not by calling `__init__` again: the
        # subclasses' constructors take other arguments than the message they make.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[ConclibError], args: tuple[Any, ...], state: dict[str, Any]) -> ConclibError:
    """An error of class ``cls`` with ``args`` and attributes ``state`` (see ``__reduce__``)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class UnknownUrn(ConclibError):
    """No live actor has this URN in any system serving the namespace (answered at once)."""

    label = "unknown_urn"

    def __init__(self, urn: str, detail: str = "") -> None:
        self.urn = urn
        super().__init__(f"no actor with URN {urn} is reachable through the proxy" + (f": {detail}" if detail else ""))


class NotExposed(ConclibError):
    """The actor does not expose this message to other processes, or does not handle it
    (reply status 3, ``UnknownMessage``)."""

    label = "unknown_message"

    def __init__(self, urn: str, message: str) -> None:
        self.urn = urn
        self.message = message
        super().__init__(f"actor {urn} does not expose message {message}")


UnknownMessage = NotExposed
"""The protocol's name for :class:`NotExposed`."""


class UnsupportedVersion(ConclibError):
    """No member serving the URN has this message at a version it can decode (reply status
    14): during a rolling upgrade, a message only the new build has, asked before a member
    of that build serves (or after the last one left). Refused at once, never decoded
    wrong and never left to time out; not handled, so sending it again later may
    succeed."""

    label = "unsupported_version"

    def __init__(self, urn: str, message: str, detail: str = "") -> None:
        self.urn = urn
        self.message = message
        super().__init__(
            f"no member serving {urn} has message {message} at a version it can decode"
            + (f": {detail}" if detail else "")
        )


class HandlerError(ConclibError, Generic[E]):
    """The handler returned an error: ``error`` holds it, decoded from MessagePack (a Rust
    unit enum variant is its name, ``"Busy"``; others a one-entry dict, ``{"NotAllowed":
    {"reason": "..."}}``; a ``String`` error a ``str``).

    Generic in the error's type: ``HandlerError`` alone is ``HandlerError[Any]`` (what
    ``client.ask`` raises); the typed handles of :mod:`conclib.stubgen` raise a subclass per
    message, ``HandlerError[TheRustErrorType]``, whose ``error`` is decoded into that type
    and checked by mypy and pyright."""

    label = "handler_error"
    error: E

    def __init__(self, error: E, urn: str = "", message: str = "") -> None:
        self.error = error
        self.urn = urn
        self.message = message
        super().__init__(f"the handler returned an error: {error!r}")


class Lagged(ConclibError):
    """A live subscription fell behind: ``missed`` events found its buffer full and were
    dropped since the last report. Raised once by the subscription's next ``get()`` (or
    ``async for``/``for`` step), in place of the next event, as the Rust ``Subscription``
    yields ``TopicError::Lagged``; the subscription goes on, and the call after returns the
    next event it holds."""

    label = "lagged"

    def __init__(self, missed: int, topic: str = "") -> None:
        self.missed = missed
        self.topic = topic
        super().__init__(f"the subscriber of topic {topic} fell behind: {missed} events dropped")


class Panicked(ConclibError):
    """The handler panicked; ``text`` is the panic message."""

    label = "panicked"

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(f"the handler panicked: {text}")


class Timeout(ConclibError, TimeoutError):
    """No answer within the ask's timeout. The request may still be handled before its
    deadline, or was dropped as expired. Also a ``TimeoutError``."""

    label = "timeout"

    def __init__(self, timeout: float, detail: str = "") -> None:
        self.timeout = timeout
        super().__init__(f"no answer within {timeout:.3f} s" + (f": {detail}" if detail else ""))


class ActorStopped(ConclibError):
    """The actor stopped before answering."""

    label = "actor_stopped"

    def __init__(self, urn: str) -> None:
        self.urn = urn
        super().__init__(f"actor {urn} stopped before answering")


class NoResponse(ConclibError):
    """The actor dropped the request without answering."""

    label = "no_response"

    def __init__(self, urn: str) -> None:
        self.urn = urn
        super().__init__(f"actor {urn} dropped the request without answering")


class MailboxFull(ConclibError):
    """The actor's mailbox stayed full (a web server answers 503)."""

    label = "mailbox_full"

    def __init__(self, urn: str) -> None:
        self.urn = urn
        super().__init__(f"actor {urn} has a full mailbox")


class Overloaded(ConclibError):
    """The proxy refused the request at once, before it queued: too many requests were
    pending for its URN, its URN pattern or the whole system (a web server answers 503 with
    ``Retry-After``). Not handled; send it again later. ``scope`` is ``urn``, ``pattern`` or
    ``system``; ``limit`` the limit and ``depth`` how many were pending."""

    label = "overloaded"

    def __init__(self, urn: str, scope: str, limit: int, depth: int) -> None:
        self.urn = urn
        self.scope = scope
        self.limit = limit
        self.depth = depth
        super().__init__(
            f"actor {urn} is overloaded: {depth} requests pending for its {scope}, "
            f"the limit is {limit}"
        )


def overloaded_from(urn: str, payload: bytes) -> Overloaded | None:
    """The ``Overloaded`` error an overloaded reply's payload (``scope=urn limit=8 depth=8``)
    says, or ``None`` when it does not say all three (words it does not know are skipped)."""
    words = dict(
        w.split("=", 1) for w in payload.decode("utf-8", "replace").split() if "=" in w
    )
    try:
        scope, limit, depth = words["scope"], int(words["limit"]), int(words["depth"])
    except (KeyError, ValueError):
        return None
    if scope not in ("urn", "pattern", "system"):
        return None
    return Overloaded(urn, scope, limit, depth)


class CodecError(ConclibError):
    """A payload could not be encoded or decoded (here or at the proxy)."""

    label = "codec_error"


class TooLarge(ConclibError):
    """The message or its answer is larger than the limit (here or at the proxy)."""

    label = "too_large"


class BadRequest(ConclibError):
    """The proxy could not read the request (bad version, unknown codec, ...)."""

    label = "bad_request"


class Unavailable(ConclibError, ConnectionError):
    """Redis could not be reached, or the connection was lost while waiting. An ask that
    fails this way after its request was written may still be handled. Also a
    ``ConnectionError``."""

    label = "unavailable"


class NotReplicated(Unavailable):
    """A write (a tell, a durable publish, a reminder's registration or cancellation, of a
    client whose ``durability`` asks for replicas) that the primary took, but that fewer
    replicas than asked acknowledged within the durability's timeout (``WAIT``): a
    promotion of a lagging replica may lose it, and it may also still take effect (a tell
    be handled), as after a timeout. ``replicas``: how many acknowledged; ``required``: how
    many were asked. Also an ``Unavailable`` (retryable; the Rust client reports it as
    ``Unavailable``)."""

    label = "not_replicated"

    def __init__(self, replicas: int, required: int, timeout: float) -> None:
        self.replicas = replicas
        self.required = required
        self.timeout = timeout
        super().__init__(
            f"the write reached {replicas} of the {required} replicas durability asks for "
            f"within {timeout:.3f} s; it may or may not take effect"
        )


class RedisError(ConclibError):
    """Redis answered a command with an error (permissions, wrong key type, ...)."""

    label = "redis"


class ProtocolError(ConclibError):
    """A reply did not follow the protocol (an unknown status, a reply list that is not a
    list)."""

    label = "protocol"


class ConfigError(ConclibError, ValueError):
    """The URL or another setting is unusable. Also a ``ValueError``."""

    label = "config"


class Closed(ConclibError):
    """The client was closed."""

    label = "closed"

    def __init__(self) -> None:
        super().__init__("the client is closed")


def is_connection_error(e: BaseException) -> bool:
    """Whether a redis-py (or socket) error means the connection to Redis is lost or
    unusable for now (not that Redis refused the command)."""
    import redis.exceptions as rexc

    kinds: tuple[type[BaseException], ...] = (rexc.ConnectionError, rexc.TimeoutError, OSError, EOFError)
    # A failover in progress: no primary for the slot yet, a demoted primary refusing
    # writes, a replica loading its data set. Each refused the command: sent again later.
    for optional in ("ClusterDownError", "MasterDownError", "TryAgainError", "SlotNotCoveredError",
                     "ReadOnlyError", "BusyLoadingError"):
        kind = getattr(rexc, optional, None)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            kinds += (kind,)
    if isinstance(e, kinds) or _closed_under_a_write(e):
        return True
    # A cluster client that reaches no node says so with its generic exception.
    cluster = getattr(rexc, "RedisClusterException", None)
    return isinstance(cluster, type) and isinstance(e, cluster) and "cannot be connected" in str(e)


def _closed_under_a_write(e: BaseException) -> bool:
    """Whether ``e`` is the transport's own error for a write on a connection another task
    closed meanwhile: redis-py (8.1) writes through a task of its own, and its cluster
    client closes every connection of a node after a command there failed (a failover),
    also those other commands are writing on; the write then raises ``AttributeError:
    'NoneType' object has no attribute 'writelines'`` (or a ``TypeError`` from asyncio's
    transport), not a ``ConnectionError``. Only from redis-py's connection code: the same
    error from any other code is a bug, and stays one."""
    if not isinstance(e, (AttributeError, TypeError)) or "NoneType" not in str(e):
        return False
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.replace("\\", "/").endswith("redis/asyncio/connection.py"):
            return True
        tb = tb.tb_next
    return False


#: Error replies by which Redis refuses a command while it fails over or starts (the
#: command did not run): the client's ``Unavailable``, as for a lost connection.
FAILOVER_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS")


def is_failover_reply(message: str) -> bool:
    """Whether an error reply's ``message`` is one of :data:`FAILOVER_REPLIES`."""
    return message.lstrip().upper().startswith(FAILOVER_REPLIES)


def from_redis_error(e: BaseException) -> ConclibError:
    """The client's error for a redis-py error: ``Unavailable`` for a lost connection,
    else ``RedisError``."""
    if isinstance(e, ConclibError):
        return e
    if is_connection_error(e) or is_failover_reply(str(e)):
        return Unavailable(f"{type(e).__name__}: {e}")
    return RedisError(f"{type(e).__name__}: {e}")


def fail(fut: asyncio.Future[Any], error: BaseException) -> None:
    """Ends ``fut`` with ``error`` unless it is done, the error marked as retrieved: a
    waiter that gave up (its task cancelled) leaves no "exception was never retrieved"
    warning, and one still waiting gets the error when it awaits."""
    if not fut.done():
        fut.set_exception(error)
        fut.exception()
