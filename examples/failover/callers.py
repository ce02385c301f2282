"""Python callers in the failover scenario (``examples/failover/mod.rs`` starts this script):
``CALLERS`` asyncio tasks ask ``acct:{id}`` counters (``Incr``) and tell them (``Note``)
without pause through the Python client, until stdin closes. Lines on stdout, read by the
driver like a member's:

- ``PYASKED urn activation count at`` (an ask answered, when: ms since the Unix epoch), ``PYTOLD n`` (a tell accepted: Redis
  took it; the number is the tell's, as the Rust callers' ``Note``);
- ``PYFAILED kind count`` (calls that failed since the last such line, by kind:
  ``Unavailable``, ``NotReplicated``, ``Timeout``, ``HandlerError`` or an untyped error's
  type);
- ``PYOVERRUN seconds call outcome stalled cpu began_ms counted`` (a call, ``ask`` or
  ``tell``, that returned later than its timeout + 0.25 s; how it ended; the hold-up of the
  event loop meanwhile and the CPU seconds the process used in it; when it began, ms since
  the Unix epoch; ``1`` if it is an overrun once the time the process was not run is taken
  off, as the Rust callers' overruns are counted).

``DURABILITY`` is the members' level: ``replicas`` (a tell is accepted once a replica
acknowledged it within 0.5 s, as ``member.rs``'s ``durability``) or ``primary``.

Usage: ``python callers.py URL CALLERS FIRST_TELL DURABILITY``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import sys
import time

import conclib

TIMEOUT = 1.0  # each call's, as the Rust callers'
MARGIN = 0.25
URNS = 30


class Out:
    """Lines to the driver on stdout, a pipe, written without ever blocking the event loop
    (a transport buffers what the pipe does not take at once: a caller blocked in a write
    while the driver is slow to read would count as the client's overrun). Failures, by
    the thousand a second while no primary answers, are counted and sent every 100 ms
    (``PYFAILED kind count``), not one line each."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.failed: collections.Counter[str] = collections.Counter()

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(sys.stdout.fileno(), "wb", 0))

    def line(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(text.encode() + b"\n")

    def flush_failed(self) -> None:
        for kind, count in self.failed.items():
            self.line(f"PYFAILED {kind} {count}")
        self.failed.clear()

    async def send_failed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.1)
            self.flush_failed()

    async def close(self) -> None:
        self.flush_failed()
        if self.transport is not None:
            self.transport.close()
            # What the pipe has not taken yet, within a bound.
            for _ in range(200):
                if self.transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.01)


out = Out()


def kind_of(e: BaseException) -> str:
    return type(e).__name__ if isinstance(e, conclib.ConclibError) else f"untyped:{type(e).__name__}"


class Stalls:
    """When the event loop was held up (its 10 ms ticks came late): the process was not
    run, or something in it blocked the loop. Each: (when it was noticed, by how much, the
    process's CPU time meanwhile), as the Rust driver's own watch."""

    TICK = 0.01

    def __init__(self) -> None:
        self.seen: list[tuple[float, float, float]] = []

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            before, cpu = time.monotonic(), time.process_time()
            await asyncio.sleep(self.TICK)
            late = time.monotonic() - before - self.TICK
            if late > 0.05:
                self.seen.append((time.monotonic(), late, time.process_time() - cpu))
                del self.seen[:-1000]

    def since(self, started: float) -> tuple[float, float]:
        """The hold-up noticed since ``started`` in which the process ran least (its length
        less the CPU it used: the time the process was not run, which no call's code
        spent), and the CPU it used in it."""
        return max(((late, cpu) for at, late, cpu in self.seen if at > started),
                   key=lambda s: s[0] - s[1], default=(0.0, 0.0))


# Each failure's message, counted: the commonest are printed at the end (stderr).
why: collections.Counter[str] = collections.Counter()


async def caller(client: conclib.AsyncClient, seed: int, tells: list[int], stop: asyncio.Event,
                 stalls: Stalls) -> None:
    i = seed
    while not stop.is_set():
        i = (i * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        urn = f"acct:{(i >> 33) % URNS}"
        started, began_ms = time.monotonic(), time.time_ns() // 1_000_000
        call, outcome = "tell" if (i >> 20) % 4 == 0 else "ask", "ok"
        try:
            if call == "tell":
                n = tells[0]
                tells[0] += 1
                await client.tell(urn, "Note", {"tell": n})
                out.line(f"PYTOLD {n}")
            else:
                activation, count = await client.ask(urn, "Incr", timeout=TIMEOUT)
                out.line(f"PYASKED {urn} {activation} {count} {time.time_ns() // 1_000_000}")
        except Exception as e:  # every outcome is reported, typed or not
            kind = outcome = kind_of(e)
            why[f"{call} {kind}: {e}"[:160]] += 1
            if kind not in ("Unavailable", "NotReplicated", "Timeout", "HandlerError"):
                print(f"python caller: {kind}: {e}", file=sys.stderr, flush=True)
            out.failed[kind] += 1
            await asyncio.sleep(0)
        took = time.monotonic() - started
        if took > TIMEOUT + MARGIN:
            # As the Rust callers': less the time the process was not run meanwhile.
            stalled, cpu = stalls.since(started)
            counted = int(took - max(stalled - cpu, 0.0) > TIMEOUT + MARGIN)
            out.line(f"PYOVERRUN {took:.3f} {call} {outcome} {stalled:.3f} {cpu:.3f} {began_ms} {counted}")


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
        await out.open()
        out.line("READY")
        stalls = Stalls()
        await asyncio.gather(stalls.watch(stop), out.send_failed(stop),
                             *(caller(client, c, tells, stop, stalls) for c in range(callers)))
    finally:
        await client.close()
        await out.close()
        for text, count in why.most_common(12):
            print(f"python failures: {count} x {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
