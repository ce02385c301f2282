"""Reminders and topics from a Python actor (``mirror_host.py``'s ``Ticker``, pattern
``py:ptick:{id}``, served by a Python actor host only): a reminder it registers for its own
URN is delivered to it as ``conclib.ReminderTick`` asks by the Rust test server's reminder
poller, payload included; events published to a topic reach it through the host's actor
subscription; what it publishes reaches a Python subscriber."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import conclib
from conftest import PythonHost, RedisServer, run


def test_a_python_actor_registers_a_reminder_and_gets_its_ticks(url: str, namespace: str) -> None:
    host = PythonHost(url, namespace, "--pattern-only", "--system", f"py-{uuid.uuid4().hex[:6]}")
    urn = f"py:ptick:{uuid.uuid4().hex[:6]}"
    try:

        async def main() -> list[Any]:
            async with conclib.AsyncClient(url, namespace=namespace) as client:
                due = await client.ask(urn, "test.Arm", 150, timeout=5)
                assert abs(due / 1000 - time.time()) < 5
                [info] = await client.list_reminders(urn)
                assert (info.name, info.period_ms) == ("beat", 150)
                deadline = time.monotonic() + 10
                ticks: list[Any] = []
                while len(ticks) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    ticks = await client.ask(urn, "test.Ticks", timeout=5)
                assert await client.cancel_reminder(urn, "beat")
                return ticks

        ticks = run(main(), timeout=30)
        assert len(ticks) >= 2, ticks
        for name, missed, payload, _ in ticks:
            assert (name, payload) == ("beat", {"urn": urn})
            assert missed >= 0
    finally:
        host.close()


def test_a_python_actor_subscribes_and_publishes(url: str, namespace: str) -> None:
    host = PythonHost(url, namespace, "--pattern-only", "--subscribe-news", "--system", f"py-{uuid.uuid4().hex[:6]}")
    try:

        async def main() -> tuple[list[Any], Any]:
            async with conclib.AsyncClient(url, namespace=namespace) as client:
                announced = await client.subscribe("py.announced")
                # The host subscribed before it printed READY: these reach the actor.
                for i in range(5):
                    await client.publish("py.news", {"seq": i})
                deadline = time.monotonic() + 10
                news: list[Any] = []
                while len(news) < 5 and time.monotonic() < deadline:
                    news = await client.ask("py:ptick:news", "test.Headlines", timeout=5)
                    await asyncio.sleep(0.02)
                await client.tell("py:ptick:news", "test.Announce", "hello")
                event = await announced.get(timeout=5)
                await announced.aclose()
                return news, event

        news, event = run(main(), timeout=30)
        assert news == [{"seq": i} for i in range(5)]
        assert event == {"from": "py:ptick:news", "text": "hello"}
    finally:
        host.close()


def test_a_durable_topic_is_asked_to_a_python_actor(redis_server: RedisServer) -> None:
    """``subscribe_actor`` on a durable topic: each event asked to the actor, in order, the
    next one once the actor answered."""
    from conclib.actor import Actor, handler
    from conclib.host import ActorHost

    seen: list[Any] = []

    class Sink(Actor):
        @handler("test.Event")
        async def event(self, e: Any) -> None:
            seen.append(e)

    url = redis_server.url
    ns = f"dur-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        host = ActorHost(url, namespace=ns)
        host.serve_pattern("sink:{id}", Sink)
        sub = host.subscribe_actor("py.orders", "sink:1", "test.Event", durable=True)
        async with host, conclib.AsyncClient(url, namespace=ns) as client:
            for i in range(20):
                await client.publish("py.orders", i, durable=True)
            deadline = time.monotonic() + 10
            while sub.handed < 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        assert seen == list(range(20))
        assert (sub.handed, sub.failed) == (20, 0)

    run(main(), timeout=30)
