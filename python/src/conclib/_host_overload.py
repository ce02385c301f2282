"""Overload in the Python actor host, as in a Rust member (``ProxyConfig::overload``; the
``conclib-redis`` crate docs, "Overload"): every limit off by default.

- **Pending limits** (``HostConfig.max_pending_per_urn``, ``HostConfig.max_pending``): the
  requests read and not yet answered, for a URN (queued in its mailbox, being handled, or
  waiting for its activation) and for the whole host (every lane's). A request past a
  limit is refused as it is read, before it reaches a mailbox: an ask is answered
  ``Overloaded`` with the scope, the limit and the depth (``conclib.Overloaded``), a tell is
  dropped and counted.
- **The activation cap** (``HostConfig.activation_cap``): past it, the least recently used
  activations with nothing queued are passivated as after their idle time (``on_stop``,
  their URN released); their next request activates them again where placement picks.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ._host_config import HostConfig
from ._host_patterns import Pattern

__all__ = ["Counts", "evictable", "refusal"]


@dataclass
class Counts:
    """What the limits did: asks refused, tells dropped, activations evicted."""

    overloaded_asks: int = 0
    overloaded_tells: int = 0
    evicted: int = 0


def refusal(config: HostConfig, urn_depth: int, host_depth: int) -> str | None:
    """Why a request that finds ``urn_depth`` requests of its URN and ``host_depth`` of the
    host's pending (itself not counted) is refused, as the text of an ``Overloaded`` reply
    (``scope=urn limit=8 depth=8``); ``None``: it is not."""
    per_urn, total = config.max_pending_per_urn, config.max_pending
    if per_urn is not None and urn_depth >= per_urn:
        return f"scope=urn limit={per_urn} depth={urn_depth}"
    if total is not None and host_depth >= total:
        return f"scope=system limit={total} depth={host_depth}"
    return None


def evictable(config: HostConfig, patterns: list[Pattern]) -> list[tuple[Pattern, str]]:
    """The activations to passivate for the cap: as many as the host's activations exceed
    it by, least recently used first, of those with nothing queued or running."""
    cap = config.activation_cap
    if cap is None:
        return []
    excess = sum(len(p.live) for p in patterns) - cap
    if excess <= 0:
        return []
    # The few oldest, not a sort of every activation at each activation past the cap (the
    # same choice: ``nsmallest`` is ``sorted(...)[:n]``).
    idle = ((a.mailbox.last_used, p, urn) for p in patterns for urn, a in p.live.items() if not a.mailbox.busy())
    return [(p, urn) for _, p, urn in heapq.nsmallest(excess, idle, key=lambda t: t[0])]
