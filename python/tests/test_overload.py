"""``Overloaded`` against the real Rust test server: ``py:busy:{id}`` allows one request
pending per URN, so a second one while a ``Nap`` runs is refused at once, with the scope, the
limit and the depth; a client holding the URN full (its own ask fills the limit after a
refusal from the proxy) refuses asks and 64 callers' tells itself, at once, as the Rust client
does; the FastAPI example answers it 503 with ``Retry-After``."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

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


async def _hold_full(client: conclib.AsyncClient, urn: str, ms: int) -> asyncio.Future[Any]:
    """Makes ``client`` hold ``urn`` full: an ask refused by the proxy for the URN's limit of
    one starts the hold, then the client's own ``Nap`` of ``ms``, admitted by the proxy,
    fills it. Returns that ask."""
    deadline = time.monotonic() + 10
    # Two naps sent together: the proxy reads the second while the first is pending.
    while True:
        assert time.monotonic() < deadline, "never refused by the proxy"
        naps = [asyncio.ensure_future(client.ask(urn, "Nap", {"ms": 200})) for _ in range(2)]
        done = await asyncio.gather(*naps, return_exceptions=True)
        if any(isinstance(r, conclib.Overloaded) for r in done):
            break
    assert client.refused_at_send == 0, "the proxy refused them"
    while True:
        assert time.monotonic() < deadline, "the URN's place never free"
        own = asyncio.ensure_future(client.ask(urn, "Nap", {"ms": ms}, timeout=5))
        # A refusal comes back within a round trip; a nap still running was admitted.
        await asyncio.wait([own], timeout=0.1)
        if not own.done():
            return own
        assert isinstance(own.exception(), conclib.Overloaded), own


def test_sixty_four_callers_telling_a_urn_held_full_are_refused_at_send_in_time(
    url: str, namespace: str
) -> None:
    """While the client's own ask fills ``py:busy:{id}``'s limit of one, 64 callers telling it
    without pause are refused ``Overloaded`` by the client itself (the proxy would drop the
    tells), with the limit and the depth, at once; once it is answered their tells are sent
    again; no call outlives its deadline."""
    urn = "py:busy:tells"
    deadline_s = 2.0  # a tell's deadline: ``command_timeout``
    margin = 0.25

    async def main() -> None:
        async with conclib.AsyncClient(
            url, namespace=namespace, client_hold=30.0, command_timeout=deadline_s
        ) as client:
            own = await _hold_full(client, urn, 1000)
            # An ask finds it full too, refused without being sent.
            with pytest.raises(conclib.Overloaded) as refused:
                await client.ask(urn, "Noop")
            assert (refused.value.scope, refused.value.limit, refused.value.depth) == ("urn", 1, 1)
            assert client.refused_at_send == 1
            stop = time.monotonic() + 10

            async def caller() -> tuple[int, int, float, float]:
                refusals = sent_after = 0
                worst_refusal = worst = 0.0
                while sent_after == 0:
                    assert time.monotonic() < stop, "never sent again"
                    started = time.monotonic()
                    # Read just before the call: a tell is judged before it awaits anything.
                    answered = own.done()
                    try:
                        await client.tell(urn, "Noop")
                        assert answered, "sent while the client's own ask filled the URN"
                        sent_after += 1
                    except conclib.Overloaded as e:
                        worst_refusal = max(worst_refusal, time.monotonic() - started)
                        assert (e.urn, e.scope, e.limit, e.depth) == (urn, "urn", 1, 1)
                        assert not answered, "refused once the client's own ask was answered"
                        refusals += 1
                    worst = max(worst, time.monotonic() - started)
                return refusals, sent_after, worst_refusal, worst

            results = await asyncio.gather(*(caller() for _ in range(64)))
            assert await own == 1000, "the client's own ask was admitted and answered"
            refusals = sum(r[0] for r in results)
            assert refusals > 64, refusals
            assert client.refused_at_send == refusals + 1, "every refusal the client's own"
            assert all(r[1] == 1 for r in results)
            # Not a wait for a mailbox nor for the deadline.
            assert max(r[2] for r in results) < 0.5, max(r[2] for r in results)
            assert max(r[3] for r in results) <= deadline_s + margin, max(r[3] for r in results)
            # The URN answers normally once the tells sent last are handled (the proxy
            # refuses an ask while one is pending: the limit counts tells too).
            while True:
                assert time.monotonic() < stop, "never answered again"
                try:
                    assert await client.ask(urn, "Nap", {"ms": 1}) == 1
                    break
                except conclib.Overloaded:
                    await asyncio.sleep(0.01)  # polled: the proxy's count is seen only so

    run(main())


def test_the_blocking_client_refuses_at_send_a_tell_to_a_urn_held_full(url: str, namespace: str) -> None:
    """The same through the blocking client (its loop thread runs the async client)."""
    with conclib.Client(url, namespace=namespace, client_hold=30.0) as client:
        own = client._run(_hold_full(client._client, "py:busy:blocking", 1000), 15)
        before = client.refused_at_send
        started = time.monotonic()
        with pytest.raises(conclib.Overloaded) as refused:
            client.tell("py:busy:blocking", "Noop")
        assert time.monotonic() - started < 0.5
        assert (refused.value.scope, refused.value.limit, refused.value.depth) == ("urn", 1, 1)
        assert client.refused_at_send == before + 1
        assert client._run(_awaited(own), 5) == 1000
        client.tell("py:busy:blocking", "Noop")  # answered: sent again
        assert client.refused_at_send == before + 1


async def _awaited(future: asyncio.Future[Any]) -> Any:
    return await future


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
