"""The demo's last scene (``python/examples/demo_scene.py``, run by ``cargo xtask demo``), in
a short form: two Rust members (the demo binary, built by ``cargo test --workspace`` before
this suite runs in ``cargo xtask test``) and a Python member of ``acct:{id}``, two FastAPI
workers under uvicorn, 64 HTTP callers, the Python member SIGKILLed mid-load: no increment
lost or counted twice, no account split, every account of the killed member answered
again."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from conftest import PYTHON_DIR, RedisServer, target_dir


def test_the_demo_scene_loses_nothing_when_the_python_member_is_killed(redis_server: RedisServer) -> None:
    demo = target_dir() / "debug" / "demo"
    if not demo.is_file():
        pytest.skip(f"{demo} is not built (cargo build -p conclib-examples --bin demo)")
    pytest.importorskip("uvicorn")
    done = subprocess.run(
        [sys.executable, str(PYTHON_DIR / "examples" / "demo_scene.py"), "--redis", redis_server.url,
         "--namespace", f"scene-{uuid.uuid4().hex[:6]}", "--rust-member", str(demo), "--secs", "2", "--accounts", "64"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = dict(kv.split("=", 1) for kv in done.stdout.strip().splitlines()[-1].removeprefix("RESULT ").split())
    assert int(result["python_urns"]) > 0, done.stdout
    assert (result["lost"], result["dups"], result["splits"]) == ("0", "0", "0"), done.stdout
    # Every account of the killed member answered again (the scene waits at most 20 s).
    assert int(result["failover_ms"]) < 20_000, done.stdout
