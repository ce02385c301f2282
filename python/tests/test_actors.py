"""Timeouts and deadlines, priority lanes, tells, a full mailbox, the metrics hook: against the
real Rust server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import conclib
from conftest import run

COUNTER = "py:counter"
SHAPES = "py:shapes"


def test_timeout_is_typed_and_on_time(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            started = time.monotonic()
            with pytest.raises(conclib.Timeout) as e:
                await client.ask(SHAPES, "Nap", {"ms": 800}, timeout=0.3)
            took = time.monotonic() - started
            assert 0.29 <= took < 1.0, took
            assert e.value.timeout == pytest.approx(0.3)
            # The default timeout is the client's.
            assert await client.ask(SHAPES, "Nap", {"ms": 10}) == 10

    run(main())


def test_an_expired_ask_is_never_started(url: str, namespace: str) -> None:
    """Deadlines: an ask still queued behind a busy actor at its deadline is dropped, not
    handled late (nobody waits for it)."""

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client.ask(COUNTER, "Reset")
            # Hold the counter ~800 ms (it waits for 1000 queued messages that never come);
            # both requests leave together, in this order (one pipeline).
            held, added = await asyncio.gather(
                client.ask(COUNTER, "HoldUntilQueued", {"n": 1000, "max_ms": 800}),
                client.ask(COUNTER, "Add", {"n": 1}, timeout=0.2),
                return_exceptions=True,
            )
            assert isinstance(added, conclib.Timeout), added
            assert held < 1000
            assert await client.ask(COUNTER, "Get") == 0

    run(main())


def test_high_priority_overtakes_queued_messages(url: str, namespace: str) -> None:
    async def main() -> list[int]:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client.ask(COUNTER, "Reset")
            # The counter holds until three messages are queued behind it, so the three tells
            # below are surely queued together before it takes any. All four leave together,
            # in this order (one write), and enter the mailbox in this order: the hold is in
            # the high-priority lane too, so that the actor takes it first whether or not the
            # tells are in the mailbox by then (else the high tell would overtake it).
            held, *_ = await asyncio.gather(
                client.ask(COUNTER, "HoldUntilQueued", {"n": 3, "max_ms": 5000}, priority="high"),
                client.tell(COUNTER, "Record", 1),
                client.tell(COUNTER, "Record", 2),
                client.tell(COUNTER, "Record", 3, priority="high"),
            )
            assert held == 3
            history: list[int] = await client.ask(COUNTER, "History", priority="high")
            return history

    assert run(main()) == [3, 1, 2]


def test_tells_are_handled_in_order(url: str, namespace: str) -> None:
    async def main() -> list[int]:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client.ask(COUNTER, "Reset")
            for n in range(50):
                await client.tell(COUNTER, "Record", n)
            # Asks go through the same stream and mailbox: the history is complete.
            history: list[int] = await client.ask(COUNTER, "History")
            with pytest.raises(conclib.UnknownUrn):
                await client.tell("py:nobody", "Record", 1)
            return history

    assert run(main()) == list(range(50))


def test_string_handler_error(url: str, namespace: str) -> None:
    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            await client.ask(COUNTER, "Reset")
            assert await client.ask(COUNTER, "Add", {"n": 2**64 - 1}) == 2**64 - 1
            with pytest.raises(conclib.HandlerError) as e:
                await client.ask(COUNTER, "Add", {"n": 1})
            assert e.value.error == "overflow"
            await client.ask(COUNTER, "Reset")

    run(main())


def test_full_mailbox_is_answered_at_once(url: str, namespace: str) -> None:
    async def main() -> list[Any]:
        async with conclib.AsyncClient(url, namespace=namespace) as client:
            started = time.monotonic()

            async def timed(n: int) -> tuple[Any, float]:
                try:
                    result: Any = await client.ask("py:narrow", "Occupy", {"ms": 700}, timeout=5)
                except conclib.ConclibError as e:
                    result = e
                return result, time.monotonic() - started

            return await asyncio.gather(*(timed(n) for n in range(4)))

    outcomes = run(main())
    full = [t for r, t in outcomes if isinstance(r, conclib.MailboxFull)]
    served = [r for r, _ in outcomes if r == 700]
    assert full, outcomes
    assert served, outcomes
    # Refused after the proxy's 100 ms wait for room, well before the actor is free.
    assert all(t < 0.6 for t in full), outcomes


def test_metrics_hook(url: str, namespace: str) -> None:
    from prometheus_client import CollectorRegistry

    events: list[conclib.AskEvent] = []
    registry = CollectorRegistry()
    prometheus = conclib.prometheus_hook(registry)

    def hook(event: conclib.AskEvent) -> None:
        events.append(event)
        prometheus(event)

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace, on_ask=hook) as client:
            await client.ask(SHAPES, "Double", 1)
            with pytest.raises(conclib.HandlerError):
                await client.ask(SHAPES, "Divide", {"a": 1, "b": 0})
            with pytest.raises(conclib.Timeout):
                await client.ask(SHAPES, "Nap", {"ms": 2000}, timeout=0.1)
            with pytest.raises(conclib.UnknownUrn):
                await client.ask("py:nobody", "Hello")

    run(main())
    assert [(e.urn, e.message, e.status) for e in events] == [
        (SHAPES, "Double", "ok"),
        (SHAPES, "Divide", "handler_error"),
        (SHAPES, "Nap", "timeout"),
        ("py:nobody", "Hello", "unknown_urn"),
    ]
    assert all(e.seconds >= 0 for e in events)
    assert events[2].seconds == pytest.approx(0.1, abs=0.2)
    count = registry.get_sample_value("conclib_client_ask_seconds_count", {"status": "ok"})
    assert count == 1.0
    assert registry.get_sample_value("conclib_client_ask_seconds_count", {"status": "timeout"}) == 1.0


def test_a_stopped_server_frees_its_urns(redis_server: Any, rust_server: Any) -> None:
    """A second Rust server (its own system id) on the same Redis: asks reach it, and once it
    stops (SIGTERM) its URNs are freed at once (nobody serves them); within the departed
    grace an ask answers ``Unavailable`` (its system may be restarting), not ``UnknownUrn``."""
    from conftest import RustServer

    server = RustServer(redis_server.url, "second", system="second")
    try:

        async def ask() -> Any:
            async with conclib.AsyncClient(redis_server.url, namespace="second") as client:
                return await client.ask(SHAPES, "Double", 5, timeout=5)

        assert run(ask()) == 10
        assert server.stop() == 0

        async def after() -> tuple[Any, str]:
            async with conclib.AsyncClient(redis_server.url, namespace="second") as client:
                owner = await client.resolve(SHAPES)
                try:
                    await client.ask(SHAPES, "Double", 5, timeout=0.5)
                except conclib.ConclibError as e:
                    return owner, type(e).__name__
                return owner, "ok"

        assert run(after()) == (None, "Unavailable")
    finally:
        server.close()
