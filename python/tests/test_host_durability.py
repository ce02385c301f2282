"""A Python member's durability level (``HostConfig.durability``) on a real primary with a
replica, served through ``redis://`` and through a Sentinel URL: at
``Durability.replicas(1)`` an activation's claim, its state's fence and each save are
followed by ``WAIT`` and count only once the replica holds them; while the replica is frozen
(SIGSTOP: it lags as a replica cut from its primary does), every save fails
``NotReplicated`` in the handler (the caller gets the handler's failure, ``Panicked``, within
its timeout) and none is reported done; once thawed, asks are answered again and each count
goes on from the last one answered (or from a timed-out ask's, whose handler went on)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

import conclib
from conclib.actor import Actor, ReminderTick, handler
from conclib.host import ActorHost, HostConfig, ReminderPollerOptions
from conftest import freeze, run
from test_durability import replica_pid, servers, start_pair, wait_calls  # noqa: F401 (a fixture)
from test_host_store import _Tally
from test_topologies import Servers, start_sentinel

WAIT_S = 0.3
ASK_S = 3.0
MARGIN_S = 1.0
CALLERS = 64
URNS = [f"py:tally:{i}" for i in range(8)]


def check_host_level(url: str, primary: int, servers: Servers) -> None:
    ns = f"host-dur-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        host = ActorHost(url, namespace=ns, system="py-dur", durability=conclib.Durability.replicas(1, timeout=WAIT_S))
        host.serve_pattern("py:tally:{id}", _Tally)
        async with host:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                before = wait_calls(primary)
                for urn in URNS:
                    assert await client.ask(urn, "test.Incr", timeout=5) == 1
                # Per URN: its claim, its state's fence, its save.
                assert wait_calls(primary) - before >= 3 * len(URNS)
                freeze(replica_pid(servers))
                try:
                    ok = refused = 0
                    late: list[float] = []
                    other: list[BaseException] = []
                    timed_out = dict.fromkeys(URNS, 0)
                    stop = time.monotonic() + 1.5

                    async def caller(i: int) -> None:
                        nonlocal ok, refused
                        while time.monotonic() < stop:
                            began = time.monotonic()
                            try:
                                await client.ask(URNS[i % len(URNS)], "test.Incr", timeout=ASK_S)
                                ok += 1
                            except conclib.Panicked as e:
                                assert "replicas" in str(e), e
                                refused += 1
                            except conclib.Timeout:
                                # Its handler runs on: its save may be done after the thaw.
                                timed_out[URNS[i % len(URNS)]] += 1
                            except conclib.ConclibError as e:
                                other.append(e)
                            if time.monotonic() - began > ASK_S + MARGIN_S:
                                late.append(time.monotonic() - began)

                    await asyncio.gather(*(caller(i) for i in range(CALLERS)))
                    assert ok == 0, f"{ok} saves reported done that no replica holds"
                    # An actor's own client (`self.client`) writes at the host's level too.
                    assert host.client is not None
                    with pytest.raises(conclib.NotReplicated):
                        await host.client.register_reminder(URNS[0], "r", after=3600)
                    assert refused >= len(URNS), refused
                    assert not late, late
                    assert not other, other[:3]
                finally:
                    os.kill(replica_pid(servers), signal.SIGCONT)
                # Thawed: each count goes on from the last one answered (the refused saves
                # were never reported done), or from a timed-out ask's, whose handler went on.
                for urn in URNS:
                    deadline = time.monotonic() + 10
                    while True:
                        try:
                            count = await client.ask(urn, "test.Incr", timeout=5)
                            assert 2 <= count <= 2 + timed_out[urn], (urn, count, timed_out[urn])
                            break
                        except conclib.Panicked:
                            assert time.monotonic() < deadline, "the replica never acknowledged"

    run(main(), timeout=60)


def test_a_python_members_saves_wait_for_the_replica(servers: Servers) -> None:
    primary, _ = start_pair(servers)
    check_host_level(f"redis://127.0.0.1:{primary}", primary, servers)


def test_a_python_member_serves_through_sentinel_with_its_level(servers: Servers) -> None:
    primary, _ = start_pair(servers)
    _, url = start_sentinel(servers, primary, down_after_ms=60000)
    check_host_level(url, primary, servers)


def test_a_cluster_url_is_refused_at_start() -> None:
    async def main() -> None:
        host = ActorHost("redis-cluster://127.0.0.1:7000", namespace="x")
        try:
            await host.start()
        except conclib.ConfigError as e:
            assert "Cluster" in str(e)
        else:
            raise AssertionError("a host started on a Cluster URL")

    run(main(), timeout=10)


def test_a_python_members_lease_counts_once_the_replica_holds_it(servers: Servers) -> None:
    """At ``Durability.replicas(1)`` the lease is taken and renewed only once the replica
    holds it: with the replica frozen a renewal does not count (the lease runs out in this
    host's view and it stops serving), a new lease is refused ``NotReplicated`` within half
    its TTL, and once thawed the renewal counts again."""
    import redis.asyncio as aioredis

    from conclib._host_lease import Lease, Scripts

    primary, _ = start_pair(servers)
    ttl = 1.0
    level = conclib.Durability.replicas(1, timeout=0.2)

    async def main() -> None:
        redis = aioredis.Redis(host="127.0.0.1", port=primary)
        scripts = Scripts(redis)
        lease = Lease(redis, scripts, "lease-dur:sys:a:lease", ttl, level)
        await lease.acquire()
        assert lease.fresh()
        freeze(replica_pid(servers))
        try:
            assert not await lease.renew(), "a renewal no replica holds counted"
            assert lease.fresh(), "the last replicated renewal still holds"
            while lease.fresh():
                assert not await lease.renew()
                await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(conclib.NotReplicated):
                await Lease(redis, scripts, "lease-dur:sys:b:lease", ttl, level).acquire()
            assert time.monotonic() - started <= ttl / 2 + 0.5
        finally:
            os.kill(replica_pid(servers), signal.SIGCONT)
        deadline = time.monotonic() + 10
        while not await lease.renew():
            assert time.monotonic() < deadline, "the thawed replica never acknowledged"
            await asyncio.sleep(0.05)
        assert lease.fresh()
        await redis.aclose()

    run(main(), timeout=60)


_ticks: list[str] = []


class _Beeper(Actor):
    @handler("conclib.ReminderTick")
    async def tick(self, tick: ReminderTick) -> None:
        _ticks.append(tick.name)


def test_a_python_members_reminder_poller_delivers_only_replicated_claims(servers: Servers) -> None:
    """At ``Durability.replicas(1)`` the host's reminder poller delivers a tick only once the
    replica holds its claim: with the replica frozen a due reminder is claimed and left to
    lapse, not delivered (a promotion then would bring the tick back unclaimed, delivered
    twice); once thawed it is delivered."""
    primary, _ = start_pair(servers)
    url = f"redis://127.0.0.1:{primary}"
    ns = f"host-dur-rem-{uuid.uuid4().hex[:6]}"
    _ticks.clear()
    level = conclib.Durability.replicas(1, timeout=0.2)
    options = ReminderPollerOptions(poll_interval=0.02, claim_lease=1.0, report_every=None)

    async def until(name: str) -> None:
        deadline = time.monotonic() + 15
        while name not in _ticks:
            assert time.monotonic() < deadline, f"{name} never delivered: {_ticks}"
            await asyncio.sleep(0.02)

    async def main() -> None:
        host = ActorHost(url, HostConfig(namespace=ns, system="py-rem", durability=level, reminders=options))
        host.serve_pattern("beeper:{id}", _Beeper)
        async with host:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                await client.register_reminder("beeper:1", "before", after=0.05)
                await until("before")
                freeze(replica_pid(servers))
                try:
                    await client.register_reminder("beeper:1", "frozen", after=0.05)
                    # Polled every 20 ms meanwhile: each claim of it not replicated.
                    await asyncio.sleep(1.0)
                    assert "frozen" not in _ticks, "a tick whose claim no replica holds was delivered"
                finally:
                    os.kill(replica_pid(servers), signal.SIGCONT)
                await until("frozen")

    run(main(), timeout=60)
