"""Pattern resolution: a URN without a URN key is looked up by its pattern prefix
(``{ns}:pattern:{prefix}``), whose value is sent to like a system id (a group id such as
``~user:*`` included). Against the real Rust server (its URN key deleted, a pattern key set
by hand) and against fake systems played by the test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

import conclib
from conclib.protocol import Keys, pattern_prefix
from conftest import RedisServer, RustServer, run
from test_wire import FakeSystem

ECHO = "pytest:echo"

# The prefix rule, as conformance cases: (URN, the pattern prefix looked up or None).
PREFIX_CASES: list[tuple[str, str | None]] = [
    ("user:42", "user:"),
    ("a:b:c", "a:b:"),
    ("pytest:echo", "pytest:"),
    ("user:", None),  # ends in ':': no pattern lookup
    ("a:b:", None),
    (":", None),
    ("plain", None),  # no ':'
    (":x", ":"),
    ("a::b", "a::"),
    ("a:b::", None),
    ("room:x/y", "room:"),
    ("ünï:cødé", "ünï:"),
    ("user:4:2", "user:4:"),
]


@pytest.mark.parametrize(("urn", "prefix"), PREFIX_CASES, ids=[c[0] for c in PREFIX_CASES])
def test_the_prefix_rule(urn: str, prefix: str | None) -> None:
    assert pattern_prefix(urn) == prefix


def test_pattern_keys() -> None:
    assert Keys("shop").pattern("user:") == "shop:pattern:user:"


@pytest.fixture(scope="module")
def pattern_server(redis_server: RedisServer) -> Iterator[RustServer]:
    """A Rust server of its own whose proxy renews its URN keys only every 200 s (a lease of
    600 s): a URN key deleted by a test stays deleted while it runs."""
    ns = f"pat-{uuid.uuid4().hex[:8]}"
    server = RustServer(redis_server.url, ns, system="patsys", lease_ttl_ms=600_000)
    yield server
    server.close()


def test_an_actor_is_found_through_its_pattern_key(pattern_server: RustServer, raw_redis: Any) -> None:
    ns = pattern_server.namespace
    urn_key = f"{ns}:urn:{ECHO}"
    assert raw_redis.get(urn_key) == b"patsys"
    raw_redis.delete(urn_key)
    raw_redis.set(f"{ns}:pattern:pytest:", "patsys")
    try:

        async def main() -> None:
            async with conclib.AsyncClient(pattern_server.url, namespace=ns) as client:
                assert await client.resolve(ECHO) == "patsys"
                assert await client.ask(ECHO, "test.Echo", "through the pattern", timeout=5) == "through the pattern"
                # The same prefix, but no such actor in the system: the proxy answers
                # UnknownUrn, the client resolves again, finds the same system, and fails.
                with pytest.raises(conclib.UnknownUrn):
                    await client.ask("pytest:nobody", "test.Echo", "x", timeout=5)
                # No URN key and no pattern key: UnknownUrn, as before.
                with pytest.raises(conclib.UnknownUrn):
                    await client.ask("nopattern:echo", "test.Echo", "x", timeout=5)
                assert await client.resolve("nopattern:echo") is None

        run(main())
        with conclib.Client(pattern_server.url, namespace=ns) as blocking:
            assert blocking.resolve(ECHO) == "patsys"
            assert blocking.ask(ECHO, "test.Echo", "blocking", timeout=5) == "blocking"
            with pytest.raises(conclib.UnknownUrn):
                blocking.ask("nopattern:echo", "test.Echo", "x", timeout=5)
        # The URN key stayed deleted all along: the asks went through the pattern key.
        assert raw_redis.exists(urn_key) == 0
    finally:
        raw_redis.delete(f"{ns}:pattern:pytest:")


def test_a_urn_without_any_key_is_unknown(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            for urn in ["pytest:missing", "nocolon", "pytest:"]:
                with pytest.raises(conclib.UnknownUrn):
                    await client.ask(urn, "test.Echo", "x", timeout=5)

    run(main())


def namespace_() -> str:
    return f"pattern-{uuid.uuid4().hex[:8]}"


def test_a_group_id_is_used_as_a_system_id(raw_redis: Any, redis_server: Any) -> None:
    """A pattern key's value starting with ``~`` is a group id: its stream
    ``{ns}:sys:~user:*:req`` gets the request, with the full URN."""
    ns = namespace_()
    group = FakeSystem(raw_redis, ns, "~user:*", [])
    raw_redis.set(f"{ns}:pattern:user:", "~user:*")

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            assert await client.resolve("user:42") == "~user:*"
            ask = asyncio.create_task(client.ask("user:42", "Hello", {"n": 1}, timeout=5))
            request = await asyncio.to_thread(group.next_request)
            assert request["urn"] == b"user:42" and request["msg"] == b"Hello"
            group.reply(request, 0, msgpack.packb("hi 42"))
            assert await ask == "hi 42"
            await client.tell("user:7", "Record", 7)
            told = await asyncio.to_thread(group.next_request)
            assert told["urn"] == b"user:7"

    run(main())


def test_a_urn_key_wins_over_the_pattern_key(raw_redis: Any, redis_server: Any) -> None:
    ns = namespace_()
    group = FakeSystem(raw_redis, ns, "~user:*", [])
    direct = FakeSystem(raw_redis, ns, "direct", ["user:1"])
    raw_redis.set(f"{ns}:pattern:user:", "~user:*")

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            ask = asyncio.create_task(client.ask("user:1", "Hello", timeout=5))
            request = await asyncio.to_thread(direct.next_request)
            direct.reply(request, 0, msgpack.packb("direct"))
            assert await ask == "direct"
            ask = asyncio.create_task(client.ask("user:2", "Hello", timeout=5))
            request = await asyncio.to_thread(group.next_request)
            group.reply(request, 0, msgpack.packb("group"))
            assert await ask == "group"

    run(main())


def test_a_urn_ending_in_a_colon_looks_up_no_pattern(raw_redis: Any, redis_server: Any) -> None:
    """``user:`` and ``user::`` have no pattern prefix: the pattern key ``user:`` (which a
    wrong rule would find) is never used."""
    ns = namespace_()
    group = FakeSystem(raw_redis, ns, "~user:*", [])
    raw_redis.set(f"{ns}:pattern:user:", "~user:*")

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:
            for urn in ["user:", "user::"]:
                with pytest.raises(conclib.UnknownUrn):
                    await client.ask(urn, "Hello", timeout=2)
                assert await client.resolve(urn) is None

    run(main())
    assert raw_redis.xlen(group.key) == 0


def test_a_pattern_resolution_is_cached(raw_redis: Any, redis_server: Any) -> None:
    ns = namespace_()
    group = FakeSystem(raw_redis, ns, "~user:*", [])
    raw_redis.set(f"{ns}:pattern:user:", "~user:*")

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns, resolve_cache_ttl=60) as client:
            for n in range(2):
                ask = asyncio.create_task(client.ask("user:5", "Hello", timeout=5))
                request = await asyncio.to_thread(group.next_request)
                group.reply(request, 0, msgpack.packb(n))
                assert await ask == n
                # Gone from Redis: the cached resolution still sends the second ask.
                raw_redis.delete(f"{ns}:pattern:user:")
            # ``resolve`` asks Redis, not the cache.
            assert await client.resolve("user:5") is None

    run(main())


@pytest.mark.parametrize("status", [2, 10])
def test_unknown_or_not_owner_from_a_group_resolves_both_steps_again(
    raw_redis: Any, redis_server: Any, status: int
) -> None:
    """A group answering UnknownUrn or NotOwner: the client drops the cached entry, resolves
    again (URN key, then pattern key) and resends once if the target changed."""
    ns = namespace_()
    old = FakeSystem(raw_redis, ns, "~user:*", [])
    new = FakeSystem(raw_redis, ns, "~user2:*", [])
    raw_redis.set(f"{ns}:pattern:user:", "~user:*")

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=ns, resolve_cache_ttl=60) as client:
            # The pattern moved to another group: the resend goes there.
            ask = asyncio.create_task(client.ask("user:9", "Hello", timeout=5))
            first = await asyncio.to_thread(old.next_request)
            raw_redis.set(f"{ns}:pattern:user:", "~user2:*")
            old.reply(first, status, b"not here")
            second = await asyncio.to_thread(new.next_request)
            assert second["urn"] == b"user:9" and second["id"] != first["id"]
            new.reply(second, 0, msgpack.packb("moved"))
            assert await ask == "moved"
            # The same target after resolving again: no resend, the error stands.
            ask = asyncio.create_task(client.ask("user:9", "Hello", timeout=5))
            request = await asyncio.to_thread(new.next_request)
            new.reply(request, status, b"still not here")
            with pytest.raises(conclib.UnknownUrn):
                await ask
            # Now registered by URN: the URN key wins on the next resolution.
            direct = FakeSystem(raw_redis, ns, "direct", ["user:9"])
            ask = asyncio.create_task(client.ask("user:9", "Hello", timeout=5))
            request = await asyncio.to_thread(new.next_request)
            new.reply(request, status, b"gone")
            request = await asyncio.to_thread(direct.next_request)
            direct.reply(request, 0, msgpack.packb("direct"))
            assert await ask == "direct"

    run(main())
    assert raw_redis.xlen(new.key) == 3
