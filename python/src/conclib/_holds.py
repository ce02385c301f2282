"""Refusing at send what the proxy would refuse, by the Rust client's rule
(``conclib-redis/src/client/holds.rs``): a URN whose asks a proxy answered ``Overloaded``
for the URN's own limit is held for ``client_hold`` after each such answer, with the limit
the answer gave; while held, the client counts its own asks to it in flight, and an ask or a
tell that finds them at the limit is refused here, with the same ``Overloaded`` (the limit,
and those asks as the depth), without a trip to Redis. A pattern's or the system's limit
counts other clients' requests, which this client does not see: those refusals are the
proxy's alone.

The client's asks and tells run on one event loop at a time (its session's), so the counts
need no lock.
"""

from __future__ import annotations

from .errors import Overloaded

__all__ = ["Hold", "Holds"]

# The most URNs held at once: past it, a refusal for one more URN is not remembered (the
# proxy goes on refusing it; the client just does not refuse it first).
_MAX_HELD = 4096


class Hold:
    """What a refusal taught about one URN."""

    __slots__ = ("until", "limit", "in_flight")

    def __init__(self, until: float, limit: int) -> None:
        self.until = until
        """Until when it is held (``time.monotonic()``): the hold after the last refusal."""
        self.limit = limit
        """The limit the proxy refused at."""
        self.in_flight = 0
        """This client's asks to the URN in flight, counted from the first refusal on."""


class Holds:
    """The URNs a client holds, and for how long a refusal holds one (0: none)."""

    __slots__ = ("hold", "any", "held", "refused_at_send")

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.any = False
        """Whether any URN is held: an ask or a tell reads only this when none is."""
        self.held: dict[str, Hold] = {}
        self.refused_at_send = 0
        """Asks and tells refused here, not sent."""

    def admit(self, urn: str, now: float) -> Hold | Overloaded | None:
        """An ask to a URN about to be sent (call it only when ``any``): its URN's hold, to
        count it in until it ends (``in_flight -= 1``), ``None`` if the URN is not held, or
        the refusal the proxy would answer if this client alone has the limit in flight."""
        hold = self.held.get(urn)
        if hold is None:
            return None
        if hold.until <= now:
            del self.held[urn]
            self.any = bool(self.held)
            return None
        if hold.in_flight >= hold.limit:
            self.refused_at_send += 1
            return Overloaded(urn, "urn", hold.limit, hold.in_flight)
        hold.in_flight += 1
        return hold

    def tell(self, urn: str, now: float) -> Overloaded | None:
        """A tell to a URN about to be sent (call it only when ``any``): the refusal the
        proxy would answer (it drops the tell) if this client alone has the URN's limit of
        asks in flight; not counted."""
        hold = self.held.get(urn)
        if hold is None or hold.until <= now or hold.in_flight < hold.limit:
            return None
        self.refused_at_send += 1
        return Overloaded(urn, "urn", hold.limit, hold.in_flight)

    def refused(self, urn: str, refusal: Overloaded, now: float) -> None:
        """The proxy refused an ask to ``urn``: holds it (again) for the hold time. Only a
        URN's own limit is held."""
        if not self.hold or refusal.scope != "urn":
            return
        until = now + self.hold
        hold = self.held.get(urn)
        if hold is not None:
            hold.until = until
            hold.limit = refusal.limit
            return
        if len(self.held) >= _MAX_HELD:
            self.held = {u: h for u, h in self.held.items() if h.until > now}
            if len(self.held) >= _MAX_HELD:
                return
        self.held[urn] = Hold(until, refusal.limit)
        self.any = True
