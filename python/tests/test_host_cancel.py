"""A Python actor that opts in to cancellation (``cancel_on_timeout = True``) is cancelled at
its request's deadline even when its handler awaits redis-py commands without pause. On
Python 3.11 a cancellation that arrives as such a command completes is dropped (CPython
gh-86296, ``conclib/_tasks.py``): cancelled once, the handler ran on as if never cancelled,
and the actor's next asks timed out behind it. The host cancels it again until it ends."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis.asyncio

import conclib
from conclib.actor import Actor, handler
from conclib.host import ActorHost
from conftest import RedisServer, run

ROUNDS = 20
POLL_TIMEOUT = 0.2
ECHO_TIMEOUT = 2.0
MARGIN = 0.5


class Poller(Actor):
    cancel_on_timeout = True

    def __init__(self, urn: str, url: str) -> None:
        super().__init__(urn)
        self.url = url
        self.redis: Any = None

    @handler("test.Poll")
    async def poll(self) -> None:
        if self.redis is None:
            self.redis = redis.asyncio.Redis.from_url(self.url)
        while True:
            await self.redis.get("poll")

    @handler("test.Echo")
    async def echo(self, text: str) -> str:
        return text


def test_a_handler_awaiting_redis_py_without_pause_is_cancelled_at_its_deadline(redis_server: RedisServer) -> None:
    """20 times: an ask of a handler that sends ``GET`` in a loop ends ``Timeout`` by its
    deadline, and the next ask of the same actor is answered (the loop ended), none later
    than its timeout plus a margin."""
    url = redis_server.url
    ns = f"cancel-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        host = ActorHost(url, namespace=ns, system="py-cancel")
        host.serve("py:poller", lambda urn: Poller(urn, url))
        async with host:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                late: list[float] = []
                for i in range(ROUNDS):
                    began = time.monotonic()
                    with pytest.raises(conclib.Timeout):
                        await client.ask("py:poller", "test.Poll", timeout=POLL_TIMEOUT)
                    if time.monotonic() - began > POLL_TIMEOUT + MARGIN:
                        late.append(time.monotonic() - began)
                    began = time.monotonic()
                    assert await client.ask("py:poller", "test.Echo", f"free {i}", timeout=ECHO_TIMEOUT) == f"free {i}"
                    if time.monotonic() - began > ECHO_TIMEOUT + MARGIN:
                        late.append(time.monotonic() - began)
                assert not late, late

    run(main(), timeout=120)
