"""Redis killed (SIGKILL, its data lost) and restarted on the same port during load: asks fail
with the typed ``Unavailable`` while it is down, never hang past their timeout, and succeed
again once the Rust proxy has registered its actors anew."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

import conclib
from conftest import RedisServer, RustServer, freeze, run


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
                await asyncio.sleep(0)  # a closed client fails at once: let a cancel in
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


def test_asks_lost_in_a_restart_fail_unavailable_at_once(stack: tuple[RedisServer, RustServer]) -> None:
    """As the Rust client since 89d1bf7: Redis SIGKILLed (no persistence) and restarted while
    asks with 5 s timeouts wait for their answers. The proxy is frozen (SIGSTOP) meanwhile, so
    their requests sit in its stream and die with Redis. None ends ``Timeout``; each lost one
    ends ``Unavailable`` within ~3 s of the restart (not at its 5 s deadline); asks made while
    Redis is down fail at once; the client recovers."""
    redis, server = stack
    timeout = 5.0
    ends: list[tuple[str, float]] = []  # (outcome, when it ended)

    async def ask(client: conclib.AsyncClient, n: int) -> None:
        try:
            assert await client.ask("py:shapes", "Double", n, timeout=timeout) == 2 * n
            outcome = "ok"
        except conclib.ConclibError as e:
            outcome = type(e).__name__
        ends.append((outcome, time.monotonic()))

    async def main() -> tuple[float, float]:
        async with conclib.AsyncClient(redis.url, namespace="restart") as client:
            assert await client.ask("py:shapes", "Double", 1, timeout=5) == 2
            freeze(server.proc.pid)
            try:
                asks = [asyncio.create_task(ask(client, n)) for n in range(64)]
                await asyncio.sleep(0.3)  # all written, none answered
                assert not ends, ends
                redis.kill()
                await asyncio.sleep(0.3)
                # While Redis is down, an ask fails at once.
                started = time.monotonic()
                with pytest.raises(conclib.Unavailable):
                    await client.ask("py:shapes", "Double", 1, timeout=timeout)
                assert time.monotonic() - started < 0.5
                redis.start()
                restarted = time.monotonic()
                await asyncio.wait_for(asyncio.gather(*asks), timeout + 2)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            # The client recovers once the proxy registered its actors again.
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert await client.ask("py:shapes", "Double", 21, timeout=1) == 42
                    break
                except conclib.Unavailable:
                    assert time.monotonic() < deadline, "no recovery within 30 s"
                    await asyncio.sleep(0.05)
            return started, restarted

    _, restarted = run(main(), timeout=60)
    outcomes = {o for o, _ in ends}
    assert len(ends) == 64 and outcomes <= {"ok", "Unavailable"}, outcomes
    assert "Unavailable" in outcomes
    late = max(t for o, t in ends if o == "Unavailable") - restarted
    assert late < 3.0, f"lost asks ended {late:.2f} s after the restart"


def test_blocking_client_fails_lost_asks_at_once(stack: tuple[RedisServer, RustServer]) -> None:
    redis, server = stack
    with conclib.Client(redis.url, namespace="restart") as client:
        assert client.ask("py:shapes", "Double", 1, timeout=5) == 2
        freeze(server.proc.pid)
        try:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                futures = [pool.submit(client.ask, "py:shapes", "Double", n, timeout=5.0) for n in range(8)]
                time.sleep(0.3)
                redis.kill()
                time.sleep(0.3)
                redis.start()
                restarted = time.monotonic()
                for f in futures:
                    with pytest.raises(conclib.Unavailable):
                        f.result(timeout=10)
                assert time.monotonic() - restarted < 3.0
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
