"""Ending tasks for good (``stop_tasks``), and cancelling one until it ends (``again``).

On Python 3.11, ``asyncio.wait_for`` drops a cancellation that arrives as the future it
waits for completes (CPython gh-86296; fixed in 3.12, whose ``wait_for`` is built on
``asyncio.timeout``), and redis-py awaits its commands through it: a task cancelled while
one of its commands completes runs on, as if never cancelled (measured: 167 of 200 tasks
sending ``GET`` in a loop, each cancelled once, went on). A loop that sends commands may so
outlive a single ``cancel()``, and whoever then awaits it waits for ever: a Python member
whose stop had finished never exited (``asyncio.run`` awaits every task it cancels), and
was killed after 10 s (``tests/test_host_stop.py``, about one run in four).

Where a cancellation is sent from matters. A task that sends commands without pause is
woken by a reply in the same turn of the loop as a timer, so that a cancellation sent from
a timer (or from a task a timer woke) lands as a command completes, and is dropped; sent at
the loop's next turn, it lands while the task waits for a reply
(``python/tools/cancel_landing.py``: 0.1 s apart, 41-52% of tries dropped on a quiet machine
and 81-96% beside a CI run, up to 100 in a row; at the next turn, at most 3 tries). So a
cancellation is tried again at the loop's next turns, ``CANCEL_AT_ONCE`` times, then every
``AGAIN_AFTER`` only: the bound spares the loop a task that swallows ``CancelledError``. A try
that comes while a cancelled task awaits in its own cleanup (a ``finally`` that awaits) cuts
that cleanup short (redis-py's own cleanup was not cut: the same tool, no connection left
in use in its pool).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["AGAIN_AFTER", "CANCEL_AT_ONCE", "again", "stop_tasks"]

# How many tries of a cancellation go at the loop's next turns before it is tried every
# ``AGAIN_AFTER`` seconds only (the module's docs).
CANCEL_AT_ONCE = 50
AGAIN_AFTER = 0.1


def again(tries: int, retry: Callable[..., object], *args: Any) -> None:
    """Schedules ``retry(*args)``, the next try of a cancellation tried ``tries`` times: at
    the loop's next turn while ``tries < CANCEL_AT_ONCE``, else ``AGAIN_AFTER`` later."""
    loop = asyncio.get_running_loop()
    if tries < CANCEL_AT_ONCE:
        loop.call_soon(retry, *args)
    else:
        loop.call_later(AGAIN_AFTER, retry, *args)


async def stop_tasks(tasks: Iterable[asyncio.Future[Any] | None], within: float = 5.0) -> bool:
    """Cancels each of ``tasks`` (``None`` and those done skipped), and again while it goes on
    (``again``), until all ended or ``within`` seconds passed: whether all ended. Their
    exceptions are retrieved (none is logged as never retrieved)."""
    pending = {t for t in tasks if t is not None and not t.done()}
    if not pending:
        return True
    tries: dict[asyncio.Future[Any], int] = {}
    given_up = False

    def cancel(t: asyncio.Future[Any]) -> None:
        if t.done() or given_up:
            return
        tries[t] = tries.get(t, 0) + 1
        t.cancel()
        again(tries[t], cancel, t)

    for t in pending:
        cancel(t)
    try:
        done, left = await asyncio.wait(pending, timeout=within)
    finally:
        given_up = True
    for t in done:
        if not t.cancelled():
            t.exception()
    return not left
