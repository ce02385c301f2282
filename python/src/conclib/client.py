"""The asyncio client: ``client = await conclib.connect(url, namespace=...)``.

One client serves any number of concurrent asks from any number of tasks. Like the Rust
``ProxyClient`` it has one reply list (``{ns}:reply:{128 random bits}``) read by one reader
task (``BLMPOP``), dispatching each frame by request id; requests to one stream made together
leave in one pipeline; a URN is resolved by its URN key, else by its pattern key (the group
activating ``user:*`` for ``user:42``), and cached for ``resolve_cache_ttl``; a reply
``NotOwner``/``UnknownUrn`` drops the cache entry, resolves again and, if the URN moved to
another system, sends once more; after a Redis restart a URN the client knew is looked up
again until it reappears or the deadline passes (then ``Unavailable``, not ``UnknownUrn``).

Fork safety: the connections, the reader task and the reply list belong to the process and
event loop that made them. After ``os.fork()`` (gunicorn ``--preload``, uvicorn/multiprocessing
workers) the child never touches them (not even to close them: that could unregister the
parent's sockets from an epoll set both share); its first call connects anew, with a reply
list of its own. The same happens when the client is used from another event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import secrets
import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from . import codec
from ._raw import RawConnection, RespError, open_raw
from .errors import (
    ActorStopped,
    BadRequest,
    Closed,
    CodecError,
    ConclibError,
    ConfigError,
    HandlerError,
    MailboxFull,
    NoResponse,
    NotExposed,
    Panicked,
    ProtocolError,
    RedisError,
    Timeout,
    TooLarge,
    Unavailable,
    UnknownUrn,
)
from .metrics import AskEvent, AskHook
from .protocol import (
    DEFAULT_NAMESPACE,
    REPLY_HEADER_LEN,
    Keys,
    Status,
    check_name,
    pattern_prefix,
    request_fields,
    ttl_ms,
    valid_urn,
)
from .trace import current_traceparent, valid_traceparent
from .url import RedisTarget, build_client, parse_url, redact

__all__ = ["DEFAULT_URL", "AsyncClient", "Message", "Priority", "connect"]

log = logging.getLogger("conclib")

DEFAULT_URL = "redis://127.0.0.1:6379"
"""The URL when none is given (as ``ProxyConfig``'s)."""

Priority = Literal["normal", "high"]
"""The actor's mailbox lane: ``high`` overtakes its queued normal messages."""

REPLY_BLOCK_SECS = 2
"""How long the reply reader blocks in one ``BLMPOP``."""
REPLY_BATCH = 1024
"""The most replies taken by one ``BLMPOP``."""
SEND_BATCH = 32
"""The most requests appended by one pipeline (as the Rust client)."""
SEND_BATCH_BYTES = 1 << 20
"""The most body bytes appended by one pipeline (a single larger request goes alone)."""
RAW_UNANSWERED = 4096
"""On a raw connection: the most requests written whose ``XADD`` answers have not come."""
RAW_BUFFERED = 8 << 20
"""On a raw connection: the most bytes written and not yet taken by the kernel before the
next write waits."""
EXPIRY_TICK = 0.005
"""Asks time out at most this much after their deadline (their timers are shared)."""
WATCHDOG_EVERY = 1.0
"""How often a raw connection is checked for a Redis that stopped answering."""


class Message(Protocol):
    """A typed message: any object whose class names its wire name.

    Dataclasses are encoded as maps of their fields; define ``__conclib_encode__`` for any
    other shape (a Rust newtype struct is its bare value, a tuple struct a list).
    """

    __conclib_name__: str


_NOTHING: Any = object()

T = TypeVar("T")


# Every live client, for the fork hook.
_CLIENTS: weakref.WeakSet[AsyncClient] = weakref.WeakSet()
# What forked children inherited and must never touch (nor let the garbage collector close).
_ABANDONED: list[object] = []


def _after_fork_in_child() -> None:
    for client in list(_CLIENTS):
        client._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_connection_error(e: BaseException) -> bool:
    import redis.exceptions as rexc

    kinds: tuple[type[BaseException], ...] = (rexc.ConnectionError, rexc.TimeoutError, OSError, EOFError)
    for optional in ("ClusterDownError", "MasterDownError", "TryAgainError"):
        kind = getattr(rexc, optional, None)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            kinds += (kind,)
    if isinstance(e, kinds):
        return True
    # A cluster client that reaches no node says so with its generic exception.
    cluster = getattr(rexc, "RedisClusterException", None)
    return isinstance(cluster, type) and isinstance(e, cluster) and "cannot be connected" in str(e)


def _map_redis_error(e: BaseException) -> ConclibError:
    if isinstance(e, ConclibError):
        return e
    if _is_connection_error(e):
        return Unavailable(f"{type(e).__name__}: {e}")
    return RedisError(f"{type(e).__name__}: {e}")


def _bulk(value: bytes | str | int) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, int):
        value = str(value).encode()
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _pack(*args: bytes | str | int) -> bytes:
    """One command in RESP (what redis-py's ``pack_command`` makes, without its per-argument
    overhead)."""
    return b"*%d\r\n%b" % (len(args), b"".join([_bulk(a) for a in args]))


def _cancelling() -> bool:
    """Whether the current task is being cancelled (Python 3.11+; False before)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


async def _until(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[T], deadline: float) -> T:
    """``fut``'s result, ``asyncio.TimeoutError`` at ``deadline`` (``time.monotonic()``)."""
    return await asyncio.wait_for(fut, max(deadline - time.monotonic(), 0.0))


@dataclass
class _Route:
    system: str
    requests_key: str
    until: float
    # ``requests_key`` as a RESP bulk string (the raw writer's XADD).
    packed_key: bytes = b""


# What an ask's waiter holds instead of a reply frame (raw connections).
_GONE: Any = object()  # XADD answered nil: the stream does not exist (NOMKSTREAM)
_EXPIRED: Any = object()  # the ask's deadline passed


_XADD_HEAD = (
    b"*%d\r\n$4\r\nXADD\r\n%b$10\r\nNOMKSTREAM\r\n$1\r\n*\r\n$1\r\nv\r\n$1\r\n1\r\n"
    b"$2\r\nid\r\n$%d\r\n%b\r\n$3\r\nurn\r\n%b$3\r\nmsg\r\n%b$3\r\nttl\r\n$%d\r\n%b\r\n"
)
_PRIO_HIGH = b"$4\r\nprio\r\n$4\r\nhigh\r\n"
_XADD_TAIL = b"$2\r\ntp\r\n$%d\r\n%b\r\n$5\r\ncodec\r\n$7\r\nmsgpack\r\n$4\r\nbody\r\n$%d\r\n%b\r\n"


