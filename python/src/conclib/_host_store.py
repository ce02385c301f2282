"""A Python activation's fenced state store: the Rust ``conclib_redis::scale::StateStore``'s
keys and scripts (``proxy/scale/store.rs``, ``applied.rs``), so that a URN moving between a
Python and a Rust member keeps its state.

The state is the hash ``{ns}:state:{urn}``: ``owner`` (the token of the activation that
opened it last), ``data`` (the state, MessagePack as the proxy's ``msgpack`` codec), and
``applied`` (the requests whose handling wrote it and that are not acknowledged yet, one
``<entry id> <stream>`` a line). Opening makes an activation the owner; a write of any
earlier activation (a process paused past its lease) is refused by the save script: a
fenced write. The next activation reads ``applied`` as it opens the state and does not hand
those requests to its actor again (a tell is acknowledged, an ask answered ``NoResponse``):
a request handled once, whichever member (Python or Rust) handled it.

A write is recorded with the request being handled when it is made from the actor's own
task (its handler); a write from a task the handler started is not recorded (as in Rust).

Live migration (the Rust ``proxy/scale/migration.rs``'s keys and scripts): an activation the
host's :meth:`~conclib.host.ActorHost.stop` moves away carries its state in memory to the
URN's next activation with :meth:`StateStore.dehydrate` in its ``on_stop``
(``{ns}:state:{urn}:carried``, with the writer's token, for one minute); the next activation,
on a Python or a Rust member, takes it as it opens the state (a Python one with
:meth:`StateStore.rehydrate`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping
from typing import Any

from . import _lua, codec
from ._host_replicas import written
from ._typed import from_wire, plain
from .durability import Durability

__all__ = ["Applied", "Fenced", "StateStore", "carried_key", "request_key"]

# How long a state key without data lives (one left by an activation that never saved), as
# the Rust store's EMPTY_STATE_TTL.
EMPTY_STATE_TTL_MS = 24 * 3600 * 1000

# How long a carried state waits for the next activation (the Rust ``CARRIED_TTL``).
CARRIED_TTL_MS = 60_000

# No data read by an open is waiting for the next ``load`` (``StateStore._fresh``).
_NOTHING = object()


class Fenced(Exception):  # noqa: N818 (the store's answer, as the Rust StoreError::Fenced)
    """A later activation of the URN owns its state now: nothing was written. The host
    stops this activation and leaves the request being handled for the current one."""


def carried_key(state_key: str) -> str:
    """The carried key of state key ``state_key`` (the Rust ``migration::carried_key``)."""
    return f"{state_key}:carried"


def first_entry(fields: Mapping[bytes, bytes]) -> str | None:
    """The first entry a request's fields name, if any: ``first`` (a system passed it on),
    else ``moved`` (a takeover moved it: it adds ``moved`` to an entry passed on before), each
    only when not empty and at most 1024 bytes (as ``request.rs``'s ``Request::first_entry``)."""
    for name in (b"first", b"moved"):
        value = fields.get(name)
        if value and len(value) <= 1024:
            return value.decode("utf-8", "replace")
    return None


def request_key(stream: str, entry: bytes, fields: Mapping[bytes, bytes]) -> str:
    """A request's identity in the record: the first entry its fields name
    (:func:`first_entry`), else ``<entry id> <stream>`` (as ``applied.rs``'s ``request_key``
    and ``record.rs``)."""
    return first_entry(fields) or f"{entry.decode()} {stream}"


# How long after a request was first sent (its entry id's time) an activation keeps it in the
# records it writes when an earlier activation recorded it (as ``applied.rs``'s
# ``EARLIER_KEPT``): many times a lease, in which a dead member's pending requests come back.
EARLIER_KEPT_MS = 300_000


def _recent(key: str, now_ms: float) -> bool:
    """Whether request ``key`` (``<ms>-<seq> <stream>``) was first sent within
    ``EARLIER_KEPT_MS`` of ``now_ms`` (this process's clock)."""
    ms = key.split("-", 1)[0]
    return ms.isascii() and ms.isdigit() and abs(int(ms) - now_ms) <= EARLIER_KEPT_MS


class Applied:
    """What one activation knows of the requests whose handling wrote its state."""

    __slots__ = ("unacked", "earlier")

    def __init__(self) -> None:
        self.unacked: list[str] = []
        self.earlier: set[str] = set()

    def opened(self, record: bytes | None) -> None:
        if record:
            self.earlier.update(k for k in record.decode("utf-8", "replace").split("\n") if k)

    def already(self, key: str) -> bool:
        """Whether the handling of ``key`` wrote the state already (in an earlier activation,
        or in this one): it is not handed to the actor again. One an earlier activation
        recorded is this one's to record from then on, until the answer saying so is
        acknowledged (``acked``): a process that dies before that write (or gives it up)
        leaves the request pending, and whoever reads it again must find it recorded."""
        if key in self.unacked:
            return True
        if key in self.earlier:
            self.earlier.discard(key)
            self.unacked.append(key)
            return True
        return False

    def record(self, handling: str | None) -> str:
        """The record a write stores: the requests not acknowledged yet, those an earlier
        activation recorded while recent (``EARLIER_KEPT_MS``: one pending on a dead member
        may come back after this activation wrote and moved on), and ``handling``."""
        keys = list(self.unacked)
        now = time.time() * 1000
        keys.extend(k for k in self.earlier if _recent(k, now))
        if handling is not None and handling not in keys:
            keys.append(handling)
        return "\n".join(keys)

    def wrote(self, key: str) -> None:
        if key not in self.unacked:
            self.unacked.append(key)

    def acked(self, key: str) -> None:
        try:
            self.unacked.remove(key)
        except ValueError:
            pass


class StateStore:
    """The state of one activation (``self.store`` in a pattern's actor).

    ::

        async def on_start(self) -> None:
            self.count = await self.store.load(int) or 0

        @handler("shop.Add")
        async def add(self, n: int) -> int:
            await self.store.save(self.count + n)   # raises Fenced if displaced
            self.count += n
            return self.count
    """

    __slots__ = ("_redis", "_scripts", "_durability", "key", "token", "opened", "applied", "handling", "task",
                 "refused", "moving", "carried", "_taken", "_fresh")

    def __init__(self, redis: Any, scripts: Any, key: str, system: str,
                 durability: Durability | None = None) -> None:
        self._redis = redis
        self._scripts = scripts
        self._durability = durability or Durability()
        self.key = key
        self.token = f"{secrets.token_hex(8)}@{system}"
        self.opened = False
        self.applied = Applied()
        # The request being handled by the actor's task, and that task (set by the mailbox).
        self.handling: str | None = None
        self.task: asyncio.Task[Any] | None = None
        self.refused = False
        # Set by the host when it stops this activation to move it (``dehydrate``).
        self.moving = False
        # Set once ``dehydrate`` carried the state: the host leaves the state key as it is.
        self.carried = False
        # The state the previous activation carried here, taken by this one's first open.
        self._taken: bytes | None = None
        # What the last open read, for the next ``load`` (no second round trip after
        # ``rehydrate``); ``_NOTHING`` once used or written over.
        self._fresh: Any = _NOTHING

    async def load(self, tp: Any = None) -> Any:
        """The stored state (``None`` if none), decoded into ``tp`` if given; makes this
        activation the state's owner."""
        data, self._fresh = self._fresh, _NOTHING
        if data is _NOTHING:
            data = await self._open()
        if data is None:
            return None
        value = codec.decode(data)
        return value if tp is None else from_wire(value, tp)

    async def rehydrate(self, tp: Any = None) -> Any:
        """In ``on_start``: the state the URN's previous activation carried when it was moved
        here (:meth:`dehydrate`, on a Python or a Rust member), decoded into ``tp`` if given,
        taken once; ``None`` when it carried none (then :meth:`load` what was saved, without
        a second round trip). Makes this activation the state's owner, as :meth:`load`.

        ::

            async def on_start(self) -> None:
                carried = await self.store.rehydrate(int)
                self.count = carried if carried is not None else await self.store.load(int) or 0
        """
        if not self.opened:
            self._fresh = await self._open()
        data, self._taken = self._taken, None
        if data is None:
            return None
        value = codec.decode(data)
        return value if tp is None else from_wire(value, tp)

    async def dehydrate(self, value: Any) -> bool:
        """In ``on_stop``: when this activation is being moved to another member (its host's
        :meth:`~conclib.host.ActorHost.stop`), carries ``value`` (its state in memory, saved
        or not) to the URN's next activation, which takes it with :meth:`rehydrate` (a Rust
        one with ``StateStore::rehydrate``): ``True`` then. Otherwise (an idle passivation,
        the activation cap, a later activation owning the state) it does nothing and answers
        ``False``: the next activation loads what was saved (:meth:`save`). Call it last: the
        URN goes to another member once ``on_stop`` returns."""
        if not self.moving or self.refused:
            return False
        if not self.opened:
            await self._open()
        self._fresh = _NOTHING
        got = await self._scripts.carry(
            keys=[self.key, carried_key(self.key)],
            args=[self.token, codec.encode(plain(value)), CARRIED_TTL_MS],
        )
        self.carried = got == 1
        return self.carried

    async def save(self, value: Any) -> None:
        """Writes the state, if this activation is still the URN's latest; else raises
        :class:`Fenced` (nothing written). At a host ``durability`` asking for replicas, it
        returns once they hold it, else raises :class:`conclib.NotReplicated` (written on
        the primary, which a promotion may undo)."""
        await self._write("set", codec.encode(plain(value)))

    async def clear(self) -> None:
        """Deletes the state, if this activation is still the URN's latest (:class:`Fenced`)."""
        await self._write("clear", EMPTY_STATE_TTL_MS)

    def is_current(self) -> bool:
        """False once a write was refused (a later activation owns the state)."""
        return not self.refused

    async def _open(self) -> bytes | None:
        # The carried state is taken by the first open (``rehydrate``, ``load`` or a write),
        # whether the actor asks for it or not: it counts for the next activation only.
        got, short = await written(
            self._redis, self._durability, self._scripts.carried_open, [self.key, carried_key(self.key)],
            [self.token, EMPTY_STATE_TTL_MS],
        )
        if short is not None:
            # The fence is this activation's only once a promotion cannot undo it.
            raise short
        data, record, carried = (got + [None, None, None])[:3] if isinstance(got, list) else (got, None, None)
        self.applied.opened(record)
        if not self.opened and carried:
            self._taken = carried
        self.opened = True
        return data if data else None

    async def _write(self, op: str, arg: Any) -> None:
        if not self.opened:
            await self._open()
        self._fresh = _NOTHING
        mine = self.handling if self.task is not None and asyncio.current_task() is self.task else None
        record = self.applied.record(mine)
        got, short = await written(
            self._redis, self._durability, self._scripts.state_save, [self.key], [self.token, op, arg, record]
        )
        if got != 1:
            self.refused = True
            raise Fenced(f"a later activation owns {self.key} now; nothing was written")
        if short is not None:
            # Not done, nor recorded as this request's, until the replicas hold it.
            raise short
        if mine is not None:
            self.applied.wrote(mine)

    async def close(self) -> None:
        """At passivation: the key deleted if this activation owns it and it holds no data
        (left when the state was carried: the next activation takes it only while this one
        still owns the key)."""
        if self.opened and not self.refused and not self.carried:
            await self._scripts.state_close(keys=[self.key], args=[self.token])

