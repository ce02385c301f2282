"""Wire behaviour beyond the single-request cases of ``conformance/``, checked on the Rust
proxy and on the Python actor host alike: a tell then an ask, a timed-out handler, and the
loss of the lease to a successor (the fence), under 64 callers retrying without pause. And
what only the Python host offers: cancellation of a timed-out handler where the actor opts
in."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import conclib
from conftest import PythonHost, RedisServer, RustServer, freeze, run

MARGIN = 1.0


@pytest.fixture(scope="module")
def python_ns(redis_server: RedisServer) -> Iterator[str]:
    ns = f"pyhost-{uuid.uuid4().hex[:8]}"
    host = PythonHost(redis_server.url, ns)
    yield ns
    host.close()


@pytest.fixture(params=["rust", "python"])
def served(request: pytest.FixtureRequest, url: str, namespace: str) -> str:
    """The namespace where the conformance actor is served, by the Rust proxy or the
    Python host."""
    if request.param == "rust":
        return namespace
    ns: str = request.getfixturevalue("python_ns")
    return ns


def test_tell_then_ask(served: str, url: str) -> None:
    value = secrets.randbelow(2**60)

    async def main() -> list[int]:
        async with conclib.AsyncClient(url, namespace=served) as client:
            await client.tell("conf:counter", "test.Record", value)
            history: list[int] = await client.ask("conf:counter", "test.History", timeout=5)
            return history

    assert value in run(main())


def test_a_timed_out_handler_keeps_the_actor_busy(served: str, url: str) -> None:
    """Without cancellation (the default on both hosts), a handler that outlives its
    request's deadline runs on: the next ask waits for it."""

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=served) as client:
            with pytest.raises(conclib.Timeout):
                await client.ask("conf:counter", "test.Sleep", 1500, timeout=0.2)
            with pytest.raises(conclib.Timeout):
                await client.ask("conf:counter", "test.Echo", "x", timeout=0.3)
            # And once it is done, the actor answers again.
            assert await client.ask("conf:counter", "test.Echo", "y", timeout=5) == "y"

    run(main())


def test_python_actor_opting_in_is_cancelled_at_its_deadline(url: str, python_ns: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=python_ns) as client:
            with pytest.raises(conclib.Timeout):
                await client.ask("conf:patient", "test.Sleep", 5000, timeout=0.2)
            started = time.monotonic()
            assert await client.ask("conf:patient", "test.Echo", "free", timeout=1) == "free"
            assert time.monotonic() - started < 1

    run(main())


async def _hammer(url: str, ns: str, stop: asyncio.Event, timeout: float) -> tuple[int, int, float]:
    """64 callers asking without pause until ``stop``: (answered, failed, slowest call)."""
    answered = failed = 0
    slowest = 0.0
    async with conclib.AsyncClient(url, namespace=ns) as client:

        async def caller() -> None:
            nonlocal answered, failed, slowest
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await client.ask("conf:counter", "test.Add", 1, timeout=timeout)
                    answered += 1
                except conclib.ConclibError:
                    await asyncio.sleep(0)  # a closed client fails at once: let a cancel in
                    failed += 1
                slowest = max(slowest, time.monotonic() - started)

        await asyncio.gather(*(caller() for _ in range(64)))
    return answered, failed, slowest


def _start(kind: str, url: str, ns: str, system: str, lease_ms: int) -> Any:
    if kind == "rust":
        return RustServer(url, ns, system=system, lease_ttl_ms=lease_ms)
    return PythonHost(url, ns, "--system", system, "--lease-ttl-ms", str(lease_ms))


@pytest.mark.parametrize("kind", ["rust", "python"])
def test_lease_lost_to_a_successor_fences_the_paused_host(kind: str, redis_server: RedisServer) -> None:
    """A host paused past its lease is replaced by a successor of the same system; once
    resumed, it hands nothing more to its actors: with the successor gone too, nobody
    answers. 64 callers ask throughout; no call outlives its timeout and a margin."""
    url = redis_server.url
    ns = f"lease-{kind}-{uuid.uuid4().hex[:6]}"
    lease_ms = 600
    first = _start(kind, url, ns, "sys", lease_ms)
    second = None
    try:

        async def main() -> tuple[int, int, float]:
            stop = asyncio.Event()
            load = asyncio.create_task(_hammer(url, ns, stop, timeout=1.0))
            await asyncio.sleep(0.5)
            freeze(first.proc.pid)
            await asyncio.sleep(lease_ms * 2 / 1000)
            nonlocal second
            second = await asyncio.to_thread(_start, kind, url, ns, "sys", lease_ms)
            await asyncio.sleep(0.5)
            os.kill(first.proc.pid, signal.SIGCONT)
            await asyncio.sleep(lease_ms * 2 / 1000)
            stop.set()
            return await load

        answered, failed, slowest = run(main())
        assert answered > 0
        assert slowest < 1.0 + MARGIN, slowest
        # The successor gone, the resumed first host does not serve: no answer comes.
        assert second is not None
        second.proc.kill()
        second.proc.wait(10)

        async def after() -> None:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                with pytest.raises((conclib.Timeout, conclib.UnknownUrn, conclib.Unavailable)):
                    await client.ask("conf:counter", "test.Add", 1, timeout=lease_ms * 2 / 1000)

        run(after())
    finally:
        for host in (first, second):
            if host is not None:
                host.proc.kill()
                host.close()