def _pack_request(
    packed_key: bytes, request_id: int, urn: bytes, msg: bytes, ttl: int, reply: bytes, high: bool, tp: bytes,
    body: bytes,
) -> bytes:
    """``XADD key NOMKSTREAM * <fields>`` of one request in RESP, the fields in the order of
    ``protocol.request_fields`` (``urn``, ``msg`` and ``reply`` given packed as whole
    name/value pairs' values: ``$n\\r\\n...\\r\\n``; ``reply`` empty for a tell)."""
    rid = b"%d" % request_id
    ttl_b = b"%d" % ttl
    n = 20 + (2 if reply else 0) + (2 if high else 0)
    head = _XADD_HEAD % (n, packed_key, len(rid), rid, urn, msg, len(ttl_b), ttl_b)
    tail = _XADD_TAIL % (len(tp), tp, len(body), body)
    if reply:
        head += reply
    if high:
        head += _PRIO_HIGH
    return head + tail


class _Entry:
    """One request queued for, or written to, the raw writer connection; ``answer`` takes
    its ``XADD``'s reply. An ask's ``future`` is its reply waiter (it gets the reply frame
    later, or ``_GONE``, or the write's error); a tell's gets the count of Redis losses read
    just before the write, or ``None`` (the stream is gone), as ``_Session.send``'s."""

    __slots__ = ("session", "data", "size", "request_id", "future", "losses")

    def __init__(self, session: _Session, data: bytes, size: int, request_id: int, future: asyncio.Future[Any]) -> None:
        self.session = session
        self.data = data
        self.size = size
        self.request_id = request_id
        self.future = future
        self.losses = 0

    def answer(self, reply: Any) -> None:
        s = self.session
        if s.wqueue and not s.flush_scheduled:  # a write that waited for answers may go now
            s.schedule_flush()
        fut = self.future
        if fut.done():  # its asker gave up, or (an ask) its answer came first
            return
        if type(reply) is bytes:
            if not self.request_id:
                fut.set_result(self.losses)
            elif s.losses != self.losses:
                fut.set_exception(Unavailable("Redis restarted without its data just as the request was written"))
            else:
                s.written.add(self.request_id)
        elif reply is None:
            fut.set_result(_GONE if self.request_id else None)
        elif isinstance(reply, ConnectionError):
            fut.set_exception(Closed() if s.closed else Unavailable(f"ConnectionError: {reply}"))
        elif isinstance(reply, RespError):
            fut.set_exception(RedisError(f"ResponseError: {reply.message}"))
        else:
            fut.set_exception(ProtocolError(f"unexpected answer to XADD: {reply!r}"))

    def fail(self, error: ConclibError) -> None:
        if not self.future.done():
            self.future.set_exception(error)
            self.future.exception()


class _ReaderTurn:
    """The reply reader on a raw connection: takes each ``BLMPOP``'s answer, hands the
    frames to their asks and sends the next ``BLMPOP`` at once (no task)."""

    __slots__ = ("session",)

    def __init__(self, session: _Session) -> None:
        self.session = session

    def answer(self, reply: Any) -> None:
        s = self.session
        if s.closed:
            return
        if type(reply) is list and len(reply) == 2 and type(reply[1]) is list:
            deliver = s._deliver
            for frame in reply[1]:
                deliver(frame)
        elif isinstance(reply, ConnectionError):
            return  # the connection's on_lost reconnects
        elif isinstance(reply, RespError):
            task = s.loop.create_task(s._reader_refused(reply.message))
            s.tasks.add(task)
            task.add_done_callback(s.tasks.discard)
            return
        elif reply is not None:
            log.warning("malformed BLMPOP answer: %r", reply)
        conn = s.rconn
        if conn is not None and not conn.closed:
            conn.send(s.blmpop, (self,))


@dataclass
class _Outgoing:
    fields: list[bytes | str | int]
    size: int
    # The count of Redis losses read just before the write (see ``_Session.identified``),
    # or None: the stream is gone (NOMKSTREAM).
    future: asyncio.Future[int | None]


