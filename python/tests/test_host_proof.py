"""The short form of the Python actor host's proof (``python/host_proof.py --short``): a
Python member beside a Rust member, measured, then SIGKILLed under load. It runs, stops
everything it started, and its RESULT line says no tell was lost and no URN was served
twice at once; the figures themselves are the full run's (``BENCHMARKS.md``)."""

from __future__ import annotations

import subprocess
import sys

from conftest import PYTHON_DIR, server_binary


def test_host_proof_short() -> None:
    server_binary()  # built if missing
    done = subprocess.run(
        [sys.executable, str(PYTHON_DIR / "host_proof.py"), "--short"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = done.stdout.strip().splitlines()[-1]
    assert result.startswith("RESULT "), done.stdout
    values = dict(kv.split("=", 1) for kv in result.split()[1:])
    assert values["lost"] == "0", result
    assert values["splits"] == "0", result
    assert int(values["python_urns"]) > 0, result
    assert int(values["idle_activations"]) == 2000, result
