"""Overload in the Python actor host, as in a Rust member (``ProxyConfig::overload``; the
``conclib-redis`` crate docs, "Overload"): every limit off by default.

- **Pending limits** (``HostConfig.max_pending_per_urn``, ``HostConfig.max_pending``, and a
  pattern's own, ``ActorHost.serve_pattern(max_pending_per_urn=, max_pending=)``): the
  requests read and not yet answered, for a URN (queued in its mailbox, being handled, or
  waiting for its activation), for a pattern's URNs together, and for the whole host (every
  lane's). A pattern's per-URN limit stands for its URNs instead of the host's. A request
  past a limit is refused as it is read, before it reaches a mailbox: an ask is answered
  ``Overloaded`` with the scope (``urn``, ``pattern``, ``system``), the limit and the depth
  (``conclib.Overloaded``), a tell is dropped and counted.
- **The activation cap** (``HostConfig.activation_cap``): past it, the least recently used
  activations with nothing queued are passivated as after their idle time (``on_stop``,
  their URN released); their next request activates them again where placement picks.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ._host_config import HostConfig
from ._host_patterns import Pattern

__all__ = ["Counts", "evictable", "limited", "refusal"]


@dataclass
class Counts:
    """What the limits did: asks refused, tells dropped, activations evicted."""

    overloaded_asks: int = 0
    overloaded_tells: int = 0
    evicted: int = 0


def limited(config: HostConfig, pattern: Pattern | None) -> bool:
    """Whether a request (of ``pattern``, if a pattern's) meets any pending limit: with none,
    nothing is counted."""
    return (config.max_pending_per_urn is not None or config.max_pending is not None
            or (pattern is not None and (pattern.max_pending_per_urn is not None or pattern.max_pending is not None)))


def refusal(config: HostConfig, pattern: Pattern | None, urn_depth: int, host_depth: int) -> str | None:
    """Why a request (of ``pattern``, if a pattern's) that finds ``urn_depth`` requests of its
    URN, ``pattern.pending`` of its pattern's and ``host_depth`` of the host's pending (itself
    not counted) is refused, as the text of an ``Overloaded`` reply (``scope=urn limit=8
    depth=8``); ``None``: it is not."""
    per_urn = config.max_pending_per_urn
    if pattern is not None and pattern.max_pending_per_urn is not None:
        per_urn = pattern.max_pending_per_urn
    if per_urn is not None and urn_depth >= per_urn:
        return f"scope=urn limit={per_urn} depth={urn_depth}"
    if pattern is not None and pattern.max_pending is not None and pattern.pending >= pattern.max_pending:
        return f"scope=pattern limit={pattern.max_pending} depth={pattern.pending}"
    total = config.max_pending
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
