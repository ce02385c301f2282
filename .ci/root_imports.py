#!/usr/bin/env python3
"""Fails on a file of a crate that names, in code, an item through the crate root's
re-exports (`crate::ProxyClient`, `use crate::{Topic, …}`) instead of the module that
defines it: a module reaching back up to the root it is re-exported from.

Usage: .ci/root_imports.py CRATE_DIR   (e.g. `.ci/root_imports.py conclib-redis`)
Doc comments are left out: a doc link may name the root's public path.
"""
import glob
import os
import re
import sys


def reexports(lib: str) -> set[str]:
    """The names `pub use module::{…}` (of this crate's modules) make at the root."""
    names = set()
    for m in re.finditer(r"^pub use ([^;]+);", lib, re.M):
        tree = re.sub(r"\s+", " ", m.group(1))
        head = tree.split("{")[0]
        if not re.match(r"[a-z_]+::", head) or head.startswith(("conclib_", "std::")):
            continue
        body = tree[tree.find("{") + 1 : tree.rfind("}")] if "{" in tree else tree
        for part in body.split(","):
            part = part.strip()
            if part:
                names.add(part.split(" as ")[-1].split("::")[-1])
    return names


def main() -> int:
    src = os.path.join(sys.argv[1], "src")
    lib = os.path.join(src, "lib.rs")
    if not os.path.exists(lib):
        return 0
    names = reexports(open(lib).read())
    found = []
    for path in sorted(glob.glob(os.path.join(src, "**", "*.rs"), recursive=True)):
        if path == lib:
            continue
        text = re.sub(r"//[^\n]*", "", open(path).read())
        for m in re.finditer(r"\bcrate::(\w+)\b(?!::)", text):
            if m.group(1) in names:
                found.append(f"{path}: crate::{m.group(1)}")
        for m in re.finditer(r"\buse crate::\{([^;]*)\};", text):
            for part in re.split(r"[,\s{}]+", m.group(1)):
                if part in names:
                    found.append(f"{path}: use crate::{{{part}}}")
    for f in found:
        print(f)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
