"""Writes ``src/conclib/_lua.py``: the Lua scripts of ``conclib-redis/src/protocol/scripts.rs`` and
``conclib-redis/src/reminders/scripts.rs`` that the Python actor host runs, copied verbatim
(one source: the Rust constants). Checked by ``tests/test_host_lua.py`` and by the Rust tests
``protocol::scripts::tests::python_host_scripts`` and ``reminders::scripts::tests::python_host_scripts``.

    python python/tools/gen_lua.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "conclib-redis" / "src" / "protocol" / "scripts.rs"
REMINDERS = ROOT / "conclib-redis" / "src" / "reminders" / "scripts.rs"
TARGET = ROOT / "python" / "src" / "conclib" / "_lua.py"

# The scripts the host runs, by their Rust names.
NAMES = [
    "CLAIM_SCRIPT",
    "CLAIM_MANY_SCRIPT",
    "RELEASE_SCRIPT",
    "FREE_GONE_URN_SCRIPT",
    "SYSTEM_LEASE_SCRIPT",
    # Not a script: the mark of a whole record of URN keys given away, which the Python host
    # keeps with SYSTEM_LEASE_SCRIPT as the Rust proxy does (one text for both).
    "GIVEN_WHOLE",
    "ANSWER_SCRIPT",
    "FORWARD_SCRIPT",
    "PLACEMENT_REPORT_SCRIPT",
    "PLACEMENT_READ_SCRIPT",
    "PLACE_SCRIPT",
    "GROUP_FORGET_SCRIPT",
    "TAKE_OVER_SCRIPT",
    "CLOSE_DRAINED_SCRIPT",
    "STATE_SAVE_SCRIPT",
    "STATE_CLOSE_SCRIPT",
    "CARRIED_OPEN_SCRIPT",
    "CARRY_SCRIPT",
    "HAND_URN_SCRIPT",
]

# The reminder poller's scripts (its claims, acknowledgements, renewals, give-backs and
# reports), by their Rust names; written as ``REMINDER_{name}``.
REMINDER_NAMES = ["CLAIM", "ACK", "RELEASE", "RENEW", "REPORT"]


def scripts(source: str, names: list[str], path: Path, prefix: str = "") -> dict[str, str]:
    """The constants of ``source`` (the file at ``path``) named in ``names``, each a raw string
    or a ``concat!`` of raw strings and macros standing for one (``hand_urn_lua!()``), by
    their names with ``prefix``."""
    out = {}
    for name in names:
        m = re.search(rf'pub\(crate\) const {name}: &str = r"(.*?)";\n', source, re.S)
        if m is not None:
            out[prefix + name] = m.group(1)
            continue
        m = re.search(rf"pub\(crate\) const {name}: &str = concat!\((.*?)\);\n", source, re.S)
        if m is None:
            raise SystemExit(f"{name} is neither a raw-string constant of {path} nor a concat! of them")
        out[prefix + name] = "".join(concat_part(source, part, path) for part in parts(m.group(1)))
    return out


# An argument of a ``concat!``: a raw string, or a call of a macro without arguments.
CONCAT_PART = re.compile(r'\s*(r"(?:.*?)"|[a-z_]+!\(\))\s*,?', re.S)


def parts(args: str) -> list[str]:
    """The arguments of a ``concat!`` (``CONCAT_PART``); any other text stops the script."""
    if CONCAT_PART.sub("", args).strip():
        raise SystemExit(f"a concat! this script does not read: {args[:80]!r}")
    return CONCAT_PART.findall(args)


def concat_part(source: str, part: str, path: Path) -> str:
    """A ``concat!`` argument's text: a raw string's, or the raw string a macro of ``source``
    (``macro_rules! name { () => { r"..." }; }``) stands for."""
    if part.startswith('r"'):
        return part[2:-1]
    name = part[:-3]
    m = re.search(rf'macro_rules! {name} \{{\n    \(\) => \{{\n        r"(.*?)"\n    \}};\n\}}', source, re.S)
    if m is None:
        raise SystemExit(f"macro {name} is not a raw string of {path}")
    return m.group(1)


def render(found: dict[str, str]) -> str:
    lines = [
        '"""The Lua scripts of the wire protocol and the reminders the Python actor host runs:',
        "copied verbatim from ``conclib-redis/src/protocol/scripts.rs`` and",
        "``conclib-redis/src/reminders/scripts.rs`` by ``python/tools/gen_lua.py`` (do not edit;",
        'the tests fail when they differ)."""',
        "",
        "from typing import Final",
        "",
    ]
    for name, text in found.items():
        lines.append(f"{name}: Final = {text!r}")
    return "\n".join(lines) + "\n"


def main() -> None:
    found = scripts(PROTOCOL.read_text(), NAMES, PROTOCOL)
    found.update(scripts(REMINDERS.read_text(), REMINDER_NAMES, REMINDERS, "REMINDER_"))
    text = render(found)
    if "--check" in sys.argv:
        if TARGET.read_text() != text:
            raise SystemExit(f"{TARGET} differs from {PROTOCOL} or {REMINDERS}: run python/tools/gen_lua.py")
        return
    TARGET.write_text(text)


if __name__ == "__main__":
    main()
