"""What a tell must reach before the client reports it accepted, so that it survives the
promotion of a replica (Redis Sentinel, Redis Cluster, a managed Redis built the same way):
the Rust crate's ``Durability`` (its docs, "Redis topologies and durability").

Redis replicates asynchronously: a replica promoted when its primary dies may lack the
writes the primary acknowledged last. At :meth:`Durability.primary` (the default) a tell
returns once the primary holds it, and a lagging promotion may lose it. At
:meth:`Durability.replicas` each tell is followed by ``WAIT n timeout`` on the connection
that wrote it (on a Cluster, the connection to its stream's node, in the same pipeline), and
fails :class:`~conclib.NotReplicated` unless ``n`` replicas acknowledged it in time::

    client = conclib.AsyncClient(url, durability=conclib.Durability.replicas(1, timeout=0.5))

An ask needs none: its answer is its acknowledgement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = ["Durability", "WaitGate"]


@dataclass(frozen=True)
class Durability:
    """A durability level: ``n`` replicas must acknowledge a tell within ``timeout``
    seconds (``n == 0``: the primary alone, no ``WAIT``). Make one with :meth:`primary` or
    :meth:`replicas`."""

    n: int = 0
    """How many replicas must hold a tell (0: none, the primary alone)."""
    timeout: float = 0.0
    """How long a tell waits for them, in seconds."""

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ConfigError(f"a durability's replicas are a count of 0 or more, got {self.n!r}")
        if self.n > 0 and not self.timeout > 0:
            raise ConfigError(f"a durability's timeout must be positive, got {self.timeout!r}")

    @classmethod
    def primary(cls) -> Durability:
        """A tell counts as done once the primary took it (the default)."""
        return cls(0, 0.0)

    @classmethod
    def replicas(cls, n: int, *, timeout: float = 0.5) -> Durability:
        """A tell counts as done once ``n`` replicas acknowledged it (``WAIT n timeout``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"Durability.replicas takes a count of 1 or more, got {n!r}")
        return cls(n, float(timeout))

    @property
    def label(self) -> str:
        """``primary`` or ``replicas=N/TIMEOUTms``, as the Rust crate prints it."""
        if self.n == 0:
            return "primary"
        return f"replicas={self.n}/{round(self.timeout * 1000)}ms"

    def wait_args(self) -> tuple[int, int]:
        """``WAIT``'s arguments: the replicas and the timeout in ms (at least 1)."""
        return self.n, max(1, round(self.timeout * 1000))


class WaitGate:
    """One connection's ``WAIT`` s, as the Rust client's gate: one in flight at a time, and
    every caller that comes while it runs shares the next one, sent after it ends (so after
    those callers' writes). A ``WAIT`` holds its connection until it answers: callers that
    each sent their own would queue, the last one waiting for all the others' timeouts
    while a replica lags; here each waits for at most two.

    ``send`` writes one ``WAIT`` and returns the future of its answer."""

    def __init__(self, send: Callable[[], asyncio.Future[Any]]) -> None:
        self._send = send
        self._running: asyncio.Future[Any] | None = None
        self._next: asyncio.Future[Any] | None = None

    def wait(self) -> asyncio.Future[Any]:
        """The answer of the first ``WAIT`` sent from now on (await it shielded: it is
        shared)."""
        if self._running is None:
            self._running = self._start()
            return self._running
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return self._next

    def _start(self) -> asyncio.Future[Any]:
        fut = self._send()
        fut.add_done_callback(self._ended)
        return fut

    def _ended(self, _: asyncio.Future[Any]) -> None:
        self._running = None
        waiting, self._next = self._next, None
        if waiting is None:
            return
        running = self._running = self._start()

        def hand_over(done: asyncio.Future[Any]) -> None:
            if waiting.done():
                return
            if done.cancelled():
                waiting.cancel()
            elif done.exception() is not None:
                waiting.set_exception(done.exception())  # type: ignore[arg-type]
                waiting.exception()
            else:
                waiting.set_result(done.result())

        running.add_done_callback(hand_over)
