"""The client's durability level (``conclib.Durability``) on a real primary with a replica:
at ``Durability.replicas(1)`` a tell returns once the replica acknowledged it (``WAIT``),
and while the replica is frozen (SIGSTOP: it lags as a replica cut from its primary does) a
tell fails ``NotReplicated`` within the level's timeout instead of being reported accepted
(so do a durable publish and a reminder's registration);
at the default level the same tell is accepted by the primary alone. On one server's raw
connections, through a Sentinel URL (redis-py), and on a Cluster with a replica a shard
(each write's ``WAIT`` on the connection to its key's node)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

import conclib
from conftest import RustServer, free_port, freeze, run, wait_until
from test_topologies import Servers, cli, spawn_node, start_sentinel

# The level's timeout, and how much later than it (two WAITs: the one running when a tell
# came, then the one it shares) a refused tell may return on a loaded machine.
WAIT_S = 0.4
MARGIN_S = 1.0


@pytest.fixture()
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.close()


def start_pair(servers: Servers) -> tuple[int, int]:
    """A primary and its replica, once the replica is in sync: their ports."""
    primary, replica = free_port(), free_port()
    servers.spawn("primary", "--port", str(primary))
    servers.spawn("replica", "--port", str(replica), "--replicaof", "127.0.0.1", str(primary))
    wait_until(lambda: "master_link_status:up" in cli(replica, "INFO", "replication"), 20, "the replica to sync")
    return primary, replica


def replica_pid(servers: Servers) -> int:
    return servers.procs[1].pid


def wait_calls(port: int) -> int:
    """How many ``WAIT`` s the server ran so far (``INFO commandstats``)."""
    for line in cli(port, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_wait:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


async def tell_until_replicated(client: conclib.AsyncClient, n: int) -> None:
    """Tells ``Record(n)`` until a tell is acknowledged by the replica (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            await client.tell("py:counter", "Record", n)
            return
        except conclib.NotReplicated:
            assert time.monotonic() < deadline, "the replica never acknowledged"


T = TypeVar("T")


async def until_replicated(write: Callable[[], Awaitable[T]]) -> T:
    """``write()`` again until its replicas acknowledged it (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await write()
        except conclib.NotReplicated:
            assert time.monotonic() < deadline, "the replica never acknowledged"


def check_level(url: str, namespace: str, primary: int, servers: Servers) -> None:
    replicated = conclib.Durability.replicas(1, timeout=WAIT_S)
    assert replicated.label == f"replicas=1/{round(WAIT_S * 1000)}ms"

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace, durability=replicated) as client, \
                conclib.AsyncClient(url, namespace=namespace) as plain:
            await client.ask("py:counter", "Reset")
            before = wait_calls(primary)
            # The replica acknowledged it (a replica just synced, on a loaded machine, may
            # take longer than the level's timeout at first).
            await tell_until_replicated(client, 1)
            assert wait_calls(primary) > before

            freeze(replica_pid(servers))
            try:
                # 64 tells at once: each fails typed within two WAITs, none is reported accepted.
                before = wait_calls(primary)

                async def tell(i: int) -> tuple[BaseException | None, float]:
                    started = time.monotonic()
                    try:
                        await client.tell("py:counter", "Record", 100 + i)
                    except conclib.ConclibError as e:
                        return e, time.monotonic() - started
                    return None, time.monotonic() - started

                outcomes = await asyncio.gather(*(tell(i) for i in range(64)))
                for error, took in outcomes:
                    assert isinstance(error, conclib.NotReplicated), error
                    assert isinstance(error, conclib.Unavailable)
                    assert (error.replicas, error.required) == (0, 1)
                    assert took < 2 * WAIT_S + MARGIN_S, took
                # They shared their WAITs: one running, the next for all who came meanwhile.
                assert wait_calls(primary) - before <= 3
                # Asks wait for no replica (their answer is their acknowledgement), and a
                # client at the default level has a tell accepted by the primary alone.
                assert await client.ask("py:shapes", "Double", 4) == 8
                await plain.tell("py:counter", "Record", 2)
                # A durable publish and a reminder's registration wait as a tell does; a
                # live publish (at most once) waits for nothing.
                with pytest.raises(conclib.NotReplicated):
                    await client.publish("orders", {"n": 1}, durable=True)
                with pytest.raises(conclib.NotReplicated):
                    await client.register_reminder("py:remind:durability", "r", after=3600)
                with pytest.raises(conclib.NotReplicated):
                    await client.cancel_reminder("py:remind:durability", "r")
                await client.publish("jobs", {"n": 1})
            finally:
                os.kill(replica_pid(servers), signal.SIGCONT)
            # Once the replica caught up, tells are acknowledged again.
            await tell_until_replicated(client, 3)
            await client.publish("orders", {"n": 2}, durable=True)
            await client.register_reminder("py:remind:durability", "r", after=3600)
            assert await client.cancel_reminder("py:remind:durability", "r")
            history = await client.ask("py:counter", "History")
            assert 1 in history and history[-1] == 3 and 2 in history

    run(main())
    # The blocking client takes the same level.
    freeze(replica_pid(servers))
    try:
        with conclib.Client(url, namespace=namespace, durability=replicated) as blocking:
            with pytest.raises(conclib.NotReplicated):
                blocking.tell("py:counter", "Record", 4)
    finally:
        os.kill(replica_pid(servers), signal.SIGCONT)


def test_a_tell_waits_for_the_replica_on_one_server(servers: Servers) -> None:
    primary, _ = start_pair(servers)
    url = f"redis://127.0.0.1:{primary}"
    server = RustServer(url, "durability")
    try:
        check_level(url, "durability", primary, servers)
    finally:
        server.close()


def test_a_tell_waits_for_the_replica_through_sentinel(servers: Servers) -> None:
    primary, _ = start_pair(servers)
    _, url = start_sentinel(servers, primary, down_after_ms=60000)
    server = RustServer(url, "durability-sentinel")
    try:
        check_level(url, "durability-sentinel", primary, servers)
    finally:
        server.close()


def test_levels_are_checked() -> None:
    assert conclib.Durability.primary().label == "primary"
    assert conclib.AsyncClient().durability == conclib.Durability.primary()
    for bad in (0, -1, True, 1.5):
        with pytest.raises(conclib.ConfigError):
            conclib.Durability.replicas(bad)  # type: ignore[arg-type]
    with pytest.raises(conclib.ConfigError):
        conclib.Durability.replicas(1, timeout=0)
    # A Cluster URL takes a level too (each write's WAIT goes to its key's node).
    assert conclib.AsyncClient("redis-cluster://127.0.0.1:7000",
                               durability=conclib.Durability.replicas(1)).durability.n == 1
    with pytest.raises(conclib.ConfigError):  # a tell, its WAIT included, is bounded by command_timeout
        conclib.AsyncClient(durability=conclib.Durability.replicas(1, timeout=2), command_timeout=2)


def test_the_client_warns_when_the_replicas_and_its_level_disagree(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    primary, _ = start_pair(servers)
    url = f"redis://127.0.0.1:{primary}"

    async def connect(durability: conclib.Durability) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING", logger="conclib"):
            async with conclib.AsyncClient(url, durability=durability) as client:
                await client.connect()
        return [r.getMessage() for r in caplog.records if r.name == "conclib"]

    async def main() -> None:
        (primary_level,) = await connect(conclib.Durability.primary())
        assert "replicas (1, topology standalone)" in primary_level and "durability is primary" in primary_level
        (too_many,) = await connect(conclib.Durability.replicas(2))
        assert "has 1 replicas" in too_many and "replicas=2/500ms" in too_many
        assert await connect(conclib.Durability.replicas(1)) == []

    run(main())


def start_replicated_cluster(servers: Servers) -> tuple[list[int], list[int], str]:
    """3 primaries with a replica each, once every replica is in sync: the primaries' and
    the replicas' indexes in ``servers.procs``, and the URL."""
    ports = [free_port() for _ in range(6)]
    for port in ports:
        spawn_node(servers, port, free_port())
    wait_until(lambda: all(cli(p, "PING").strip() == "PONG" for p in ports), 10, "the nodes")
    subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "1",
         "--cluster-yes"],
        check=True, capture_output=True, timeout=30,
    )

    def ready() -> bool:
        for p in ports:
            info = cli(p, "CLUSTER", "INFO")
            if "cluster_state:ok" not in info or "cluster_known_nodes:6" not in info:
                return False
            replication = cli(p, "INFO", "replication")
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return False
        return True

    wait_until(ready, 30, "the cluster and its replicas")
    roles = [cli(p, "ROLE").split()[0] for p in ports]
    primaries = [i for i, r in enumerate(roles) if r == "master"]
    replicas = [i for i, r in enumerate(roles) if r == "slave"]
    assert len(primaries) == 3 and len(replicas) == 3, roles
    url = f"redis-cluster://127.0.0.1:{ports[0]}?" + "&".join(f"node=127.0.0.1:{p}" for p in ports[1:])
    return primaries, replicas, url


