"""The Python actor host's proof: a Python member beside a Rust member, in one run.

    target/python-venv/bin/python python/host_proof.py [--secs 3] [--rounds 3] [--idle 100000]
        [--urns 256] [--short]

Starts a private redis-server on a free port, the Rust test server (``conclib-pyserver``,
built by ``python/run_tests.sh``: it serves ``conf:counter`` and the pattern ``conf:pat:{id}``
with the conformance actor) and a Python actor host (this file's ``--host`` role: the same
actor written in Python, at ``py:bench`` and for ``conf:pat:{id}``, beside the Rust member),
then measures:

- ``python_asks_per_s`` and ``rust_asks_per_s``: asks/s with 64 in flight from one Python
  client to the Python host's actor and to the Rust proxy's (``test.Add``), in windows of
  ``--secs`` seconds alternated between the two over ``--rounds`` rounds (medians);
  ``ratio``: their quotient;
- ``seq_p50_ms``: the sequential ask p50 to the Python host's actor (2,000 asks);
- ``idle_activations`` and ``rss_mib``: a second Python host (a pattern of its own) made to
  activate ``--idle`` URNs (one ask each, 64 in flight), then its resident memory;
- ``failover_ms``, ``lost``, ``dups``, ``splits``: 64 callers tell ``test.Record(seq)`` and ask
  ``test.Add(1)`` to ``--urns`` URNs of the shared pattern (activated on both members) without
  pause; the Python member is SIGKILLed; from the kill on, each URN it held is asked on its
  own (one ask at a time, again at once after a failure), and ``failover_ms`` is how long
  until the slowest of them first answered (by the Rust member; ``failover_p50_ms``: the
  median URN). The Python
  actor keeps what it recorded in Redis (before it acknowledges a tell); the Rust actor's
  ``test.History`` lists the rest. ``lost`` counts tells accepted and handled by nobody,
  ``late`` those handled only after the history was first read (a tell still passed on
  between members then: read again for up to 5 s, else lost), ``dups`` those handled by
  both (a tell the killed member handled but had not acknowledged is handled again: at
  least once); ``splits`` the URNs served by two activations at once:
  each caller asks its URN one ask at a time, so the counts one activation answers only
  grow; they fall back (to 1) once where the killed member's activation was replaced, and
  never elsewhere.

``CONCLIB_PROOF_DEBUG=1`` prints, to stderr, each URN's wait, the asks after the kill of the
slowest three, and for a URN that lost a tell where its entries are; with it,
``CONCLIB_PROOF_MONITOR=FILE`` records Redis's ``MONITOR`` of the failover into FILE.
``CONCLIB_HOST_LOOP=uvloop`` runs the Python hosts on uvloop (if installed) instead of
asyncio's own loop. ``--short`` (the test command's form): 1 s windows, 1 round, 2,000 idle activations, 64 URNs.
The last line is ``RESULT key=value ...``. Every process started is stopped, by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


# The host's role (a process of its own).


def host_main(url: str, namespace: str, system: str, pattern_only: bool) -> None:
    import redis.asyncio as aioredis

    from conclib.actor import Actor, handler
    from conclib.host import ActorHost, HostConfig

    store = aioredis.from_url(url)
    if os.environ.get("CONCLIB_HOST_DEBUG"):
        import logging

        logging.basicConfig(level=logging.WARNING); logging.getLogger("conclib.host").setLevel(logging.DEBUG)

    class Ledger(Actor):
        """The conformance actor's counter and log; the log also kept in Redis."""

        def __init__(self, urn: str) -> None:
            super().__init__(urn)
            self.count = 0

        @handler("test.Add")
        async def add(self, n: int) -> int:
            self.count += n
            return self.count

        @handler("test.Get")
        async def get(self) -> int:
            return self.count

        @handler("test.Record")
        async def record(self, v: int) -> None:
            await store.rpush(f"{namespace}:proof:{self.urn}", v)

    async def serve() -> None:
        host = ActorHost(url, HostConfig(namespace=namespace, system=system))
        if not pattern_only:
            host.serve("py:bench", Ledger)
        # Activates where its requests land ("here"): the proof is the failover of what this
        # member holds, and a spread placement could leave it holding none.
        host.serve_pattern("conf:pat:{id}", Ledger, idle_after=3600, placement="here")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: loop.create_task(host.stop()))
        await host.start()
        print("READY", flush=True)
        await host.wait()

    if os.environ.get("CONCLIB_HOST_LOOP") == "uvloop":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(serve())
            return
    asyncio.run(serve())


