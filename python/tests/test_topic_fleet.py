"""The topics proof of issue #65, with real processes on one durable topic: 3 actor systems
(``topic_fleet system``: 4 actors in each publish from their handlers) and 2 ``ProxyClient``
processes (``topic_fleet client``: 4 tasks in each publish, and it subscribes in a group of
its own) publish 100,000 events in all, 5,000 from each of the 20 publishers; a Python subscriber process (a third group) is SIGKILLed
mid-way and started again under the same consumer name. Every group receives every event,
each publisher's in order; the restarted subscriber loses nothing (the events it had taken
and not finished come again: counted, at least once)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, target_dir

TOTAL = int(os.environ.get("CONCLIB_FLEET_EVENTS", "100000"))
PROCESSES = 5  # 3 systems and 2 clients
PER_PROCESS = 4  # publishers in each (one event at a time each: in order)
PUBLISHERS = PROCESSES * PER_PROCESS
PER_PUBLISHER = TOTAL // PUBLISHERS
# The subscriber's buffer (64) plus the batch a read may hold when the process dies.
MAX_DUPLICATES = 64 + 256 + 1

_SUBSCRIBER = """
import asyncio, sys
import conclib

async def main() -> None:
    url, namespace, topic = sys.argv[1:4]
    async with conclib.AsyncClient(url, namespace=namespace) as client:
        sub = await client.subscribe(topic, durable=True, group="py", consumer="py-1", buffer=64)
        out = sys.stdout
        out.write("ready\\n")
        out.flush()
        async for event in sub:
            # Written before the next event is asked for (which acknowledges this one).
            out.write(f"{event['from']} {event['seq']}\\n")
            out.flush()

asyncio.run(main())
"""


def fleet_binary() -> Path:
    path = target_dir() / "debug" / "topic_fleet"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "conclib-pyserver", "--bin", "topic_fleet"],
                       cwd=ROOT, check=True, timeout=1800)
    return path


class Child:
    """A child process whose standard output is read line by line, each read bounded."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"conclib-fleet-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.buf = b""
        self.eof = False

    def readline(self, timeout: float) -> str | None:
        """The next line (without its newline), or None at the end of the output; fails after
        ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.fd, selectors.EVENT_READ)
            while b"\n" not in self.buf:
                if self.eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise AssertionError(f"{self.name}: no line within {timeout} s; stderr: {self.stderr()}")
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    self.eof = True  # a last line cut by a kill is not a line
                else:
                    self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def expect(self, prefix: str, timeout: float) -> str:
        line = self.readline(timeout)
        assert line is not None and line.startswith(prefix), f"{self.name}: {line!r}; stderr: {self.stderr()}"
        return line

    def send(self, order: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{order}\n".encode())
        self.proc.stdin.flush()

    def stderr(self) -> str:
        try:
            return Path(self.log.name).read_text()[-3000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, by PID, and reap."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int:
        """Closes its standard input (it stops), then SIGKILL if it did not within ``timeout``."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop within {timeout} s")

    def close(self) -> None:
        self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass
        self.log.close()
        os.unlink(self.log.name)


# About 30 s on a 2-core machine at a load average of 17 (debug builds): the publishers, one
# event at a time each, set the pace; the subscribers keep up.
@pytest.mark.timeout(300)
def test_three_systems_two_clients_and_a_killed_python_subscriber_on_one_durable_topic(url: str) -> None:
    binary = str(fleet_binary())
    namespace = f"fleet-{uuid.uuid4().hex[:8]}"
    topic = "fleet.events"
    children: list[Child] = []

    def python_subscriber(n: int) -> Child:
        child = Child(f"py-subscriber-{n}", [sys.executable, "-c", _SUBSCRIBER, url, namespace, topic])
        children.append(child)
        child.expect("ready", 30)
        return child

    started = time.monotonic()
    try:
        subscriber = python_subscriber(1)
        def publishing(process: int) -> list[str]:  # its publishers' numbers, how many events each
            return [str(process * PER_PROCESS), str(PER_PROCESS), str(PER_PUBLISHER)]

        clients = [Child(f"client-{i}", [binary, "client", url, namespace, topic, *publishing(i), f"rust-{i}",
                                         str(TOTAL)]) for i in (3, 4)]
        systems = [Child(f"system-{i}", [binary, "system", url, namespace, topic, *publishing(i)])
                   for i in (0, 1, 2)]
        children += clients + systems
        for child in clients + systems:
            child.expect("ready", 60)
        for child in systems + clients:
            child.send("go")

        # The Python subscriber: killed after a third of the events, then started again.
        seen: set[tuple[int, int]] = set()
        duplicates = 0
        out_of_order = 0
        for incarnation in (1, 2):
            last: dict[int, int] = {}
            while len(seen) < (TOTAL // 3 if incarnation == 1 else TOTAL):
                line = subscriber.readline(30)
                assert line is not None, f"{subscriber.name} ended: {subscriber.stderr()}"
                sender, seq = (int(x) for x in line.split())
                if seq <= last.get(sender, -1):
                    out_of_order += 1
                last[sender] = seq
                if (sender, seq) in seen:
                    duplicates += 1
                seen.add((sender, seq))
            if incarnation == 1:
                subscriber.kill()  # SIGKILL mid-stream: nothing flushed, nothing acknowledged
                # What it wrote before it died was handled: it counts.
                while (line := subscriber.readline(10)) is not None:
                    sender, seq = (int(x) for x in line.split())
                    if (sender, seq) in seen:
                        duplicates += 1
                    seen.add((sender, seq))
                killed_at = len(seen)
                subscriber = python_subscriber(2)
        python_done = time.monotonic()

        # The Rust subscribers, and every publisher.
        def published(child: Child) -> int:
            words = child.expect("published ", 60).split()
            assert words[1] == str(PER_PROCESS * PER_PUBLISHER), words
            return int(words[2].removeprefix("ms="))

        publishing_ms = []
        rust_groups_ms = []
        for child in clients:
            publishing_ms.append(published(child))
            done = dict(kv.split("=") for kv in child.expect("done ", 60).split()[1:])
            assert int(done["distinct"]) == TOTAL, done
            assert int(done["out_of_order"]) == 0, done
            assert int(done["duplicates"]) == 0, done  # nobody died in these groups
            rust_groups_ms.append(int(done["ms"]))
        for child in systems:
            publishing_ms.append(published(child))
        elapsed = time.monotonic() - started

        assert seen == {(p, s) for p in range(PUBLISHERS) for s in range(PER_PUBLISHER)}
        assert out_of_order == 0
        assert duplicates <= MAX_DUPLICATES, duplicates
        print(f"topic fleet: {TOTAL} events from {PUBLISHERS} publishers in 5 processes (3 systems, 2 clients) "
              f"to 3 groups in "
              f"{elapsed:.1f} s (publishing {max(publishing_ms) / 1000:.1f} s, the Rust groups "
              f"{max(rust_groups_ms) / 1000:.1f} s, the Python group {python_done - started:.1f} s "
              f"since the processes started); the Python subscriber SIGKILLed after {killed_at}: "
              f"{duplicates} received twice, none lost")
        for child in clients + systems:
            child.send("stop")
            assert child.stop() == 0, f"{child.name}: {child.stderr()}"
    finally:
        for child in children:
            child.close()
