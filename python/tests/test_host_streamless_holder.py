"""A pattern's URN whose key names a member that has no request stream (it drained, and the
URN was handed to it before it was asked there), while that member's lease still lives (its
process finishing its drain): 64 callers asking it without pause are all answered, each
within its timeout and a margin, by one activation on the Python member serving the pattern.
The client sends such a request to the pattern's group (the holder's stream is gone) and the
member frees the key (its holder has no stream) and activates the URN. The Rust twin:
``a_request_passed_on_to_a_drained_holder_goes_to_the_group`` (conclib-redis/tests/scale_out)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import conclib
from conclib.host import ActorHost
from conclib.protocol import Keys
from conftest import RedisServer, run
from test_host_store import _Tally

CALLERS = 64
ASK_S = 5.0
MARGIN_S = 1.0


def test_a_urn_whose_holder_has_no_stream_is_activated_by_the_group(
    redis_server: RedisServer, raw_redis: Any
) -> None:
    ns = f"streamless-{uuid.uuid4().hex[:6]}"
    keys = Keys(ns)
    urn = "py:tally:handed"
    # The drained member's lease, living (another host's process), and no stream of its own.
    raw_redis.set(keys.lease("drained"), "elsewhere:1:token", px=30_000)
    raw_redis.set(keys.urn(urn), "drained", px=30_000)
    assert not raw_redis.exists(keys.requests("drained"))

    async def main() -> list[Any]:
        host = ActorHost(redis_server.url, namespace=ns, system="py-serving")
        host.serve_pattern("py:tally:{id}", _Tally)
        async with host:
            async with conclib.AsyncClient(redis_server.url, namespace=ns) as client:

                async def ask() -> Any:
                    started = time.monotonic()
                    try:
                        return await client.ask(urn, "test.Incr", timeout=ASK_S)
                    except conclib.ConclibError as e:
                        return e
                    finally:
                        took = time.monotonic() - started
                        assert took <= ASK_S + MARGIN_S, took

                got = await asyncio.gather(*(ask() for _ in range(CALLERS)))
                assert raw_redis.get(keys.urn(urn)) == b"py-serving"
                return got

    got = run(main(), timeout=60)
    failed = [g for g in got if not isinstance(g, int)]
    assert not failed, (len(failed), failed[:3])
    # One activation: each count once.
    assert sorted(got) == list(range(1, CALLERS + 1)), got
