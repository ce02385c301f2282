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
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MODELS", "generate", "main"]

MODELS = ("dataclass", "pydantic")
"""What the Rust structs become: dataclasses (the default) or pydantic v2 models."""

Expr = Callable[[str], str]

# Where a handle method's body says ``await`` (the async handle) or nothing (the blocking one).
_AWAIT = "\x00"


def _snake(name: str) -> str:
    name = name.rsplit(".", 1)[-1]
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    if not name or name[0].isdigit():
        name = "m_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _ident(name: str) -> str:
    name = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not name or name[0].isdigit():
        name = "T_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _field_name(name: str) -> str:
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not ident or ident[0].isdigit():
        ident = "f_" + ident
    return ident + "_" if keyword.iskeyword(ident) else ident


@dataclass
class _Type:
    annotation: str
    encode: Expr
    decode: Expr


@dataclass
class _Struct:
    name: str
    doc: str
    fields: list[tuple[str, str, _Type, bool]]  # wire name, python name, type, required


@dataclass
class _Gen:
    defs: dict[str, Any]
    classes: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    functions: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # def name -> struct, enum, alias
    structs: dict[str, _Struct] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    depth: int = 0
    models: str = "dataclass"
    model_names: list[str] = field(default_factory=list)

    def class_head(self, name: str) -> str:
        self.model_names.append(name)
        if self.models == "pydantic":
            return f"class {name}(BaseModel):"
        return f"@dataclass\nclass {name}:"

    def var(self) -> str:
        self.depth += 1
        return f"_v{self.depth}"

    # -- inline schemas ----------------------------------------------------------------------

    def type_of(self, schema: Any) -> _Type:
        if schema is True or schema == {}:
            return _Type("Any", lambda x: x, lambda o: o)
        if not isinstance(schema, dict):
            raise ValueError(f"unsupported schema {schema!r}")
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            self.define(name)
            py = _ident(name)
            return _Type(py, lambda x: f"_enc_{py}({x})", lambda o: f"_dec_{py}({o})")
        if schema.get("x-conclib-bin"):
            return _Type("bytes", lambda x: x, lambda o: f"_bytes({o})")
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
                inner = self.type_of(next(o for o in options if o != {"type": "null"}))
                return self.optional(inner)
        kind = schema.get("type")
        if isinstance(kind, list):
            rest = [k for k in kind if k != "null"]
            inner = self.type_of({**schema, "type": rest[0] if len(rest) == 1 else rest})
            return self.optional(inner) if "null" in kind else inner
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else list(schema["enum"])
            literal = "Literal[" + ", ".join(json.dumps(v) for v in values) + "]"
            return _Type(literal, lambda x: x, lambda o: f"_literal({o}, {tuple(values)!r})")
        if kind == "integer":
            return _Type("int", lambda x: x, lambda o: f"_int({o})")
        if kind == "number":
            return _Type("float", lambda x: x, lambda o: f"_float({o})")
        if kind == "string":
            return _Type("str", lambda x: x, lambda o: f"_str({o})")
        if kind == "boolean":
            return _Type("bool", lambda x: x, lambda o: f"_bool({o})")
        if kind == "null":
            return _Type("None", lambda x: "None", lambda o: f"_none({o})")
        if kind == "array" and "prefixItems" in schema:
            items = [self.type_of(s) for s in schema["prefixItems"]]
            n = len(items)
            ann = "tuple[" + ", ".join(t.annotation for t in items) + "]" if items else "tuple[()]"
            return _Type(
                ann,
                lambda x: "[" + ", ".join(t.encode(f"{x}[{i}]") for i, t in enumerate(items)) + "]",
                lambda o: f"(lambda _t: (" + "".join(f"{t.decode(f'_t[{i}]')}, " for i, t in enumerate(items))
                + f"))(_array({o}, {n}))",
            )
        if kind == "array":
            item = self.type_of(schema.get("items", {}))
            v = self.var()
            return _Type(
                f"list[{item.annotation}]",
                lambda x: f"[{item.encode(v)} for {v} in {x}]",
                lambda o: f"[{item.decode(v)} for {v} in _array({o})]",
            )
        if kind == "object" and "properties" not in schema:
            value = self.type_of(schema.get("additionalProperties", {}))
            k, v = self.var(), self.var()
            return _Type(
                f"dict[str, {value.annotation}]",
                lambda x: f"{{{k}: {value.encode(v)} for {k}, {v} in {x}.items()}}",
                lambda o: f"{{_str({k}): {value.decode(v)} for {k}, {v} in _map({o}).items()}}",
            )
        raise ValueError(f"unsupported schema {json.dumps(schema)[:200]}")

    def alias_value(self, annotation: str) -> str:
        """A type alias's value: the expression itself, so that pydantic (FastAPI, and the
        pydantic models) resolves it from the module's names; aliases follow every class,
        and the aliases they name."""
        return annotation

    def optional(self, inner: _Type) -> _Type:
        if inner.annotation.endswith("| None") or inner.annotation == "None":
            return inner
        return _Type(
            f"{inner.annotation} | None",
            lambda x: f"(None if {x} is None else {inner.encode(x)})",
            lambda o: f"(None if {o} is None else {inner.decode(o)})",
        )

    # -- named types -------------------------------------------------------------------------

    def struct_fields(self, schema: dict[str, Any]) -> list[tuple[str, str, _Type, bool]]:
        props: dict[str, Any] = schema.get("properties", {})
        required = [r for r in schema.get("required", []) if r in props]
        order = required + sorted(p for p in props if p not in required)
        return [(p, _field_name(p), self.type_of(props[p]), p in required) for p in order]

    def dataclass(self, name: str, doc: str, fields: list[tuple[str, str, _Type, bool]]) -> None:
        lines = [self.class_head(name)]
        lines.append(f"    {json.dumps(doc or name)}")
        for _, py, t, required in fields:
            if required:
                lines.append(f"    {py}: {t.annotation}")
        for _, py, t, required in fields:
            if not required:
                ann = t.annotation if t.annotation.endswith("None") else f"{t.annotation} | None"
                lines.append(f"    {py}: {ann} = None")
        if not fields:
            lines.append("    pass")
        self.classes.append("\n".join(lines))
        enc = ", ".join(f"{json.dumps(wire)}: {t.encode(f'x.{py}')}" for wire, py, t, _ in fields)
        dec = ", ".join(
            f"{py}={t.decode(f'o[{json.dumps(wire)}]') if req else t.decode(f'o.get({json.dumps(wire)})')}"
            for wire, py, t, req in fields
        )
        self.functions.append(
            f"def _enc_{name}(x: {name}) -> Any:\n    return {{{enc}}}\n\n\n"
            f"def _dec_{name}(o: Any) -> {name}:\n"
            f"    o = _map(o)\n"
            f"    try:\n        return {name}({dec})\n"
            f"    except KeyError as e:\n        raise CodecError(f\"{name} lacks field {{e}}\") from None"
        )

    def define(self, name: str) -> None:
        if name in self.done:
            return
        self.done.add(name)
        schema = self.defs[name]
        py = _ident(name)
        doc = schema.get("description", "")
        if schema.get("type") == "object" and "properties" in schema:
            self.kinds[name] = "struct"
            fields = self.struct_fields(schema)
            self.structs[name] = _Struct(py, doc, fields)
            self.dataclass(py, doc, fields)
            return
        variants = schema.get("oneOf") or schema.get("anyOf")
        if isinstance(variants, list) and all(isinstance(v, dict) for v in variants) and not (
            len(variants) == 2 and {"type": "null"} in variants
        ):
            self.kinds[name] = "enum"
            self.enum(py, doc, variants)
            return
        if schema.get("type") == "string" and "enum" in schema:
            self.kinds[name] = "enum"
            self.enum(py, doc, [{"const": v} for v in schema["enum"]])
            return
        # Anything else (a newtype, a tuple or unit struct): an alias of its content.
        self.kinds[name] = "alias"
        body = {k: v for k, v in schema.items() if k not in ("description", "title")}
        t = self.type_of(body)
        self.aliases[py] = f"{py}: TypeAlias = {self.alias_value(t.annotation)}\n{json.dumps(doc or name)}"
        self.functions.append(
            f"def _enc_{py}(x: {py}) -> Any:\n    return {t.encode('x')}\n\n\n"
            f"def _dec_{py}(o: Any) -> {py}:\n    return {t.decode('o')}"
        )

    def tagged(self, enum: str, cls: str, wire: str, *, newtype: bool) -> str:
        """The members that make pydantic (FastAPI's responses and bodies) read and write a
        variant class as serde's external tagging does, the form the Rust side uses:
        ``{"Small": 7}``, ``{"Large": {"value": 1, "digits": 3}}`` (a unit variant is its
        name already). Without them a variant would be written as its fields alone."""
        if self.models == "pydantic":
            untag = f"{{'value': o[{wire!r}]}}" if newtype else f"o[{wire!r}]"
            return (
                "\n\n    @model_serializer(mode=\"plain\")\n"
                "    def serialize_tagged(self) -> Any:\n"
                f"        \"\"\"Externally tagged, as serde writes it: ``{{{json.dumps(wire)}: ...}}``.\"\"\"\n"
                f"        return _enc_{enum}(self)\n\n"
                "    @model_validator(mode=\"before\")\n"
                "    @classmethod\n"
                "    def validate_tagged(cls, o: Any) -> Any:\n"
                f"        \"\"\"Takes the externally tagged form (``{{{json.dumps(wire)}: ...}}``) and the fields.\"\"\"\n"
                f"        return {untag} if isinstance(o, dict) and list(o) == [{wire!r}] else o"
            )
        return (
            "\n\n    @classmethod\n"
            "    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:\n"
            f"        \"\"\"Externally tagged under pydantic (FastAPI), as serde writes it: ``{{{json.dumps(wire)}: ...}}``.\"\"\"\n"
            f"        return _tagged_schema(cls, _enc_{enum}, _dec_{enum})\n\n"
            "    @classmethod\n"
            "    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:\n"
            f"        return _tagged_json_schema(cls.__name__, {json.dumps(wire)})"
        )

    def enum(self, py: str, doc: str, variants: list[dict[str, Any]]) -> None:
        units: list[str] = []
        data: list[tuple[str, str, str]] = []  # wire name, class, kind (struct | value)
        enc_lines: list[str] = []
        dec_lines: list[str] = []
        for variant in variants:
            if "const" in variant or "enum" in variant:
                units += [variant["const"]] if "const" in variant else list(variant["enum"])
                continue
            props = variant.get("properties", {})
            if len(props) != 1:
                raise ValueError(f"unsupported enum variant {json.dumps(variant)[:200]}")
            (wire, content), = props.items()
            cls = _ident(f"{py}{wire}")
            vdoc = variant.get("description", "") or f"{py}::{wire}"
            if isinstance(content, dict) and content.get("type") == "object" and "properties" in content:
                fields = self.struct_fields(content)
                self.dataclass(cls, vdoc, fields)
                self.classes[-1] += self.tagged(py, cls, wire, newtype=False)
                enc_lines.append(f"    if isinstance(x, {cls}):\n        return {{{json.dumps(wire)}: _enc_{cls}(x)}}")
                dec_lines.append(f"    if key == {json.dumps(wire)}:\n        return _dec_{cls}(value)")
            else:
                t = self.type_of(content)
                self.classes.append(
                    f"{self.class_head(cls)}\n    {json.dumps(vdoc)}\n    value: {t.annotation}"
                    + self.tagged(py, cls, wire, newtype=True)
                )
                enc_lines.append(
                    f"    if isinstance(x, {cls}):\n        return {{{json.dumps(wire)}: {t.encode('x.value')}}}"
                )
                dec_lines.append(f"    if key == {json.dumps(wire)}:\n        return {cls}(value={t.decode('value')})")
            data.append((wire, cls, "data"))
        members = []
        if units:
            members.append("Literal[" + ", ".join(json.dumps(u) for u in units) + "]")
        members += [cls for _, cls, _ in data]
        ann = members[0] if len(members) == 1 else "Union[" + ", ".join(members) + "]"
        self.aliases[py] = f"{py}: TypeAlias = {self.alias_value(ann)}\n{json.dumps(doc or py)}"
        unit_check = (
            f"    if isinstance(x, str) and x in {tuple(units)!r}:\n        return x\n" if units else ""
        )
        self.functions.append(
            f"def _enc_{py}(x: {py}) -> Any:\n{unit_check}"
            + "".join(line + "\n" for line in enc_lines)
            + f"    raise CodecError(f\"not a {py}: {{x!r}}\")\n\n\n"
            f"def _dec_{py}(o: Any) -> {py}:\n"
            + "".join(f"    if o == {json.dumps(u)}:\n        return {json.dumps(u)}\n" for u in units)
            + (
                "    if isinstance(o, dict) and len(o) == 1:\n"
                "        ((key, value),) = o.items()\n" + "".join("    " + line.replace("\n", "\n    ") + "\n" for line in dec_lines)
                if dec_lines
                else ""
            )
            + f"    raise CodecError(f\"not a {py}: {{o!r}}\")"
        )


