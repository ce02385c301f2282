"""``AsyncClient``'s calls off the ask path: publishing and subscribing (``topics``),
reminders (``reminders``), durable executions (``durable``), a URN's lookup, and the single
commands those modules send through the client. Each is a front of its module on the
client's session. Separate from the client's own work (its session, its asks and tells):
these reach the session only through the client's ``_current``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import durable as _durable
from . import reminders as _reminders
from . import topics as _topics
from ._contracts import NOTHING
from ._session import Session
from .durability import Durability
from .durable import ExecutionInfo, Finished
from .errors import Timeout, UnknownUrn
from .reminders import ReminderInfo
from .topics import DEFAULT_BUFFER, DEFAULT_GROUP, DEFAULT_MAX_LEN, Subscription

__all__ = ["OffPathCalls"]

_NOTHING: Any = NOTHING


class OffPathCalls:
    """A base of ``AsyncClient``: its calls that are not an ask or a tell."""

    # Set by ``AsyncClient``: its settings these calls read.
    namespace: str
    timeout: float
    command_timeout: float
    max_payload: int
    durability: Durability

    if TYPE_CHECKING:
        # ``AsyncClient``'s: this process's and loop's session, connecting if needed.
        async def _current(self) -> Session: ...

    # -- topics (conclib.topics), lookups, single commands -----------------------------------

    async def publish(self, topic: str, event: Any, *, durable: bool = False,
                      max_len: int = DEFAULT_MAX_LEN) -> None:
        """Publishes ``event`` (MessagePack) to ``topic`` and returns once Redis took it: to
        the live topic's subscribers connected now, or (``durable=True``) to every subscriber
        group of the durable topic, which keeps about its last ``max_len`` events. See
        :mod:`conclib.topics`. Raises ``CodecError``, ``TooLarge``, ``Unavailable``,
        ``RedisError``, ``ConfigError`` (a bad topic name)."""
        await _topics.publish(self, topic, event, durable=durable, max_len=max_len)

    async def subscribe(self, topic: str, *, durable: bool = False, group: str = DEFAULT_GROUP,
                        consumer: str | None = None, buffer: int = DEFAULT_BUFFER,
                        from_start: bool = False, claim_idle: float = 30.0) -> Subscription:
        """Subscribes to ``topic`` and returns the :class:`~conclib.topics.Subscription`
        (``async for event in subscription``) once events published from now on reach it.
        ``durable``: a durable topic, read as one subscriber of ``group`` named ``consumer``
        (default: a random name; the same name again resumes with what it had not finished);
        ``from_start``: a group new to the topic starts with the oldest event kept;
        ``claim_idle``: seconds after which events another subscriber of the group took and
        did not finish are taken over. ``buffer``: events held, received and not yet taken
        (a live subscription drops what does not fit, counted). See :mod:`conclib.topics`."""
        await self._current()
        subscription = Subscription(self, topic, durable=durable, group=group, consumer=consumer,
                                    buffer=buffer, from_start=from_start, claim_idle=claim_idle)
        return await subscription.start()

    async def resolve(self, urn: str) -> str | None:
        """Which system serves this URN now, if any (asks Redis, not the cache): the id in
        its URN key, else in its pattern key (a group id, ``~user:*``). Raises ``Timeout``
        (its ``timeout`` the client's ``command_timeout``) if Redis does not answer within
        ``command_timeout``."""
        session = await self._current()
        try:
            route = await session.resolve(urn, time.monotonic() + self.command_timeout, True, wait_for_successor=False)
        except UnknownUrn:
            return None
        except Timeout:
            raise Timeout(self.command_timeout, f"looking up {urn}") from None
        return route.system

    async def _command(self, *args: Any) -> Any:
        """One Redis command off the ask path (reminders, publishing), bounded by
        ``command_timeout``."""
        session = await self._current()
        return await session.command(time.monotonic() + self.command_timeout, *args)

    async def _write(self, *args: Any) -> Any:
        """One write that must survive a promotion at the client's ``durability`` (reminder
        registrations and cancellations): ``WAIT`` after it on the same connection."""
        session = await self._current()
        return await session.command_replicated(time.monotonic() + self.command_timeout, self.durability, *args)

    # -- reminders (conclib.reminders) -------------------------------------------------------

    async def register_reminder(
        self,
        urn: str,
        name: str,
        *,
        after: float | None = None,
        at: float | None = None,
        every: float | None = None,
        payload: Any = _NOTHING,
    ) -> int:
        """Registers a durable reminder for ``urn``: see :func:`conclib.reminders.register`."""
        if payload is _NOTHING:
            return await _reminders.register(self, urn, name, after=after, at=at, every=every)
        return await _reminders.register(self, urn, name, after=after, at=at, every=every, payload=payload)

    async def cancel_reminder(self, urn: str, name: str) -> bool:
        """Cancels ``urn``'s reminder ``name``: see :func:`conclib.reminders.cancel`."""
        return await _reminders.cancel(self, urn, name)

    async def list_reminders(self, urn: str) -> list[ReminderInfo]:
        """``urn``'s reminders (:class:`conclib.reminders.ReminderInfo`), sorted by name."""
        return await _reminders.list_reminders(self, urn)

    # -- durable executions (conclib.durable) ------------------------------------------------

    async def execution_result(self, urn: str, key: str) -> Finished | None:
        """Durable execution ``key`` of ``urn``: its :class:`~conclib.durable.Finished`
        result, or ``None`` while it has none. See :mod:`conclib.durable`."""
        return await _durable.result(self, urn, key)

    async def wait_execution(self, urn: str, key: str, *, timeout: float | None = None) -> Any:
        """Durable execution ``key`` of ``urn``'s result once it finished (``Timeout`` after
        ``timeout``, default the client's). See :func:`conclib.durable.wait_result`."""
        return await _durable.wait_result(lambda: self.execution_result(urn, key),
                                          self.timeout if timeout is None else float(timeout))

    async def resolve_promise(self, urn: str, key: str, name: str, value: Any) -> bool:
        """Resolves promise ``name`` of durable execution ``key`` of ``urn``; ``False`` if
        it was resolved already. See :func:`conclib.durable.resolve_promise`."""
        return await _durable.resolve_promise(self, urn, key, name, value)

    async def list_executions(self, urn: str) -> list[ExecutionInfo]:
        """The durable executions ``urn``'s journal holds (:class:`~conclib.durable.ExecutionInfo`)."""
        return await _durable.list_executions(self, urn)
