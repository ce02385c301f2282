"""Actors written in Python: a class whose ``@handler`` methods are its API.

::

    @dataclass
    class Add:
        n: int

    class Counter(conclib.actor.Actor):
        def __init__(self, urn: str) -> None:
            super().__init__(urn)
            self.total = 0

        @conclib.actor.handler("shop.Add")
        async def add(self, msg: Add) -> int:
            self.total += msg.n
            return self.total

An :class:`conclib.host.ActorHost` serves such a class for a URN or a URN pattern through
Redis, on the Rust proxy's wire protocol: Rust and Python callers ask it as they ask a Rust
actor. One message at a time per actor (as a Rust actor's run loop); a handler's parameter
is decoded from MessagePack into its annotation (``int``, ``str``, ``bytes``, ``list[T]``,
``dict[K, V]``, ``T | None``, dataclasses, pydantic models) and its return value encoded
back; a body that does not fit is answered ``CodecError`` before the handler runs.

A handler answers an error the caller receives as its ``HandlerError`` by raising
:class:`Refusal` (``raise Refusal({"NotAllowed": {"reason": "no"}})``); any other exception
is answered ``Panicked`` with its text, and the actor goes on (a Rust actor under
``PanicPolicy::Resume``); raising :class:`Drop` answers nothing (the caller gets
``NoResponse``).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

if TYPE_CHECKING:
    from ._host_store import StateStore
    from .client import AsyncClient

__all__ = ["Actor", "Drop", "HandlerSpec", "Refusal", "ReminderTick", "handler", "handlers_of"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_MARK = "__conclib_handler__"


class Actor:
    """The base of a Python actor. ``urn`` is the URN it serves (for a pattern's actor, the
    URN it was activated for; ``id`` is what follows the pattern's prefix).

    ``cancel_on_timeout``: when a request's deadline passes while its handler runs, the
    caller is answered ``Timeout`` in any case; with this set, the handler is also cancelled
    (``asyncio.CancelledError`` is raised at its ``await``), so the actor's next message does
    not wait for it. Off by default, as in Rust: a handler cut short may leave the actor's
    state half changed.
    """

    cancel_on_timeout: ClassVar[bool] = False

    def __init__(self, urn: str) -> None:
        self.urn = urn
        self.id = urn

    @property
    def store(self) -> StateStore:
        """The fenced state store of a pattern's activation (``{ns}:state:{urn}``, the keys
        and scripts of the Rust ``StateStore``: a URN moving between Python and Rust members
        keeps its state). Load it in :meth:`on_start` (which makes this activation its owner
        and reads which requests an earlier activation handled already); save from a handler.
        Only an actor a host activated for a pattern has one."""
        store: StateStore | None = self.__dict__.get("_store")
        if store is not None:
            return store
        host = self.__dict__.get("_host")
        if host is None:
            raise RuntimeError(f"{self.urn}: only an actor a host activated for a pattern has a state store")
        made: StateStore = host.new_store(self.urn)
        self._store = made
        return made

    @property
    def client(self) -> AsyncClient:
        """The host's client (its Redis, its namespace): ask and tell other actors, publish to
        topics (``await self.client.publish("news", event)``), register reminders."""
        host = self.__dict__.get("_host")
        if host is None or host.client is None:
            raise RuntimeError(f"{self.urn}: only an actor a started host serves has a client")
        client: AsyncClient = host.client
        return client

    async def remind(self, name: str, *, after: float | None = None, at: float | None = None,
                     every: float | None = None, payload: Any = None) -> int:
        """Registers the durable reminder ``name`` for this actor's URN (as
        ``client.register_reminder``; ``payload`` MessagePack, ``None``: none): a reminder
        poller of the namespace (a Rust system's ``ReminderPoller``, or a host's own, started
        with ``HostConfig(reminders=ReminderPollerOptions())``) delivers each tick to the URN
        as a :class:`ReminderTick` ask, handled by the actor's
        ``@handler("conclib.ReminderTick")``.
        Returns when it is first due (ms since the epoch, Redis's clock)."""
        if payload is None:
            return await self.client.register_reminder(self.urn, name, after=after, at=at, every=every)
        return await self.client.register_reminder(self.urn, name, after=after, at=at, every=every, payload=payload)

    async def on_start(self) -> None:
        """Called once before the first message (an activation: when it is activated)."""

    async def on_stop(self) -> None:
        """Called once when the actor is passivated or its host stops."""


@dataclass
class ReminderTick:
    """A due reminder, as a reminder poller delivers it (the Rust ``ReminderTick``, wire name
    ``conclib.ReminderTick``): answer it (return ``None``) once handled, and only then is the
    tick acknowledged. ``due_ms``: when it was due (ms since the epoch); ``missed``: earlier
    ticks of a periodic reminder coalesced into this one; ``payload``: as registered, encoded
    with ``codec`` (``msgpack`` from Python)."""

    name: str
    due_ms: int
    period_ms: int
    missed: int
    payload: bytes
    codec: str

    @property
    def last_due_ms(self) -> int:
        """The last tick this delivery stands for (``due_ms`` plus ``missed`` periods)."""
        return self.due_ms + self.missed * self.period_ms

    def ticks_since(self, last_handled: int | None) -> int:
        """How many of its ticks come after ``last_handled`` (the ``last_due_ms`` of the last
        delivery handled): a delivery that came again counts no tick twice."""
        every = 1 + self.missed
        if last_handled is None or last_handled < self.due_ms:
            return every
        if self.period_ms == 0:
            return 0
        return max(0, every - ((last_handled - self.due_ms) // self.period_ms + 1))

    def value(self) -> Any:
        """The payload decoded (MessagePack); ``None`` without one. ``ValueError`` for
        another codec (a Rust registration's bincode)."""
        if not self.payload:
            return None
        if self.codec != "msgpack":
            raise ValueError(f"the payload of reminder {self.name} is {self.codec!r}, not msgpack")
        from . import codec

        return codec.decode(self.payload)


class Refusal(Exception):  # noqa: N818 (the handler's answer, not a failure of the host)
    """Raised by a handler: the caller's ``HandlerError`` with ``error`` (encoded as the
    handler's error type is on the wire: a ``str``, or an externally tagged enum as a dict)."""

    def __init__(self, error: Any) -> None:
        self.error = error
        super().__init__(f"refused: {error!r}")


class Drop(Exception):  # noqa: N818
    """Raised by a handler: the request is dropped without an answer (``NoResponse``)."""


@dataclass(frozen=True)
class HandlerSpec:
    """One exposed message: its wire name, the method, its parameter's type (``None``: a
    unit message, no parameter), its return type and its error type (``Refusal``'s)."""

    name: str
    method: Callable[..., Awaitable[Any]]
    param: Any
    returns: Any
    error: Any
    unit: bool
    version: int = 1


def handler(name: str, *, error: Any = str, version: int = 1) -> Callable[[F], F]:
    """Exposes an ``async def`` method as the message ``name`` (its wire name, as a Rust
    message's ``name()``). ``error``: the type a :class:`Refusal` carries (for the schema).
    ``version``: the version of its fields (1 to 2**32 - 1), as a Rust message's
    ``#[message(version = N)]``: a host lists it in its pattern's message directory, which
    orders two builds during a rolling upgrade (README, "Upgrading a running cluster"; a
    host decodes a request of any version, its fields read by name)."""
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 1 << 32:
        raise ValueError(f"handler {name!r}: version {version!r} is not an integer from 1 to 2**32 - 1")

    def mark(method: F) -> F:
        if not inspect.iscoroutinefunction(method):
            raise TypeError(f"handler {name!r} must be an async def method")
        setattr(method, _MARK, (name, error, version))
        return cast(F, method)

    return mark


def handlers_of(cls: type[Actor]) -> dict[str, HandlerSpec]:
    """The messages ``cls`` exposes, by wire name (its ``@handler`` methods, inherited ones
    too). A method with more than one parameter besides ``self`` is refused."""
    out: dict[str, HandlerSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, method in vars(klass).items():
            mark = getattr(method, _MARK, None)
            if mark is None:
                continue
            name, error, version = mark
            hints = typing.get_type_hints(method)
            params = [p for p in inspect.signature(method).parameters.values()][1:]
            if len(params) > 1:
                raise TypeError(f"{cls.__name__}.{attr}: a handler takes one message parameter at most")
            param = hints.get(params[0].name, Any) if params else None
            out[name] = HandlerSpec(
                name=name,
                method=method,
                param=param,
                returns=hints.get("return", Any),
                error=error,
                unit=not params,
                version=version,
            )
    return out
