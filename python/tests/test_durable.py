"""Durable executions of Rust handlers from Python (``conclib.durable``): the test server's
``py:order:{id}`` workflow (``testserver/src/orders.rs``: a ``charge`` step, then the
promise ``approved``) started by a tell or an ask with an idempotency key, its promise
resolved and its result read by the async and blocking clients, from the FastAPI example's
routes, and the same on the in-memory fakes."""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import conclib
from conclib import durable
from conclib.testing import FakeAsyncClient, FakeClient, Waiting
from conftest import ROOT, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the examples package

PLACE = "py.Place"


def order_urn() -> str:
    return f"py:order:{uuid.uuid4().hex[:8]}"


def test_the_resolve_script_is_the_rust_crates() -> None:
    source = (ROOT / "conclib-redis" / "src" / "durable" / "scripts.rs").read_text()
    found = re.search(r'const RESOLVE: &str = r"(.*?)";', source, re.DOTALL)
    assert found is not None
    assert found.group(1) == durable.RESOLVE


def test_resolving_a_promise_wakes_an_execution_that_waits_with_a_wake_message(
    redis_server: Any, fresh_ns: str
) -> None:
    """An execution that waits for a promise with a wake message (the Rust crate's
    ``jw:<key>`` field, written here as the crate writes it) is woken by its reminder, named
    as the crate names it, carrying that message; without one, nothing is registered."""

    async def main() -> None:
        async with conclib.AsyncClient(redis_server.url, namespace=fresh_ns) as client:
            urn, message = "wf:7", b"\x01\x02wake"
            state = f"{fresh_ns}:state:{urn}"
            await client._command("HSET", state, "jw:k7", message)
            assert await client.resolve_promise(urn, "k7", "approve", True) is True
            (wake,) = await client.list_reminders(urn)
            assert (wake.name, wake.payload, wake.codec, wake.period_ms) == (
                "durable:k7", message, "bincode", 0
            )
            # Resolved already: the retry still wakes it (the reminder registered again).
            await client.cancel_reminder(urn, "durable:k7")
            assert await client.resolve_promise(urn, "k7", "approve", False) is False
            assert [r.name for r in await client.list_reminders(urn)] == ["durable:k7"]
            # An execution without a wake message: no reminder.
            assert await client.resolve_promise("wf:8", "k8", "approve", True) is True
            assert await client.list_reminders("wf:8") == []

    run(main())
    assert durable.wake_name("order-1") == "durable:order-1"
    # As the Rust crate's `every_key_has_a_wake_name_a_reminder_holds`: FNV-1a 64 for keys a
    # reminder name cannot hold.
    assert durable.wake_name("x" * 300) == "durable:#e78ddf9f1ba85555"
    assert durable.wake_name("a\x07b").startswith("durable:#")


async def wait_for_steps(client: conclib.AsyncClient, urn: str, key: str, steps: int) -> None:
    """Until the journal of ``urn`` holds ``steps`` recorded steps of ``key`` (bounded)."""
    deadline = time.monotonic() + 20
    while True:
        found = {e.key: e for e in await client.list_executions(urn)}
        if key in found and found[key].steps_recorded >= steps:
            return
        assert time.monotonic() < deadline, f"{key} recorded no {steps} steps: {found}"
        await asyncio.sleep(0.01)


def test_a_workflow_started_by_a_tell_finishes_once_its_promise_is_resolved(url: str, namespace: str) -> None:
    async def main() -> None:
        urn, key = order_urn(), "order-1"
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client.tell(urn, PLACE, {"key": key, "cents": 1200})
            # The charge is recorded; the execution waits for its promise: no result yet.
            await wait_for_steps(client, urn, key, 1)
            (running,) = await client.list_executions(urn)
            assert (running.key, running.finished_at_ms) == (key, None)
            assert [(s.number, s.name) for s in running.steps] == [(1, "charge")]
            assert conclib.codec.decode(running.steps[0].value) == "charged 1200"
            assert await client.execution_result(urn, key) is None
            with pytest.raises(conclib.Timeout):
                await client.wait_execution(urn, key, timeout=0.05)

            assert await client.resolve_promise(urn, key, "approved", True) is True
            assert await client.wait_execution(urn, key, timeout=20) == "charged 1200 approved=true"
            finished = await client.execution_result(urn, key)
            assert finished is not None and finished.value == "charged 1200 approved=true"
            assert finished.finished_at_ms > 0
            # Taken by the finished execution, the promise's record is gone: resolving it
            # again stores a value nothing reads, and the result stays.
            assert await client.resolve_promise(urn, key, "approved", False) is True
            (done,) = await client.list_executions(urn)
            assert done.finished_at_ms == finished.finished_at_ms and done.steps_recorded == 2 and done.steps == []

            # The same key again: the first result, nothing run again.
            assert await client.ask(urn, PLACE, {"key": key, "cents": 999}) == "charged 1200 approved=true"
            assert await client.ask(urn, "py.Charges") == 1

    run(main())


