"""A decoded MessagePack value checked and converted into a handler's parameter type, and a
handler's result made plain for the encoder: the Python actor host's side of the mapping in
``codec.py`` (a struct is a map of its fields, or an array of them in order; a newtype its
bare value; a unit struct nil or an empty array)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from .codec import to_wire

__all__ = ["Mismatch", "from_wire", "plain"]


class Mismatch(ValueError):
    """The value does not fit the type (answered ``CodecError``)."""


def _pydantic(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_validate") and hasattr(tp, "model_fields")


def from_wire(value: Any, tp: Any) -> Any:
    """``value`` as a ``tp``, or :class:`Mismatch`."""
    if tp is Any or tp is object:
        return value
    if tp is None or tp is type(None):
        if value is None or value == []:
            return None
        raise Mismatch(f"expected nil, got {type(value).__name__}")
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        for arm in typing.get_args(tp):
            try:
                return from_wire(value, arm)
            except Mismatch:
                continue
        raise Mismatch(f"{value!r:.60} fits none of {tp}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise Mismatch(f"{value!r:.60} is none of {typing.get_args(tp)}")
    if origin in (list, tuple, dict) or (origin is not None and origin.__module__ == "collections.abc"):
        return _container(value, tp, origin)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise Mismatch(f"expected a bool, got {type(value).__name__}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Mismatch(f"expected an integer, got {type(value).__name__}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise Mismatch(f"expected a number, got {type(value).__name__}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise Mismatch(f"expected a string, got {type(value).__name__}")
    if tp is bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
            return bytes(value)
        raise Mismatch(f"expected bytes, got {type(value).__name__}")
    if tp in (list, dict, tuple):
        return _container(value, tp, tp)
    if _pydantic(tp):
        try:
            if isinstance(value, list):
                value = dict(zip(tp.model_fields, value))
            return tp.model_validate(value)
        except Exception as e:  # pydantic.ValidationError, without importing pydantic
            raise Mismatch(str(e)) from e
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(value, tp)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise Mismatch(f"expected {tp.__name__}, got {type(value).__name__}")
    return value


def _container(value: Any, tp: Any, origin: Any) -> Any:
    args = typing.get_args(tp)
    if origin is dict or (isinstance(origin, type) and issubclass(origin, dict)) or getattr(origin, "__name__", "") == "Mapping":
        if not isinstance(value, dict):
            raise Mismatch(f"expected a map, got {type(value).__name__}")
        k, v = args if len(args) == 2 else (Any, Any)
        return {from_wire(a, k): from_wire(b, v) for a, b in value.items()}
    if not isinstance(value, list):
        raise Mismatch(f"expected an array, got {type(value).__name__}")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_wire(x, args[0]) for x in value)
        if args and len(args) != len(value):
            raise Mismatch(f"expected {len(args)} items, got {len(value)}")
        return tuple(from_wire(x, a) for x, a in zip(value, args or [Any] * len(value)))
    item = args[0] if args else Any
    return [from_wire(x, item) for x in value]


def _dataclass(value: Any, tp: type) -> Any:
    fields = [f for f in dataclasses.fields(tp) if f.init]
    hints = typing.get_type_hints(tp)
    if isinstance(value, list):
        if len(value) > len(fields):
            raise Mismatch(f"{tp.__name__} has {len(fields)} fields, got {len(value)}")
        given = dict(zip((f.name for f in fields), value))
    elif isinstance(value, dict):
        given = value
    elif value is None and not fields:
        given = {}
    else:
        raise Mismatch(f"expected a map for {tp.__name__}, got {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name in given:
            kwargs[f.name] = from_wire(given[f.name], hints.get(f.name, Any))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise Mismatch(f"{tp.__name__}: missing field {f.name}")
    return tp(**kwargs)


def plain(value: Any) -> Any:
    """A handler's result as plain data for the encoder (pydantic models dumped; the rest as
    the client's encoder takes it)."""
    dump = getattr(value, "model_dump", None)
    if dump is not None and not isinstance(value, type):
        return plain(dump(mode="python"))
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return to_wire(value)
