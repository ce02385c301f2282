"""A Python actor host through a Redis restart (SIGKILL, its data lost, then started again
on the same port) under 64 callers: asks fail with a typed error while Redis is down, none
returns past its timeout, and every URN the host served, fixed or activated for a pattern,
answers again once the host has claimed its keys anew (another Redis server answers: the
host's record of keys given away is not trusted, every key is claimed)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

import conclib
from conftest import PythonHost, RedisServer, run

CALLERS = 64
TIMEOUT = 1.0
# The client's own slack past an ask's timeout (its connection's answer), as elsewhere.
MARGIN = 0.5


@pytest.fixture()
def stack() -> Iterator[tuple[RedisServer, PythonHost, str]]:
    redis = RedisServer()
    ns = f"host-restart-{uuid.uuid4().hex[:6]}"
    host = None
    try:
        host = PythonHost(redis.url, ns, "--lease-ttl-ms", "2000")
        yield redis, host, ns
    finally:
        if host is not None:
            host.close()
        redis.close()


def test_a_python_host_serves_again_after_redis_restarted_empty(
    stack: tuple[RedisServer, PythonHost, str],
) -> None:
    redis, host, ns = stack
    # Half the callers ask the fixed URN, half one activation each.
    urns = ["conf:counter" if i % 2 == 0 else f"conf:pat:{i}" for i in range(CALLERS)]
    outcomes: list[tuple[int, float, str, float]] = []  # (caller, when, outcome, how long)

    async def caller(client: conclib.AsyncClient, i: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await client.ask(urns[i], "test.Get", timeout=TIMEOUT)
                outcome = "ok"
            except conclib.ConclibError as e:
                await asyncio.sleep(0)  # a closed client fails at once: let a cancel in
                outcome = type(e).__name__
            outcomes.append((i, started, outcome, time.monotonic() - started))
            if outcome != "ok":
                await asyncio.sleep(0.01)  # a failing caller does not spin

    async def wait_for(what: str, cond: object, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not cond():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {outcomes[-10:]} {host.stderr()}"
            await asyncio.sleep(0.02)

    def served_since(since: float) -> set[int]:
        return {i for i, t, o, _ in outcomes if t > since and o == "ok"}

    async def main() -> tuple[float, float]:
        async with conclib.AsyncClient(redis.url, namespace=ns) as client:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(caller(client, i, stop)) for i in range(CALLERS)]
            began = time.monotonic()
            await wait_for("every caller served", lambda: len(served_since(began)) == CALLERS, 30)
            killed = time.monotonic()
            redis.kill()
            await wait_for(
                "asks to fail",
                lambda: sum(o != "ok" for _, t, o, _ in outcomes if t > killed + TIMEOUT) >= CALLERS,
                15,
            )
            restarted = time.monotonic()
            redis.start()
            await wait_for(
                "every caller served again", lambda: len(served_since(restarted)) == CALLERS, 30
            )
            stop.set()
            await asyncio.gather(*tasks)
            return killed, restarted

    killed, restarted = run(main(), timeout=120)
    assert host.proc.poll() is None, f"the host exited: {host.stderr()}"
    longest = max(took for *_, took in outcomes)
    assert longest < TIMEOUT + MARGIN, f"an ask took {longest:.2f} s"
    kinds = {o for _, t, o, _ in outcomes if t > killed}
    # While Redis is down and until the host claimed its keys again: a typed wait, never
    # `UnknownUrn` (the URN is not unknown: its host is coming back).
    assert kinds <= {"ok", "Unavailable", "Timeout"}, kinds
    assert sum(o == "ok" for _, t, o, _ in outcomes if t > restarted) > 0
