"""The Python client against the Rust client through one proxy (the web tier, the FastAPI
example under uvicorn: ``bench_http.py``).

    target/python-venv/bin/python python/bench.py [--secs 3] [--slice 0.25] [--warm-up 0.1] [--seq 2000]
        [--rounds 3] [--baseline DIR] [--rust-pool 1] [--profile FILE] [--verbose]

Asks: starts a private redis-server on a free port and one proxy (the release build of
``conclib-redis``'s ``proxy_bench`` example in its ``--serve`` role, built if missing:
``cargo build --release -p conclib-redis --features msgpack --example proxy_bench``), and
the clients, each a process of its own that stays connected for the run and measures on
command: the Python asyncio client (this checkout's package; with ``--baseline DIR``, a
directory holding another version of the ``conclib`` package, e.g. ``git archive HEAD~1
python/src | tar -x -C /tmp/old`` then ``/tmp/old/python/src``, that one too: ``old_*``)
and the Rust ``ProxyClient`` (``proxy_bench --drive``). Every client asks the same proxy's
counter the same message (``test.Get``, MessagePack, no payload) through one connection for
requests and one for replies (``--rust-pool N`` gives the Rust client N request connections,
its default being 2). Each of ``--rounds`` rounds measures, the clients' order changing from
round to round:

- ``*_ask_p50_us``: the sequential ask p50 (one ask at a time, ``--seq`` asks after 200 to
  warm up); ``py_blocking_p50_us`` the same from the blocking client;
- ``*_asks_per_s_c64``: asks/s with 64 asks in flight from one client. Each client gets
  ``--secs`` seconds of it a round, in windows of about ``--slice`` seconds alternated
  between the clients (A B, B A, ...), each window after a warm-up of ``--warm-up`` seconds
  with the 64 asks already flowing: a burst of the machine's other load falls on every
  client alike.
  ``*_cpu_us_per_ask_c64``: the client process's CPU time per ask in those windows (less
  sensitive to a busy machine than the rate), ``*_c64_proxy`` and ``*_c64_redis`` the
  proxy's and Redis's; ``py_hiredis``: whether ``hiredis`` parsed the replies (installed
  by default; see ``pyproject.toml``).

The figures printed last are the medians over the rounds; ``py_vs_rust_c64`` the median of
each round's ratio of the rates, ``py_vs_rust_c64_min`` the lowest. ``--profile FILE``
records the Python client's 64-in-flight windows with cProfile (``python -m pstats FILE``);
it slows that client, so its figures are then not comparable. ``--verbose`` prints each
window's rate and CPU per ask.

The last line is ``RESULT key=value ...``. Every process started is stopped, also on
failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import selectors
import shutil
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


# -- one client, measured on command (``--drive``) ----------------------------------------------
#
# Each client is a process of its own that stays connected for the whole run and answers
# commands (one line each on its standard input, one answer line on its standard output), so
# that the run can alternate the clients in short slices: ``seq N`` (sequential asks, after
# 200 to warm up), ``blocking N`` (the same from the blocking client; Python only) and
# ``c64 SECS WARM`` (64 asks in flight; a warm-up of WARM s, then a window of SECS s:
# ``asks``, ``secs``, the process's ``cpu_us`` and each watched process's ``cpu_us_NAME``).
# The Rust client's side is ``proxy_bench --drive`` (conclib-redis/examples/support/driven.rs):
# the same commands, warm-up, ``test.Get`` asks and connection count.

IN_FLIGHT = 64


def _cpu_us(pid: int) -> float:
    """A process's CPU time so far (user and system), in µs, from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") * 1e6


async def _sequential(client: Any, n: int) -> str:
    for _ in range(200):  # warm up
        await client.ask(URN, "test.Get")
    samples = []
    for _ in range(max(n, 1)):
        started = time.perf_counter()
        await client.ask(URN, "test.Get")
        samples.append(time.perf_counter() - started)
    return f"OK p50_us={percentile(samples, 0.5) * 1e6:.1f} p99_us={percentile(samples, 0.99) * 1e6:.1f}"


