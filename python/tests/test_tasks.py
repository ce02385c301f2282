"""``conclib._tasks.stop_tasks``: tasks cancelled until they end, within a bound. On Python
3.11 a task awaiting a redis-py command may outlive one cancellation (``asyncio.wait_for``
drops it when the command completes at that moment); a stop that cancels once and then
awaits such a task waits for ever."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from conclib._tasks import stop_tasks
from conftest import RedisServer, run


def test_a_task_that_outlives_a_cancellation_is_cancelled_again() -> None:
    """A task that swallows its first cancellation (as ``wait_for`` may) ends at the second;
    one that never ends is given up at the bound, which ``stop_tasks`` reports."""

    async def main() -> None:
        quit_ = asyncio.Event()

        async def stubborn(times: int) -> None:
            while not quit_.is_set():
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    if times == 0:
                        raise
                    times -= 1

        once = asyncio.create_task(stubborn(1))
        await asyncio.sleep(0)
        assert await stop_tasks([once, None], 5.0)
        assert once.cancelled()
        never = asyncio.create_task(stubborn(10**9))
        await asyncio.sleep(0)
        began = time.monotonic()
        assert not await stop_tasks([never], 0.3)
        assert time.monotonic() - began < 2.0 and not never.done()
        quit_.set()
        await asyncio.wait((never,), timeout=5)

    run(main(), timeout=30)


def test_tasks_sending_redis_commands_all_end(redis_server: RedisServer) -> None:
    """64 tasks sending ``GET`` to a real Redis without pause all end by ``stop_tasks`` within
    the 1 s the host's lanes, reminder poller and sessions give it, 10 times over (a single
    ``cancel()`` left some running on Python 3.11; cancellations 0.1 s apart, sent from a task
    a timer woke, ended them in 3.7 s a round on a quiet machine, and left some running past
    10 s in one run of the whole suite: the module's docs)."""

    async def main() -> None:
        r: Any = aioredis.from_url(redis_server.url)
        try:
            async def loop() -> None:
                while True:
                    try:
                        await r.get("x")
                    except asyncio.CancelledError:
                        raise
                    except Exception:  # noqa: BLE001 - a loop that goes on after errors
                        pass

            for _ in range(10):
                tasks = [asyncio.create_task(loop()) for _ in range(64)]
                await asyncio.sleep(0.05)
                assert await stop_tasks(tasks, 1.0)
                assert all(t.done() for t in tasks)
        finally:
            await r.aclose()

    run(main(), timeout=150)
