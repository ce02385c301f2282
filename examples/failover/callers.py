"""Python callers in the failover scenario (``examples/failover/mod.rs`` starts this script):
``CALLERS`` asyncio tasks ask ``acct:{id}`` counters (``Incr``) and tell them (``Note``)
without pause through the Python client, until stdin closes. One line per outcome on stdout,
read by the driver like a member's:

- ``PYASKED urn activation count`` (an ask answered), ``PYTOLD n`` (a tell accepted: Redis
  took it; the number is the tell's, as the Rust callers' ``Note``);
- ``PYFAILED kind`` (``Unavailable``, ``NotReplicated``, ``Timeout``, ``HandlerError`` or an
  untyped error's type);
- ``PYOVERRUN seconds`` (a call that returned later than its timeout + 0.25 s).

``DURABILITY`` is the members' level: ``replicas`` (a tell is accepted once a replica
acknowledged it within 0.5 s, as ``member.rs``'s ``durability``) or ``primary``.

Usage: ``python callers.py URL CALLERS FIRST_TELL DURABILITY``.
"""

from __future__ import annotations

import asyncio
import sys
import time

import conclib

TIMEOUT = 1.0  # each call's, as the Rust callers'
MARGIN = 0.25
URNS = 30


def kind_of(e: BaseException) -> str:
    return type(e).__name__ if isinstance(e, conclib.ConclibError) else f"untyped:{type(e).__name__}"


async def caller(client: conclib.AsyncClient, seed: int, tells: list[int], stop: asyncio.Event) -> None:
    i = seed
    while not stop.is_set():
        i = (i * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        urn = f"acct:{(i >> 33) % URNS}"
        started = time.monotonic()
        try:
            if (i >> 20) % 4 == 0:
                n = tells[0]
                tells[0] += 1
                await client.tell(urn, "Note", {"tell": n})
                print(f"PYTOLD {n}", flush=True)
            else:
                activation, count = await client.ask(urn, "Incr", timeout=TIMEOUT)
                print(f"PYASKED {urn} {activation} {count}", flush=True)
        except Exception as e:  # every outcome is reported, typed or not
            kind = kind_of(e)
            if kind not in ("Unavailable", "NotReplicated", "Timeout", "HandlerError"):
                print(f"python caller: {kind}: {e}", file=sys.stderr, flush=True)
            print(f"PYFAILED {kind}", flush=True)
            await asyncio.sleep(0)
        took = time.monotonic() - started
        if took > TIMEOUT + MARGIN:
            print(f"PYOVERRUN {took:.3f}", flush=True)


async def main() -> None:
    url, callers, first_tell, level = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # `replicas` waits for one replica, `replicas:N` for N (as member.rs reads it).
    if level.startswith("replicas"):
        n = int(level.split(":", 1)[1]) if ":" in level else 1
        durability = conclib.Durability.replicas(n, timeout=0.5)
    else:
        durability = conclib.Durability.primary()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # stdin closing is the signal to stop.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.readline() else None)
    client = conclib.AsyncClient(url, namespace="failover", command_timeout=TIMEOUT, durability=durability)
    tells = [first_tell]
    try:
        await asyncio.wait_for(client.connect(), 30)
        print("READY", flush=True)
        await asyncio.gather(*(caller(client, c, tells, stop) for c in range(callers)))
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
