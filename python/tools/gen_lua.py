"""Writes ``src/conclib/_lua.py``: the Lua scripts of ``conclib-redis/src/protocol.rs`` that
the Python actor host runs, copied verbatim (one source: the Rust constants). Checked by
``tests/test_host_lua.py`` and by the Rust test ``protocol::tests::python_host_scripts``.

    python python/tools/gen_lua.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "conclib-redis" / "src" / "protocol.rs"
TARGET = ROOT / "python" / "src" / "conclib" / "_lua.py"

# The scripts the host runs, by their Rust names.
NAMES = [
    "CLAIM_SCRIPT",
    "CLAIM_MANY_SCRIPT",
    "RELEASE_SCRIPT",
    "FREE_GONE_URN_SCRIPT",
    "ANSWER_SCRIPT",
    "FORWARD_SCRIPT",
    "PLACEMENT_REPORT_SCRIPT",
    "GROUP_FORGET_SCRIPT",
    "TAKE_OVER_SCRIPT",
    "STATE_OPEN_SCRIPT",
    "STATE_SAVE_SCRIPT",
    "STATE_CLOSE_SCRIPT",
]


def scripts(source: str) -> dict[str, str]:
    """The raw-string constants of ``protocol.rs`` named in ``NAMES``."""
    out = {}
    for name in NAMES:
        m = re.search(rf'pub\(crate\) const {name}: &str = r"(.*?)";\n', source, re.S)
        if m is None:
            raise SystemExit(f"{name} is not a raw-string constant of {PROTOCOL}")
        out[name] = m.group(1)
    return out


def render(found: dict[str, str]) -> str:
    lines = [
        '"""The Lua scripts of the wire protocol the Python actor host runs: copied verbatim from',
        "``conclib-redis/src/protocol.rs`` by ``python/tools/gen_lua.py`` (do not edit; the tests",
        'fail when the two differ)."""',
        "",
        "from typing import Final",
        "",
    ]
    for name, text in found.items():
        lines.append(f"{name}: Final = {text!r}")
    return "\n".join(lines) + "\n"


def main() -> None:
    text = render(scripts(PROTOCOL.read_text()))
    if "--check" in sys.argv:
        if TARGET.read_text() != text:
            raise SystemExit(f"{TARGET} differs from {PROTOCOL}: run python/tools/gen_lua.py")
        return
    TARGET.write_text(text)


if __name__ == "__main__":
    main()
