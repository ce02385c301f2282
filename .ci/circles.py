#!/usr/bin/env python3
"""Prints the import circles inside one crate: the strongly connected components, of more
than one file, of the graph "file A names a module of file B".

A file names a module by `use crate::…`, `use super::…`, `use self::…`, `use child::…` (a
module it declares) and by such paths written inline (`crate::a::b(…)`); a path names the
deepest module file it reaches. The crate root (lib.rs) is left out: it declares and
re-exports everything. Comments and string literals are skipped; a `super::` inside an
inline module (`mod tests { use super::*; }`, found by its indentation) names the file
itself. A measure over the text, not the compiler's resolution.

Usage: .ci/circles.py CRATE_DIR [--top] [--edges]   (e.g. `.ci/circles.py conclib-process`)
`--top`: a folder's modules as one node (the circles between `proxy/` and `snapshots/`).
"""
import os
import re
import sys


def modules(src: str) -> dict[tuple[str, ...], str]:
    """Module path -> file: `a/b.rs` and `a/b/mod.rs` are `("a", "b")`, lib.rs is `()`."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] == "mod":
                rel = rel[:-1]
            if rel in (["lib"], ["main"]):
                rel = []
            mods[tuple(rel)] = os.path.join(root, f)
    return mods


def expand(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> `[a::b, a::c::d, a::c::e]`."""
    i = tree.find("{")
    if i < 0:
        return [tree]
    head, body = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += (ch == "{") - (ch == "}")
        cur += ch
    parts.append(cur)
    return [head + q for p in parts if p.strip() for q in expand(p)]


def paths(text: str) -> list[tuple[str, bool]]:
    """The paths a file writes, each with whether it is inside an inline module."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\])*"', '""', text)
    out = []
    for m in re.finditer(r"\buse\s+(\w+\b[^;]*);", text):
        indented = m.start() > text.rfind("\n", 0, m.start()) + 1
        tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", m.group(1)))
        out.extend((p, indented) for p in expand(tree))
    body = re.sub(r"\buse\s+[^;]*;", "", text)
    # A visibility (`pub(in crate::proxy)`) names a module without using it.
    body = re.sub(r"\bpub\s*\(\s*in\s+[\w:]+\s*\)", "pub", body)
    for m in re.finditer(r"(?<![\w:])([a-z_][a-z0-9_]*(?:::\w+)+)", body):
        out.append((m.group(1), False))
    return out


def resolve(path, here, mods, indented):
    segs = path.split("::")
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(here)
        if indented and segs[0] == "super":  # `mod tests { use super::… }`: this file
            segs = segs[1:]
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    elif tuple(here) + (segs[0],) in mods:  # a module this one declares
        base = list(here)
    else:  # an external crate's path
        return None
    best = tuple(base)
    for i in range(len(segs)):
        if tuple(base + segs[: i + 1]) in mods:
            best = tuple(base + segs[: i + 1])
    return best


def circles(graph):
    """Tarjan's strongly connected components with more than one node."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = stack.pop()
                on.discard(w)
                c.append(w)
                if w == v:
                    break
            if len(c) > 1:
                found.append(sorted(c))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def main():
    mods = modules(os.path.join(sys.argv[1], "src"))
    graph = {}
    for m, f in mods.items():
        if m:
            with open(f) as file:
                named = {resolve(p, m, mods, ind) for p, ind in paths(file.read())}
            graph[m] = {t for t in named if t and t != m and t in mods}
    if "--top" in sys.argv:  # each top-level module (a folder) as one node
        top = {}
        for m, deps in graph.items():
            top.setdefault(m[:1], set()).update(d[:1] for d in deps if d[:1] != m[:1])
        graph = top
    if "--edges" in sys.argv:
        for m in sorted(graph):
            print("/".join(m), "->", ", ".join(sorted("/".join(d) for d in graph[m])))
    found = circles(graph)
    for c in found:
        print(f"circle ({len(c)}): " + " ".join("/".join(x) for x in c))
    if not found:
        print("no circles")


if __name__ == "__main__":
    main()
