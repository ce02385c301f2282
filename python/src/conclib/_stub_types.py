"""A schema's named and inline types as Python source, for ``conclib.stubgen``: each JSON
Schema a message, response or error names becomes an annotation with its encoder and
decoder expressions, and each ``$defs`` entry a class (a dataclass or a pydantic model), a
Rust enum's type alias and variant classes, or an alias, with the module's ``_enc_`` /
``_dec_`` functions. Separate from ``stubgen``, which writes the actors' handles and the
module around these types.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Expr", "PyType", "SchemaTypes", "ident"]

Expr = Callable[[str], str]
"""An expression's source made from its operand's (an encoder's or a decoder's)."""


def ident(name: str) -> str:
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
class PyType:
    annotation: str
    encode: Expr
    decode: Expr


@dataclass
class _Struct:
    name: str
    doc: str
    fields: list[tuple[str, str, PyType, bool]]  # wire name, python name, type, required


@dataclass
class SchemaTypes:
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

    def type_of(self, schema: Any) -> PyType:
        if schema is True or schema == {}:
            return PyType("Any", lambda x: x, lambda o: o)
        if not isinstance(schema, dict):
            raise ValueError(f"unsupported schema {schema!r}")
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            self.define(name)
            py = ident(name)
            return PyType(py, lambda x: f"_enc_{py}({x})", lambda o: f"_dec_{py}({o})")
        if schema.get("x-conclib-bin"):
            return PyType("bytes", lambda x: x, lambda o: f"_bytes({o})")
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
            return PyType(literal, lambda x: x, lambda o: f"_literal({o}, {tuple(values)!r})")
        if kind == "integer":
            return PyType("int", lambda x: x, lambda o: f"_int({o})")
        if kind == "number":
            return PyType("float", lambda x: x, lambda o: f"_float({o})")
        if kind == "string":
            return PyType("str", lambda x: x, lambda o: f"_str({o})")
        if kind == "boolean":
            return PyType("bool", lambda x: x, lambda o: f"_bool({o})")
        if kind == "null":
            return PyType("None", lambda x: "None", lambda o: f"_none({o})")
        if kind == "array" and "prefixItems" in schema:
            items = [self.type_of(s) for s in schema["prefixItems"]]
            n = len(items)
            ann = "tuple[" + ", ".join(t.annotation for t in items) + "]" if items else "tuple[()]"
            return PyType(
                ann,
                lambda x: "[" + ", ".join(t.encode(f"{x}[{i}]") for i, t in enumerate(items)) + "]",
                lambda o: f"(lambda _t: (" + "".join(f"{t.decode(f'_t[{i}]')}, " for i, t in enumerate(items))
                + f"))(_array({o}, {n}))",
            )
        if kind == "array":
            item = self.type_of(schema.get("items", {}))
            v = self.var()
            return PyType(
                f"list[{item.annotation}]",
                lambda x: f"[{item.encode(v)} for {v} in {x}]",
                lambda o: f"[{item.decode(v)} for {v} in _array({o})]",
            )
        if kind == "object" and "properties" not in schema:
            value = self.type_of(schema.get("additionalProperties", {}))
            k, v = self.var(), self.var()
            return PyType(
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

    def optional(self, inner: PyType) -> PyType:
        if inner.annotation.endswith("| None") or inner.annotation == "None":
            return inner
        return PyType(
            f"{inner.annotation} | None",
            lambda x: f"(None if {x} is None else {inner.encode(x)})",
            lambda o: f"(None if {o} is None else {inner.decode(o)})",
        )

    # -- named types -------------------------------------------------------------------------

    def struct_fields(self, schema: dict[str, Any]) -> list[tuple[str, str, PyType, bool]]:
        props: dict[str, Any] = schema.get("properties", {})
        required = [r for r in schema.get("required", []) if r in props]
        order = required + sorted(p for p in props if p not in required)
        return [(p, _field_name(p), self.type_of(props[p]), p in required) for p in order]

    def dataclass(self, name: str, doc: str, fields: list[tuple[str, str, PyType, bool]]) -> None:
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
        py = ident(name)
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
            cls = ident(f"{py}{wire}")
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
