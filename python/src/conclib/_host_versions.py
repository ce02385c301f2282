"""Mixed message versions in a pattern's group, in the Python actor host, as a Rust member's
(``conclib-redis/src/proxy/scale/versions.rs``): the members of two builds serving side by
side during a rolling upgrade.

Each member lists the messages its pattern's actor exposes, each as ``Name@version``
(``@handler(name, version=N)``, 1 by default), in the pattern's message directory
(``Keys.messages``, a hash: system → ``"Add@2 Get@1"``) as it joins the group and at each
renewal of its lease; it takes its line out as it stops. Which members are live is the
pattern's placement directory's word (``_host_placement.py``, ``live_members``): a line left
by a member that died counts for nothing. The lines order the builds (``newer``): a
stopping member hands its activations to the newest build's members only.

A Python host decodes a request of any version (MessagePack, its fields read by name). A
request for a message its actor does not expose is never refused ``UnknownMessage`` while a
live member that decodes it serves the pattern (``_host_serving.py``, ``_reroute``): it goes
to the URN's holder when another member holds it, else the URN (its activation moved there
first, its state carried, when it is live here) is handed to the member that decodes it with
the fewest activations; when none does, it is refused ``UnsupportedVersion``, as a Rust
member refuses it.
"""

from __future__ import annotations

import logging
from typing import Any

from .actor import HandlerSpec
from .protocol import Keys

__all__ = ["advertise", "line", "line_decodes", "newer", "newest", "parse_line", "that_decodes", "unlist"]

log = logging.getLogger("conclib.host")


def line(handlers: dict[str, HandlerSpec]) -> str:
    """A member's line in the message directory: ``Name@version``, space-separated (a name
    holding a space, which the line cannot hold, left out: such a message is never rerouted
    to this member)."""
    return " ".join(f"{name}@{spec.version}" for name, spec in handlers.items() if " " not in name)


def line_decodes(line: str, message: str) -> bool:
    """Whether a member whose line is ``line`` decodes ``message`` of a request a Python host
    read: sent in MessagePack, which any version of it decodes (``versions.rs``,
    ``line_decodes``, with ``other_versions``)."""
    return any(entry.rpartition("@")[0] == message for entry in line.split(" ") if "@" in entry)


def parse_line(line: str) -> dict[str, int] | None:
    """A member's line in a pattern's message directory (``Keys.messages``): its messages and
    their versions; ``None`` when it is empty or an entry is not ``Name@version``
    (``versions.rs``, ``parse_line``)."""
    out: dict[str, int] = {}
    for entry in line.split(" "):
        if not entry:
            continue
        name, at, version = entry.rpartition("@")
        if not at or not (version.isascii() and version.isdigit()) or len(version) > 10 or int(version) >= 1 << 32:
            return None
        out[name] = int(version)
    return out or None


def newer(a: str, b: str) -> bool:
    """Whether the build whose line is ``a`` is newer than the one whose line is ``b``: it has
    every message ``b`` has, each at the same version or a later one, and a message more or
    one at a later version. Lines neither of which is newer, and a line that cannot be read or
    none, are not ordered (``versions.rs``, ``newer``)."""
    pa, pb = parse_line(a), parse_line(b)
    if pa is None or pb is None:
        return False
    covers = all(pa.get(name, -1) >= vb for name, vb in pb.items())
    return covers and (len(pa) > len(pb) or any(pa[name] > vb for name, vb in pb.items()))


def newest(members: list[str], lines: dict[str, str]) -> list[str]:
    """Those of ``members`` of the newest build among them (none of the others has a newer
    line in ``lines``): mid-roll, where a stopping member hands its activations, so that none
    moves again as the rest of the old build stops (``versions.rs``, ``Builds::newest``). One
    build, or none listed: every member."""
    own = [lines.get(m, "") for m in members]
    return [m for m, mine in zip(members, own) if not any(newer(other, mine) for other in own)]


def that_decodes(counts: dict[str, int], lines: dict[str, str], message: str) -> str | None:
    """Of the live members ``counts`` (activations each; this one left out), the one whose
    line decodes ``message`` with the fewest activations, ties to the least system id
    (``versions.rs``, ``Look::choose``); ``None`` when none does."""
    able = [(n, m) for m, n in counts.items() if line_decodes(lines.get(m, ""), message)]
    return min(able)[1] if able else None


async def advertise(redis: Any, keys: Keys, system: str, prefix: str, handlers: dict[str, HandlerSpec]) -> None:
    """Writes this member's line for pattern ``prefix`` (at its start and at each renewal of
    its lease: a line another member's stop took out by mistake, or a flush, comes back)."""
    try:
        await redis.hset(keys.messages(prefix), system, line(handlers))
    except Exception as e:
        log.debug("could not write the message directory of %s: %s", prefix, e)


async def unlist(redis: Any, keys: Keys, system: str, prefix: str) -> None:
    """Takes this member's line for pattern ``prefix`` out (it stops)."""
    await redis.hdel(keys.messages(prefix), system)
