"""The conformance actor written in Python (the same wire names, types and behaviour as
``python/testserver/src/mirror.rs``), served by a Python actor host: at the fixed URNs of
the shared conformance cases and for the patterns ``conf:pat:{id}``, ``py:tally:{id}`` (a
count in the fenced state store) and ``py:carry:{id}`` (a count in memory, carried when the
host stops), which the Rust test server serves too.

    python tests/mirror_host.py --redis URL --namespace NS [--system ID] [--lease-ttl-ms MS]
        [--pattern-only] [--idle-s S] [--exit-with-stdin] [--subscribe-news]
        [--reminders] [--claim-lease-ms MS] [--hang-ticks] [--bulk N] [--urn-ttl-ms MS]
        [--ledger-build 1|2 [--ledger-pause]]

``--reminders``: the host runs its own reminder poller (its claim lease ``--claim-lease-ms``,
else the lease TTL);
``--hang-ticks``: ``Ticker``'s tick handler never returns (a member that dies mid-delivery);
``--bulk N``: N more counters at the fixed URNs ``bulk:0``.. (a host holding many URN keys);
``--urn-ttl-ms``: its URN keys' TTL (else the lease's with ``--lease-ttl-ms``);
``--ledger-build N``: it serves only ``py:ver:{id}``, the ledger of ``tests/test_versions.py``
as build N (``python/testserver/src/versioned.rs``'s, in Python); ``--ledger-pause`` adds a
message that holds its mailbox (``Pause``, ms).

Prints ``READY`` once it serves; stops at SIGTERM/SIGINT (or when its standard input ends,
with ``--exit-with-stdin``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from conclib.actor import Actor, Drop, Refusal, ReminderTick, handler
from conclib.host import ActorHost, HostConfig, ReminderPollerOptions

U64_MAX = 2**64 - 1


class Mirror(Actor):
    """A counter with extras."""

    def __init__(self, urn: str) -> None:
        super().__init__(urn)
        self.count = 0
        self.log: list[int] = []

    @handler("test.Add")
    async def add(self, n: int) -> int:
        if self.count + n > U64_MAX:
            raise Refusal("overflow")
        self.count += n
        return self.count

    @handler("test.Get")
    async def get(self) -> int:
        return self.count

    @handler("test.Forbidden", error=dict[str, dict[str, str]])
    async def forbidden(self, reason: str) -> None:
        raise Refusal({"NotAllowed": {"reason": reason}})

    @handler("test.Boom")
    async def boom(self) -> None:
        raise RuntimeError("boom")

    @handler("test.Sleep")
    async def sleep(self, ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms

    @handler("test.Echo")
    async def echo(self, s: str) -> str:
        return s

    @handler("test.Blob")
    async def blob(self, n: int) -> list[int]:
        return [7] * n

    @handler("test.Record")
    async def record(self, v: int) -> None:
        self.log.append(v)

    @handler("test.History")
    async def history(self) -> list[int]:
        return self.log

    @handler("test.Ignore")
    async def ignore(self) -> None:
        raise Drop()

    @handler("test.Ping")
    async def ping(self) -> str:
        return "pong"


class Tally(Actor):
    """A count kept in the fenced state store (``python/testserver/src/tally.rs``'s, in
    Python): saved before each increment is answered, loaded when activated."""

    async def on_start(self) -> None:
        self.count: int = await self.store.load(int) or 0

    @handler("test.Incr")
    async def incr(self) -> int:
        await self.store.save(self.count + 1)
        self.count += 1
        return self.count

    @handler("test.Count")
    async def get_count(self) -> int:
        return self.count


class Carry(Actor):
    """A count kept in memory only, never saved (``python/testserver/src/tally.rs``'s, in
    Python): carried to the next activation when its host stops, else lost."""

    async def on_start(self) -> None:
        carried = await self.store.rehydrate(int)
        self.count: int = carried if carried is not None else await self.store.load(int) or 0

    async def on_stop(self) -> None:
        await self.store.dehydrate(self.count)

    @handler("test.Incr")
    async def incr(self) -> int:
        self.count += 1
        return self.count

    @handler("test.Count")
    async def get_count(self) -> int:
        return self.count


class Ticker(Actor):
    """Reminders and topics from a Python actor: registers a reminder for its own URN
    (``test.Arm``), keeps the ticks delivered to it, keeps the events of topic ``py.news``
    sent to ``py:ptick:news`` by the host's actor subscription, and publishes to
    ``py.announced`` (``test.Announce``)."""

    hang = False

    def __init__(self, urn: str) -> None:
        super().__init__(urn)
        self.ticks: list[list[Any]] = []
        self.news: list[Any] = []

    @handler("test.Arm")
    async def arm(self, every_ms: int) -> int:
        return await self.remind("beat", after=0.05, every=every_ms / 1000, payload={"urn": self.urn})

    @handler("conclib.ReminderTick")
    async def tick(self, tick: ReminderTick) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.ticks.append([tick.name, tick.missed, tick.value(), tick.due_ms])

    @handler("test.Ticks")
    async def get_ticks(self) -> list[list[Any]]:
        return self.ticks

    @handler("test.News")
    async def take_news(self, event: Any) -> None:
        self.news.append(event)

    @handler("test.Headlines")
    async def headlines(self) -> list[Any]:
        return self.news

    @handler("test.Announce")
    async def announce(self, text: str) -> None:
        await self.client.publish("py.announced", {"from": self.urn, "text": text})


class Patient(Mirror):
    """The conformance actor, cancelled when a request's deadline passes mid-handler."""

    cancel_on_timeout = True


