"""Durable reminders from Python (issue #64): register, cancel and list against the real
Rust test server, whose reminder poller delivers a reminder registered here to an activated
``py:remind:{id}`` actor, the MessagePack payload decoded on the Rust side."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

import conclib
from conclib.reminders import SHARDS, ReminderInfo, shard_of
from conftest import run


def test_shards_are_the_rust_crates() -> None:
    # FNV-1a 32, as conclib-redis/src/reminders/keys.rs (its unit test has the same values).
    assert shard_of("user:42") == 0x2F6B7B82 % SHARDS == 2
    assert shard_of("py:remind:1") == 12
    assert shard_of("ünï:cødé") == 10


def test_register_list_cancel_and_what_is_refused(url: str, namespace: str) -> None:
    urn = f"py:remind:{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            due = await client.register_reminder(urn, "b", after=3600, every=60, payload={"n": 1})
            assert abs(due - time.time() * 1000 - 3_600_000) < 60_000
            await client.register_reminder(urn, "a", at=time.time() + 7200)
            listed = await client.list_reminders(urn)
            assert [r.name for r in listed] == ["a", "b"]
            b = listed[1]
            assert isinstance(b, ReminderInfo)
            assert (b.due_ms, b.period_ms, b.codec, b.claimed) == (due, 60_000, "msgpack", False)
            assert conclib.codec.decode(b.payload) == {"n": 1}
            assert listed[0].payload == b"" and listed[0].period_ms == 0
            assert await client.cancel_reminder(urn, "a") is True
            assert await client.cancel_reminder(urn, "a") is False
            assert [r.name for r in await client.list_reminders(urn)] == ["b"]
            assert await client.cancel_reminder(urn, "b") is True
            for bad in [
                dict(name="", after=1),
                dict(name="a\nb", after=1),
                dict(name="x" * 201, after=1),
                dict(name="a"),
                dict(name="a", after=1, at=1),
                dict(name="a", after=1, every=0),
                dict(name="a", after=-1),
            ]:
                with pytest.raises(conclib.ConfigError):
                    await client.register_reminder(urn, **bad)  # type: ignore[arg-type]
            with pytest.raises(conclib.ConfigError):
                await client.register_reminder("bad urn", "a", after=1)
            with pytest.raises(conclib.TooLarge):
                await client.register_reminder(urn, "big", after=1, payload=b"x" * (client.max_payload + 1))

    run(main())


def test_a_reminder_registered_from_python_wakes_a_rust_actor(url: str, namespace: str) -> None:
    urn = f"py:remind:{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client.register_reminder(urn, "renew", after=0.2, payload={"plan": "pro", "n": 3})
            deadline = time.monotonic() + 20
            ticks: list[list[object]] = []
            while not ticks:
                assert time.monotonic() < deadline, "the reminder fires"
                await asyncio.sleep(0.05)
                ticks = await client.ask(urn, "py.Ticks", None, timeout=5)
            [[name, missed, payload]] = ticks
            assert (name, missed) == ("renew", 0)
            assert json.loads(str(payload)) == {"plan": "pro", "n": 3}
            # A one-shot reminder is gone once handled.
            while await client.list_reminders(urn):
                assert time.monotonic() < deadline, "acknowledged"
                await asyncio.sleep(0.05)

    run(main())


def test_the_blocking_client_registers_too(url: str, namespace: str) -> None:
    urn = f"py:remind:{uuid.uuid4().hex[:8]}"
    with conclib.Client(url, namespace=namespace) as client:
        client.register_reminder(urn, "later", after=3600)
        assert [r.name for r in client.list_reminders(urn)] == ["later"]
        assert client.cancel_reminder(urn, "later") is True
        assert client.list_reminders(urn) == []
