"""Placement in the Python actor host, as a Rust member's (``conclib-redis/src/proxy/scale/
placement.rs``, ``placement_rule.rs``): which member of a pattern's group activates a URN
nobody holds yet, decided by the member that reads its first request from the group's
stream, among the members live in the pattern's directory (``{ns}:placement:{prefix}``,
where every member, Rust or Python, writes its count of activations).

- ``spread`` (the default, as Rust's ``Placement::Spread``): the member with the fewest
  activations of the pattern, ties broken by a hash of the URN (the same hash as Rust's, so
  that Rust and Python members reading first requests of one URN at once choose alike);
- ``hash`` (``Placement::HashOfUrn``): the member of highest rendezvous weight for the URN;
- ``here``: the member that read it (no placement).

Another member chosen, the entry is moved to that member's pending list and a wake-up entry
appended to its system's stream in one step (the protocol's ``PLACE_SCRIPT``); a Python
member woken so reads its pending list (``_host_request.Placed``). An entry is placed only
when first read: one read from a pending list is activated by whoever holds it. The claim of
the URN key still decides: a placement never makes two activations.

A stopping member hands each of its activations to the member ``stop_targets`` picks, as a
drained Rust member does (its URN key given with ``HAND_URN_SCRIPT``; ``host.py``, ``stop``).

Not offered: Rust's ``Random``, ``PreferAsker``, ``Custom``, and rebalancing (a Python member
passivating its excess for a newcomer); a Python member receives URNs a Rust member's
rebalancing hands it (their URN keys name it: its next request is activated here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from ._host_lane import GROUP, Lane
from ._host_lease import lease_gone
from ._host_patterns import Pattern
from ._host_request import Request
from ._host_versions import newest
from .protocol import Keys, pattern_group, text, wake_up

__all__ = [
    "HELD", "HERE", "PLACED", "PLACEMENTS", "choose", "hand_to", "listed_members", "live_members", "place",
    "place_waiting", "stop_targets", "weight",
]

log = logging.getLogger("conclib.host")

PLACEMENTS: Final = ("spread", "hash", "here")

_M64 = (1 << 64) - 1


def weight(system: str, urn: str) -> int:
    """Rendezvous weight of ``system`` for ``urn``: FNV-1a (64 bits) of the system id, a 0xff
    byte and the URN, through splitmix64's finalizer (``placement_rule.rs``'s ``weight``)."""
    h = 0xCBF29CE484222325
    for b in system.encode() + b"\xff" + urn.encode():
        h ^= b
        h = (h * 0x100000001B3) & _M64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


def choose(placement: str, urn: str, members: list[tuple[str, int]]) -> str | None:
    """The system to activate ``urn`` among ``members`` (system id, activations), or
    ``None`` (the reader)."""
    if not members or placement == "here":
        return None
    if placement == "hash":
        return max(members, key=lambda m: weight(m[0], urn))[0]
    least = min(n for _, n in members)
    return max((m for m in members if m[1] == least), key=lambda m: weight(m[0], urn))[0]


# What ``place`` answers when the URN is held already: nothing to place, and nothing this
# member is about to activate (its claim finds the holder and passes the requests on).
HELD: Final = ""

# ``place_waiting``'s outcomes besides ``HELD``: the requests placed on another member, or
# left to activate here.
PLACED: Final = "placed"
HERE: Final = "here"


async def place(redis: Any, scripts: Any, keys: Keys, prefix: str, urn: str, system: str, own: Callable[[], int], placement: str) -> str | None:
    """The other member chosen to activate ``urn`` (``None``: here; also when the directory
    lists no other member, the member chosen is gone (it died: it stays listed until its
    count lapses), or Redis did not answer: the claim decides; ``HELD`` when the URN is held
    already). ``own()``: this member's count of activations when the directory is read,
    those it is making included (fresher than its entry: a burst of first requests read at
    once is spread as it is decided)."""
    if placement == "here":
        return None
    try:
        pipe = redis.pipeline(transaction=False)
        pipe.get(keys.urn(urn))
        await scripts.read_directory(keys=[keys.placement(prefix)], client=pipe)
        holder, listed = await pipe.execute()
    except Exception as e:
        log.debug("could not read the directory of %s: %s; activating here", prefix, e)
        return None
    if holder is not None:
        return HELD
    members = listed_members(listed)
    members[system] = own()
    if len(members) < 2:
        return None
    chosen = choose(placement, urn, sorted(members.items()))
    if chosen is None or chosen == system:
        return None
    # A member that died stays listed until its last count lapses (a lease): a request placed
    # on it would wait for the others to claim it back from the gone member.
    if await lease_gone(redis, scripts.release, keys.member(pattern_group(prefix), chosen)):
        return None
    return chosen


def listed_members(listed: Any) -> dict[str, int]:
    """The members a read of a pattern's directory (``PLACEMENT_READ_SCRIPT``) lists live, with
    their counts of activations."""
    members: dict[str, int] = {}
    flat = list(listed or [])
    for name, count in zip(flat[::2], flat[1::2]):
        try:
            members[text(name)] = int(count)
        except (TypeError, ValueError):
            continue
    return members


async def live_members(
    redis: Any, scripts: Any, keys: Keys, pattern: Pattern, system: str
) -> tuple[dict[str, int], dict[str, str]] | None:
    """The live members of ``pattern`` other than ``system``, with their counts of
    activations, and the pattern's message directory (member → line, ``_host_versions.py``);
    ``None`` when Redis did not answer."""
    try:
        pipe = redis.pipeline(transaction=False)
        await scripts.read_directory(keys=[keys.placement(pattern.prefix)], client=pipe)
        pipe.hgetall(keys.messages(pattern.prefix))
        listed, lines = await pipe.execute()
        counts = listed_members(listed)
        counts.pop(system, None)
        # A member that died stays listed until its last count lapses (``place``).
        for m in list(counts):
            if await lease_gone(redis, scripts.release, keys.member(pattern.group, m)):
                del counts[m]
    except Exception as e:
        log.debug("could not read the directory of %s: %s", pattern.prefix, e)
        return None
    return counts, {text(k): text(v) for k, v in (lines or {}).items()}


async def stop_targets(
    redis: Any, scripts: Any, keys: Keys, pattern: Pattern, system: str, urns: list[str]
) -> dict[str, str]:
    """The member each of ``urns`` (live on this stopping host) is handed to, as a drained Rust
    member chooses (``proxy/drain.rs``, ``choose_targets``): by the pattern's placement among
    the other live members of the newest build among them, each choice counted. A URN left
    out (the directory not read, no other live member, placement ``here``) has its key
    released, and its next request places it."""
    if not urns or pattern.placement == "here":
        return {}
    live = await live_members(redis, scripts, keys, pattern, system)
    if live is None:
        return {}
    counts, lines = live
    members = {m: counts[m] for m in newest(sorted(counts), lines)}
    out: dict[str, str] = {}
    for urn in urns:
        chosen = choose(pattern.placement, urn, sorted(members.items()))
        if chosen is not None:
            out[urn] = chosen
            members[chosen] += 1
    return out


async def hand_to(scripts: Any, keys: Keys, lane: Lane, req: Request, target: str, group: str) -> int:
    """Moves ``req``'s entry to member ``target``'s pending list and wakes it (one script):
    1 placed, -1 no longer pending here (another member claimed it), 0 not placed."""
    try:
        got = await scripts.place(
            keys=[req.stream, keys.requests(target)],
            args=[GROUP, lane.consumer, req.entry, target, *wake_up(group)],
        )
    except Exception as e:
        log.debug("could not place %s on %s: %s", req.urn, target, e)
        return 0
    return int(got) if got in (1, -1) else 0


async def place_waiting(
    redis: Any, scripts: Any, keys: Keys, system: str, pattern: Pattern, urn: str,
    activating: dict[str, list[tuple[Lane, Request, Any, Any]]],
) -> str:
    """Places the requests waiting for ``urn``'s activation (``activating[urn]``) that were
    read first from the group's stream on the member the pattern's placement chooses, if
    another one: ``PLACED`` when none is left to activate here, ``HELD`` when the URN is held
    already (its claim here finds the holder), else ``HERE`` (those read from a pending list,
    or not placed)."""
    if not any(req.first for _, req, _, _ in activating.get(urn, [])):
        return HERE
    chosen = await place(
        redis, scripts, keys, pattern.prefix, urn, system, lambda: len(pattern.live) + pattern.making, pattern.placement
    )
    if chosen == HELD:
        return HELD
    if chosen is None:
        return HERE
    waiting = list(activating.get(urn, []))
    kept = []
    for item in waiting:
        lane, req = item[0], item[1]
        if req.first and await hand_to(scripts, keys, lane, req, chosen, pattern.group) != 0:
            lane.settle(req)
        else:
            kept.append(item)
    # Those that came while placing are kept too.
    rest = kept + activating.get(urn, [])[len(waiting):]
    if rest:
        activating[urn] = rest
        return HERE
    activating.pop(urn, None)
    return PLACED
