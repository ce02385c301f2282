"""How often a cancellation of a task that sends redis-py commands without pause is dropped,
by where the canceller sends it from (``_tasks.py``, ``CANCEL_AT_ONCE``). On Python
3.11 one that lands as a command completes is dropped (CPython gh-86296). Each mode tries
again until the task ended (at most ``MOST`` tries), the modes alternated:

- ``timer``: from a timer's callback, 0.1 s apart (as the mailbox first did);
- ``timer_then_turn``: a timer 0.1 s apart, whose callback sends it at the loop's next turn;
- ``turn``: at the loop's next turn after the try before (as ``_tasks.again`` does now).

Prints one ``RESULT`` line: per mode, the share of tries dropped and the most tries a task
took; the connections a blocking pool counts in use after 32 tasks sharing 8 were each
cancelled turn after turn, ``rounds`` times (a cleanup cut short by a later try would leave
one there); and the longest time (ms) ``stop_tasks`` took to end 64 such tasks, against a
stop that cancels them from a task woken every 0.1 s (as ``stop_tasks`` first did), the two
alternated ``rounds`` times, and how many rounds each left a task running past 10 s.

    python python/tools/cancel_landing.py redis://127.0.0.1:PORT [rounds]
"""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio

from conclib._tasks import stop_tasks

MOST = 100
MODES = ("timer", "timer_then_turn", "turn")


async def tries_to_cancel(r: redis.asyncio.Redis, mode: str) -> int:
    """Cancellations sent in ``mode`` until a task looping on ``GET`` ended (``MOST``: it did
    not; then it is ended here)."""

    async def loop() -> None:
        while True:
            await r.get("poll")

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    ev = asyncio.get_running_loop()
    tries = 0
    finished = asyncio.Event()

    def attempt() -> None:
        nonlocal tries
        if task.done() or tries >= MOST:
            finished.set()
            return
        tries += 1
        task.cancel()
        if mode == "timer":
            ev.call_later(0.1, attempt)
        elif mode == "timer_then_turn":
            ev.call_later(0.1, ev.call_soon, attempt)
        else:
            ev.call_soon(attempt)

    ev.call_soon(attempt)
    await finished.wait()
    while not task.done():
        task.cancel()
        await asyncio.sleep(0)
    return tries


async def left_in_use(url: str, rounds: int) -> int:
    """32 tasks looping on ``GET`` through a blocking pool of 8 connections (so that a
    cancelled one's cleanup may wait for the pool's lock), cancelled turn after turn,
    ``rounds`` times: the connections the pool counts in use afterwards (a cleanup cut short by a later
    try would leave its connection there)."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=8, timeout=5)
    r = redis.asyncio.Redis(connection_pool=pool)
    ev = asyncio.get_running_loop()

    async def loop() -> None:
        while True:
            await r.get("poll")

    def attempt(task: asyncio.Task[None]) -> None:
        if task.done():
            return
        task.cancel()
        ev.call_soon(attempt, task)

    for _ in range(rounds):
        tasks = [asyncio.create_task(loop()) for _ in range(32)]
        await asyncio.sleep(0.05)
        for t in tasks:
            ev.call_soon(attempt, t)
        await asyncio.wait(tasks, timeout=60)
        for t in tasks:
            if not t.cancelled():
                t.exception()
    await asyncio.wait_for(asyncio.gather(*(r.get("poll") for _ in range(8))), 5)  # still serving
    in_use = len(pool._in_use_connections)
    await r.aclose()
    return in_use


async def every_tenth(tasks: list[asyncio.Task[None]], within: float) -> bool:
    """``stop_tasks`` as it first was: all cancelled from this task, again every 0.1 s."""
    pending = {t for t in tasks if not t.done()}
    end = asyncio.get_running_loop().time() + within
    while pending:
        for t in pending:
            t.cancel()
        left = end - asyncio.get_running_loop().time()
        if left <= 0:
            return False
        _, pending = await asyncio.wait(pending, timeout=min(0.1, left))
    return True


async def stop_times(r: redis.asyncio.Redis, rounds: int) -> dict[str, tuple[float, int]]:
    """Per way of stopping, the longest stop (ms) of 64 tasks looping on ``GET`` and the
    rounds that left one running past 10 s (then ended here, turn after turn)."""

    async def loop() -> None:
        while True:
            await r.get("poll")

    ways = {"stop_tasks": stop_tasks, "every_tenth": every_tenth}
    out = {w: (0.0, 0) for w in ways}
    for i in range(rounds):
        for name in (list(ways) if i % 2 == 0 else list(ways)[::-1]):
            tasks = [asyncio.create_task(loop()) for _ in range(64)]
            await asyncio.sleep(0.05)
            began = time.monotonic()
            ended = await ways[name](tasks, 10.0)
            took = (time.monotonic() - began) * 1000
            longest, over = out[name]
            out[name] = (max(longest, took), over + (not ended))
            await stop_tasks(tasks, 60.0)
    return out


async def main(url: str, rounds: int) -> None:
    r = redis.asyncio.Redis.from_url(url)
    await r.get("poll")
    tries: dict[str, list[int]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:
            tries[mode].append(await tries_to_cancel(r, mode))
    await r.aclose()
    fields = [f"python={sys.version_info.major}.{sys.version_info.minor}", f"rounds={rounds}"]
    for mode, ts in tries.items():
        fields.append(f"{mode}_dropped_share={sum(t - 1 for t in ts) / max(sum(ts), 1):.2f}")
        fields.append(f"{mode}_tries_max={max(ts)}")
    fields.append(f"turn_pool_left_in_use={await left_in_use(url, rounds)}")
    r = redis.asyncio.Redis.from_url(url)
    for name, (longest, over) in (await stop_times(r, rounds)).items():
        fields.append(f"{name}_ms_max={longest:.0f} {name}_past_10s={over}")
    await r.aclose()
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10))