def test_a_tell_waits_for_the_replica_on_a_cluster(servers: Servers) -> None:
    """On a Cluster, each tell's pipeline to its stream's node carries its ``WAIT`` on the
    same connection, and a durable publish and a reminder's registration and cancellation
    go to their key's node with theirs: with every replica frozen, 64 tells at once fail
    ``NotReplicated`` within the level's timeout (each batch waits once) and none is
    reported accepted; asks and a client at the default level go on; thawed, all succeed."""
    _, replicas, url = start_replicated_cluster(servers)
    namespace = "durability-cluster"
    server = RustServer(url, namespace)
    replicated = conclib.Durability.replicas(1, timeout=WAIT_S)
    pids = [servers.procs[i].pid for i in replicas]

    async def main() -> None:
        async with conclib.AsyncClient(url, namespace=namespace, durability=replicated) as client, \
                conclib.AsyncClient(url, namespace=namespace) as plain:
            await client.ask("py:counter", "Reset")
            await tell_until_replicated(client, 1)
            for pid in pids:
                freeze(pid)
            try:
                async def tell(i: int) -> tuple[BaseException | None, float]:
                    started = time.monotonic()
                    try:
                        await client.tell("py:counter", "Record", 100 + i)
                    except conclib.ConclibError as e:
                        return e, time.monotonic() - started
                    return None, time.monotonic() - started

                outcomes = await asyncio.gather(*(tell(i) for i in range(64)))
                for error, took in outcomes:
                    assert isinstance(error, conclib.NotReplicated), error
                    assert (error.replicas, error.required) == (0, 1)
                    assert took < 2 * WAIT_S + MARGIN_S, took
                assert await client.ask("py:shapes", "Double", 4) == 8
                await plain.tell("py:counter", "Record", 2)
                with pytest.raises(conclib.NotReplicated):
                    await client.publish("orders", {"n": 1}, durable=True)
                with pytest.raises(conclib.NotReplicated):
                    await client.register_reminder("py:remind:durability", "r", after=3600)
                with pytest.raises(conclib.NotReplicated):
                    await client.cancel_reminder("py:remind:durability", "r")
            finally:
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            await tell_until_replicated(client, 3)
            # Each shard's replica comes back on its own: the counter's proves none of the
            # others' (the topic's and the reminders' keys are on other nodes).
            await until_replicated(lambda: client.publish("orders", {"n": 2}, durable=True))
            await until_replicated(lambda: client.register_reminder("py:remind:durability", "r", after=3600))
            # Its node's replica acknowledged the registration just now.
            assert await client.cancel_reminder("py:remind:durability", "r")
            history = await client.ask("py:counter", "History")
            assert 1 in history and history[-1] == 3 and 2 in history

    try:
        run(main())
    finally:
        server.close()
