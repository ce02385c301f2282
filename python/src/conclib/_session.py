"""One client's session: its connections, reply list and reader in one process and event
loop (``AsyncClient`` makes a new one after a fork or on another loop).

The session sends commands bounded by their deadlines, appends requests through its path
(``RawPath`` on one server, ``RedisPyPath`` for Sentinel and Cluster), hands reply frames to
their asks by request id, and watches for Redis restarts: after a lost connection it
identifies Redis again, and a Redis that came back empty fails the asks whose requests it
held. Where a URN's requests go is its ``routes`` (``Routing``, ``_routing``: the route cache
and the lookups, sent as the session's commands), which follow the hand-over notes
(``_moves``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ._contracts import ClientSettings, Route
from ._raw import pack
from ._moves import follow_moves
from ._raw_path import RawPath
from ._redispy_path import RedisPyPath
from ._routing import Routing
from ._tasks import stop_tasks
from .durability import Durability, WaitGate
from .errors import (
    Closed,
    ConclibError,
    NotReplicated,
    ProtocolError,
    Timeout,
    Unavailable,
    fail,
    from_redis_error,
    is_connection_error,
)
from .protocol import REPLY_HEADER_LEN, Status
from ._info import redis_identity, server_fields, topology_warning
from .url import build_client, close_client, redact

log = logging.getLogger("conclib")

T = TypeVar("T")

REPLY_BLOCK_SECS = 2
"""How long the reply reader blocks in one ``BLMPOP``."""
REPLY_BATCH = 1024
"""The most replies taken by one ``BLMPOP``."""


async def until(fut: asyncio.Future[T], deadline: float) -> T:
    """``fut``'s result, ``asyncio.TimeoutError`` at ``deadline`` (``time.monotonic()``)."""
    return await asyncio.wait_for(fut, max(deadline - time.monotonic(), 0.0))


