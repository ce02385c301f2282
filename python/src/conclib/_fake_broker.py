"""Topics, reminders and durable executions in memory, for the fakes of
:mod:`conclib.testing` (no Redis).

A :class:`FakeBroker` keeps what Redis keeps for the real clients: each live topic's
subscribers, each durable topic's log with its subscriber groups (what each group was handed
and what is still unacknowledged, per consumer), each URN's reminders on a clock of its
own, which a test moves on (:meth:`FakeBroker.advance`) to fire the ticks that came due, and
the results and resolved promises of durable executions by URN and idempotency key.

A :class:`FakeSubscription` is a :class:`~conclib.topics.Subscription` whose events come
from the broker instead of Redis: the buffer, the counts (``stats()``), the decoding, the
in-band :class:`~conclib.Lagged` and the acknowledgement of an event when the next one is
asked for are the real subscription's code.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import codec
from .reminders import Registration, ReminderInfo, check_urn, check_urn_and_name
from .topics import Subscription, check_topic, live_frame

__all__ = ["FakeBroker", "FakeSubscription", "FiredTick"]


@dataclass(frozen=True)
class FiredTick:
    """A reminder tick that came due on the broker's clock (what a Rust system's poller
    would deliver to the actor as a ``ReminderTick``)."""

    namespace: str
    urn: str
    name: str
    payload: Any
    """The payload, decoded (``None``: registered without one)."""
    missed: int
    """Ticks of a periodic reminder that came due before this one and are folded into it."""
    due_ms: int
    """When this tick was due (ms since the Unix epoch, the broker's clock)."""


@dataclass
class _Reminder:
    registration: Registration
    due_ms: int


@dataclass
class _Group:
    """A subscriber group of a durable topic: the log's index it reads next, and the entries
    it handed out and that are not acknowledged (entry id -> consumer, when handed out)."""

    next_index: int
    pending: dict[bytes, tuple[str, float]] = field(default_factory=dict)


@dataclass
class _Log:
    """A durable topic: its entries (``first`` is the index of ``entries[0]``; older ones
    were trimmed) and its groups."""

    entries: list[tuple[bytes, bytes]] = field(default_factory=list)
    first: int = 0
    groups: dict[str, _Group] = field(default_factory=dict)

    def end(self) -> int:
        return self.first + len(self.entries)

    def body(self, entry_id: bytes) -> bytes | None:
        index = int(entry_id.split(b"-")[0]) - self.first
        return self.entries[index][1] if 0 <= index < len(self.entries) else None


class FakeBroker:
    """What Redis holds for topics and reminders, in memory. Fakes made with the same
    broker (``FakeAsyncClient(broker=b)``, ``FakeClient(broker=b)``) publish to and
    subscribe from one another; any thread may use it.

    ``now``: the clock's start, seconds since the Unix epoch (default: the time it is made);
    it moves only with :meth:`advance`."""

    def __init__(self, *, now: float | None = None) -> None:
        self._lock = threading.RLock()
        self._now_ms = int((time.time() if now is None else now) * 1000)
        self._live: dict[tuple[str, str], list[FakeSubscription]] = {}
        self._logs: dict[tuple[str, str], _Log] = {}
        self._durable: dict[tuple[str, str], list[FakeSubscription]] = {}
        self._published: dict[tuple[str, str], list[Any]] = {}
        self._reminders: dict[tuple[str, str], dict[str, _Reminder]] = {}
        # Durable executions by (namespace, URN): results by key (when, encoded), promises
        # by (key, name) (encoded), and what runs an unfinished execution again when one of
        # its promises is resolved.
        self._results: dict[tuple[str, str], dict[str, tuple[int, bytes]]] = {}
        self._promises: dict[tuple[str, str], dict[tuple[str, str], bytes]] = {}
        self._waiting: dict[tuple[str, str, str], Callable[[], None]] = {}

    # -- topics ----------------------------------------------------------------------------

    def publish(self, namespace: str, topic: str, body: bytes, *, durable: bool, max_len: int) -> None:
        """One encoded event: to the live topic's subscribers now, or appended to the durable
        topic's log (trimmed to its last ``max_len``) and handed to its groups."""
        check_topic(topic)
        key = (namespace, topic)
        with self._lock:
            self._published.setdefault(key, []).append(codec.decode(body))
            if not durable:
                for sub in list(self._live.get(key, [])):
                    sub._on_loop(sub._take_live, {"type": "message", "data": live_frame(body)})
                return
            log = self._logs.setdefault(key, _Log())
            log.entries.append((f"{log.end()}-0".encode(), body))
            if len(log.entries) > max_len:
                trimmed = len(log.entries) - max_len
                del log.entries[:trimmed]
                log.first += trimmed
            for sub in list(self._durable.get(key, [])):
                sub._on_loop(self._pump, sub)

    def published(self, namespace: str, topic: str) -> list[Any]:
        """Every event published to ``topic`` (live or durable), decoded, in order."""
        with self._lock:
            return list(self._published.get((namespace, topic), []))

    def _open(self, sub: FakeSubscription, from_start: bool) -> None:
        key = (sub._client.namespace, sub.topic)
        with self._lock:
            if not sub.durable:
                self._live.setdefault(key, []).append(sub)
                return
            log = self._logs.setdefault(key, _Log())
            # A group new to the topic starts at its end, or with the oldest event kept.
            log.groups.setdefault(sub.group, _Group(log.first if from_start else log.end()))
            self._durable.setdefault(key, []).append(sub)
            self._pump(sub)

    def _close(self, sub: FakeSubscription) -> None:
        key = (sub._client.namespace, sub.topic)
        with self._lock:
            for table in (self._live, self._durable):
                subs = table.get(key, [])
                if sub in subs:
                    subs.remove(sub)
            self._settle(sub)

    def _settle(self, sub: FakeSubscription) -> None:
        """The subscription's acknowledgements taken by its group."""
        if not sub.durable or not sub._acks:
            return
        with self._lock:
            group = self._logs[(sub._client.namespace, sub.topic)].groups[sub.group]
            for entry_id in sub._acks:
                group.pending.pop(entry_id, None)
                sub._held.discard(entry_id)
            sub._acks = []

    def _pump(self, sub: FakeSubscription) -> None:
        """Hands the subscription what its group has for it while its buffer has room: first
        the entries it took before and did not acknowledge (a consumer of the same name
        resuming), those of other consumers idle past ``claim_idle``, then new entries."""
        with self._lock:
            self._settle(sub)
            if sub._closed:
                return
            log = self._logs[(sub._client.namespace, sub.topic)]
            group = log.groups[sub.group]
            now = self._now_ms / 1000
            open_consumers = {s.consumer for s in self._durable.get((sub._client.namespace, sub.topic), [])}
            for entry_id, (consumer, since) in list(group.pending.items()):
                if sub._queue.full():
                    return
                if entry_id in sub._held:
                    continue
                if consumer == sub.consumer or (
                    consumer not in open_consumers and now - since >= sub._claim_idle_ms / 1000
                ):
                    group.pending[entry_id] = (sub.consumer, now)
                    self._hand(sub, log, entry_id, again=True)
            while not sub._queue.full() and group.next_index < log.end():
                group.next_index = max(group.next_index, log.first)
                entry_id = log.entries[group.next_index - log.first][0]
                group.next_index += 1
                group.pending[entry_id] = (sub.consumer, now)
                self._hand(sub, log, entry_id, again=False)

    @staticmethod
    def _hand(sub: FakeSubscription, log: _Log, entry_id: bytes, *, again: bool) -> None:
        sub._held.add(entry_id)
        body = log.body(entry_id)
        if body is None:  # trimmed away while pending
            sub._acks.append(entry_id)
            return
        sub._counts["received"] += 1
        if again:
            sub._counts["redelivered"] += 1
        sub._queue.put_nowait((entry_id, {b"v": b"1", b"codec": b"msgpack", b"body": body}))

    # -- reminders -------------------------------------------------------------------------

    def now(self) -> float:
        """The broker's clock, seconds since the Unix epoch."""
        with self._lock:
            return self._now_ms / 1000

    def register_reminder(self, namespace: str, registration: Registration) -> int:
        """Registers (or replaces) a reminder; when it is first due (ms since the epoch)."""
        r = registration
        with self._lock:
            due = self._now_ms + r.after_ms if r.after_ms is not None else int(r.at_ms or 0)
            self._reminders.setdefault((namespace, r.urn), {})[r.name] = _Reminder(r, due)
            return due

    def cancel_reminder(self, namespace: str, urn: str, name: str) -> bool:
        check_urn_and_name(urn, name)
        with self._lock:
            return self._reminders.get((namespace, urn), {}).pop(name, None) is not None

    def list_reminders(self, namespace: str, urn: str) -> list[ReminderInfo]:
        check_urn(urn)
        with self._lock:
            reminders = self._reminders.get((namespace, urn), {})
            return [
                ReminderInfo(name, r.due_ms, r.registration.period_ms, r.registration.payload,
                             r.registration.codec, False)
                for name, r in sorted(reminders.items())
            ]

    def advance(self, seconds: float) -> list[FiredTick]:
        """Moves the clock on by ``seconds`` and fires the ticks that came due (see
        :meth:`fire_due`)."""
        if not seconds >= 0:
            raise ValueError(f"the clock only moves on, got {seconds!r}")
        with self._lock:
            self._now_ms += int(round(seconds * 1000))
            return self.fire_due()

    def fire_due(self) -> list[FiredTick]:
        """The ticks due by the clock now, in the order they came due, as the pollers deliver
        them: one per reminder, the periodic ones' earlier missed ticks folded into it
        (``missed``) and their next tick due one period after the last of them; a one-off
        reminder is gone once fired."""
        fired: list[FiredTick] = []
        with self._lock:
            now = self._now_ms
            for (namespace, urn), reminders in list(self._reminders.items()):
                for name, r in list(reminders.items()):
                    if r.due_ms > now:
                        continue
                    period = r.registration.period_ms
                    missed = (now - r.due_ms) // period if period else 0
                    payload = codec.decode(r.registration.payload) if r.registration.codec else None
                    fired.append(FiredTick(namespace, urn, name, payload, missed, r.due_ms))
                    if period:
                        r.due_ms += (missed + 1) * period
                    else:
                        del reminders[name]
        fired.sort(key=lambda t: (t.due_ms, t.urn, t.name))
        return fired

    # -- durable executions ----------------------------------------------------------------

    def finish_execution(self, namespace: str, urn: str, key: str, body: bytes) -> bool:
        """Records execution ``key``'s result (encoded) unless it has one (the first stays,
        as the Rust journal's); deletes its promises. Whether it was recorded."""
        with self._lock:
            results = self._results.setdefault((namespace, urn), {})
            if key in results:
                return False
            results[key] = (int(time.time() * 1000), body)
            promises = self._promises.get((namespace, urn), {})
            for field_ in [f for f in promises if f[0] == key]:
                del promises[field_]
            self._waiting.pop((namespace, urn, key), None)
            return True

    def execution_result(self, namespace: str, urn: str, key: str) -> tuple[int, bytes] | None:
        """Execution ``key``'s result, if it finished: when (ms since the epoch), encoded."""
        with self._lock:
            return self._results.get((namespace, urn), {}).get(key)

    def executions(self, namespace: str, urn: str) -> dict[str, int | None]:
        """The executions of ``urn`` the broker knows (finished, or waiting for a promise),
        by key: when each finished (``None``: not yet)."""
        with self._lock:
            found: dict[str, int | None] = {
                k: None for (ns, u, k) in self._waiting if (ns, u) == (namespace, urn)
            }
            for key, (at, _) in self._results.get((namespace, urn), {}).items():
                found[key] = at
            return found

    def resolve_promise(self, namespace: str, urn: str, key: str, name: str, body: bytes) -> bool:
        """Resolves promise ``name`` of execution ``key`` (encoded) unless it is resolved
        already; runs the execution again if it waits for one. Whether it was resolved."""
        with self._lock:
            promises = self._promises.setdefault((namespace, urn), {})
            if (key, name) in promises:
                return False
            promises[(key, name)] = body
            again = self._waiting.pop((namespace, urn, key), None)
        if again is not None:
            again()
        return True

    def promises(self, namespace: str, urn: str, key: str) -> dict[str, Any]:
        """The promises of execution ``key`` resolved so far, by name, decoded."""
        with self._lock:
            return {
                name: codec.decode(body)
                for (k, name), body in self._promises.get((namespace, urn), {}).items()
                if k == key
            }

    def wait_for_promise(self, namespace: str, urn: str, key: str, again: Callable[[], None]) -> None:
        """Execution ``key`` waits for a promise: ``again`` runs it once one is resolved."""
        with self._lock:
            self._waiting[(namespace, urn, key)] = again


class FakeSubscription(Subscription):
    """A :class:`~conclib.topics.Subscription` fed by a :class:`FakeBroker`. Besides the
    real one's methods, :meth:`abandon` leaves it as a killed process would."""

    def __init__(self, broker: FakeBroker, client: Any, topic: str, **options: Any) -> None:
        super().__init__(client, topic, **options)
        self._broker = broker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    async def start(self) -> FakeSubscription:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._broker._open(self, self._from_start)
        return self

    def _on_loop(self, work: Callable[..., Any], *args: Any) -> None:
        """Runs ``work`` on the subscription's event loop: now if this is its thread."""
        loop = self._loop
        if loop is None or self._loop_thread == threading.get_ident():
            work(*args)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(work, *args)

    async def get(self, timeout: float | None = None) -> Any:
        # The last event is finished once the next is asked for: acknowledged now, and its
        # place in the buffer refilled from the group.
        if self._last is not None:
            self._acks.append(self._last)
            self._last = None
        if self.durable and not self._closed:
            self._broker._pump(self)
        return await super().get(timeout)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._last is not None:
            self._acks.append(self._last)
            self._last = None
        self._broker._close(self)

    def abandon(self) -> None:
        """Ends the subscription as a killed process would: nothing more is acknowledged, so
        a durable subscription's unfinished events come again to the next subscriber of the
        same consumer name (or, once ``claim_idle`` passed on the broker's clock, of its
        group)."""
        self._closed = True
        self._acks = []
        self._last = None
        self._broker._close(self)
