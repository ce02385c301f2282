"""A Python actor host's settings (:class:`HostConfig`, importable from ``conclib.host``):
apart from the host, so that the parts of the host (``host``, ``_host_serving``) read them
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._host_reminders import ReminderPollerOptions
from .durability import Durability
from .protocol import DEFAULT_NAMESPACE

__all__ = ["HostConfig", "MemoryShedding"]


@dataclass
class MemoryShedding:
    """Passivating activations when the host's process uses too much memory (the Rust
    ``overload::MemoryShedding``): every 250 ms the host reads the process's resident memory
    (``/proc/self/statm``); above ``above`` of ``limit``, it passivates the least recently
    used activations with nothing queued, as many as the share of memory above ``down_to`` of
    the limit (at least one, at most an eighth of them), counted in
    :meth:`~conclib.host.ActorHost.stats` (``shed``) and a warning in the log. Memory the
    interpreter keeps after the actors are gone still counts as resident: shedding goes on at
    each look while it does."""

    limit: int | None = None
    """The limit in bytes; ``None``: the process's cgroup limit
    (``/sys/fs/cgroup/memory.max``, cgroup v2), read once when the host starts; with no limit
    there (``max``, or no such file) nothing is shed."""
    above: float = 0.8
    down_to: float = 0.7


@dataclass
class HostConfig:
    """A host's settings (the Rust ``ProxyConfig``'s of the same names and defaults;
    ``max_connections``: the size of each of the host's two Redis connection pools, its own
    commands' and its request lanes', on every URL kind; past it a command waits for a free
    connection)."""

    namespace: str = DEFAULT_NAMESPACE
    system: str | None = None
    lease_ttl: float = 4.0
    urn_ttl: float = 15.0
    reply_ttl: float = 60.0
    queue_ttl: float = 3600.0
    max_payload: int = 8 * 1024 * 1024
    batch: int = 256
    max_in_flight: int = 8192
    max_connections: int = 64
    durability: Durability = Durability()
    """At ``Durability.replicas(n, timeout=...)``, an activation's claim of its URN and its
    state store's writes (the fence, the state, the exactly-once record) count as done only
    once ``n`` replicas acknowledged them (``WAIT``), as a Rust member's
    ``ProxyConfig::durability``: a promotion of a lagging replica cannot undo them. A claim
    the replicas did not take in time leaves the URN's requests pending (asked again); a
    save raises :class:`conclib.NotReplicated` in the handler."""
    stop_timeout: float = 15.0
    """How long :meth:`ActorHost.stop` may take (seconds; the Rust ``ProxyConfig``'s
    ``drain_timeout`` and ``shutdown_timeout`` together): with Redis out of reach, or an
    actor that does not finish, it stops serving by then, and what it had not done is left
    as a member that died leaves it, for the others' takeover once its leases lapse."""
    max_pending_per_urn: int | None = None
    """Past this many requests read and not yet answered for one URN (queued in its mailbox,
    being handled, or waiting for its activation), a request for it is refused as it is
    read: an ask answered ``Overloaded`` (``scope`` ``urn``), a tell dropped and counted
    (:meth:`ActorHost.stats`). The Rust ``Overload::max_pending_per_urn``. ``None``: no limit."""
    max_pending: int | None = None
    """The same for the whole host (``scope`` ``system``): every lane's requests read and not
    yet answered. The Rust ``Overload::max_pending``. ``None``: no limit."""
    activation_cap: int | None = None
    """The most activations alive in the host, all patterns together: past it, the least
    recently used with nothing queued are passivated as after their idle time (``on_stop``,
    their URN released) and activated again at their next request, where placement picks.
    The Rust ``Overload::activation_cap`` with ``Eviction::Lru``. ``None``: no cap."""
    memory: MemoryShedding | None = None
    """Passivating activations when the process uses too much memory (:class:`MemoryShedding`).
    The Rust ``Overload::memory``. ``None``: never."""
    reminders: ReminderPollerOptions | None = None
    """With options, the host runs a reminder poller (as a Rust system runs a
    ``ReminderPoller``): the namespace's due reminders are claimed and delivered from here,
    so a pattern served by Python members only gets its ticks. ``None``: no poller."""
