"""The one-server path (``redis://``, ``rediss://``, ``redis+unix://``): requests written and
replies read on two raw connections of the client's own (``_raw``), with no task per ask.

Requests queued in one turn of the event loop leave in one write (at most
``RAW_UNANSWERED`` whose ``XADD`` answers have not come, and ``RAW_BUFFERED`` bytes the
kernel has not taken); the reader sends its next ``BLMPOP`` from the read callback of the
last one's answer; asks whose deadlines fall in one tick of ``EXPIRY_TICK`` share a timer;
a watchdog drops a connection Redis stopped answering.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import struct
import time
from typing import Any

from ._contracts import Route, SessionLink
from ._raw import RawConnection, RespError, bulk, open_raw
from .errors import (
    Closed,
    ConclibError,
    ProtocolError,
    RedisError,
    Unavailable,
    fail,
    from_redis_error,
    is_connection_error,
    is_failover_reply,
)
from .protocol import REPLY_HEADER_LEN, ttl_ms


log = logging.getLogger("conclib")

RAW_UNANSWERED = 4096
"""The most requests written whose ``XADD`` (or batch) answers have not come."""
SEND_BATCH = 32
"""The most requests appended by one command (as the Rust client's): small enough that a
burst leaves as several commands, so Redis hands the proxy the first while it appends the
rest."""
SEND_BATCH_BYTES = 1 << 20
"""The most body bytes appended by one command (a single larger request goes alone)."""
RAW_BUFFERED = 8 << 20
"""The most bytes written and not yet taken by the kernel before the next write waits."""
EXPIRY_TICK = 0.005
"""Asks time out at most this much after their deadline (their timers are shared)."""
WATCHDOG_EVERY = 1.0
"""How often the connections are checked for a Redis that stopped answering."""

# What an ask's waiter holds instead of a reply frame.
GONE: Any = object()  # XADD answered nil: the stream does not exist (NOMKSTREAM)
EXPIRED: Any = object()  # the ask's deadline passed

_PRIO_HIGH = b"$4\r\nprio\r\n$4\r\nhigh\r\n"
# A reply frame's request id (its first 8 bytes, big-endian), as a 1-tuple.
_request_id = struct.Struct(">Q").unpack_from


Request = tuple[bytes, bytes, int, int, int, "asyncio.Future[Any]"]
"""One request queued for, or written to, the writer connection: its stream's key (packed);
its fields as ``pack_batch``'s script reads them, packed: their count, then the ``count``
fields (name, value, ...); ``count``; the size of its body; its id (0: a tell); its waiter.
A tuple, as cheap to make as anything is (one an ask)."""


def request_template(urn: bytes, msg: bytes, reply: bytes, high: bool) -> bytes:
    """The fields of an ask's request entry in RESP, preceded by their count (bulk strings:
    count, name, value, ...: a ``Request``'s fields) with what changes from one ask to the
    next left open: a ``%``-format of the lengths and values of its id, its ``ttl``, its
    ``tp`` and its body (``pack_request``). In the order of ``protocol.request_fields``;
    ``urn``, ``msg`` and ``reply`` given packed (``$n\\r\\n...\\r\\n``: ``reply`` the whole
    name/value pair, empty for a tell; an ask's ``rt 1`` follows it): ``fields_count(bool(reply), high)`` fields."""

    def fixed(packed: bytes) -> bytes:
        return packed.replace(b"%", b"%%")

    return b"".join([
        bulk(fields_count(bool(reply), high)),
        b"$1\r\nv\r\n$1\r\n1\r\n$2\r\nid\r\n$%d\r\n%b\r\n$3\r\nurn\r\n",
        fixed(urn), b"$3\r\nmsg\r\n", fixed(msg), b"$3\r\nttl\r\n$%d\r\n%b\r\n", fixed(reply),
        # ``rt 1``: the answer names the URN's holder when another system passed the ask on.
        b"$2\r\nrt\r\n$1\r\n1\r\n" if reply else b"",
        _PRIO_HIGH if high else b"",
        b"$2\r\ntp\r\n$%d\r\n%b\r\n$5\r\ncodec\r\n$7\r\nmsgpack\r\n$4\r\nbody\r\n$%d\r\n%b\r\n",
    ])


def fields_count(reply: bool, high: bool) -> int:
    """How many fields (bulk strings after their count) ``request_template`` holds."""
    return 16 + (4 if reply else 0) + (2 if high else 0)


def pack_request(template: bytes, request_id: int, ttl: bytes, tp: bytes, body: bytes) -> bytes:
    """One request's fields in RESP: its ``request_template`` filled in (``ttl``: the
    field's digits)."""
    rid = b"%d" % request_id
    return template % (len(rid), rid, len(ttl), ttl, len(tp), tp, len(body), body)


def pack_xadd(key: bytes, fields: bytes, count: int) -> bytes:
    """``XADD key NOMKSTREAM * <fields>`` (``key`` packed; ``fields`` a ``Request``'s: their
    count, then ``count`` fields): one request, nil if the stream is gone."""
    return b"*%d\r\n$4\r\nXADD\r\n%b$10\r\nNOMKSTREAM\r\n$1\r\n*\r\n%b" % (
        4 + count, key, fields[len(bulk(count)):]
    )


def pack_batch(key: bytes, requests: list[Request]) -> bytes:
    """``EVAL <SEND_SCRIPT> 1 key <count> <fields> ...``: several requests to one stream in
    one command, as the Rust client appends them (``conclib-redis``'s ``SEND_SCRIPT``):
    Redis appends them all at once and then wakes the proxy once for all of them (one
    ``XADD`` each would wake it for each); 1, or 0 if the stream is gone (none appended)."""
    parts = [b""]
    items = 4
    for _, fields, count, _, _, _ in requests:
        parts.append(fields)  # their count, then the fields: the script's arguments
        items += 1 + count
    parts[0] = b"*%d\r\n$4\r\nEVAL\r\n%b$1\r\n1\r\n%b" % (items, _SEND_SCRIPT, key)
    return b"".join(parts)


def pack_command(key: bytes, requests: list[Request]) -> bytes:
    """The command appending ``requests`` (at least one) to the stream ``key``: one alone
    ``pack_xadd``, several ``pack_batch`` (``_Written`` tells their answers apart by
    that count)."""
    if len(requests) == 1:
        _, fields, count, _, _, _ = requests[0]
        return pack_xadd(key, fields, count)
    return pack_batch(key, requests)


# As ``conclib-redis/src/protocol/scripts.rs``'s ``SEND_SCRIPT``, byte for byte.
_SEND_SCRIPT = bulk(
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local i = 1\n"
    "while i <= #ARGV do\n"
    "  local n = tonumber(ARGV[i])\n"
    "  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + n))\n"
    "  i = i + 1 + n\n"
    "end\n"
    "return 1"
)
_ASK_FIELDS = fields_count(True, False)
_ASK_FIELDS_HIGH = fields_count(True, True)


class _Written:
    """The answer of one command of the writer connection, handed to each of its requests
    as their own ``XADD``'s would be: one request's ``XADD`` (an entry id, or nil: the
    stream is gone), or a ``pack_batch`` of several (1, or 0: the stream is gone).

    An ask's waiter gets its reply frame later (its id goes into ``written``), ``GONE``, or
    the write's error; a tell's gets the count of Redis losses read just before the write
    (``losses``), or ``None`` (the stream is gone), as ``Session.send``'s."""

    __slots__ = ("path", "requests", "losses")

    def __init__(self, path: RawPath, requests: list[Request], losses: int) -> None:
        self.path = path
        self.requests = requests
        self.losses = losses

    def answer(self, reply: Any) -> None:
        path = self.path
        requests = self.requests
        path.unanswered -= len(requests)
        if path.wqueue and not path.flush_scheduled:  # a write that waited for answers may go now
            path.schedule_flush()
        s = path.session
        if len(requests) > 1 and type(reply) is int:
            reply = b"" if reply == 1 else None if reply == 0 else [reply]  # as an XADD's
        if type(reply) is bytes:  # appended
            restarted = s.losses != self.losses
            written = s.written
            for _, _, _, _, request_id, fut in requests:
                if fut.done():  # its asker gave up, or (an ask) its answer came first
                    continue
                if not request_id:
                    fut.set_result(self.losses)
                elif restarted:
                    fail(fut, Unavailable("Redis restarted without its data just as the request was written"))
                else:
                    written.add(request_id)
        elif reply is None:
            for _, _, _, _, request_id, fut in requests:
                if not fut.done():
                    fut.set_result(GONE if request_id else None)
        else:
            for _, _, _, _, _, fut in requests:
                if isinstance(reply, ConnectionError):
                    fail(fut, Closed() if s.closed else Unavailable(f"ConnectionError: {reply}"))
                elif isinstance(reply, RespError) and is_failover_reply(reply.message):
                    fail(fut, Unavailable(f"ResponseError: {reply.message}"))
                elif isinstance(reply, RespError):
                    fail(fut, RedisError(f"ResponseError: {reply.message}"))
                else:
                    fail(fut, ProtocolError(f"unexpected answer to XADD: {reply!r}"))


class _Waited:
    """The answer of a ``WAIT`` on the writer connection (``RawPath.send_wait``): how many
    replicas acknowledged the connection's writes so far."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[Any]) -> None:
        self.fut = fut

    def answer(self, reply: Any) -> None:
        if type(reply) is int:
            if not self.fut.done():
                self.fut.set_result(reply)
        elif isinstance(reply, ConnectionError):
            fail(self.fut, Unavailable(f"the connection was lost during WAIT: {reply}"))
        elif isinstance(reply, RespError):
            fail(self.fut, RedisError(f"WAIT: {reply.message}"))
        else:
            fail(self.fut, ProtocolError(f"unexpected answer to WAIT: {reply!r}"))


class _ReaderTurn:
    """The reply reader: takes each ``BLMPOP``'s answer, hands the frames to their asks and
    sends the next ``BLMPOP`` at once (no task)."""

    __slots__ = ("path",)

    def __init__(self, path: RawPath) -> None:
        self.path = path

    def answer(self, reply: Any) -> None:
        path = self.path
        s = path.session
        if s.closed:
            return
        if type(reply) is list and len(reply) == 2 and type(reply[1]) is list:
            # ``Session.deliver`` written out: this loop runs once per ask.
            pending = s.pending
            for frame in reply[1]:
                if type(frame) is bytes and len(frame) >= REPLY_HEADER_LEN:
                    fut = pending.pop(_request_id(frame)[0], None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                else:
                    s.deliver(frame)
        elif isinstance(reply, ConnectionError):
            return  # the connection's on_lost reconnects
        elif isinstance(reply, RespError):
            s.spawn(path.reader_refused(reply.message))
            return
        elif reply is not None:
            log.warning("malformed BLMPOP answer: %r", reply)
        conn = path.rconn
        if conn is not None and not conn.closed:
            conn.send(path.blmpop, (self,))


class RawPath:
    """The writer and reader connections of one session, the requests waiting for the next
    write, the asks' shared deadline timers and the watchdog."""

    def __init__(self, session: SessionLink, blmpop: bytes) -> None:
        self.session = session
        self.loop = session.loop
        self.blmpop = blmpop
        self.wconn: RawConnection | None = None
        self.rconn: RawConnection | None = None
        self.wqueue: list[Request] = []
        self.flush_scheduled = False
        self.wconnecting: asyncio.Task[None] | None = None
        self.reconnecting: asyncio.Task[None] | None = None
        self.turn = _ReaderTurn(self)
        self.watchdog: asyncio.TimerHandle | None = None
        # What every ask's request holds packed: the reply pair; and the request templates of
        # the (URN, message, priority) asked lately.
        self.packed_reply = b"$5\r\nreply\r\n" + bulk(session.reply_key)
        self.templates: dict[tuple[str, str, bool], bytes] = {}
        # Requests written whose ``XADD`` (or batch) answers have not come.
        self.unanswered = 0
        # Asks whose deadlines fall in one tick of ``EXPIRY_TICK`` share one timer; the
        # tick of the last ask's deadline and its list (0: none).
        self.expiry: dict[int, list[int]] = {}
        self.last_tick = 0
        self.last_ids: list[int] = []
        # The ttl field (``ttl_ms(left)``, packed) of the last ask's ``left``.
        self.ttl_for = -1.0
        self.ttl_field = b""

    async def start(self) -> None:
        self.wconn = await self._open(self._writer_lost)
        self.rconn = await self._open(self._reader_lost)
        self.rconn.send(self.blmpop, (self.turn,))
        self.watchdog = self.loop.call_later(WATCHDOG_EVERY, self._watch_connections)

    def cancel(self) -> list[asyncio.Task[Any] | None]:
        """Stops its tasks and timers (the session is closing): the tasks, for
        ``stop_tasks`` once its connections are closed."""
        tasks = [self.reconnecting, self.wconnecting]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
        if self.watchdog is not None:
            self.watchdog.cancel()
        return tasks

    async def close(self) -> None:
        for raw in (self.wconn, self.rconn):
            if raw is not None:
                raw.close()
        for request in self.wqueue:
            fail(request[5], Closed())
        self.wqueue = []

    def append(self, requests_key: str, fields: list[bytes | str | int], size: int, fut: asyncio.Future[Any]) -> None:
        """Queues a tell (``Session.send``)."""
        packed = b"".join([bulk(len(fields)), *[bulk(f) for f in fields]])
        self.enqueue((bulk(requests_key), packed, len(fields), size, 0, fut))

    def send_wait(self, replicas: int, timeout_ms: int) -> asyncio.Future[Any]:
        """``WAIT replicas timeout_ms`` on the writer connection, after what it wrote so
        far: the future of how many replicas acknowledged it (``Unavailable`` when the
        connection is lost or gone: a ``WAIT`` on a new one would count none of those
        writes)."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        conn = self.wconn
        if conn is None or conn.closed or self.session.down:
            fail(fut, Unavailable("the connection to Redis is lost"))
            return fut
        conn.send(b"*3\r\n$4\r\nWAIT\r\n" + bulk(replicas) + bulk(timeout_ms), (_Waited(fut),))
        return fut

    async def _open(self, on_lost: Any) -> RawConnection:
        client = self.session.client
        conn = await open_raw(client._target, connect_timeout=client.connect_timeout, tls_ca_file=client._tls_ca_file)
        if self.session.closed:
            conn.close()
            raise Closed()
        conn.on_lost = functools.partial(on_lost, conn)
        return conn

    def submit(
        self, route: Route, urn: str, name: str, body: bytes, high: bool, tp: bytes, deadline: float, left: float
    ) -> tuple[int, asyncio.Future[Any]]:
        """Queues one ask's request for the next write (``left``: seconds to its
        ``deadline``, positive): its request id and its waiter, in ``pending``, which gets
        the reply frame, ``GONE``, ``EXPIRED`` at the deadline, or the write's error."""
        s = self.session
        request_id = s.next_id
        s.next_id = request_id + 1
        waiter: asyncio.Future[Any] = self.loop.create_future()
        s.pending[request_id] = waiter
        key = (urn, name, high)
        template = self.templates.get(key)
        if template is None:
            if len(self.templates) > 10_000:
                self.templates.clear()
            template = self.templates[key] = request_template(bulk(urn), bulk(name), self.packed_reply, high)
        if left != self.ttl_for:  # asks with the same timeout share their ttl field
            self.ttl_for, self.ttl_field = left, b"%d" % ttl_ms(left)
        fields = pack_request(template, request_id, self.ttl_field, tp, body)
        self.wqueue.append((
            route.packed_for(high), fields, _ASK_FIELDS_HIGH if high else _ASK_FIELDS, len(body), request_id, waiter
        ))
        if not self.flush_scheduled:
            self.schedule_flush()
        # ``expire_at`` written out for the common case: the tick of the ask before.
        tick = math.ceil(deadline / EXPIRY_TICK)
        if tick == self.last_tick:
            self.last_ids.append(request_id)
        else:
            self.expire_at(deadline, request_id)
        return request_id, waiter

    def expire_at(self, deadline: float, request_id: int) -> None:
        """The ask ``request_id`` (in ``pending``) gets ``EXPIRED`` at ``deadline`` (at most
        ``EXPIRY_TICK`` later): one timer per tick, not per ask."""
        tick = math.ceil(deadline / EXPIRY_TICK)
        ids = self.expiry.get(tick)
        if ids is None:
            ids = self.expiry[tick] = []
            self.loop.call_later(max(tick * EXPIRY_TICK - time.monotonic(), 0.0), self._expire_tick, tick)
        ids.append(request_id)
        self.last_tick, self.last_ids = tick, ids

    def _expire_tick(self, tick: int) -> None:
        if tick == self.last_tick:
            self.last_tick, self.last_ids = 0, []
        pending = self.session.pending
        for request_id in self.expiry.pop(tick, ()):
            fut = pending.get(request_id)
            if fut is not None and not fut.done():
                fut.set_result(EXPIRED)

    def enqueue(self, request: Request) -> None:
        """Queues a request for the next write (at the end of this turn of the event loop:
        whatever is queued meanwhile leaves in the same write)."""
        self.wqueue.append(request)
        if not self.flush_scheduled:
            self.schedule_flush()

    def schedule_flush(self) -> None:
        self.flush_scheduled = True
        self.loop.call_soon(self._write)

    def _write(self) -> None:
        self.flush_scheduled = False
        if not self.wqueue:
            return
        s = self.session
        if s.closed:
            return
        if s.down:
            queue, self.wqueue = self.wqueue, []
            for request in queue:
                fail(request[5], Unavailable("the connection to Redis is lost"))
            return
        conn = self.wconn
        if conn is None or conn.closed:
            if self.wconnecting is None:
                self.wconnecting = self.loop.create_task(self._connect_writer())
            return
        # Bounded: the rest waits for answers (``_Written.answer`` schedules the next write).
        room = RAW_UNANSWERED - self.unanswered
        if room <= 0 or conn.buffered() >= RAW_BUFFERED:
            return
        queue = self.wqueue
        if len(queue) > room:
            queue, self.wqueue = queue[:room], queue[room:]
        else:
            self.wqueue = []
        # By stream, in order: one request alone as an XADD, several in commands of at most
        # SEND_BATCH requests and SEND_BATCH_BYTES of bodies (``pack_batch``).
        streams: dict[bytes, list[Request]] = {}
        for request in queue:
            if request[5].done():  # its asker gave up
                continue
            same = streams.get(request[0])
            if same is None:
                streams[request[0]] = [request]
            else:
                same.append(request)
        if not streams:
            return
        losses = s.losses
        data: list[bytes] = []
        answers: list[_Written] = []
        for key, requests in streams.items():
            batch: list[Request] = []
            size = 0
            for request in requests:
                if batch and (len(batch) >= SEND_BATCH or size + request[3] > SEND_BATCH_BYTES):
                    data.append(pack_command(key, batch))
                    answers.append(_Written(self, batch, losses))
                    batch, size = [], 0
                batch.append(request)
                size += request[3]
            data.append(pack_command(key, batch))
            answers.append(_Written(self, batch, losses))
        self.unanswered += sum(len(e) for e in streams.values())
        conn.send(b"".join(data), answers)

    async def _connect_writer(self) -> None:
        try:
            conn = await self._open(self._writer_lost)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            queue, self.wqueue = self.wqueue, []
            error = from_redis_error(e) if isinstance(e, Exception) else Closed()
            if isinstance(error, Unavailable) and not self.session.closed:
                self.session.link_lost()
            for request in queue:
                fail(request[5], error)
            return
        finally:
            self.wconnecting = None
        self.wconn = conn
        self._write()

    def _writer_lost(self, conn: RawConnection, error: ConnectionError) -> None:
        if self.wconn is conn:
            self.wconn = None
        if not self.session.closed:
            log.debug("the request connection was lost (%s)", error)
            self.session.link_lost()

    def _reader_lost(self, conn: RawConnection, error: ConnectionError) -> None:
        if self.rconn is conn:
            self.rconn = None
        if self.session.closed:
            return
        log.debug("reading replies failed (%s); reconnecting", error)
        self.session.link_lost()
        if self.reconnecting is None or self.reconnecting.done():
            self.reconnecting = self.loop.create_task(self._reconnect_reader())

    async def _reconnect_reader(self) -> None:
        backoff = 0.01
        while not self.session.closed:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
            try:
                conn = await self._open(self._reader_lost)
            except (asyncio.CancelledError, Closed):
                raise
            except Exception as e:  # noqa: BLE001 - still unreachable: try again
                if is_connection_error(e) or isinstance(e, asyncio.TimeoutError):
                    self.session.link_lost()
                log.debug("reconnecting the reply reader failed (%s); retrying", e)
                continue
            self.rconn = conn
            conn.send(self.blmpop, (self.turn,))
            return

    async def reader_refused(self, error: str) -> None:
        """Redis refused the ``BLMPOP``: the reply list was overwritten, or something else
        (logged); the next one leaves a moment later."""
        if "WRONGTYPE" in error:
            await self.session.reply_list_clobbered(error)
        else:
            log.warning("reading replies failed: %s", error)
        await asyncio.sleep(0.01)
        conn = self.rconn
        if conn is not None and not conn.closed and not self.session.closed:
            conn.send(self.blmpop, (self.turn,))

    def _watch_connections(self) -> None:
        """Every second: a connection waiting longer than the command timeout (plus the
        ``BLMPOP`` block time) for Redis to answer is dropped (as redis-py's socket timeout
        would): the writer reconnects on the next write, the reader at once."""
        s = self.session
        if s.closed:
            return
        limit = s.reply_wait_limit
        for conn in (self.wconn, self.rconn):
            if conn is not None and not conn.closed and conn.silent_for() > limit:
                conn.abort(ConnectionError(f"Redis did not answer within {limit:.0f} s"))
        self.watchdog = self.loop.call_later(WATCHDOG_EVERY, self._watch_connections)