class _Session:
    """The connections, reply list and reader of one client in one process and event loop."""

    def __init__(self, client: AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.pid = os.getpid()
        self.loop = loop
        self.keys = client._keys
        self.redis: Any = build_client(
            client._target,
            connect_timeout=client.connect_timeout,
            command_timeout=client.command_timeout + REPLY_BLOCK_SECS,
            tls_ca_file=client._tls_ca_file,
        )
        # One server (redis://, rediss://, unix): requests are written and replies read on
        # raw connections of the client's own (``_raw``), commands off the hot path go
        # through redis-py. Else (Sentinel) redis-py connections, or (Cluster) redis-py's
        # pipelines.
        self.raw = client._target.kind in ("standalone", "unix")
        # The reply reader blocks in BLMPOP: a connection of its own.
        self.reader_redis: Any = None if self.raw else build_client(
            client._target,
            connect_timeout=client.connect_timeout,
            command_timeout=client.command_timeout + REPLY_BLOCK_SECS,
            tls_ca_file=client._tls_ca_file,
            max_connections=2,
        )
        self.reply_key = self.keys.reply(secrets.token_hex(16))
        self.resolving: dict[str, asyncio.Future[_Route]] = {}
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 1
        self.cache: dict[str, _Route] = {}
        self.known: set[str] = set()
        self.run_id: str | None = None
        self.outbox: dict[str, list[_Outgoing]] = {}
        # Outside a cluster, requests leave from one writer task on a connection of its own
        # (packed here; every queued request in one write) and replies are read on another.
        self.direct = client._target.kind != "cluster"
        self.queue: list[tuple[str, _Outgoing]] = []
        self.wakeup = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None
        self.write_conn: Any = None
        self.read_conn: Any = None
        self.blmpop = _pack("BLMPOP", REPLY_BLOCK_SECS, 1, self.reply_key, "LEFT", "COUNT", REPLY_BATCH)
        # The raw path: the writer and reader connections, the requests waiting for the
        # next write, the reader's turn object, a watchdog timer.
        self.wconn: RawConnection | None = None
        self.rconn: RawConnection | None = None
        self.wqueue: list[_Entry] = []
        self.flush_scheduled = False
        self.wconnecting: asyncio.Task[None] | None = None
        self.turn = _ReaderTurn(self)
        self.watchdog: asyncio.TimerHandle | None = None
        self.packed_reply = b"$5\r\nreply\r\n" + _bulk(self.reply_key)
        self.packed: dict[str, bytes] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.disconnects = 0
        # Redis restarts: the run_id last seen, whether a connection is known lost (writes
        # fail at once until Redis answers again), how many times Redis came back empty, and
        # the asks whose requests Redis took (they die with an empty restart).
        self.seen_run_id: str | None = None
        self.down = False
        self.losses = 0
        self.written: set[int] = set()
        self.watcher: asyncio.Task[None] | None = None
        self.closed = False
        self.reader: asyncio.Task[None] | None = None
        # Asks whose deadlines fall in one tick of ``EXPIRY_TICK`` share one timer (raw path).
        self.expiry: dict[int, list[int]] = {}
        self.ready = False  # connected: ``_start`` is done
        self.started: asyncio.Task[None] = loop.create_task(self._start())

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            info = await asyncio.wait_for(self.redis.execute_command("INFO", "server"), self.client.connect_timeout)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"could not connect to {redact(self.client.url)} within {self.client.connect_timeout} s"
            ) from None
        except Exception as e:
            raise _map_redis_error(e) from e
        self.run_id, _ = _server_fields(info)
        self.seen_run_id = self.run_id
        if self.raw:
            self.wconn = await self._open_raw(self._writer_lost)
            self.rconn = await self._open_raw(self._reader_lost)
            self.rconn.send(self.blmpop, (self.turn,))
            self.watchdog = self.loop.call_later(WATCHDOG_EVERY, self._watch_connections)
            self.ready = True
            return
        if self.direct:
            self.write_conn = await self.redis.connection_pool.get_connection()
            self.read_conn = await self.reader_redis.connection_pool.get_connection()
            # The first BLMPOP leaves here: a reader cancelled (its loop closing) right after
            # it starts is then in a read, which redis-py lets a cancellation end.
            await self.read_conn.send_packed_command(self.blmpop, check_health=False)
            self.writer = self.loop.create_task(self._write_requests())
        self.reader = self.loop.create_task(self._read_replies())
        self.ready = True

    async def aclose(self) -> None:
        """Stops the reader, fails pending asks with ``Closed``, deletes the reply list and
        closes the connections."""
        if self.closed:
            return
        self.closed = True
        for task in [self.reader, self.started, self.watcher, self.writer, self.wconnecting, *self.tasks]:
            if task is not None and not task.done():
                task.cancel()
        if self.watchdog is not None:
            self.watchdog.cancel()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(Closed())
                fut.exception()  # retrieved: no "never retrieved" warning if nobody waits
        self.pending.clear()
        # A session that never connected sent nothing, so no reply list of it exists: no
        # DEL, which a Redis that did not answer the connection would hold for its second.
        if self.ready:
            try:
                await asyncio.wait_for(self.redis.execute_command("DEL", self.reply_key), 1.0)
            except BaseException as e:  # noqa: BLE001 - best effort; CancelledError re-raised
                if isinstance(e, asyncio.CancelledError):
                    raise
        try:
            await asyncio.wait_for(self._close_connections(), 2.0)
        except Exception:  # noqa: BLE001
            pass

    async def _close_connections(self) -> None:
        for raw in (self.wconn, self.rconn):
            if raw is not None:
                raw.close()
        for entry in self.wqueue:
            entry.fail(Closed())
        self.wqueue = []
        for conn, redis in ((self.write_conn, self.redis), (self.read_conn, self.reader_redis)):
            if conn is not None:
                await conn.disconnect()
                await redis.connection_pool.release(conn)
        for redis in (self.redis, self.reader_redis):
            if redis is None:
                continue
            close = getattr(redis, "aclose", None) or redis.close
            await close()
            pool = getattr(redis, "connection_pool", None)
            if pool is not None:
                await pool.disconnect()

    # -- resolving ---------------------------------------------------------------------------

    def forget(self, urn: str) -> None:
        self.cache.pop(urn, None)

    async def resolve(self, urn: str, deadline: float, fresh: bool) -> _Route:
        """The system serving ``urn`` and its request stream, from the cache unless ``fresh``:
        ``GET {ns}:urn:{urn}``, else (nil) ``GET {ns}:pattern:{prefix}`` for a URN with a
        pattern prefix (its value, a group id such as ``~user:*``, is used as a system id)."""
        now = time.monotonic()
        if not fresh:
            cached = self.cache.get(urn)
            if cached is not None and cached.until > now:
                return cached
        if not valid_urn(urn):
            raise UnknownUrn(urn, "not a valid URN")
        # Concurrent lookups of one URN share one GET.
        shared = self.resolving.get(urn)
        if shared is not None and not fresh:
            left = deadline - time.monotonic()
            try:
                return await asyncio.wait_for(asyncio.shield(shared), max(left, 0.0))
            except (Timeout, Unavailable):
                # First: ``Timeout`` is an ``asyncio.TimeoutError`` too (3.11). The shared
                # lookup gave up at its own asker's deadline (a shorter one), not ours:
                # look up ourselves.
                if time.monotonic() >= deadline:
                    raise
            except asyncio.TimeoutError:
                raise Timeout(0) from None
        lookup: asyncio.Future[_Route] = self.loop.create_future()
        self.resolving[urn] = lookup
        try:
            route = await self._lookup(urn, deadline)
        except BaseException as e:
            if not lookup.done():
                lookup.set_exception(e if isinstance(e, Exception) else Closed())
                lookup.exception()
            raise
        else:
            if not lookup.done():
                lookup.set_result(route)
            return route
        finally:
            if self.resolving.get(urn) is lookup:
                del self.resolving[urn]

    async def _lookup(self, urn: str, deadline: float) -> _Route:
        prefix = pattern_prefix(urn)
        while True:
            value = await self.command(deadline, "GET", self.keys.urn(urn))
            if value is None and prefix is not None:
                # No actor registered under the URN: the group activating its pattern, if
                # any, is sent to like a system.
                value = await self.command(deadline, "GET", self.keys.pattern(prefix))
            if value is not None:
                break
            self.forget(urn)
            await self.wait_if_redis_lost_it(urn, deadline)
        system = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        key = self.keys.requests(system)
        route = _Route(system, key, time.monotonic() + self.client.resolve_cache_ttl, _bulk(key))
        if len(self.cache) > 100_000:
            now = time.monotonic()
            self.cache = {k: r for k, r in self.cache.items() if r.until > now}
        self.cache[urn] = route
        if len(self.known) >= 100_000:
            self.known.clear()
        self.known.add(urn)
        return route

    async def wait_if_redis_lost_it(self, urn: str, deadline: float) -> None:
        """Redis does not know ``urn`` (or its system's stream). That is ``UnknownUrn``,
        unless Redis restarted less than one lease ago and this client knew the URN: then
        wait a little (return: look again) until the deadline, then ``Unavailable``."""
        if urn not in self.known or not await self.redis_restarted_within(self.client.lease_ttl, deadline):
            raise UnknownUrn(urn)
        wait = 0.025
        if time.monotonic() + wait >= deadline:
            raise Unavailable(f"Redis restarted moments ago and {urn} is not registered again yet")
        await asyncio.sleep(wait)

    async def redis_restarted_within(self, window: float, deadline: float) -> bool:
        info = None
        for attempt in range(3):  # a pooled connection may still be the one the restart broke
            try:
                info = await self.command(deadline, "INFO", "server")
                break
            except Unavailable:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.02)  # the watcher looks at Redis meanwhile
            except ConclibError:
                return False
        if info is None:
            return False
        run_id, uptime = _server_fields(info)
        return run_id is not None and run_id != self.run_id and uptime is not None and uptime < window + 1

    async def command(self, deadline: float, *args: Any) -> Any:
        """One command, given up at the deadline (``Timeout``; the caller turns it into
        ``Unavailable`` when the connection was lost meanwhile)."""
        # A closed session sends nothing more (an ask resolving or waiting for its URN's
        # return when the client was closed ends ``Closed``, not on a closed connection).
        if self.closed:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(0)
        if self.down:
            raise Unavailable("the connection to Redis is lost")
        try:
            return await asyncio.wait_for(self.redis.execute_command(*args), left)
        except asyncio.TimeoutError:
            raise Timeout(0) from None
        except ConclibError:
            raise
        except Exception as e:
            if self.closed:
                raise Closed() from None
            if _is_connection_error(e):
                self.link_lost()
            raise _map_redis_error(e) from e

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        route: _Route,
        urn: str,
        build: Any,
        deadline: float,
    ) -> int:
        """Appends one request (``build(route)`` makes its fields) to the serving system's
        stream. Requests to one stream queued before the writer runs leave in one pipeline.
        Returns the count of Redis losses read just before the write. ``Unavailable`` at
        once while the connection is known lost."""
        while True:
            if self.down:
                raise Unavailable("the connection to Redis is lost")
            fields, size = build()
            fut: asyncio.Future[int | None] = self.loop.create_future()
            if self.raw:
                self.enqueue(_Entry(self, _pack("XADD", route.requests_key, "NOMKSTREAM", "*", *fields), size, 0, fut))
            elif self.direct:
                self.queue.append((route.requests_key, _Outgoing(fields, size, fut)))
                self.wakeup.set()
            else:
                queue = self.outbox.get(route.requests_key)
                if queue is None:
                    queue = self.outbox[route.requests_key] = []
                    task = self.loop.create_task(self._flush(route.requests_key))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                queue.append(_Outgoing(fields, size, fut))
            try:
                appended = await _until(self.loop, fut, deadline)
            except asyncio.TimeoutError:
                raise Timeout(0) from None
            if appended is not None:
                return appended
            # The stream is gone (NOMKSTREAM): so is its system, unless Redis lost its data
            # moments ago: then resolve and send again.
            self.forget(urn)
            await self.wait_if_redis_lost_it(urn, deadline)
            route = await self.resolve(urn, deadline, True)

    # -- the raw connections (one server) ----------------------------------------------------

    async def _open_raw(self, on_lost: Any) -> RawConnection:
        conn = await open_raw(
            self.client._target, connect_timeout=self.client.connect_timeout, tls_ca_file=self.client._tls_ca_file
        )
        if self.closed:
            conn.close()
            raise Closed()
        conn.on_lost = functools.partial(on_lost, conn)
        return conn

    def expire_at(self, deadline: float, request_id: int) -> None:
        """The ask ``request_id`` (in ``pending``) gets ``_EXPIRED`` at ``deadline`` (at most
        ``EXPIRY_TICK`` later): one timer per tick, not per ask."""
        tick = math.ceil(deadline / EXPIRY_TICK)
        ids = self.expiry.get(tick)
        if ids is None:
            ids = self.expiry[tick] = []
            self.loop.call_later(max(tick * EXPIRY_TICK - time.monotonic(), 0.0), self._expire_tick, tick)
        ids.append(request_id)

    def _expire_tick(self, tick: int) -> None:
        pending = self.pending
        for request_id in self.expiry.pop(tick, ()):
            fut = pending.get(request_id)
            if fut is not None and not fut.done():
                fut.set_result(_EXPIRED)

    def enqueue(self, entry: _Entry) -> None:
        """Queues a request for the next write (at the end of this turn of the event loop:
        whatever is queued meanwhile leaves in the same write)."""
        self.wqueue.append(entry)
        if not self.flush_scheduled:
            self.schedule_flush()

    def schedule_flush(self) -> None:
        self.flush_scheduled = True
        self.loop.call_soon(self._write_raw)

    def _write_raw(self) -> None:
        self.flush_scheduled = False
        if not self.wqueue:
            return
        if self.closed:
            return
        if self.down:
            queue, self.wqueue = self.wqueue, []
            for entry in queue:
                entry.fail(Unavailable("the connection to Redis is lost"))
            return
        conn = self.wconn
        if conn is None or conn.closed:
            if self.wconnecting is None:
                self.wconnecting = self.loop.create_task(self._connect_writer())
            return
        # Bounded: the rest waits for answers (``_Entry.answer`` schedules the next write).
        room = RAW_UNANSWERED - len(conn.waiting)
        if room <= 0 or conn.buffered() >= RAW_BUFFERED:
            return
        queue = self.wqueue
        if len(queue) > room:
            queue, self.wqueue = queue[:room], queue[room:]
        else:
            self.wqueue = []
        queue = [e for e in queue if not e.future.done()]  # their askers gave up
        if not queue:
            return
        losses = self.losses
        for entry in queue:
            entry.losses = losses
        conn.send(b"".join([e.data for e in queue]), queue)

    async def _connect_writer(self) -> None:
        try:
            conn = await self._open_raw(self._writer_lost)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            queue, self.wqueue = self.wqueue, []
            error = _map_redis_error(e) if isinstance(e, Exception) else Closed()
            if isinstance(error, Unavailable) and not self.closed:
                self.link_lost()
            for entry in queue:
                entry.fail(error)
            return
        finally:
            self.wconnecting = None
        self.wconn = conn
        self._write_raw()

    def _writer_lost(self, conn: RawConnection, error: ConnectionError) -> None:
        if self.wconn is conn:
            self.wconn = None
        if not self.closed:
            log.debug("the request connection was lost (%s)", error)
            self.link_lost()

    def _reader_lost(self, conn: RawConnection, error: ConnectionError) -> None:
        if self.rconn is conn:
            self.rconn = None
        if self.closed:
            return
        log.debug("reading replies failed (%s); reconnecting", error)
        self.link_lost()
        if self.reader is None or self.reader.done():
            self.reader = self.loop.create_task(self._reconnect_reader())

    async def _reconnect_reader(self) -> None:
        backoff = 0.01
        while not self.closed:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
            try:
                conn = await self._open_raw(self._reader_lost)
            except (asyncio.CancelledError, Closed):
                raise
            except Exception as e:  # noqa: BLE001 - still unreachable: try again
                if _is_connection_error(e) or isinstance(e, asyncio.TimeoutError):
                    self.link_lost()
                log.debug("reconnecting the reply reader failed (%s); retrying", e)
                continue
            self.rconn = conn
            conn.send(self.blmpop, (self.turn,))
            return

    async def _reader_refused(self, error: str) -> None:
        """Redis refused the ``BLMPOP``: the reply list was overwritten, or something else
        (logged); the next one leaves a moment later."""
        if "WRONGTYPE" in error:
            await self._reply_list_clobbered(error)
        else:
            log.warning("reading replies failed: %s", error)
        await asyncio.sleep(0.01)
        conn = self.rconn
        if conn is not None and not conn.closed and not self.closed:
            conn.send(self.blmpop, (self.turn,))

    def _watch_connections(self) -> None:
        """Every second: a raw connection waiting longer than the command timeout (plus the
        ``BLMPOP`` block time) for Redis to answer is dropped (as redis-py's socket timeout
        would): the writer reconnects on the next write, the reader at once."""
        if self.closed:
            return
        limit = self.client.command_timeout + REPLY_BLOCK_SECS
        for conn in (self.wconn, self.rconn):
            if conn is not None and not conn.closed and conn.silent_for() > limit:
                conn.abort(ConnectionError(f"Redis did not answer within {limit:.0f} s"))
        self.watchdog = self.loop.call_later(WATCHDOG_EVERY, self._watch_connections)

    async def _write_requests(self) -> None:
        """The writer (outside a cluster): whatever was queued while it wrote the last batch
        leaves in one write, of ``XADD``s to any streams; then their answers are read."""
        conn = self.write_conn
        while not _cancelling():
            await self.wakeup.wait()
            self.wakeup.clear()
            queued, self.queue = self.queue, []
            start = 0
            while start < len(queued):
                end, size = start + 1, queued[start][1].size
                while end < len(queued) and end - start < 8 * SEND_BATCH and size + queued[end][1].size <= SEND_BATCH_BYTES:
                    size += queued[end][1].size
                    end += 1
                await self._write_batch(conn, queued[start:end])
                start = end

    async def _write_batch(self, conn: Any, batch: list[tuple[str, _Outgoing]]) -> None:
        import redis.exceptions as rexc

        batch = [(key, r) for key, r in batch if not r.future.done()]  # their askers gave up
        if not batch:
            return
        losses = self.losses
        results: list[Any] = []
        try:
            if self.down:
                raise Unavailable("the connection to Redis is lost")
            packed = b"".join([_pack("XADD", key, "NOMKSTREAM", "*", *r.fields) for key, r in batch])
            await conn.send_packed_command(packed, check_health=False)
            for _ in batch:
                try:
                    results.append(await conn.read_response())
                except rexc.ResponseError as e:
                    results.append(e)
        except asyncio.CancelledError:
            for _, request in batch:
                if not request.future.done():
                    request.future.set_exception(Closed())
                    request.future.exception()
            raise
        except Exception as e:  # the rest of the batch failed
            if _cancelling():  # (redis-py may replace a cancellation by the error of its disconnect)
                for _, request in batch:
                    if not request.future.done():
                        request.future.set_exception(Closed())
                        request.future.exception()
                raise asyncio.CancelledError() from e
            if _is_connection_error(e) and not isinstance(e, ConclibError):
                self.link_lost()
                try:
                    await conn.disconnect(nowait=True)  # reconnects on the next write
                except Exception:  # noqa: BLE001
                    pass
            results += [e] * (len(batch) - len(results))
        for (_, request), result in zip(batch, results):
            if request.future.done():
                continue
            if isinstance(result, BaseException):
                request.future.set_exception(_map_redis_error(result))
                request.future.exception()
            else:
                request.future.set_result(losses if result is not None else None)

    async def _flush(self, key: str) -> None:
        queued = self.outbox.pop(key, [])
        batches: list[list[_Outgoing]] = []
        size = 0
        for request in queued:
            if batches and len(batches[-1]) < SEND_BATCH and size + request.size <= SEND_BATCH_BYTES:
                size += request.size
                batches[-1].append(request)
            else:
                size = request.size
                batches.append([request])
        await asyncio.gather(*(self._send_batch(key, batch) for batch in batches))

    async def _send_batch(self, key: str, batch: list[_Outgoing]) -> None:
        results: list[Any]
        losses = self.losses
        try:
            if self.down:
                raise Unavailable("the connection to Redis is lost")
            if len(batch) == 1:
                results = [await self.redis.execute_command("XADD", key, "NOMKSTREAM", "*", *batch[0].fields)]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for request in batch:
                    pipe.execute_command("XADD", key, "NOMKSTREAM", "*", *request.fields)
                results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(Closed())
                    request.future.exception()
            raise
        except Exception as e:  # the whole batch failed
            if _is_connection_error(e):
                self.link_lost()
            results = [e] * len(batch)
        for request, result in zip(batch, results):
            if request.future.done():  # its asker gave up
                continue
            if isinstance(result, BaseException):
                if _is_connection_error(result) and not isinstance(result, ConclibError):
                    self.link_lost()
                request.future.set_exception(_map_redis_error(result))
                request.future.exception()
            else:
                request.future.set_result(losses if result is not None else None)

    # -- reading replies ---------------------------------------------------------------------

    async def _read_replies(self) -> None:
        backoff = 0.01
        sent = False  # the first BLMPOP was sent by _start
        # (``_cancelling()``: redis-py may swallow a cancellation while it disconnects)
        while not self.closed and not _cancelling():
            try:
                if self.read_conn is not None:
                    if sent:
                        await self.read_conn.send_packed_command(self.blmpop, check_health=False)
                    sent = True
                    answer = await self.read_conn.read_response()
                else:
                    answer = await self.reader_redis.execute_command(
                        "BLMPOP", REPLY_BLOCK_SECS, 1, self.reply_key, "LEFT", "COUNT", REPLY_BATCH
                    )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.closed or _cancelling():
                    # (redis-py may replace a cancellation by the error of its disconnect)
                    return
                if _is_connection_error(e):
                    self.link_lost()
                    if self.read_conn is not None:
                        try:
                            await self.read_conn.disconnect(nowait=True)
                        except Exception:  # noqa: BLE001
                            pass
                    log.debug("reading replies failed (%s); retrying", e)
                elif "WRONGTYPE" in str(e):
                    await self._reply_list_clobbered(str(e))
                else:
                    log.warning("reading replies failed: %s", e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            backoff = 0.01
            if answer is None:
                continue
            if not (isinstance(answer, (list, tuple)) and len(answer) == 2 and isinstance(answer[1], (list, tuple))):
                log.warning("malformed BLMPOP answer: %r", answer)
                continue
            for frame in answer[1]:
                self._deliver(frame)

    def _deliver(self, frame: Any) -> None:
        if not isinstance(frame, bytes) or len(frame) < REPLY_HEADER_LEN:
            log.warning("dropped a malformed reply frame (%d bytes)", len(frame) if isinstance(frame, bytes) else -1)
            return
        request_id = int.from_bytes(frame[:8], "big")
        fut = self.pending.pop(request_id, None)
        # No waiter: the ask timed out or was cancelled; the reply is discarded.
        if fut is not None and not fut.done():
            fut.set_result(frame)

    async def _reply_list_clobbered(self, error: str) -> None:
        """Something else than a list sits at our reply list's key: answers pushed there are
        lost (the proxy skips a reply list of the wrong type). Fail the waiting asks now
        rather than at their deadlines, and take the key back."""
        log.warning("the reply list %s holds something else than a list (%s); failing %d asks",
                    self.reply_key, error, len(self.pending))
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ProtocolError(f"the reply list {self.reply_key} was overwritten: {error}"))
                fut.exception()
        self.pending.clear()
        try:
            await asyncio.wait_for(self.redis.execute_command("DEL", self.reply_key), self.client.command_timeout)
        except Exception as e:  # noqa: BLE001
            log.debug("could not delete the clobbered reply list: %s", e)

    # -- Redis restarts ----------------------------------------------------------------------

    def link_lost(self) -> None:
        """A connection to Redis was lost: until Redis answers again, writes fail at once;
        asks that run out of time report ``Unavailable``; once it answers, ``_watch``
        identifies it (``identified``)."""
        self.disconnects += 1
        self.down = True
        if not self.closed and (self.watcher is None or self.watcher.done()):
            self.watcher = self.loop.create_task(self._watch())

    async def _watch(self) -> None:
        pause = 0.01
        while not self.closed:
            try:
                info = await asyncio.wait_for(
                    self.redis.execute_command("INFO", "server", "persistence", "replication"),
                    min(self.client.connect_timeout, 1.0),
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - still down (or INFO refused: look no further)
                if not (_is_connection_error(e) or isinstance(e, asyncio.TimeoutError)):
                    self.down = False
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.2)
                continue
            self.down = False
            identity = _identity(info)
            if identity is not None:
                self.identified(*identity)
            return

    def identified(self, run_id: str, kept_data: bool) -> None:
        """Redis answered after a lost connection. A new ``run_id`` is a new Redis process;
        one that started empty (no persistence file loaded or appended to, not a promoted
        replica) lost every request it held: their asks fail ``Unavailable`` now, not at
        their deadlines. (As the Rust client; a proxy that held such a request may still
        have handled it.)"""
        before, self.seen_run_id = self.seen_run_id, run_id
        if before is None or before == run_id:
            return
        self.disconnects += 1
        if kept_data:
            log.info("Redis restarted (run_id %s) with its data: pending asks wait for their answers", run_id)
            return
        self.losses += 1
        lost = [rid for rid in self.written if rid in self.pending]
        for rid in lost:
            fut = self.pending.pop(rid)
            if not fut.done():
                fut.set_exception(Unavailable("Redis restarted without its data; the request was lost"))
                fut.exception()
        self.written.clear()
        log.warning("Redis restarted empty (run_id %s): %d asks whose requests it held failed Unavailable",
                    run_id, len(lost))

    # -- outcome -----------------------------------------------------------------------------

    def timed_out(self, timeout: float, disconnects: int) -> ConclibError:
        if self.disconnects != disconnects:
            return Unavailable(f"the connection to Redis was lost; no answer within {timeout:.3f} s")
        return Timeout(timeout)

    def at_deadline(self, e: ConclibError, timeout: float, disconnects: int) -> ConclibError:
        if isinstance(e, Timeout):
            return self.timed_out(timeout, disconnects)
        return e

    def check_deadline_answer(self, status: int, timeout: float, disconnects: int) -> None:
        """A reply of status ``TIMEOUT`` is the proxy's own deadline answer, which may come a
        moment before ours: if the connection was lost during the ask, it ends as one that
        reached its deadline after a loss does (the README's restart rules)."""
        if status == Status.TIMEOUT and self.disconnects != disconnects:
            raise self.timed_out(timeout, disconnects)

    async def moved(self, urn: str, route: _Route, deadline: float) -> _Route | None:
        """A ``NOT_OWNER`` or ``UNKNOWN_URN`` answer: the URN may have moved to another
        system since it was resolved. Resolves it again (URN key, then pattern key): the new
        route if it leads elsewhere now (send once more), else ``None``."""
        self.forget(urn)
        try:
            fresh = await self.resolve(urn, deadline, True)
        except ConclibError:
            return None
        return fresh if fresh.system != route.system else None


