"""Faults at the concurrency users run (issue #62), for the Python client as for the Rust one
(``conclib-redis/tests/load_faults.rs``): Redis killed (SIGKILL) and restarted empty or with its
append-only file, Redis frozen (SIGSTOP) and thawed, the serving process killed and started
again — each under 1, 64 and 256 asyncio callers that ask again **at once** after any answer
or error (nothing paces them), and under 64 threads of the blocking client.

Each run asserts:
- no deadline overrun: no call returns later than its timeout plus ``MARGIN``;
- typed errors only: ``Unavailable`` or ``Timeout`` while the fault lasts, nothing else;
- recovery: an ask succeeds within ``RECOVERY`` of Redis (or the serving process) being back;
- nothing accepted lost beyond what the docs allow: every tell Redis took is handled (Redis
  with its append-only file, or frozen), and the load carries on after the fault.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

import conclib
from conftest import RedisServer, RustServer, freeze, run

TIMEOUT = 2.0  # each ask's
MARGIN = 0.25  # how much later than its timeout a call may return
RECOVERY = 1.0  # how soon after the fault ends an ask must succeed again
OUTAGE = 1.5  # how long Redis stays dead
LONG_OUTAGE = 3.0  # how long Redis stays frozen, or the serving process dead: > TIMEOUT

FAULTS = ["redis_killed_empty", "redis_killed_with_aof", "redis_frozen", "server_killed"]


@pytest.fixture(autouse=True)
def collector_spared_the_suites_heap() -> Iterator[None]:
    """The objects the test run made before this test are left out of the collector's full
    collections while it runs (``gc.freeze``): a full collection walks every object of the
    process, and with the whole suite's heap one took up to 333 ms (a run of the suite
    with the collections timed), during which no timer of the process runs: once, in a CI
    run, all 256 callers' timeouts of a frozen Redis came 0.25 s late together. What the
    client itself makes during the test is collected as usual; the margin is the client's,
    not the host process's collector's."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass
class Seen:
    """What the callers saw: (started, ended, outcome) per call."""

    calls: list[tuple[float, float, str, float]] = field(default_factory=list)  # + the call's timeout
    accepted: list[int] = field(default_factory=list)  # tells that returned without error
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, started: float, outcome: str, timeout: float = TIMEOUT) -> None:
        with self.lock:
            self.calls.append((started, time.monotonic(), outcome, timeout))

    def ok_since(self, t: float) -> int:
        with self.lock:
            return sum(1 for _, end, o, _ in self.calls if o == "ok" and end >= t)

    def check(self, what: str, faulted: float, back: float, expect_tells: bool, margin: float = MARGIN) -> None:
        calls = list(self.calls)
        outcomes = Counter(o for _, _, o, _ in calls)
        overruns = sorted(end - start for start, end, _, limit in calls if end - start > limit + margin)
        first_ok = min((end for _, end, o, _ in calls if o == "ok" and end >= back), default=None)
        recovery = None if first_ok is None else first_ok - back
        print(
            f"RESULT test=python_load_faults case={what} fault_s={back - faulted:.2f} "
            f"recovery_s={recovery if recovery is None else round(recovery, 3)} "
            f"calls={len(calls)} overruns={len(overruns)} outcomes={dict(outcomes)} "
            f"late_max_s={max((end - start - limit for start, end, _, limit in calls), default=0):.3f}"
        )
        assert not overruns, f"{what}: {len(overruns)} calls took longer than their timeout + {margin} s: {overruns[-5:]}"
        unexpected = set(outcomes) - {"ok", "Unavailable", "Timeout"}
        assert not unexpected, f"{what}: untyped or unexpected outcomes {unexpected}"
        assert recovery is not None, f"{what}: no ask succeeded after the fault ended"
        assert recovery <= RECOVERY, f"{what}: the first answer came {recovery:.2f} s after the fault ended"
        if expect_tells:
            assert self.accepted, f"{what}: no tell was accepted"


def outcome_of(e: BaseException) -> str:
    return type(e).__name__ if isinstance(e, conclib.ConclibError) else f"untyped {type(e).__name__}: {e}"


class Stack:
    """A private redis-server and the Rust serving process under a fixed system id (so that
    a restarted one takes its URNs back at once)."""

    def __init__(self, aof: bool) -> None:
        self.namespace = f"faults-{uuid.uuid4().hex[:8]}"
        self.redis = RedisServer(aof=aof)
        self.server: RustServer | None = None
        try:
            self.server = RustServer(self.redis.url, self.namespace, system="faults")
        except BaseException:
            # A serving process that did not start (a loaded machine) leaves no Redis behind.
            self.redis.close()
            raise

    def fault(self, kind: str) -> tuple[float, float]:
        """Injects the fault (blocking); returns when it began and when it ended."""
        faulted = time.monotonic()
        if kind.startswith("redis_killed"):
            self.redis.kill()
            time.sleep(OUTAGE)
            self.redis.start()
        elif kind == "redis_frozen":
            assert self.redis.proc is not None
            freeze(self.redis.proc.pid)
            time.sleep(LONG_OUTAGE)
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        elif kind == "server_killed":
            assert self.server is not None
            self.server.proc.kill()
            self.server.proc.wait(timeout=10)
            self.server.close()
            self.server = None
            time.sleep(LONG_OUTAGE)
            self.server = RustServer(self.redis.url, self.namespace, system="faults")
        else:
            raise AssertionError(kind)
        return faulted, time.monotonic()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.redis.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("callers", [1, 64, 256])