def _blocking(url: str, namespace: str, n: int) -> str:
    import conclib

    with conclib.Client(url, namespace=namespace) as client:
        for _ in range(200):
            client.ask(URN, "test.Get")
        samples = []
        for _ in range(max(n, 1)):
            started = time.perf_counter()
            client.ask(URN, "test.Get")
            samples.append(time.perf_counter() - started)
    return f"OK p50_us={percentile(samples, 0.5) * 1e6:.1f}"


async def _window(client: Any, secs: float, warm: float, watched: list[tuple[str, int]], profiler: Any) -> str:
    done = 0
    stopping = False

    async def worker() -> None:
        nonlocal done
        while not stopping:
            await client.ask(URN, "test.Get")
            done += 1

    tasks = [asyncio.ensure_future(worker()) for _ in range(IN_FLIGHT)]
    await asyncio.sleep(warm)
    if profiler is not None:
        profiler.enable()
    count, started, cpu = done, time.perf_counter(), time.process_time()
    others = [_cpu_us(pid) for _, pid in watched]
    await asyncio.sleep(secs)
    count, elapsed, cpu = done - count, time.perf_counter() - started, time.process_time() - cpu
    others = [_cpu_us(pid) - before for (_, pid), before in zip(watched, others)]
    if profiler is not None:
        profiler.disable()
    stopping = True
    await asyncio.gather(*tasks)
    return f"OK asks={count} secs={elapsed:.6f} cpu_us={cpu * 1e6:.0f}" + "".join(
        f" cpu_us_{name}={us:.0f}" for (name, _), us in zip(watched, others))


async def drive(url: str, namespace: str, watched: list[tuple[str, int]], profile: str | None) -> None:
    """Answers the commands of standard input until it closes (see above)."""
    import conclib
    import conclib._raw

    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
    async with conclib.AsyncClient(url, namespace=namespace) as client:
        # Which package is measured, and whether hiredis parses the hot path's replies.
        print(f"READY package={Path(conclib.__file__).parent} "
              f"hiredis={'yes' if getattr(conclib._raw, 'HIREDIS', False) else 'no'}", flush=True)
        while line := (await commands.readline()).decode():
            match line.split():
                case ["seq", n]:
                    answer = await _sequential(client, int(n))
                case ["blocking", n]:
                    # On a thread: this loop (and the idle async client) keeps running.
                    answer = await loop.run_in_executor(None, _blocking, url, namespace, int(n))
                case ["c64", secs, warm]:
                    answer = await _window(client, float(secs), float(warm), watched, profiler)
                case _:
                    answer = f"ERR unknown command {line!r}"
            print(answer, flush=True)
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)


