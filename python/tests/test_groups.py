"""Scale-out seen from Python: a URN served by a group of Rust servers, and actors activated
on demand by URN pattern, asked exactly as any URN (the client resolves the pattern key).
Real redis-server, two real Rust serving processes, one SIGKILLed."""

from __future__ import annotations

import redis

import conclib

from conftest import RedisServer, RustServer, run


def test_a_group_and_activations_across_two_servers_one_killed(redis_server: RedisServer, fresh_ns: str) -> None:
    a = RustServer(redis_server.url, fresh_ns, system="py-a", lease_ttl_ms=1500)
    b = RustServer(redis_server.url, fresh_ns, system="py-b", lease_ttl_ms=1500)
    raw = redis.Redis.from_url(redis_server.url)
    try:

        async def go() -> None:
            client = await conclib.connect(redis_server.url, namespace=fresh_ns)
            try:
                # The shared URN's key names the group, not a system.
                for i in range(60):
                    assert await client.ask("py:shared", "test.Echo", f"e{i}", timeout=5) == f"e{i}"
                assert raw.get(f"{fresh_ns}:urn:py:shared") == b"~py:shared"
                # Not active yet: found through the pattern key, activated on one server.
                assert raw.get(f"{fresh_ns}:urn:py:item:7") is None
                assert raw.get(f"{fresh_ns}:pattern:py:item:") == b"~py:item:*"
                assert await client.ask("py:item:7", "Add", {"n": 3}, timeout=5) == 3
                assert await client.ask("py:item:7", "Get", None, timeout=5) == 3
                holder = raw.get(f"{fresh_ns}:urn:py:item:7")
                assert holder in (b"py-a", b"py-b")
                # The other server is SIGKILLed: the group goes on with the one left.
                victim = a if holder == b"py-b" else b
                victim.proc.kill()
                victim.proc.wait(timeout=10)
                for i in range(60):
                    assert await client.ask("py:shared", "test.Echo", f"k{i}", timeout=10) == f"k{i}"
                assert await client.ask("py:item:7", "Get", None, timeout=5) == 3
            finally:
                await client.close()

        run(go())
    finally:
        raw.close()
        a.close()
        b.close()
