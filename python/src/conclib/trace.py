"""W3C ``traceparent`` for the request field ``tp``.

With ``opentelemetry-api`` importable and a valid current span, the request continues that
span's trace: the Rust handler's span records its trace id and, as its parent, the current
span's id. Otherwise every request starts a new trace (random ids, sampled).
"""

from __future__ import annotations

import binascii
import random
import re
from typing import Any

__all__ = ["current_traceparent", "current_traceparent_bytes", "new_traceparent", "valid_traceparent"]

_getrandbits = random.getrandbits
_hexlify = binascii.hexlify
_SPAN_MASK = (1 << 64) - 1

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
    # Both ids from one draw of 192 bits (the trace id the high 128, the span id the low
    # 64), in hex by one C call: about half the CPU of formatting two integers.
    bits = _getrandbits(192)
    while not bits >> 64 or not bits & _SPAN_MASK:
        bits = _getrandbits(192)
    ids = _hexlify(bits.to_bytes(24, "big"))
    return b"00-%b-%b-01" % (ids[:32], ids[32:])


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
