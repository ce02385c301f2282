"""The web tier: the FastAPI example under uvicorn, an endpoint that asks an actor against one
answered from memory, on both ASGI stacks, alternated in one run.

    target/python-venv/bin/python python/bench_http.py [--rounds 4] [--secs 5]
        [--stacks h11,standard] [--workers 3] [--load auto|wrk|python]

Starts a private redis-server on a free port, the test server (``conclib-pyserver``: the
release build if there is one, else the debug build, built if missing; it says which)
serving ``py:shapes``, and one ``uvicorn python.examples.fastapi_app:app --workers 3`` per
stack on a free port each:

- ``h11``: ``--loop asyncio --http h11``, what ``pip install uvicorn`` runs;
- ``standard``: ``--loop uvloop --http httptools``, what ``pip install 'uvicorn[standard]'``
  (production) runs (``pip install 'python[bench]'`` installs them; the run stops if missing).

Each of ``--rounds`` rounds loads ``GET /double/21`` (asks ``py:shapes`` ``Double``) and
``GET /plain/21`` (answered from memory) on each stack for ``--secs`` seconds, 64 kept-alive
connections from ``wrk -t2 -c64`` (or, without ``wrk``, 2 Python processes of 32), in an
order that turns round by round (a burst of the machine's other load falls on each alike);
every check answer is compared and no failed or non-2xx request is allowed. Besides the
rates, it reads the CPU time (``/proc``) of every uvicorn process, the test server and Redis
over each load window. Per stack, medians over the rounds:

- ``http_<stack>_rps_actor``, ``http_<stack>_rps_plain``, ``http_<stack>_actor_vs_plain``
  (the median of the rounds' ratios; ``_min``/``_max`` their range);
- ``http_<stack>_hop_us``: what the actor hop adds to a request, in µs of the whole
  saturated tier's time: ``1/rate(actor) - 1/rate(plain)``;
- ``http_<stack>_cpu_us_actor``/``_plain``: CPU µs per request of the uvicorn workers, the
  server and Redis together, and ``http_<stack>_hop_cpu_us`` their difference, split as
  ``_hop_cpu_web_us`` (uvicorn: the client's ask in the worker), ``_hop_cpu_server_us``
  (the Rust proxy and actor) and ``_hop_cpu_redis_us``.

The last line is ``RESULT key=value ...``. Every process started is stopped (each uvicorn's
whole process group), also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bench import ROOT, _cpu_us, free_port, server_binary, wait_port, wait_ready

STACKS = {
    "h11": ["--loop", "asyncio", "--http", "h11"],
    "standard": ["--loop", "uvloop", "--http", "httptools"],
}
ROUTES = {"actor": "/double/21", "plain": "/plain/21"}


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wrk_rate(port: int, path: str, secs: float) -> float:
    done = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{max(1, round(secs))}s", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=secs + 60,
    )
    out = done.stdout
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {out} {done.stderr}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or (errors and any(int(n) for n in re.findall(r"\d+", errors.group(1)))):
        raise SystemExit(f"wrk saw failed requests on {path}:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not found:
        raise SystemExit(f"no rate in wrk's output:\n{out}")
    return float(found.group(1))


async def _load_connection(port: int, path: str, stop: float) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    count = 0
    try:
        while time.monotonic() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"GET {path}: {head[:100]!r}")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            count += 1
    finally:
        writer.close()
    return count


def _load_process(port: int, path: str, connections: int, stop: float, out: Any) -> None:
    async def main() -> int:
        counts = await asyncio.gather(*(_load_connection(port, path, stop) for _ in range(connections)))
        return sum(counts)

    out.put(asyncio.run(main()))


def python_load_rate(port: int, path: str, secs: float) -> float:
    """2 processes of 32 kept-alive connections each (when wrk is missing)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    started = time.monotonic()
    stop = started + secs + 0.5  # the processes start meanwhile
    procs = [ctx.Process(target=_load_process, args=(port, path, 32, stop, out)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        total = sum(out.get(timeout=secs + 60) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    return total / (time.monotonic() - started)


def group_pids(pgid: int) -> list[int]:
    """The processes of a process group (uvicorn's master and workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def cpu_us(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += _cpu_us(pid)
        except OSError:
            pass
    return total


@dataclass
class Window:
    rate: float
    secs: float
    cpu: dict[str, float]  # web, server, redis: CPU µs over the window

    def per_request(self, part: str) -> float:
        return self.cpu[part] / (self.rate * self.secs)


class Tier:
    """One uvicorn (one stack) serving the FastAPI example."""

    def __init__(self, stack: str, url: str, namespace: str, workers: int) -> None:
        self.stack = stack
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "python.examples.fastapi_app:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers), "--log-level", "warning", *STACKS[stack]],
            cwd=ROOT, env=dict(os.environ, CONCLIB_URL=url, CONCLIB_NAMESPACE=namespace,
                               PYTHONPATH=str(ROOT / "python" / "src")),
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_up(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_get(self.port, "/health", 1.0)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"uvicorn ({self.stack}) did not answer /health")
            time.sleep(0.05)
        # Check answers (and warm every worker's client up: each connects on its first ask).
        for n in range(60):
            for route in ("double", "plain"):
                status, body = http_get(self.port, f"/{route}/{n}")
                if status != 200 or json.loads(body) != {"n": n, "double": 2 * n}:
                    raise SystemExit(f"{self.stack}: GET /{route}/{n}: {status} {body!r}")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # Its workers too: nothing of the group may be left.
        for _ in range(100):
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.killpg(self.proc.pid, signal.SIGKILL)


def measure(tier: Tier, route: str, secs: float, use_wrk: bool, server_pid: int, redis_pid: int) -> Window:
    web = group_pids(tier.proc.pid)
    parts = {"web": web, "server": [server_pid], "redis": [redis_pid]}
    before = {k: cpu_us(v) for k, v in parts.items()}
    started = time.monotonic()
    rate = wrk_rate(tier.port, ROUTES[route], secs) if use_wrk else python_load_rate(tier.port, ROUTES[route], secs)
    elapsed = time.monotonic() - started
    return Window(rate, elapsed, {k: cpu_us(v) - before[k] for k, v in parts.items()})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--secs", type=float, default=5.0, help="seconds of load per endpoint, stack and round")
    parser.add_argument("--stacks", default="h11,standard", help="comma-separated: h11, standard")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--load", choices=["auto", "wrk", "python"], default="auto",
                        help="the HTTP load generator (auto: wrk if on PATH)")
    args = parser.parse_args()
    stacks = [s for s in args.stacks.split(",") if s]
    unknown = [s for s in stacks if s not in STACKS]
    if unknown:
        raise SystemExit(f"unknown stacks {unknown}: choose from {list(STACKS)}")
    if "standard" in stacks and not all(importlib.util.find_spec(m) for m in ("uvloop", "httptools")):
        raise SystemExit("the standard stack needs uvloop and httptools: pip install 'uvicorn[standard]'")
    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="conclib-bench-http-")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    binary, build = server_binary()
    namespace = "pyhttp"
    server = None
    tiers: list[Tier] = []
    results: dict[str, str] = {}
    try:
        wait_port(port, 10, "redis-server")
        server = subprocess.Popen(
            [str(binary), "--redis", url, "--namespace", namespace],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, RUST_LOG="warn"),
        )
        wait_ready(server, 60)
        tiers = [Tier(stack, url, namespace, args.workers) for stack in stacks]
        for tier in tiers:
            tier.wait_up()
        tool = "wrk -t2 -c64" if use_wrk else "2 Python processes x 32 connections"
        print(f"HTTP load: {tool}; test server: {build} build; uvicorn --workers {args.workers}; "
              f"stacks: {', '.join(stacks)}", flush=True)
        order = [(tier, route) for route in ROUTES for tier in tiers]
        windows: dict[tuple[str, str], list[Window]] = {(t.stack, r): [] for t, r in order}
        for round_ in range(args.rounds):
            turn = order[round_ % len(order):] + order[:round_ % len(order)]
            if round_ % 2:
                turn.reverse()
            for tier, route in turn:
                windows[(tier.stack, route)].append(
                    measure(tier, route, args.secs, use_wrk, server.pid, redis.pid))
            print(f"round {round_ + 1}: " + ", ".join(
                f"{s} {r} {w[-1].rate:.0f} req/s" for (s, r), w in windows.items()), flush=True)
        for tier in tiers:
            s = tier.stack
            actor, plain = windows[(s, "actor")], windows[(s, "plain")]
            ratios = [a.rate / p.rate for a, p in zip(actor, plain)]
            results[f"http_{s}_rps_actor"] = f"{statistics.median(w.rate for w in actor):.0f}"
            results[f"http_{s}_rps_plain"] = f"{statistics.median(w.rate for w in plain):.0f}"
            results[f"http_{s}_actor_vs_plain"] = f"{statistics.median(ratios):.2f}"
            results[f"http_{s}_actor_vs_plain_min"] = f"{min(ratios):.2f}"
            results[f"http_{s}_actor_vs_plain_max"] = f"{max(ratios):.2f}"
            hop = [(1 / a.rate - 1 / p.rate) * 1e6 for a, p in zip(actor, plain)]
            results[f"http_{s}_hop_us"] = f"{statistics.median(hop):.0f}"
            for route, ws in (("actor", actor), ("plain", plain)):
                total = [sum(w.per_request(k) for k in w.cpu) for w in ws]
                results[f"http_{s}_cpu_us_{route}"] = f"{statistics.median(total):.0f}"
            for part in ("web", "server", "redis"):
                diff = [a.per_request(part) - p.per_request(part) for a, p in zip(actor, plain)]
                results[f"http_{s}_hop_cpu_{part}_us"] = f"{statistics.median(diff):.0f}"
            results[f"http_{s}_hop_cpu_us"] = (
                f"{float(results[f'http_{s}_cpu_us_actor']) - float(results[f'http_{s}_cpu_us_plain']):.0f}")
        results["http_load"] = "wrk" if use_wrk else "python"
        results["server_build"] = build
    finally:
        for tier in tiers:
            tier.stop()
        if server is not None:
            # SIGTERM: the server runs until a signal, whatever its standard input does.
            server.terminate()
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        redis.kill()
        redis.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
