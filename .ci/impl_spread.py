#!/usr/bin/env python3
"""Fails when one type's inherent `impl` blocks are spread over more than MAX files of one
crate (a type's behaviour scattered over the files that use it, rather than kept with it or
on the parts that own its data). Types are told apart by name and folder: two types of one
name in different folders (`client/shared.rs`, `proxy/shared.rs`) count apart.

Usage: .ci/impl_spread.py CRATE_DIR [MAX]   (MAX defaults to 3)
"""
import collections
import glob
import os
import re
import sys


def main() -> int:
    src = os.path.join(sys.argv[1], "src")
    most = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    files = collections.defaultdict(set)
    for path in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True):
        text = re.sub(r"//[^\n]*", "", open(path).read())
        # `impl Type {` / `impl<T> Type<T> {`, not `impl Trait for Type`.
        for m in re.finditer(r"^\s*impl(?:<[^>{]*>)?\s+([A-Z]\w*)(?:<[^{]*>)?\s*(?:where[^{]*)?\{", text, re.M):
            top = os.path.relpath(path, src).split(os.sep)[0]
            files[(top, m.group(1))].add(os.path.relpath(path, src))
    bad = {k: v for k, v in files.items() if len(v) > most}
    for (top, name), paths in sorted(bad.items()):
        print(f"impl {name} ({top}) in {len(paths)} files: {', '.join(sorted(paths))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
