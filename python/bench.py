"""The Python client against the Rust client, through one proxy.

    target/python-venv/bin/python python/bench.py [--secs 2] [--seq 2000]

Starts a private redis-server on a free port and one proxy (the release build of
``conclib-redis``'s ``proxy_bench`` example in its ``--serve`` role, built if missing:
``cargo build --release -p conclib-redis --features msgpack --example proxy_bench``), then
measures, asking its counter (``test.Get``, MessagePack):

- ``py_ask_p50_us``: the sequential ask p50 of the asyncio client (one ask at a time);
- ``py_blocking_p50_us``: the same from the blocking client;
- ``py_asks_per_s_c64``: asks/s with 64 asks in flight from one asyncio client;

and runs ``proxy_bench --url`` on the same Redis for the Rust client's
``rust_ask_p50_us`` and ``rust_asks_per_s_c64`` (its own proxy process, same code and build).
The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import conclib

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
URN = "bench:counter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_binary() -> Path:
    path = TARGET / "release" / "examples" / "proxy_bench"
    if not path.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-q", "-p", "conclib-redis", "--features", "msgpack",
             "--example", "proxy_bench"],
            cwd=ROOT, check=True,
        )
    return path


def wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> None:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    while b"READY" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            raise SystemExit("the proxy did not start")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise SystemExit("the proxy exited")
        buf += chunk
    sel.close()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def async_bench(url: str, namespace: str, seq: int, secs: float) -> tuple[float, float, float]:
    async with conclib.AsyncClient(url, namespace=namespace) as client:
        for _ in range(200):  # warm up
            await client.ask(URN, "test.Get")
        samples = []
        for _ in range(seq):
            started = time.perf_counter()
            await client.ask(URN, "test.Get")
            samples.append(time.perf_counter() - started)
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)

        done = 0
        stop = time.monotonic() + secs

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                await client.ask(URN, "test.Get")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(64)))
        rate = done / (time.monotonic() - started)
    return p50, p99, rate


def blocking_bench(url: str, namespace: str, seq: int) -> float:
    with conclib.Client(url, namespace=namespace) as client:
        for _ in range(200):
            client.ask(URN, "test.Get")
        samples = []
        for _ in range(seq):
            started = time.perf_counter()
            client.ask(URN, "test.Get")
            samples.append(time.perf_counter() - started)
    return percentile(samples, 0.5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secs", type=float, default=2.0)
    parser.add_argument("--seq", type=int, default=2000)
    args = parser.parse_args()
    binary = bench_binary()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="conclib-bench-")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    proxy = None
    try:
        url = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.02)
        proxy = subprocess.Popen(
            [str(binary), "--serve", "--url", url, "--namespace", "pybench"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        wait_ready(proxy, 30)
        p50, p99, rate = asyncio.run(async_bench(url, "pybench", args.seq, args.secs))
        print(f"python asyncio: sequential ask p50 {p50 * 1e6:.1f} µs, p99 {p99 * 1e6:.1f} µs; "
              f"64 concurrent: {rate:.0f} asks/s")
        blocking_p50 = blocking_bench(url, "pybench", args.seq)
        print(f"python blocking: sequential ask p50 {blocking_p50 * 1e6:.1f} µs")
        rust = subprocess.run(
            [str(binary), "--url", url, "--namespace", "rbench", "--secs", str(args.secs), "--seq", str(args.seq)],
            capture_output=True, text=True, timeout=300,
        )
        line = next((l for l in rust.stdout.splitlines() if l.startswith("RESULT")), "")
        values = dict(re.findall(r"(\w+)=([\d.]+)", line))
        print(f"rust: sequential ask p50 {values.get('ask_p50_us', '?')} µs; "
              f"64 concurrent: {values.get('asks_per_s_c64', '?')} asks/s")
        print(
            f"RESULT py_ask_p50_us={p50 * 1e6:.1f} rust_ask_p50_us={values.get('ask_p50_us', 'nan')} "
            f"py_asks_per_s_c64={rate:.0f} rust_asks_per_s_c64={values.get('asks_per_s_c64', 'nan')} "
            f"py_ask_p99_us={p99 * 1e6:.1f} py_blocking_p50_us={blocking_p50 * 1e6:.1f}"
        )
    finally:
        if proxy is not None:
            if proxy.stdin is not None:
                proxy.stdin.close()
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
        redis.kill()
        redis.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
