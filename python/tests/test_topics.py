"""Topics (issue #65) from the Python client: events a Rust actor publishes (``py:publisher``
of the test server, through its proxy's ``Topics``) received as an async iterator and as a
blocking iterator; live and durable; durable resume under the same consumer name; a slow live
subscriber drops (counted) and stays bounded; events published from Python."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

import conclib
from conftest import run


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def publish_from_rust(client: conclib.AsyncClient, topic: str, *, durable: bool, count: int,
                            sender: int = 0) -> None:
    done = await client.ask("py:publisher", "test.Publish",
                            {"topic": topic, "durable": durable, "from": sender, "count": count}, timeout=30)
    assert done == count


def in_order(events: list[dict[str, Any]]) -> None:
    last: dict[int, int] = {}
    for e in events:
        assert e["seq"] > last.get(e["from"], -1), e
        last[e["from"]] = e["seq"]


def test_live_events_from_a_rust_actor(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            topic = topic_name()
            async with await client.subscribe(topic, buffer=10_000) as sub:
                await asyncio.gather(publish_from_rust(client, topic, durable=False, count=1000, sender=1),
                                     publish_from_rust(client, topic, durable=False, count=1000, sender=2))
                events = [await sub.get(timeout=10) for _ in range(2000)]
                in_order(events)
                assert sorted((e["from"], e["seq"]) for e in events) == sorted(
                    [(1, i) for i in range(1000)] + [(2, i) for i in range(1000)])
                assert sub.stats()["dropped"] == 0

    run(main())


def test_durable_groups_and_resume_after_a_restart(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            topic = topic_name()
            a = await client.subscribe(topic, durable=True, group="a", consumer="a1", buffer=16)
            b = await client.subscribe(topic, durable=True, group="b")
            await publish_from_rust(client, topic, durable=True, count=3000)
            got_a = [await a.get(timeout=10) for _ in range(1000)]
            # Gone without closing (as a crash leaves it): nothing after the last acknowledged
            # event is lost, events taken and not finished come again.
            assert a._task is not None
            a._task.cancel()
            a._closed = True
            await a._redis.aclose() if hasattr(a._redis, "aclose") else a._redis.close()
            again = await client.subscribe(topic, durable=True, group="a", consumer="a1")
            rest = []
            seen = {e["seq"] for e in got_a}
            while len(seen) < 3000:
                e = await again.get(timeout=10)
                rest.append(e)
                seen.add(e["seq"])
            in_order(rest)
            duplicates = len(got_a) + len(rest) - 3000
            assert 0 <= duplicates <= 16 + 256 + 1, duplicates
            assert again.stats()["redelivered"] >= duplicates
            got_b = [await b.get(timeout=10) for _ in range(3000)]
            in_order(got_b)
            assert [e["seq"] for e in got_b] == list(range(3000))
            await again.aclose()
            await b.aclose()

    run(main())


def test_a_slow_live_subscriber_drops_and_counts(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            topic = topic_name()
            sub = await client.subscribe(topic, buffer=10)
            await publish_from_rust(client, topic, durable=False, count=3000)
            await received(sub, 3000)
            stats = sub.stats()
            assert stats["buffered"] == 10 and stats["dropped"] == 2990, stats
            # The drops are reported in-band, once, before the events still held.
            with pytest.raises(conclib.Lagged) as lag:
                await sub.get(timeout=5)
            assert lag.value.missed == 2990 and lag.value.topic == topic
            kept = [await sub.get(timeout=5) for _ in range(10)]
            in_order(kept)
            with pytest.raises(conclib.Timeout):
                await sub.get(timeout=0.2)
            # Only the drops since the last report, and an ``async for`` started again goes on.
            await publish_from_rust(client, topic, durable=False, count=25, sender=1)
            await received(sub, 3025)
            with pytest.raises(conclib.Lagged) as lag:
                async for _ in sub:
                    pass
            assert lag.value.missed == 15
            more = []
            async for event in sub:
                more.append(event)
                if len(more) == 10:
                    break
            assert [e["seq"] for e in more] == list(range(10)) and all(e["from"] == 1 for e in more)
            await sub.aclose()

    run(main())


async def received(sub: conclib.Subscription, count: int) -> None:
    """Waits (10 s at most) until the subscription's reader received ``count`` events."""
    deadline = asyncio.get_running_loop().time() + 10
    while sub.stats()["received"] < count:
        assert asyncio.get_running_loop().time() < deadline, sub.stats()
        await asyncio.sleep(0.01)


def test_a_blocking_live_subscriber_is_told_it_lagged(url: str, namespace: str) -> None:
    topic = topic_name()
    with conclib.Client(url, namespace=namespace) as client:
        with client.subscribe(topic, buffer=4) as sub:
            for i in range(20):
                client.publish(topic, {"from": 3, "seq": i})
            deadline = time.monotonic() + 10
            while sub.stats()["received"] < 20:
                assert time.monotonic() < deadline, sub.stats()
                threading.Event().wait(0.01)
            with pytest.raises(conclib.Lagged) as lag:
                next(sub)
            assert lag.value.missed == 16
            assert [sub.get(timeout=5)["seq"] for _ in range(4)] == [0, 1, 2, 3]


