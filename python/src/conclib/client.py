"""The asyncio client: ``client = await conclib.connect(url, namespace=...)``.

One client serves any number of concurrent asks from any number of tasks. Like the Rust
``ProxyClient`` it has one reply list (``{ns}:reply:{128 random bits}``) read by one reader
task (``BLMPOP``), dispatching each frame by request id; requests to one stream made together
leave in one pipeline; a URN is resolved by its URN key, else by its pattern key (the group
activating ``user:*`` for ``user:42``), and cached for ``resolve_cache_ttl``; an answer passed
on to the URN's new holder names it (a route hint), which replaces the cache entry; a reply
``NotOwner``/``UnknownUrn`` drops the cache entry, resolves again and, if the URN moved to
another system, sends once more; after a Redis restart a URN the client knew is looked up
again until it reappears or the deadline passes (then ``Unavailable``, not ``UnknownUrn``).

Fork safety: the connections, the reader task and the reply list belong to the process and
event loop that made them. After ``os.fork()`` (gunicorn ``--preload``, uvicorn/multiprocessing
workers) the child never touches them (not even to close them: that could unregister the
parent's sockets from an epoll set both share); its first call connects anew, with a reply
list of its own. The same happens when the client is used from another event loop.

This module holds the client: its settings, its session (``_session``) in this process and
loop, its asks (the hot path of one to a URN it has a route for) and its tells. What a
request carries is checked and encoded in ``_message``; a request is sent and answered on
the session in ``_exchange``; the calls off the ask path (topics, reminders, durable
executions) are fronts of their modules (``topics``, ``reminders``, ``durable``), which send
their commands through the client's ``_command`` and ``_write``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from typing import Any

from . import codec
from . import durable as _durable
from . import reminders as _reminders
from . import topics as _topics
from ._holds import Hold, Holds
from ._outcome import interpret
from ._contracts import NOTHING
from ._exchange import exchange, exchange_raw, send_tell
from ._message import NIL, Message, Priority, checked_traceparent, priority_high
from ._message import encode_message as encode_message  # also ``conclib.client.encode_message``
from ._redispy_path import cancelling
from ._session import Session
from .durability import Durability
from .errors import (
    Closed,
    CodecError,
    ConclibError,
    ConfigError,
    Overloaded,
    Timeout,
    Unavailable,
    UnknownUrn,
    from_redis_error,
)
from .durable import ExecutionInfo, Finished
from .metrics import AskEvent, AskHook
from .protocol import (
    DEFAULT_NAMESPACE,
    HOLDER_FLAG,
    REPLY_HEADER_LEN,
    Keys,
    Status,
    check_name,
    ttl_ms,
)
from .reminders import ReminderInfo
from .topics import DEFAULT_BUFFER, DEFAULT_GROUP, DEFAULT_MAX_LEN, Subscription
from .trace import current_traceparent_bytes
from .url import RedisTarget, parse_url, redact

__all__ = ["DEFAULT_URL", "AsyncClient", "Message", "Priority", "connect"]

log = logging.getLogger("conclib")

DEFAULT_URL = "redis://127.0.0.1:6379"
"""The URL when none is given (as ``ProxyConfig``'s)."""

_NOTHING: Any = NOTHING

# Reply statuses ``ask``'s hot path leaves to ``exchange_raw``: a URN that may have moved
# (resolved again), and the proxy's deadline answer (judged against lost connections).
_JUDGED = frozenset({int(Status.UNKNOWN_URN), int(Status.NOT_OWNER), int(Status.TIMEOUT)})
_OK = int(Status.OK)


# Every live client, for the fork hook.
_CLIENTS: weakref.WeakSet[AsyncClient] = weakref.WeakSet()
# What forked children inherited and must never touch (nor let the garbage collector close).
_ABANDONED: list[object] = []


_running_loop = asyncio.get_running_loop

# This process's id, for the hot path's check that a session is this process's (a system
# call each time otherwise); renewed in a forked child before anything else runs there.
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()
    for client in list(_CLIENTS):
        client._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AsyncClient:
    """Asks and tells actors by URN through Redis (asyncio).

    ``url``: see :mod:`conclib.url`. ``namespace``: the key prefix the proxies serve under.
    ``timeout``: the default ask timeout (seconds; it is also the request's ``ttl``).
    ``tell_ttl``: how long a told message may wait for its proxy. ``max_payload``: the largest
    message (encoded) sent, in bytes. ``on_ask``: a metrics hook called after every ask.
    ``durability``: what a tell must reach before it returns (:mod:`conclib.durability`;
    default: the primary alone). ``client_hold``: how long after a proxy refused one of its
    asks ``Overloaded`` for its URN's own limit the client keeps that limit, refusing an ask
    or a tell to the URN itself while its own asks there fill it (0: never; README, Errors,
    "Refused at send").

    Connects on first use, or with ``await client.connect()``; ``async with`` closes it.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 5.0,
        tell_ttl: float = 60.0,
        command_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        resolve_cache_ttl: float = 1.0,
        lease_ttl: float = 15.0,
        max_payload: int = 8 * 1024 * 1024,
        tls_ca_file: str | None = None,
        on_ask: AskHook | None = None,
        durability: Durability | None = None,
        client_hold: float = 0.1,
    ) -> None:
        problem = check_name("namespace", namespace)
        if problem:
            raise ConfigError(problem)
        self.durability = durability if durability is not None else Durability.primary()
        for name, value in [("timeout", timeout), ("tell_ttl", tell_ttl), ("command_timeout", command_timeout),
                            ("connect_timeout", connect_timeout), ("max_payload", max_payload)]:
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        if not client_hold >= 0:
            raise ConfigError(f"client_hold must be 0 or more, got {client_hold!r}")
        self.url = url
        self.namespace = namespace
        self.timeout = float(timeout)
        self.tell_ttl = float(tell_ttl)
        self.command_timeout = float(command_timeout)
        self.connect_timeout = float(connect_timeout)
        self.resolve_cache_ttl = float(resolve_cache_ttl)
        self.lease_ttl = float(lease_ttl)
        self.max_payload = int(max_payload)
        self.on_ask = on_ask
        self._tls_ca_file = tls_ca_file
        self._target: RedisTarget = parse_url(url)
        if self.durability.n and not self.durability.timeout < self.command_timeout:
            # A tell (its WAIT included) is bounded by command_timeout.
            raise ConfigError(f"the durability's timeout ({self.durability.timeout} s) must be shorter than "
                              f"command_timeout ({self.command_timeout} s)")
        self._keys = Keys(namespace)
        # URNs refused lately, to refuse at send what the proxy would (``_holds.py``).
        self._holds = Holds(float(client_hold))
        self._session: Session | None = None
        self._closed = False
        _CLIENTS.add(self)

    def __repr__(self) -> str:
        return f"AsyncClient({redact(self.url)!r}, namespace={self.namespace!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> AsyncClient:
        """Connects now (else the first call does). ``Unavailable`` if Redis cannot be reached."""
        await self._current()
        return self

    async def __aenter__(self) -> AsyncClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the client: pending asks fail with ``Closed``, later calls too; deletes the
        reply list and closes the connections."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and session.pid == os.getpid():
            await session.close_anywhere()

    @property
    def refused_at_send(self) -> int:
        """How many asks and tells this client refused ``Overloaded`` itself, without
        sending them (``client_hold``; the Rust client's ``conclib_client_refused_at_send_total``)."""
        return self._holds.refused_at_send

    @property
    def reply_key(self) -> str | None:
        """The key of this process's reply list (``None`` before connecting)."""
        s = self._session
        return s.reply_key if s is not None and s.pid == os.getpid() else None

    def _forget_after_fork(self) -> None:
        """In a forked child: drop everything the parent's connection owned, untouched."""
        session, self._session = self._session, None
        if session is not None:
            _ABANDONED.append(session)

    def _ready(self) -> Session | None:
        """This process's and loop's session if it is connected (the fast path of ``_current``)."""
        s = self._session
        if (
            s is not None
            and s.ready
            and not self._closed
            and s.pid == _pid
            and s.loop is asyncio.get_running_loop()
        ):
            return s
        return None

    async def _current(self) -> Session:
        """This process's and loop's session, connecting if needed."""
        if self._closed:
            raise Closed()
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and (session.pid != os.getpid() or session.loop is not loop):
            self._session = None
            if session.pid != os.getpid():
                _ABANDONED.append(session)
            else:
                await session.close_anywhere()
            session = None
        if session is None:
            session = Session(self, loop)
            self._session = session
        try:
            await asyncio.shield(session.started)
        except asyncio.CancelledError:
            # The client was closed while connecting (its start cancelled), not this task:
            # the ask ends ``Closed``, as every ask pending at a close does.
            if session.closed and not cancelling():
                raise Closed() from None
            raise
        except BaseException as e:
            if self._session is session:
                self._session = None
                await session.aclose()
            if isinstance(e, ConclibError):
                raise
            raise from_redis_error(e) from e
        return session

    # -- asking ------------------------------------------------------------------------------

    def _encode(self, message: str | Message, payload: Any) -> tuple[str, bytes]:
        return encode_message(message, payload, self.max_payload)

    async def ask(
        self,
        urn: str,
        message: str | Message,
        payload: Any = _NOTHING,
        *,
        timeout: float | None = None,
        priority: Priority = "normal",
        traceparent: str | None = None,
    ) -> Any:
        """Asks the actor with this URN and returns its response, decoded from MessagePack.

        ``message`` is the message's wire name with ``payload`` its content (any
        MessagePack-able value, a dataclass, or ``codec.Encoded`` bytes; none: nil, a unit
        message), or a typed message object (its class has ``__conclib_name__``).
        ``timeout`` (default: the client's) bounds the whole ask and is the request's ``ttl``.
        ``priority="high"`` uses the actor's high-priority lane. ``traceparent``: the W3C
        trace context to send (default: the current OpenTelemetry span's, else a new trace).

        Raises ``HandlerError`` (the handler's error decoded in ``.error``), ``UnknownUrn``,
        ``NotExposed``, ``Panicked``, ``Timeout``, ``ActorStopped``, ``NoResponse``,
        ``MailboxFull``, ``Overloaded`` (from the proxy, or from this client without sending:
        ``client_hold``), ``CodecError``, ``TooLarge``, ``BadRequest``, ``Unavailable``,
        ``RedisError``, ``ProtocolError``, ``Closed``: all ``ConclibError``.
        """
        started = time.monotonic()
        label = "ok"
        name = message if isinstance(message, str) else str(getattr(message, "__conclib_name__", "?"))
        counted: Hold | None = None
        refused_here = False
        try:
            if timeout is None:
                timeout = self.timeout
            else:
                timeout = float(timeout)
                if not timeout > 0:
                    raise ValueError(f"timeout must be positive, got {timeout!r}")
            high = False if priority == "normal" else priority_high(priority)
            if payload is _NOTHING and type(message) is str:
                body = NIL  # a unit message by its wire name: nothing to encode
            else:
                name, body = encode_message(message, payload, self.max_payload)
            tp = current_traceparent_bytes() if traceparent is None else checked_traceparent(traceparent).encode()
            deadline = started + timeout
            if self._holds.any:
                # A URN this client holds full is refused here, as its proxy would.
                admitted = self._holds.admit(urn, started)
                if isinstance(admitted, Overloaded):
                    refused_here = True
                    raise admitted
                counted = admitted
            # The hot path (one server, connected, the URN resolved): the request queued
            # and its answer awaited here, with no coroutine of its own. Its ttl is the whole
            # timeout (what ran since ``started`` is not a millisecond).
            session = self._session
            raw = route = None
            # ``_ready()`` written out (one call less an ask).
            if (
                session is not None and session.ready and not self._closed and session.pid == _pid
                and session.loop is _running_loop() and not session.down
            ):
                raw = session.raw
                route = session.routes.cache.get(urn)
            if session is not None and raw is not None and route is not None and route.until > started:
                disconnects = session.disconnects
                request_id, waiter = raw.submit(route, urn, name, body, high, tp, deadline, timeout)
                try:
                    frame = await waiter
                except ConclibError as e:
                    raise session.at_deadline(e, timeout, disconnects) from None
                finally:
                    session.pending.pop(request_id, None)
                    session.written.discard(request_id)
                # Anything but an answer to interpret as it is goes on in ``exchange_raw``.
                if type(frame) is bytes:
                    status = frame[8]
                    if status == _OK:
                        try:
                            return codec.decode(frame[REPLY_HEADER_LEN:])
                        except CodecError as e:
                            raise CodecError(f"cannot decode the response: {e}") from None
                    # A route hint (``HOLDER_FLAG``, above every status) goes on too.
                    if status < HOLDER_FLAG and status not in _JUDGED:
                        return interpret(urn, name, timeout, status, frame[REPLY_HEADER_LEN:])
                status, reply = await exchange_raw(
                    session, raw, route, urn, name, body, timeout, high, tp, deadline, disconnects, frame
                )
            else:
                status, reply = await self._exchange_slow(urn, name, body, timeout, high, tp, started)
            return interpret(urn, name, timeout, status, reply)
        except ConclibError as e:
            if type(e) is Overloaded and not refused_here:
                self._holds.refused(urn, e, time.monotonic())
            if isinstance(e, Timeout) and self._session is not None:
                # Its system shut down meanwhile (it restarts or is being replaced): retryable.
                departed = await self._session.routes.unavailable_if_departed(e, urn)
                if departed is not e:
                    label = departed.label
                    raise departed from None
            label = e.label
            # One turn of the event loop before the error: an ask that fails at once (Redis
            # down) awaits nothing that suspends, and callers retrying such asks in a loop
            # would never let the loop run its timers, its I/O or this client's reconnection
            # (tests/test_load_faults.py).
            await asyncio.sleep(0)
            raise
        except asyncio.CancelledError:
            label = "cancelled"
            raise
        except BaseException:
            label = "error"
            raise
        finally:
            if counted is not None:
                counted.in_flight -= 1
            if self.on_ask is not None:
                try:
                    self.on_ask(AskEvent(urn, name, label, time.monotonic() - started))
                except Exception:  # noqa: BLE001 - a broken hook must not break asks
                    log.exception("the on_ask hook failed")

    async def _exchange_slow(
        self, urn: str, name: str, body: bytes, timeout: float, high: bool, tp: bytes, started: float
    ) -> tuple[int, bytes]:
        deadline = started + timeout
        session = self._ready()
        if session is None:
            try:
                session = await asyncio.wait_for(self._current(), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                raise Unavailable(f"could not connect to Redis within {timeout:.3f} s") from None
        return await exchange(session, urn, name, body, timeout, high, tp, deadline)

    async def tell(
        self,
        urn: str,
        message: str | Message,
        payload: Any = _NOTHING,
        *,
        priority: Priority = "normal",
        traceparent: str | None = None,
    ) -> None:
        """Tells the actor with this URN; returns once Redis holds the message. It is handled
        if the actor's system takes it within ``tell_ttl``; nothing is answered. Raises
        ``UnknownUrn`` if no system serves the URN, codec, size and Redis errors, and
        ``Timeout`` if Redis does not answer within ``command_timeout`` (a frozen server).
        With a ``durability`` asking for replicas it returns once they acknowledged it, and
        raises ``NotReplicated`` (an ``Unavailable``) if fewer did in time. Raises
        ``Overloaded`` without sending it while this client holds the URN full (``client_hold``):
        its proxy would drop it."""
        if self._holds.any:
            refused = self._holds.tell(urn, time.monotonic())
            if refused is not None:
                await asyncio.sleep(0)  # as ask's: a tell failing at once must not starve the loop
                raise refused
        high = priority_high(priority)
        name, body = self._encode(message, payload)
        tp = checked_traceparent(traceparent)
        timeout = self.command_timeout
        deadline = time.monotonic() + timeout
        # Connected and resolved: queued for the next write before this awaits anything (so
        # asks and tells made together leave together, in order).
        session = self._ready()
        if session is None:
            try:
                session = await asyncio.wait_for(self._current(), timeout)
            except asyncio.TimeoutError:
                raise Unavailable(f"could not connect to Redis within {timeout:.3f} s") from None
        await send_tell(session, urn, name, body, high, tp, ttl_ms(self.tell_ttl), self.durability, deadline, timeout)

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
        deadline = time.monotonic() + self.command_timeout
        try:
            route = await session.routes.resolve(urn, deadline, True, wait_for_successor=False)
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


async def connect(url: str = DEFAULT_URL, **options: Any) -> AsyncClient:
    """An :class:`AsyncClient`, connected: ``client = await conclib.connect(url, namespace="shop")``."""
    return await AsyncClient(url, **options).connect()

