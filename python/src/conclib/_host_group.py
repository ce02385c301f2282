"""A Python host's upkeep of the groups it is a member of, as the Rust members keep theirs
(``proxy/scale/group.rs``, ``takeover.rs``): the requests pending on members that are gone
claimed (their member lease lapsed, or names a dead process of this host), the requests a
gone member left in its own stream taken over, this member's own pending list read
again when it holds more than this instance has in flight, and, as it stops, what is left
in its own stream moved to the members that serve those URNs now."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from ._host_lane import GROUP, Lane
from ._host_lease import lease_gone
from .protocol import Keys, pattern_group

__all__ = ["claim_from_gone", "close_drained", "more_pending", "sweep_own_stream", "take_over_gone"]

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
    """Whether more entries are pending on ``lane``'s consumer than it has in hand: left by
    an earlier instance of this system (paused, replaced), or placed here by another member
    whose wake-up went astray. They are read again, also while others are in flight: a
    member under load always has some (``tests/test_host_placement.py``)."""
    for key in lane.keys:
        summary = await redis.xpending(key, GROUP)
        mine = 0
        for c in summary.get("consumers") or []:
            name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
            if name == lane.consumer:
                mine = int(c["pending"])
        held = sum(1 for stream, _ in lane.in_flight | lane.acking if stream == key)
        if mine > held:
            return True
    return False


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
    for raw in await redis.hkeys(keys.placement(prefix)):
        system = raw.decode() if isinstance(raw, bytes) else raw
        if system == me or not await lease_gone(redis, scripts.release, keys.lease(system)):
            continue
        if await scripts.claim(keys=[keys.takeover(system, prefix)], args=[me, lease_ms]) != 1:
            continue  # another member moves them

        async def to_me(urns: list[str]) -> list[tuple[str, str]]:
            return [(u, me) for u in urns]

        got = await _move_requests(redis, scripts, keys, prefix, system, keys.lease(system), urn_ttl_ms, to_me)
        if got:
            log.info("moved %d requests of gone member %s for %s", got, system, prefix)
        moved += got
    return moved


async def sweep_own_stream(redis: Any, scripts: Any, keys: Keys, prefix: str, me: str, urn_ttl_ms: int) -> int:
    """Moves what is left unacknowledged in this stopping host's own stream for pattern
    ``prefix``'s URNs to the streams of the members their URN keys name, else to the
    pattern's group's stream, as a drained Rust member sweeps its stream
    (``proxy/drain.rs``): nothing sent to this member is left for a successor that may never
    come. Its lanes stopped reading first. Returns how many moved."""

    async def to_holders(urns: list[str]) -> list[tuple[str, str]]:
        if not urns:
            return []
        held = await redis.mget([keys.urn(u) for u in urns])
        out = []
        for urn, h in zip(urns, held):
            holder = h.decode() if isinstance(h, bytes) else h
            if holder is not None and holder != me:
                out.append((urn, holder))
        return out

    # The lease checked is a key that never exists: this host stopped reading its stream,
    # which is what the script's check stands for (the Rust drain's sweep alike).
    return await _move_requests(redis, scripts, keys, prefix, me, keys.lease(me) + ":drained", urn_ttl_ms, to_holders)


async def close_drained(redis: Any, scripts: Any, keys: Keys, me: str) -> bool:
    """Deletes this stopping host's own stream if nothing waits in it (the protocol's
    ``CLOSE_DRAINED_SCRIPT``): a client that appends there afterwards finds it gone and looks
    the URN up again. Whether it is gone."""
    return bool(await scripts.close_drained(keys=[keys.requests(me)], args=[GROUP]) == 1)


async def _move_requests(
    redis: Any, scripts: Any, keys: Keys, prefix: str, system: str, lease_key: str, urn_ttl_ms: int,
    choose: Callable[[list[str]], Awaitable[list[tuple[str, str]]]],
) -> int:
    """Moves the unacknowledged requests for ``prefix``'s URNs out of ``system``'s stream, a
    batch at a time, with the protocol's takeover script: each URN ``choose`` pairs with a
    member to that member's stream (its key given to it), the others to the pattern's
    group's stream. The one walk of a system's stream for a takeover and a stop's sweep, as
    the Rust ``takeover::move_requests``. Returns how many moved."""
    moved = 0
    group = pattern_group(prefix)
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
        # Run on a batch without a URN of the pattern too: the script deletes the wake-up
        # entries, which would keep a stopping host's stream from being deleted.
        chosen = await choose(urns)
        members = sorted({m for _, m in chosen})
        at = {m: i + 1 for i, m in enumerate(members)}  # the script's 1-based indexes
        got = await scripts.take_over(
            keys=[stream, keys.requests(group), lease_key, keys.given(system),
                  *(keys.urn(u) for u, _ in chosen), *(keys.requests(m) for m in members)],
            args=[GROUP, prefix, system, first, last, urn_ttl_ms, len(chosen), *(u for u, _ in chosen),
                  *(at[m] for _, m in chosen), *members],
        )
        if not got or got[0] < 0:
            break
        moved += got[0]
        if len(entries) < 256:
            break
        start = "(" + (last.decode() if isinstance(last, bytes) else last)
    return moved