def test_one_key_asked_by_64_callers_at_once_runs_once(url: str, namespace: str) -> None:
    async def main() -> None:
        urn, key = order_urn(), "order-64"
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            # Resolved before the execution gets there: it takes the value when it does.
            assert await client.resolve_promise(urn, key, "approved", True)
            assert await client.resolve_promise(urn, key, "approved", False) is False  # the first stays
            answers = await asyncio.gather(
                *(client.ask(urn, PLACE, {"key": key, "cents": 7}, timeout=30) for _ in range(64))
            )
            assert set(answers) == {"charged 7 approved=true"}
            assert await client.ask(urn, "py.Charges") == 1
            # Another key of the same URN is another execution.
            assert await client.resolve_promise(urn, "order-65", "approved", False)
            assert await client.ask(urn, PLACE, {"key": "order-65", "cents": 8}) == "charged 8 approved=false"
            assert await client.ask(urn, "py.Charges") == 2
            assert [e.key for e in await client.list_executions(urn)] == ["order-64", "order-65"]

    run(main())


def test_the_blocking_client_starts_resolves_and_reads(url: str, namespace: str) -> None:
    urn, key = order_urn(), "order-b"
    with conclib.Client(url, namespace=namespace) as client:
        client.tell(urn, PLACE, {"key": key, "cents": 3})
        assert client.resolve_promise(urn, key, "approved", True)
        assert client.wait_execution(urn, key, timeout=20) == "charged 3 approved=true"
        finished = client.execution_result(urn, key)
        assert finished is not None and finished.value == "charged 3 approved=true"
        assert [e.key for e in client.list_executions(urn)] == [key]
        assert client.execution_result(urn, "never-begun") is None