def _info_fields(info: Any) -> dict[str, str]:
    if isinstance(info, dict):
        return {str(k): str(v) for k, v in info.items()}
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def _identity(info: Any) -> tuple[str, bool] | None:
    """``run_id`` and whether Redis may hold data from before it started (it loads, loaded
    keys from, or appends to a persistence file, or is a replica that took over), from an
    ``INFO server persistence replication`` answer."""
    f = _info_fields(info)
    run_id = f.get("run_id")
    if not run_id:
        return None
    loaded = f.get("rdb_last_load_keys_loaded", "0")
    kept = (
        f.get("loading") in ("1", "True")
        or f.get("aof_enabled") in ("1", "True")
        or (loaded.isdigit() and int(loaded) > 0)
        or any(c != "0" for c in f.get("master_replid2", "0"))
    )
    return run_id, kept


def _server_fields(info: Any) -> tuple[str | None, float | None]:
    """``run_id`` and ``uptime_in_seconds`` of an ``INFO server`` answer."""
    if isinstance(info, dict):
        run_id = info.get("run_id")
        uptime = info.get("uptime_in_seconds")
        return (str(run_id) if run_id is not None else None, float(uptime) if uptime is not None else None)
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    run_id = None
    uptime = None
    for line in text.splitlines():
        if line.startswith("run_id:"):
            run_id = line[7:].strip()
        elif line.startswith("uptime_in_seconds:"):
            try:
                uptime = float(line[18:].strip())
            except ValueError:
                pass
    return run_id, uptime


