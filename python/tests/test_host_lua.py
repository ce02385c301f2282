"""The Python actor host runs the protocol's Lua scripts as written in
``conclib-redis/src/protocol/scripts.rs``: ``conclib/_lua.py`` is that text, copied by
``python/tools/gen_lua.py`` (one source; the Rust test ``protocol::scripts::tests::python_host_scripts``
checks the same)."""

from __future__ import annotations

import subprocess
import sys

from conftest import PYTHON_DIR


def test_the_scripts_are_the_rust_ones() -> None:
    done = subprocess.run(
        [sys.executable, str(PYTHON_DIR / "tools" / "gen_lua.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
