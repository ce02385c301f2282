"""A lane: one request stream (or a group's pair: its fast lane, then its stream) read as one
consumer of the ``proxy`` consumer group, and its answers written back in batches with the
protocol's answer script (replies pushed, entries acknowledged, the stream trimmed: one
command per batch), as the Rust proxy's ``proxy/serve/read.rs`` and ``write.rs``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._host_request import Request
from ._tasks import stop_tasks
from .protocol import Status, encode_reply

if TYPE_CHECKING:
    from ._host_patterns import Pattern

if sys.version_info >= (3, 11):
    from asyncio import timeout as within
else:  # a dependency of redis-py on these versions
    from async_timeout import timeout as within  # type: ignore[import-not-found, unused-ignore]

__all__ = ["Lane"]

# How long an answer's write may take at most (seconds), and a read beyond its block: the
# lanes' connections have no socket timeout (``host.py``), a command Redis never answers (a
# half-open connection) fails after this long.
COMMAND_BOUND = 10.0

GROUP = "proxy"
log = logging.getLogger("conclib.host")


def _id_key(entry: bytes) -> tuple[int, int]:
    ms, _, seq = entry.partition(b"-")
    return int(ms), int(seq or 0)


class Lane:
    """Reads ``keys`` (in that order) as ``consumer``; ``dispatch(lane, stream, entry,
    fields)`` takes each entry; ``trims``: whether it trims its stream (a system's own; a
    group's members trim theirs together)."""

    def __init__(
        self,
        redis: Any,
        scripts: Any,
        keys: list[str],
        consumer: str,
        dispatch: Callable[[Lane, str, bytes, dict[bytes, bytes] | None], None],
        *,
        batch: int,
        max_in_flight: int,
        reply_ttl_ms: int,
        trims: bool,
        name: str,
        block_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.consumer = consumer
        self.dispatch = dispatch
        self.batch = batch
        self.max_in_flight = max_in_flight
        self.reply_ttl_ms = reply_ttl_ms
        self.trims = trims
        self.name = name
        self.block_ms = block_ms
        # Entries read and not finished, and those left pending (for the trim's floor).
        self.in_flight: set[tuple[str, bytes]] = set()
        # The in-flight entries counted in a pattern's pending requests (``ticket``).
        self.tickets: dict[tuple[str, bytes], Pattern] = {}
        self.left: set[tuple[str, bytes]] = set()
        # Entries answered whose acknowledgement is not written yet: still pending in Redis,
        # so a read of the pending list meanwhile must not hand them out a second time.
        self.acking: set[tuple[str, bytes]] = set()
        # Entries finished (acknowledged, or moved by a script) while a read of the pending
        # list is under way: its answer may still list them, read before they were.
        self._finished_in_read: set[tuple[str, bytes]] | None = None
        # What to call once an entry's acknowledgement was written (a fenced store's record
        # of the requests whose handling wrote the state: ``_host_store.py``).
        self.awaiting: dict[tuple[str, bytes], Callable[[], None]] = {}
        # Asks to read this consumer's pending list again, and how many were done: an ask
        # that comes during a read is done by the next one.
        self._asked = 1
        self._done = 0
        self._pending: list[tuple[str, bytes | None, str | None, bytes | None]] = []
        # Whether the entries being dispatched were read from the pending list.
        self.rereading = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.stopped = False

    @property
    def reread(self) -> bool:
        """Whether the pending list is to be read again."""
        return self._asked > self._done

    @reread.setter
    def reread(self, wanted: bool) -> None:
        if wanted:
            self._asked += 1
        else:
            self._done = self._asked

    async def ensure_groups(self, queue_ttl_ms: int) -> None:
        for key in self.keys:
            try:
                await self.redis.xgroup_create(key, GROUP, id="0", mkstream=True)
            except Exception as e:
                if "BUSYGROUP" not in str(e):
                    raise
            await self.redis.pexpire(key, queue_ttl_ms)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read_loop()), loop.create_task(self._write_loop())]

    def halt(self) -> None:
        """Stops reading (what was read is still answered)."""
        self.stopped = True
        if self._tasks:
            self._tasks[0].cancel()

    async def stop(self) -> None:
        """Stops reading, then writes what is left to answer (for at most 5 s)."""
        self.halt()
        if not self._tasks:
            return
        self._wake.set()
        await asyncio.wait((self._tasks[1],), timeout=5)
        await stop_tasks(self._tasks, 1.0)

    # The answers.

    def answer(self, req: Request, status: Status | None, payload: bytes, ack: bool) -> None:
        frame = None
        if status is not None and req.reply is not None:
            frame = encode_reply(req.request_id, status, payload)
        self.answer_entry(req.stream, req.entry if ack else None, req.reply, frame)

    def answer_entry(self, stream: str, entry: bytes | None, reply: str | None, frame: bytes | None) -> None:
        """Acknowledges ``entry`` (``None``: none) with ``frame`` pushed to ``reply``."""
        if entry is not None:
            self._out((stream, entry))
            self.left.discard((stream, entry))
            self.acking.add((stream, entry))
        self._pending.append((stream, entry, reply, frame))
        self._wake.set()

    def when_acked(self, req: Request, done: Callable[[], None]) -> None:
        """Calls ``done()`` once ``req``'s acknowledgement was written."""
        self.awaiting[(req.stream, req.entry)] = done

    def leave(self, req: Request) -> None:
        """Leaves ``req`` pending, to be read again (by this lane once its lease holds again,
        or by whoever takes the stream over)."""
        self._out((req.stream, req.entry))
        self.left.add((req.stream, req.entry))
        self._room.set()

    def settle(self, req: Request) -> None:
        """``req`` was finished by a script (passed on elsewhere): forgotten here."""
        self._out((req.stream, req.entry))
        self.left.discard((req.stream, req.entry))
        self._finished((req.stream, req.entry))
        self._room.set()

    def ticket(self, stream: str, entry: bytes, pattern: Pattern) -> None:
        """Counts the in-flight entry ``entry`` of ``stream`` in ``pattern``'s pending
        requests until it leaves the in-flight set (answered, left or passed on)."""
        pattern.pending += 1
        self.tickets[(stream, entry)] = pattern

    def _out(self, key: tuple[str, bytes]) -> None:
        """``key`` is no longer in flight here: its pattern's ticket, if any, given back."""
        self.in_flight.discard(key)
        if self.tickets:
            pattern = self.tickets.pop(key, None)
            if pattern is not None:
                pattern.pending -= 1

    def _finished(self, key: tuple[str, bytes]) -> None:
        if self._finished_in_read is not None:
            self._finished_in_read.add(key)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if not batch:
                if self.stopped:
                    return
                continue
            by_stream: dict[str, tuple[list[bytes], dict[str, list[bytes]]]] = {}
            for stream, entry, reply, frame in batch:
                ids, replies = by_stream.setdefault(stream, ([], {}))
                if entry is not None:
                    ids.append(entry)
                if frame is not None and reply is not None:
                    replies.setdefault(reply, []).append(frame)
            for stream, (ids, replies) in by_stream.items():
                args: list[Any] = [GROUP, self.reply_ttl_ms, len(ids), *ids]
                for frames in replies.values():
                    args.append(len(frames))
                    args.extend(frames)
                args.append(self._trim_floor(stream, ids))
                try:
                    for attempt in range(50):
                        try:
                            async with within(COMMAND_BOUND):
                                await self.scripts.answer(keys=[stream, *replies], args=args, client=self.redis)
                            if self.awaiting:
                                for entry in ids:
                                    done = self.awaiting.pop((stream, entry), None)
                                    if done is not None:
                                        done()
                            break
                        except Exception as e:  # Redis out of reach: written again
                            log.warning("could not write %d answers: %s", len(ids), e)
                            await asyncio.sleep(0.1)
                finally:
                    # Written, or given up (then left pending: handled again, at least once).
                    for entry in ids:
                        self.acking.discard((stream, entry))
                        self._finished((stream, entry))
            self._room.set()

    def _trim_floor(self, stream: str, acked: list[bytes]) -> bytes:
        """The id below which ``stream`` may be trimmed: below every entry still in flight
        or left pending here, else just past the last one acknowledged (empty: no trim)."""
        if not self.trims or not acked:
            return b""
        held = [e for s, e in self.in_flight | self.left if s == stream]
        if held:
            ms, seq = min(_id_key(e) for e in held)
        else:
            ms, seq = max(_id_key(e) for e in acked)
            seq += 1
        return f"{ms}-{seq}".encode()

    # The reads.

    async def _read_loop(self) -> None:
        cursors: dict[str, bytes] = {}
        while not self.stopped:
            if len(self.in_flight) >= self.max_in_flight:
                self._room.clear()
                await self._room.wait()
                continue
            # Sampled before the read: an ask during a blocking read is done by another.
            asked = self._asked
            rereading = asked > self._done
            if rereading:
                streams = {k: cursors.get(k, b"0") for k in self.keys}
                block = None
            else:
                streams = {k: b">" for k in self.keys}
                block = self.block_ms
            finished: set[tuple[str, bytes]] = set()
            self._finished_in_read = finished if rereading else None
            try:
                async with within(COMMAND_BOUND + (block or 0) / 1000):
                    got = await self.redis.xreadgroup(GROUP, self.consumer, streams, count=self.batch, block=block)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._finished_in_read = None
                if "NOGROUP" in str(e):
                    try:
                        await self.ensure_groups(3_600_000)
                    except Exception:
                        pass
                log.debug("read failed on %s: %s", self.name, e)
                await asyncio.sleep(0.1)
                continue
            self._finished_in_read = None
            read = 0
            self.rereading = rereading
            for key_raw, entries in got or []:
                key = key_raw.decode() if isinstance(key_raw, bytes) else key_raw
                for entry, fields in entries:
                    read += 1
                    if rereading:
                        cursors[key] = entry
                    if (key, entry) in self.in_flight or (key, entry) in self.acking or (key, entry) in finished:
                        continue
                    self.left.discard((key, entry))
                    self.in_flight.add((key, entry))
                    try:
                        self.dispatch(self, key, entry, fields)
                    except Exception:  # a bug must not stop the lane: the entry stays pending
                        log.exception("dispatch failed for entry %r", entry)
            if rereading and read < self.batch:
                self._done = max(self._done, asked)
                cursors.clear()
            if read:
                # The requests just dispatched run first (a handler that does not wait
                # answers in that turn of the loop), then the write of their answers is
                # sent, then the next (blocking) read: an answer does not wait behind it.
                await asyncio.sleep(0)
                if self._pending:
                    await asyncio.sleep(0)
