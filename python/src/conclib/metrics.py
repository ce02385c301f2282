"""A tiny metrics hook: a callback told the outcome and latency of every ask.

>>> events = []
>>> client = conclib.Client(url, on_ask=events.append)        # doctest: +SKIP

``prometheus_hook()`` makes one that records the histogram ``conclib_client_ask_seconds``
with a ``status`` label, as the Rust client does (needs ``prometheus_client``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AskEvent", "AskHook", "prometheus_hook"]


@dataclass(frozen=True)
class AskEvent:
    """One finished ask."""

    urn: str
    message: str
    status: str
    """``ok``, or a reply status / error label: ``handler_error``, ``timeout``,
    ``unavailable``, ``unknown_urn``, ... (each ``ConclibError`` subclass's ``label``)."""
    seconds: float
    """From the call to its result or error."""


AskHook = Callable[[AskEvent], None]


def prometheus_hook(registry: Any = None, name: str = "conclib_client_ask_seconds") -> AskHook:
    """A hook recording each ask in a Prometheus histogram labelled by ``status``.

    ``registry``: a ``prometheus_client.CollectorRegistry`` (default: the global one).
    """
    from prometheus_client import REGISTRY, Histogram

    histogram = Histogram(
        name,
        "A conclib client ask's round trip, by reply status or error.",
        ["status"],
        registry=registry if registry is not None else REGISTRY,
    )

    def hook(event: AskEvent) -> None:
        histogram.labels(status=event.status).observe(event.seconds)

    return hook