@pytest.mark.parametrize("kind", FAULTS)
def test_async_client_under_fault(kind: str, callers: int) -> None:
    stack = Stack(aof=kind == "redis_killed_with_aof")
    seen = Seen()
    try:

        async def caller(client: conclib.AsyncClient, stop: asyncio.Event) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    assert await client.ask("py:shapes", "Double", n, timeout=TIMEOUT) == 2 * n
                    outcome = "ok"
                except Exception as e:  # noqa: BLE001 - every outcome is recorded and checked
                    outcome = outcome_of(e)
                seen.add(started, outcome)

        async def teller(client: conclib.AsyncClient, first: int, stop: asyncio.Event) -> None:
            n = first
            while not stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    await client.tell("py:counter", "Record", n)
                    seen.accepted.append(n)
                    outcome = "ok"
                except Exception as e:  # noqa: BLE001
                    outcome = outcome_of(e)
                seen.add(started, outcome, client.command_timeout)  # a tell's timeout
                await asyncio.sleep(0.01)  # tells are paced: they only mark what was accepted

        async def until(what: str, cond: object, limit: float) -> None:
            deadline = time.monotonic() + limit
            while not cond():  # type: ignore[operator]
                assert time.monotonic() < deadline, f"{kind} x {callers}: timed out waiting for {what}"
                await asyncio.sleep(0.02)

        async def main() -> tuple[float, float]:
            async with conclib.AsyncClient(stack.redis.url, namespace=stack.namespace) as client:
                await client.ask("py:counter", "Reset", timeout=10)
                stop = asyncio.Event()
                tasks = [asyncio.create_task(caller(client, stop)) for _ in range(callers)]
                tasks += [asyncio.create_task(teller(client, k * 10_000_000, stop)) for k in range(2)]
                await until("asks to succeed", lambda: seen.ok_since(0) >= 50, 20)
                faulted, back = await asyncio.to_thread(stack.fault, kind)
                await until("an answer after the fault", lambda: seen.ok_since(back) >= 1, 10)
                # The load carries on.
                carried = time.monotonic()
                await until("the load to carry on", lambda: seen.ok_since(carried) >= 50, 10)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT + 5)
                if kind in ("redis_killed_with_aof", "redis_frozen"):
                    # Every accepted tell handled (tells are FIFO per actor: History after them).
                    history = set(await client.ask("py:counter", "History", timeout=10))
                    lost = [n for n in seen.accepted if n not in history]
                    assert not lost, f"{kind} x {callers}: {len(lost)} accepted tells never handled: {lost[:10]}"
                return faulted, back

        faulted, back = run(main(), timeout=100)
        seen.check(f"{kind}_x{callers}", faulted, back, expect_tells=True)
    finally:
        stack.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["redis_killed_empty", "redis_frozen"])
def test_blocking_client_under_fault_at_64_threads(kind: str) -> None:
    stack = Stack(aof=False)
    seen = Seen()
    stop = threading.Event()
    try:
        with conclib.Client(stack.redis.url, namespace=stack.namespace) as client:

            def caller() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    started = time.monotonic()
                    try:
                        assert client.ask("py:shapes", "Double", n, timeout=TIMEOUT) == 2 * n
                        outcome = "ok"
                    except Exception as e:  # noqa: BLE001
                        outcome = outcome_of(e)
                    seen.add(started, outcome)

            threads = [threading.Thread(target=caller, daemon=True) for _ in range(64)]
            for t in threads:
                t.start()
            try:

                def until(what: str, cond: object, limit: float) -> None:
                    deadline = time.monotonic() + limit
                    while not cond():  # type: ignore[operator]
                        assert time.monotonic() < deadline, f"{kind} x 64 threads: timed out waiting for {what}"
                        time.sleep(0.02)

                until("asks to succeed", lambda: seen.ok_since(0) >= 50, 20)
                faulted, back = stack.fault(kind)
                until("an answer after the fault", lambda: seen.ok_since(back) >= 1, 10)
                carried = time.monotonic()
                until("the load to carry on", lambda: seen.ok_since(carried) >= 50, 10)
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=TIMEOUT + 5)
                assert not any(t.is_alive() for t in threads), "a caller thread did not end"
        seen.check(f"blocking_{kind}_x64", faulted, back, expect_tells=False)
    finally:
        stack.close()
