"""``conclib.testing``: the in-memory fakes, with no Redis and no Rust process (none of these
tests takes the ``url`` fixture that starts them). The FastAPI example's routes are tested
through ``TestClient`` with the fake handed to them as their ``get_client`` dependency."""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

import conclib
from conclib.testing import ANY, FakeAsyncClient, FakeClient, Sent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the examples package


@dataclass
class Add:
    __conclib_name__: ClassVar[str] = "Add"
    n: int


def test_answers_errors_and_the_record() -> None:
    async def main() -> None:
        fake = FakeAsyncClient()
        fake.answer("py:shapes", "Double", lambda n: 2 * n)
        fake.answer("py:shapes", "Swap", lambda p: (p[1], p[0]))
        fake.answer("py:counter", "Get", 5)
        fake.answer("py:counter", "Add", lambda p: p["n"])
        fake.fail("py:shapes", "Divide", conclib.HandlerError("DivideByZero"))
        assert await fake.ask("py:shapes", "Double", 21) == 42
        assert await fake.ask("py:shapes", "Swap", ("a", 1)) == [1, "a"]  # a tuple comes back a list
        assert await fake.ask("py:counter", "Get") == 5
        assert await fake.ask("py:counter", Add(n=3), priority="high", timeout=1.5) == 3
        with pytest.raises(conclib.HandlerError) as e:
            await fake.ask("py:shapes", "Divide", {"a": 1, "b": 0})
        assert e.value.error == "DivideByZero"
        with pytest.raises(conclib.UnknownUrn):
            await fake.ask("py:nothing", "Get")
        with pytest.raises(conclib.NotExposed):
            await fake.ask("py:counter", "Internal")
        await fake.tell("py:counter", "Record", 7)
        with pytest.raises(conclib.UnknownUrn):
            await fake.tell("py:nothing", "Record", 7)
        assert await fake.resolve("py:counter") == "fake" and await fake.resolve("py:nothing") is None

        assert fake.asks("py:shapes", "Double") == [21]
        assert fake.tells("py:counter") == [7]
        assert fake.sent[3] == Sent("ask", "py:counter", "Add", {"n": 3}, "high", 1.5)  # a dataclass: its fields
        assert fake.assert_sent("py:counter", "Record", 7, kind="tell").kind == "tell"
        fake.assert_sent("py:shapes", "Divide", ANY)
        with pytest.raises(AssertionError, match="no ask or tell py:counter Record 8 was sent"):
            fake.assert_sent("py:counter", "Record", 8)
        fake.reset()
        fake.assert_nothing_sent()
        with pytest.raises(conclib.UnknownUrn):
            await fake.ask("py:shapes", "Double", 1)

    asyncio.run(main())


def test_what_the_real_client_refuses_the_fake_refuses() -> None:
    async def main() -> None:
        fake = FakeAsyncClient(max_payload=100)
        fake.answer("u", "M", lambda p: object())
        with pytest.raises(ValueError):
            await fake.ask("u", "M", 1, priority="urgent")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await fake.ask("u", "M", 1, timeout=0)
        with pytest.raises(ValueError):
            await fake.ask("u", "M", 1, traceparent="nope")
        with pytest.raises(conclib.TooLarge):
            await fake.ask("u", "M", "x" * 200)
        with pytest.raises(conclib.CodecError):
            await fake.ask("u", "M", object())  # cannot be sent
        with pytest.raises(conclib.CodecError):
            await fake.ask("u", "M", 1)  # the answer cannot come back
        async with fake:
            pass
        with pytest.raises(conclib.Closed):
            await fake.ask("u", "M", 1)

    asyncio.run(main())


def test_failures_set_per_message_and_a_callable_may_raise() -> None:
    async def main() -> None:
        fake = FakeAsyncClient()
        fake.fail("py:shapes", "Double", conclib.Timeout(2.0))
        fake.fail("py:counter", "Record", conclib.Unavailable("Redis is down"))

        def divide(p: dict[str, int]) -> int:
            if p["b"] == 0:
                raise conclib.HandlerError("DivideByZero")
            return p["a"] // p["b"]

        fake.answer("py:shapes", "Divide", divide)
        with pytest.raises(conclib.Timeout):
            await fake.ask("py:shapes", "Double", 1)
        with pytest.raises(conclib.Unavailable):
            await fake.tell("py:counter", "Record", 1)  # a tell raises the failure set for it
        assert await fake.ask("py:shapes", "Divide", {"a": 7, "b": 2}) == 3
        with pytest.raises(conclib.HandlerError):
            await fake.ask("py:shapes", "Divide", {"a": 7, "b": 0})
        with pytest.raises(TypeError):
            fake.fail("u", "M", conclib.Timeout)  # type: ignore[arg-type]

    asyncio.run(main())


