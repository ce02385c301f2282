"""The web tier's benchmark in its short form (one round of one second per endpoint and
stack): it runs, checks answers, stops everything it started and prints its RESULT line with
both stacks' figures. The figures themselves are measured by running it in full."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_bench_http_short_form() -> None:
    done = subprocess.run(
        [sys.executable, str(PYTHON_DIR / "bench_http.py"), "--rounds", "1", "--secs", "1", "--workers", "1",
         "--load", "python"],
        capture_output=True, text=True, timeout=240, cwd=PYTHON_DIR.parent,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = done.stdout.strip().splitlines()[-1]
    assert result.startswith("RESULT "), done.stdout
    figures = dict(re.findall(r"(\w+)=(\S+)", result))
    for stack in ("h11", "standard"):
        for key in ("rps_actor", "rps_plain", "actor_vs_plain", "hop_us", "hop_cpu_us", "hop_cpu_web_us"):
            assert f"http_{stack}_{key}" in figures, figures
        assert float(figures[f"http_{stack}_rps_actor"]) > 0 and float(figures[f"http_{stack}_rps_plain"]) > 0
