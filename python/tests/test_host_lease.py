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

        async def confirm(_given: Any) -> None:
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

        async def slow_confirm(_given: Any) -> None:
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

        async def slow_confirm(_given: Any) -> None:
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


def test_two_renewals_at_once_after_a_lapse_count_it_held_only_after_the_pass(
    redis_server: RedisServer,
) -> None:
    """The heartbeat's renewal and a request's re-check after a thaw: the first takes the
    lapsed lease again, the second finds it kept. Whatever order their answers come back in,
    neither counts the lease held before the first's pass has claimed the URN keys again
    (the second's answer read first would otherwise mark it fresh with keys given away
    still served)."""

    async def body() -> None:
        redis, lease = await _lease(redis_server, "lease-test:two-at-once")
        events: list[str] = []
        retaken = asyncio.Event()
        second_done = asyncio.Event()
        real_claim = lease.scripts.claim

        async def claim(keys: Any, args: Any, **kw: Any) -> Any:
            got = await real_claim(keys=keys, args=args, **kw)
            if "renew" not in args and not retaken.is_set():
                # The first renewal's retake: its answer is read after the second's (when
                # the second can run beside it at all).
                events.append("retaken")
                retaken.set()
                try:
                    await asyncio.wait_for(second_done.wait(), TTL / 5)
                except asyncio.TimeoutError:
                    pass
            return got

        lease.scripts.claim = claim

        async def confirm(_given: Any) -> None:
            events.append("pass")

        async def second() -> None:
            await retaken.wait()
            held = await lease.renew(confirm)
            events.append(f"second {held} {lease.fresh()}")
            second_done.set()

        await redis.delete(lease.key)
        lease.fresh_until = 0.0
        first, _ = await asyncio.gather(lease.renew(confirm), second())
        assert first and lease.fresh()
        # Held by the second only once the pass ran (or not held by it at all).
        second_said = next(e for e in events if e.startswith("second"))
        if second_said.endswith("True"):
            assert events.index("pass") < events.index(second_said), events
        await redis.aclose()

    run(body())


async def _system_lease(redis_server: RedisServer, key: str) -> tuple[Any, Lease, str]:
    """A system's lease, with its record of URN keys given away (``_host_lease.py``)."""
    redis = aioredis.Redis.from_url(redis_server.url)
    record = f"{key}:given"
    lease = Lease(redis, Scripts(redis), key, TTL, record=(record, 60.0))
    await lease.acquire()
    return redis, lease, record


def test_a_lapse_with_a_whole_record_asks_for_the_keys_given_away_only(redis_server: RedisServer) -> None:
    """As the Rust ``lease_state`` test of the same name, on a real Redis through
    ``SYSTEM_LEASE_SCRIPT``: a lapse whose record is whole passes on what it names; one whose
    record is not (lost, or expired), or another Redis server answering (``check_server``),
    passes ``None``
    (every key), and a pass still owed for such a lapse stays one over every key."""

    async def body() -> None:
        redis, lease, record = await _system_lease(redis_server, "lease-test:given")
        assert {m.decode() for m in await redis.smembers(record)} == {"(record whole)"}
        passes: list[Any] = []

        async def confirm(given: Any) -> None:
            passes.append(given)

        async def lapse_with(*given: str) -> None:
            await redis.delete(lease.key)
            if given:
                await redis.sadd(record, *given)

        # A takeover gave "a" away while the lease was absent: that only, and the record is
        # emptied (and whole again) in the same step as the retake.
        await lapse_with("a")
        assert await lease.renew(confirm)
        assert passes == [{"a"}]
        assert {m.decode() for m in await redis.smembers(record)} == {"(record whole)"}
        # Held since: nothing more to confirm; the record lives as long as the lease.
        assert await lease.renew(confirm) and len(passes) == 1
        assert await redis.pttl(record) > 30_000
        # Two lapses before a pass (the first one's pass failed): both.
        await lapse_with("b")
        assert not await lease.renew(_failing)
        await lapse_with("c")
        assert await lease.renew(confirm)
        assert passes[-1] == {"b", "c"}
        # A record lost (a Redis restarted, or it expired): every key.
        await lapse_with()
        await redis.delete(record)
        assert await lease.renew(confirm)
        assert passes[-1] is None
        # Made whole again by that retake: the next lapse is known again.
        await lapse_with("d")
        assert await lease.renew(confirm)
        assert passes[-1] == {"d"}
        # Another Redis server answered than at the last look (a restart, a promotion: its
        # run_id differs): every key, and still after a lapse with a whole record before the
        # pass.
        assert await lease.renew(confirm) and len(passes) == 4
        lease._run_id = "the run_id of another Redis server"
        await lease.check_server()
        assert not lease.fresh()
        await lapse_with("e")
        assert await lease.renew(confirm)
        assert passes[-1] is None and lease.fresh()
        await redis.aclose()

    run(body())


async def _failing(_given: Any) -> None:
    raise RuntimeError("the pass failed")
