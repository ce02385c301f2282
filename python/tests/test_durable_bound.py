"""The durable calls' bound with the replicas frozen: a reminder's registration and
cancellation and a durable publish each run their write and the ``WAIT`` after it under one
deadline, the client's ``command_timeout`` (python/README, "Redis replicas and
durability"). On a real primary with a replica frozen by SIGSTOP, 64 callers making those
calls without pause on one client (more callers than its 32 pooled connections, so that
some wait for a connection while others' ``WAIT`` s run): every call ends with a typed
error (``NotReplicated``, ``Timeout`` or ``Unavailable``), none later than the timeout plus a
small margin (less the time the test's process was not run meanwhile, on a loaded machine:
a ticker's lateness in which the process used no CPU), and none is reported done."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import conclib
from conftest import freeze, run
from test_durability import replica_pid, servers, start_pair  # noqa: F401 (a fixture)
from test_topologies import Servers

# The level's timeout and the client's command timeout: a caller that waited for a pooled
# connection while another's WAIT ran, then ran its own, would take about twice the level's
# timeout, past the command timeout, if the deadline did not bound the write and its WAIT
# together.
WAIT_S = 0.6
COMMAND_TIMEOUT_S = 0.7
# How late past the command timeout a call may return on a loaded machine (the event loop
# of 64 callers held up).
MARGIN_S = 0.25
CALLERS = 64
# How long the callers call without pause.
RUN_S = 3.0


async def not_run(stalls: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """Records, every 10 ms, how much later than asked the ticker woke beyond the CPU the
    process used meanwhile: time the process was not run (the machine's other work), as
    (when, how long)."""
    while not stop.is_set():
        wall, cpu = time.monotonic(), time.process_time()
        await asyncio.sleep(0.01)
        late = time.monotonic() - wall - 0.01 - (time.process_time() - cpu)
        if late > 0.005:
            stalls.append((time.monotonic(), late))


def not_run_during(stalls: list[tuple[float, float]], began: float, ended: float) -> float:
    """How long the process was not run between ``began`` and ``ended``."""
    return sum(late for at, late in stalls if began < at <= ended + 0.01)


async def call_without_pause(client: conclib.AsyncClient, caller: int, until: float) -> list[tuple[str, object, float, float]]:
    """Registers, cancels and publishes in turn until ``until``: each call's kind, its
    outcome (the error, or what it returned), when it began and how long it took."""
    done: list[tuple[str, object, float, float]] = []
    i = 0
    while time.monotonic() < until:
        kind = ("register", "cancel", "publish")[(caller + i) % 3]
        urn = f"py:bound:{caller}"
        started = time.monotonic()
        outcome: object
        try:
            if kind == "register":
                outcome = await client.register_reminder(urn, f"r{i}", after=3600)
            elif kind == "cancel":
                outcome = await client.cancel_reminder(urn, f"r{i - 1}")
            else:
                await client.publish("bound.events", {"caller": caller, "i": i}, durable=True)
                outcome = "published"
        except conclib.ConclibError as e:
            outcome = e
        done.append((kind, outcome, started, time.monotonic() - started))
        i += 1
    return done


def test_durable_calls_return_within_the_command_timeout_while_the_replica_is_frozen(servers: Servers) -> None:
    primary, _ = start_pair(servers)
    url = f"redis://127.0.0.1:{primary}"
    level = conclib.Durability.replicas(1, timeout=WAIT_S)

    stalls: list[tuple[float, float]] = []

    async def main() -> list[tuple[str, object, float, float]]:
        async with conclib.AsyncClient(url, namespace="durable-bound", durability=level,
                                       command_timeout=COMMAND_TIMEOUT_S) as client:
            # Connected, and the replica acknowledges (it may take a while after its sync).
            deadline = time.monotonic() + 20
            while True:
                try:
                    await client.register_reminder("py:bound:warm", "r", after=3600)
                    break
                except conclib.NotReplicated:
                    assert time.monotonic() < deadline, "the replica never acknowledged"
            freeze(replica_pid(servers))
            stop = asyncio.Event()
            ticker = asyncio.create_task(not_run(stalls, stop))
            try:
                until = time.monotonic() + RUN_S
                per_caller = await asyncio.gather(*(call_without_pause(client, c, until) for c in range(CALLERS)))
            finally:
                os.kill(replica_pid(servers), signal.SIGCONT)
                stop.set()
                await ticker
            return [call for calls in per_caller for call in calls]

    calls = run(main())
    assert len(calls) >= CALLERS * 2, len(calls)
    kinds = {kind for kind, _, _, _ in calls}
    assert kinds == {"register", "cancel", "publish"}, kinds
    late = []
    for kind, outcome, began, took in calls:
        held = not_run_during(stalls, began, began + took)
        if took - held > COMMAND_TIMEOUT_S + MARGIN_S:
            late.append((kind, repr(outcome), round(took, 3), round(held, 3)))
    longest = max(took for _, _, _, took in calls)
    print(f"calls={len(calls)} late={len(late)} longest_s={longest:.3f} "
          f"not_run_max_s={max((s for _, s in stalls), default=0):.3f} "
          f"not_replicated={sum(isinstance(o, conclib.NotReplicated) for _, o, _, _ in calls)} "
          f"timeouts={sum(isinstance(o, conclib.Timeout) for _, o, _, _ in calls)}")
    assert not late, f"{len(late)} of {len(calls)} calls returned past the command timeout + margin: {late[:10]}"
    for kind, outcome, _, _ in calls:
        # Nothing is reported done while no replica acknowledges, and each failure is typed.
        assert isinstance(outcome, (conclib.NotReplicated, conclib.Timeout, conclib.Unavailable)), (kind, outcome)