class Driven:
    """A client process answering ``--drive`` commands; stopped (and killed if it must be)
    by ``close``."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.ready = ""
        self.buffered = b""  # read from its output, not yet a whole line

    def start(self, timeout: float = 60) -> None:
        self.ready = self._line(timeout)
        if not self.ready.startswith("READY"):
            raise SystemExit(f"the {self.name} client did not start: {self.ready!r}")

    def _line(self, timeout: float) -> str:
        """The next line of its output, waiting at most ``timeout`` seconds for it."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        try:
            while b"\n" not in self.buffered:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise SystemExit(f"the {self.name} client did not answer within {timeout:.0f} s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise SystemExit(f"the {self.name} client exited ({self.proc.wait(timeout=10)})")
                self.buffered += chunk
        finally:
            sel.close()
        line, _, self.buffered = self.buffered.partition(b"\n")
        return line.decode().strip()

    def ask(self, command: str, timeout: float = 120) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._line(timeout)
        if not answer.startswith("OK"):
            raise SystemExit(f"the {self.name} client answered {command!r} with {answer!r}")
        return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", answer)}

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _watch_args(watched: list[tuple[str, int]], flag: str) -> list[str]:
    return [a for name, pid in watched for a in (flag, f"{name}={pid}")]


def bench_asks(url: str, redis_pid: int, args: argparse.Namespace, results: dict[str, str]) -> None:
    binary = bench_binary()
    namespace = "pybench"
    proxy = subprocess.Popen(
        [str(binary), "--serve", "--url", url, "--namespace", namespace],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    clients: list[Driven] = []
    try:
        wait_ready(proxy, 60)
        watched = [("proxy", proxy.pid), ("redis", redis_pid)]
        variants: list[tuple[str, Path]] = [("py", ROOT / "python" / "src")]
        if args.baseline:
            variants.append(("old", Path(args.baseline)))
        for name, src in variants:
            clients.append(Driven(name, [
                sys.executable, __file__, "--drive", "--url", url, "--namespace", namespace,
                *_watch_args(watched, "--watch"), *(["--profile", args.profile] if args.profile and name == "py" else []),
            ], env=dict(os.environ, PYTHONPATH=str(src))))
        # The Rust client with the Python client's connections: one for requests (--pool 1),
        # one for replies.
        clients.append(Driven("rust", [
            str(binary), "--drive", "--url", url, "--namespace", namespace, "--pool", str(args.rust_pool),
            *_watch_args(watched, "--watch"),
        ]))
        for c in clients:
            c.start()
        for c, (_, src) in zip(clients, variants):
            package = re.search(r"package=(\S+)", c.ready)
            if package is None or Path(package.group(1)).resolve() != (src / "conclib").resolve():
                raise SystemExit(f"the {c.name} client measures the package in {c.ready}, not in {src}")
        by_name = {c.name: c for c in clients}
        names = [c.name for c in clients]
        seq: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        blocking: dict[str, list[float]] = {n: [] for n in names}
        # Per round and client: the c64 windows' sums (asks, seconds, CPU of each process).
        c64: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        slices = max(1, round(args.secs / args.slice))
        slice_secs = args.secs / slices
        for round_ in range(args.rounds):
            order = names if round_ % 2 == 0 else names[::-1]
            for n in order:
                seq[n].append(by_name[n].ask(f"seq {args.seq}"))
                if n != "rust":
                    blocking[n].append(by_name[n].ask(f"blocking {args.seq}")["p50_us"])
            sums = {n: dict.fromkeys(["asks", "secs", "cpu_us", "cpu_us_proxy", "cpu_us_redis"], 0.0) for n in names}
            for k in range(slices):
                # A B, then B A: what drifts during the round falls on every client alike.
                for n in (order if k % 2 == 0 else order[::-1]):
                    got = by_name[n].ask(f"c64 {slice_secs:.3f} {args.warm_up:.3f}")
                    for key in sums[n]:
                        sums[n][key] += got.get(key, 0.0)
                    if args.verbose:
                        print(f"  window {k + 1} {n}: {got['asks'] / got['secs']:.0f}/s, CPU/ask "
                              f"{got['cpu_us'] / max(got['asks'], 1):.1f} µs (proxy "
                              f"{got['cpu_us_proxy'] / max(got['asks'], 1):.1f}, redis "
                              f"{got['cpu_us_redis'] / max(got['asks'], 1):.1f})", flush=True)
            line = []
            for n in names:
                c64[n].append(sums[n])
                per_s = sums[n]["asks"] / sums[n]["secs"]
                line.append(f"{n} {per_s:.0f}/s ({sums[n]['cpu_us'] / sums[n]['asks']:.1f} µs CPU/ask) "
                            f"p50 {seq[n][-1]['p50_us']:.0f} µs"
                            + (f" (blocking {blocking[n][-1]:.0f} µs)" if n != "rust" else ""))
            print(f"round {round_ + 1}: " + ", ".join(line), flush=True)
        med = statistics.median

        def rate(row: dict[str, float]) -> float:
            return row["asks"] / row["secs"]

        def per_ask(row: dict[str, float], key: str) -> float:
            return row[key] / max(row["asks"], 1)

        for n in names:
            rows = c64[n]
            results[f"{n}_ask_p50_us"] = f"{med([r['p50_us'] for r in seq[n]]):.1f}"
            results[f"{n}_asks_per_s_c64"] = f"{med([rate(r) for r in rows]):.0f}"
            if n != "rust":
                results[f"{n}_ask_p99_us"] = f"{med([r['p99_us'] for r in seq[n]]):.1f}"
                results[f"{n}_blocking_p50_us"] = f"{med(blocking[n]):.1f}"
            cpus = [per_ask(r, "cpu_us") for r in rows]
            results[f"{n}_cpu_us_per_ask_c64"] = f"{med(cpus):.1f}"
            results[f"{n}_cpu_us_per_ask_c64_proxy"] = f"{med([per_ask(r, 'cpu_us_proxy') for r in rows]):.1f}"
            results[f"{n}_cpu_us_per_ask_c64_redis"] = f"{med([per_ask(r, 'cpu_us_redis') for r in rows]):.1f}"
            if n != "rust":
                results[f"{n}_hiredis"] = re.search(r"hiredis=(\w+)", by_name[n].ready).group(1)  # type: ignore[union-attr]
                ratios = [rate(p) / rate(r) for p, r in zip(rows, c64["rust"])]
                results[f"{n}_vs_rust_c64"] = f"{med(ratios):.2f}"
                results[f"{n}_vs_rust_c64_min"] = f"{min(ratios):.2f}"
                print(f"{n}: c64 {results[f'{n}_asks_per_s_c64']} asks/s "
                      f"({', '.join(f'{x:.2f}' for x in ratios)} x Rust by round), "
                      f"CPU/ask {min(cpus):.1f}-{max(cpus):.1f} µs, p50 {results[f'{n}_ask_p50_us']} µs", flush=True)
        print(f"rust: c64 {results['rust_asks_per_s_c64']} asks/s, CPU/ask {results['rust_cpu_us_per_ask_c64']} µs, "
              f"p50 {results['rust_ask_p50_us']} µs", flush=True)
        results["windows"] = f"{slices}x{slice_secs:.2f}s"
        results["rust_pool"] = str(args.rust_pool)
    finally:
        for c in clients:
            c.close()
        if proxy.stdin is not None:
            proxy.stdin.close()
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secs", type=float, default=3.0, help="seconds of 64-in-flight asks per client per round")
    parser.add_argument("--slice", type=float, default=0.25, help="the length of one alternated window")
    parser.add_argument("--warm-up", type=float, default=0.1,
                        help="seconds of 64 asks in flight before each window starts counting")
    parser.add_argument("--seq", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", help="a directory holding another conclib package, measured alternately")
    parser.add_argument("--rust-pool", type=int, default=1,
                        help="the Rust client's request connections (1: as many as the Python client's)")
    parser.add_argument("--verbose", action="store_true", help="print every window's figures")
    parser.add_argument("--profile", help="cProfile the Python client's 64-in-flight windows into this file")
    parser.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="pybench", help=argparse.SUPPRESS)
    parser.add_argument("--watch", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        watched = [(name, int(pid)) for name, pid in (w.split("=", 1) for w in args.watch)]
        asyncio.run(drive(args.url, args.namespace, watched, args.profile))
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
        bench_asks(url, redis.pid, args, results)
    finally:
        redis.kill()
        redis.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    first = ["py_ask_p50_us", "rust_ask_p50_us", "py_asks_per_s_c64", "rust_asks_per_s_c64"]
    keys = [k for k in first if k in results] + [k for k in results if k not in first]
    print("RESULT " + " ".join(f"{k}={results[k]}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
