"""A pattern's activations in a Python actor host: URNs ``{prefix}{id}`` activated on demand
(the URN key claimed with the protocol's claim script, as a Rust member claims it), kept
while used, passivated after idle (the key released), renewed with the other URN keys."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ._host_mailbox import Mailbox
from .actor import Actor, HandlerSpec

__all__ = ["Activation", "Pattern", "parse_pattern"]


def parse_pattern(pattern: str) -> str:
    """The prefix of ``pattern`` (``user:{id}`` → ``user:``): it must end in ``:{id}`` after
    at least one character, as the Rust proxy's ``activate`` wants."""
    if not pattern.endswith("{id}"):
        raise ValueError(f"a pattern ends in {{id}}: {pattern!r}")
    prefix = pattern[: -len("{id}")]
    if not prefix.endswith(":") or len(prefix) < 2 or "{" in prefix or "}" in prefix:
        raise ValueError(f"a pattern is PREFIX:{{id}}: {pattern!r}")
    return prefix


@dataclass
class Activation:
    """A live activation: its mailbox (and so its actor)."""

    mailbox: Mailbox
    pattern: Pattern


@dataclass
class Pattern:
    """A pattern served here: its actor class, messages and idle time."""

    prefix: str
    make: Any
    handlers: dict[str, HandlerSpec]
    idle_after: float
    group: str
    placement: str = "spread"
    # The pattern's own pending limits (``serve_pattern``; ``_host_overload.py``).
    max_pending_per_urn: int | None = None
    max_pending: int | None = None
    # Its requests read and not yet answered, counted while ``max_pending`` is set (each
    # admitted one holds a ticket in its lane until it leaves the lane's in-flight set).
    pending: int = 0
    # Activations decided here and not made yet (their URN keys being claimed).
    making: int = 0
    live: OrderedDict[str, Activation] = field(default_factory=OrderedDict)

    def matches(self, urn: str) -> bool:
        """``{prefix}{id}`` with a non-empty ``id`` without ``:`` (the takeover script's rule)."""
        return len(urn) > len(self.prefix) and urn.startswith(self.prefix) and ":" not in urn[len(self.prefix):]

    def new_actor(self, urn: str) -> Actor:
        actor: Actor = self.make(urn)
        actor.urn = urn
        actor.id = urn[len(self.prefix):]
        return actor

    def displaced(self, mailbox: Mailbox) -> str | None:
        """Forgets the activation of ``mailbox`` (its URN, if live)."""
        for urn, a in self.live.items():
            if a.mailbox is mailbox:
                del self.live[urn]
                return urn
        return None

    def idle(self, now: float) -> list[str]:
        """The URNs idle past ``idle_after`` (oldest use first; busy ones skipped)."""
        out = []
        for urn, a in self.live.items():
            if now - a.mailbox.last_used < self.idle_after:
                break
            if not a.mailbox.busy():
                out.append(urn)
        return out

    def touch(self, urn: str) -> None:
        self.live.move_to_end(urn)


def now() -> float:
    return time.monotonic()
