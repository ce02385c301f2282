"""A serving system restarts (SIGTERM: a graceful shutdown that deletes its URN keys, a gap
longer than an ask's timeout, a new process of the same system id) while 64 asyncio callers
ask without pause: no ask fails ``UnknownUrn`` (a web app's 404), only answers or
``Unavailable``, none later than its timeout plus a margin; a URN nobody served still fails
``UnknownUrn``. The Rust client's twin: ``a_restarting_system_answers_unavailable_never_unknown_urn``
(conclib-redis/tests/faults/shutdown.rs)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import pytest

import conclib
from conclib._raw import bulk
from conftest import RedisServer, RustServer, run

CALLERS = 64
TIMEOUT = 1.0
URNS = ("py:counter", "py:item:7")


@pytest.fixture()
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


def test_a_restarting_system_is_unavailable_never_unknown(redis: RedisServer) -> None:
    server = RustServer(redis.url, "sysrestart", system="restarting")
    outcomes: list[tuple[float, str, float]] = []  # (when, outcome, how long)

    async def caller(client: conclib.AsyncClient, urn: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await client.ask(urn, "Get", None, timeout=TIMEOUT)
                outcome = "ok"
            except conclib.ConclibError as e:
                outcome = type(e).__name__
            outcomes.append((started, outcome, time.monotonic() - started))
            await asyncio.sleep(0)

    async def main() -> None:
        nonlocal server
        async with conclib.AsyncClient(redis.url, namespace="sysrestart") as client:
            with pytest.raises(conclib.UnknownUrn):
                await client.ask("py:nobody", "Get", None, timeout=TIMEOUT)
            stop = asyncio.Event()
            tasks = [asyncio.create_task(caller(client, URNS[i % 2], stop)) for i in range(CALLERS)]
            await asyncio.sleep(0.3)
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, server.stop) == 0
            await asyncio.sleep(TIMEOUT + 0.5)  # a deploy's gap
            restarted = time.monotonic()
            server = await loop.run_in_executor(None, lambda: RustServer(redis.url, "sysrestart", system="restarting"))
            deadline = time.monotonic() + 20
            while not any(o == "ok" for t, o, _ in outcomes if t > restarted):
                assert time.monotonic() < deadline, outcomes[-10:]
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*tasks)
            # "Who serves it now" does not wait for a successor: nobody, at once.
            assert await loop.run_in_executor(None, server.stop) == 0
            started = time.monotonic()
            assert await client.resolve("py:counter") is None
            assert time.monotonic() - started < 1.0

    try:
        run(main(), timeout=60)
    finally:
        server.close()
    kinds = {o for _, o, _ in outcomes}
    slowest = max(took for _, _, took in outcomes)
    print(f"RESULT test=py_restart_grace callers={CALLERS} outcomes={len(outcomes)} kinds={sorted(kinds)} slowest_ms={slowest * 1000:.0f}")
    assert kinds <= {"ok", "Unavailable"}, kinds
    assert "Unavailable" in kinds and "ok" in kinds, kinds
    assert slowest < TIMEOUT + 0.5


def test_a_route_cached_to_a_closed_stream_follows_the_urn(redis: RedisServer) -> None:
    """A drained member hands its URNs to others, then deletes its stream while clients may
    still hold routes to it: such a route's request, refused by Redis (``NOMKSTREAM``), goes
    where the URN is served now, not failed ``UnknownUrn``. The route is planted as one
    cached before the drain would be. The Rust client's twin:
    ``a_urn_served_elsewhere_is_found_by_a_client_whose_route_led_to_a_closed_stream``
    (conclib-redis/tests/proxy.rs)."""
    server = RustServer(redis.url, "closedroute", system="serving")

    async def main() -> None:
        async with conclib.AsyncClient(redis.url, namespace="closedroute", resolve_cache_ttl=120) as client:
            session = await client._current()
            for urn in URNS:
                await client.ask(urn, "Get", None, timeout=5)

            def plant(urn: str) -> None:
                gone = session.keys.requests("drained")
                session.routes.cache[urn] = dataclasses.replace(
                    session.routes.cache[urn], system="drained", requests_key=gone, packed_key=bulk(gone)
                )

            for urn in URNS:
                plant(urn)
                assert await client.ask(urn, "Get", None, timeout=5) is not None
                assert session.routes.cache[urn].system == "serving"
            plant("py:counter")
            await client.tell("py:counter", "Record", 7)
            assert session.routes.cache["py:counter"].system == "serving"

    try:
        run(main(), timeout=30)
    finally:
        server.close()
