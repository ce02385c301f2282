"""The order in which one client's requests to one URN reach its actor when two members
serve the URN's pattern (``conf:pat:{id}``, whose actor records what it is told), both Rust
or both Python: the promise and its limit in "Order" of the ``conclib-redis`` crate docs.

Through the holder's own stream (the client routes there once it finds the URN activated)
every URN sees its requests in the order sent. Through the pattern's group, in a new URN's
first ``resolve_cache_ttl``, order is not kept: each member reads some of the group's
entries, and a request one member passes on to the holder (or that both read before either
claimed the URN) can be overtaken by a later one the holder read itself. There, nothing is
lost or handled twice, and how many URNs saw their requests reordered is printed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import conclib
from conftest import PythonHost, RedisServer, RustServer, run

URNS = 64
TELLS = 8


def _members(kind: str, url: str, ns: str) -> list[Any]:
    if kind == "rust":
        first: Any = RustServer(url, ns, "m1")
        try:
            return [first, RustServer(url, ns, "m2")]
        except BaseException:
            first.close()
            raise
    first = PythonHost(url, ns, "--pattern-only", "--system", "m1")
    try:
        return [first, PythonHost(url, ns, "--pattern-only", "--system", "m2")]
    except BaseException:
        first.close()
        raise


def _served_by_two(kind: str, url: str, ns: str, scene: Callable[[], Awaitable[None]]) -> None:
    """Runs ``scene`` (bounded) while two members of ``kind`` serve namespace ``ns``."""
    members = _members(kind, url, ns)
    try:
        run(scene(), timeout=90)
    finally:
        for m in members:
            m.close()


async def _burst(client: conclib.AsyncClient, urn: str) -> list[int]:
    """``TELLS`` tells one after the other, then what the actor recorded (asked once every
    tell was handled: an ask may overtake tells routed through the group)."""
    for v in range(1, TELLS + 1):
        await client.tell(urn, "test.Record", v)
    for _ in range(500):
        got: list[int] = await client.ask(urn, "test.History", timeout=10)
        if len(got) >= TELLS:
            return got
        await asyncio.sleep(0.01)
    return got


@pytest.mark.parametrize("kind", ["rust", "python"])
def test_requests_through_the_holders_stream_keep_their_order(redis_server: RedisServer, kind: str) -> None:
    """64 URNs activated over two members; a client that finds them activated sends each
    8 tells one after the other, 64 callers at once: every URN records them in that order."""
    ns = f"order-{uuid.uuid4().hex[:6]}"
    urns = [f"conf:pat:held{i}" for i in range(URNS)]

    async def scene() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            await asyncio.gather(*(client.ask(u, "test.Ping", timeout=10) for u in urns))
        # A new client looks each URN up: activated, it routes to the holder's stream.
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            got = await asyncio.gather(*(_burst(client, u) for u in urns))
        wrong = {u: g for u, g in zip(urns, got) if g != list(range(1, TELLS + 1))}
        assert not wrong, f"{len(wrong)} URNs out of order: {list(wrong.items())[:5]}"

    _served_by_two(kind, redis_server.url, ns, scene)


@pytest.mark.parametrize("kind", ["rust", "python"])
def test_a_new_urns_first_requests_through_the_group_are_neither_lost_nor_doubled(
    redis_server: RedisServer, kind: str
) -> None:
    """64 URNs not yet activated, each sent 8 tells one after the other, 64 callers at once:
    their first requests go through the pattern's group, read by both members. Every URN
    records each of its tells once; how many recorded them out of order is printed (the
    crate docs' "Order" quotes it)."""
    ns = f"gorder-{uuid.uuid4().hex[:6]}"
    urns = [f"conf:pat:new{i}" for i in range(URNS)]

    async def scene() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            got = await asyncio.gather(*(_burst(client, u) for u in urns))
        expected = list(range(1, TELLS + 1))
        wrong = {u: g for u, g in zip(urns, got) if sorted(g) != expected}
        assert not wrong, f"{len(wrong)} URNs lost or doubled a tell: {list(wrong.items())[:5]}"
        reordered = sum(g != expected for g in got)
        print(f"RESULT test=group_order members={kind} urns={URNS} tells={TELLS} reordered={reordered}")

    _served_by_two(kind, redis_server.url, ns, scene)
