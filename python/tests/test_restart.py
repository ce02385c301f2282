"""Redis killed (SIGKILL, its data lost) and restarted on the same port during load: asks fail
with the typed ``Unavailable`` while it is down, never hang past their timeout, and succeed
again once the Rust proxy has registered its actors anew."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

import conclib
from conftest import RedisServer, RustServer, run


@pytest.fixture()
def stack() -> Iterator[tuple[RedisServer, RustServer]]:
    redis = RedisServer()
    server = None
    try:
        server = RustServer(redis.url, "restart")
        yield redis, server
    finally:
        if server is not None:
            server.close()
        redis.close()


def test_redis_killed_and_restarted_during_load(stack: tuple[RedisServer, RustServer]) -> None:
    redis, _server = stack
    timeout = 0.5
    outcomes: list[tuple[float, str, float]] = []  # (when, outcome, how long)

    async def worker(client: conclib.AsyncClient, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                assert await client.ask("py:shapes", "Double", n, timeout=timeout) == 2 * n
                outcome = "ok"
            except conclib.ConclibError as e:
                outcome = type(e).__name__
            took = time.monotonic() - started
            outcomes.append((started, outcome, took))
            if outcome != "ok":
                await asyncio.sleep(0.01)  # a failing worker does not spin

    async def wait_for(what: str, cond: Any, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {outcomes[-20:]}"
            await asyncio.sleep(0.02)

    async def main() -> tuple[float, float]:
        async with conclib.AsyncClient(redis.url, namespace="restart") as client:
            stop = asyncio.Event()
            workers = [asyncio.create_task(worker(client, stop)) for _ in range(8)]
            await wait_for("asks to succeed", lambda: sum(o == "ok" for _, o, _ in outcomes) >= 50, 20)
            killed = time.monotonic()
            redis.kill()
            await wait_for(
                "asks to fail",
                lambda: sum(o != "ok" for t, o, _ in outcomes if t > killed + timeout) >= 20,
                10,
            )
            restarted = time.monotonic()
            redis.start()
            await wait_for(
                "asks to succeed again",
                lambda: sum(o == "ok" for t, o, _ in outcomes if t > restarted) >= 50,
                30,
            )
            stop.set()
            await asyncio.gather(*workers)
            # The same client keeps working.
            assert await client.ask("py:shapes", "Double", 21, timeout=5) == 42
            return killed, restarted

    killed, restarted = run(main(), timeout=90)
    # Asks made and finished while Redis was down (one in progress at the restart may succeed).
    during = [o for t, o, took in outcomes if killed + timeout < t and t + took < restarted]
    assert during and all(o == "Unavailable" for o in during), set(during)
    # No ask ever took much longer than its timeout.
    assert max(took for _, _, took in outcomes) < timeout + 0.5
    after = [o for t, o, _ in outcomes if t > restarted]
    assert set(after) <= {"ok", "Unavailable"}, set(after)
    # Once asks succeed again, they all do.
    first_ok = next(i for i, o in enumerate(after) if o == "ok")
    tail = after[first_ok + 20:]
    assert tail.count("ok") >= len(tail) - 8, after


def test_blocking_client_recovers_too(stack: tuple[RedisServer, RustServer]) -> None:
    redis, _server = stack
    with conclib.Client(redis.url, namespace="restart") as client:
        assert client.ask("py:shapes", "Double", 1, timeout=5) == 2
        redis.kill()
        started = time.monotonic()
        with pytest.raises(conclib.Unavailable):
            client.ask("py:shapes", "Double", 1, timeout=1)
        assert time.monotonic() - started < 1.5
        redis.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                assert client.ask("py:shapes", "Double", 2, timeout=1) == 4
                break
            except conclib.Unavailable:
                assert time.monotonic() < deadline, "no recovery within 30 s"