def key_of(args: tuple[Any, ...]) -> str:
    """The key a write command of ``command_replicated`` touches (its node's, in a cluster):
    ``XADD``'s, or an ``EVAL``'s / ``EVALSHA``'s first."""
    name = str(args[0]).upper()
    if name in ("EVAL", "EVALSHA") and len(args) > 3 and int(args[2]) > 0:
        return str(args[3])
    if name == "XADD" and len(args) > 1:
        return str(args[1])
    raise ValueError(f"no key to route {name} by")


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Marks the outcome of a command given up at its deadline as seen (no "exception was
    never retrieved" when it ends in an error)."""
    if not task.cancelled():
        task.exception()


class Session:
    """The connections, reply list and reader of one client in one process and event loop."""

    def __init__(self, client: ClientSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.client: ClientSettings = client
        self.pid = os.getpid()
        self.loop = loop
        self.keys = client._keys
        # How long a command or a BLMPOP may go unanswered before its connection is dropped.
        self.reply_wait_limit = client.command_timeout + REPLY_BLOCK_SECS
        # Commands off the hot path (lookups, INFO, DEL) go through redis-py.
        self.redis: Any = build_client(
            client._target,
            connect_timeout=client.connect_timeout,
            command_timeout=self.reply_wait_limit,
            tls_ca_file=client._tls_ca_file,
        )
        self.reply_key = self.keys.reply(secrets.token_hex(16))
        self.blmpop_args: tuple[Any, ...] = (REPLY_BLOCK_SECS, 1, self.reply_key, "LEFT", "COUNT", REPLY_BATCH)
        blmpop = pack("BLMPOP", *self.blmpop_args)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 1
        # Where each URN's requests go: the route cache and its lookups.
        self.routes = Routing(self.command, self.redis_restarted_lately, self.keys, client.resolve_cache_ttl, loop)
        # The run_id of the Redis connected to (``redis_restarted_lately``).
        self.run_id: str | None = None
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
        # One server (redis://, rediss://, unix): requests are written and replies read on
        # raw connections of the client's own. Else (Sentinel, Cluster) through redis-py.
        self.raw: RawPath | None = None
        self.path: RawPath | RedisPyPath
        self.cluster = client._target.kind == "cluster"
        if client._target.kind in ("standalone", "unix"):
            self.path = self.raw = RawPath(self, blmpop)
        else:
            self.path = RedisPyPath(self, blmpop)
        # The writer connection's ``WAIT`` s (a durability asking for replicas).
        self.wait_gate: WaitGate | None = None
        self.ready = False  # connected: ``_start`` is done
        # Hand-over notes read (``_moves``), set at each, and set once subscribed: what a
        # test awaits.
        self.moves_seen = 0
        self.moves_noted = asyncio.Event()
        self.moves_subscribed = asyncio.Event()
        self.started: asyncio.Task[None] = loop.create_task(self._start())

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Runs ``work`` as a task the session cancels when it closes."""
        task = self.loop.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            info = await asyncio.wait_for(
                self.redis.execute_command("INFO", "server", "replication"), self.client.connect_timeout
            )
        except asyncio.TimeoutError:
            raise Unavailable(
                f"could not connect to {redact(self.client.url)} within {self.client.connect_timeout} s"
            ) from None
        except Exception as e:
            raise from_redis_error(e) from e
        self.run_id, _ = server_fields(info)
        self.seen_run_id = self.run_id
        warning = topology_warning(info, self.client.durability, self.client._target.kind)
        if warning:
            log.warning("%s (Redis %s)", warning, redact(self.client.url))
        await self.path.start()
        self.ready = True
        if not self.cluster:
            self.spawn(follow_moves(self))

    async def aclose(self) -> None:
        """Stops the reader, fails pending asks with ``Closed``, deletes the reply list and
        closes the connections."""
        if self.closed:
            return
        self.closed = True
        own = [self.started, self.watcher, *self.tasks]
        for task in own:
            if task is not None and not task.done():
                task.cancel()
        own += self.path.cancel()
        for fut in self.pending.values():
            fail(fut, Closed())
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
        # Cancelled above; ended for good once their connections are closed (``_tasks.py``).
        await stop_tasks(own, 1.0)

    async def close_anywhere(self) -> None:
        """:meth:`aclose` from any thread: here if the session's loop is this one, else on
        its loop; a session whose loop is gone is only marked closed (nothing can be awaited
        there; its sockets are left to be collected)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover
            running = None
        if self.loop is running:
            await self.aclose()
        elif not self.loop.is_closed() and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), self.loop)
        else:
            self.closed = True

    async def _close_connections(self) -> None:
        await self.path.close()
        await close_client(self.redis)

    # -- commands ----------------------------------------------------------------------------

    async def command(self, deadline: float, *args: Any) -> Any:
        """One command, given up at the deadline (``Timeout``; the caller turns it into
        ``Unavailable`` when the connection was lost meanwhile)."""
        return await self._bounded(deadline, lambda: self.redis.execute_command(*args))

    async def command_replicated(self, deadline: float, durability: Durability, *args: Any) -> Any:
        """One write command, then (at a durability asking for replicas) ``WAIT`` on the
        same connection (a pipeline; in a cluster, to the node serving its key): its answer
        once the replicas hold it, else ``NotReplicated``."""
        if not durability.n:
            return await self.command(deadline, *args)
        replicas, timeout_ms = durability.wait_args()
        if self.cluster and isinstance(self.path, RedisPyPath):
            # To the node serving the write's key, with the WAIT on the same connection.
            path = self.path
            answer, got = await self._bounded(deadline, lambda: path.on_node(key_of(args), [args], durability))
            for result in (answer, got):
                if isinstance(result, BaseException):
                    raise from_redis_error(result)
            if not isinstance(got, int) or got < replicas:
                raise NotReplicated(got if isinstance(got, int) else 0, replicas, durability.timeout)
            return answer

        async def both() -> Any:
            pipe = self.redis.pipeline(transaction=False)
            pipe.execute_command(*args)
            pipe.execute_command("WAIT", replicas, timeout_ms)
            return await pipe.execute()

        answer, got = await self._bounded(deadline, both)
        if not isinstance(got, int) or got < replicas:
            raise NotReplicated(got if isinstance(got, int) else 0, replicas, durability.timeout)
        return answer

    async def _bounded(self, deadline: float, send: Callable[[], Awaitable[Any]]) -> Any:
        # A closed session sends nothing more (an ask resolving or waiting for its URN's
        # return when the client was closed ends ``Closed``, not on a closed connection).
        if self.closed:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(0)
        if self.down:
            raise Unavailable("the connection to Redis is lost")
        # Not ``wait_for``, which at the deadline waits until the command's task has
        # finished cancelling: redis-py's cleanup there (a connection closed, a cluster
        # client closing every connection of a node) may itself wait on the network, for
        # up to ``connect_timeout``. The command is cancelled and left to end on its own.
        task = asyncio.ensure_future(send())
        try:
            done, _ = await asyncio.wait((task,), timeout=left)
        except BaseException:
            task.cancel()
            task.add_done_callback(_retrieve)
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_retrieve)
            raise Timeout(0)
        try:
            return task.result()
        except asyncio.TimeoutError:
            raise Timeout(0) from None
        except ConclibError:
            raise
        except Exception as e:
            if self.closed:
                raise Closed() from None
            if is_connection_error(e):
                self.link_lost()
            raise from_redis_error(e) from e

    # -- sending -----------------------------------------------------------------------------

    async def send(
        self,
        route: Route,
        urn: str,
        build: Any,
        deadline: float,
        high: bool = False,
        replicated: Durability | None = None,
    ) -> int:
        """Appends one request (``build()`` makes its fields and body size) to the serving
        system's stream. Requests to one stream queued before the writer runs leave in one
        write. Returns the count of Redis losses read just before the write. ``Unavailable``
        at once while the connection is known lost. ``replicated`` (a tell, in a cluster):
        returns once that many replicas hold it, ``WAIT`` sent on the connection that wrote
        it (``RedisPyPath.append_replicated``), else ``NotReplicated``."""
        while True:
            if self.down:
                raise Unavailable("the connection to Redis is lost")
            fields, size = build()
            fut: asyncio.Future[int | None] = self.loop.create_future()
            key = route.key_for(high)
            if replicated is not None and isinstance(self.path, RedisPyPath) and self.cluster:
                self.path.append_replicated(key, fields, size, fut, replicated)
            else:
                self.path.append(key, fields, size, fut)
            try:
                appended = await until(fut, deadline)
            except asyncio.TimeoutError:
                raise Timeout(0) from None
            if appended is not None:
                return appended
            if key != route.requests_key:
                route.no_fast_lane()
                continue
            route = await self.routes.stream_gone(urn, route, deadline)

    async def replicated(self, durability: Durability, disconnects: int, deadline: float) -> None:
        """Returns once the writes of the writer connection so far (a tell just written) are
        held by ``durability.n`` replicas: one ``WAIT`` in flight at a time, shared
        (``WaitGate``). ``NotReplicated`` if fewer acknowledged within its timeout;
        ``Unavailable`` if the connection was lost since ``disconnects`` was read (a
        ``WAIT`` on a new connection would count none of the tell's writes)."""
        gate = self.wait_gate
        if gate is None:
            replicas, timeout_ms = durability.wait_args()
            path = self.path
            gate = self.wait_gate = WaitGate(lambda: path.send_wait(replicas, timeout_ms))
        try:
            got = await until(asyncio.shield(gate.wait()), deadline)
        except asyncio.TimeoutError:
            raise Timeout(0, "waiting for the replicas to acknowledge the tell") from None
        if self.disconnects != disconnects:
            raise Unavailable("the connection to Redis was lost after the tell was written: "
                              "whether a replica holds it is unknown; it may or may not be handled")
        if got < durability.n:
            raise NotReplicated(got, durability.n, durability.timeout)

    # -- replies -----------------------------------------------------------------------------

    def deliver(self, frame: Any) -> None:
        if not isinstance(frame, bytes) or len(frame) < REPLY_HEADER_LEN:
            log.warning("dropped a malformed reply frame (%d bytes)", len(frame) if isinstance(frame, bytes) else -1)
            return
        request_id = int.from_bytes(frame[:8], "big")
        fut = self.pending.pop(request_id, None)
        # No waiter: the ask timed out or was cancelled; the reply is discarded.
        if fut is not None and not fut.done():
            fut.set_result(frame)

    async def reply_list_clobbered(self, error: str) -> None:
        """Something else than a list sits at our reply list's key: answers pushed there are
        lost (the proxy skips a reply list of the wrong type). Fail the waiting asks now
        rather than at their deadlines, and take the key back."""
        log.warning("the reply list %s holds something else than a list (%s); failing %d asks",
                    self.reply_key, error, len(self.pending))
        for fut in self.pending.values():
            fail(fut, ProtocolError(f"the reply list {self.reply_key} was overwritten: {error}"))
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
                if not (is_connection_error(e) or isinstance(e, asyncio.TimeoutError)):
                    self.down = False
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.2)
                continue
            self.down = False
            identity = redis_identity(info)
            # A cluster's nodes are told apart one by one (``RedisPyPath.wrote``): INFO
            # reached only one of them here.
            if identity is not None and not self.cluster:
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
            fail(self.pending.pop(rid), Unavailable("Redis restarted without its data; the request was lost"))
        self.written.clear()
        log.warning("Redis restarted empty (run_id %s): %d asks whose requests it held failed Unavailable",
                    run_id, len(lost))

    async def redis_restarted_lately(self, deadline: float) -> bool:
        """Whether the Redis answering now is another than the one connected to (its
        ``run_id``), started less than one lease ago: a URN it does not know may not be
        registered again yet (``Routing.wait_if_redis_lost_it``)."""
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
        run_id, uptime = server_fields(info)
        return run_id is not None and run_id != self.run_id and uptime is not None and uptime < self.client.lease_ttl + 1

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
