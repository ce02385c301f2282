"""Fixtures: a real redis-server on a free port and the real Rust serving process.

Every process started here is killed by its PID at the end (also when a test fails), and
every wait has a deadline. The Rust server (``conclib-pyserver``) is built by
``run_tests.sh``; if its binary is missing it is built here (``cargo build -p
conclib-pyserver``).
"""

from __future__ import annotations

import asyncio
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = ROOT / "python"
T = TypeVar("T")


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def server_binary() -> Path:
    """The Rust test server's binary, built if missing."""
    explicit = os.environ.get("CONCLIB_PYSERVER")
    if explicit:
        return Path(explicit)
    path = target_dir() / "debug" / "conclib-pyserver"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "conclib-pyserver"], cwd=ROOT, check=True, timeout=1800)
    return path


def freeze(pid: int, timeout: float = 10) -> None:
    """SIGSTOPs a process and returns once every thread of it is stopped. ``kill`` returns
    before that: one thread takes the signal and stops the others, and on a loaded machine
    the others run on for milliseconds meanwhile (a frozen proxy answered an ask 7 ms after
    ``kill`` had returned). The state is seen only in ``/proc``."""
    os.kill(pid, signal.SIGSTOP)

    def stopped() -> bool:
        task = Path(f"/proc/{pid}/task")
        for tid in os.listdir(task):
            try:
                stat = (task / tid / "stat").read_text()
            except OSError:
                continue  # the thread ended
            if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
        return True

    wait_until(stopped, timeout, f"process {pid} to stop", every=0.001)


def holders(raw_redis: Any, ns: str, urns: list[str]) -> dict[str, str]:
    """The system each of ``urns`` (namespace ``ns``) is held by, for those whose URN key
    exists, in one ``MGET``."""
    values = raw_redis.mget([f"{ns}:urn:{u}" for u in urns])
    return {u: v.decode() for u, v in zip(urns, values) if v is not None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], bool], timeout: float, what: str, every: float = 0.01) -> None:
    """Polls ``cond`` (for states only observable by polling: a port accepting connections)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class RedisServer:
    """One ``redis-server``; ``kill()`` and ``start()`` it at will. Without persistence, unless
    ``aof``: then an append-only file synced at every write, kept across restarts."""

    def __init__(self, port: int | None = None, aof: bool = False) -> None:
        self.port = port or free_port()
        self.aof = aof
        self.dir = tempfile.mkdtemp(prefix="conclib-py-redis-")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.port != 6379
        # A second process on the port would fail to bind while the first answered the
        # PING below, and the first, no longer ours, would be left behind.
        assert self.proc is None or self.proc.poll() is not None, "redis-server already running"
        binary = os.environ.get("CONCLIB_REDIS_SERVER", "redis-server")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *(["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]),
             "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(self.ping, 10, f"redis-server on port {self.port}")
        except BaseException:
            # Not answering in time: killed by its PID, not left behind.
            self.kill()
            raise

    def ping(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, and wait for it: its data is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self) -> str:
        try:
            return Path(self.dir, "redis.log").read_text()[-2000:]
        except OSError:
            return ""

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RustServer:
    """The ``conclib-pyserver`` process, serving a namespace on a Redis."""

    def __init__(
        self,
        url: str,
        namespace: str,
        system: str | None = None,
        lease_ttl_ms: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.namespace = namespace
        # --exit-with-stdin: it also stops when this process dies without stopping it (its
        # end of the pipe closes), so that a killed test run leaves no server behind.
        args = [str(server_binary()), "--redis", url, "--namespace", namespace, "--exit-with-stdin"]
        if system:
            args += ["--system", system]
        if lease_ttl_ms is not None:
            args += ["--lease-ttl-ms", str(lease_ttl_ms)]
        args += extra
        self.log = tempfile.NamedTemporaryFile(prefix="conclib-pyserver-", suffix=".log", delete=False)
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env)
        self._wait_ready(60)

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while b"READY\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.stop()
                    raise AssertionError(f"conclib-pyserver did not print READY in {timeout} s: {self.stderr()}")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.stop()
                    raise AssertionError(f"conclib-pyserver exited before READY: {self.stderr()}")
                buf += chunk
        finally:
            sel.close()

    def stderr(self) -> str:
        try:
            return Path(self.log.name).read_text()[-3000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        return self.proc.returncode

    def close(self) -> None:
        self.stop()
        self.log.close()
        os.unlink(self.log.name)


class PythonHost:
    """A Python actor host serving the conformance actor (``tests/mirror_host.py``) in its own
    process: ``conf:counter``, ``conf:patient``, the group ``conf:shared`` and the pattern
    ``conf:pat:{id}``. Killed by its PID."""

    def __init__(self, url: str, namespace: str, *extra: str) -> None:
        import sys

        args = [sys.executable, str(PYTHON_DIR / "tests" / "mirror_host.py"), "--redis", url,
                "--namespace", namespace, "--exit-with-stdin", *extra]
        self.log = tempfile.NamedTemporaryFile(prefix="conclib-pyhost-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(30):
                self.close()
                raise AssertionError(f"the Python host did not print READY in 30 s: {self.stderr()}")
            line = self.proc.stdout.readline()
        finally:
            sel.close()
        if line != b"READY\n":
            self.close()
            raise AssertionError(f"the Python host did not start: {line!r} {self.stderr()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return Path(self.log.name).read_text()[-3000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def namespace() -> str:
    return f"py{os.getpid()}"


@pytest.fixture(scope="session")
def rust_server(redis_server: RedisServer, namespace: str) -> Iterator[RustServer]:
    server = RustServer(redis_server.url, namespace)
    yield server
    server.close()


@pytest.fixture(scope="session")
def url(redis_server: RedisServer, rust_server: RustServer) -> str:
    """The URL of the shared Redis, with the Rust server serving ``namespace`` on it."""
    return redis_server.url


@pytest.fixture()
def fresh_ns() -> str:
    """A namespace no server serves."""
    return f"empty-{uuid.uuid4().hex[:8]}"


def run(coro: Awaitable[T], timeout: float = 60) -> T:
    """Runs a coroutine in a new event loop, bounded, its end too: what it left running is
    cancelled until it ends, 10 s at most (``asyncio.run`` cancels it once and waits for
    ever, and on Python 3.11 a task sending redis-py commands may outlive one cancellation:
    ``conclib._tasks``), then left."""
    from conclib._tasks import stop_tasks

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # as ``asyncio.run`` does
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        try:
            left = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if left and not loop.run_until_complete(stop_tasks(left, 10.0)):
                warnings.warn(f"{sum(not t.done() for t in left)} tasks outlived the test's end, left running")
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


@pytest.fixture()
def raw_redis(redis_server: RedisServer) -> Iterator[Any]:
    """A plain blocking redis-py client of the shared Redis (an operator, or a hostile client)."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=10)
    yield r
    r.close()