_HEADER = '''"""Typed handles of the actors in {source}: generated by ``python -m conclib.stubgen``.

Do not edit: regenerate from the Rust declarations instead.
"""

from __future__ import annotations

{model_import}
from typing import Any, Literal, TypeAlias, Union

import conclib
from conclib.errors import CodecError, HandlerError

__all__ = {exports!r}


def _int(o: Any) -> int:
    if isinstance(o, int) and not isinstance(o, bool):
        return o
    raise CodecError(f"expected an integer, got {{o!r}}")


def _float(o: Any) -> float:
    if isinstance(o, (int, float)) and not isinstance(o, bool):
        return float(o)
    raise CodecError(f"expected a number, got {{o!r}}")


def _str(o: Any) -> str:
    if isinstance(o, str):
        return o
    raise CodecError(f"expected a string, got {{o!r}}")


def _bool(o: Any) -> bool:
    if isinstance(o, bool):
        return o
    raise CodecError(f"expected a boolean, got {{o!r}}")


def _bytes(o: Any) -> bytes:
    if isinstance(o, bytes):
        return o
    if isinstance(o, list) and all(isinstance(b, int) for b in o):
        return bytes(o)
    raise CodecError(f"expected bytes, got {{o!r}}")


def _none(o: Any) -> None:
    if o is None or o == []:
        return None
    raise CodecError(f"expected nil, got {{o!r}}")


def _array(o: Any, n: int | None = None) -> list[Any]:
    if isinstance(o, list) and (n is None or len(o) == n):
        return o
    raise CodecError(f"expected an array{{'' if n is None else f' of {{n}}'}}, got {{o!r}}")


def _map(o: Any) -> dict[Any, Any]:
    if isinstance(o, dict):
        return o
    raise CodecError(f"expected a map, got {{o!r}}")


def _literal(o: Any, allowed: tuple[str, ...]) -> Any:
    if o in allowed:
        return o
    raise CodecError(f"expected one of {{allowed}}, got {{o!r}}")


def _tagged_schema(cls: type[Any], encode: Any, decode: Any) -> Any:
    """A variant class's pydantic schema (FastAPI): written and read externally tagged, as
    serde does. pydantic is imported only when pydantic asks for the schema."""
    from pydantic_core import core_schema

    def validate(o: Any) -> Any:
        if isinstance(o, cls):
            return o
        try:
            value = decode(o)
        except CodecError as e:
            raise ValueError(str(e)) from None
        if not isinstance(value, cls):
            raise ValueError(f"not a {{cls.__name__}}: {{o!r}}")
        return value

    return core_schema.no_info_plain_validator_function(
        validate, serialization=core_schema.plain_serializer_function_ser_schema(encode)
    )


def _tagged_json_schema(title: str, tag: str) -> dict[str, Any]:
    return {{
        "title": title,
        "type": "object",
        "properties": {{tag: {{}}}},
        "required": [tag],
        "additionalProperties": False,
    }}


class _Handle:
    def __init__(self, client: conclib.AsyncClient, urn: str) -> None:
        self.client = client
        self.urn = urn

    def __repr__(self) -> str:
        return f"{{type(self).__name__}}({{self.urn!r}})"

    async def _ask(
        self, name: str, payload: Any, timeout: float | None, priority: conclib.Priority, error: Any
    ) -> Any:
        try:
            return await self.client.ask(self.urn, name, payload, timeout=timeout, priority=priority)
        except HandlerError as e:
            if error is None:
                raise
            raise error(error.decode(e.error), e.urn, e.message) from None


class _BlockingHandle:
    def __init__(self, client: conclib.Client, urn: str) -> None:
        self.client = client
        self.urn = urn

    def __repr__(self) -> str:
        return f"{{type(self).__name__}}({{self.urn!r}})"

    def _ask(self, name: str, payload: Any, timeout: float | None, priority: conclib.Priority, error: Any) -> Any:
        try:
            return self.client.ask(self.urn, name, payload, timeout=timeout, priority=priority)
        except HandlerError as e:
            if error is None:
                raise
            raise error(error.decode(e.error), e.urn, e.message) from None
'''


