"""The Python client's own CPU per ask, without a network: its real code (``AsyncClient.ask``,
the session, the raw path's packing, batching and reply parsing) on two fake transports that
answer from the event loop as Redis and a proxy would (each ``XADD`` an entry id, each batch
script call 1, each ``BLMPOP`` the reply frames of the asks written so far), 64 asks in flight.
No Redis, proxy or other process competes for the CPU, so the figure is steadier on a busy
machine than ``bench.py``'s ``py_cpu_us_per_ask_c64``, which also counts system calls.

    target/python-venv/bin/python python/bench_cpu.py [--asks 50000] [--rounds 3]
        [--baseline DIR] [--no-hiredis] [--parsers]

Each round measures this checkout's package (and, with ``--baseline DIR``, the package in
``DIR``, e.g. ``git archive HEAD~1 python/src | tar -x -C /tmp/old`` then
``/tmp/old/python/src``) in a fresh process, alternated; ``--no-hiredis`` parses replies in
Python; ``--parsers`` adds this checkout with the Python parser to each round
(``hiredis_vs_python_parser``: the median of the rounds' ratios). The last line is
``RESULT key=value ...`` with the medians in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent / "src"
URN = "bench:counter"
_ID = re.compile(rb"\$2\r\nid\r\n\$\d+\r\n(\d+)\r\n")
_COMMAND = re.compile(rb"\$4\r\n(XADD|EVAL)\r\n")


class _Redis:
    """Answers the writer's commands and parks the reader's ``BLMPOP`` until frames wait."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reply_key: str) -> None:
        from conclib._raw import bulk

        self.loop = loop
        self.head = b"*2\r\n" + bulk(reply_key)
        self.frames: list[bytes] = []
        self.parked = False
        self.scheduled = False
        self.writer: Any = None
        self.reader: Any = None

    def written(self, data: bytes) -> None:
        replies = [b"$15\r\n1700000000000-0\r\n" if c == b"XADD" else b":1\r\n" for c in _COMMAND.findall(data)]
        self.loop.call_soon(self.writer.data_received, b"".join(replies))
        self.frames += [int(i).to_bytes(8, "big") + b"\x00\x05" for i in _ID.findall(data)]  # status OK, 5
        self.kick()

    def read(self, data: bytes) -> None:
        self.parked = True
        self.kick()

    def kick(self) -> None:
        if self.parked and self.frames and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.answer)

    def answer(self) -> None:
        self.scheduled = self.parked = False
        frames, self.frames = self.frames, []
        body = b"".join(b"$%d\r\n%b\r\n" % (len(f), f) for f in frames)
        self.reader.data_received(self.head + b"*%d\r\n" % len(frames) + body)


class _Transport:
    def __init__(self, write: Any) -> None:
        self.write = write

    def abort(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _measure(asks: int, hiredis: bool) -> float:
    import conclib
    from conclib._raw import RawConnection, bulk
    from conclib._session import Route, Session

    loop = asyncio.get_running_loop()
    client = conclib.AsyncClient("redis://127.0.0.1:1", namespace="cpu")
    session = Session(client, loop)
    session.started.cancel()  # no connection: the fakes stand for it
    raw = session.raw
    assert raw is not None
    redis = _Redis(loop, session.reply_key)
    def connection() -> Any:
        try:
            return RawConnection(hiredis)
        except TypeError:  # a version from before the parser choice: its Python parser
            return RawConnection()

    redis.writer, redis.reader = connection(), connection()
    redis.writer.connection_made(_Transport(redis.written))
    redis.reader.connection_made(_Transport(redis.read))
    raw.wconn, raw.rconn = redis.writer, redis.reader
    redis.reader.send(raw.blmpop, (raw.turn,))
    session.ready = True
    client._session = session
    key = client._keys.requests("sys")
    routes = getattr(session, "routes", session)  # a version from before ``Session.routes``: its own
    routes.cache[URN] = Route("sys", key, time.monotonic() + 1e9, bulk(key))
    assert await client.ask(URN, "test.Get") == 5
    done = 0

    async def worker() -> None:
        nonlocal done
        while done < asks:
            await client.ask(URN, "test.Get")
            done += 1

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(64)))
    return (time.process_time() - cpu) / done * 1e6


def _run(src: Path, asks: int, hiredis: bool) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--asks", str(asks), *([] if hiredis else ["--no-hiredis"])],
        capture_output=True, text=True, timeout=600, env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"the measurement failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["package"]).resolve() != (src / "conclib").resolve():
        raise SystemExit(f"measured {result['package']}, not {src / 'conclib'}")
    return float(result["cpu_us"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--asks", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="a directory holding another conclib package, measured alternately")
    parser.add_argument("--no-hiredis", action="store_true", help="parse replies in Python")
    parser.add_argument("--parsers", action="store_true",
                        help="also this checkout with the Python parser in each round (py_python_parser)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import conclib

        cpu = asyncio.run(_measure(args.asks, not args.no_hiredis))
        print(json.dumps({"cpu_us": cpu, "package": str(Path(conclib.__file__).parent)}))
        return 0
    hiredis = not args.no_hiredis
    variants = [("py", SRC, hiredis)] + ([("old", Path(args.baseline), hiredis)] if args.baseline else [])
    if args.parsers:
        variants.append(("py_python_parser", SRC, False))
    figures: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for name, src, with_hiredis in order:
            figures[name].append(_run(src, args.asks, with_hiredis))
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {figures[n][-1]:.2f} µs" for n, _, _ in variants), flush=True)
    result = {f"{n}_cpu_us_per_ask": f"{statistics.median(v):.2f}" for n, v in figures.items()}
    if args.baseline:
        result["py_vs_old"] = f"{statistics.median(figures['py']) / statistics.median(figures['old']):.2f}"
    if args.parsers:
        ratios = [h / p for h, p in zip(figures["py"], figures["py_python_parser"])]
        result["hiredis_vs_python_parser"] = f"{statistics.median(ratios):.2f}"
    result["hiredis"] = "no" if args.no_hiredis else "if installed"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
