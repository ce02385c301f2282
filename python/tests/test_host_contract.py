"""The contract of an actor written in Python, both ways: its schema (``conclib.actor_schema``)
gives typed Python handles (``conclib.stubgen``, clean under ``mypy --strict``) and Rust message
types (``conclib.rustgen``); the Rust ones, checked in as
``python/testserver/src/python_mirror.rs``, are what the schema gives now, and a Rust caller
built with them (``ask_python``) asks the Python host and gets typed answers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import PYTHON_DIR, ROOT, PythonHost, RedisServer, target_dir

from conclib import actor_schema, rustgen

sys.path.insert(0, str(PYTHON_DIR / "tests"))
from mirror_host import Mirror  # noqa: E402

RUST_FILE = PYTHON_DIR / "testserver" / "src" / "python_mirror.rs"
SOURCE = "python/tests/mirror_host.py"


def schema() -> dict[str, object]:
    return actor_schema.export({"conf:counter": Mirror})


def test_the_rust_types_are_the_schemas() -> None:
    assert rustgen.generate(schema(), source=SOURCE) == RUST_FILE.read_text(), (
        "regenerate: python -m conclib.actor_schema mirror_host:Mirror=conf:counter -o s.json; "
        "python -m conclib.rustgen s.json -o python/testserver/src/python_mirror.rs"
    )


def test_python_stubs_of_a_python_actor_pass_mypy_strict(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema()))
    api = tmp_path / "mirror_api.py"
    subprocess.run([sys.executable, "-m", "conclib.stubgen", str(path), "-o", str(api)], check=True, timeout=60)
    use = tmp_path / "use_api.py"
    use.write_text(
        "import conclib\nimport mirror_api\n\n\n"
        "async def main(client: conclib.AsyncClient) -> str:\n"
        "    counter = mirror_api.Mirror(client, 'conf:counter')\n"
        "    total: int = await counter.add(5)\n"
        "    return await counter.echo(str(total))\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(PYTHON_DIR / "pyproject.toml"), str(api), str(use)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rust_caller_asks_the_python_actor_with_generated_types(redis_server: RedisServer) -> None:
    binary = target_dir() / "debug" / "ask_python"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "conclib-pyserver", "--bin", "ask_python"], cwd=ROOT, check=True, timeout=1800)
    ns = f"contract-{uuid.uuid4().hex[:6]}"
    host = PythonHost(redis_server.url, ns)
    try:
        done = subprocess.run(
            [str(binary), "--redis", redis_server.url, "--namespace", ns], capture_output=True, text=True, timeout=60
        )
    finally:
        host.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["add 5", "echo from rust", "recorded true", "refused no"], done.stdout
