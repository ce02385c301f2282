"""``Overloaded`` against the real Rust test server: ``py:busy:{id}`` allows one request
pending per URN, so a second one while a ``Nap`` runs is refused at once, with the scope, the
limit and the depth; the FastAPI example answers it 503 with ``Retry-After``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

import conclib
from conclib.errors import overloaded_from

from conftest import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # python/: the examples package


def test_a_second_request_past_a_urns_limit_is_overloaded_at_once(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            def holding() -> asyncio.Future[int]:
                return asyncio.ensure_future(client.ask("py:busy:a", "Nap", {"ms": 1500}))

            hold = holding()
            await asyncio.sleep(0.02)  # the hold is written before the first probe
            # The hold is pending once its URN answers the next ask Overloaded (a probe that
            # came first has the hold refused: it holds again).
            deadline = time.monotonic() + 10
            while True:
                if hold.done() and isinstance(hold.exception(), conclib.Overloaded):
                    hold = holding()
                    await asyncio.sleep(0.02)  # the hold is written before the next probe
                started = time.monotonic()
                try:
                    await client.ask("py:busy:a", "Nap", {"ms": 1}, timeout=5)
                except conclib.Overloaded as e:
                    took = time.monotonic() - started
                    assert (e.urn, e.scope, e.limit, e.depth) == ("py:busy:a", "urn", 1, 1)
                    assert e.label == "overloaded"
                    # Not a wait for the mailbox nor for the timeout.
                    assert took < 1.0, took
                    break
                assert time.monotonic() < deadline, "never refused"
                # Polled (the proxy's count is seen only so), with room between probes: a
                # probe pending whenever the hold arrives would refuse every hold.
                await asyncio.sleep(0.02)
            assert await hold == 1500
            # Once the hold is answered, the URN takes requests again.
            assert await client.ask("py:busy:a", "Nap", {"ms": 1}) == 1

    run(main())


def test_an_overloaded_payload_is_read_or_refused() -> None:
    e = overloaded_from("u:1", b"scope=pattern limit=8 depth=9 later=1")
    assert e is not None and (e.scope, e.limit, e.depth) == ("pattern", 8, 9)
    for bad in (b"", b"scope=moon limit=1 depth=1", b"scope=urn limit=x depth=1", b"\xff"):
        assert overloaded_from("u:1", bad) is None


def test_fastapi_answers_overloaded_503_with_retry_after(url: str, namespace: str) -> None:
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from examples import fastapi_app

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            fastapi_app.app.dependency_overrides[fastapi_app.get_client] = lambda: client
            try:
                transport = httpx.ASGITransport(app=fastapi_app.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
                    hold = asyncio.ensure_future(http.get("/nap/web/1500"))
                    await asyncio.sleep(0.02)  # the hold is sent before the first probe
                    deadline = time.monotonic() + 10
                    while True:
                        if hold.done() and hold.result().status_code == 503:
                            hold = asyncio.ensure_future(http.get("/nap/web/1500"))
                            await asyncio.sleep(0.02)
                        r = await http.get("/nap/web/1")
                        if r.status_code == 503:
                            assert r.headers["retry-after"] == "1"
                            assert r.json()["detail"].startswith("overloaded: ")
                            break
                        assert r.status_code == 200, r.text
                        assert time.monotonic() < deadline, "never refused"
                        await asyncio.sleep(0.02)  # room for the hold, as above
                    held = await hold
                    assert held.status_code == 200 and held.json() == {"slept": 1500}
            finally:
                fastapi_app.app.dependency_overrides.clear()

    run(main())
