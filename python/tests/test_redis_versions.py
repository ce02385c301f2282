"""The range of redis-py majors the package declares (``redis>=5,<9``) is tested at both
ends: this run has the newest major the range allows (what ``pip install`` picks), and a
second venv (``target/python-venv-redis5``, made once) has the oldest, ``redis==5.0.*``, and
runs a part of this suite with it: the asks, pattern resolution (redis-py's commands), a
Redis restart and the fakes. That venv has no ``hiredis``: there the client parses replies
in Python, here (a dependency of the package on CPython) with hiredis."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PYTHON_DIR, target_dir

OLDEST = "redis==5.0.*"
SUBSET = ["tests/test_actors.py", "tests/test_pattern.py", "tests/test_restart.py", "tests/test_fake.py"]


def declared() -> tuple[int, int]:
    """The declared range's lowest major and its exclusive upper bound."""
    text = (PYTHON_DIR / "pyproject.toml").read_text()
    found = re.search(r'"redis>=(\d+),<(\d+)"', text)
    assert found, "pyproject.toml declares redis>=N,<M"
    return int(found.group(1)), int(found.group(2))


def test_this_run_has_the_newest_major_allowed() -> None:
    import redis

    from conclib._raw import HIREDIS

    assert HIREDIS, "the package's dependencies install hiredis: the hot path's replies parsed by it here"

    low, high = declared()
    assert int(redis.__version__.split(".")[0]) == high - 1, redis.__version__


@pytest.mark.timeout(1200)  # making the venv downloads packages (once)
def test_the_oldest_supported_redis_py_passes() -> None:
    low, _ = declared()
    assert OLDEST.startswith(f"redis=={low}.")
    venv = target_dir() / f"python-venv-redis{low}"
    wanted = [OLDEST, "msgpack>=1.0", "pytest>=7.4", "pytest-timeout>=2.2", "fastapi>=0.110", "httpx>=0.24",
              "opentelemetry-api>=1.20", "prometheus_client>=0.17"]
    stamp = venv / f".installed-{hashlib.sha1(' '.join(wanted).encode()).hexdigest()[:12]}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *wanted],
            capture_output=True, text=True, timeout=900,
        )
        if done.returncode != 0:
            pytest.fail(f"could not install {OLDEST}: {done.stderr[-2000:]}")
        stamp.touch()
    python = str(venv / "bin" / "python")
    version = subprocess.run(
        [python, "-c", "import redis; print(redis.__version__)"], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    assert version.startswith(f"{low}.0."), version
    # This checkout's package, from its source (as the editable install of the main venv).
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR / "src"))
    parser = subprocess.run(
        [python, "-c", "import conclib._raw as r; print(r.HIREDIS)"], env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert parser.stdout.strip() == "False", parser.stdout + parser.stderr  # the Python parser runs there
    done = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SUBSET],
        cwd=PYTHON_DIR, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary, summary


@pytest.mark.timeout(600)  # pip fetches setuptools for the isolated build
def test_the_package_builds_without_warnings(tmp_path: Path) -> None:
    """The wheel's metadata: an SPDX license expression (``license = "..."``: no setuptools
    deprecation warning), the declared redis-py range, hiredis on CPython."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", str(PYTHON_DIR), "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Deprecat" not in done.stdout + done.stderr, [
        line for line in (done.stdout + done.stderr).splitlines() if "eprecat" in line
    ]
    import zipfile

    (wheel,) = tmp_path.glob("conclib_actors-*.whl")
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT OR Apache-2.0" in metadata
    assert "Requires-Dist: redis<9,>=5" in metadata
    assert 'Requires-Dist: hiredis>=2; platform_python_implementation == "CPython"' in metadata, metadata
