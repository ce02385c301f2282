"""Two builds of one pattern side by side (a rolling upgrade's middle), asked from Python.

``py:ver:{id}`` is served as build 1, with ``Deposit`` and ``Balance``, or as build 2, which
adds a message, ``Audit``, and an optional field to ``Deposit`` (its version 2): by the Rust
test server (``conclib-pyserver --build N``, ``python/testserver/src/versioned.rs``) or by a
Python actor host (``tests/mirror_host.py --ledger-build N``), each pair of the two kinds
(``_host_versions.py``). With build 1 alone, 64 concurrent callers asking ``Audit`` are each
refused ``UnsupportedVersion`` at once (none is a timeout, none returns past its deadline),
and a ``Deposit`` with build 2's new field is decoded by build 1 (MessagePack: fields by
name, the new one skipped). Once build 2 serves, the same callers' ``Audit`` asks are
answered by it, the URNs moved there from build 1 (a Python member's total, kept in memory,
carried to a Python successor). Each member lists its messages alike, and a stopping one
takes its line out.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import conclib
import pytest

from conftest import PythonHost, RedisServer, RustServer, run

CALLERS = 64
ROUNDS = 4
URNS = 16
DEADLINE = 5.0
MARGIN = 1.0


async def from_64_callers(client: conclib.AsyncClient, message: str, payload: Any) -> list[Any]:
    """``CALLERS`` callers asking ``ROUNDS`` times each without pause over ``py:ver:0..15``:
    every outcome (a result or the error), each checked to come within its deadline."""

    async def caller(i: int) -> list[Any]:
        outcomes: list[Any] = []
        for r in range(ROUNDS):
            started = time.monotonic()
            try:
                outcomes.append(await client.ask(f"py:ver:{(i + r) % URNS}", message, payload, timeout=DEADLINE))
            except conclib.ConclibError as e:
                outcomes.append(e)
            took = time.monotonic() - started
            assert took <= DEADLINE + MARGIN, f"a call took {took:.2f} s"
        return outcomes

    done = await asyncio.gather(*(caller(i) for i in range(CALLERS)))
    return [o for outcomes in done for o in outcomes]


def serve(kind: str, url: str, ns: str, build: int) -> RustServer | PythonHost:
    """Build ``build`` of ``py:ver:{id}``, as system ``v{build}``, in a process of ``kind``."""
    if kind == "rust":
        return RustServer(url, ns, system=f"v{build}", extra=("--build", str(build)))
    return PythonHost(url, ns, "--system", f"v{build}", "--ledger-build", str(build))


LINES = {"v1": {"Deposit": 1, "Balance": 1}, "v2": {"Deposit": 2, "Balance": 1, "Audit": 1}}


@pytest.mark.parametrize("old,new", [("rust", "rust"), ("python", "python"), ("python", "rust"), ("rust", "python")])
def test_a_message_only_the_new_build_has_is_answered_by_it_or_refused(
    redis_server: RedisServer, raw_redis: Any, fresh_ns: str, old: str, new: str
) -> None:
    from conclib._host_versions import parse_line

    url = redis_server.url
    v1: RustServer | PythonHost | None = serve(old, url, fresh_ns, 1)
    v2: RustServer | PythonHost | None = None
    directory = f"{fresh_ns}:messages:py:ver:"
    try:

        async def alone() -> list[Any]:
            async with conclib.AsyncClient(url, namespace=fresh_ns) as client:
                for u in range(URNS):
                    assert (await client.ask(f"py:ver:{u}", "Balance", None, timeout=DEADLINE))[1] == "v1"
                refused = await from_64_callers(client, "Audit", None)
                # Build 2's field, to build 1: skipped, the rest decoded.
                total = await client.ask("py:ver:0", "Deposit", {"n": 3, "note": "new"}, timeout=DEADLINE)
                assert total == 3
                return refused

        refused = run(alone())
        assert len(refused) == CALLERS * ROUNDS
        for r in refused:
            assert isinstance(r, conclib.UnsupportedVersion), repr(r)
            assert r.message == "Audit" and r.urn.startswith("py:ver:")
            assert r.label == "unsupported_version"

        v2 = serve(new, url, fresh_ns, 2)
        # Rust and Python members list their messages alike.
        lines = {k.decode(): parse_line(v.decode()) for k, v in raw_redis.hgetall(directory).items()}
        assert lines == LINES, lines

        async def together() -> tuple[list[Any], int]:
            async with conclib.AsyncClient(url, namespace=fresh_ns) as client:
                audited = await from_64_callers(client, "Audit", None)
                total = 0
                for u in range(URNS):
                    total_u, by = await client.ask(f"py:ver:{u}", "Balance", None, timeout=DEADLINE)
                    assert by == "v2"
                    total += total_u
                return audited, total

        audited, total = run(together())
        assert audited == ["v2"] * (CALLERS * ROUNDS)
        # Kept in memory only: carried from a Python member to a Python one (a Rust ledger
        # neither dehydrates nor rehydrates).
        assert total == (3 if old == new == "python" else 0)
        assert v1 is not None
        v1.close()
        v1 = None
        assert raw_redis.hget(directory, "v1") is None, "a stopped member's line is taken out"
    finally:
        for server in (v2, v1):
            if server is not None:
                server.close()


def test_a_stopping_member_hands_to_the_newest_build_as_a_rust_drain_does() -> None:
    """The builds a stopping Python member orders by the pattern's message directory, as
    ``versions.rs``'s tests order them: a build is newer when it has every message of the
    other at its version or later and more; a stop hands to the newest among the others, and
    to every one of one build or of none listed."""
    from conclib._host_versions import newer, newest

    v1, v2 = "Add@1 Total@1", "Add@2 Total@1 Audit@1"
    assert newer(v2, v1) and not newer(v1, v2)
    assert newer("Add@2 Total@1", v1)
    for a, b in ((v1, "Total@1 Add@1"), ("Add@2 Audit@1", v1), (v2, ""), (v2, "Add@x"), ("", v1),
                 (v2, "Add@-1"), (v2, "Add@4294967296"), (v2, "Add@²"), (v2, "Add@" + "9" * 5000)):
        assert not newer(a, b), (a, b)
    lines = {"old-a": "Add@1", "old-b": "Add@1", "new-a": "Add@2 Audit@1", "new-b": "Add@2 Audit@1"}
    assert newest(["old-b", "new-a", "new-b"], lines) == ["new-a", "new-b"]
    assert newest(["old-a", "old-b"], lines) == ["old-a", "old-b"]
    assert newest(["new-b", "unlisted"], lines) == ["new-b", "unlisted"]
    assert newest(["py-one", "py-two"], {}) == ["py-one", "py-two"]


def test_a_members_line_lists_each_message_at_its_version_and_reroutes_by_name() -> None:
    """A Python member's line, as a Rust member's (``versions.rs``, ``line``); the member a
    message it does not expose goes to: one whose line has it, the fewest activations first
    (a request a Python member read is MessagePack: any version of it decodes); and the
    versions ``@handler`` takes."""
    from conclib.actor import Actor, handler, handlers_of
    from conclib._host_versions import line, that_decodes

    class Ledger(Actor):
        @handler("Deposit", version=2)
        async def deposit(self, n: int) -> int:
            return n

        @handler("Audit")
        async def audit(self) -> str:
            return ""

        @handler("with space")
        async def odd(self) -> None:
            return None

    assert line(handlers_of(Ledger)) == "Deposit@2 Audit@1"
    lines = {"a": "Deposit@1 Balance@1", "b": "Deposit@2 Audit@1", "c": "Deposit@2 Audit@3", "d": "Audit"}
    assert that_decodes({"a": 0, "b": 5, "c": 2, "d": 0}, lines, "Audit") == "c"
    assert that_decodes({"a": 0, "b": 2, "c": 2}, lines, "Audit") == "b"
    assert that_decodes({"a": 0, "b": 0}, lines, "Deposit") == "a"
    assert that_decodes({"a": 0, "unlisted": 0}, lines, "Audit") is None
    assert that_decodes({}, lines, "Audit") is None
    for bad in (0, -1, 1 << 32, True, 1.0, "2"):
        with pytest.raises(ValueError):
            handler("Deposit", version=bad)  # type: ignore[arg-type]
    assert handler("Deposit", version=(1 << 32) - 1) is not None


def test_python_members_replaced_by_a_new_build_under_64_callers(redis_server: RedisServer, fresh_ns: str) -> None:
    """A rolling upgrade of Python members: two of build 1 serve ``py:ver:{id}`` to 64
    callers depositing without pause; two of build 2 join, the callers ask build 2's
    ``Audit`` too, and the build 1 members are stopped (SIGTERM) one after the other. No
    ask fails or returns past its deadline; every ``Audit`` is answered by build 2; each
    URN's total, kept in memory only, equals the deposits its callers saw answered: carried
    by every move (a stop's hand-over, an ``Audit``'s reroute)."""
    url = redis_server.url
    members: dict[str, PythonHost] = {}

    def start(system: str, build: int) -> None:
        members[system] = PythonHost(url, fresh_ns, "--system", system, "--ledger-build", str(build))

    try:
        start("a1", 1)
        start("a2", 1)

        async def roll() -> tuple[list[int], list[str], list[str]]:
            deposited = [0] * URNS
            errors: list[str] = []
            audits: list[str] = []
            audit = asyncio.Event()
            stop = asyncio.Event()
            async with conclib.AsyncClient(url, namespace=fresh_ns) as client:

                async def caller(i: int) -> None:
                    u = i % URNS
                    n = 0
                    while not stop.is_set():
                        n += 1
                        asks_audit = audit.is_set() and n % 2 == 0
                        started = time.monotonic()
                        try:
                            if asks_audit:
                                audits.append(await client.ask(f"py:ver:{u}", "Audit", None, timeout=DEADLINE))
                            else:
                                await client.ask(f"py:ver:{u}", "Deposit", {"n": 1}, timeout=DEADLINE)
                                deposited[u] += 1
                        except conclib.ConclibError as e:
                            errors.append(f"py:ver:{u}: {type(e).__name__}: {e}")
                        took = time.monotonic() - started
                        assert took <= DEADLINE + MARGIN, f"a call took {took:.2f} s"

                loop = asyncio.get_running_loop()
                tasks = [asyncio.create_task(caller(i)) for i in range(CALLERS)]
                await asyncio.sleep(0.5)
                await loop.run_in_executor(None, start, "b1", 2)
                audit.set()
                await asyncio.sleep(0.5)
                await loop.run_in_executor(None, start, "b2", 2)
                for old in ("a1", "a2"):
                    code = await loop.run_in_executor(None, members[old].stop)
                    assert code == 0, f"{old} exited {code}: {members[old].stderr()}"
                await asyncio.sleep(0.5)
                stop.set()
                await asyncio.gather(*tasks)
                totals = [(await client.ask(f"py:ver:{u}", "Balance", None, timeout=DEADLINE))[0] for u in range(URNS)]
            assert totals == deposited, (totals, deposited)
            return deposited, errors, audits

        deposited, errors, audits = run(roll(), timeout=120)
        assert not errors, errors[:5]
        assert sum(deposited) > CALLERS and audits
        assert set(audits) <= {"b1", "b2"}, set(audits)
    finally:
        for m in members.values():
            m.close()


def test_a_python_member_stopped_while_it_reroutes_a_urn_loses_and_repeats_nothing(
    redis_server: RedisServer, raw_redis: Any, fresh_ns: str
) -> None:
    """A build 1 member whose URN is being moved to build 2 for an ``Audit`` (it waits for the
    URN's mailbox, held by a ``Pause``, and the URN's deposits wait for the move) is stopped
    meanwhile: its stop waits for the move, so the ``Audit`` is answered by build 2 and the
    64 callers' deposits, waiting or sent later, are each counted once there, the total
    carried."""
    url = redis_server.url
    urn = "py:ver:held"
    members: list[PythonHost] = []
    try:
        a1 = PythonHost(url, fresh_ns, "--system", "a1", "--ledger-build", "1", "--ledger-pause")
        members.append(a1)

        async def activate() -> None:
            async with conclib.AsyncClient(url, namespace=fresh_ns) as client:
                assert await client.ask(urn, "Deposit", {"n": 1}, timeout=DEADLINE) == 1

        run(activate())
        members.append(PythonHost(url, fresh_ns, "--system", "b1", "--ledger-build", "2", "--ledger-pause"))
        stream = f"{fresh_ns}:sys:a1:req"

        async def moved_while_stopping() -> tuple[int, int, str, list[str]]:
            errors: list[str] = []
            deposited = 1
            stop = asyncio.Event()
            async with conclib.AsyncClient(url, namespace=fresh_ns) as client:
                paused = asyncio.create_task(client.ask(urn, "Pause", 1500, timeout=DEADLINE))
                audited = asyncio.create_task(client.ask(urn, "Audit", None, timeout=DEADLINE))

                async def caller() -> None:
                    nonlocal deposited
                    while not stop.is_set():
                        started = time.monotonic()
                        try:
                            await client.ask(urn, "Deposit", {"n": 1}, timeout=DEADLINE)
                            deposited += 1
                        except conclib.ConclibError as e:
                            errors.append(f"{type(e).__name__}: {e}")
                        took = time.monotonic() - started
                        assert took <= DEADLINE + MARGIN, f"a call took {took:.2f} s"

                callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
                # The Pause and the Audit read (pending in a1's stream, the Audit's reroute
                # waiting for the Pause to end), then a1 stopped.
                deadline = time.monotonic() + 5
                while raw_redis.xpending(stream, "proxy")["pending"] < 2:
                    assert time.monotonic() < deadline, "a1 did not read the Pause and the Audit"
                    await asyncio.sleep(0.01)
                loop = asyncio.get_running_loop()
                code = await loop.run_in_executor(None, a1.stop)
                assert code == 0, f"a1 exited {code}: {a1.stderr()}"
                await paused
                by = await audited
                stop.set()
                await asyncio.gather(*callers)
                total, balance_by = await client.ask(urn, "Balance", None, timeout=DEADLINE)
                assert balance_by == "b1"
            return total, deposited, by, errors

        total, deposited, by, errors = run(moved_while_stopping(), timeout=120)
        assert not errors, errors[:5]
        assert by == "b1"
        assert total == deposited, (total, deposited)
    finally:
        for m in members:
            m.close()
