"""A Python member's connections to Redis, the same on every URL kind (``redis://`` and a
Sentinel URL): a burst of activations beyond ``max_connections`` waits for a free connection
instead of failing (each activation claims its URN and loads its state)."""

from __future__ import annotations

import asyncio
import uuid

import conclib
from conclib.host import ActorHost
from conftest import run
from test_durability import servers, start_pair  # noqa: F401 (a fixture)
from test_host_store import _Tally
from test_topologies import Servers, start_sentinel

CALLERS = 64
ASK_S = 10.0


def burst_of_activations(url: str) -> None:
    ns = f"host-conn-{uuid.uuid4().hex[:6]}"

    async def main() -> None:
        host = ActorHost(url, namespace=ns, system="py-conn", max_connections=4)
        host.serve_pattern("py:tally:{id}", _Tally)
        async with host:
            async with conclib.AsyncClient(url, namespace=ns) as client:
                got = await asyncio.gather(
                    *(client.ask(f"py:tally:{i}", "test.Incr", timeout=ASK_S) for i in range(CALLERS)),
                    return_exceptions=True,
                )
                failed = [g for g in got if isinstance(g, BaseException)]
                assert not failed, (len(failed), failed[:3])
                assert got == [1] * CALLERS

    run(main(), timeout=60)


def test_a_burst_beyond_the_pool_waits_for_a_connection(servers: Servers) -> None:
    primary, _ = start_pair(servers)
    burst_of_activations(f"redis://127.0.0.1:{primary}")


def test_a_burst_beyond_the_pool_waits_for_a_connection_through_sentinel(servers: Servers) -> None:
    primary, _ = start_pair(servers)
    _, url = start_sentinel(servers, primary, down_after_ms=60000)
    burst_of_activations(url)
