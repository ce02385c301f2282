"""A raw Redis connection for the client's hot path (one server: ``redis://``, ``rediss://``,
``redis+unix://``): an ``asyncio.Protocol`` that writes commands packed by the caller and
parses RESP2 replies itself, handing each to the object waiting for it (first come, first
served) from the event loop's read callback: no task, future or parser object per reply.

Only what the protocol's requests and replies need is parsed (bulk strings, arrays, simple
strings, errors, integers, nils). With ``hiredis`` installed (a dependency of the package
on CPython) its C reader parses instead, to the same values, for about 9% less of the
client's CPU per ask (``bench_cpu.py --parsers``; docs/bench-log.md, "measured alike"). Connecting authenticates (``AUTH``) and selects
the database (``SELECT``) as redis-py does for the same URL.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Sequence
from typing import Any, Protocol

from .errors import ProtocolError
from .url import RedisTarget

_hiredis: Any
try:  # A dependency on CPython; absent elsewhere (PyPy) or when installed without it.
    import hiredis as _hiredis  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _hiredis = None

HIREDIS = _hiredis is not None
"""Whether replies are parsed by ``hiredis`` (installed) rather than in Python."""

__all__ = ["Awaiting", "RawConnection", "RespError", "bulk", "open_raw", "pack"]


class RespError:
    """An error reply (``-ERR ...``): a value, not raised, so that one bad reply fails only
    its own command."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"


class _Incomplete(Exception):
    """The buffer ends inside a reply; ``need``: how long it must be for that bulk string
    to be complete (0: unknown)."""

    def __init__(self, need: int = 0) -> None:
        self.need = need


_INCOMPLETE = _Incomplete()


def _parse(buf: Any, pos: int) -> tuple[Any, int]:
    """One reply of ``buf`` (bytes or bytearray) starting at ``pos``, and the position after
    it; ``_Incomplete`` if it is not all there."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _INCOMPLETE
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        stop = end + 2 + n
        if stop + 2 > len(buf):
            raise _Incomplete(stop + 2)
        return bytes(buf[end + 2 : stop]), stop + 2
    if kind == 42:  # * array
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        pos = end + 2
        items = []
        for _ in range(n):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 43:  # + simple string
        return bytes(buf[pos + 1 : end]), end + 2
    if kind == 45:  # - error
        return RespError(bytes(buf[pos + 1 : end]).decode("utf-8", "replace")), end + 2
    if kind == 58:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 95:  # _ (RESP3 null; not expected in RESP2)
        return None, end + 2
    raise ProtocolError(f"unexpected RESP type byte {kind!r} from Redis")


def bulk(value: bytes | str | int) -> bytes:
    """One bulk string in RESP: ``$<length>\r\n<bytes>\r\n`` (text as UTF-8)."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, int):
        value = b"%d" % value
    return b"$%d\r\n%b\r\n" % (len(value), value)


def pack(*args: bytes | str | int) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n%b" % (len(args), b"".join([bulk(a) for a in args]))


class Awaiting(Protocol):
    """Whatever waits for one reply: called with the reply (bytes, list, int, ``None``, a
    ``RespError``), or with a ``ConnectionError`` if the connection was lost first."""

    def answer(self, reply: Any) -> None: ...


