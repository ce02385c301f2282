"""Rust message types from a schema document: what a Rust caller asks an actor written in
Python with (``ProxyClient::ask(urn, Add(5))``), typed as the Python handlers are.

    python -m conclib.actor_schema mymodule:Account=account:{id} -o schema.json
    python -m conclib.rustgen schema.json -o src/account_api.rs

Per message: its request type (a named struct of the schema's ``$defs``, a newtype of a plain
type, or a unit struct), ``impl conclib::Message`` (its wire name, response and error) and
``conclib::remote::MessageDecl``; per named struct, a ``serde`` struct. The module needs
``serde`` (derive) and, for ``bytes``, ``serde_bytes``. Types: ``int`` → ``i64``, ``float``
→ ``f64``, ``str`` → ``String``, ``bytes`` → ``serde_bytes::ByteBuf``, ``list[T]`` →
``Vec<T>``, ``dict[str, V]`` → ``BTreeMap<String, V>``, ``T | None`` → ``Option<T>``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

__all__ = ["generate", "main"]

_INTS = {"int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16",
         "uint32": "u32", "uint64": "u64", "uint": "u64", "int": "i64"}


def _camel(name: str) -> str:
    last = re.split(r"[.:]+", name)[-1]
    parts = re.split(r"[^0-9A-Za-z]+", last)
    out = "".join(p[:1].upper() + p[1:] for p in parts if p)
    return out if out and not out[0].isdigit() else f"M{out}"


def _ident(name: str) -> str:
    snake = re.sub(r"[^0-9A-Za-z_]", "_", name)
    keywords = {"type", "match", "move", "ref", "self", "fn", "mod", "use", "impl", "loop", "struct", "enum"}
    return f"r#{snake}" if snake in keywords else snake


class _Gen:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.structs: dict[str, str] = {}

    def ty(self, schema: dict[str, Any] | None) -> str:
        if schema is None:
            return "conclib::remote::NoError"
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            self.named(name)
            return _camel(name)
        if "anyOf" in schema:
            arms = [a for a in schema["anyOf"] if a.get("type") != "null"]
            if len(arms) == 1 and len(arms) < len(schema["anyOf"]):
                return f"Option<{self.ty(arms[0])}>"
            raise ValueError(f"no Rust type for a union: {schema}")
        t = schema.get("type")
        if isinstance(t, list):
            rest = [x for x in t if x != "null"]
            if len(rest) == 1 and "null" in t:
                return f"Option<{self.ty({**schema, 'type': rest[0]})}>"
            raise ValueError(f"no Rust type for {schema}")
        if t == "null":
            return "()"
        if t == "boolean":
            return "bool"
        if t == "integer":
            return _INTS.get(schema.get("format", "int64"), "i64")
        if t == "number":
            return "f32" if schema.get("format") == "float" else "f64"
        if t == "string":
            return "serde_bytes::ByteBuf" if schema.get("x-conclib-bin") else "String"
        if t == "array":
            if "prefixItems" in schema:
                return "(" + ", ".join(self.ty(i) for i in schema["prefixItems"]) + ",)"
            return f"Vec<{self.ty(schema.get('items', {}))}>"
        if t == "object" and "properties" not in schema:
            return f"std::collections::BTreeMap<String, {self.ty(schema.get('additionalProperties', {}))}>"
        raise ValueError(f"no Rust type for {schema}")

    def named(self, name: str) -> None:
        rust = _camel(name)
        if rust in self.structs:
            return
        schema = self.defs[name]
        self.structs[rust] = ""  # recursion
        if schema.get("type") != "object" or "properties" not in schema:
            self.structs[rust] = f"/// `{name}`.\npub type {rust} = {self.ty(schema)};\n"
            return
        required = set(schema.get("required", []))
        lines = [f"/// {schema.get('description', name)}", "#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]",
                 f"pub struct {rust} {{"]
        for field, fs in schema["properties"].items():
            ty = self.ty(fs)
            if field not in required and not ty.startswith("Option<"):
                ty = f"Option<{ty}>"
            if field not in required:
                lines.append("    #[serde(default)]")
            if _ident(field) != field:
                lines.append(f'    #[serde(rename = "{field}")]')
            lines.append(f"    /// `{field}`.\n    pub {_ident(field)}: {ty},")
        lines.append("}\n")
        self.structs[rust] = "\n".join(lines)


def generate(document: dict[str, Any], source: str = "schema.json") -> str:
    """The Rust module of ``document``'s messages."""
    gen = _Gen(document.get("$defs", {}))
    messages: list[str] = []
    seen: set[str] = set()
    for actor in document["actors"]:
        for m in actor["messages"]:
            name, request = m["name"], m["request"]
            if "$ref" in request:
                ty = gen.ty(request)
                decl = ""
            else:
                ty = _camel(name)
                inner = gen.ty(request)
                body = ";" if inner == "()" else f"(pub {inner});"
                decl = (f"/// The message `{name}` of `{actor['urn']}`.\n"
                        f"#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\npub struct {ty}{body}\n")
            if ty in seen:
                continue
            seen.add(ty)
            error = gen.ty(m.get("error"))
            message_error = "std::convert::Infallible" if m.get("error") is None else error
            messages.append(
                decl
                + f"impl conclib::Message for {ty} {{\n    type Response = {gen.ty(m['response'])};\n"
                f"    type Error = {message_error};\n    fn name() -> &'static str {{\n        {json.dumps(name)}\n    }}\n}}\n"
                f"impl conclib::remote::MessageDecl for {ty} {{\n    type WireError = {error};\n}}\n"
            )
    head = (f"//! The messages of the actors described in `{source}`, generated by\n"
            "//! `python -m conclib.rustgen`: a Rust caller asks them with `ProxyClient::ask`. Do not edit.\n\n"
            "use serde::{Deserialize, Serialize};\n\n")
    return head + "\n".join([*filter(None, gen.structs.values()), *messages])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conclib.rustgen", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("schema", help="the schema document (python -m conclib.actor_schema, or a Rust export)")
    parser.add_argument("-o", "--output", help="the Rust file to write (default: standard output)")
    args = parser.parse_args(argv)
    with open(args.schema) as f:
        text = generate(json.load(f), source=args.schema.rsplit("/", 1)[-1])
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
