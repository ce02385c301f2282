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
