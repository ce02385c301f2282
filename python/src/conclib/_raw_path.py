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
import time
from typing import TYPE_CHECKING, Any

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
)
from .protocol import REPLY_HEADER_LEN, ttl_ms

if TYPE_CHECKING:
    from ._session import Route, Session

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


def request_template(urn: bytes, msg: bytes, reply: bytes, high: bool) -> bytes:
    """The fields of an ask's request entry in RESP (bulk strings: name, value, ...) with
    what changes from one ask to the next left open: a ``%``-format of the lengths and
    values of its id, its ``ttl``, its ``tp`` and its body (``pack_request``). In the order
    of ``protocol.request_fields``; ``urn``, ``msg`` and ``reply`` given packed
    (``$n\\r\\n...\\r\\n``: ``reply`` the whole name/value pair, empty for a tell):
    ``fields_count(bool(reply), high)`` bulk strings."""

    def fixed(packed: bytes) -> bytes:
        return packed.replace(b"%", b"%%")

    return b"".join([
        b"$1\r\nv\r\n$1\r\n1\r\n$2\r\nid\r\n$%d\r\n%b\r\n$3\r\nurn\r\n",
        fixed(urn), b"$3\r\nmsg\r\n", fixed(msg), b"$3\r\nttl\r\n$%d\r\n%b\r\n", fixed(reply),
        _PRIO_HIGH if high else b"",
        b"$2\r\ntp\r\n$%d\r\n%b\r\n$5\r\ncodec\r\n$7\r\nmsgpack\r\n$4\r\nbody\r\n$%d\r\n%b\r\n",
    ])


def fields_count(reply: bool, high: bool) -> int:
    """How many bulk strings ``request_template`` holds."""
    return 16 + (2 if reply else 0) + (2 if high else 0)


def pack_request(template: bytes, request_id: int, ttl: int, tp: bytes, body: bytes) -> bytes:
    """One request's fields in RESP: its ``request_template`` filled in."""
    rid = b"%d" % request_id
    ttl_b = b"%d" % ttl
    return template % (len(rid), rid, len(ttl_b), ttl_b, len(tp), tp, len(body), body)


def pack_xadd(key: bytes, fields: bytes, count: int) -> bytes:
    """``XADD key NOMKSTREAM * <fields>`` (``key`` packed; ``count`` bulk strings in
    ``fields``): one request, nil if the stream is gone."""
    return b"*%d\r\n$4\r\nXADD\r\n%b$10\r\nNOMKSTREAM\r\n$1\r\n*\r\n%b" % (4 + count, key, fields)


def pack_batch(key: bytes, entries: list[Entry]) -> bytes:
    """``EVAL <SEND_SCRIPT> 1 key <count> <fields> ...``: several requests to one stream in
    one command, as the Rust client appends them (``conclib-redis``'s ``SEND_SCRIPT``):
    Redis appends them all at once and then wakes the proxy once for all of them (one
    ``XADD`` each would wake it for each); 1, or 0 if the stream is gone (none appended)."""
    parts = [b""]
    items = 4
    for e in entries:
        parts.append(b"$%d\r\n%d\r\n%b" % (len(str(e.count)), e.count, e.fields))
        items += 1 + e.count
    parts[0] = b"*%d\r\n$4\r\nEVAL\r\n%b$1\r\n1\r\n%b" % (items, _SEND_SCRIPT, key)
    return b"".join(parts)


# As ``conclib-redis/src/protocol.rs``'s ``SEND_SCRIPT``, byte for byte.
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


