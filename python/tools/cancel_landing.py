"""How often a cancellation of a task that sends redis-py commands without pause is dropped,
sent from a timer (0.1 s apart) or at the loop's next turn (``_host_mailbox.py``,
``CANCEL_AT_ONCE``). On Python 3.11 one that lands as a command completes is dropped (CPython
gh-86296). Prints one ``RESULT`` line.

    python python/tools/cancel_landing.py redis://127.0.0.1:PORT [rounds]
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import redis.asyncio

MOST = 200


async def tries_to_cancel(r: redis.asyncio.Redis, pause: Callable[[], Awaitable[None]]) -> int:
    """Cancellations sent (``pause`` between them) until a task looping on ``GET`` ended;
    ``MOST`` if it did not."""

    async def loop() -> None:
        while True:
            await r.get("poll")

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    tries = 0
    while not task.done() and tries < MOST:
        task.cancel()
        tries += 1
        await pause()
    if not task.done():
        while not task.done():
            task.cancel()
            await asyncio.sleep(0)
    return tries


async def main(url: str, rounds: int) -> None:
    r = redis.asyncio.Redis.from_url(url)
    await r.get("poll")
    timer: list[int] = []
    turn: list[int] = []
    for _ in range(rounds):  # alternated
        timer.append(await tries_to_cancel(r, lambda: asyncio.sleep(0.1)))
        turn.append(await tries_to_cancel(r, lambda: asyncio.sleep(0)))
    await r.aclose()
    dropped_timer = sum(t - 1 for t in timer) / max(sum(timer), 1)
    dropped_turn = sum(t - 1 for t in turn) / max(sum(turn), 1)
    print(f"RESULT python={sys.version_info.major}.{sys.version_info.minor} rounds={rounds} "
          f"timer_tries_max={max(timer)} timer_dropped_share={dropped_timer:.2f} "
          f"next_turn_tries_max={max(turn)} next_turn_dropped_share={dropped_turn:.2f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10))
