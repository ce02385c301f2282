"""A host's writes that must survive a promotion of a lagging replica (an activation's claim
of its URN, its state store's fence, state and exactly-once record), followed by ``WAIT`` on
the connection that wrote them when the host's ``durability`` asks for replicas, as a Rust
member's ``ProxyConfig::durability`` does (the crate docs, "Redis topologies and
durability"). The write and its ``WAIT`` leave in one pipeline: a ``WAIT`` counts the writes
of its own connection only.
"""

from __future__ import annotations

from typing import Any

from .durability import Durability
from .errors import NotReplicated

__all__ = ["written"]


async def written(
    redis: Any, durability: Durability, script: Any, keys: list[Any], args: list[Any]
) -> tuple[Any, NotReplicated | None]:
    """Runs ``script`` and, at a level asking for replicas, ``WAIT``: the script's answer,
    and the error to raise if the write counts only once the replicas hold it (fewer
    acknowledged it in time), for the caller to raise after its own checks of the answer (a
    fenced write is refused whatever the replicas)."""
    if durability.n == 0:
        return await script(keys=keys, args=args), None
    pipe = redis.pipeline(transaction=False)
    await script(keys=keys, args=args, client=pipe)
    pipe.execute_command("WAIT", durability.n, max(1, round(durability.timeout * 1000)))
    got, acked = await pipe.execute()
    short = None if int(acked) >= durability.n else NotReplicated(int(acked), durability.n, durability.timeout)
    return got, short
