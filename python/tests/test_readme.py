"""The README's quick start, run as written: its server command (the block after
``<!-- quickstart -->``) from the repository root, with standard input closed and in a
session of its own, then every Python block marked ``<!-- test -->``, in order, each in a
fresh interpreter; a ``print`` line's ``# value`` comment is the output it must give. The
only change made to the text: the quick start's port (6390) becomes a free one, in the
command and in the snippets alike. Then Ctrl-C (SIGINT to the server's process group) must
stop it, with its Redis, and exit 0. Blocks marked ``<!-- test pytest -->`` are test
files: run by pytest from the repository root, without any server."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port, wait_until

README = ROOT / "python" / "README.md"
PORT = "6390"


def blocks(marker: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` that follow a line ``<!-- marker -->``."""
    text = README.read_text()
    pattern = re.compile(rf"^<!-- {re.escape(marker)} -->\n```{language}\n(.*?)^```$", re.M | re.S)
    return [m.group(1) for m in pattern.finditer(text)]


def expected_output(snippet: str) -> list[str]:
    """What the snippet's ``print(...)  # value`` lines say they print, in order."""
    return [m.group(1).strip() for m in re.finditer(r"^\s*print\(.*\)\s+# (.+)$", snippet, re.M)]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_readme_has_a_quick_start() -> None:
    assert len(blocks("quickstart", "sh")) == 1
    snippets = blocks("test", "python")
    assert len(snippets) >= 2
    for snippet in snippets:
        assert PORT in snippet, snippet
        assert expected_output(snippet), snippet
    assert blocks("test pytest", "python")


def test_the_readme_test_files_pass(tmp_path: Path) -> None:
    for i, snippet in enumerate(blocks("test pytest", "python")):
        script = tmp_path / f"test_readme_snippet{i}.py"
        script.write_text(snippet)
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, f"block {i}:\n{snippet}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    (command,) = blocks("quickstart", "sh")
    command = command.strip()
    assert command.startswith("cargo run -p conclib-pyserver -- "), command
    port = free_port()
    server = subprocess.Popen(
        ["bash", "-c", command.replace(PORT, str(port))],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(tmp_path / "server.log", "wb"),
        start_new_session=True, env=dict(os.environ, RUST_LOG="warn"),
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 600  # cargo may have to build it
        sel = selectors.DefaultSelector()
        sel.register(server.stdout, selectors.EVENT_READ)
        out = b""
        while b"READY\n" not in out:
            left = deadline - time.monotonic()
            assert left > 0 and sel.select(left), (tmp_path / "server.log").read_text()[-3000:]
            chunk = os.read(server.stdout.fileno(), 4096)
            assert chunk, f"the server exited: {(tmp_path / 'server.log').read_text()[-3000:]}"
            out += chunk
        sel.close()
        # Its standard input is /dev/null: still serving a moment later.
        time.sleep(0.5)
        assert server.poll() is None

        for i, snippet in enumerate(blocks("test", "python")):
            script = tmp_path / f"snippet{i}.py"
            script.write_text(snippet.replace(PORT, str(port)))
            done = subprocess.run(
                [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 0, f"snippet {i}:\n{snippet}\n{done.stdout}\n{done.stderr}"
            assert done.stdout.splitlines() == expected_output(snippet), f"snippet {i}:\n{snippet}"
    finally:
        # Ctrl-C, as in a terminal: SIGINT to the whole foreground group.
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
            raise
    assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    # Its Redis stopped with it.
    wait_until(lambda: not port_in_use(port), 10, f"port {port} to be free")


def test_the_server_answers_help() -> None:
    from conftest import server_binary

    done = subprocess.run([str(server_binary()), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for flag in ("--start-redis", "--redis", "--namespace", "--system", "--lease-ttl-ms", "--exit-with-stdin",
                 "--export-schema"):
        assert flag in done.stdout
    wrong = subprocess.run([str(server_binary()), "--nope"], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "unknown argument" in wrong.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_the_server_runs_until_a_signal_whatever_its_stdin(redis_server: object, stop: signal.Signals) -> None:
    """Without ``--exit-with-stdin``, standard input closed at once (``< /dev/null``,
    ``nohup``, systemd) does not stop it; SIGTERM and SIGINT do, exit code 0."""
    from conftest import RedisServer, server_binary

    assert isinstance(redis_server, RedisServer)
    server = subprocess.Popen(
        [str(server_binary()), "--redis", redis_server.url, "--namespace", f"stdin{stop.value}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline() == b"READY\n"
        time.sleep(1.0)
        assert server.poll() is None, "it exited when its standard input ended"
        server.send_signal(stop)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
