"""The Sentinel and Cluster path: requests and replies through redis-py's connections.

Outside a cluster (Sentinel), requests leave from one writer task on a connection of its
own, whatever was queued while it wrote the last batch in one write, and replies are read
by a reader task on another. In a cluster, the requests to one stream queued together
leave in one pipeline (a task per batch), and the reader uses redis-py's client; the tells
that wait for replicas leave in pipelines of their own, each with its ``WAIT``, on one
connection of the stream's node (``on_node``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ._contracts import SessionLink
from ._info import redis_identity
from ._raw import pack
from .durability import Durability
from .errors import (
    Closed,
    ConclibError,
    NotReplicated,
    Unavailable,
    fail,
    from_redis_error,
    is_connection_error,
)
from .url import build_client, close_client


log = logging.getLogger("conclib")

NODE_WATCH_EVERY = 0.25
"""In a cluster, how often the nodes holding requests of waiting asks are asked who they are."""
SEND_BATCH = 32
"""The most requests appended by one pipeline (as the Rust client)."""
SEND_BATCH_BYTES = 1 << 20
"""The most body bytes appended by one pipeline (a single larger request goes alone)."""


def cancelling() -> bool:
    """Whether the current task is being cancelled (Python 3.11+; False before). redis-py
    may replace a cancellation by the error of its disconnect."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


@dataclass
class Outgoing:
    fields: list[bytes | str | int]
    size: int
    # The count of Redis losses read just before the write (see ``Session.identified``),
    # or None: the stream is gone (NOMKSTREAM).
    future: asyncio.Future[int | None]


