"""A host's own reminder poller (``HostConfig(reminders=...)``, ``_host_reminders.py``): a
pattern served by Python members only, with no Rust system in the namespace, gets its
reminders' ticks. Two members' pollers claim from the same shards, so each tick is
delivered once; a member SIGKILLed mid-delivery has its claims lapse and its ticks delivered
by the other member's poller (at least once), within its claim lease and a margin."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

import conclib
from conclib.actor import Actor, ReminderTick, handler
from conclib.host import ActorHost, HostConfig, ReminderPollerOptions
from conftest import PythonHost, RedisServer, run

# What each in-process actor handled: (urn, name, due_ms) per delivery, and where.
_handled: list[tuple[str, str, int]] = []
_where: list[tuple[str, str]] = []


class Sleeper(Actor):
    @handler("conclib.ReminderTick")
    async def tick(self, tick: ReminderTick) -> None:
        assert tick.value() == {"urn": self.urn}
        _handled.append((self.urn, tick.name, tick.last_due_ms))
        _where.append((self.urn, self._host.system))  # type: ignore[attr-defined]


def _poller() -> ReminderPollerOptions:
    # The default claim lease (4 s): a poller stalled past it (a loaded machine) has its
    # claims taken over, and their ticks delivered again (at least once), which this test
    # would count as a tick delivered twice.
    return ReminderPollerOptions(poll_interval=0.02, report_every=0.2)


def test_python_members_deliver_each_tick_once(redis_server: RedisServer, raw_redis: Any) -> None:
    """64 one-shot reminders and a periodic one, on a pattern two Python members serve,
    each running its poller: every one-shot tick handled exactly once, the periodic
    reminder's ticks each once (no tick's due time handled twice), every one acknowledged,
    and the pollers' reports in the pollers' hash the live view reads."""
    _handled.clear()
    _where.clear()
    url = redis_server.url
    ns = f"pyrem-{uuid.uuid4().hex[:6]}"
    urns = [f"sleeper:{i}" for i in range(64)]

    async def main() -> list[Any]:
        hosts = []
        for system in ("py-a", "py-b"):
            host = ActorHost(url, HostConfig(namespace=ns, system=system, lease_ttl=1.0, reminders=_poller()))
            host.serve_pattern("sleeper:{id}", Sleeper)
            hosts.append(host)
        for h in hosts:
            await h.start()
        try:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                for urn in urns:
                    await client.register_reminder(urn, "once", after=0.05, payload={"urn": urn})
                await client.register_reminder("sleeper:beat", "beat", after=0.05, every=0.1, payload={"urn": "sleeper:beat"})
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    once = {u for u, n, _ in _handled if n == "once"}
                    beats = [d for u, n, d in _handled if n == "beat"]
                    if len(once) == len(urns) and len(beats) >= 5:
                        break
                    await asyncio.sleep(0.02)
                assert await client.cancel_reminder("sleeper:beat", "beat")
                # Acknowledged: a one-shot reminder is gone once its tick was.
                while time.monotonic() < deadline:
                    left = [u for u in urns if await client.list_reminders(u)]
                    if not left:
                        break
                    await asyncio.sleep(0.05)
                assert not left, left
                await asyncio.sleep(0.3)  # a report of each poller
            return [h.reminder_poller.stats for h in hosts if h.reminder_poller is not None]
        finally:
            for h in hosts:
                await h.stop()

    stats = run(main(), timeout=60)
    once = Counter(u for u, n, _ in _handled if n == "once")
    assert once == Counter({u: 1 for u in urns}), (stats, [w for w in _where if once[w[0]] > 1])
    beats = [d for u, n, d in _handled if n == "beat"]
    assert len(beats) >= 5, beats
    assert len(set(beats)) == len(beats), f"a periodic tick handled twice: {beats}"
    # A tick of the periodic reminder being delivered as it was cancelled is handled, then
    # found not claimed any more (stale); every other tick is acknowledged.
    assert sum(s.stale for s in stats) <= 1, stats
    assert sum(s.fired + s.stale for s in stats) >= 64 + 5, stats
    assert sum(s.retried + s.unserved for s in stats) == 0, stats
    reports = raw_redis.hgetall(f"{ns}:rem:pollers")
    assert len(reports) == 2, reports
    systems = {json.loads(v.split(b" ", 1)[1])["system"] for v in reports.values()}
    assert systems == {"py-a", "py-b"}, reports


def test_a_killed_members_ticks_are_delivered_by_the_other(redis_server: RedisServer) -> None:
    """A Python member claims 64 due ticks and dies (SIGKILL) while its handlers run: its
    claims lapse after its claim lease (1 s) and the other member's poller delivers every
    tick, each to the surviving member (which activates the URN), within the lease and a
    margin. At least once: the dead member's own asks, moved to the survivor, may hand a
    tick over a second time, of the same due time."""
    url = redis_server.url
    ns = f"pyremk-{uuid.uuid4().hex[:6]}"
    urns = [f"py:ptick:{i}" for i in range(64)]
    first = PythonHost(url, ns, "--pattern-only", "--reminders", "--hang-ticks", "--lease-ttl-ms", "1000", "--system", "py-a")
    second: PythonHost | None = None
    try:

        async def claimed(client: conclib.AsyncClient) -> int:
            n = 0
            for urn in urns:
                n += sum(1 for r in await client.list_reminders(urn) if r.claimed)
            return n

        async def register() -> None:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                for urn in urns:
                    await client.register_reminder(urn, "once", after=0.0, payload={"urn": urn})
                deadline = time.monotonic() + 10
                while await claimed(client) < len(urns) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert await claimed(client) == len(urns)

        run(register(), timeout=30)
        # The survivor's claims last 4 s (the default): stalled on a loaded machine, it
        # does not take its own deliveries over.
        second = PythonHost(
            url, ns, "--pattern-only", "--reminders", "--claim-lease-ms", "4000", "--lease-ttl-ms", "1000", "--system", "py-b"
        )
        killed = time.monotonic()
        first.kill()

        async def delivered() -> tuple[float, dict[str, list[Any]]]:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                ticks: dict[str, list[Any]] = {}
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    for urn in urns:
                        if urn not in ticks:
                            got = await client.ask(urn, "test.Ticks", timeout=5)
                            if got:
                                ticks[urn] = got
                    if len(ticks) == len(urns):
                        break
                    await asyncio.sleep(0.05)
                took = time.monotonic() - killed
                # Acknowledged by the survivor: gone.
                while any([await client.list_reminders(u) for u in urns]) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert not any([await client.list_reminders(u) for u in urns])
                await asyncio.sleep(0.3)  # a second hand-over would be in by now
                return took, {u: await client.ask(u, "test.Ticks", timeout=5) for u in urns}

        took, ticks = run(delivered(), timeout=60)
        # The claim lease (1 s), then a delivery through the takeover of the dead member's
        # URNs; the margin is for a loaded machine (a bound, not a figure).
        assert took < 1.0 + 9.0, took
        for urn, seen in ticks.items():
            assert 1 <= len(seen) <= 2, (urn, seen)
            assert {(name, payload["urn"], due) for name, _, payload, due in seen} == {
                ("once", urn, seen[0][3])
            }, (urn, seen)
    finally:
        first.close()
        if second is not None:
            second.close()