def test_bad_keys_names_and_urns_are_refused_before_redis(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            for bad in ["", "a\nb", "x" * (durable.MAX_NAME_LEN + 1)]:
                with pytest.raises(conclib.ConfigError):
                    await client.execution_result("py:order:1", bad)
                with pytest.raises(conclib.ConfigError):
                    await client.resolve_promise("py:order:1", "k", bad, 1)
            with pytest.raises(conclib.ConfigError):
                await client.execution_result("py:order: 1", "k")
            with pytest.raises(conclib.TooLarge):
                await client.resolve_promise("py:order:1", "k", "p", b"x" * (9 << 20))

    run(main())


def test_a_result_recorded_in_another_codec_fails_typed(url: str, namespace: str) -> None:
    async def main() -> None:
        urn = order_urn()
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client._command("HSET", f"{namespace}:state:{urn}", "jr:k", b"17\n\xc1")  # never MessagePack
            with pytest.raises(conclib.CodecError):
                await client.execution_result(urn, "k")
            await client._command("HSET", f"{namespace}:state:{urn}", "jr:k", b"not a record")
            with pytest.raises(conclib.CodecError):
                await client.execution_result(urn, "k")

    run(main())


# -- from a FastAPI endpoint ---------------------------------------------------------------


def test_the_fastapi_routes_start_approve_and_read_a_workflow(url: str, namespace: str) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from examples.fastapi_app import app, get_client

    client = conclib.AsyncClient(url, namespace=namespace)
    app.dependency_overrides[get_client] = lambda: client
    order = uuid.uuid4().hex[:8]
    try:
        with TestClient(app) as http:
            assert http.post(f"/orders/{order}", params={"key": "k1", "cents": 5}).status_code == 202
            assert http.get(f"/orders/{order}/k1").status_code == 404
            assert http.post(f"/orders/{order}/k1/approve", params={"approved": "true"}).json() == {"resolved": True}
            got = http.get(f"/orders/{order}/k1", params={"wait": 20})
            assert got.json() == {"result": "charged 5 approved=true"}, got.text
            # Started again with the same key: nothing runs, the first result stays.
            assert http.post(f"/orders/{order}", params={"key": "k1", "cents": 6}).status_code == 202
            assert http.get(f"/orders/{order}/k1").json() == {"result": "charged 5 approved=true"}
            assert http.get(f"/orders/{order}/bad%0Akey").status_code == 400
    finally:
        app.dependency_overrides.clear()
    run(client.close())


# -- the fakes -----------------------------------------------------------------------------


def place(order: dict[str, Any], promises: dict[str, Any]) -> str:
    """The test server's workflow, for the fakes."""
    if "approved" not in promises:
        raise Waiting()
    return f"charged {order['cents']} approved={str(promises['approved']).lower()}"


def test_the_async_fake_runs_an_execution_once_per_key() -> None:
    async def main() -> None:
        fake = FakeAsyncClient()
        runs: list[str] = []

        def counted(order: dict[str, Any], promises: dict[str, Any]) -> str:
            runs.append(order["key"])
            return place(order, promises)

        fake.answer_execution("py:order:7", PLACE, counted)
        assert await fake.resolve_promise("py:order:7", "k0", "approved", True)
        assert not await fake.resolve_promise("py:order:7", "k0", "approved", False)  # the first stays
        assert await fake.ask("py:order:7", PLACE, {"key": "k0", "cents": 1}) == "charged 1 approved=true"
        await fake.tell("py:order:7", PLACE, {"key": "k1", "cents": 5})
        assert await fake.execution_result("py:order:7", "k1") is None
        listed = await fake.list_executions("py:order:7")
        assert [(e.key, e.finished_at_ms is None) for e in listed] == [("k0", False), ("k1", True)]
        with pytest.raises(conclib.Timeout):
            await fake.ask("py:order:7", PLACE, {"key": "k1", "cents": 5})  # it waits for its promise
        assert await fake.resolve_promise("py:order:7", "k1", "approved", True)
        assert await fake.wait_execution("py:order:7", "k1", timeout=1) == "charged 5 approved=true"
        assert await fake.ask("py:order:7", PLACE, {"key": "k1", "cents": 9}) == "charged 5 approved=true"
        assert runs == ["k0", "k1", "k1", "k1"]  # k0's ask; k1's tell, the ask that timed out, the promise resolved
        finished = await fake.execution_result("py:order:7", "k1")
        assert finished is not None and finished.finished_at_ms > 0
        assert all(e.steps == [] for e in await fake.list_executions("py:order:7"))
        # The key taken by a function of the payload.
        fake.answer_execution("py:order:8", "Run", lambda n, _: n * 2, key=lambda n: f"run-{n}")
        assert await fake.ask("py:order:8", "Run", 21) == 42
        assert await fake.wait_execution("py:order:8", "run-21", timeout=1) == 42
        with pytest.raises(conclib.ConfigError):
            await fake.resolve_promise("py:order:7", "k\n1", "approved", True)

    run(main())


def test_the_blocking_fake_and_a_fastapi_route_on_it() -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from examples.fastapi_app import app, get_client

    fake = FakeAsyncClient()
    fake.answer_execution("py:order:9", PLACE, place)
    blocking = FakeClient(broker=fake.broker)  # the same broker: one sees the other's
    app.dependency_overrides[get_client] = lambda: fake
    try:
        http = TestClient(app)
        assert http.post("/orders/9", params={"key": "k", "cents": 4}).status_code == 202
        assert http.get("/orders/9/k").status_code == 404
        assert blocking.resolve_promise("py:order:9", "k", "approved", False)
        assert blocking.wait_execution("py:order:9", "k", timeout=1) == "charged 4 approved=false"
        assert http.get("/orders/9/k").json() == {"result": "charged 4 approved=false"}
        fake.assert_sent("py:order:9", PLACE, {"key": "k", "cents": 4}, kind="tell")
        with pytest.raises(conclib.Timeout):
            blocking.wait_execution("py:order:9", "other", timeout=0.05)
    finally:
        app.dependency_overrides.clear()
        blocking.close()
