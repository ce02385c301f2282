"""Python callers in the rolling upgrade (``examples/rolling/python.rs`` starts this script):
``IN_FLIGHT`` asyncio tasks ask ``acct:{id}`` accounts ``Total`` through the Python client,
``RATE`` asks a second all together (``0``: without pause), until stdin closes, then the process closes its client and prints ``DONE``.
One line per ask on stdout: ``PYA urn ok``, or ``PYA urn kind`` with the error's type
(``Timeout``, ``CodecError``, ... or ``untyped:...``).

Usage: ``python callers.py URL NAMESPACE SEED URNS IN_FLIGHT TIMEOUT_MS RATE``.
"""

from __future__ import annotations

import asyncio
import sys

import conclib


def kind_of(e: BaseException) -> str:
    return type(e).__name__ if isinstance(e, conclib.ConclibError) else f"untyped:{type(e).__name__}"


async def caller(client: conclib.AsyncClient, seed: int, w: int, urns: int, timeout: float,
                 pace: float, start: float, stop: asyncio.Event) -> None:
    k = 0
    loop = asyncio.get_running_loop()
    due = start
    while not stop.is_set():
        if pace:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += pace
        k += 1
        u = (seed * 101 + w * 37 + k * 11) % urns
        try:
            await client.ask(f"acct:{u}", "Total", timeout=timeout)
            outcome = "ok"
        except Exception as e:  # every outcome is reported, typed or not
            outcome = kind_of(e)
            print(f"python caller: {outcome}: {e}", file=sys.stderr, flush=True)
            await asyncio.sleep(0)
        print(f"PYA {u} {outcome}", flush=True)


async def main() -> None:
    url, namespace = sys.argv[1], sys.argv[2]
    seed, urns, in_flight, timeout_ms, rate = (int(a) for a in sys.argv[3:8])
    timeout = timeout_ms / 1000
    pace = in_flight / rate if rate else 0.0  # each task's interval between asks
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # stdin closing is the signal to stop.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)
    client = conclib.AsyncClient(url, namespace=namespace, timeout=timeout)
    try:
        await asyncio.wait_for(client.connect(), 30)
        print("READY", flush=True)
        await asyncio.gather(*(caller(client, seed, w, urns, timeout, pace, loop.time() + pace * w / in_flight, stop)
                               for w in range(in_flight)))
    finally:
        await client.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
