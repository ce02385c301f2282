"""The FastAPI example, run by the Rust ``fastapi_demo`` binary (debug build, built by
run_tests.sh): Redis, the actors and proxy, ``uvicorn --workers 3`` under
``conclib::apid::start_api``, HTTP load with every answer checked, then everything shut down
(the binary fails if any process of uvicorn's group outlives it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import target_dir

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def test_fastapi_demo_runs_and_cleans_up() -> None:
    binary = target_dir() / "debug" / "fastapi_demo"
    assert binary.exists(), f"{binary} is missing: cargo build -p conclib-pyserver"
    done = subprocess.run(
        [str(binary), sys.executable, "--requests", "200", "--concurrency", "8"],
        capture_output=True, text=True, timeout=100,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert result and "http_rps_actor=" in result[0] and "http_rps_plain=" in result[0], done.stdout
