"""Topics: events published by Rust actors (or any client), received here.

The same topics as the Rust ``conclib_redis::Topic``; two delivery modes, chosen per topic:

- **live** (Redis pub/sub, ``durable=False``): at most once. A subscription receives what is
  published while it is subscribed; one that is slower than the events drops those that find
  its buffer full: counted in ``stats()["dropped"]`` and reported in-band, as the Rust
  subscription's ``Lagged``: its next ``get()`` raises :class:`~conclib.Lagged` (``missed``:
  the events dropped since the last report) once, before the events it still holds, and the
  subscription goes on. After a lost connection it subscribes again by itself, missing what
  was published meanwhile (not reported: nothing was dropped here). On a Redis Cluster it is sharded
  pub/sub (``SSUBSCRIBE``/``SPUBLISH``, Redis 7.0 or later, redis-py's cluster pub/sub), as
  the Rust side does there: each topic's events stay on the node of its slot.
- **durable** (a Redis stream, one consumer group per subscriber ``group``): at least once,
  in order. Every group receives every event the topic keeps; an event is acknowledged when
  the next one is asked for (or at ``aclose()``), so one being handled when the process died
  comes again (counted in ``stats()["redelivered"]``); the subscribers of one group share
  its events. Starting again under the same ``consumer`` name resumes at once.

Events are decoded from MessagePack (a topic read from Python is published with the
``MsgPack`` codec on the Rust side); one that is not MessagePack is counted in
``stats()["undecodable"]`` and skipped. Keys: ``{ns}:topic:{<name>}:live`` (channel) and
``{ns}:topic:{<name>}:log`` (stream); a live message is ``0x01``, the codec name's length (one
byte), the codec name, the body; a stream entry has the fields ``v`` (1), ``codec``, ``body``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from . import codec
from ._tasks import stop_tasks
from .errors import ConfigError, Lagged, Timeout, TooLarge, from_redis_error
from .url import build_client, close_client

log = logging.getLogger("conclib")

MAX_TOPIC_LEN = 200
DEFAULT_BUFFER = 1024
DEFAULT_GROUP = "default"
DEFAULT_MAX_LEN = 100_000
_BLOCK_MS = 1000
_READ_BATCH = 256
_GLOB = set("{}*?[]")

__all__ = ["DEFAULT_BUFFER", "DEFAULT_GROUP", "DEFAULT_MAX_LEN", "Subscription", "check_topic"]


def check_topic(name: str, what: str = "topic") -> None:
    """Raises ``ConfigError`` unless ``name`` is a usable topic (or group, consumer) name: 1 to
    200 bytes of printable text, no whitespace, braces or glob characters."""
    if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_TOPIC_LEN:
        raise ConfigError(f"the {what} name must be 1 to {MAX_TOPIC_LEN} bytes long, got {name!r}")
    bad = next((c for c in name if c.isspace() or not c.isprintable() or c in _GLOB), None)
    if bad is not None:
        raise ConfigError(f"the {what} name {name!r} contains {bad!r}: no whitespace, braces or glob characters")


def live_channel(namespace: str, topic: str) -> str:
    return f"{namespace}:topic:{{{topic}}}:live"


def durable_key(namespace: str, topic: str) -> str:
    return f"{namespace}:topic:{{{topic}}}:log"


def live_frame(body: bytes) -> bytes:
    return b"\x01\x07msgpack" + body


def _split_live(frame: bytes) -> tuple[bytes, bytes] | None:
    if len(frame) < 2 or frame[0] != 1 or len(frame) < 2 + frame[1]:
        return None
    return frame[2 : 2 + frame[1]], frame[2 + frame[1] :]


async def publish(client: Any, topic: str, event: Any, *, durable: bool, max_len: int) -> None:
    """``AsyncClient.publish``: one event, MessagePack, returns once Redis took it."""
    check_topic(topic)
    body = codec.encode(event)
    if len(body) > client.max_payload:
        raise TooLarge(f"the event is {len(body)} bytes, the limit is {client.max_payload}")
    session = await client._current()
    ns = client.namespace
    if durable:
        args: tuple[Any, ...] = ("XADD", durable_key(ns, topic), "MAXLEN", "~", int(max_len), "*",
                                 "v", "1", "codec", "msgpack", "body", body)
    else:
        # On a Cluster, sharded pub/sub (to the node of the channel's slot), as in Rust.
        command = "SPUBLISH" if client._target.kind == "cluster" else "PUBLISH"
        args = (command, live_channel(ns, topic), live_frame(body))
    deadline = time.monotonic() + client.command_timeout
    if durable:
        # A durable event must survive a promotion at the client's durability (a live one
        # is at most once: it waits for nothing), as the Rust publisher's.
        await session.command_replicated(deadline, client.durability, *args)
    else:
        await session.command(deadline, *args)


class Subscription:
    """A subscription to a topic: ``async for event in subscription``. From
    ``await client.subscribe(topic, ...)``; ``aclose()`` (or ``async with``) ends it."""

    def __init__(self, client: Any, topic: str, *, durable: bool, group: str, consumer: str | None,
                 buffer: int, from_start: bool, claim_idle: float) -> None:
        check_topic(topic)
        check_topic(group, "group")
        if consumer is not None:
            check_topic(consumer, "consumer")
        if buffer < 1:
            raise ConfigError(f"buffer must be at least 1, got {buffer!r}")
        self.topic = topic
        self.durable = durable
        self.group = group
        self.consumer = consumer or secrets.token_hex(16)
        self._client = client
        self._from_start = from_start
        self._claim_idle_ms = int(claim_idle * 1000)
        self._queue: asyncio.Queue[tuple[bytes | None, Any]] = asyncio.Queue(maxsize=buffer)
        self._redis: Any = None
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._acks: list[bytes] = []
        self._held: set[bytes] = set()
        self._last: bytes | None = None
        self._closed = False
        # The drops already reported by a ``Lagged`` (live).
        self._reported_drops = 0
        self._counts = {"received": 0, "delivered": 0, "dropped": 0, "redelivered": 0,
                        "undecodable": 0, "resubscribes": 0}
        ns = client.namespace
        self._key = durable_key(ns, topic) if durable else live_channel(ns, topic)
        self._sharded = not durable and client._target.kind == "cluster"

    def stats(self) -> dict[str, int]:
        """What the subscription did so far: ``received``, ``delivered``, ``dropped`` (live,
        buffer full), ``redelivered`` (durable, taken before and not acknowledged),
        ``undecodable``, ``resubscribes``, ``buffered``."""
        return {**self._counts, "buffered": self._queue.qsize()}

    async def start(self) -> Subscription:
        """Subscribes: events published once this returns are received (a durable group new
        to the topic starts there, or with the oldest event kept if ``from_start``)."""
        c = self._client
        self._redis = build_client(c._target, connect_timeout=c.connect_timeout,
                                   command_timeout=c.command_timeout + _BLOCK_MS / 1000,
                                   tls_ca_file=c._tls_ca_file)
        try:
            await asyncio.wait_for(self._subscribe(first=True), c.connect_timeout)
        except asyncio.TimeoutError:
            await close_client(self._redis)
            raise Timeout(c.connect_timeout, "could not subscribe within the connect timeout") from None
        except Exception as e:
            await close_client(self._redis)
            raise from_redis_error(e) from e
        self._task = asyncio.get_running_loop().create_task(
            self._read_durable() if self.durable else self._read_live())
        return self

    async def _subscribe(self, first: bool) -> None:
        if self.durable:
            await self._create_group("0" if self._from_start or not first else "$")
        elif self._sharded:
            if not hasattr(self._redis, "pubsub"):
                raise ConfigError("this redis-py's asyncio RedisCluster has no pub/sub: live topics on a "
                                  "Redis Cluster need a newer redis-py")
            await self._redis.initialize()  # the slot map, which ssubscribe routes by
            self._pubsub = self._redis.pubsub()
            await self._pubsub.ssubscribe(self._key)
            await asyncio.wait_for(self._confirmed(self._pubsub), self._client.command_timeout)
        else:
            self._pubsub = self._redis.pubsub()
            await self._pubsub.subscribe(self._key)
            await asyncio.wait_for(self._confirmed(self._pubsub), self._client.command_timeout)

    async def _confirmed(self, pubsub: Any) -> None:
        """Returns once Redis confirmed the subscription (redis-py's ``subscribe`` returns once
        the command is written): an event published from then on reaches it."""
        while True:
            message = await self._next_live(pubsub, skip_confirmations=False)
            if message is not None and message.get("type") in ("subscribe", "ssubscribe"):
                return
            self._take_live(message)

    async def _create_group(self, start: str) -> None:
        try:
            await self._redis.execute_command("XGROUP", "CREATE", self._key, self.group, start, "MKSTREAM")
        except Exception as e:  # BUSYGROUP: it exists
            if "BUSYGROUP" not in str(e):
                raise

    # -- live ----------------------------------------------------------------------------------

    async def _read_live(self) -> None:
        backoff = 0.02
        while not self._closed:
            try:
                if self._pubsub is None:
                    await self._subscribe(first=False)
                    self._counts["resubscribes"] += 1
                pubsub = self._pubsub
                if pubsub is None:  # closed while subscribing
                    continue
                message = await self._next_live(pubsub, skip_confirmations=True)
                backoff = 0.02
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the connection was lost: subscribe again
                log.debug("topic %s: live subscription lost (%s); subscribing again", self.topic, e)
                await self._drop_pubsub()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            self._take_live(message)

    async def _next_live(self, pubsub: Any, *, skip_confirmations: bool) -> Any:
        """The next pub/sub message (or ``None`` after a second without one)."""
        if self._sharded:
            return await pubsub.get_sharded_message(ignore_subscribe_messages=skip_confirmations, timeout=1.0)
        return await pubsub.get_message(ignore_subscribe_messages=skip_confirmations, timeout=1.0)

    def _take_live(self, message: Any) -> None:
        """Buffers a topic's event, or drops it (counted) when the buffer is full."""
        if message is None or message.get("type") not in ("message", "smessage"):
            return
        self._counts["received"] += 1
        try:
            self._queue.put_nowait((None, message["data"]))
        except asyncio.QueueFull:
            self._counts["dropped"] += 1

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await (getattr(pubsub, "aclose", None) or pubsub.close)()
            except Exception:  # noqa: BLE001 - its connection is gone already
                pass

    # -- durable -------------------------------------------------------------------------------

    async def _read_durable(self) -> None:
        pending_from: str | bytes | None = "0"
        backoff = 0.02
        last_claim = time.monotonic()
        while not self._closed:
            try:
                await self._flush_acks()
                if time.monotonic() - last_claim >= max(self._claim_idle_ms / 2000, 0.1):
                    last_claim = time.monotonic()
                    await self._claim()
                args: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", _READ_BATCH]
                if pending_from is None:
                    args += ["BLOCK", _BLOCK_MS]
                args += ["STREAMS", self._key, pending_from if pending_from is not None else ">"]
                reply = await self._redis.execute_command(*args)
                backoff = 0.02
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if "NOGROUP" in str(e):  # Redis lost the stream: read it again from its start
                    try:
                        await self._create_group("0")
                        self._counts["resubscribes"] += 1
                    except Exception:  # noqa: BLE001 - retried below
                        pass
                else:
                    log.debug("topic %s: reading failed (%s); retrying", self.topic, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                pending_from = "0"
                continue
            again = pending_from is not None
            entries = _entries(reply)
            if again:
                pending_from = entries[-1][0] if entries else None
            await self._deliver(entries, again)

    async def _deliver(self, entries: list[tuple[bytes, Any]], again: bool) -> None:
        for entry_id, fields in entries:
            if entry_id in self._held:
                continue
            self._held.add(entry_id)
            if fields is None:  # trimmed away while pending
                self._acks.append(entry_id)
                continue
            self._counts["received"] += 1
            if again:
                self._counts["redelivered"] += 1
            await self._queue.put((entry_id, fields))

    async def _claim(self) -> None:
        start: Any = "0-0"
        for _ in range(16):
            reply = await self._redis.execute_command(
                "XAUTOCLAIM", self._key, self.group, self.consumer, self._claim_idle_ms, start,
                "COUNT", _READ_BATCH)
            if not reply or len(reply) < 2:
                return
            await self._deliver(_entry_list(reply[1]), True)
            start = reply[0]
            if start in (b"0-0", "0-0"):
                return

    async def _flush_acks(self) -> None:
        if not self._acks:
            return
        ids, self._acks = self._acks, []
        try:
            await self._redis.execute_command("XACK", self._key, self.group, *ids)
        except BaseException:
            self._acks = ids + self._acks
            raise
        self._held.difference_update(ids)

    # -- the consumer's side -------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        return await self.get()

    async def get(self, timeout: float | None = None) -> Any:
        """The next event (``Timeout`` if none within ``timeout`` seconds;
        ``StopAsyncIteration`` once closed). A live subscription that dropped events since
        the last call raises :class:`~conclib.Lagged` once instead, with their count: the
        call after goes on with the events it holds (an ``async for`` loop ends with the
        ``Lagged``; the subscription can be iterated again)::

            while True:
                try:
                    event = await subscription.get()
                except conclib.Lagged as lag:
                    resync(lag.missed)   # then go on with the next event
                    continue
                handle(event)
        """
        if self._last is not None:  # the consumer finished the last one
            self._acks.append(self._last)
            self._last = None
        while True:
            if self._closed:
                raise StopAsyncIteration
            dropped = self._counts["dropped"]
            if dropped > self._reported_drops:
                missed, self._reported_drops = dropped - self._reported_drops, dropped
                raise Lagged(missed, self.topic)
            try:
                entry_id, data = await asyncio.wait_for(self._queue.get(), timeout)
            except asyncio.TimeoutError:
                raise Timeout(timeout or 0.0, f"no event on topic {self.topic}") from None
            self._counts["delivered"] += 1
            body = self._body(data)
            if body is None:
                self._counts["undecodable"] += 1
                if entry_id is not None:
                    self._acks.append(entry_id)
                continue
            try:
                event = codec.decode(body)
            except Exception:  # noqa: BLE001 - counted, skipped
                self._counts["undecodable"] += 1
                if entry_id is not None:
                    self._acks.append(entry_id)
                continue
            self._last = entry_id
            return event

    def _body(self, data: Any) -> bytes | None:
        if self.durable:
            fields = data if isinstance(data, dict) else dict(zip(data[::2], data[1::2]))
            name = fields.get(b"codec", fields.get("codec"))
            body = fields.get(b"body", fields.get("body"))
            return body if name in (b"msgpack", "msgpack") and isinstance(body, bytes) else None
        split = _split_live(data) if isinstance(data, bytes) else None
        return split[1] if split is not None and split[0] == b"msgpack" else None

    async def aclose(self) -> None:
        """Ends the subscription: acknowledges what was taken (the last event included) and
        closes its connection."""
        if self._closed:
            return
        self._closed = True
        if self._last is not None:
            self._acks.append(self._last)
            self._last = None
        if self._task is not None:
            await stop_tasks([self._task], 5.0)
        if self._redis is not None:
            if self.durable:
                try:
                    await asyncio.wait_for(self._flush_acks(), self._client.command_timeout)
                except Exception:  # noqa: BLE001 - they come again: at least once
                    pass
            await self._drop_pubsub()
            await close_client(self._redis)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _entry_list(raw: Any) -> list[tuple[bytes, Any]]:
    out: list[tuple[bytes, Any]] = []
    for entry in raw or []:
        if not entry:
            continue
        entry_id, fields = entry[0], entry[1] if len(entry) > 1 else None
        out.append((entry_id if isinstance(entry_id, bytes) else str(entry_id).encode(), fields))
    return out


def _entries(reply: Any) -> list[tuple[bytes, Any]]:
    """The entries of an XREADGROUP reply for one stream (RESP2 list, or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        streams = list(reply.values())
        return _entry_list(streams[0][0] if streams and streams[0] and isinstance(streams[0][0], list)
                           else (streams[0] if streams else []))
    return _entry_list(reply[0][1])
