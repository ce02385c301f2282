"""What the client's inner parts know of each other, below all of them.

``AsyncClient`` (``client``) makes a ``Session`` (``_session``), which writes and reads
through a path (``_raw_path`` on one server, ``_redispy_path`` for Sentinel and Cluster);
``reminders`` and ``topics`` send commands through the client. Each of them names the
others by the shapes here — the settings a session reads off its client, the session a path
reports to, the client a module sends commands through, and the ``Route`` of a URN — so
that imports only go down: ``client`` → ``_session`` → the paths → this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from .durability import Durability
from .protocol import Keys
from .url import RedisTarget

__all__ = ["NOTHING", "ClientSettings", "CommandClient", "Route", "SessionLink"]

NOTHING: Any = object()
"""The default of an omitted payload (a unit message; a reminder without one): one object
for the whole package, so that a payload not given passes through wrappers as not given."""


@dataclass
class Route:
    """Where requests for a URN go: the system serving it and its request stream, until
    ``until`` (``time.monotonic()``)."""

    system: str
    requests_key: str
    until: float
    # ``requests_key`` as a RESP bulk string (the raw writer's XADD).
    packed_key: bytes = b""
    # A group's fast lane (``{ns}:sys:{group}:req:hi``), where its ``priority="high"``
    # requests go to overtake a backlog in its stream; ``None`` for a system, or a group
    # whose members read none (older servers: then its stream).
    fast_key: str | None = None
    packed_fast: bytes = b""

    def key_for(self, high: bool) -> str:
        """The stream a request goes to: the group's fast lane for a ``high`` one, if any."""
        return self.fast_key if high and self.fast_key is not None else self.requests_key

    def packed_for(self, high: bool) -> bytes:
        """``key_for(high)`` as a RESP bulk string."""
        return self.packed_fast if high and self.fast_key is not None else self.packed_key

    def no_fast_lane(self) -> None:
        """The fast lane has no stream (its group's members are older servers): its stream,
        until the URN is looked up again."""
        self.fast_key = None


class ClientSettings(Protocol):
    """What a session reads off the client that made it (``AsyncClient`` is one)."""

    url: str
    namespace: str
    command_timeout: float
    connect_timeout: float
    resolve_cache_ttl: float
    lease_ttl: float
    durability: Durability
    _target: RedisTarget
    _tls_ca_file: str | None
    _keys: Keys


class SessionLink(Protocol):
    """What a path (``RawPath``, ``RedisPyPath``) uses of the session it writes for."""

    client: ClientSettings
    loop: asyncio.AbstractEventLoop
    closed: bool
    pending: dict[int, asyncio.Future[Any]]
    reply_key: str
    reply_wait_limit: float
    blmpop_args: tuple[Any, ...]
    redis: Any
    # The next ask's request id; the asks whose requests Redis took; whether a connection
    # is known lost; how many times Redis came back empty.
    next_id: int
    written: set[int]
    down: bool
    losses: int

    def deliver(self, frame: Any) -> None: ...

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None: ...

    def link_lost(self) -> None: ...

    async def reply_list_clobbered(self, error: str) -> None: ...


class CommandClient(Protocol):
    """A client that sends single Redis commands (``AsyncClient`` is one): what
    ``conclib.reminders`` needs."""

    @property
    def namespace(self) -> str: ...

    @property
    def max_payload(self) -> int: ...

    async def _command(self, *args: Any) -> Any:
        """One command, bounded by the client's ``command_timeout``."""
        ...

    async def _write(self, *args: Any) -> Any:
        """One write that must survive a promotion at the client's durability (``WAIT``
        after it), bounded by the client's ``command_timeout``."""
        ...
