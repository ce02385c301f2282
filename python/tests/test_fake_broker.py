"""``conclib.testing``'s in-memory broker: topics (live and durable) and reminders on the
fakes, with no Redis and no Rust process; the FastAPI example's Server-Sent Events route
tested with a fake."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

import conclib
from conclib.testing import FakeAsyncClient, FakeBroker, FakeClient, FakeSubscription, FiredTick

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the examples package


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_live_topics_reach_the_subscribers_of_the_moment() -> None:
    async def main() -> None:
        fake = FakeAsyncClient()
        await fake.publish("jobs.7", "before anyone listened")
        a = await fake.subscribe("jobs.7")
        b = await fake.subscribe("jobs.7")
        other = await fake.subscribe("jobs.8")
        await fake.publish("jobs.7", {"seq": 0})
        await fake.publish("jobs.7", [1, (2, 3)])
        assert [await a.get(timeout=1) for _ in range(2)] == [{"seq": 0}, [1, [2, 3]]]  # as decoded off the wire
        assert await b.get(timeout=1) == {"seq": 0}
        with pytest.raises(conclib.Timeout):
            await other.get(timeout=0.05)
        await b.aclose()
        await fake.publish("jobs.7", "after b left")
        assert await a.get(timeout=1) == "after b left"
        with pytest.raises(StopAsyncIteration):
            await b.get(timeout=1)
        assert fake.published("jobs.7") == ["before anyone listened", {"seq": 0}, [1, [2, 3]], "after b left"]
        assert a.stats()["received"] == 3 and a.stats()["dropped"] == 0

    run(main())


def test_a_slow_live_subscriber_drops_and_is_told_in_band() -> None:
    async def main() -> None:
        fake = FakeAsyncClient()
        sub = await fake.subscribe("ticks", buffer=3)
        for i in range(10):
            await fake.publish("ticks", i)
        assert sub.stats()["dropped"] == 7 and sub.stats()["buffered"] == 3
        with pytest.raises(conclib.Lagged) as lag:
            await sub.get(timeout=1)
        assert lag.value.missed == 7
        assert [await sub.get(timeout=1) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(conclib.Timeout):
            await sub.get(timeout=0.05)

    run(main())


def test_the_fakes_refuse_what_the_real_client_refuses() -> None:
    async def main() -> None:
        fake = FakeAsyncClient(max_payload=100)
        with pytest.raises(conclib.ConfigError):
            await fake.subscribe("two words")
        with pytest.raises(conclib.ConfigError):
            await fake.publish("a*", 1)
        with pytest.raises(conclib.TooLarge):
            await fake.publish("t", b"x" * 200)
        with pytest.raises(conclib.CodecError):
            await fake.publish("t", object())
        with pytest.raises(conclib.ConfigError):
            await fake.register_reminder("user:42", "renew")  # neither after= nor at=
        with pytest.raises(conclib.ConfigError):
            await fake.register_reminder("not a urn", "renew", after=1)
        with pytest.raises(conclib.ConfigError):
            await fake.register_reminder("user:42", "renew", after=1, every=0)
        with pytest.raises(conclib.TooLarge):
            await fake.register_reminder("user:42", "renew", after=1, payload=b"x" * 200)
        await fake.close()
        with pytest.raises(conclib.Closed):
            await fake.publish("t", 1)
        with pytest.raises(conclib.Closed):
            await fake.subscribe("t")
        with pytest.raises(conclib.Closed):
            await fake.list_reminders("user:42")

    run(main())


def test_durable_topics_groups_sharing_and_from_start() -> None:
    async def main() -> None:
        fake = FakeAsyncClient()
        await fake.publish("orders", {"order": 0}, durable=True)
        billing = await fake.subscribe("orders", durable=True, group="billing")  # starts at the end
        audit = await fake.subscribe("orders", durable=True, group="audit", from_start=True)
        shipping_1 = await fake.subscribe("orders", durable=True, group="shipping", consumer="s1", buffer=1)
        shipping_2 = await fake.subscribe("orders", durable=True, group="shipping", consumer="s2", buffer=1)
        for i in range(1, 5):
            await fake.publish("orders", {"order": i}, durable=True)
        assert [(await billing.get(timeout=1))["order"] for _ in range(4)] == [1, 2, 3, 4]
        assert [(await audit.get(timeout=1))["order"] for _ in range(5)] == [0, 1, 2, 3, 4]
        # One group's subscribers share its events: each event to one of them.
        shared = []
        for _ in range(2):
            shared.append((await shipping_1.get(timeout=1))["order"])
            shared.append((await shipping_2.get(timeout=1))["order"])
        assert sorted(shared) == [1, 2, 3, 4]

    run(main())


def test_durable_events_come_again_after_a_subscriber_died() -> None:
    async def main() -> None:
        broker = FakeBroker()
        fake = FakeAsyncClient(broker=broker)
        first = await fake.subscribe("orders", durable=True, group="billing", consumer="web-1", buffer=2)
        assert isinstance(first, FakeSubscription)
        for i in range(6):
            await fake.publish("orders", i, durable=True)
        assert await first.get(timeout=1) == 0
        assert await first.get(timeout=1) == 1  # 0 is finished now (acknowledged)
        first.abandon()  # killed while handling 1, with 2 in its buffer
        # The same consumer name resumes with what it had not finished, then the rest.
        again = await fake.subscribe("orders", durable=True, group="billing", consumer="web-1")
        assert [await again.get(timeout=1) for _ in range(5)] == [1, 2, 3, 4, 5]
        assert again.stats()["redelivered"] == 2
        await again.aclose()  # acknowledges the last one taken
        third = await fake.subscribe("orders", durable=True, group="billing", consumer="web-1")
        with pytest.raises(conclib.Timeout):
            await third.get(timeout=0.05)
        await third.aclose()

        # Another consumer of the group takes over once ``claim_idle`` passed on the clock.
        dead = await fake.subscribe("orders", durable=True, group="ledger", consumer="l1", from_start=True,
                                    buffer=1)
        assert await dead.get(timeout=1) == 0
        dead.abandon()
        other = await fake.subscribe("orders", durable=True, group="ledger", consumer="l2", claim_idle=30)
        assert [await other.get(timeout=1) for _ in range(5)] == [1, 2, 3, 4, 5]  # 0 is still l1's
        with pytest.raises(conclib.Timeout):
            await other.get(timeout=0.05)
        broker.advance(30)
        assert await other.get(timeout=1) == 0
        assert other.stats()["redelivered"] == 1

    run(main())


def test_a_durable_topic_keeps_its_last_max_len_events() -> None:
    async def main() -> None:
        fake = FakeAsyncClient()
        for i in range(10):
            await fake.publish("log", i, durable=True, max_len=4)
        late = await fake.subscribe("log", durable=True, group="late", from_start=True)
        assert [await late.get(timeout=1) for _ in range(4)] == [6, 7, 8, 9]

    run(main())


def test_reminders_registered_listed_cancelled_and_fired() -> None:
    async def main() -> None:
        broker = FakeBroker(now=1_000_000.0)
        fake = FakeAsyncClient(broker=broker, namespace="shop")
        due = await fake.register_reminder("user:42", "renew", after=60, every=3600, payload={"plan": "pro"})
        assert due == 1_000_060_000
        await fake.register_reminder("user:42", "digest", at=1_000_030.0)
        await fake.register_reminder("user:7", "ping", after=10)
        listed = await fake.list_reminders("user:42")
        assert [(r.name, r.due_ms, r.period_ms, r.codec) for r in listed] == [
            ("digest", 1_000_030_000, 0, ""), ("renew", 1_000_060_000, 3_600_000, "msgpack")]
        assert conclib.codec.decode(listed[1].payload) == {"plan": "pro"}
        assert await fake.cancel_reminder("user:7", "ping") is True
        assert await fake.cancel_reminder("user:7", "ping") is False

        assert fake.advance(29) == []
        assert fake.advance(1) == [FiredTick("shop", "user:42", "digest", None, 0, 1_000_030_000)]
        assert [r.name for r in await fake.list_reminders("user:42")] == ["renew"]  # a one-off is gone
        assert fake.advance(30) == [FiredTick("shop", "user:42", "renew", {"plan": "pro"}, 0, 1_000_060_000)]
        # Three periods later (no system ran): one tick, two missed folded into it.
        ticks = fake.advance(3 * 3600)
        assert [(t.name, t.missed, t.due_ms) for t in ticks] == [("renew", 2, 1_000_060_000 + 3_600_000)]
        assert (await fake.list_reminders("user:42"))[0].due_ms == 1_000_060_000 + 4 * 3_600_000
        assert fake.fire_due() == []
        # Another namespace on the same broker is another set of reminders.
        assert await FakeAsyncClient(broker=broker).list_reminders("user:42") == []

    run(main())


def test_the_blocking_fake_has_topics_and_reminders() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a coroutine never awaited would be a RuntimeWarning
        fake = FakeClient()
        try:
            sub = fake.subscribe("jobs", durable=True, group="g")
            live = fake.subscribe("news", buffer=1)
            fake.publish("jobs", {"n": 1}, durable=True)
            fake.publish("news", 1)
            fake.publish("news", 2)
            assert sub.get(timeout=5) == {"n": 1}
            with pytest.raises(conclib.Lagged):
                live.get(timeout=5)
            assert live.get(timeout=5) == 1
            # Published from another thread (and another fake of the same broker).
            async_fake = FakeAsyncClient(broker=fake.broker)
            thread = threading.Thread(target=lambda: asyncio.run(async_fake.publish("jobs", {"n": 2}, durable=True)))
            thread.start()
            thread.join(5)
            assert next(sub) == {"n": 2}
            sub.close()
            assert fake.register_reminder("user:1", "r", after=5) > 0
            assert [r.name for r in fake.list_reminders("user:1")] == ["r"]
            assert [t.urn for t in fake.advance(5)] == ["user:1"]
            assert fake.cancel_reminder("user:1", "r") is False  # fired: gone
        finally:
            fake.close()
        with pytest.raises(conclib.Closed):
            fake.publish("jobs", 1)


@pytest.fixture()
def sse_app() -> Any:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from examples.fastapi_app import app, get_client

    fake = FakeAsyncClient()
    app.dependency_overrides[get_client] = lambda: fake
    try:
        yield app, fake
    finally:
        app.dependency_overrides.clear()


def test_the_readme_sse_route_with_a_fake(sse_app: Any) -> None:
    from fastapi.testclient import TestClient

    app, fake = sse_app
    # The route runs on the test client's event loop, in another thread: events are
    # published there through a fake of the same broker.
    publisher = FakeClient(broker=fake.broker)
    events: list[Any] = []
    with TestClient(app) as http:
        with http.stream("GET", "/events/jobs.7?count=2") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == ": subscribed"
            publisher.publish("jobs.7", {"seq": 0})
            publisher.publish("jobs.7", {"seq": 1})
            for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: "):]))
        assert events == [{"seq": 0}, {"seq": 1}]
        assert http.get("/events/two%20words").status_code == 400
        # A durable topic's group keeps what was published while no stream was open.
        with http.stream("GET", "/events/orders?durable=true&group=web&count=1") as response:
            assert next(response.iter_lines()) == ": subscribed"
        publisher.publish("orders", {"order": 42}, durable=True)
        with http.stream("GET", "/events/orders?durable=true&group=web&count=1") as response:
            data = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert data == ['data: {"order": 42}']
    publisher.close()


def test_code_using_topics_and_reminders_type_checks_with_the_fakes(tmp_path: Path) -> None:
    from test_typing import mypy, pyright

    (tmp_path / "good.py").write_text(
        "import conclib\n"
        "from conclib.testing import FakeAsyncClient, FakeClient, FiredTick\n"
        "async def route(client: conclib.AsyncClient) -> int:\n"
        "    sub: conclib.Subscription = await client.subscribe('t', durable=True, group='g')\n"
        "    await client.publish('t', {'n': 1}, durable=True)\n"
        "    await client.register_reminder('user:1', 'r', after=1.0, payload={'a': 1})\n"
        "    reminders = await client.list_reminders('user:1')\n"
        "    return reminders[0].due_ms + sub.stats()['dropped']\n"
        "def blocking(client: conclib.Client) -> int:\n"
        "    client.publish('t', 1)\n"
        "    return client.list_reminders('user:1')[0].period_ms\n"
        "async def test() -> None:\n"
        "    fake = FakeAsyncClient()\n"
        "    await route(fake)\n"
        "    blocking(FakeClient(broker=fake.broker))\n"
        "    ticks: list[FiredTick] = fake.advance(1.0)\n"
        "    print(ticks[0].missed)\n"
    )
    assert mypy(tmp_path / "good.py").returncode == 0
    done = pyright(tmp_path / "good.py", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    # A reminder is a ReminderInfo (its fields checked), no longer Any.
    (tmp_path / "bad.py").write_text(
        "import conclib\n"
        "async def route(client: conclib.AsyncClient) -> int:\n"
        "    return (await client.list_reminders('user:1'))[0].due\n"
    )
    done = mypy(tmp_path / "bad.py")
    assert done.returncode != 0 and "due" in done.stdout, done.stdout
