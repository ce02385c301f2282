"""Sentinel and Cluster URLs against live servers: the Rust server serves through the same
URL, the Python client asks, tells and gets typed errors through redis-py's ``Sentinel`` and
``RedisCluster``."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import conclib
from conftest import RustServer, free_port, run, wait_until

BINARY = os.environ.get("CONCLIB_REDIS_SERVER", "redis-server")


def cli(port: int, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return done.stdout


class Servers:
    """redis-server processes in one temporary directory, killed by PID at the end."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="conclib-py-topo-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, *args: str) -> None:
        self.procs.append(subprocess.Popen(
            [BINARY, *args, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.dir / f"{name}.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture()
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.close()


def exercise(url: str, namespace: str) -> None:
    server = RustServer(url, namespace)
    try:

        async def main() -> Any:
            async with conclib.AsyncClient(url, namespace=namespace) as client:
                assert await client.ask("py:shapes", "Double", 21) == 42
                await client.ask("py:counter", "Reset")
                await client.tell("py:counter", "Record", 5)
                assert await client.ask("py:counter", "History") == [5]
                with pytest.raises(conclib.HandlerError):
                    await client.ask("py:shapes", "Divide", {"a": 1, "b": 0})
                with pytest.raises(conclib.UnknownUrn):
                    await client.ask("py:nobody", "Hello")
                # Every URN, wherever its key's slot is.
                for urn in ("py:shapes", "py:counter", "py:narrow", "conf:counter"):
                    assert await client.resolve(urn) == "pyserver"

        run(main())
        with conclib.Client(url, namespace=namespace) as client:
            assert client.ask("conf:counter", "test.Echo", "hi") == "hi"
    finally:
        server.close()


def primary_known(sentinel: int) -> bool:
    """Whether the sentinel is connected to the primary it monitors (flags ``master``, not
    ``disconnected`` or down). It names its configured address from its start, whether or not
    a server listens there."""
    lines = cli(sentinel, "SENTINEL", "MASTER", "mymaster").splitlines()
    return dict(zip(lines[::2], lines[1::2])).get("flags") == "master"


def start_sentinel(servers: Servers, primary: int, down_after_ms: int = 5000) -> tuple[int, str]:
    """A sentinel (quorum 1) monitoring ``primary`` as ``mymaster``, once the primary answers
    PING and the sentinel is connected to it: its port and the URL through it."""
    wait_until(lambda: cli(primary, "PING").strip() == "PONG", 10, "the primary")
    sentinel = free_port()
    conf = servers.dir / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nsentinel resolve-hostnames no\n"
        f"sentinel monitor mymaster 127.0.0.1 {primary} 1\n"
        f"sentinel down-after-milliseconds mymaster {down_after_ms}\n"
    )
    servers.spawn("sentinel", str(conf), "--sentinel")
    wait_until(lambda: primary_known(sentinel), 10, "the sentinel to be connected to the primary")
    return sentinel, f"redis-sentinel://127.0.0.1:{sentinel}/0?sentinelServiceName=mymaster"


def test_sentinel(servers: Servers) -> None:
    primary = free_port()
    servers.spawn("primary", "--port", str(primary))
    exercise(start_sentinel(servers, primary)[1], "sentinel")


def test_a_replica_a_lagging_sentinel_names_is_no_primary(servers: Servers) -> None:
    """Right after a promotion a sentinel that has not learnt of it names the old primary's
    address, where that server may be back already as a replica of the new one, empty until
    its first sync (the failover example's Python callers were answered ``UnknownUrn``
    there). Here the sentinel is pointed at such a replica: 64 callers asking without pause
    through a new client all get ``Unavailable``, never ``UnknownUrn``, each within its
    timeout + 0.25 s; once the sentinel names the primary again, they are answered."""
    primary, replica, nobody = free_port(), free_port(), free_port()
    servers.spawn("primary", "--port", str(primary))
    # A replica of a primary that does not answer: empty, as one restarted to sync.
    servers.spawn("replica", "--port", str(replica), "--replicaof", "127.0.0.1", str(nobody))
    sentinel, url = start_sentinel(servers, primary)
    wait_until(lambda: cli(replica, "PING").strip() == "PONG", 10, "the replica")

    def name(port: int) -> None:
        cli(sentinel, "SENTINEL", "REMOVE", "mymaster")
        cli(sentinel, "SENTINEL", "MONITOR", "mymaster", "127.0.0.1", str(port), "1")
        wait_until(lambda: str(port) in cli(sentinel, "SENTINEL", "get-master-addr-by-name", "mymaster"), 10,
                   f"the sentinel to name {port}")

    server = RustServer(url, "lagging")
    try:
        name(replica)
        timeout, margin = 1.0, 0.25

        async def main() -> tuple[dict[str, int], float]:
            outcomes: dict[str, int] = {}
            slowest = 0.0
            client = conclib.AsyncClient(url, namespace="lagging", command_timeout=timeout)

            async def caller(until: float, ok_wanted: bool) -> None:
                nonlocal slowest
                while time.monotonic() < until:
                    started = time.monotonic()
                    try:
                        assert await client.ask("py:shapes", "Double", 21, timeout=timeout) == 42
                        kind = "ok"
                    except conclib.ConclibError as e:
                        kind = type(e).__name__
                    slowest = max(slowest, time.monotonic() - started)
                    outcomes[kind] = outcomes.get(kind, 0) + 1
                    if ok_wanted and kind == "ok":
                        return
                    await asyncio.sleep(0)

            try:
                await asyncio.gather(*(caller(time.monotonic() + 2, False) for _ in range(64)))
                assert set(outcomes) == {"Unavailable"}, outcomes
                await asyncio.to_thread(name, primary)  # off the callers' event loop
                await asyncio.gather(*(caller(time.monotonic() + 20, True) for _ in range(64)))
            finally:
                await client.close()
            return outcomes, slowest

        outcomes, slowest = run(main())
        assert outcomes.get("UnknownUrn", 0) == 0, outcomes
        assert outcomes.get("ok", 0) >= 64, outcomes
        assert slowest <= timeout + margin, slowest
    finally:
        server.close()


def test_calls_follow_a_promotion_past_the_old_primary_back_as_a_replica(servers: Servers) -> None:
    """The client's request writer and reply reader hold a connection each, outside
    redis-py's pool: redis-py reconnects such a connection to its last address, where the
    old primary, restarted, is a replica of the promoted one (every write refused
    ``READONLY``, until the test's end). They reconnect through the sentinels: under 64
    callers asking without pause, once the sentinel names the promoted replica, asks are
    answered again within 10 s, every error meanwhile typed, every call within its timeout
    + 0.25 s."""
    primary, replica = free_port(), free_port()
    servers.spawn("primary", "--port", str(primary))
    servers.spawn("replica", "--port", str(replica), "--replicaof", "127.0.0.1", str(primary))
    wait_until(lambda: "master_link_status:up" in cli(replica, "INFO", "replication"), 10, "the replica's sync")
    sentinel, url = start_sentinel(servers, primary, down_after_ms=1000)
    server = RustServer(url, "promoted")
    timeout, margin = 1.0, 0.25
    try:

        async def main() -> tuple[dict[str, int], float, float]:
            outcomes: dict[str, int] = {}
            slowest = 0.0
            client = conclib.AsyncClient(url, namespace="promoted", command_timeout=timeout)
            await client.connect()
            promoted = asyncio.Event()
            answered_after: list[float] = []

            async def caller(until: float) -> None:
                nonlocal slowest
                while time.monotonic() < until and not answered_after:
                    started = time.monotonic()
                    try:
                        assert await client.ask("py:shapes", "Double", 21, timeout=timeout) == 42
                        kind = "ok"
                        if promoted.is_set():
                            answered_after.append(time.monotonic())
                    except conclib.ConclibError as e:
                        kind = type(e).__name__
                    slowest = max(slowest, time.monotonic() - started)
                    outcomes[kind] = outcomes.get(kind, 0) + 1
                    await asyncio.sleep(0)

            async def fail_over() -> float:
                # Processes run and waited for off the event loop, which the callers share.
                servers.procs[0].kill()
                await asyncio.to_thread(servers.procs[0].wait, 10)
                while str(replica) not in await asyncio.to_thread(
                    cli, sentinel, "SENTINEL", "get-master-addr-by-name", "mymaster"
                ):
                    await asyncio.sleep(0.05)
                # The old primary back at its address, a replica of the promoted one.
                await asyncio.to_thread(
                    servers.spawn, "old-primary", "--port", str(primary), "--replicaof", "127.0.0.1", str(replica)
                )
                promoted.set()
                return time.monotonic()

            try:
                callers = [asyncio.ensure_future(caller(time.monotonic() + 40)) for _ in range(64)]
                await asyncio.sleep(0.5)
                at = await fail_over()
                await asyncio.gather(*callers)
            finally:
                await client.close()
            return outcomes, slowest, (answered_after[0] - at) if answered_after else float("inf")

        outcomes, slowest, recovered = run(main())
        assert recovered <= 10, (recovered, outcomes)
        assert set(outcomes) <= {"ok", "Unavailable", "Timeout"}, outcomes
        assert slowest <= timeout + margin, slowest
    finally:
        server.close()


def spawn_node(servers: Servers, port: int, bus: int) -> None:
    # An explicit bus port: the default (port + 10000) may not exist for a high port.
    servers.spawn(f"node{port}", "--port", str(port), "--cluster-enabled", "yes",
                  "--cluster-port", str(bus), "--cluster-config-file",
                  str(servers.dir / f"nodes-{port}.conf"), "--cluster-node-timeout", "5000")


def cluster_ok(ports: list[int]) -> bool:
    return all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") and "cluster_known_nodes:3" in cli(p, "CLUSTER", "INFO")
               for p in ports)


def start_cluster(servers: Servers) -> tuple[list[int], list[int], str]:
    """Three masters; returns their ports, bus ports and the URL naming them."""
    ports = [free_port() for _ in range(3)]
    buses = [free_port() for _ in ports]
    for port, bus in zip(ports, buses):
        spawn_node(servers, port, bus)
    wait_until(lambda: all(cli(p, "PING").strip() == "PONG" for p in ports), 10, "the nodes")
    subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
         "--cluster-yes"],
        check=True, capture_output=True, timeout=30,
    )
    wait_until(lambda: cluster_ok(ports), 20, "cluster_state:ok")
    url = f"redis-cluster://127.0.0.1:{ports[0]}?" + "&".join(f"node=127.0.0.1:{p}" for p in ports[1:])
    return ports, buses, url


