"""W3C ``traceparent`` for the request field ``tp``.

With ``opentelemetry-api`` importable and a valid current span, the request continues that
span's trace: the Rust handler's span records its trace id and, as its parent, the current
span's id. Otherwise every request starts a new trace (random ids, sampled).
"""

from __future__ import annotations

import binascii
import os
import random
import re
from typing import Any

__all__ = ["current_traceparent", "current_traceparent_bytes", "new_traceparent", "valid_traceparent"]

_getrandbits = random.getrandbits
_hexlify = binascii.hexlify

_PATTERN = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

_trace: Any
_context: Any
try:  # Optional: continue the current OpenTelemetry span.
    from opentelemetry import context as _context
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on the environment
    _trace = _context = None


def new_traceparent() -> str:
    """A traceparent of a new, sampled trace (random non-zero ids, as OpenTelemetry's SDK
    makes them: ``random.getrandbits``, reseeded in a forked child)."""
    return _new_traceparent_bytes().decode()


def _new_traceparent_bytes() -> bytes:
    while True:
        try:
            return _fresh.pop()
        except IndexError:
            _draw()


# New traceparents drawn ahead, ``_DRAWN`` at a time: each 192 random bits (the trace id
# the high 128, the span id the low 64), put in hex by one C call for all of them; an ask
# takes one with a ``pop``, a third of the CPU of drawing and formatting its own. A forked
# child forgets them (``random`` reseeds there, and the child must not repeat the parent's).
_DRAWN = 256
_fresh: list[bytes] = []
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def _draw() -> None:
    ids = _hexlify(_getrandbits(192 * _DRAWN).to_bytes(24 * _DRAWN, "big"))
    for i in range(0, 48 * _DRAWN, 48):
        trace, span = ids[i : i + 32], ids[i + 32 : i + 48]
        if trace != _ZERO_TRACE and span != _ZERO_SPAN:  # all-zero ids are invalid
            _fresh.append(b"00-%b-%b-01" % (trace, span))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh.clear)


def valid_traceparent(value: str) -> bool:
    """Whether ``value`` is a version-00 traceparent with non-zero ids."""
    m = _PATTERN.match(value)
    return bool(m) and set(m.group(1)) != {"0"} and set(m.group(2)) != {"0"}  # type: ignore[union-attr]


def current_traceparent() -> str:
    """The current OpenTelemetry span's traceparent if there is one, else a new trace's."""
    return current_traceparent_bytes().decode()


def current_traceparent_bytes() -> bytes:
    """``current_traceparent()`` as the ASCII bytes a request carries."""
    if _trace is not None:
        try:
            # An empty context (nothing set in it: no span) is the common case without
            # tracing; it is told at the cost of one look-up.
            current = _context.get_current()
            if not current:
                return _new_traceparent_bytes()
            ctx = _trace.get_current_span(current).get_span_context()
            if ctx.is_valid:
                return b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, int(ctx.trace_flags))
        except Exception:  # a broken SDK must not break asks
            pass
    return _new_traceparent_bytes()
