"""A host's URN keys, as the Rust proxy keeps a system's (``proxy/serve/urn_keys.rs``): its
fixed URNs' keys (naming the system, or a group's ``~{urn}``) and its activations', claimed
with the protocol's ``CLAIM_MANY_SCRIPT`` in batches and renewed together every third of
their TTL. After a lapse of the lease in Redis the host claims again those it may have lost
(``UrnKeys.reclaim``, from the host's ``recheck``): every one when the system's record of URN keys given away was not
whole (``_host_lease``), else only those the record names, and every one only when their
renewal is due anyway (as the Rust ``Which::DueAnd``: a key that is not due cannot have
expired, and nothing else takes a key that lives; the host renews its keys together, so
either all are due or none)."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from typing import Any

from .protocol import Keys, shared_group, text

__all__ = ["UrnKeys"]

log = logging.getLogger("conclib.host")

# URN keys per script call: one call holds Redis for a few milliseconds at most.
BATCH = 500


def _chunks(urns: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(urns), BATCH):
        yield urns[i : i + BATCH]


class UrnKeys:
    """The URN keys of a host's system ``system``: those of its fixed URNs ``fixed`` (``URN →
    its actor``, those in ``shared`` its groups'), the ones another system holds in
    ``conflicts`` (``URN → that system``), and those of its ``patterns``' live activations;
    each living ``ttl`` seconds from its claim (the host's containers, read as they are)."""

    def __init__(self, scripts: Any, keys: Keys, system: str, ttl: float, fixed: dict[str, Any],
                 shared: Collection[str], conflicts: dict[str, str], patterns: list[Any]) -> None:
        self.scripts = scripts
        self.keys = keys
        self.system = system
        self.ttl = ttl
        self.fixed = fixed
        self.shared = shared
        self.conflicts = conflicts
        self.patterns = patterns
        # When the last pass over every key started (they are renewed together).
        self.renewed_at = 0.0

    def due(self) -> bool:
        """Whether the keys' renewal is due: a third of their TTL since the last one."""
        return time.monotonic() - self.renewed_at >= self.ttl / 3

    async def renew(self) -> None:
        """Claims every key again (a renewal): the fixed URNs' (a free key taken) and the
        activations' (a free key left free)."""
        self.renewed_at = time.monotonic()
        await self.claim_fixed()
        await self.renew_activations()

    async def reclaim(self, given: set[str] | None) -> None:
        """After a lapse of the lease in Redis, before anything more is handled (the lease's
        ``confirm``): the keys it may have lost claimed again, those the system's record says
        were given away (``given``), or every one (``None``: the record was not whole, or
        another Redis server answers; or their renewal is due, which claims them all anyway).
        An activation whose URN another system took is given up, a fixed URN another system
        took is refused (their queued requests left pending for that system)."""
        if given is None or self.due():
            await self.renew()
            return
        await self.claim_fixed(given)
        await self.renew_activations(given)
        log.info("claimed again the %d URN keys given away while the lease was absent", len(given))

    async def claim_fixed(self, only: Collection[str] | None = None) -> None:
        """Claims the keys of the fixed URNs (those in ``only``, else every one), a key
        found free taken (a fixed actor serves here whatever happened to its key): each one
        another system holds goes to ``conflicts`` (its actor's queued requests left pending for
        that system), each one held again leaves it."""
        scripts, keys, conflicts, ttl_ms = self.scripts, self.keys, self.conflicts, int(self.ttl * 1000)
        by_value: dict[str, list[str]] = {}
        for urn in self.fixed:
            if only is None or urn in only:
                by_value.setdefault(shared_group(urn) if urn in self.shared else self.system, []).append(urn)
        for value, urns in by_value.items():
            for chunk in _chunks(urns):
                got = await scripts.claim_many(keys=[keys.urn(u) for u in chunk], args=[value, ttl_ms])
                for urn, g in zip(chunk, got):
                    if g == 1:
                        conflicts.pop(urn, None)
                        continue
                    owner = text(g)
                    if conflicts.get(urn) != owner:
                        log.warning("URN %s is served by system %s; this host refuses it", urn, owner)
                        served = self.fixed.get(urn)
                        if served is not None:
                            served.mailbox.abandon()
                    conflicts[urn] = owner

    async def renew_activations(self, only: Collection[str] | None = None) -> None:
        """Renews the keys of the patterns' live activations (those in ``only``, else every
        one); an activation whose key another system holds now is stopped (its queued requests
        left pending, read again and passed on to that system)."""
        scripts, keys, system, ttl_ms = self.scripts, self.keys, self.system, int(self.ttl * 1000)
        for p in self.patterns:
            urns = [u for u in p.live if only is None or u in only]
            for chunk in _chunks(urns):
                # "renew": a key found free is left free (a passivation released it after
                # this list was made; taking it back would name this host for a URN it no
                # longer serves), as the Rust proxy's renewal.
                got = await scripts.claim_many(keys=[keys.urn(u) for u in chunk], args=[system, ttl_ms, "renew"])
                answers = list(zip(chunk, got))
                vanished = [urn for urn, g in answers if g == 0 and urn in p.live]
                if vanished:
                    # Free though still served here (the key expired): claimed again.
                    log.warning("%d URN keys found free at their renewal; claiming them again", len(vanished))
                    again = await scripts.claim_many(keys=[keys.urn(u) for u in vanished], args=[system, ttl_ms])
                    answers += list(zip(vanished, again))
                for urn, g in answers:
                    if g != 1 and g != 0:
                        # Taken by another system (this one was paused past its lease): the
                        # activation must not run beside the new one.
                        live = p.live.pop(urn, None)
                        if live is not None:
                            live.mailbox.stopped = True
                            live.mailbox.abandon()