def test_cluster(servers: Servers) -> None:
    _, _, url = start_cluster(servers)
    exercise(url, "cluster")


def test_topics_on_a_cluster_are_sharded(servers: Servers) -> None:
    """Live topics on a cluster: sharded pub/sub, between the Rust server's publisher and this
    client both ways; a durable topic there too."""
    ports, _, url = start_cluster(servers)
    namespace = "cluster-topics"
    server = RustServer(url, namespace)
    try:

        async def main() -> None:
            async with conclib.AsyncClient(url, namespace=namespace) as client:
                sub = await client.subscribe("jobs.7", buffer=1000)
                channel = f"{namespace}:topic:{{jobs.7}}:live"
                counts = [cli(p, "PUBSUB", "SHARDNUMSUB", channel).split()[-1] for p in ports]
                assert sorted(counts) == ["0", "0", "1"], counts  # on the node of its slot only
                await client.ask("py:publisher", "test.Publish",
                                 {"topic": "jobs.7", "durable": False, "from": 1, "count": 100}, timeout=30)
                got = [await sub.get(timeout=10) for _ in range(100)]
                assert got == [{"from": 1, "seq": i} for i in range(100)]
                rust = await client.subscribe("jobs.7", durable=True, group="g")  # a durable one beside it
                await client.publish("jobs.7", {"from": 2, "seq": 0})
                assert await sub.get(timeout=10) == {"from": 2, "seq": 0}
                await client.publish("jobs.7", {"from": 3, "seq": 0}, durable=True)
                assert await rust.get(timeout=10) == {"from": 3, "seq": 0}
                await sub.aclose()
                await rust.aclose()

        run(main())
    finally:
        server.close()