def generate(schema: dict[str, Any], source: str = "schema.json", models: str = "dataclass") -> str:
    """The module's source for a schema document; ``models``: ``"dataclass"`` or
    ``"pydantic"`` (pydantic v2 ``BaseModel`` classes)."""
    if schema.get("conclib_schema") != 1:
        raise ValueError("not a conclib schema (conclib_schema: 1)")
    if models not in MODELS:
        raise ValueError(f"models must be one of {MODELS}, got {models!r}")
    gen = _Gen(defs=schema.get("$defs", {}), models=models)
    handles: list[str] = []
    # Per message that can fail, its HandlerError subclass (name -> source), and every
    # name the module defines (an error class never shadows a model).
    error_classes: dict[str, str] = {}
    taken = {prefix + _ident(a["name"]) for a in schema["actors"] for prefix in ("", "Blocking")}
    for actor in schema["actors"]:
        cls = _ident(actor["name"])
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
        [prefix + _ident(a["name"]) for a in schema["actors"] for prefix in ("", "Blocking")]
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
    parts = [_HEADER.format(source=source, exports=exports, model_import=model_import)]
    parts += gen.classes
    parts += list(gen.aliases.values())
    if models == "pydantic" and gen.model_names:
        # Field types name aliases and classes defined after the class: resolved now.
        parts.append("".join(f"{name}.model_rebuild()\n" for name in gen.model_names))
    parts += gen.functions
    parts += list(error_classes.values())
    parts += handles
    return "\n\n\n".join(p.rstrip() for p in parts) + "\n"


def _error_class(actor: str, method: str, wire: str, error: _Type, classes: dict[str, str], taken: set[str]) -> str:
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


def _parameters(gen: _Gen, request: Any) -> tuple[tuple[list[str], list[str]], str]:
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
