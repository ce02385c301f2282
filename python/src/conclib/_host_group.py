"""A Python host's upkeep of the groups it is a member of, as the Rust members keep theirs
(``proxy/scale/group.rs``, ``takeover.rs``): the requests pending on members that are gone
claimed (their member lease lapsed, or names a dead process of this host), the requests a
gone member left in its own stream taken over, and this member's own pending list read
again when it holds more than this instance has in flight."""

from __future__ import annotations

import logging
from typing import Any

from ._host_lane import GROUP, Lane
from ._host_lease import lease_gone
from .protocol import Keys

__all__ = ["claim_from_gone", "more_pending", "take_over_gone"]

log = logging.getLogger("conclib.host")


async def claim_from_gone(redis: Any, scripts: Any, keys: Keys, lane: Lane) -> None:
    """Claims the entries pending on members of ``lane``'s group that are gone, then
    forgets their consumers (if nothing is pending on them any more)."""
    for key in lane.keys:
        try:
            summary = await redis.xpending(key, GROUP)
        except Exception:
            continue
        for c in summary.get("consumers") or []:
            name = c["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if name == lane.consumer:
                continue
            if not await lease_gone(redis, scripts.release, keys.member(lane.name, name)):
                continue
            claimed = await _claim_entries_of(redis, key, name, lane.consumer)
            if claimed:
                log.info("claimed %d requests of gone member %s", claimed, name)
                lane.reread = True
            await scripts.forget(keys=[key], args=[GROUP, name])


async def more_pending(redis: Any, lane: Lane) -> bool:
    """Whether entries are pending on ``lane``'s consumer while it has none in flight: left
    by an earlier instance of this system (paused, replaced), or placed here by another
    member whose wake-up went astray. They are read again."""
    pending = 0
    for key in lane.keys:
        pending += len(await redis.xpending_range(key, GROUP, "-", "+", 1, consumername=lane.consumer))
    return pending > 0 and not lane.in_flight


# How long an entry pending on a gone member must have been idle before it is claimed: it
# only has to outlast the gap between another member's XPENDING and its XCLAIM (a claim
# resets the idle time), as the Rust members' (``scale/group.rs``).
CLAIM_MIN_IDLE_MS = 100


async def _claim_entries_of(redis: Any, key: str, gone: str, me: str) -> int:
    """Claims the entries pending on consumer ``gone`` (idle a while: two members claiming
    at once do not take them from each other)."""
    claimed = 0
    for _ in range(100):
        pending = await redis.xpending_range(key, GROUP, "-", "+", 100, consumername=gone, idle=CLAIM_MIN_IDLE_MS)
        ids = [p["message_id"] for p in pending]
        if not ids:
            break
        got = await redis.xclaim(key, GROUP, me, CLAIM_MIN_IDLE_MS, ids, justid=True)
        claimed += len(got or [])
        if len(ids) < 100:
            break
    return claimed


async def take_over_gone(redis: Any, scripts: Any, keys: Keys, prefix: str, me: str, lease_ms: int, urn_ttl_ms: int) -> int:
    """Moves the requests that members gone from pattern ``prefix``'s directory left in
    their own streams to this member's stream, their URN keys given to this member (a Python
    member activates what it takes: no placement rule), with the protocol's takeover script,
    as the Rust members do (``proxy/scale/takeover.rs``). Returns how many moved."""
    moved = 0
    group = f"~{prefix}*"
    for raw in await redis.hkeys(keys.placement(prefix)):
        system = raw.decode() if isinstance(raw, bytes) else raw
        if system == me or not await lease_gone(redis, scripts.release, keys.lease(system)):
            continue
        if await scripts.claim(keys=[keys.takeover(system, prefix)], args=[me, lease_ms]) != 1:
            continue  # another member moves them
        stream = keys.requests(system)
        start = "-"
        for _ in range(64):
            entries = await redis.xrange(stream, start, "+", count=256)
            if not entries:
                break
            urns = sorted({
                u for _, f in entries
                if (u := (f.get(b"urn") or b"").decode("utf-8", "replace")).startswith(prefix)
                and len(u) > len(prefix) and ":" not in u[len(prefix):]
            })
            first, last = entries[0][0], entries[-1][0]
            if urns:
                got = await scripts.take_over(
                    keys=[stream, keys.requests(group), keys.lease(system), keys.given(system), *(keys.urn(u) for u in urns), keys.requests(me)],
                    args=[GROUP, prefix, system, first, last, urn_ttl_ms, len(urns), *urns, *([1] * len(urns)), me],
                )
                if not got or got[0] < 0:
                    break
                moved += got[0]
            if len(entries) < 256:
                break
            start = "(" + (last.decode() if isinstance(last, bytes) else last)
        if moved:
            log.info("moved %d requests of gone member %s for %s", moved, system, prefix)
    return moved