def test_a_cluster_node_restarted_empty_is_recovered_from(servers: Servers) -> None:
    """A node of the cluster SIGKILLed and restarted (no persistence: its keys are gone, its
    slots kept in its nodes file): asks meanwhile fail with a typed error within their
    timeout (no hang), and once the proxy registered its URNs again the same client answers
    again, on every node, without being made anew."""
    ports, buses, url = start_cluster(servers)
    server = RustServer(url, "restart", lease_ttl_ms=1000)
    try:

        async def main() -> None:
            async with conclib.AsyncClient(url, namespace="restart", timeout=1) as client:
                urns = ("py:shapes", "py:counter", "py:narrow", "conf:counter")
                assert await client.ask("py:shapes", "Double", 21) == 42
                victim = servers.procs[0]
                victim.kill()
                victim.wait(timeout=10)
                spawn_node(servers, ports[0], buses[0])
                wait_until(lambda: cluster_ok(ports), 30, "cluster_state:ok after the restart")
                # Until the proxy renewed its keys on the restarted node and the client's
                # connections were made anew: typed errors, each within its timeout.
                deadline = time.monotonic() + 30
                answered: set[str] = set()
                while answered != set(urns):
                    assert time.monotonic() < deadline, f"only {answered} answered again"
                    for urn in urns:
                        started = time.monotonic()
                        try:
                            if urn == "py:shapes":
                                assert await client.ask(urn, "Double", 2) == 4
                            elif urn == "conf:counter":
                                assert await client.ask(urn, "test.Echo", "hi") == "hi"
                            elif await client.resolve(urn) != "pyserver":
                                continue
                            answered.add(urn)
                        except conclib.ConclibError:
                            pass
                        took = time.monotonic() - started
                        assert took < 4, f"{urn}: an ask of 1 s took {took:.1f} s"
                    await asyncio.sleep(0.05)

        run(main())
    finally:
        server.close()


