"""Sentinel and Cluster URLs against live servers: the Rust server serves through the same
URL, the Python client asks, tells and gets typed errors through redis-py's ``Sentinel`` and
``RedisCluster``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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


def test_sentinel(servers: Servers) -> None:
    primary, sentinel = free_port(), free_port()
    servers.spawn("primary", "--port", str(primary))
    conf = servers.dir / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nsentinel resolve-hostnames no\n"
        f"sentinel monitor mymaster 127.0.0.1 {primary} 1\nsentinel down-after-milliseconds mymaster 5000\n"
    )
    servers.spawn("sentinel", str(conf), "--sentinel")
    wait_until(lambda: str(primary) in cli(sentinel, "SENTINEL", "get-master-addr-by-name", "mymaster"), 10,
               "the sentinel to name the primary")
    exercise(f"redis-sentinel://127.0.0.1:{sentinel}/0?sentinelServiceName=mymaster", "sentinel")


def test_cluster(servers: Servers) -> None:
    ports = [free_port() for _ in range(3)]
    for port in ports:
        # An explicit bus port: the default (port + 10000) may not exist for a high port.
        servers.spawn(f"node{port}", "--port", str(port), "--cluster-enabled", "yes",
                      "--cluster-port", str(free_port()), "--cluster-config-file",
                      str(servers.dir / f"nodes-{port}.conf"), "--cluster-node-timeout", "5000")
    wait_until(lambda: all(cli(p, "PING").strip() == "PONG" for p in ports), 10, "the nodes")
    subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
         "--cluster-yes"],
        check=True, capture_output=True, timeout=30,
    )
    wait_until(
        lambda: all("cluster_state:ok" in cli(p, "CLUSTER", "INFO") and "cluster_known_nodes:3" in cli(p, "CLUSTER", "INFO")
                    for p in ports),
        20, "cluster_state:ok",
    )
    url = f"redis-cluster://127.0.0.1:{ports[0]}?" + "&".join(f"node=127.0.0.1:{p}" for p in ports[1:])
    exercise(url, "cluster")


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
