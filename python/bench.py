"""The Python client against the Rust client through one proxy, and HTTP through the FastAPI
example.

    target/python-venv/bin/python python/bench.py [--secs 2] [--seq 2000] [--rounds 2]
        [--baseline DIR] [--http-secs 5] [--http-load auto|wrk|python] [--no-http] [--no-asks]

Asks: starts a private redis-server on a free port and one proxy (the release build of
``conclib-redis``'s ``proxy_bench`` example in its ``--serve`` role, built if missing:
``cargo build --release -p conclib-redis --features msgpack --example proxy_bench``), then,
``--rounds`` times, measures asking its counter (``test.Get``, MessagePack) from a fresh
Python process:

- ``py_ask_p50_us``: the sequential ask p50 of the asyncio client (one ask at a time);
- ``py_blocking_p50_us``: the same from the blocking client;
- ``py_asks_per_s_c64``: asks/s with 64 asks in flight from one asyncio client, and
  ``py_cpu_us_per_ask_c64`` the Python process's CPU time per ask meanwhile (less sensitive
  to a busy machine than the rate); ``py_hiredis``: whether ``hiredis`` parsed the replies
  (installed: the ``fast`` extra);

and runs ``proxy_bench --url`` on the same Redis for the Rust client's ``rust_ask_p50_us``
and ``rust_asks_per_s_c64`` (its own proxy process, same code and build). With
``--baseline DIR`` (a directory holding another version of the ``conclib`` package, e.g.
``git archive HEAD~1 python/src | tar -x -C /tmp/old`` then ``/tmp/old/python/src``) that
version is measured in each round too, alternated with this one (``old_*`` figures). The
order of the clients changes from round to round; the figures printed last are the medians
over the rounds, and ``py_vs_rust_c64`` the median of each round's ratio.

HTTP (unless ``--no-http``): the test server (``conclib-pyserver``, release build if there
is one, else the debug build, built if missing) serves ``py:shapes``, and ``uvicorn
python.examples.fastapi_app:app --workers 3`` serves the FastAPI example on a free port.
``http_rps_actor`` is the rate of ``GET /double/21`` (each request asks ``py:shapes``),
``http_rps_plain`` of ``GET /plain/21`` (answered from memory), each measured ``--rounds``
times alternately for ``--http-secs`` with 64 kept-alive connections, median. The load
comes from ``wrk`` (2 threads) when it is on ``PATH`` (it says so), else from 2 Python
processes of 32 connections each (``--http-load python`` chooses them). Every answer of a check request is compared, and the
load must see no error and no non-2xx answer.

The last line is ``RESULT key=value ...``. Every process started is stopped (uvicorn's
whole process group), also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import selectors
import shutil
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


def server_binary() -> tuple[Path, str]:
    """The test server: the release build if there is one, else the debug build."""
    release = TARGET / "release" / "conclib-pyserver"
    if release.exists():
        return release, "release"
    debug = TARGET / "debug" / "conclib-pyserver"
    if not debug.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "conclib-pyserver"], cwd=ROOT, check=True)
    return debug, "debug"


def wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> None:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while b"READY" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise SystemExit("the serving process did not print READY")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise SystemExit("the serving process exited")
            buf += chunk
    finally:
        sel.close()


def wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.02)


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# -- one client's figures (run in a fresh process: ``--client-only``) ---------------------------


async def async_bench(url: str, namespace: str, seq: int, secs: float) -> tuple[float, float, float, float]:
    import conclib

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
        cpu = time.process_time()
        await asyncio.gather(*(worker() for _ in range(64)))
        rate = done / (time.monotonic() - started)
        cpu_per_ask = (time.process_time() - cpu) / max(done, 1)
    return p50, p99, rate, cpu_per_ask


def blocking_bench(url: str, namespace: str, seq: int) -> float:
    import conclib

    with conclib.Client(url, namespace=namespace) as client:
        for _ in range(200):
            client.ask(URN, "test.Get")
        samples = []
        for _ in range(seq):
            started = time.perf_counter()
            client.ask(URN, "test.Get")
            samples.append(time.perf_counter() - started)
    return percentile(samples, 0.5)


def client_only(url: str, namespace: str, seq: int, secs: float) -> None:
    import conclib
    import conclib._raw

    p50, p99, rate, cpu = asyncio.run(async_bench(url, namespace, seq, secs))
    blocking_p50 = blocking_bench(url, namespace, seq)
    print(json.dumps({"p50": p50, "p99": p99, "rate": rate, "cpu": cpu, "blocking_p50": blocking_p50,
                      "package": str(Path(conclib.__file__).parent),
                      # Whether hiredis parsed the hot path's replies (older packages: never).
                      "hiredis": bool(getattr(conclib._raw, "HIREDIS", False))}))


def measure_python(url: str, args: argparse.Namespace, src: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run(
        [sys.executable, __file__, "--client-only", "--url", url, "--namespace", "pybench",
         "--secs", str(args.secs), "--seq", str(args.seq)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"the Python client bench failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    expected = (src / "conclib").resolve()
    if Path(result["package"]).resolve() != expected:
        raise SystemExit(f"measured the package in {result['package']}, not {expected}")
    return result


def measure_rust(binary: Path, url: str, args: argparse.Namespace) -> dict[str, float]:
    rust = subprocess.run(
        [str(binary), "--url", url, "--namespace", "rbench", "--secs", str(args.secs), "--seq", str(args.seq)],
        capture_output=True, text=True, timeout=600,
    )
    line = next((l for l in rust.stdout.splitlines() if l.startswith("RESULT")), "")
    values = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    if "asks_per_s_c64" not in values or "ask_p50_us" not in values:
        raise SystemExit(f"proxy_bench gave no result: {rust.stdout[-2000:]} {rust.stderr[-2000:]}")
    return values


def bench_asks(url: str, args: argparse.Namespace, results: dict[str, str]) -> None:
    binary = bench_binary()
    proxy = subprocess.Popen(
        [str(binary), "--serve", "--url", url, "--namespace", "pybench"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    try:
        wait_ready(proxy, 60)
        variants: list[tuple[str, Path]] = [("py", ROOT / "python" / "src")]
        if args.baseline:
            variants.append(("old", Path(args.baseline)))
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
        rust_rows: list[dict[str, float]] = []
        for round_ in range(args.rounds):
            order: list[tuple[str, Path | None]] = [*variants, ("rust", None)]
            if round_ % 2:
                order.reverse()
            line = []
            for name, src in order:
                if src is None:
                    r = measure_rust(binary, url, args)
                    rust_rows.append(r)
                    line.append(f"rust {r['asks_per_s_c64']:.0f}/s p50 {r['ask_p50_us']:.0f} µs")
                else:
                    p = measure_python(url, args, src)
                    rows[name].append(p)
                    line.append(f"{name} {p['rate']:.0f}/s ({p['cpu'] * 1e6:.1f} µs CPU/ask) "
                                f"p50 {p['p50'] * 1e6:.0f} µs (blocking {p['blocking_p50'] * 1e6:.0f} µs)")
            print(f"round {round_ + 1}: " + ", ".join(line), flush=True)
        med = statistics.median
        rust_rate = med([r["asks_per_s_c64"] for r in rust_rows])
        results["rust_ask_p50_us"] = f"{med([r['ask_p50_us'] for r in rust_rows]):.1f}"
        results["rust_asks_per_s_c64"] = f"{rust_rate:.0f}"
        for name, _ in variants:
            got = rows[name]
            results[f"{name}_ask_p50_us"] = f"{med([p['p50'] for p in got]) * 1e6:.1f}"
            results[f"{name}_asks_per_s_c64"] = f"{med([p['rate'] for p in got]):.0f}"
            results[f"{name}_ask_p99_us"] = f"{med([p['p99'] for p in got]) * 1e6:.1f}"
            results[f"{name}_blocking_p50_us"] = f"{med([p['blocking_p50'] for p in got]) * 1e6:.1f}"
            results[f"{name}_cpu_us_per_ask_c64"] = f"{med([p['cpu'] for p in got]) * 1e6:.1f}"
            results[f"{name}_hiredis"] = "yes" if got[0]["hiredis"] else "no"
            ratios = [p["rate"] / r["asks_per_s_c64"] for p, r in zip(got, rust_rows)]
            results[f"{name}_vs_rust_c64"] = f"{med(ratios):.2f}"
            print(f"{name}: c64 {results[f'{name}_asks_per_s_c64']} asks/s "
                  f"({', '.join(f'{x:.2f}' for x in ratios)} x Rust by round), "
                  f"p50 {results[f'{name}_ask_p50_us']} µs", flush=True)
        print(f"rust: c64 {results['rust_asks_per_s_c64']} asks/s, p50 {results['rust_ask_p50_us']} µs", flush=True)
    finally:
        if proxy.stdin is not None:
            proxy.stdin.close()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


# -- HTTP ----------------------------------------------------------------------------------------


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


def bench_http(url: str, args: argparse.Namespace, results: dict[str, str]) -> None:
    binary, build = server_binary()
    namespace = "pyhttp"
    server = subprocess.Popen(
        [str(binary), "--redis", url, "--namespace", namespace],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, RUST_LOG="warn"),
    )
    uvicorn = None
    try:
        wait_ready(server, 60)
        port = free_port()
        uvicorn = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "python.examples.fastapi_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "3", "--log-level", "warning"],
            cwd=ROOT, env=dict(os.environ, CONCLIB_URL=url, CONCLIB_NAMESPACE=namespace,
                               PYTHONPATH=str(ROOT / "python" / "src")),
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_get(port, "/health", 1.0)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or uvicorn.poll() is not None:
                raise SystemExit("uvicorn did not answer /health")
            time.sleep(0.05)
        # Check answers (and warm every worker's client up: each connects on its first ask).
        for n in range(60):
            for route in ("double", "plain"):
                status, body = http_get(port, f"/{route}/{n}")
                if status != 200 or json.loads(body) != {"n": n, "double": 2 * n}:
                    raise SystemExit(f"GET /{route}/{n}: {status} {body!r}")
        use_wrk = args.http_load == "wrk" or (args.http_load == "auto" and shutil.which("wrk") is not None)
        tool = "wrk -t2 -c64" if use_wrk else "2 Python processes x 32 connections"
        print(f"HTTP load: {tool}; test server: {build} build; uvicorn --workers 3", flush=True)
        rate = (lambda path: wrk_rate(port, path, args.http_secs)) if use_wrk else (
            lambda path: python_load_rate(port, path, args.http_secs))
        rates: dict[str, list[float]] = {"actor": [], "plain": []}
        for round_ in range(args.rounds):
            order = ["actor", "plain"] if round_ % 2 == 0 else ["plain", "actor"]
            for which in order:
                rates[which].append(rate("/double/21" if which == "actor" else "/plain/21"))
            print(f"round {round_ + 1}: actor {rates['actor'][-1]:.0f} req/s, plain {rates['plain'][-1]:.0f} req/s",
                  flush=True)
        actor, plain = statistics.median(rates["actor"]), statistics.median(rates["plain"])
        results["http_rps_actor"] = f"{actor:.0f}"
        results["http_rps_plain"] = f"{plain:.0f}"
        results["http_actor_vs_plain"] = f"{actor / plain:.2f}"
        results["http_load"] = "wrk" if use_wrk else "python"
    finally:
        if uvicorn is not None:
            try:
                os.killpg(uvicorn.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                uvicorn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(uvicorn.pid, signal.SIGKILL)
                uvicorn.wait()
            # Its workers too: nothing of the group may be left.
            for _ in range(100):
                try:
                    os.killpg(uvicorn.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                os.killpg(uvicorn.pid, signal.SIGKILL)
        # SIGTERM: the server runs until a signal, whatever its standard input does.
        server.terminate()
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secs", type=float, default=2.0)
    parser.add_argument("--seq", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", help="a directory holding another conclib package, measured alternately")
    parser.add_argument("--http-secs", type=float, default=5.0)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--http-load", choices=["auto", "wrk", "python"], default="auto",
                        help="the HTTP load generator (auto: wrk if on PATH)")
    parser.add_argument("--no-asks", action="store_true")
    parser.add_argument("--client-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="pybench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_only:
        client_only(args.url, args.namespace, args.seq, args.secs)
        return 0
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="conclib-bench-")
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results: dict[str, str] = {}
    try:
        url = f"redis://127.0.0.1:{port}"
        wait_port(port, 10, "redis-server")
        if not args.no_asks:
            bench_asks(url, args, results)
        if not args.no_http:
            bench_http(url, args, results)
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    first = ["py_ask_p50_us", "rust_ask_p50_us", "py_asks_per_s_c64", "rust_asks_per_s_c64", "http_rps_actor",
             "http_rps_plain"]
    keys = [k for k in first if k in results] + [k for k in results if k not in first]
    print("RESULT " + " ".join(f"{k}={results[k]}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
