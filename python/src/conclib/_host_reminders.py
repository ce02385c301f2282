"""A reminder poller in the Python actor host, as the Rust ``ReminderPoller``
(``conclib-redis/src/reminders/poller/worker.rs``, ``acker.rs``, ``renewal.rs``): it claims the
namespace's due reminders and delivers each as a ``conclib.ReminderTick`` ask to its URN
through the ordinary request path (so whichever member serves the URN, Rust or Python,
handles it, activating it if need be), then acknowledges the tick once the ask was handled.

The same Redis layout (``reminders.py``'s shard keys, ``keys.rs``) and the same scripts
(``_lua.py``'s ``REMINDER_*``, copied from ``reminders/scripts.rs`` by ``tools/gen_lua.py``):
Python and Rust pollers of a namespace claim from the same shards, each tick by one of them
(its claim), and a claim whose poller died or froze lapses one claim lease after its last
renewal, to another poller (at least once). A tick handled under a claim that lapsed is
counted ``stale`` and not acknowledged by this poller (the script checks the claim's token).

Not done here, unlike the Rust poller: waiting for replicas (``Durability``) after a claim,
renewal or acknowledgement (the host's ``durability`` covers its activations' claims and
state, not this poller: a promotion that loses a claim delivers its tick again), and the
metrics (the report for the live view is written).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from . import _lua
from ._host_replicas import written
from ._tasks import stop_tasks
from .durability import Durability
from .errors import HandlerError, NoResponse, Panicked, UnknownUrn
from .protocol import text
from .reminders import SHARDS, shard_of, shard_prefix

__all__ = ["ReminderPoller", "ReminderPollerOptions", "ReminderPollerStats"]

log = logging.getLogger("conclib.host")

# The most ticks one acknowledgement call carries (the Rust MAX_ACK_BATCH).
_MAX_ACK_BATCH = 256
# How long a poller's report stays after its last one (the Rust FORGET_AFTER).
_FORGET_AFTER_MS = 60_000
# Lags counted in power-of-two buckets of ms (the Rust LAG_BUCKETS).
_LAG_BUCKETS = 24


@dataclass
class ReminderPollerOptions:
    """How a host's reminder poller claims and delivers (the Rust ``ReminderPollerOptions``,
    in seconds): ``poll_interval`` between looks at the shards when nothing was due;
    ``batch`` the most claimed from one shard at a time; ``max_in_flight`` the most
    deliveries at once; ``claim_lease`` how long a claim lasts without renewal (renewed every
    third of it while its delivery runs: a poller that dies has its ticks delivered by
    another this long after; at least 0.3); ``delivery_timeout`` each delivery's ask timeout;
    ``retry_after`` how long a failed delivery waits; ``report_every`` how often it reports
    itself for the live view (``None``: never)."""

    poll_interval: float = 0.1
    batch: int = 256
    max_in_flight: int = 256
    claim_lease: float = 4.0
    delivery_timeout: float = 10.0
    retry_after: float = 1.0
    report_every: float | None = 2.0

    def check(self) -> None:
        """``ValueError`` for a claim lease under 0.3 s or a size under 1."""
        if self.claim_lease < 0.3:
            raise ValueError("the claim lease is at least 0.3 s (renewed every third of it)")
        if self.batch < 1 or self.max_in_flight < 1:
            raise ValueError("batch and max_in_flight are at least 1")


@dataclass
class ReminderPollerStats:
    """What a poller did so far (the Rust ``ReminderPollerStats``): ticks ``claimed``,
    ``fired`` (delivered and acknowledged), missed ticks ``coalesced`` into those, deliveries
    ``retried`` (failed, given back), ``stale`` (handled once the claim had lapsed or been
    replaced: not acknowledged here) and ``unserved`` (no system serves the URN)."""

    claimed: int = 0
    fired: int = 0
    coalesced: int = 0
    retried: int = 0
    stale: int = 0
    unserved: int = 0


@dataclass
class _Claimed:
    member: bytes
    urn: str
    name: str
    due_ms: int
    period_ms: int
    missed: int
    payload: bytes
    codec: str
    token: bytes
    now_ms: int
    claimed_at: float = field(default_factory=time.monotonic)

    def body(self) -> dict[str, Any]:
        """The ask's body: the Rust ``ReminderTick`` as MessagePack encodes it (a map by
        field name; the payload a ``Vec<u8>``, an array of integers)."""
        return {
            "name": self.name, "due_ms": self.due_ms, "period_ms": self.period_ms,
            "missed": self.missed, "payload": list(self.payload), "codec": self.codec,
        }


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _bucket(lag_ms: float) -> int:
    ms = max(0, int(lag_ms))
    return min(_LAG_BUCKETS - 1, 0 if ms <= 1 else (ms - 1).bit_length())


def _quantile(before: list[int], now: list[int], p: float) -> int | None:
    deltas = [n - b for n, b in zip(now, before)]
    total = sum(deltas)
    if total == 0:
        return None
    rank = max(1, math.ceil(total * p))
    seen = 0
    for i, d in enumerate(deltas):
        seen += d
        if seen >= rank:
            return 1 << i
    return 1 << (_LAG_BUCKETS - 1)


class ReminderPoller:
    """Claims and delivers the due reminders of ``namespace`` (one per host, started by
    :class:`conclib.host.ActorHost` when its config has ``reminders``). ``redis``: a redis-py
    asyncio client (the host's); ``client``: the :class:`conclib.AsyncClient` that asks;
    ``durability``: what its claims, their renewals and its acknowledgements must reach, as
    the Rust poller's (the host's level): a claim fewer replicas took in time is not
    delivered (it lapses, and the tick comes again), an acknowledgement or a renewal they
    did not take is logged (a promotion now may deliver those ticks again)."""

    def __init__(self, redis: Any, client: Any, namespace: str, system: str, options: ReminderPollerOptions,
                 durability: Durability | None = None) -> None:
        options.check()
        self.redis = redis
        self.durability = durability or Durability.primary()
        self.client = client
        self.ns = namespace
        self.system = system
        self.options = options
        # With the process id: a claim names the process delivering it (as the Rust token).
        self.token = f"{secrets.token_hex(8)}-p{os.getpid()}"
        self.stats = ReminderPollerStats()
        self._claim = redis.register_script(_lua.REMINDER_CLAIM)
        self._ack = redis.register_script(_lua.REMINDER_ACK)
        self._release = redis.register_script(_lua.REMINDER_RELEASE)
        self._renew = redis.register_script(_lua.REMINDER_RENEW)
        self._report = redis.register_script(_lua.REMINDER_REPORT)
        # Claims held (delivering, or waiting for their acknowledgement): token -> (shard, member).
        self._held: dict[bytes, tuple[int, bytes]] = {}
        self._in_flight = 0
        self._slot_freed = asyncio.Event()
        self._stop = asyncio.Event()
        self._acks: asyncio.Queue[_Claimed] = asyncio.Queue()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._lags = [0] * _LAG_BUCKETS

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._acknowledge()), loop.create_task(self._renew_claims())]

    async def stop(self, within: float = 5.0) -> None:
        """Stops claiming, then waits (``within`` seconds at most) for the deliveries in flight
        and their acknowledgement: a tick not acknowledged by then comes again once its
        claim lapses (at least once)."""
        self._stop.set()
        claiming = self._tasks[0] if self._tasks else None
        end = time.monotonic() + within
        if claiming is not None:
            try:
                await asyncio.wait_for(asyncio.shield(claiming), within)
            except (asyncio.TimeoutError, Exception):
                claiming.cancel()
        while (self._in_flight or self._deliveries) and time.monotonic() < end:
            await asyncio.sleep(0.01)
        await stop_tasks([*self._tasks, *self._deliveries], 1.0)

    # Claiming.

    async def _run(self) -> None:
        every = self.options.report_every
        last_report = time.monotonic()
        reported = (0, list(self._lags))
        while not self._stop.is_set():
            try:
                full = await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("reminders: a poll failed: %s", e)
                full = False
            if every is not None and time.monotonic() - last_report >= every:
                reported = await self._publish(time.monotonic() - last_report, reported)
                last_report = time.monotonic()
            if full:
                await asyncio.sleep(0)  # more may be due: again at once, letting deliveries run
                continue
            try:
                await asyncio.wait_for(self._stop.wait(), self.options.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def _poll_once(self) -> bool:
        opts = self.options
        half = max(opts.max_in_flight // 2, 1)
        if opts.max_in_flight - self._in_flight < half:
            # Wait until half the slots are free (a claim per shard for a handful of ticks
            # would cost more than it delivers).
            while opts.max_in_flight - self._in_flight < half and not self._stop.is_set():
                self._slot_freed.clear()
                await self._slot_freed.wait()
            return True
        free = opts.max_in_flight - self._in_flight
        per_shard = min(max(free // SHARDS, 1), opts.batch)
        answers = await asyncio.gather(*(self._claim_shard(s, per_shard) for s in range(SHARDS)))
        full = False
        for claimed in answers:
            full |= len(claimed) >= per_shard
            for c in claimed:
                self._in_flight += 1
                task = asyncio.get_running_loop().create_task(self._deliver(c))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
        return full

    async def _claim_shard(self, shard: int, limit: int) -> list[_Claimed]:
        prefix = shard_prefix(self.ns, shard)
        try:
            answer, short = await written(
                self.redis, self.durability, self._claim,
                [f"{prefix}:due"], [limit, int(self.options.claim_lease * 1000), self.token, f"{prefix}:r:"],
            )
        except Exception as e:
            log.debug("reminders: claim of shard %d failed: %s", shard, e)
            return []
        if short is not None:
            log.warning("reminders: claims of shard %d not replicated (%s); delivered once they lapse", shard, short)
            return []
        if not isinstance(answer, list) or not answer:
            return []
        now_ms = _int(answer[0])
        out: list[_Claimed] = []
        for row in answer[1:]:
            if not isinstance(row, list) or len(row) != 9:
                continue
            member, urn, name, due, period, missed, payload, codec, token = row
            c = _Claimed(
                member=bytes(member), urn=text(urn), name=text(name), due_ms=_int(due), period_ms=_int(period),
                missed=_int(missed), payload=bytes(payload) if isinstance(payload, bytes) else b"",
                codec=text(codec), token=bytes(token), now_ms=now_ms,
            )
            self._held[c.token] = (shard, c.member)
            out.append(c)
        self.stats.claimed += len(out)
        return out

    # Delivering.

    async def _deliver(self, c: _Claimed) -> None:
        acked = False
        try:
            try:
                await self.client.ask(c.urn, "conclib.ReminderTick", c.body(), timeout=self.options.delivery_timeout)
                handled = True
            except (HandlerError, Panicked, NoResponse):
                handled = True  # the actor handled it (as the Rust poller counts these)
            except UnknownUrn:
                handled = False
                self.stats.unserved += 1
                log.warning("reminders: no system serves %s, the URN of reminder %s; retried later", c.urn, c.name)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                handled = False
                log.debug("reminders: delivery of %s to %s failed: %s; retried later", c.name, c.urn, e)
            if handled:
                self._acks.put_nowait(c)
                acked = True  # its slot is freed once acknowledged
                return
            self.stats.retried += 1
            prefix = shard_prefix(self.ns, shard_of(c.urn))
            record = f"{prefix}:r:".encode() + c.member
            await self._retrying(
                lambda: self._release(
                    keys=[f"{prefix}:due", record], args=[c.member, c.token, int(self.options.retry_after * 1000)]
                )
            )
            self._held.pop(c.token, None)
        finally:
            if not acked:
                self._free_slot()

    def _free_slot(self) -> None:
        self._in_flight -= 1
        self._slot_freed.set()

    async def _retrying(self, call: Any) -> Any:
        """Runs a script call up to 5 times over about a second (Redis restarting); ``None``
        when it never answered (the claim then lapses: the tick comes again)."""
        pause = 0.05
        for _ in range(5):
            try:
                return await call()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(pause)
                pause *= 2
        log.warning("reminders: Redis did not answer; the tick will be delivered again after its claim")
        return None

    # Acknowledging.

    async def _acknowledge(self) -> None:
        while True:
            batch = [await self._acks.get()]
            while len(batch) < _MAX_ACK_BATCH and not self._acks.empty():
                batch.append(self._acks.get_nowait())
            by_shard: dict[int, list[_Claimed]] = defaultdict(list)
            for c in batch:
                by_shard[shard_of(c.urn)].append(c)
            await asyncio.gather(*(self._ack_shard(s, ticks) for s, ticks in by_shard.items()))

    async def _ack_shard(self, shard: int, ticks: list[_Claimed]) -> None:
        prefix = shard_prefix(self.ns, shard)
        args: list[Any] = [f"{prefix}:r:", f"{prefix}:u:"]
        for t in ticks:
            args += [t.member, t.token, t.name, t.missed, t.urn]
        try:
            answer = await self._retrying(
                lambda: written(self.redis, self.durability, self._ack, [f"{prefix}:due"], args)
            )
            results, short = answer if answer is not None else (None, None)
            if short is not None:
                log.warning("reminders: acknowledgements not replicated (%s); a promotion now may deliver those "
                            "ticks again", short)
            if isinstance(results, list) and len(results) == len(ticks):
                for t, r in zip(ticks, results):
                    if _int(r) == 0:
                        self.stats.stale += 1
                    else:
                        self.stats.fired += 1
                        self.stats.coalesced += t.missed
                        last_due = t.due_ms + t.missed * t.period_ms
                        lag = max(0, t.now_ms - last_due) + (time.monotonic() - t.claimed_at) * 1000
                        self._lags[_bucket(lag)] += 1
        finally:
            for t in ticks:
                self._held.pop(t.token, None)
                self._free_slot()

    # Renewing.

    async def _renew_claims(self) -> None:
        lease_ms = int(self.options.claim_lease * 1000)
        while True:
            await asyncio.sleep(self.options.claim_lease / 3)
            if not self._held:
                continue
            by_shard: dict[int, list[Any]] = defaultdict(list)
            for token, (shard, member) in list(self._held.items()):
                by_shard[shard] += [member, token]
            calls = []
            for shard, pairs in by_shard.items():
                prefix = shard_prefix(self.ns, shard)
                calls.append(written(self.redis, self.durability, self._renew,
                                     [f"{prefix}:due"], [lease_ms, f"{prefix}:r:", *pairs]))
            for got in await asyncio.gather(*calls, return_exceptions=True):
                if isinstance(got, BaseException):
                    log.debug("reminders: renewing claims failed: %s", got)
                elif got[1] is not None:
                    log.warning("reminders: claim renewals not replicated (%s)", got[1])

    # Reporting.

    async def _publish(self, interval: float, last: tuple[int, list[int]]) -> tuple[int, list[int]]:
        """Writes this poller's report for the live view (the Rust ``PollerReport``'s JSON)."""
        s = self.stats
        lags = list(self._lags)
        report = {
            "system": self.system, "pid": os.getpid(), "interval_ms": int(interval * 1000),
            "claimed": s.claimed, "fired": s.fired, "coalesced": s.coalesced, "retried": s.retried,
            "stale": s.stale, "unserved": s.unserved, "in_flight": self._in_flight,
            "fired_per_s": (s.fired - last[0]) / max(interval, 0.001),
            "lag_p50_ms": _quantile(last[1], lags, 0.5), "lag_p99_ms": _quantile(last[1], lags, 0.99),
        }
        try:
            await self._report(keys=[f"{self.ns}:rem:pollers"], args=[self.token, json.dumps(report), _FORGET_AFTER_MS])
        except Exception as e:
            log.debug("reminders: the poller's report failed: %s", e)
        return s.fired, lags