class RedisPyPath:
    """The writer and reader of one session on redis-py's connections."""

    def __init__(self, session: SessionLink, blmpop: bytes) -> None:
        client = session.client
        self.session = session
        self.loop = session.loop
        self.blmpop = blmpop
        # The reply reader blocks in BLMPOP: a connection of its own.
        self.reader_redis: Any = build_client(
            client._target,
            connect_timeout=client.connect_timeout,
            command_timeout=session.reply_wait_limit,
            tls_ca_file=client._tls_ca_file,
            max_connections=2,
        )
        self.direct = client._target.kind != "cluster"
        self.queue: list[tuple[str, Outgoing]] = []
        self.wakeup = asyncio.Event()
        self.outbox: dict[str, list[Outgoing]] = {}
        # In a cluster, tells that wait for replicas (``append_replicated``), by stream.
        self.outbox_replicated: dict[str, list[Outgoing]] = {}
        self.writer: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.write_conn: Any = None
        self.read_conn: Any = None
        # In a cluster, each node is a Redis of its own that may restart empty: the node each
        # waiting ask's request went to, and each node's run_id last seen.
        self.written_on: dict[int, str] = {}
        self.run_ids: dict[str, str] = {}
        self.node_watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.direct:
            self.write_conn = await self.session.redis.connection_pool.get_connection()
            self.read_conn = await self.reader_redis.connection_pool.get_connection()
            # The first BLMPOP leaves here: a reader cancelled (its loop closing) right after
            # it starts is then in a read, which redis-py lets a cancellation end.
            await self.read_conn.send_packed_command(self.blmpop, check_health=False)
            self.writer = self.loop.create_task(self._write_requests())
        else:
            await self._identify_primaries()
        self.reader = self.loop.create_task(self._read_replies())

    def cancel(self) -> list[asyncio.Task[Any] | None]:
        """Stops its tasks (the session is closing): the tasks, for ``stop_tasks`` once its
        connections are closed."""
        tasks = [self.reader, self.writer, self.node_watch]
        for task in tasks:
            if task is not None and not task.done():
                task.cancel()
        return tasks

    async def close(self) -> None:
        s = self.session
        for conn, redis in ((self.write_conn, s.redis), (self.read_conn, self.reader_redis)):
            if conn is not None:
                await conn.disconnect()
                await redis.connection_pool.release(conn)
        await close_client(self.reader_redis)

    def append(self, requests_key: str, fields: list[bytes | str | int], size: int, fut: asyncio.Future[Any]) -> None:
        """Queues a request (``Session.send``): for the writer task, or (in a cluster) for
        its stream's next pipeline."""
        if self.direct:
            self.queue.append((requests_key, Outgoing(fields, size, fut)))
            self.wakeup.set()
            return
        queue = self.outbox.get(requests_key)
        if queue is None:
            queue = self.outbox[requests_key] = []
            self.session.spawn(self._flush(requests_key))
        queue.append(Outgoing(fields, size, fut))

    def append_replicated(self, requests_key: str, fields: list[bytes | str | int], size: int,
                          fut: asyncio.Future[Any], durability: Durability) -> None:
        """Queues a tell that must reach ``durability.n`` replicas (in a cluster): the tells
        to one stream queued together leave in one pipeline to the node serving it, on one
        connection, followed by ``WAIT`` on that connection (``on_node``). ``fut`` ends as
        ``append``'s does once the replicas hold it, else ``NotReplicated``. Apart from the
        asks, which wait for no replica."""
        queue = self.outbox_replicated.get(requests_key)
        if queue is None:
            queue = self.outbox_replicated[requests_key] = []
            self.session.spawn(self._flush_replicated(requests_key, durability))
        queue.append(Outgoing(fields, size, fut))

    async def on_node(self, key: str, commands: list[tuple[Any, ...]], durability: Durability) -> list[Any]:
        """In a cluster: ``commands`` then ``WAIT`` in one pipeline to the node serving
        ``key``, on one of its connections (a ``WAIT`` counts the writes of its own
        connection only), never redirected (a command sent again elsewhere would escape the
        ``WAIT``). Returns the commands' results (an error for each that failed), the
        ``WAIT``'s last. A command the node refused as not its slot's (``MOVED``, ``ASK``,
        ``TRYAGAIN``) was not run: it is ``Unavailable``, and a command sent through the
        client's routing renews its slot map for the next try."""
        import redis.exceptions as rexc

        s = self.session
        node = s.redis.get_node_from_key(key)
        if node is None:
            raise Unavailable("no node of the cluster serves the key's slot now (its slot map is renewed)")
        replicas, timeout_ms = durability.wait_args()
        pipe = s.redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command, target_nodes=node)
        pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
        results: list[Any] = await pipe.execute(raise_on_error=False, allow_redirections=False)
        redirected = (rexc.MovedError, rexc.AskError, rexc.TryAgainError)
        if any(isinstance(r, redirected) for r in results):
            # MOVED names the slot's new node: a routed command learns it (its answer is no use).
            self.session.spawn(self._renew_slot_map(key))
            results = [Unavailable(f"the key's slot moved ({r}); not written") if isinstance(r, redirected) else r
                       for r in results]
        return results

    async def _renew_slot_map(self, key: str) -> None:
        try:
            await self.session.redis.execute_command("EXISTS", key)
        except Exception as e:  # noqa: BLE001 - the next write tries again
            log.debug("renewing the slot map failed: %s", e)

    def send_wait(self, replicas: int, timeout_ms: int) -> asyncio.Future[Any]:
        """``WAIT replicas timeout_ms`` on the writer connection (outside a cluster), after
        what it wrote so far: the future of how many replicas acknowledged it."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.queue.append(("", Outgoing([replicas, timeout_ms], 0, fut)))
        self.wakeup.set()
        return fut

    # -- nodes restarted empty (a cluster) ---------------------------------------------------

    def wrote(self, request_id: int, requests_key: str) -> None:
        """Redis holds the ask ``request_id``'s request, in ``requests_key``: in a cluster,
        its node is watched until the ask ends (``done``)."""
        if self.direct:
            return
        try:
            node = self.session.redis.get_node_from_key(requests_key)
        except Exception:  # noqa: BLE001 - the slot map is being rebuilt: not watched
            return
        if node is None:
            return
        self.written_on[request_id] = node.name
        if self.node_watch is None or self.node_watch.done():
            self.node_watch = self.loop.create_task(self._watch_nodes())

    def done(self, request_id: int) -> None:
        self.written_on.pop(request_id, None)

    async def _identify_primaries(self) -> None:
        """Each primary's run_id, before any request is written (a node that restarts later
        is then told apart from one seen for the first time)."""
        from redis.asyncio.cluster import RedisCluster

        try:
            infos = await asyncio.wait_for(
                self.session.redis.execute_command(
                    "INFO", "server", "persistence", "replication", target_nodes=RedisCluster.PRIMARIES
                ),
                self.session.client.connect_timeout,
            )
        except Exception as e:  # noqa: BLE001 - learnt node by node later
            log.debug("could not identify the cluster's nodes: %s", e)
            return
        if isinstance(infos, dict):
            for name, info in infos.items():
                identity = redis_identity(info)
                if identity is not None:
                    self.run_ids[str(name)] = identity[0]

    async def _watch_nodes(self) -> None:
        """While asks wait whose requests sit on some nodes: asks each such node who it is.
        A node with a new run_id that started empty lost the requests it held: their asks
        fail ``Unavailable`` now, not at their deadlines (as one server's restart does)."""
        s = self.session
        redis = s.redis
        while self.written_on and not s.closed:
            await asyncio.sleep(NODE_WATCH_EVERY)
            for name in set(self.written_on.values()):
                node = redis.get_node(node_name=name)
                if node is None:
                    continue
                try:
                    info = await asyncio.wait_for(
                        redis.execute_command("INFO", "server", "persistence", "replication", target_nodes=node),
                        min(s.client.connect_timeout, 1.0),
                    )
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - down, or restarting: asked again next time
                    continue
                if isinstance(info, dict) and name in info and isinstance(info[name], dict):
                    info = info[name]
                identity = redis_identity(info)
                if identity is None:
                    continue
                run_id, kept_data = identity
                before = self.run_ids.get(name)
                self.run_ids[name] = run_id
                if before is None or before == run_id or kept_data:
                    continue
                lost = [rid for rid, on in self.written_on.items() if on == name]
                for rid in lost:
                    del self.written_on[rid]
                    fut = s.pending.pop(rid, None)
                    if fut is not None:
                        fail(fut, Unavailable(f"the Redis node {name} restarted without its data; the request was lost"))
                log.warning("Redis node %s restarted empty (run_id %s): %d asks whose requests it held failed "
                            "Unavailable", name, run_id, len(lost))

    async def _write_requests(self) -> None:
        """The writer (outside a cluster): whatever was queued while it wrote the last batch
        leaves in one write, of ``XADD``s to any streams; then their answers are read."""
        conn = self.write_conn
        while not cancelling():
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

    async def _write_batch(self, conn: Any, batch: list[tuple[str, Outgoing]]) -> None:
        import redis.exceptions as rexc

        batch = [(key, r) for key, r in batch if not r.future.done()]  # their askers gave up
        if not batch:
            return
        s = self.session
        losses = s.losses
        results: list[Any] = []
        try:
            if s.down:
                raise Unavailable("the connection to Redis is lost")
            # A key of "" is a ``WAIT`` (``send_wait``), answered by how many replicas.
            packed = b"".join([
                pack("XADD", key, "NOMKSTREAM", "*", *r.fields) if key else pack("WAIT", *r.fields)
                for key, r in batch
            ])
            await conn.send_packed_command(packed, check_health=False)
            for _ in batch:
                try:
                    results.append(await conn.read_response())
                except rexc.ResponseError as e:
                    results.append(e)
        except asyncio.CancelledError:
            _fail_closed([r for _, r in batch])
            raise
        except Exception as e:  # the rest of the batch failed
            if cancelling():
                _fail_closed([r for _, r in batch])
                raise asyncio.CancelledError() from e
            if is_connection_error(e) and not isinstance(e, ConclibError):
                s.link_lost()
                try:
                    await conn.disconnect(nowait=True)  # reconnects on the next write
                except Exception:  # noqa: BLE001
                    pass
            results += [e] * (len(batch) - len(results))
        for (key, request), result in zip(batch, results):
            if request.future.done():
                continue
            if isinstance(result, BaseException):
                fail(request.future, from_redis_error(result))
            elif not key:
                request.future.set_result(result if isinstance(result, int) else None)
            else:
                request.future.set_result(losses if result is not None else None)

    async def _flush(self, key: str) -> None:
        queued = self.outbox.pop(key, [])
        batches: list[list[Outgoing]] = []
        size = 0
        for request in queued:
            if batches and len(batches[-1]) < SEND_BATCH and size + request.size <= SEND_BATCH_BYTES:
                size += request.size
                batches[-1].append(request)
            else:
                size = request.size
                batches.append([request])
        await asyncio.gather(*(self._send_batch(key, batch) for batch in batches))

    async def _flush_replicated(self, key: str, durability: Durability) -> None:
        queued = self.outbox_replicated.pop(key, [])
        batches: list[list[Outgoing]] = []
        size = 0
        for request in queued:
            if batches and len(batches[-1]) < SEND_BATCH and size + request.size <= SEND_BATCH_BYTES:
                size += request.size
                batches[-1].append(request)
            else:
                size = request.size
                batches.append([request])
        await asyncio.gather(*(self._send_replicated(key, batch, durability) for batch in batches))

    async def _send_replicated(self, key: str, batch: list[Outgoing], durability: Durability) -> None:
        """One batch of tells to ``key`` and their ``WAIT``, on one connection of its node."""
        s = self.session
        losses = s.losses
        results: list[Any]
        try:
            if s.down:
                raise Unavailable("the connection to Redis is lost")
            results = await self.on_node(
                key, [("XADD", key, "NOMKSTREAM", "*", *request.fields) for request in batch], durability
            )
        except asyncio.CancelledError:
            _fail_closed(batch)
            raise
        except Exception as e:  # the whole batch failed
            if is_connection_error(e):
                s.link_lost()
            results = [e] * (len(batch) + 1)
        got = results[-1]
        for request, result in zip(batch, results):
            if request.future.done():  # its asker gave up
                continue
            if isinstance(result, BaseException):
                if is_connection_error(result) and not isinstance(result, ConclibError):
                    s.link_lost()
                fail(request.future, from_redis_error(result))
            elif result is None:
                request.future.set_result(None)  # the stream is gone: nothing written
            elif isinstance(got, BaseException):
                fail(request.future, Unavailable(
                    f"waiting for the replicas failed ({from_redis_error(got)}): whether one holds the tell "
                    "is unknown; it may or may not be handled"))
            elif not isinstance(got, int) or got < durability.n:
                fail(request.future, NotReplicated(got if isinstance(got, int) else 0, durability.n,
                                                   durability.timeout))
            else:
                request.future.set_result(losses)

    async def _send_batch(self, key: str, batch: list[Outgoing]) -> None:
        s = self.session
        results: list[Any]
        losses = s.losses
        try:
            if s.down:
                raise Unavailable("the connection to Redis is lost")
            if len(batch) == 1:
                results = [await s.redis.execute_command("XADD", key, "NOMKSTREAM", "*", *batch[0].fields)]
            else:
                pipe = s.redis.pipeline(transaction=False)
                for request in batch:
                    pipe.execute_command("XADD", key, "NOMKSTREAM", "*", *request.fields)
                results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            _fail_closed(batch)
            raise
        except Exception as e:  # the whole batch failed
            if is_connection_error(e):
                s.link_lost()
            results = [e] * len(batch)
        for request, result in zip(batch, results):
            if request.future.done():  # its asker gave up
                continue
            if isinstance(result, BaseException):
                if is_connection_error(result) and not isinstance(result, ConclibError):
                    s.link_lost()
                fail(request.future, from_redis_error(result))
            else:
                request.future.set_result(losses if result is not None else None)

    async def _read_replies(self) -> None:
        s = self.session
        backoff = 0.01
        sent = False  # the first BLMPOP was sent by start
        while not s.closed and not cancelling():
            try:
                if self.read_conn is not None:
                    if sent:
                        await self.read_conn.send_packed_command(self.blmpop, check_health=False)
                    sent = True
                    answer = await self.read_conn.read_response()
                else:
                    answer = await self.reader_redis.execute_command(
                        "BLMPOP", *self.session.blmpop_args
                    )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if s.closed or cancelling():
                    return
                if is_connection_error(e):
                    s.link_lost()
                    if self.read_conn is not None:
                        try:
                            await self.read_conn.disconnect(nowait=True)
                        except Exception:  # noqa: BLE001
                            pass
                    log.debug("reading replies failed (%s); retrying", e)
                elif "WRONGTYPE" in str(e):
                    await s.reply_list_clobbered(str(e))
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
                s.deliver(frame)


def _fail_closed(batch: list[Outgoing]) -> None:
    """The writer was cancelled (the client is closing): the batch's requests end ``Closed``."""
    for request in batch:
        fail(request.future, Closed())