class AsyncClient:
    """Asks and tells actors by URN through Redis (asyncio).

    ``url``: see :mod:`conclib.url`. ``namespace``: the key prefix the proxies serve under.
    ``timeout``: the default ask timeout (seconds; it is also the request's ``ttl``).
    ``tell_ttl``: how long a told message may wait for its proxy. ``max_payload``: the largest
    message (encoded) sent, in bytes. ``on_ask``: a metrics hook called after every ask.

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
    ) -> None:
        problem = check_name("namespace", namespace)
        if problem:
            raise ConfigError(problem)
        for name, value in [("timeout", timeout), ("tell_ttl", tell_ttl), ("command_timeout", command_timeout),
                            ("connect_timeout", connect_timeout), ("max_payload", max_payload)]:
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
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
        self._keys = Keys(namespace)
        self._session: _Session | None = None
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
            await self._close_session(session)

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

    async def _close_session(self, session: _Session) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover
            running = None
        if session.loop is running:
            await session.aclose()
        elif not session.loop.is_closed() and session.loop.is_running():
            # Its loop runs in another thread: close it there.
            asyncio.run_coroutine_threadsafe(session.aclose(), session.loop)
        else:
            # Its loop is gone: nothing can be awaited there; let the sockets be collected.
            session.closed = True

    def _ready(self) -> _Session | None:
        """This process's and loop's session if it is connected (the fast path of ``_current``)."""
        s = self._session
        if (
            s is not None
            and s.ready
            and not self._closed
            and s.pid == os.getpid()
            and s.loop is asyncio.get_running_loop()
        ):
            return s
        return None

    async def _current(self) -> _Session:
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
                await self._close_session(session)
            session = None
        if session is None:
            session = _Session(self, loop)
            self._session = session
        try:
            await asyncio.shield(session.started)
        except asyncio.CancelledError:
            # The client was closed while connecting (its start cancelled), not this task:
            # the ask ends ``Closed``, as every ask pending at a close does.
            task = asyncio.current_task()
            cancelling = getattr(task, "cancelling", None)  # 3.11+
            if session.closed and not (cancelling is not None and cancelling()):
                raise Closed() from None
            raise
        except BaseException as e:
            if self._session is session:
                self._session = None
                await session.aclose()
            if isinstance(e, ConclibError):
                raise
            raise _map_redis_error(e) from e
        return session

    # -- asking ------------------------------------------------------------------------------

    def _encode(self, message: str | Message, payload: Any) -> tuple[str, bytes]:
        if isinstance(message, str):
            name = message
            body = codec.encode(None if payload is _NOTHING else payload)
        else:
            found: Any = getattr(type(message), "__conclib_name__", None) or getattr(message, "__conclib_name__", None)
            if not isinstance(found, str):
                raise TypeError(
                    f"a message is a wire name (str) and a payload, or an object whose class has "
                    f"__conclib_name__; got {type(message).__name__}"
                )
            if payload is not _NOTHING:
                raise TypeError("a typed message carries its own payload: pass no payload")
            name = found
            body = codec.encode(message)
        if len(body) > self.max_payload:
            raise TooLarge(f"the message is {len(body)} bytes, the limit is {self.max_payload}")
        return name, body

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
        ``MailboxFull``, ``CodecError``, ``TooLarge``, ``BadRequest``, ``Unavailable``,
        ``RedisError``, ``ProtocolError``, ``Closed``: all ``ConclibError``.
        """
        started = time.monotonic()
        label = "ok"
        name = message if isinstance(message, str) else str(getattr(message, "__conclib_name__", "?"))
        try:
            timeout = self.timeout if timeout is None else float(timeout)
            if not timeout > 0:
                raise ValueError(f"timeout must be positive, got {timeout!r}")
            high = _priority(priority)
            name, body = self._encode(message, payload)
            tp = _traceparent(traceparent)
            status, reply = await self._exchange(urn, name, body, timeout, high, tp, started)
            return _interpret(urn, name, timeout, status, reply)
        except ConclibError as e:
            label = e.label
            raise
        except asyncio.CancelledError:
            label = "cancelled"
            raise
        except BaseException:
            label = "error"
            raise
        finally:
            if self.on_ask is not None:
                try:
                    self.on_ask(AskEvent(urn, name, label, time.monotonic() - started))
                except Exception:  # noqa: BLE001 - a broken hook must not break asks
                    log.exception("the on_ask hook failed")

    def _exchange(
        self, urn: str, name: str, body: bytes, timeout: float, high: bool, tp: str, started: float
    ) -> Awaitable[tuple[int, bytes]]:
        session = self._ready()
        if session is not None and session.raw:
            route = session.cache.get(urn)
            if route is not None and route.until > time.monotonic():
                # The hot path: connected, resolved.
                return self._exchange_raw(
                    session, route, urn, name, body, timeout, high, tp, started + timeout, session.disconnects
                )
        return self._exchange_slow(urn, name, body, timeout, high, tp, started)

    async def _exchange_slow(
        self, urn: str, name: str, body: bytes, timeout: float, high: bool, tp: str, started: float
    ) -> tuple[int, bytes]:
        deadline = started + timeout
        session = self._ready()
        if session is None:
            try:
                session = await asyncio.wait_for(self._current(), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                raise Unavailable(f"could not connect to Redis within {timeout:.3f} s") from None
        disconnects = session.disconnects
        route = session.cache.get(urn)
        if route is None or route.until <= time.monotonic():
            try:
                route = await session.resolve(urn, deadline, False)
            except ConclibError as e:
                raise session.at_deadline(e, timeout, disconnects) from None
        if session.raw:
            return await self._exchange_raw(session, route, urn, name, body, timeout, high, tp, deadline, disconnects)
        retried = False
        while True:
            request_id = session.next_id
            session.next_id += 1
            waiter: asyncio.Future[bytes] = session.loop.create_future()
            session.pending[request_id] = waiter

            def build(request_id: int = request_id) -> tuple[list[bytes | str | int], int]:
                fields = request_fields(
                    request_id=request_id,
                    urn=urn,
                    message=name,
                    ttl=ttl_ms(deadline - time.monotonic()),
                    reply=session.reply_key,
                    priority_high=high,
                    traceparent=tp,
                    codec="msgpack",
                    body=body,
                )
                return fields, len(body)

            try:
                try:
                    losses = await session.send(route, urn, build, deadline)
                except ConclibError as e:
                    raise session.at_deadline(e, timeout, disconnects) from None
                if request_id in session.pending:  # else its answer already came
                    if session.losses != losses:
                        raise Unavailable("Redis restarted without its data just as the request was written")
                    session.written.add(request_id)
                try:
                    frame = await _until(session.loop, waiter, deadline)
                except asyncio.TimeoutError:
                    raise session.timed_out(timeout, disconnects) from None
            finally:
                session.pending.pop(request_id, None)
                session.written.discard(request_id)
            status = frame[8]
            session.check_deadline_answer(status, timeout, disconnects)
            if status in (Status.NOT_OWNER, Status.UNKNOWN_URN) and not retried:
                retried = True
                moved = await session.moved(urn, route, deadline)
                if moved is not None:
                    route = moved
                    continue
            return status, frame[REPLY_HEADER_LEN:]

    async def _exchange_raw(
        self, session: _Session, route: _Route, urn: str, name: str, body: bytes, timeout: float, high: bool,
        tp: str, deadline: float, disconnects: int,
    ) -> tuple[int, bytes]:
        """``_exchange`` on raw connections: per ask one future (its reply waiter, which also
        learns the fate of its ``XADD``) and one timer; no task, no ``wait_for``."""
        loop = session.loop
        packed = session.packed
        urn_p = packed.get(urn)
        if urn_p is None:
            if len(packed) > 10_000:
                packed.clear()
            urn_p = packed[urn] = _bulk(urn)
        name_p = packed.get(name)
        if name_p is None:
            name_p = packed[name] = _bulk(name)
        tp_b = tp.encode()
        retried = False
        while True:
            if session.down:
                raise Unavailable("the connection to Redis is lost")
            left = deadline - time.monotonic()
            if left <= 0:
                raise session.timed_out(timeout, disconnects)
            request_id = session.next_id
            session.next_id = request_id + 1
            waiter: asyncio.Future[Any] = loop.create_future()
            session.pending[request_id] = waiter
            data = _pack_request(
                route.packed_key, request_id, urn_p, name_p, ttl_ms(left), session.packed_reply, high, tp_b, body
            )
            session.enqueue(_Entry(session, data, len(body), request_id, waiter))
            session.expire_at(deadline, request_id)
            try:
                frame = await waiter
            except ConclibError as e:
                raise session.at_deadline(e, timeout, disconnects) from None
            finally:
                session.pending.pop(request_id, None)
                session.written.discard(request_id)
            if frame is _EXPIRED:
                raise session.timed_out(timeout, disconnects)
            if frame is _GONE:
                # The stream is gone (NOMKSTREAM): so is its system, unless Redis lost its
                # data moments ago: then resolve and send again.
                session.forget(urn)
                try:
                    await session.wait_if_redis_lost_it(urn, deadline)
                    route = await session.resolve(urn, deadline, True)
                except ConclibError as e:
                    raise session.at_deadline(e, timeout, disconnects) from None
                continue
            status = frame[8]
            session.check_deadline_answer(status, timeout, disconnects)
            if status in (Status.NOT_OWNER, Status.UNKNOWN_URN) and not retried:
                retried = True
                moved = await session.moved(urn, route, deadline)
                if moved is not None:
                    route = moved
                    continue
            return status, frame[REPLY_HEADER_LEN:]

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
        ``Timeout`` if Redis does not answer within ``command_timeout`` (a frozen server)."""
        high = _priority(priority)
        name, body = self._encode(message, payload)
        tp = _traceparent(traceparent)
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
        disconnects = session.disconnects
        ttl = ttl_ms(self.tell_ttl)

        def build() -> tuple[list[bytes | str | int], int]:
            fields = request_fields(
                request_id=0,
                urn=urn,
                message=name,
                ttl=ttl,
                reply=None,
                priority_high=high,
                traceparent=tp,
                codec="msgpack",
                body=body,
            )
            return fields, len(body)

        try:
            route = session.cache.get(urn)
            if route is None or route.until <= time.monotonic():
                route = await session.resolve(urn, deadline, False)
            await session.send(route, urn, build, deadline)
        except ConclibError as e:
            raise session.at_deadline(e, timeout, disconnects) from None

    async def resolve(self, urn: str) -> str | None:
        """Which system serves this URN now, if any (asks Redis, not the cache): the id in
        its URN key, else in its pattern key (a group id, ``~user:*``). Raises ``Timeout``
        (its ``timeout`` the client's ``command_timeout``) if Redis does not answer within
        ``command_timeout``."""
        session = await self._current()
        try:
            route = await session.resolve(urn, time.monotonic() + self.command_timeout, True)
        except UnknownUrn:
            return None
        except Timeout:
            raise Timeout(self.command_timeout, f"looking up {urn}") from None
        return route.system


def _priority(priority: str) -> bool:
    if priority == "high":
        return True
    if priority == "normal":
        return False
    raise ValueError(f"priority must be 'normal' or 'high', got {priority!r}")


def _traceparent(traceparent: str | None) -> str:
    if traceparent is None:
        return current_traceparent()
    if not valid_traceparent(traceparent):
        raise ValueError(f"not a W3C traceparent: {traceparent!r}")
    return traceparent


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", "replace")


def _interpret(urn: str, message: str, timeout: float, status: int, payload: bytes) -> Any:
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
    if status == Status.BAD_REQUEST:
        raise BadRequest(_text(payload))
    if status == Status.CODEC_ERROR:
        raise CodecError(_text(payload))
    if status == Status.TOO_LARGE:
        raise TooLarge(_text(payload))
    raise ProtocolError(f"unknown reply status {status}")


async def connect(url: str = DEFAULT_URL, **options: Any) -> AsyncClient:
    """An :class:`AsyncClient`, connected: ``client = await conclib.connect(url, namespace="shop")``."""
    return await AsyncClient(url, **options).connect()


async def _bounded(awaitable: Awaitable[T], seconds: float) -> T:
    return await asyncio.wait_for(awaitable, seconds)