def test_blocking_iterator_and_events_published_from_python(url: str, namespace: str) -> None:
    topic = topic_name()
    with conclib.Client(url, namespace=namespace) as client:
        with client.subscribe(topic, durable=True, group="web") as sub:
            for i in range(5):
                client.publish(topic, {"from": 9, "seq": i}, durable=True)
            events = []
            for event in sub:
                events.append(event)
                if len(events) == 5:
                    break
            assert events == [{"from": 9, "seq": i} for i in range(5)]
        live = client.subscribe(topic)
        client.publish(topic, [1, "two"])
        assert live.get(timeout=5) == [1, "two"]
        with pytest.raises(conclib.Timeout):
            live.get(timeout=0.1)
        live.close()
    with pytest.raises(conclib.ConfigError):
        with conclib.Client(url, namespace=namespace) as client:
            client.subscribe("two words")


def test_subscriptions_resubscribe_after_a_redis_restart() -> None:
    from conftest import RedisServer

    redis = RedisServer()
    try:
        async def main() -> None:
            async with conclib.AsyncClient(redis.url, namespace="topics-restart", timeout=1.0,
                                           command_timeout=1.0) as client:
                topic = topic_name()
                subs = [await client.subscribe(topic, buffer=100_000) for _ in range(8)]
                subs += [await client.subscribe(topic, durable=True, group=f"g{i}") for i in range(8)]
                await client.publish(topic, -1)
                await client.publish(topic, -1, durable=True)
                for sub in subs:
                    assert await sub.get(timeout=5) == -1
                redis.kill()
                redis.start()
                loop = asyncio.get_running_loop()
                back = loop.time()
                got_again = [False] * len(subs)

                async def publish_until_heard() -> None:
                    seq = 0
                    while not all(got_again):
                        for durable in (False, True):
                            try:
                                await client.publish(topic, seq, durable=durable)
                            except conclib.ConclibError:
                                pass
                        seq += 1
                        await asyncio.sleep(0.02)

                async def listen(i: int) -> None:
                    while True:
                        event = await subs[i].get(timeout=15)
                        if isinstance(event, int) and event >= 0:
                            got_again[i] = True
                            return

                await asyncio.wait_for(asyncio.gather(publish_until_heard(), *(listen(i) for i in range(len(subs)))), 20)
                assert loop.time() - back < 15
                assert all(s.stats()["resubscribes"] >= 1 for s in subs), [s.stats() for s in subs]
                for sub in subs:
                    await sub.aclose()

        run(main())
    finally:
        redis.close()


_SUBSCRIBER = """
import asyncio, sys
import conclib

async def main() -> None:
    url, namespace, topic = sys.argv[1:4]
    async with conclib.AsyncClient(url, namespace=namespace) as client:
        sub = await client.subscribe(topic, durable=True, group="py", consumer="py-1", buffer=64)
        print("ready", flush=True)
        async for event in sub:
            print(event["from"], event["seq"], flush=True)

asyncio.run(main())
"""


def test_a_sigkilled_python_subscriber_process_resumes_with_nothing_lost(url: str, namespace: str) -> None:
    topic = topic_name()
    total = 20_000

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, url, namespace, topic],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    async def publish() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            # Two Rust publishers (the test server's actor, asked twice at once) and this one.
            await asyncio.gather(
                publish_from_rust(client, topic, durable=True, count=total // 4, sender=1),
                publish_from_rust(client, topic, durable=True, count=total // 4, sender=2),
                *(client.publish(topic, {"from": 3, "seq": i}, durable=True) for i in range(total // 2)),
            )

    first = start()
    seen: set[tuple[int, int]] = set()
    publisher = threading.Thread(target=lambda: run(publish(), timeout=120))
    publisher.start()
    assert first.stdout is not None
    for _ in range(5000):
        line = first.stdout.readline()
        assert line, "the first subscriber ended"
        sender, seq = line.split()
        seen.add((int(sender), int(seq)))
    first.kill()
    first.wait(timeout=10)
    for line in first.stdout:  # handled before it died, not read yet
        if not line.endswith("\n"):
            break  # cut by the kill mid-write: that event is not known handled
        sender, seq = line.split()
        seen.add((int(sender), int(seq)))
    second = start()
    assert second.stdout is not None
    last: dict[int, int] = {}
    duplicates = 0
    try:
        while len(seen) < total:
            line = second.stdout.readline()
            assert line, "the second subscriber ended"
            a, b = (int(x) for x in line.split())
            if b <= last.get(a, -1) and a != 3 and (a, b) not in seen:
                raise AssertionError(f"{a} {b} after {last[a]}")
            last[a] = max(b, last.get(a, -1))
            if (a, b) in seen:
                duplicates += 1
            seen.add((a, b))
    finally:
        second.kill()
        second.wait(timeout=10)
        publisher.join(timeout=120)
    assert duplicates <= 64 + 256 + 1, duplicates
    print(f"python durable resume: {total} events, {duplicates} received twice")
