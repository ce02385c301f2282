"""Typed Python stubs from the Rust declarations of what each actor exposes.

    python -m conclib.stubgen schema.json -o api.py

    python -m conclib.stubgen schema.json -o api.py --models pydantic

``schema.json`` lists actors, their URNs and exposed messages with JSON Schemas of each
message, response and error (as the Rust ``conclib::schema::Export`` writes it, feature
``schema``: schemars, draft 2020-12, named types under ``$defs``). The module written has

- a class per Rust struct (fields typed; ``Option`` fields default to ``None``): a dataclass,
  or with ``--models pydantic`` a pydantic v2 ``BaseModel`` (validated when made);
- per Rust enum a type alias: ``Literal`` names for unit variants, a class per other
  variant (``ShapeRect(width=.., height=..)``, ``SizeSmall(value=..)``);
- two typed handles per actor: one for :class:`conclib.AsyncClient`, one ``async`` method per
  message (and ``tell_...``), and ``Blocking...`` for :class:`conclib.Client`, the same
  methods without ``async``::

      counter = api.Counter(client, "py:counter")
      total: int = await counter.add(n=5)
      blocking = api.BlockingCounter(blocking_client)
      total = blocking.add(n=5)

  A struct message's fields are keyword arguments, a newtype's content or an enum one
  positional argument, a tuple struct's items positional arguments, a unit message none.
  Responses are decoded into these types (``CodecError`` if the answer does not fit);
- per message that can fail, a ``HandlerError`` subclass its methods raise, generic in the
  message's error type (``ShapesDivideError``, a ``HandlerError[MathError]``): its ``error``
  is decoded into that type, and mypy and pyright check code reading it.

An enum's variant classes are read and written by pydantic (FastAPI's responses and request
bodies) as serde's external tagging, the Rust side's form: ``{"Small": 7}``, ``{"Large":
{"value": 1, "digits": 3}}``; a unit variant is its name (``"Zero"``).

This module writes the handles, the error classes and the module around them, and is the
command; the types are made in ``_stub_types``, and the module's fixed start (its decoders
and the handles' base classes) is ``_stub_header``.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from pathlib import Path
from typing import Any

from ._stub_header import HEADER
from ._stub_types import Expr as Expr  # also ``conclib.stubgen.Expr``
from ._stub_types import PyType, SchemaTypes, ident

__all__ = ["MODELS", "generate", "main"]

MODELS = ("dataclass", "pydantic")
"""What the Rust structs become: dataclasses (the default) or pydantic v2 models."""

# Where a handle method's body says ``await`` (the async handle) or nothing (the blocking one).
_AWAIT = "\x00"


def _snake(name: str) -> str:
    name = name.rsplit(".", 1)[-1]
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    if not name or name[0].isdigit():
        name = "m_" + name
    return name + "_" if keyword.iskeyword(name) else name


def generate(schema: dict[str, Any], source: str = "schema.json", models: str = "dataclass") -> str:
    """The module's source for a schema document; ``models``: ``"dataclass"`` or
    ``"pydantic"`` (pydantic v2 ``BaseModel`` classes)."""
    if schema.get("conclib_schema") != 1:
        raise ValueError("not a conclib schema (conclib_schema: 1)")
    if models not in MODELS:
        raise ValueError(f"models must be one of {MODELS}, got {models!r}")
    gen = SchemaTypes(defs=schema.get("$defs", {}), models=models)
    handles: list[str] = []
    # Per message that can fail, its HandlerError subclass (name -> source), and every
    # name the module defines (an error class never shadows a model).
    error_classes: dict[str, str] = {}
    taken = {prefix + ident(a["name"]) for a in schema["actors"] for prefix in ("", "Blocking")}
    for actor in schema["actors"]:
        cls = ident(actor["name"])
        methods: list[tuple[str, str, str]] = []  # signature, docstring, body (NUL where await goes)
        used: set[str] = set()
        for message in actor["messages"]:
            wire = message["name"]
            method = _snake(wire)
            while method in used or method in ("client", "urn"):
                method += "_"
            used.add(method)
            request = message["request"]
            params, payload = _parameters(gen, request)
            response = gen.type_of(message["response"])
            error = message.get("error")
            error_decoder = "None"
            error_doc = "cannot fail"
            if error is not None:
                et = gen.type_of(error)
                error_decoder = _error_class(
                    cls, method, wire, et, error_classes, taken | set(gen.model_names) | set(gen.aliases)
                )
                error_doc = (
                    f"fails with ``{error_decoder}``, a ``HandlerError[{et.annotation}]`` (its ``error`` decoded)"
                )
            sig = ", ".join(["self", *params[0], "*", *params[1],
                             "timeout: float | None = None", 'priority: conclib.Priority = "normal"'])
            doc = f"Asks ``{wire}``; answers ``{response.annotation}``; {error_doc}."
            methods.append((
                f"{method}({sig}) -> {response.annotation}:",
                json.dumps(doc),
                f"answer = {_AWAIT}self._ask({json.dumps(wire)}, {payload}, timeout, priority, {error_decoder})\n"
                f"        return {response.decode('answer')}",
            ))
            tell_sig = ", ".join(["self", *params[0], "*", *params[1], 'priority: conclib.Priority = "normal"'])
            methods.append((
                f"tell_{method}({tell_sig}) -> None:",
                json.dumps(f"Tells ``{wire}``."),
                f"{_AWAIT}self.client.tell(self.urn, {json.dumps(wire)}, {payload}, priority=priority)",
            ))
        urn = actor.get("urn")
        default = f" = {json.dumps(urn)}" if urn else ""
        served = f" (served at ``{urn}``)" if urn else ""
        for prefix, base, client, define, wait in [
            ("", "_Handle", "conclib.AsyncClient", "async def", "await "),
            ("Blocking", "_BlockingHandle", "conclib.Client", "def", ""),
        ]:
            actor_doc = f"The actor ``{actor['name']}``{served}, through a ``{client}``."
            body = "\n\n".join(
                f"    {define} {sig}\n        {doc}\n        " + code.replace(_AWAIT, wait) for sig, doc, code in methods
            )
            handles.append(
                f"class {prefix}{cls}({base}):\n"
                f"    {json.dumps(actor_doc)}\n\n"
                f"    def __init__(self, client: {client}, urn: str{default}) -> None:\n"
                f"        super().__init__(client, urn)\n\n" + body
            )
    exports = sorted(
        [prefix + ident(a["name"]) for a in schema["actors"] for prefix in ("", "Blocking")]
        + gen.model_names
        + list(gen.aliases)
        + list(error_classes)
    )
    clash = set(error_classes) & (set(gen.model_names) | set(gen.aliases))
    if clash:
        raise ValueError(f"a Rust type is named as a message's error class: {sorted(clash)}")
    model_import = (
        "from pydantic import BaseModel, model_serializer, model_validator"
        if models == "pydantic"
        else "from dataclasses import dataclass"
    )
    parts = [HEADER.format(source=source, exports=exports, model_import=model_import)]
    parts += gen.classes
    parts += list(gen.aliases.values())
    if models == "pydantic" and gen.model_names:
        # Field types name aliases and classes defined after the class: resolved now.
        parts.append("".join(f"{name}.model_rebuild()\n" for name in gen.model_names))
    parts += gen.functions
    parts += list(error_classes.values())
    parts += handles
    return "\n\n\n".join(p.rstrip() for p in parts) + "\n"


def _error_class(actor: str, method: str, wire: str, error: PyType, classes: dict[str, str], taken: set[str]) -> str:
    """The name of the ``HandlerError`` subclass that ``actor``'s ``method`` raises, its
    source added to ``classes``: generic in the message's error type, so that its ``error``
    is that type to mypy and pyright."""
    name = actor + "".join(part.capitalize() for part in method.split("_") if part) + "Error"
    while name in taken or name in classes:
        name += "_"
    classes[name] = (
        f"class {name}(HandlerError[{error.annotation}]):\n"
        f"    {json.dumps(f'The handler error of ``{actor}`` ``{wire}``: ``error`` is a ``{error.annotation}``.')}\n\n"
        f"    @staticmethod\n"
        f"    def decode(o: Any) -> {error.annotation}:\n"
        f"        return {error.decode('o')}"
    )
    return name


def _parameters(gen: SchemaTypes, request: Any) -> tuple[tuple[list[str], list[str]], str]:
    """The method's (positional, keyword-only) parameters and the payload expression."""
    schema = request
    name = None
    if isinstance(request, dict) and "$ref" in request:
        name = request["$ref"].rsplit("/", 1)[-1]
        gen.define(name)
        schema = gen.defs[name]
    kind = gen.kinds.get(name or "")
    if kind == "struct" and name is not None:
        struct = gen.structs[name]
        keyword_params = []
        for _, py, t, required in struct.fields:
            if required:
                keyword_params.append(f"{py}: {t.annotation}")
        for _, py, t, required in struct.fields:
            if not required:
                ann = t.annotation if t.annotation.endswith("None") else f"{t.annotation} | None"
                keyword_params.append(f"{py}: {ann} = None")
        args = ", ".join(f"{py}={py}" for _, py, _, _ in struct.fields)
        return ([], keyword_params), f"_enc_{struct.name}({struct.name}({args}))"
    if isinstance(schema, dict) and schema.get("type") == "null":
        return ([], []), "None"
    if isinstance(schema, dict) and schema.get("type") == "array" and "prefixItems" in schema:
        items = [gen.type_of(s) for s in schema["prefixItems"]]
        params = [f"item{i}: {t.annotation}" for i, t in enumerate(items)]
        return (params, []), "[" + ", ".join(t.encode(f"item{i}") for i, t in enumerate(items)) + "]"
    t = gen.type_of(request)
    return ([f"value: {t.annotation}"], []), t.encode("value")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conclib.stubgen", description="Typed Python handles from an actor schema."
    )
    parser.add_argument(
        "schema", help="the schema JSON (conclib::schema::Export, e.g. conclib-pyserver --export-schema)"
    )
    parser.add_argument("-o", "--output", help="the module to write (default: standard output)")
    parser.add_argument(
        "--models", choices=MODELS, default="dataclass",
        help="what Rust structs become: dataclasses (default) or pydantic v2 models",
    )
    args = parser.parse_args(argv)
    schema = json.loads(Path(args.schema).read_text())
    source = generate(schema, Path(args.schema).name, args.models)
    if args.output:
        Path(args.output).write_text(source)
    else:
        sys.stdout.write(source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
