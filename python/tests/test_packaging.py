"""The distribution as the package index would take it: ``python -m build`` makes an sdist
and a wheel named ``conclib-actors`` (the import name stays ``conclib``), ``twine check
--strict`` accepts both, and the wheel carries the package, its ``py.typed`` and no tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_build_and_twine_check(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(tmp_path), str(PYTHON_DIR)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheels = list(tmp_path.glob("*.whl"))
    sdists = list(tmp_path.glob("*.tar.gz"))
    assert [w.name for w in wheels] == ["conclib_actors-0.1.0-py3-none-any.whl"], wheels
    assert [s.name for s in sdists] == ["conclib_actors-0.1.0.tar.gz"], sdists

    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists)],
        capture_output=True, text=True, timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout

    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        metadata = wheel.read("conclib_actors-0.1.0.dist-info/METADATA").decode()
    assert "conclib/__init__.py" in names and "conclib/py.typed" in names
    assert not [n for n in names if n.startswith("tests/")], names
    assert "Name: conclib-actors" in metadata
    assert "Description-Content-Type: text/markdown" in metadata