# The driver.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    """The processes started, stopped by PID at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dir = tempfile.mkdtemp(prefix="conclib-host-proof-")

    def start(self, args: list[str], ready: bytes | None) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.dir, f"{len(self.procs)}.log"), "wb")
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.procs.append(proc)
        if ready is not None:
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            buf = b""
            while ready not in buf:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{args[0]} did not start: {buf!r}, see {log.name}")
                buf += os.read(proc.stdout.fileno(), 4096)
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def rate(client: Any, urn: str, secs: float) -> float:
    n = 0
    end = time.perf_counter() + secs

    async def one() -> None:
        nonlocal n
        while time.perf_counter() < end:
            await client.ask(urn, "test.Add", 1, timeout=5)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(64)))
    return n / (time.perf_counter() - started)


async def measure(url: str, ns: str, args: argparse.Namespace) -> dict[str, Any]:
    import conclib

    out: dict[str, Any] = {}
    async with conclib.AsyncClient(url, namespace=ns) as client:
        await client.ask("py:bench", "test.Add", 1)
        await client.ask("conf:counter", "test.Add", 1)
        await rate(client, "py:bench", 0.3)
        await rate(client, "conf:counter", 0.3)
        py, rs = [], []
        for r in range(args.rounds):
            pair = [("py", "py:bench"), ("rs", "conf:counter")]
            for name, urn in pair if r % 2 == 0 else pair[::-1]:
                (py if name == "py" else rs).append(await rate(client, urn, args.secs))
        out["python_asks_per_s"] = round(statistics.median(py))
        out["rust_asks_per_s"] = round(statistics.median(rs))
        out["ratio"] = round(statistics.median(py) / statistics.median(rs), 2)
        lat = []
        for _ in range(args.seq):
            t = time.perf_counter()
            await client.ask("py:bench", "test.Add", 1)
            lat.append(time.perf_counter() - t)
        out["seq_p50_ms"] = round(statistics.median(lat) * 1000, 3)
    return out


async def idle(url: str, ns: str, n: int, pid: int) -> dict[str, Any]:
    import conclib

    async with conclib.AsyncClient(url, namespace=ns) as client:
        todo = iter(range(n))

        async def one() -> None:
            for i in todo:
                await client.ask(f"conf:pat:{i}", "test.Add", 1, timeout=30)

        await asyncio.gather(*(one() for _ in range(64)))
    await asyncio.sleep(0.5)
    return {"idle_activations": n, "rss_mib": round(rss_mib(pid))}


