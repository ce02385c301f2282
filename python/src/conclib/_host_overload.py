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
- **Memory shedding** (``HostConfig.memory``, :class:`~conclib.host.MemoryShedding`): the
  same, for the share of the process's resident memory above its target (``to_shed``).
"""

from __future__ import annotations

import ctypes
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._host_config import HostConfig, MemoryShedding
from ._host_patterns import Pattern

__all__ = ["Counts", "evictable", "give_back", "least_used", "limit_bytes", "limited", "refusal", "resident_bytes", "to_shed"]


@dataclass
class Counts:
    """What the limits did: asks refused, tells dropped, activations evicted and shed."""

    overloaded_asks: int = 0
    overloaded_tells: int = 0
    evicted: int = 0
    shed: int = 0


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
    return least_used(patterns, sum(len(p.live) for p in patterns) - cap)


def least_used(patterns: list[Pattern], n: int) -> list[tuple[Pattern, str]]:
    """The ``n`` least recently used activations with nothing queued or running."""
    if n <= 0:
        return []
    # The few oldest, not a sort of every activation (the same choice: ``nsmallest`` is
    # ``sorted(...)[:n]``).
    idle = ((a.mailbox.last_used, p, urn) for p in patterns for urn, a in p.live.items() if not a.mailbox.busy())
    return [(p, urn) for _, p, urn in heapq.nsmallest(n, idle, key=lambda t: t[0])]


def to_shed(live: int, rss: int, limit: int, m: MemoryShedding) -> int:
    """How many of ``live`` activations to shed with ``rss`` bytes resident against ``limit``:
    the share of memory above ``down_to`` of the limit (at least one), at most an eighth of
    them (at least one), none at or below ``above`` of the limit (the Rust ``to_shed``)."""
    if live == 0 or rss <= m.above * limit:
        return 0
    excess = max(rss - m.down_to * limit, 0.0) / rss
    return min(max(math.ceil(live * excess), 1), max(live // 8, 1))


def resident_bytes() -> int | None:
    """The process's resident memory in bytes (``/proc/self/statm``), if it can be read."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096
    except (OSError, IndexError, ValueError):
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, if this process runs on glibc."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def give_back() -> None:
    """Returns the C heap's free memory to the system (glibc's ``malloc_trim``; elsewhere
    nothing): what shed activations freed inside the heap stays resident otherwise, and the
    next look would shed again for memory no activation holds."""
    if _TRIM is not None:
        _TRIM(0)


def limit_bytes(m: MemoryShedding) -> int | None:
    """``m``'s limit in bytes: its own, else the cgroup's (``None``: no limit)."""
    if m.limit is not None:
        return m.limit
    try:
        return int(Path("/sys/fs/cgroup/memory.max").read_text().strip())
    except (OSError, ValueError):
        return None