def test_asks_whose_requests_a_cluster_node_lost_fail_at_once(servers: Servers) -> None:
    """The node holding the serving system's request stream SIGKILLed and restarted empty,
    with asks' requests in it (the server paused, so they wait there unread): those asks fail
    ``Unavailable`` once the node is back, long before their deadlines (the client asks each
    node it wrote to who it is while their asks wait)."""
    ports, buses, url = start_cluster(servers)
    server = RustServer(url, "lost", lease_ttl_ms=1000)
    try:

        async def main() -> None:
            async with conclib.AsyncClient(url, namespace="lost", timeout=20) as client:
                assert await client.ask("py:shapes", "Double", 21) == 42
                stream = f"lost:sys:{await client.resolve('py:shapes')}:req"
                index = next(i for i, p in enumerate(ports) if cli(p, "XLEN", stream).strip().isdigit())
                before = int(cli(ports[index], "XLEN", stream))
                os.kill(server.proc.pid, signal.SIGSTOP)
                try:
                    asks = [asyncio.ensure_future(client.ask("py:shapes", "Double", n)) for n in range(8)]
                    deadline = time.monotonic() + 10
                    while int(cli(ports[index], "XLEN", stream) or 0) < before + 8:
                        assert time.monotonic() < deadline, "the requests never reached the stream"
                        await asyncio.sleep(0.02)
                    victim = servers.procs[index]
                    victim.kill()
                    victim.wait(timeout=10)
                    spawn_node(servers, ports[index], buses[index])
                    restarted = time.monotonic()
                    results = await asyncio.gather(*asks, return_exceptions=True)
                    took = time.monotonic() - restarted
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)
                assert all(isinstance(r, conclib.Unavailable) for r in results), results
                assert "restarted without its data" in str(results[0]), results[0]
                assert took < 8, f"asks of 20 s ended {took:.1f} s after the node restarted"

        run(main())
    finally:
        server.close()


def test_a_cluster_that_cannot_be_reached_is_unavailable() -> None:
    """No node of the cluster answers: ``Unavailable`` (the client reconnects by itself), not
    a ``RedisError`` as for a command Redis refused."""
    url = f"redis-cluster://127.0.0.1:{free_port()}"

    async def main() -> None:
        client = conclib.AsyncClient(url, namespace="nowhere", connect_timeout=2)
        try:
            with pytest.raises(conclib.Unavailable):
                await client.connect()
            with pytest.raises(conclib.Unavailable):
                await client.ask("py:shapes", "Double", 1, timeout=2)
        finally:
            await client.close()

    run(main())
