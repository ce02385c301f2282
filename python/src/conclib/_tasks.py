"""Ending tasks for good (``stop_tasks``).

On Python 3.11, ``asyncio.wait_for`` drops a cancellation that arrives as the future it
waits for completes (CPython gh-86296; fixed in 3.12, whose ``wait_for`` is built on
``asyncio.timeout``), and redis-py awaits its commands through it: a task cancelled while
one of its commands completes runs on, as if never cancelled (measured: 167 of 200 tasks
sending ``GET`` in a loop, each cancelled once, went on). A loop that sends commands may so
outlive a single ``cancel()``, and whoever then awaits it waits for ever: a Python member
whose stop had finished never exited (``asyncio.run`` awaits every task it cancels), and
was killed after 10 s (``tests/test_host_stop.py``, about one run in four)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["stop_tasks"]

# How long a cancelled task has to end before it is cancelled again: room for the cleanup
# a cancellation runs (a connection released), which a second cancellation would cut.
AGAIN_AFTER = 0.1


async def stop_tasks(tasks: Iterable[asyncio.Future[Any] | None], within: float = 5.0) -> bool:
    """Cancels each of ``tasks`` (``None`` and those done skipped), cancelling again every
    ``AGAIN_AFTER`` seconds one that goes on, until all ended or ``within`` seconds passed:
    whether all ended. Their exceptions are retrieved (none is logged as never retrieved)."""
    loop = asyncio.get_running_loop()
    pending = {t for t in tasks if t is not None and not t.done()}
    end = loop.time() + within
    while pending:
        for t in pending:
            t.cancel()
        left = end - loop.time()
        if left <= 0:
            return False
        done, pending = await asyncio.wait(pending, timeout=min(AGAIN_AFTER, left))
        for t in done:
            if not t.cancelled():
                t.exception()
    return True
