"""A Python host's lapse with a takeover, as the Rust ``conclib-redis/tests/faults/given_away.rs``
for a Rust system: a host holding ``BULK`` fixed URN keys and a pattern's activations is
paused past its lease (SIGSTOP) while 64 callers ask those activations; another member of the
pattern (the Rust test server, or a second Python host) moves the requests queued for it and
is given their URN keys, each recorded in the paused host's record of URN keys given away
(``{ns}:sys:{system}:given``, kept beside its lease by ``_host_lease.py``). Back from its
pause the host claims again those, not its ``BULK`` others (``_host_urn_keys.py``), never
answers for an activation it lost, and serves again; no call returns later than its timeout
and a margin."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any

import conclib
import pytest
from conftest import PythonHost, RedisServer, RustServer, freeze, run, wait_until

# The paused host's fixed URN keys besides its activations: a pass over every key claims
# them all (one SET each).
BULK = 4000
ACCOUNTS = 16
# What each activation of the paused host counts (the taker's start at 0).
ITS_COUNT = 1000
LEASE_MS = 2000
# Its keys live far longer than the test: none is due, so a pass that sends them is one over
# every key.
URN_TTL_MS = 600_000
TIMEOUT = 2.0
MARGIN = 1.0
# How long after its thaw the host must serve again.
RECOVERY = 30.0


def _sets_run(raw_redis: Any) -> int:
    """How many SETs Redis ran so far (those inside scripts included): every claim or
    renewal of a URN key is one."""
    stats = raw_redis.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


def _holders(raw_redis: Any, ns: str, urns: list[str]) -> list[str]:
    values = raw_redis.mget([f"{ns}:urn:{u}" for u in urns])
    return [v.decode() if v is not None else "" for v in values]


async def _serves_again(client: conclib.AsyncClient, thawed: float) -> float | None:
    """Asks the host's ``bulk:0`` every 100 ms from ``thawed`` on until it answered for 3 s
    in a row, within ``RECOVERY``: since when it answers, if it did."""
    served_since: float | None = None
    while time.monotonic() - thawed < RECOVERY:
        await asyncio.sleep(0.1)
        try:
            await client.ask("bulk:0", "test.Get", timeout=TIMEOUT)
            fresh = True
        except conclib.ConclibError:
            fresh = False
        if not fresh:
            served_since = None
        elif served_since is None:
            served_since = time.monotonic()
        elif time.monotonic() - served_since >= 3.0:
            break
    return served_since


@pytest.mark.timeout(300)
@pytest.mark.parametrize("taker", ["rust", "python"])
def test_a_lapse_claims_again_only_the_urn_keys_given_away(taker: str, redis_server: RedisServer,
                                                           raw_redis: Any) -> None:
    url = redis_server.url
    ns = f"given-{uuid.uuid4().hex[:8]}"
    holder = PythonHost(url, ns, "--pattern-only", "--system", "holder", "--lease-ttl-ms", str(LEASE_MS),
                        "--urn-ttl-ms", str(URN_TTL_MS), "--bulk", str(BULK))
    taker_process: RustServer | PythonHost | None = None
    frozen = False
    accounts = [f"conf:pat:{i}" for i in range(ACCOUNTS)]
    record = f"{ns}:sys:holder:given"
    try:
        assert raw_redis.get(f"{ns}:urn:bulk:{BULK - 1}") == b"holder"
        # Callers whose routes live 2 minutes: they keep sending to the holder's stream.
        calls: list[tuple[float, float, Any]] = []

        async def caller(client: conclib.AsyncClient, urn: str, stop: asyncio.Event) -> None:
            while not stop.is_set():
                at = time.monotonic()
                try:
                    got: Any = await client.ask(urn, "test.Get", timeout=TIMEOUT)
                except conclib.ConclibError as e:
                    await asyncio.sleep(0)  # a closed client fails at once: let a cancel in
                    got = e
                calls.append((at, time.monotonic(), got))

        async def main() -> tuple[list[str], float, float | None, int]:
            nonlocal taker_process, frozen
            async with conclib.AsyncClient(url, namespace=ns, resolve_cache_ttl=120) as client, \
                    conclib.AsyncClient(url, namespace=ns) as prober:
                # Its activations (the only member yet), each at ITS_COUNT.
                for urn in accounts:
                    assert await client.ask(urn, "test.Add", ITS_COUNT, timeout=TIMEOUT) == ITS_COUNT
                assert _holders(raw_redis, ns, accounts) == ["holder"] * ACCOUNTS
                if taker == "rust":
                    taker_process = RustServer(url, ns, system="taker", lease_ttl_ms=LEASE_MS)
                else:
                    taker_process = PythonHost(url, ns, "--pattern-only", "--system", "taker")
                wait_until(lambda: raw_redis.hexists(f"{ns}:placement:conf:pat:", "taker"), 10, "the taker listed")
                stop = asyncio.Event()
                callers = [asyncio.create_task(caller(client, accounts[c % ACCOUNTS], stop)) for c in range(64)]
                end = time.monotonic() + 10
                while sum(1 for _, _, r in calls if r == ITS_COUNT) < 64 and time.monotonic() < end:
                    await asyncio.sleep(0.05)
                freeze(holder.pid)
                frozen = True
                # Past its lease, the taker moves the requests queued for it and takes their
                # URN keys.
                end = time.monotonic() + 20
                while _holders(raw_redis, ns, accounts) != ["taker"] * ACCOUNTS and time.monotonic() < end:
                    await asyncio.sleep(0.05)
                assert _holders(raw_redis, ns, accounts) == ["taker"] * ACCOUNTS, "every account given to the taker"
                # Each key given away recorded in the holder's record, still whole.
                recorded = {m.decode() for m in raw_redis.smembers(record)}
                assert recorded == {*accounts, "(record whole)"}, recorded
                sets_before = _sets_run(raw_redis)
                os.kill(holder.pid, signal.SIGCONT)
                frozen = False
                thawed = time.monotonic()
                served_at = await _serves_again(prober, thawed)
                sets = _sets_run(raw_redis) - sets_before
                stop.set()
                await asyncio.wait_for(asyncio.gather(*callers), TIMEOUT + MARGIN * 4)
                return _holders(raw_redis, ns, accounts), thawed, served_at, sets

        held_after, thawed, served_at, sets = run(main(), timeout=120)
        assert served_at is not None, f"the holder did not serve again for 3 s within {RECOVERY} s of its thaw"
        late = [(e - a, r) for a, e, r in calls if e - a > TIMEOUT + MARGIN]
        assert not late, f"calls returned past their timeout: {late[:5]}"
        # It took none of the accounts back, and no call sent after the thaw was answered by
        # an activation it lost.
        assert held_after == ["taker"] * ACCOUNTS, held_after
        stale = [r for a, _, r in calls if a > thawed and r == ITS_COUNT]
        assert not stale, f"answered by the holder's lost activations after the thaw: {len(stale)}"
        assert any(a > thawed and r == 0 for a, _, r in calls), "the taker answered the accounts"
        # Its other keys were not claimed again (a pass over every key is BULK SETs).
        assert sets < BULK // 4, f"{sets} SETs in Redis from the thaw to the holder serving again for 3 s"
        print(f"served again {served_at - thawed:.2f} s after the thaw; {sets} SETs meanwhile; {len(calls)} calls")
    finally:
        if frozen and holder.proc.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.close()
        if taker_process is not None:
            taker_process.close()
