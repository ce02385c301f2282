"""The fenced state store from Python actors: a URN of ``py:tally:{id}`` (a count saved in
``{ns}:state:{urn}`` before each increment is answered; ``mirror_host.py``'s ``Tally`` and
the test server's ``tally.rs``, the same actor in Python and in Rust) keeps its count as it
moves between a Python and a Rust member, each increment counted once, whichever member
handled it, when members are SIGKILLed under load from 64 callers."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

import conclib
from conclib.host import ActorHost, Fenced
from conclib.actor import Actor, handler
from conftest import PythonHost, RedisServer, RustServer, holders, run, wait_until

CALLERS = 64



def test_state_moves_between_python_and_rust_members_killed_under_load(
    redis_server: RedisServer, raw_redis: Any
) -> None:
    """A Python member serves the pattern's URNs, a Rust member joins, the Python one is
    SIGKILLed (every URN's state loaded by the Rust member), a new Python member joins and
    the Rust one is SIGKILLed (every URN's state loaded by the Python member). 64 callers tell ``test.Incr`` without pause
    throughout: every accepted tell is counted once (none lost; a count above the accepted
    tells only for a tell whose call failed after Redis took it)."""
    url = redis_server.url
    ns = f"store-{uuid.uuid4().hex[:6]}"
    # Default leases (4 s): a member killed on this host is seen gone at once whatever its
    # lease, and a starved machine does not move URNs between live members meanwhile.
    first = PythonHost(url, ns, "--pattern-only", "--system", "py-one")
    rust: RustServer | None = None
    second: PythonHost | None = None
    urns = [f"py:tally:{i}" for i in range(CALLERS)]
    accepted = dict.fromkeys(urns, 0)
    failed = dict.fromkeys(urns, 0)
    # For a failure's message: at each step, the URNs whose count was already above the
    # tells sent to them (and by how much), which says which move counted some twice.
    above: dict[str, dict[str, int]] = {}
    try:

        async def caller(client: conclib.AsyncClient, urn: str, stop: asyncio.Event) -> None:
            n = 0
            while not stop.is_set():
                try:
                    await client.tell(urn, "test.Incr")
                    accepted[urn] += 1
                except conclib.ConclibError:
                    await asyncio.sleep(0)  # a closed client fails at once: let a cancel in
                    failed[urn] += 1
                n += 1
                if n % 8 == 0:  # paced by the actor: a backlog of at most 8 tells
                    try:
                        await client.ask(urn, "test.Count", timeout=2)
                    except conclib.ConclibError:
                        pass

        async def look(client: conclib.AsyncClient, step: str) -> None:
            async def one(urn: str) -> tuple[str, int]:
                try:
                    count = await client.ask(urn, "test.Count", timeout=2)
                except conclib.ConclibError:
                    return urn, 0
                # Read after the answer: the tells sent by then bound the count from above.
                return urn, count - accepted[urn] - failed[urn]

            over = dict(await asyncio.gather(*(one(u) for u in urns)))
            above[step] = {u: n for u, n in over.items() if n > 0}

        async def main() -> dict[str, int]:
            nonlocal second, rust
            stop = asyncio.Event()
            async with conclib.AsyncClient(url, namespace=ns) as client:
                tasks = [asyncio.create_task(caller(client, u, stop)) for u in urns]
                # Every URN activated on the Python member, then a Rust member joins.
                await asyncio.to_thread(
                    wait_until, lambda: set(holders(raw_redis, ns, urns).values()) == {"py-one"} and
                    len(holders(raw_redis, ns, urns)) == CALLERS, 20, "the first Python member"
                )
                await look(client, "on the first Python member")
                rust = await asyncio.to_thread(RustServer, url, ns, "rust-m")
                await asyncio.sleep(0.5)
                first.kill()
                await asyncio.to_thread(
                    wait_until, lambda: set(holders(raw_redis, ns, urns).values()) == {"rust-m"}, 20, "the Rust member"
                )
                await look(client, "on the Rust member")
                second = await asyncio.to_thread(
                    PythonHost, url, ns, "--pattern-only", "--system", "py-two"
                )
                await asyncio.sleep(0.5)
                await look(client, "before the Rust member's kill")
                rust.proc.kill()  # SIGKILL, reaped at once (as a supervisor would)
                await asyncio.to_thread(rust.proc.wait, 10)
                await asyncio.to_thread(
                    wait_until, lambda: set(holders(raw_redis, ns, urns).values()) == {"py-two"}, 20, "the Python member"
                )
                await look(client, "on the second Python member")
                await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*tasks)
                counts: dict[str, int] = {}
                for urn in urns:
                    # Every accepted tell handled: asked until the count reaches them (the
                    # requests the killed members held come back after their lease lapsed).
                    deadline = time.monotonic() + 20
                    while True:
                        counts[urn] = await client.ask(urn, "test.Count", timeout=5)
                        if counts[urn] >= accepted[urn] or time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.05)
                return counts

        counts = run(main(), timeout=120)
        lost = {u: accepted[u] - c for u, c in counts.items() if c < accepted[u]}
        doubled = {u: c - accepted[u] for u, c in counts.items() if c > accepted[u] + failed[u]}
        assert sum(accepted.values()) > 10 * CALLERS, accepted
        assert not lost, f"increments lost: {lost}"
        if doubled:
            logs = "\n".join(f"--- {n}:\n{h.stderr()[-1500:]}" for n, h in
                              (("py-one", first), ("rust-m", rust), ("py-two", second)) if h is not None)
            raise AssertionError(
                f"increments counted twice: {doubled}; failed tells: {sum(failed.values())}; "
                f"counts above the tells sent, by step: {above}\n{logs}"
            )
    finally:
        for h in (first, second, rust):
            if h is not None:
                h.close()


class _Tally(Actor):
    async def on_start(self) -> None:
        self.count: int = await self.store.load(int) or 0

    @handler("test.Incr")
    async def incr(self) -> int:
        await self.store.save(self.count + 1)
        self.count += 1
        return self.count


def test_a_displaced_activation_writes_nothing(redis_server: RedisServer, raw_redis: Any) -> None:
    """A later activation opened the state (another system took the URN): the earlier
    activation's save is refused (``Fenced``), the value stays the later one's, and the
    request being handled is left for the URN's holder (not answered by the stale one)."""
    url = redis_server.url
    ns = f"fence-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        host = ActorHost(url, namespace=ns, system="py-stale")
        host.serve_pattern("py:tally:{id}", _Tally)
        async with host:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                assert await client.ask("py:tally:1", "test.Incr", timeout=5) == 1
                # A later activation elsewhere: it opens the state (owner) and saves 100.
                later = host.new_store("py:tally:1")
                assert await later.load(int) == 1
                await later.save(100)
                stale = host._patterns[0].live["py:tally:1"].mailbox.actor
                with pytest.raises(Fenced):
                    await stale.store.save(2)
                assert raw_redis.hget(f"{ns}:state:py:tally:1", "data") == b"\x64"
                # The stale activation stops at its next request, which is left pending and
                # read again: the URN is activated anew, on the state saved last.
                assert await client.ask("py:tally:1", "test.Incr", timeout=5) == 101

    run(main(), timeout=30)


def test_a_request_answered_as_handled_already_stays_recorded_until_acknowledged() -> None:
    """A request an earlier activation recorded is answered without being handled; until
    that answer is acknowledged, this activation's writes record it still and a second
    reading of it is not handled either (its acknowledgement given up, or this process
    killed before it: the next activation reads the record)."""
    from conclib._host_store import Applied

    applied = Applied()
    applied.opened(b"1-0 s\n2-5 s")
    assert applied.already("2-5 s")
    assert not applied.already("3-0 s")
    assert applied.record(None) == "2-5 s"
    assert applied.record("3-0 s") == "2-5 s\n3-0 s"
    assert applied.already("2-5 s"), "read again before its answer was acknowledged"
    applied.acked("2-5 s")
    assert not applied.already("2-5 s")
    assert applied.record(None) == ""
    assert applied.already("1-0 s")


def test_an_earlier_record_is_written_again_while_recent() -> None:
    """What an earlier activation recorded is in every record this one writes, read or
    not, while it is recent (a request pending on a dead member may come back after this
    activation wrote and moved on); one sent longer ago, or not a request's key, is left
    out (as ``applied.rs``)."""
    import time

    from conclib._host_store import EARLIER_KEPT_MS, Applied

    now = int(time.time() * 1000)
    recent, old = f"{now - 1000}-0 s", f"{now - EARLIER_KEPT_MS - 1000}-0 s"
    applied = Applied()
    applied.opened(f"{recent}\n{old}\nnot a key\n\u00b2-0 s".encode())
    assert applied.record(f"{now}-1 s") == f"{recent}\n{now}-1 s"
    assert applied.record(None) == recent
    assert applied.already(recent)
    assert applied.record(None) == recent, "its own until acknowledged"
    applied.acked(recent)
    assert applied.record(None) == ""
    assert applied.already(old), "still known, though not written"


def test_a_request_keeps_its_identity_when_passed_on() -> None:
    """A request's identity in the record is its first entry: the one a system that passed
    it on read it as (``first``), else the one a takeover moved it from (``moved``), else
    its own, as the Rust proxy's ``record.rs`` reads it."""
    from conclib._host_store import request_key

    assert request_key("s", b"5-0", {}) == "5-0 s"
    assert request_key("s", b"5-0", {b"first": b"1-0 a"}) == "1-0 a"
    assert request_key("s", b"5-0", {b"moved": b"2-0 b"}) == "2-0 b"
    # Passed on, then moved by a takeover: the first entry is the one passed on.
    assert request_key("s", b"5-0", {b"moved": b"2-0 b", b"first": b"1-0 a"}) == "1-0 a"
    assert request_key("s", b"5-0", {b"first": b""}) == "5-0 s"


def test_a_carried_state_goes_to_the_next_activation_only(redis_server: RedisServer, raw_redis: Any) -> None:
    """``StateStore.dehydrate`` carries a state only from an activation being moved (its
    host stopping); the next activation takes it once (``rehydrate``), with the saved state
    read in the same open (``load`` after it makes no second round trip), and an activation
    that opened the state in between makes it stale: taken and dropped."""
    url = redis_server.url
    ns = f"carry-{uuid.uuid4().hex[:6]}"
    urn = "py:tally:1"
    carried_key = f"{ns}:state:{urn}:carried"

    async def main() -> None:
        host = ActorHost(url, namespace=ns, system="py-carry")
        host.serve_pattern("py:tally:{id}", _Tally)
        async with host:
            first = host.new_store(urn)
            await first.save(5)
            # Not moving (an idle passivation): nothing carried.
            assert await first.dehydrate(7) is False
            assert not raw_redis.exists(carried_key)
            first.moving = True
            assert await first.dehydrate(7) is True
            # The next activation: the carried 7 once, and the saved 5 by the same open.
            second = host.new_store(urn)
            assert await second.rehydrate(int) == 7
            assert await second.rehydrate(int) is None
            assert await second.load(int) == 5
            assert not raw_redis.exists(carried_key)
            # Carried again, but an activation that takes no carried state (an earlier
            # build's) opens in between: the one after drops it.
            second.moving = True
            assert await second.dehydrate(8) is True
            raw_redis.hset(f"{ns}:state:{urn}", "owner", "someone-else")
            third = host.new_store(urn)
            assert await third.rehydrate(int) is None
            assert await third.load(int) == 5
            assert not raw_redis.exists(carried_key)

    run(main(), timeout=30)