class _Batch:
    """The answer of one ``pack_batch`` command, handed to each of its entries as their
    ``XADD``'s would be (appended, the stream gone, or the error)."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    def answer(self, reply: Any) -> None:
        entries = self.entries
        if type(reply) is not int or reply != 1:
            if type(reply) is int and reply == 0:
                reply = None  # the stream is gone
            elif not isinstance(reply, (ConnectionError, RespError)):
                reply = [reply]  # neither 0 nor 1: a ProtocolError for each ask (``Entry.answer``)
            for e in entries:
                e.answer(reply)
            return
        # Appended (``Entry.answer``'s first case written out for the batch: once per ask).
        path = entries[0].path
        path.unanswered -= len(entries)
        if path.wqueue and not path.flush_scheduled:
            path.schedule_flush()
        s = path.session
        losses = s.losses
        written = s.written
        for e in entries:
            fut = e.future
            if fut.done():
                continue
            if not e.request_id:
                fut.set_result(e.losses)
            elif e.losses != losses:
                fail(fut, Unavailable("Redis restarted without its data just as the request was written"))
            else:
                written.add(e.request_id)


class Entry:
    """One request queued for, or written to, the writer connection; ``answer`` takes its
    ``XADD``'s reply (or its batch's, through ``_Batch``). An ask's ``future`` is its reply
    waiter (it gets the reply frame later, or ``GONE``, or the write's error); a tell's gets
    the count of Redis losses read just before the write, or ``None`` (the stream is gone),
    as ``Session.send``'s."""

    __slots__ = ("path", "key", "fields", "count", "size", "request_id", "future", "losses")

    def __init__(
        self, path: RawPath, key: bytes, fields: bytes, count: int, size: int, request_id: int,
        future: asyncio.Future[Any],
    ) -> None:
        self.path = path
        self.key = key  # the stream's key, packed
        self.fields = fields  # the entry's fields, packed: ``count`` bulk strings
        self.count = count
        self.size = size
        self.request_id = request_id
        self.future = future
        self.losses = 0

    def answer(self, reply: Any) -> None:
        path = self.path
        path.unanswered -= 1
        if path.wqueue and not path.flush_scheduled:  # a write that waited for answers may go now
            path.schedule_flush()
        fut = self.future
        if fut.done():  # its asker gave up, or (an ask) its answer came first
            return
        s = path.session
        if type(reply) is bytes:
            if not self.request_id:
                fut.set_result(self.losses)
            elif s.losses != self.losses:
                fail(fut, Unavailable("Redis restarted without its data just as the request was written"))
            else:
                s.written.add(self.request_id)
        elif reply is None:
            fut.set_result(GONE if self.request_id else None)
        elif isinstance(reply, ConnectionError):
            fail(fut, Closed() if s.closed else Unavailable(f"ConnectionError: {reply}"))
        elif isinstance(reply, RespError):
            fail(fut, RedisError(f"ResponseError: {reply.message}"))
        else:
            fail(fut, ProtocolError(f"unexpected answer to XADD: {reply!r}"))

    def fail(self, error: ConclibError) -> None:
        fail(self.future, error)


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
                    fut = pending.pop(int.from_bytes(frame[:8], "big"), None)
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

    def __init__(self, session: Session, blmpop: bytes) -> None:
        self.session = session
        self.loop = session.loop
        self.blmpop = blmpop
        self.wconn: RawConnection | None = None
        self.rconn: RawConnection | None = None
        self.wqueue: list[Entry] = []
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
        # Asks whose deadlines fall in one tick of ``EXPIRY_TICK`` share one timer.
        self.expiry: dict[int, list[int]] = {}

    async def start(self) -> None:
        self.wconn = await self._open(self._writer_lost)
        self.rconn = await self._open(self._reader_lost)
        self.rconn.send(self.blmpop, (self.turn,))
        self.watchdog = self.loop.call_later(WATCHDOG_EVERY, self._watch_connections)

    def cancel(self) -> None:
        """Stops its tasks and timers (the session is closing)."""
        for task in (self.reconnecting, self.wconnecting):
            if task is not None and not task.done():
                task.cancel()
        if self.watchdog is not None:
            self.watchdog.cancel()

    async def close(self) -> None:
        for raw in (self.wconn, self.rconn):
            if raw is not None:
                raw.close()
        for entry in self.wqueue:
            entry.fail(Closed())
        self.wqueue = []

    def append(self, requests_key: str, fields: list[bytes | str | int], size: int, fut: asyncio.Future[Any]) -> None:
        """Queues a tell (``Session.send``)."""
        packed = b"".join([bulk(f) for f in fields])
        self.enqueue(Entry(self, bulk(requests_key), packed, len(fields), size, 0, fut))

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
        fields = pack_request(template, request_id, ttl_ms(left), tp, body)
        count = _ASK_FIELDS_HIGH if high else _ASK_FIELDS
        self.wqueue.append(Entry(self, route.packed_for(high), fields, count, len(body), request_id, waiter))
        if not self.flush_scheduled:
            self.schedule_flush()
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

    def _expire_tick(self, tick: int) -> None:
        pending = self.session.pending
        for request_id in self.expiry.pop(tick, ()):
            fut = pending.get(request_id)
            if fut is not None and not fut.done():
                fut.set_result(EXPIRED)

    def enqueue(self, entry: Entry) -> None:
        """Queues a request for the next write (at the end of this turn of the event loop:
        whatever is queued meanwhile leaves in the same write)."""
        self.wqueue.append(entry)
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
            for entry in queue:
                entry.fail(Unavailable("the connection to Redis is lost"))
            return
        conn = self.wconn
        if conn is None or conn.closed:
            if self.wconnecting is None:
                self.wconnecting = self.loop.create_task(self._connect_writer())
            return
        # Bounded: the rest waits for answers (``Entry.answer`` schedules the next write).
        room = RAW_UNANSWERED - self.unanswered
        if room <= 0 or conn.buffered() >= RAW_BUFFERED:
            return
        queue = self.wqueue
        if len(queue) > room:
            queue, self.wqueue = queue[:room], queue[room:]
        else:
            self.wqueue = []
        losses = s.losses
        # By stream, in order: one request alone as an XADD, several in commands of at most
        # SEND_BATCH requests and SEND_BATCH_BYTES of bodies (``pack_batch``).
        streams: dict[bytes, list[Entry]] = {}
        for entry in queue:
            if entry.future.done():  # its asker gave up
                continue
            entry.losses = losses
            same = streams.get(entry.key)
            if same is None:
                streams[entry.key] = [entry]
            else:
                same.append(entry)
        if not streams:
            return
        data: list[bytes] = []
        answers: list[Any] = []
        for key, entries in streams.items():
            batch: list[Entry] = []
            size = 0
            for entry in entries:
                if batch and (len(batch) >= SEND_BATCH or size + entry.size > SEND_BATCH_BYTES):
                    self._pack(key, batch, data, answers)
                    batch, size = [], 0
                batch.append(entry)
                size += entry.size
            self._pack(key, batch, data, answers)
        self.unanswered += sum(len(e) for e in streams.values())
        conn.send(b"".join(data), answers)

    @staticmethod
    def _pack(key: bytes, batch: list[Entry], data: list[bytes], answers: list[Any]) -> None:
        if len(batch) == 1:
            entry = batch[0]
            data.append(pack_xadd(key, entry.fields, entry.count))
            answers.append(entry)
        else:
            data.append(pack_batch(key, batch))
            answers.append(_Batch(batch))

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
            for entry in queue:
                entry.fail(error)
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
