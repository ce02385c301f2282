"""MessagePack, as the proxy's ``msgpack`` codec (``rmp-serde``, structs as maps) speaks it.

How Rust types travel (the crate docs of ``conclib-redis``, checked by
``tests/msgpack_mapping.rs``): a newtype struct is its bare value; a unit struct an empty
array (nil is accepted too); ``()`` and ``None`` are nil, ``Some(x)`` is ``x``; a struct a map
of field names (an array of the fields in order is accepted too); an enum is externally
tagged: a unit variant is its name, any other variant a one-entry map from its name to its
content; ``Vec<u8>`` an array of integers (``serde_bytes``: bin); strings are str.

From Python: ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` (bin), lists and tuples
(arrays), dicts (maps), dataclass instances (maps of their fields), ``enum.Enum`` members (their
value), and any object with a ``__conclib_encode__()`` method (what it returns).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, cast

# msgpack ships no type information: this module is the package's typed wrapper of it, the
# only one that imports it (so `mypy --strict -p conclib` is clean on the installed package).
import msgpack  # type: ignore[import-untyped, unused-ignore]

from .errors import CodecError

# Casts, not annotations: pyright reads msgpack's own sources (``packb`` may return None there).
_packb = cast("Callable[..., bytes]", msgpack.packb)
_unpackb = cast("Callable[..., Any]", msgpack.unpackb)

__all__ = ["Encoded", "decode", "encode", "pack_plain", "to_wire"]


@dataclass(frozen=True)
class Encoded:
    """A payload already encoded with the codec: sent as these bytes, unchanged."""

    data: bytes


def to_wire(value: Any) -> Any:
    """``value`` as plain MessagePack-able data (dataclasses and ``__conclib_encode__``
    objects converted, recursively)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    encode_hook = getattr(value, "__conclib_encode__", None)
    if encode_hook is not None:
        return to_wire(encode_hook())
    if isinstance(value, enum.Enum):
        return to_wire(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {to_wire(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise CodecError(f"cannot encode a {type(value).__name__} as MessagePack")


def encode(value: Any) -> bytes:
    """``value`` encoded (``Encoded`` payloads as they are)."""
    if isinstance(value, Encoded):
        return value.data
    try:
        return _packb(to_wire(value), use_bin_type=True)
    except CodecError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise CodecError(f"cannot encode {type(value).__name__}: {e}") from e


def pack_plain(value: Any) -> bytes:
    """``value`` encoded as it is, by msgpack's C packer (no walk through it in Python):
    ``TypeError`` when it holds anything but MessagePack's own types (dataclasses, enums,
    models), which :func:`encode` converts first. What a big answer (a list of millions of
    numbers) is encoded with."""
    return _packb(value, use_bin_type=True)


def decode(data: bytes) -> Any:
    """A payload decoded: maps as dicts (any key type), arrays as lists, bin as bytes, str as
    str. Trailing bytes are refused, as the Rust side refuses them."""
    try:
        return _unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except Exception as e:  # ExtraData, FormatError, StackError, UnicodeDecodeError, ValueError
        raise CodecError(f"cannot decode the payload ({len(data)} bytes): {e}") from e
