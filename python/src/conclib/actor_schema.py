"""What Python actors expose, as the schema document Rust services export
(``conclib::schema::Export``: ``{"conclib_schema": 1, "actors": [...], "$defs": {...}}``), so
that the same generators serve both: ``python -m conclib.stubgen`` (typed Python handles)
and ``python -m conclib.rustgen`` (Rust message types a Rust caller asks the Python actor
with).

    python -m conclib.actor_schema mymodule:Account=account:{id} [mymodule:Other=urn ...] [-o schema.json]

Each argument is ``module:Class=URN`` (a fixed URN or a pattern). A handler's parameter is
its message (``None``: a unit message), its return annotation the response, ``@handler``'s
``error=`` the error (``str`` by default; ``None``: it cannot fail).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import types
import typing
from typing import Any, Union

from .actor import Actor, handlers_of

__all__ = ["export", "main", "type_schema"]


def type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of annotation ``tp``; named types (dataclasses, pydantic models) go
    to ``defs`` and are referred to."""
    if tp is Any or tp is object:
        return {}
    if tp is None or tp is type(None):
        return {"type": "null"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        arms = [a for a in args if a is not type(None)]
        inner = type_schema(arms[0], defs) if len(arms) == 1 else {"anyOf": [type_schema(a, defs) for a in arms]}
        if len(arms) == len(args):
            return inner
        if isinstance(inner.get("type"), str):
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, set, frozenset) or tp in (list, set):
        return {"type": "array", "items": type_schema(args[0], defs) if args else {}}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0], defs)}
        items = [type_schema(a, defs) for a in args]
        return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
    if origin is dict or tp is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1], defs) if args else {}}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", "format": "int64"}
    if tp is float:
        return {"type": "number", "format": "double"}
    if tp is str:
        return {"type": "string"}
    if tp is bytes:
        return {"type": "string", "x-conclib-bin": True}
    if isinstance(tp, type) and hasattr(tp, "model_json_schema"):
        schema: dict[str, Any] = tp.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        schema.pop("title", None)
        defs[tp.__name__] = schema
        return {"$ref": f"#/$defs/{tp.__name__}"}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # a recursive type refers to itself
            hints = typing.get_type_hints(tp)
            fields = [f for f in dataclasses.fields(tp) if f.init]
            props = {f.name: type_schema(hints.get(f.name, Any), defs) for f in fields}
            required = [
                f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ]
            entry: dict[str, Any] = {"type": "object", "properties": props, "required": required}
            if tp.__doc__ and not tp.__doc__.startswith(f"{tp.__name__}("):
                entry["description"] = tp.__doc__.strip()
            defs[tp.__name__] = entry
        return {"$ref": f"#/$defs/{tp.__name__}"}
    raise TypeError(f"no schema for {tp!r}")


def export(actors: dict[str, type[Actor]]) -> dict[str, Any]:
    """The schema document of ``actors`` (by URN or pattern)."""
    defs: dict[str, Any] = {}
    out = []
    for urn, cls in actors.items():
        messages = []
        for name, spec in sorted(handlers_of(cls).items()):
            messages.append(
                {
                    "name": name,
                    "request": {"type": "null"} if spec.unit else type_schema(spec.param, defs),
                    "response": type_schema(spec.returns, defs),
                    "error": None if spec.error is None else type_schema(spec.error, defs),
                }
            )
        out.append({"name": cls.__name__, "urn": urn, "messages": messages})
    return {"conclib_schema": 1, "actors": out, "$defs": defs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conclib.actor_schema", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("actors", nargs="+", help="module:Class=URN (a fixed URN or a pattern)")
    parser.add_argument("-o", "--output", help="the file to write (default: standard output)")
    args = parser.parse_args(argv)
    actors: dict[str, type[Actor]] = {}
    for spec in args.actors:
        target, _, urn = spec.partition("=")
        module, _, name = target.partition(":")
        if not urn or not name:
            parser.error(f"expected module:Class=URN, got {spec!r}")
        actors[urn] = getattr(importlib.import_module(module), name)
    text = json.dumps(export(actors), indent=2, sort_keys=True) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
