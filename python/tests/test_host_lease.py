"""The Python host's lease on a real Redis: a lapse of this process's own view only (starved
or paused within the TTL) claims no URN key again, a lapse in Redis does, once, and a pass
longer than the lease keeps the lease key alive beside it (as the Rust proxy's
``proxy/serve/lease.rs``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from conftest import RedisServer, run

from conclib._host_lease import Lease, Scripts

TTL = 1.0


async def _lease(redis_server: RedisServer, key: str) -> tuple[Any, Lease]:
    redis = aioredis.Redis.from_url(redis_server.url)
    lease = Lease(redis, Scripts(redis), key, TTL)
    await lease.acquire()
    return redis, lease


def test_a_lapse_of_this_process_view_only_confirms_nothing(redis_server: RedisServer) -> None:
    async def body() -> None:
        redis, lease = await _lease(redis_server, "lease-test:own-view")
        passes = 0

        async def confirm() -> None:
            nonlocal passes
            passes += 1

        # As after a pause shorter than the TTL: this process's clock says lapsed, Redis
        # still holds the key for it.
        lease.fresh_until = 0.0
        assert not lease.fresh()
        assert await lease.renew(confirm)
        assert passes == 0 and lease.fresh()
        # Lapsed in Redis: taken again, and confirmed once before it counts as held.
        await redis.delete(lease.key)
        assert await lease.renew(confirm)
        assert passes == 1 and lease.fresh()
        assert (await redis.get(lease.key)).decode() == lease.token
        # Held since: nothing more to confirm.
        assert await lease.renew(confirm)
        assert passes == 1
        await redis.aclose()

    run(body())


def test_a_pass_longer_than_the_lease_keeps_the_lease_key(redis_server: RedisServer) -> None:
    async def body() -> None:
        redis, lease = await _lease(redis_server, "lease-test:long-pass")
        started = asyncio.Event()
        finish = asyncio.Event()

        async def slow_confirm() -> None:
            started.set()
            await finish.wait()

        await redis.delete(lease.key)
        renewal = asyncio.ensure_future(lease.renew(slow_confirm))
        await asyncio.wait_for(started.wait(), 5)
        # A renewal meeting the pass under way leaves the lease unheld.
        assert not await lease.renew(slow_confirm)
        assert not lease.fresh()
        # Three TTLs into the pass: the key was renewed beside it, never lapsed.
        until = time.monotonic() + 3 * TTL
        while time.monotonic() < until:
            assert (await redis.get(lease.key)) is not None
            await asyncio.sleep(TTL / 10)
        assert not lease.fresh()
        finish.set()
        assert await asyncio.wait_for(renewal, 5)
        assert lease.fresh() and not lease.lost
        await redis.aclose()

    run(body())


def test_another_instance_taking_the_key_during_the_pass_loses_the_lease(
    redis_server: RedisServer,
) -> None:
    async def body() -> None:
        redis, lease = await _lease(redis_server, "lease-test:taken")
        finish = asyncio.Event()

        async def slow_confirm() -> None:
            await finish.wait()

        await redis.delete(lease.key)
        renewal = asyncio.ensure_future(lease.renew(slow_confirm))
        # Taken by another instance while the pass runs: seen at the next keeping renewal.
        for _ in range(500):
            if await redis.get(lease.key) is not None:
                break
            await asyncio.sleep(0.01)
        await redis.set(lease.key, "other@host:1", px=60_000)
        assert not await asyncio.wait_for(renewal, 5)
        assert lease.lost and not lease.fresh()
        await redis.aclose()

    run(body())