async def failover(url: str, ns: str, args: argparse.Namespace, victim: subprocess.Popen[bytes], rust_system: str) -> dict[str, Any]:
    import redis.asyncio as aioredis

    import conclib

    store = aioredis.from_url(url)
    run = os.urandom(3).hex()
    urns = [f"conf:pat:{run}{i}" for i in range(args.urns)]
    sent: dict[str, list[int]] = {u: [] for u in urns}
    counts: dict[str, list[int]] = {u: [] for u in urns}
    answered_at: dict[str, float] = {}
    stop = asyncio.Event()
    killed_at = 0.0
    debug = bool(os.environ.get("CONCLIB_PROOF_DEBUG"))
    events: dict[str, list[tuple[float, float, str]]] = {u: [] for u in urns}
    async with conclib.AsyncClient(url, namespace=ns) as client:

        async def caller(mine: list[str]) -> None:
            seq = 0
            while not stop.is_set():
                seq += 1
                for urn in mine:
                    try:
                        await client.tell(urn, "test.Record", seq)
                        sent[urn].append(seq)
                    except conclib.ConclibError:
                        pass
                    asked = time.monotonic()
                    try:
                        counts[urn].append(await client.ask(urn, "test.Add", 1, timeout=2))
                        outcome = "ok"
                    except conclib.ConclibError as e:
                        outcome = type(e).__name__
                    if killed_at and debug:
                        events[urn].append((round(asked - killed_at, 3), round(time.monotonic() - killed_at, 3), outcome))

        monitor = None
        if os.environ.get("CONCLIB_PROOF_MONITOR"):
            monitor = subprocess.Popen(["redis-cli", "-u", url, "monitor"], stdout=open(os.environ["CONCLIB_PROOF_MONITOR"], "wb"))
            await asyncio.sleep(0.2)
            print("start at", time.time(), file=sys.stderr)
        tasks = [asyncio.create_task(caller(urns[i::64])) for i in range(64)]
        await asyncio.sleep(max(1.0, args.secs))
        # A Python member starved of CPU (a loaded machine) may hold none yet: the kill waits
        # for it to hold some (at most 20 s more), or there is no failover to measure.
        held_by = time.monotonic() + 20
        while True:
            held = await store.mget([f"{ns}:urn:{u}" for u in urns])
            on_python = {u for u, h in zip(urns, held) if h is not None and h.decode() != rust_system}
            if on_python or time.monotonic() > held_by:
                break
            await asyncio.sleep(0.1)
        if monitor is not None:
            print("kill at", time.time(), file=sys.stderr)
        killed_at = time.monotonic()
        victim.kill()
        deadline = killed_at + 30

        async def probe(urn: str) -> None:
            # Each killed URN asked on its own from the kill on, one ask at a time, again at
            # once after a failure: its wait is not its caller's turns among other URNs.
            # ``Add(0)``: the count the callers see is unchanged.
            while time.monotonic() < deadline:
                asked = time.monotonic()
                try:
                    await client.ask(urn, "test.Add", 0, timeout=2)
                except conclib.ConclibError as e:
                    if debug:
                        events[urn].append((round(asked - killed_at, 3), round(time.monotonic() - killed_at, 3), "probe " + type(e).__name__))
                    continue
                answered_at[urn] = time.monotonic()
                if debug:
                    events[urn].append((round(asked - killed_at, 3), round(time.monotonic() - killed_at, 3), "probe ok"))
                return

        probes = [asyncio.create_task(probe(u)) for u in on_python]
        # Reaped at once, as a supervisor would: a zombie still counts as a live process
        # (its lease then holds until it lapses).
        await asyncio.to_thread(victim.wait, 10)
        await asyncio.gather(*probes)
        if monitor is not None:
            await asyncio.sleep(0.3)
            monitor.kill()
            monitor.wait()
        waits = sorted(answered_at.get(u, deadline) - killed_at for u in on_python)
        failover_ms = (waits[-1] if waits else 0) * 1000
        if os.environ.get("CONCLIB_PROOF_DEBUG"):
            print("failover waits (s)", [round(w, 2) for w in waits], file=sys.stderr)
            slow = sorted(on_python, key=lambda u: answered_at.get(u, deadline))[-3:]
            for u in slow:
                print("  slow", u, "asks after the kill (sent, done, outcome):", events[u][:8], file=sys.stderr)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        lost = late = dups = splits = 0
        for urn in urns:
            rust: list[int] = await client.ask(urn, "test.History", timeout=10)
            python = [int(v) for v in await store.lrange(f"{ns}:proof:{urn}", 0, -1)]
            missing = set(sent[urn]) - set(python) - set(rust)
            # A tell still on its way (passed on between members, or claimed back from the
            # killed one) when the history was read is handled late, not lost: read again
            # for up to 5 s.
            settle = time.monotonic() + 5
            while missing and time.monotonic() < settle:
                await asyncio.sleep(0.25)
                rust = await client.ask(urn, "test.History", timeout=10)
                python = [int(v) for v in await store.lrange(f"{ns}:proof:{urn}", 0, -1)]
                now_missing = set(sent[urn]) - set(python) - set(rust)
                late += len(missing - now_missing)
                missing = now_missing
            p, r = set(python), set(rust)
            lost += len(missing)
            dups += len(p & r)
            # One activation at a time: the counts its asks answer only grow, but once (to
            # 1) where the killed member's activation was replaced by the Rust member's.
            seen = counts[urn]
            restarts = sum(1 for a, b in zip(seen, seen[1:]) if b <= a)
            if restarts > (1 if urn in on_python else 0):
                splits += 1
            if (missing or restarts > (1 if urn in on_python else 0)) and os.environ.get("CONCLIB_PROOF_DEBUG"):
                print(urn, "lost", sorted(missing), "counts", seen, "python", python, "rust", rust, file=sys.stderr)
                if missing:
                    await where_lost(store, ns, urn, missing)
    await store.aclose()
    return {
        "failover_ms": round(failover_ms),
        "python_urns": len(on_python),
        "failover_p50_ms": round((waits[len(waits) // 2] if waits else 0) * 1000),
        "urns": len(urns),
        "tells": sum(len(s) for s in sent.values()),
        "lost": lost,
        "late": late,
        "dups": dups,
        "splits": splits,
    }


async def where_lost(store: Any, ns: str, urn: str, missing: set[int]) -> None:
    """Debugging: where the lost tells of ``urn`` are (a stream still holding them, pending or
    not), and the URN's key."""
    import conclib.codec as codec

    print("  urn key", await store.get(f"{ns}:urn:{urn}"), file=sys.stderr)
    async for key in store.scan_iter(f"{ns}:sys:*"):
        if await store.type(key) != b"stream":
            continue
        for entry, fields in await store.xrange(key, "-", "+"):
            if fields.get(b"urn", b"").decode() != urn or fields.get(b"msg") != b"test.Record":
                continue
            try:
                v = codec.decode(fields[b"body"])
            except Exception:
                v = None
            if v in missing:
                pending = await store.xpending_range(key, "proxy", entry, entry, 1)
                print("  in", key, entry, v, "pending", pending, {k: f for k, f in fields.items() if k in (b"moved", b"ttl")},
                      file=sys.stderr)
        try:
            print("  ", key, "groups", await store.xinfo_groups(key), file=sys.stderr)
        except Exception:
            pass


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        url, ns, system, only = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "pattern-only"
        host_main(url, ns, system, only)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--secs", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seq", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=100_000)
    parser.add_argument("--urns", type=int, default=256)
    parser.add_argument("--short", action="store_true")
    args = parser.parse_args()
    if args.short:
        args.secs, args.rounds, args.seq, args.idle, args.urns = 1.0, 1, 300, 2000, 64
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    server = os.environ.get("CONCLIB_PYSERVER", str(target / "debug" / "conclib-pyserver"))
    procs = Procs()
    try:
        port = free_port()
        procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", procs.dir], None)
        url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        ns = "proof"
        procs.start([server, "--redis", url, "--namespace", ns, "--system", "rust-member"], b"READY\n")
        me = [sys.executable, __file__, "--host", url]
        victim = procs.start([*me, ns, "py-member", "all"], b"READY\n")
        results = asyncio.run(measure(url, ns, args))
        other = procs.start([*me, "idle", "py-idle", "pattern-only"], b"READY\n")
        results.update(asyncio.run(idle(url, "idle", args.idle, other.pid)))
        results.update(asyncio.run(failover(url, ns, args, victim, "rust-member")))
    finally:
        procs.stop()
        if os.environ.get("CONCLIB_PROOF_DEBUG"):
            print("logs in", procs.dir, file=sys.stderr)
    keys = ["python_asks_per_s", "rust_asks_per_s", "ratio", "seq_p50_ms", "idle_activations", "rss_mib",
            "failover_ms", "failover_p50_ms", "python_urns", "urns", "tells", "lost", "late", "dups", "splits"]
    print("RESULT " + " ".join(f"{k}={results[k]}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