class _Reply:
    """A command's reply as a future (the handshake, and anything else off the hot path)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future

    def answer(self, reply: Any) -> None:
        if not self.future.done():
            if isinstance(reply, ConnectionError):
                self.future.set_exception(reply)
            else:
                self.future.set_result(reply)


class RawConnection(asyncio.Protocol):
    """One connection to Redis: ``send(data, awaiting)`` writes commands, each reply goes to
    the next of the ``awaiting`` objects in order. ``on_lost`` is called once the connection
    is lost (or closed), after every waiting object got a ``ConnectionError``."""

    def __init__(self, use_hiredis: bool = HIREDIS) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: collections.deque[Awaiting] = collections.deque()
        # hiredis's reader when installed (``use_hiredis``), else the parser of this module
        # with its buffer of an unfinished reply.
        self.reader: Any = _hiredis.Reader(replyError=RespError) if use_hiredis and _hiredis is not None else None
        self.buf = bytearray()
        self.need = 0
        self.closed = False
        self.on_lost: Any = None
        # When the connection last made progress (a reply came, or it started waiting):
        # a watchdog aborts it when Redis stays silent too long (see ``silent_for``).
        self.progress = time.monotonic()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self.progress = time.monotonic()
        if self.reader is not None:
            self._hiredis_received(data)
            return
        buf: Any
        if self.buf:
            self.buf += data
            if len(self.buf) < self.need:
                return
            buf = self.buf
        else:
            buf = data
        waiting = self.waiting
        pos = 0
        size = len(buf)
        need = 0
        try:
            while pos < size:
                reply, pos = _parse(buf, pos)
                if not waiting:
                    raise ProtocolError("Redis sent a reply nobody asked for")
                waiting.popleft().answer(reply)
        except _Incomplete as e:
            need = e.need - pos  # counted from the start of the unfinished reply
        except (ProtocolError, ValueError) as e:
            self.abort(ConnectionError(f"unreadable reply from Redis: {e}"))
            return
        if buf is self.buf:
            del self.buf[:pos]
        elif pos < size:
            self.buf += buf[pos:]
        # Parsed again once at least one more byte came, or the bulk string it ends in.
        self.need = max(need, len(self.buf) + 1) if self.buf else 0

    def _hiredis_received(self, data: bytes) -> None:
        reader = self.reader
        waiting = self.waiting
        try:
            reader.feed(data)
            reply = reader.gets()
            while reply is not False:
                if not waiting:
                    raise ProtocolError("Redis sent a reply nobody asked for")
                waiting.popleft().answer(reply)
                reply = reader.gets()
        except (ProtocolError, _hiredis.ProtocolError, ValueError) as e:
            self.abort(ConnectionError(f"unreadable reply from Redis: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(ConnectionError(f"the connection to Redis was lost: {exc}" if exc else "the connection to Redis was closed"))

    # -- use ---------------------------------------------------------------------------------

    def send(self, data: bytes, awaiting: Sequence[Awaiting]) -> None:
        """Writes ``data`` (one command per element of ``awaiting``, in order)."""
        if self.closed or self.transport is None:
            error = ConnectionError("the connection to Redis is closed")
            for a in awaiting:
                a.answer(error)
            return
        if not self.waiting:
            self.progress = time.monotonic()
        self.waiting.extend(awaiting)
        self.transport.write(data)

    async def command(self, *args: bytes | str | int) -> Any:
        """One command's reply (a ``RespError`` is returned, not raised)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.send(pack(*args), (_Reply(future),))
        return await future

    def silent_for(self) -> float:
        """How long replies have been awaited without a byte coming (0 when none is awaited)."""
        return time.monotonic() - self.progress if self.waiting else 0.0

    def buffered(self) -> int:
        """Bytes written but not yet handed to the kernel."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def abort(self, error: ConnectionError | None = None) -> None:
        """Drops the connection now; everyone waiting gets ``error``."""
        if self.transport is not None:
            self.transport.abort()
        self._lost(error or ConnectionError("the connection to Redis was aborted"))

    def close(self) -> None:
        self.abort(ConnectionError("the connection to Redis was closed"))

    def _lost(self, error: ConnectionError) -> None:
        if self.closed:
            return
        self.closed = True
        waiting, self.waiting = self.waiting, collections.deque()
        for a in waiting:
            try:
                a.answer(error)
            except Exception:  # noqa: BLE001 - one broken waiter must not keep the others waiting
                pass
        if self.on_lost is not None:
            self.on_lost(error)


def _ssl_context(tls_ca_file: str | None) -> ssl.SSLContext:
    # As redis-py's SSLConnection: certificates required, host name checked.
    return ssl.create_default_context(cafile=tls_ca_file)


async def open_raw(target: RedisTarget, *, connect_timeout: float, tls_ca_file: str | None = None) -> RawConnection:
    """A connection to ``target`` (``standalone`` or ``unix``), authenticated and on its
    database. ``ConnectionError``/``OSError`` if Redis cannot be reached or refuses
    ``AUTH``/``SELECT`` (as redis-py's ``AuthenticationError``), ``TimeoutError`` after
    ``connect_timeout``."""
    loop = asyncio.get_running_loop()
    conn: RawConnection

    async def connect() -> RawConnection:
        if target.kind == "unix":
            assert target.path is not None
            _, protocol = await loop.create_unix_connection(RawConnection, target.path)
        elif target.kind == "standalone":
            host, port = target.nodes[0]
            tls = _ssl_context(tls_ca_file) if target.tls else None
            _, protocol = await loop.create_connection(
                RawConnection, host, port, ssl=tls, server_hostname=host if tls is not None else None
            )
        else:  # pragma: no cover - the caller checks
            raise ValueError(f"no raw connection for a {target.kind} URL")
        return protocol

    conn = await asyncio.wait_for(connect(), connect_timeout)
    try:
        if target.password is not None:
            args: tuple[str, ...] = (
                ("AUTH", target.username, target.password) if target.username else ("AUTH", target.password)
            )
            reply = await asyncio.wait_for(conn.command(*args), connect_timeout)
            if isinstance(reply, RespError):
                raise ConnectionError(f"Redis refused AUTH: {reply.message}")
        if target.db:
            reply = await asyncio.wait_for(conn.command("SELECT", target.db), connect_timeout)
            if isinstance(reply, RespError):
                raise ConnectionError(f"Redis refused SELECT {target.db}: {reply.message}")
    except BaseException:
        conn.close()
        raise
    return conn
