"""The demo's last scene (``cargo xtask demo`` runs it; ``examples/mixed.rs``): one pattern,
``acct:{id}``, served by two Rust members and a Python member; two FastAPI workers under
uvicorn asking them; 64 HTTP callers incrementing 128 accounts without pause; the Python
member SIGKILLed mid-load.

    python python/examples/demo_scene.py --redis URL --rust-member PROGRAM [--namespace NS]
        [--secs S] [--accounts N]

``PROGRAM member ...`` is a Rust member (the demo binary). Prints what runs, then the
figures, and last ``RESULT requests= errors= failover_ms= failover_p50_ms= python_urns=
lost= dups= splits=``:

- ``failover_ms``: from the SIGKILL until every account the Python member held answered an
  increment again (through the web tier, from a Rust member); ``failover_p50_ms`` the median
  account;
- ``lost``: increments answered 200 that the account's final count does not hold (each
  count lives in the fenced state store: it survives the move);
- ``dups``: increments counted more than once (above the 200s and the failed calls);
- ``splits``: accounts whose answers, to their one sequential caller, did not only grow
  (two activations at once, or a count that went back).

Every process started is stopped by its PID (uvicorn by its process group, which it leads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[2]
CALLERS = 64


class Procs:
    """The processes started; stopped by PID (a process group for uvicorn) at the end."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.dir = tempfile.mkdtemp(prefix="conclib-demo-scene-")

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None, ready: bool = True) -> subprocess.Popen[bytes]:
        log = open(os.path.join(self.dir, f"{name}.log"), "wb")
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE if ready else log, stderr=log,
                                env=env, cwd=ROOT, start_new_session=not ready)
        self.procs.append((name, proc))
        if ready:
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            buf = b""
            while b"READY\n" not in buf:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"{name} did not start: see {log.name}")
                buf += os.read(proc.stdout.fileno(), 4096)
        return proc

    def stop(self) -> None:
        for name, p in self.procs:
            if p.poll() is None:
                if name == "uvicorn":
                    os.killpg(p.pid, signal.SIGTERM)
                elif p.stdin is not None:
                    p.stdin.close()  # the members stop when their standard input ends
        for name, p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                if name == "uvicorn":
                    os.killpg(p.pid, signal.SIGKILL)
                else:
                    p.kill()
                p.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Http:
    """One keep-alive HTTP/1.1 connection (a minimal client: the load generator must cost
    less than the web tier it measures)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, timeout: float = 10) -> tuple[int, Any]:
        try:
            return await asyncio.wait_for(self._request(method, path), timeout)
        except BaseException:
            await self.close()  # a connection cut mid-answer is not used again
            raise

    async def _request(self, method: str, path: str) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: demo\r\nContent-Length: 0\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length")
        body = json.loads(await self.reader.readexactly(length))
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def wait_http(port: int, within: float) -> None:
    deadline = time.monotonic() + within
    http = Http(port)
    while True:
        try:
            if (await http.request("GET", "/health", timeout=1))[0] == 200:
                await http.close()
                return
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the web tier on port {port} did not answer within {within} s")
        await asyncio.sleep(0.1)


async def load(port: int, store: Any, ns: str, accounts: list[str], secs: float, victim: subprocess.Popen[bytes],
               victim_name: str) -> dict[str, Any]:
    answers: dict[str, list[int]] = {a: [] for a in accounts}
    failed: dict[str, int] = dict.fromkeys(accounts, 0)
    errors: Counter[str] = Counter()
    first_after: dict[str, float] = {}
    killed_at = 0.0
    stop = asyncio.Event()

    async def caller(mine: list[str]) -> None:
        http = Http(port)
        while not stop.is_set():
            for a in mine:
                try:
                    status, body = await http.request("POST", f"/accounts/{a}/incr")
                except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                    failed[a] += 1
                    errors[type(e).__name__] += 1
                    continue
                if status == 200:
                    answers[a].append(body["count"])
                    if killed_at and a not in first_after:
                        first_after[a] = time.monotonic()
                else:
                    failed[a] += 1
                    errors[str(body.get("detail", {}).get("error", status))] += 1
        await http.close()

    started = time.monotonic()
    tasks = [asyncio.create_task(caller(accounts[i::CALLERS])) for i in range(CALLERS)]
    # Every account activated (answered once) before the clock starts.
    warm = started + 30
    while time.monotonic() < warm and not all(answers.values()):
        await asyncio.sleep(0.01)
    warmed = time.monotonic()
    await asyncio.sleep(secs / 2)
    held = store.mget([f"{ns}:urn:acct:{a}" for a in accounts])
    holders = {a: h.decode() for a, h in zip(accounts, held) if h is not None}
    on_python = {a for a, h in holders.items() if h == victim_name}
    per_member = Counter(holders.values())
    print("  accounts per member before the kill: " + ", ".join(f"{m} {n}" for m, n in sorted(per_member.items())), flush=True)
    killed_at = time.monotonic()
    victim.kill()
    victim.wait(10)  # reaped at once, as a supervisor would
    deadline = killed_at + 20
    while time.monotonic() < deadline and not on_python <= first_after.keys():
        await asyncio.sleep(0.01)
    waits = sorted((first_after.get(a, deadline) - killed_at) * 1000 for a in on_python)
    await asyncio.sleep(max(0.0, warmed + secs - time.monotonic()))
    stop.set()
    await asyncio.gather(*tasks)
    took = time.monotonic() - started
    finals: dict[str, int] = {}
    http = Http(port)
    for a in accounts:
        finals[a] = (await http.request("GET", f"/accounts/{a}"))[1]["count"]
    await http.close()
    lost = sum(max(0, len(answers[a]) - finals[a]) for a in accounts)
    doubled = sum(max(0, finals[a] - len(answers[a]) - failed[a]) for a in accounts)
    splits = sum(1 for a in accounts if any(y <= x for x, y in zip(answers[a], answers[a][1:])))
    requests = sum(len(v) for v in answers.values()) + sum(failed.values())
    return {
        "requests": requests,
        "rps": round(requests / took),
        "errors": sum(failed.values()),
        "error_kinds": dict(errors),
        "failover_ms": round(waits[-1]) if waits else 0,
        "failover_p50_ms": round(statistics.median(waits)) if waits else 0,
        "python_urns": len(on_python),
        "lost": lost,
        "doubled": doubled,
        "splits": splits,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--rust-member", required=True)
    parser.add_argument("--namespace", default="mixed")
    parser.add_argument("--secs", type=float, default=4.0)
    parser.add_argument("--accounts", type=int, default=128)
    args = parser.parse_args()
    ns = args.namespace
    procs = Procs()
    try:
        for name in ("rust-1", "rust-2"):
            p = procs.start(name, [args.rust_member, "member", "--redis", args.redis, "--namespace", ns, "--system", name])
            print(f"  {name:<13} pid {p.pid:<7} a Rust member of acct:{{id}}", flush=True)
        victim = procs.start("py-1", [sys.executable, str(ROOT / "python" / "examples" / "demo_member.py"),
                                      "--redis", args.redis, "--namespace", ns, "--system", "py-1"])
        print(f"  {'py-1':<13} pid {victim.pid:<7} a Python member of acct:{{id}} (conclib.host.ActorHost)", flush=True)
        port = free_port()
        env = dict(os.environ, CONCLIB_URL=args.redis, CONCLIB_NAMESPACE=ns)
        web = procs.start("uvicorn", [sys.executable, "-m", "uvicorn", "python.examples.demo_app:app", "--workers", "2",
                                      "--port", str(port), "--log-level", "warning"], env=env, ready=False)
        base = f"http://127.0.0.1:{port}"
        asyncio.run(wait_http(port, 30))
        print(f"  {'uvicorn':<13} pid {web.pid:<7} 2 FastAPI workers at {base} (python/examples/demo_app.py)", flush=True)
        accounts = [str(i) for i in range(args.accounts)]
        print(f"\n{CALLERS} HTTP callers send POST /accounts/{{id}}/incr to {len(accounts)} accounts without pause; once "
              f"each answered, {args.secs:.0f} s more, py-1 SIGKILLed halfway", flush=True)
        store = redis.Redis.from_url(args.redis)
        r = asyncio.run(load(port, store, ns, accounts, args.secs, victim, "py-1"))
        store.close()
    finally:
        procs.stop()
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["error_kinds"].items())) or "none"
    print(f"  py-1's {r['python_urns']} accounts answered again by the Rust members {r['failover_ms']} ms after the "
          f"SIGKILL (median account {r['failover_p50_ms']} ms)")
    print(f"  {r['requests']} requests ({r['rps']}/s), {r['errors']} errors ({kinds})")
    ok = r["lost"] == 0 and r["doubled"] == 0 and r["splits"] == 0
    print(f"  every account's count = its increments answered 200 (+ failed ones that went through): "
          f"{'OK' if ok else 'MISMATCH'} (lost {r['lost']}, counted twice {r['doubled']}, splits {r['splits']})")
    r["dups"] = r["doubled"]
    keys = ["requests", "errors", "failover_ms", "failover_p50_ms", "python_urns", "lost", "dups", "splits"]
    print("RESULT " + " ".join(f"{k}={r[k]}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
