"""Overload in the Python actor host (``HostConfig.max_pending_per_urn``, ``max_pending``,
``activation_cap``, ``memory``, a pattern's own limits; ``conclib/_host_overload.py``), as a
Rust member's: 64 callers past a limit get ``Overloaded`` with its scope, limit and depth at
once, never later than their timeout; tells past it are dropped and counted; a cap of 10
over 25 URNs passivates the least recently used, their state intact when asked again;
activations past a memory threshold are shed and their memory given back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import conclib
from conclib.actor import Actor, handler
from conclib._host_overload import resident_bytes, to_shed
from conclib.host import ActorHost, MemoryShedding
from conftest import RedisServer, run
from test_host_store import _Tally

CALLERS = 64
ASK_TIMEOUT = 2.0
# A call that returns later than its timeout by more than this overran it.
MARGIN = 0.5


class _Slow(Actor):
    """Takes 20 ms a request: 64 callers queue past any small limit."""

    @handler("test.Slow")
    async def slow(self) -> int:
        await asyncio.sleep(0.02)
        return 1


@asynccontextmanager
async def _serving(url: str, ns: str, pattern: str, actor: type[Actor], pattern_limits: dict[str, int] | None = None,
                   **limits: Any) -> AsyncIterator[tuple[ActorHost, conclib.AsyncClient]]:
    """A host serving ``pattern`` with ``limits`` (``HostConfig``'s) and ``pattern_limits``
    (``serve_pattern``'s), and a client."""
    host = ActorHost(url, namespace=ns, system="py-over", **limits)
    host.serve_pattern(pattern, actor, **(pattern_limits or {}))
    async with host:
        async with conclib.AsyncClient(url, namespace=ns) as client:
            yield host, client


async def _callers(client: conclib.AsyncClient, urns: list[str], seconds: float) -> tuple[Counter[str], list[Any]]:
    """``CALLERS`` callers asking ``test.Slow`` of ``urns`` (in turn) without pause for
    ``seconds``: the outcomes by name, and the ``Overloaded`` errors and the overruns."""
    outcomes: Counter[str] = Counter()
    seen: list[Any] = []
    end = time.monotonic() + seconds

    async def caller(i: int) -> None:
        while time.monotonic() < end:
            urn = urns[i % len(urns)]
            began = time.monotonic()
            try:
                await client.ask(urn, "test.Slow", timeout=ASK_TIMEOUT)
                outcomes["ok"] += 1
            except conclib.Overloaded as e:
                outcomes["overloaded"] += 1
                seen.append(e)
                await asyncio.sleep(0)
            except conclib.ConclibError as e:
                outcomes[type(e).__name__] += 1
                await asyncio.sleep(0)
            took = time.monotonic() - began
            if took > ASK_TIMEOUT + MARGIN:
                seen.append(took)

    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    return outcomes, seen


async def _refused_at_once(host: ActorHost, client: conclib.AsyncClient, urns: list[str],
                           scope: str, limit: int) -> None:
    """``CALLERS`` callers asking ``urns`` for 2 s past a limit of the host: some answered,
    the others ``Overloaded`` with the limit's scope and value and a depth at least the
    limit, none later than its timeout, nothing else; the host counted them."""
    outcomes, seen = await _callers(client, urns, 2.0)
    overruns = [s for s in seen if isinstance(s, float)]
    refused = [s for s in seen if isinstance(s, conclib.Overloaded)]
    assert not overruns, overruns[:5]
    assert outcomes["ok"] > 0 and outcomes["overloaded"] > 0, outcomes
    assert set(outcomes) == {"ok", "overloaded"}, outcomes
    assert all(e.scope == scope and e.limit == limit and e.depth >= limit for e in refused), refused[:5]
    assert host.stats()["overloaded_asks"] > 0, host.stats()


def test_asks_past_a_urns_limit_are_refused_at_once(redis_server: RedisServer) -> None:
    """64 callers asking one URN with a limit of 8 pending: refused at once past it
    (``_refused_at_once``); tells past the limit dropped and counted."""
    url = redis_server.url
    ns = f"hover-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        async with _serving(url, ns, "py:slow:{id}", _Slow, max_pending_per_urn=8) as (host, client):
            await _refused_at_once(host, client, ["py:slow:1"], "urn", 8)
            # Tells behind a full mailbox: past the limit, dropped and counted.
            blockers = [asyncio.create_task(client.ask("py:slow:2", "test.Slow", timeout=5)) for _ in range(8)]
            for _ in range(64):
                await client.tell("py:slow:2", "test.Slow")
            await asyncio.gather(*blockers, return_exceptions=True)
            deadline = time.monotonic() + 10
            while host.stats()["overloaded_tells"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert host.stats()["overloaded_tells"] > 0, host.stats()

    run(main(), timeout=60)


def test_asks_past_the_hosts_limit_are_refused_at_once(redis_server: RedisServer) -> None:
    """64 callers asking 64 URNs with a limit of 16 pending in the whole host: refused at
    once past it, with scope ``system`` (``_refused_at_once``)."""
    url = redis_server.url
    ns = f"hoversys-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        async with _serving(url, ns, "py:slow:{id}", _Slow, max_pending=16) as (host, client):
            await _refused_at_once(host, client, [f"py:slow:{i}" for i in range(CALLERS)], "system", 16)

    run(main(), timeout=60)


def test_asks_past_a_patterns_own_limits_are_refused_at_once(redis_server: RedisServer) -> None:
    """A pattern's own limits (``serve_pattern(max_pending=16, max_pending_per_urn=4)``; the
    host has none): 64 callers asking 64 of its URNs are refused at once past 16 pending,
    scope ``pattern``; asking one URN, past 4, scope ``urn`` (``_refused_at_once``). Once
    the callers are done the pattern counts nothing pending: every admitted request gave
    its count back, whether answered or not."""
    url = redis_server.url
    ns = f"hoverpat-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        limits = {"max_pending": 16, "max_pending_per_urn": 4}
        async with _serving(url, ns, "py:slow:{id}", _Slow, limits) as (host, client):
            await _refused_at_once(host, client, [f"py:slow:{i}" for i in range(CALLERS)], "pattern", 16)
            await _refused_at_once(host, client, ["py:slow:x"], "urn", 4)
            pattern = host._patterns[0]
            deadline = time.monotonic() + 10
            while pattern.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert pattern.pending == 0, pattern.pending

    run(main(), timeout=60)


def test_the_activation_cap_passivates_the_least_recently_used(redis_server: RedisServer) -> None:
    """A cap of 10 over 25 URNs of a state-keeping counter, each incremented three times
    in turn: the host never keeps more than 10 once its evictions ran, each URN's count is
    3 (its state saved and loaded again across its evictions), and evictions were counted."""
    url = redis_server.url
    ns = f"hcap-{uuid.uuid4().hex[:6]}"
    urns = [f"py:tally:{i}" for i in range(25)]

    async def main() -> None:
        async with _serving(url, ns, "py:tally:{id}", _Tally, activation_cap=10) as (host, client):
            for round_ in range(1, 4):
                for urn in urns:
                    assert await client.ask(urn, "test.Incr", timeout=10) == round_
                    assert host.stats()["activations"] <= 10, host.stats()
            stats = host.stats()
            assert stats["evicted"] >= 2 * 25 and stats["activated"] == stats["evicted"] + stats["activations"], stats

    run(main(), timeout=60)


def test_shedding_takes_the_share_above_its_target_and_at_most_an_eighth() -> None:
    """The Rust ``to_shed``'s cases, the same answers."""
    m = MemoryShedding(limit=1000)
    # At or under 80%: nothing.
    assert to_shed(800, 800, 1000, m) == 0
    # 900 resident, aiming at 700: 2/9 of 800 is 178, capped at an eighth (100).
    assert to_shed(800, 900, 1000, m) == 100
    # Just above: at least one.
    assert to_shed(1000, 801, 1000, m) == 125
    assert to_shed(3, 1_000_000, 1000, m) == 1
    assert to_shed(0, 1_000_000, 1000, m) == 0


class _Heavy(Actor):
    """Holds 1 MiB of its own (written, so resident) while activated."""

    def __init__(self, urn: str) -> None:
        super().__init__(urn)
        self.ballast = b"\x01" * (1 << 20)

    @handler("test.Slow")
    async def slow(self) -> int:
        return len(self.ballast)


def test_memory_shedding_passivates_the_least_recently_used(redis_server: RedisServer) -> None:
    """A host whose shedding threshold is its process's resident memory at the start plus 48
    MiB serves 300 URNs of an actor holding 1 MiB each (300 MiB without shedding): activations
    are shed (counted), every ask is answered, fewer than 300 are alive at the end, and the
    resident memory comes back under the shedding threshold (what the shed activations
    freed given back to the system: without it, it stays resident inside the C heap)."""
    url = redis_server.url
    ns = f"hshed-{uuid.uuid4().hex[:6]}"
    base = resident_bytes()
    assert base is not None
    # Its threshold (80% of the limit) 48 MiB above the process's memory at the start, whatever
    # the tests before left there: under it with every activation shed.
    memory = MemoryShedding()
    limit = memory.limit = int((base + (48 << 20)) / memory.above)

    async def main() -> None:
        async with _serving(url, ns, "py:heavy:{id}", _Heavy, memory=memory) as (host, client):
            for i in range(300):
                assert await client.ask(f"py:heavy:{i}", "test.Slow", timeout=10) == 1 << 20
                if i % 16 == 15:
                    await asyncio.sleep(0.05)  # room for the 250 ms looks between the asks
            deadline = time.monotonic() + 10
            while (resident_bytes() or 0) > memory.above * limit and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stats = host.stats()
            assert stats["shed"] > 0 and stats["activations"] < 300, stats
            assert (resident_bytes() or 0) <= memory.above * limit, (resident_bytes(), limit)

    run(main(), timeout=120)
