"""Fork safety: a client connected in a parent keeps working in forked workers (each with
connections and a reply list of its own), and the parent keeps working during and after them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import conclib
from conftest import run


@pytest.mark.parametrize("mode", ["blocking", "async"])
def test_forked_workers(url: str, namespace: str, mode: str) -> None:
    app = Path(__file__).with_name("fork_app.py")
    done = subprocess.run(
        [sys.executable, str(app), url, namespace, mode, "3"],
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["parent_during"] and report["parent_after"], report
    if mode == "blocking":  # one loop thread: one session, one reply list
        assert report["parent_key"] == report["parent_key_after"]
    # (async: each asyncio.run is a new event loop, hence a new session and reply list)
    keys = {report["parent_key"]}
    for child in report["children"]:
        assert child["ok"], child
        assert child["status"] == 0, child
        keys.add(child["key"])
    # Every process read its own reply list.
    assert len(keys) == 4, report
    assert "Traceback" not in done.stderr, done.stderr


def test_an_async_client_moves_to_a_new_event_loop(url: str, namespace: str) -> None:
    client = conclib.AsyncClient(url, namespace=namespace)

    async def ask(n: int) -> tuple[Any, Any]:
        return await client.ask("py:shapes", "Double", n), client.reply_key

    first, key1 = run(ask(1))
    second, key2 = run(ask(2))  # another asyncio.run: another loop, reconnected
    run(client.close())
    assert (first, second) == (2, 4)
    assert key1 != key2
