#!/usr/bin/env python3
"""Fails when a package in the lock file declares a `rust-version` newer than the workspace's.

The declared minimum Rust version (Cargo.toml, `rust-version`) cannot be built here (no
toolchain but the image's can be fetched): clippy's `incompatible_msrv` lint (in `.ci/run`'s
clippy run) checks our own use of the standard library against it, and this checks that no
dependency asks for more.
"""
import json
import subprocess
import sys


def version(text: str) -> tuple[int, ...]:
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--all-features"],
        check=True, capture_output=True, text=True,
    ).stdout
)
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members and p.get("rust_version")}
if len(ours) != 1:
    sys.exit(f"workspace members declare {sorted(ours)}: expected one rust-version")
msrv = ours.pop()
newer = sorted(
    f'{p["name"]} {p["version"]} needs {p["rust_version"]}'
    for p in meta["packages"]
    if p.get("rust_version") and version(p["rust_version"]) > version(msrv)
)
if newer:
    sys.exit(f"dependencies need a newer Rust than the declared {msrv}:\n  " + "\n  ".join(newer))
print(f"msrv: {len(meta['packages'])} packages, none needs more than Rust {msrv}")
