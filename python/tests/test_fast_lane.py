"""A group's fast lane seen from Python: a ``priority="high"`` ask to a URN served by a group
goes to the group's fast lane (``{ns}:sys:{group}:req:hi``), which members read before its
stream, so it overtakes a backlog queued there; to a group whose members read no fast lane
(the stream is missing: older servers), it goes to the group's stream. Real redis-server, a
real Rust serving process."""

from __future__ import annotations

import asyncio

import redis

import conclib

from conftest import RedisServer, RustServer, run


def test_a_high_priority_ask_to_a_group_overtakes_its_backlog(redis_server: RedisServer, fresh_ns: str) -> None:
    server = RustServer(redis_server.url, fresh_ns, system="lane-a")
    raw = redis.Redis.from_url(redis_server.url)
    try:

        async def go() -> None:
            client = await conclib.connect(redis_server.url, namespace=fresh_ns)
            try:
                done: list[str] = []

                async def slow(i: int) -> None:
                    # 30 ms each, handled one at a time by the group's one member.
                    assert await client.ask("py:shared", "test.Sleep", 30, timeout=30) == 30
                    done.append(f"slow{i}")

                backlog = [asyncio.create_task(slow(i)) for i in range(60)]
                # Wait until the backlog is queued in the group's stream (every slow ask's
                # request written), then ask past it.
                stream = f"{fresh_ns}:sys:~py:shared:req"
                for _ in range(500):
                    if raw.xlen(stream) >= 60:
                        break
                    await asyncio.sleep(0.01)
                assert raw.xlen(stream) >= 60
                assert await client.ask("py:shared", "test.Echo", "first", timeout=30, priority="high") == "first"
                done.append("high")
                await asyncio.gather(*backlog)
                at = done.index("high")
                assert at < 30, f"the high-priority ask came after {at} of 60 queued asks"
                # A group whose fast lane has no stream (its members are older servers): the
                # high-priority request goes to the group's stream, and is answered.
                raw.delete(f"{fresh_ns}:sys:~py:shared:req:hi")
                client2 = await conclib.connect(redis_server.url, namespace=fresh_ns)
                try:
                    assert await client2.ask("py:shared", "test.Echo", "plain", timeout=10, priority="high") == "plain"
                    await client2.tell("py:shared", "test.Echo", "told", priority="high")
                finally:
                    await client2.close()
            finally:
                await client.close()

        run(go(), timeout=120)
    finally:
        raw.close()
        server.close()