@dataclass
class DepositV1:
    n: int


@dataclass
class DepositV2:
    n: int
    note: str | None = None


class LedgerV1(Actor):
    """``python/testserver/src/versioned.rs``'s build 1 of ``py:ver:{id}``, in Python
    (``--ledger-build 1``), its total kept in memory only and carried when it moves."""

    async def on_start(self) -> None:
        self.total: int = await self.store.rehydrate(int) or 0

    async def on_stop(self) -> None:
        await self.store.dehydrate(self.total)

    @handler("Deposit")
    async def deposit(self, d: DepositV1) -> int:
        self.total += d.n
        return self.total

    @handler("Balance")
    async def balance(self) -> tuple[int, str]:
        return self.total, SYSTEM[0]


class LedgerV2(LedgerV1):
    """Build 2 (``--ledger-build 2``): ``Deposit`` at version 2 with an optional note (one
    more when present), and ``Audit``."""

    @handler("Deposit", version=2)
    async def deposit(self, d: DepositV2) -> int:  # type: ignore[override]
        self.total += d.n + (d.note is not None)
        return self.total

    @handler("Audit")
    async def audit(self) -> str:
        return SYSTEM[0]


class Pausing(Actor):
    """``Pause`` (``--ledger-pause``): holds the ledger's mailbox ``ms`` milliseconds."""

    @handler("Pause")
    async def pause(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000)


# The serving host's system id (the ledgers answer it).
SYSTEM = [""]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--system")
    parser.add_argument("--lease-ttl-ms", type=int)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--pattern-only", action="store_true")
    parser.add_argument("--exit-with-stdin", action="store_true")
    parser.add_argument("--subscribe-news", action="store_true")
    parser.add_argument("--reminders", action="store_true")
    parser.add_argument("--hang-ticks", action="store_true")
    parser.add_argument("--claim-lease-ms", type=int)
    parser.add_argument("--bulk", type=int, default=0)
    parser.add_argument("--urn-ttl-ms", type=int)
    parser.add_argument("--stop-timeout-ms", type=int)
    parser.add_argument("--ledger-build", type=int, choices=(1, 2))
    parser.add_argument("--ledger-pause", action="store_true")
    args = parser.parse_args()
    config = HostConfig(namespace=args.namespace, system=args.system)
    if args.lease_ttl_ms:
        config.lease_ttl = config.urn_ttl = args.lease_ttl_ms / 1000
    if args.urn_ttl_ms:
        config.urn_ttl = args.urn_ttl_ms / 1000
    if args.stop_timeout_ms:
        config.stop_timeout = args.stop_timeout_ms / 1000
    if args.reminders:
        lease = args.claim_lease_ms / 1000 if args.claim_lease_ms else config.lease_ttl
        config.reminders = ReminderPollerOptions(claim_lease=lease, poll_interval=0.05)
    Ticker.hang = args.hang_ticks
    host = ActorHost(args.redis, config)
    if args.ledger_build:
        SYSTEM[0] = host.system
        ledger: type[Actor] = LedgerV1 if args.ledger_build == 1 else LedgerV2
        if args.ledger_pause:
            ledger = type(ledger.__name__, (ledger, Pausing), {})
        host.serve_pattern("py:ver:{id}", ledger, idle_after=args.idle_s)
    elif not args.pattern_only:
        host.serve("conf:counter", Mirror)
        host.serve("conf:patient", Patient)
        host.serve_group("conf:shared", Mirror)
    for i in range(args.bulk):
        host.serve(f"bulk:{i}", Mirror)
    if not args.ledger_build:
        host.serve_pattern("conf:pat:{id}", Mirror, idle_after=args.idle_s)
        host.serve_pattern("py:tally:{id}", Tally, idle_after=args.idle_s)
        host.serve_pattern("py:carry:{id}", Carry, idle_after=args.idle_s)
        host.serve_pattern("py:ptick:{id}", Ticker, idle_after=args.idle_s)
    if args.subscribe_news:
        host.subscribe_actor("py.news", "py:ptick:news", "test.News")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(host.stop()))
    if args.exit_with_stdin:
        loop.add_reader(sys.stdin.fileno(), lambda: None if os.read(sys.stdin.fileno(), 1) else loop.create_task(host.stop()))
    await host.start()
    print("READY", flush=True)
    await host.wait()


if __name__ == "__main__":
    asyncio.run(main())