def test_the_blocking_fake_from_many_threads() -> None:
    fake = FakeClient(namespace="shop")
    fake.answer("py:shapes", "Double", lambda n: 2 * n)
    assert isinstance(fake, conclib.Client) and fake.namespace == "shop" and fake.reply_key is None
    results: list[Any] = []

    def worker(i: int) -> None:
        results.append(fake.ask("py:shapes", "Double", i))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [2 * i for i in range(16)]
    assert sorted(fake.asks("py:shapes", "Double")) == list(range(16))
    with fake:
        fake.tell("py:shapes", "Noop")
    with pytest.raises(conclib.Closed):
        fake.ask("py:shapes", "Double", 1)


# -- the FastAPI example's routes, with no Redis ----------------------------------------------


@pytest.fixture()
def app_with_fake() -> Any:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from examples import fastapi_app

    fake = FakeAsyncClient()
    fastapi_app.app.dependency_overrides[fastapi_app.get_client] = lambda: fake
    try:
        yield TestClient(fastapi_app.app), fake
    finally:
        fastapi_app.app.dependency_overrides.clear()
        # The example's real client was never used: no connection was made.
        assert fastapi_app.client.reply_key is None


def test_the_fastapi_example_routes_with_a_fake(app_with_fake: Any) -> None:
    http, fake = app_with_fake
    fake.answer("py:shapes", "Double", lambda n: 2 * n)
    assert http.get("/double/21").json() == {"n": 21, "double": 42}
    fake.assert_sent("py:shapes", "Double", 21, kind="ask")
    assert http.get("/plain/21").json() == {"n": 21, "double": 42}
    assert http.get("/health").json() == {"status": "ok"}
    assert fake.asks() == [21]  # /plain and /health asked nothing


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (conclib.Unavailable("Redis is down"), 503),
        (conclib.MailboxFull("py:shapes"), 503),
        (conclib.Timeout(5.0), 503),
        (conclib.HandlerError({"Overflow": {"n": 1}}), 502),
        (conclib.UnknownUrn("py:shapes"), 502),
    ],
)
def test_the_fastapi_example_maps_failures(app_with_fake: Any, error: Exception, status: int) -> None:
    http, fake = app_with_fake
    fake.fail("py:shapes", "Double", error)
    response = http.get("/double/21")
    assert response.status_code == status
    assert response.json()["detail"].startswith(getattr(error, "label"))


def test_typed_handles_take_the_fakes(tmp_path: Path) -> None:
    """The generated handles accept the fakes (they are the real client classes), under
    mypy --strict too."""
    pytest.importorskip("mypy")
    from test_stubs import generate_from, schema_document
    from test_typing import mypy

    where = generate_from(schema_document(), tmp_path, "dataclass")
    (where / "fake_use.py").write_text(
        "import api\n"
        "from conclib.testing import FakeAsyncClient, FakeClient\n"
        "async def main() -> int:\n"
        "    fake = FakeAsyncClient()\n"
        "    fake.answer('py:counter', 'Add', lambda p: p['n'])\n"
        "    return await api.Counter(fake).add(n=2)\n"
        "def blocking() -> api.Point:\n"
        "    fake = FakeClient()\n"
        "    fake.answer('py:shapes', 'Move', {'x': 1, 'y': 2})\n"
        "    return api.BlockingShapes(fake).move(point=api.Point(x=0, y=0), dx=1, dy=2)\n"
    )
    checked = mypy("api.py", "fake_use.py", cwd=where)
    assert checked.returncode == 0, checked.stdout
    sys.path.insert(0, str(where))
    try:
        import fake_use

        assert asyncio.run(fake_use.main()) == 2
        import api

        assert fake_use.blocking() == api.Point(x=1, y=2)
    finally:
        sys.path.remove(str(where))
        for name in ("api", "fake_use"):
            sys.modules.pop(name, None)
