"""Two builds of one pattern side by side (a rolling upgrade's middle), asked from Python.

``conclib-pyserver --build 1`` serves ``py:ver:{id}`` with ``Deposit`` and ``Balance``;
``--build 2`` adds a message, ``Audit``, and an optional field to ``Deposit`` (its version
2). With build 1 alone, 64 concurrent callers asking ``Audit`` are each refused
``UnsupportedVersion`` at once (none is a timeout, none returns past its deadline), and a
``Deposit`` with build 2's new field is decoded by build 1 (MessagePack: fields by name,
the new one skipped). Once build 2 serves, the same callers' ``Audit`` asks are answered by
it, the URNs moved there from build 1.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import conclib

from conftest import RedisServer, RustServer, run

CALLERS = 64
ROUNDS = 4
URNS = 16
DEADLINE = 5.0
MARGIN = 1.0


async def from_64_callers(client: conclib.AsyncClient, message: str, payload: Any) -> list[Any]:
    """``CALLERS`` callers asking ``ROUNDS`` times each without pause over ``py:ver:0..15``:
    every outcome (a result or the error), each checked to come within its deadline."""

    async def caller(i: int) -> list[Any]:
        outcomes: list[Any] = []
        for r in range(ROUNDS):
            started = time.monotonic()
            try:
                outcomes.append(await client.ask(f"py:ver:{(i + r) % URNS}", message, payload, timeout=DEADLINE))
            except conclib.ConclibError as e:
                outcomes.append(e)
            took = time.monotonic() - started
            assert took <= DEADLINE + MARGIN, f"a call took {took:.2f} s"
        return outcomes

    done = await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    return [o for outcomes in done for o in outcomes]


def test_a_message_only_the_new_build_has_is_answered_by_it_or_refused(
    redis_server: RedisServer, fresh_ns: str
) -> None:
    url = redis_server.url
    v1 = RustServer(url, fresh_ns, system="v1", extra=("--build", "1"))
    v2: RustServer | None = None
    try:

        async def alone() -> list[Any]:
            async with conclib.AsyncClient(url, namespace=fresh_ns) as client:
                for u in range(URNS):
                    assert (await client.ask(f"py:ver:{u}", "Balance", None, timeout=DEADLINE))[1] == "v1"
                refused = await from_64_callers(client, "Audit", None)
                # Build 2's field, to build 1: skipped, the rest decoded.
                total = await client.ask("py:ver:0", "Deposit", {"n": 3, "note": "new"}, timeout=DEADLINE)
                assert total == 3
                return refused

        refused = run(alone())
        assert len(refused) == CALLERS * ROUNDS
        for r in refused:
            assert isinstance(r, conclib.UnsupportedVersion), repr(r)
            assert r.message == "Audit" and r.urn.startswith("py:ver:")
            assert r.label == "unsupported_version"

        v2 = RustServer(url, fresh_ns, system="v2", extra=("--build", "2"))

        async def together() -> list[Any]:
            async with conclib.AsyncClient(url, namespace=fresh_ns) as client:
                audited = await from_64_callers(client, "Audit", None)
                for u in range(URNS):
                    assert (await client.ask(f"py:ver:{u}", "Balance", None, timeout=DEADLINE))[1] == "v2"
                return audited

        audited = run(together())
        assert audited == ["v2"] * (CALLERS * ROUNDS)
    finally:
        for server in (v2, v1):
            if server is not None:
                server.close()
