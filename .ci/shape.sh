#!/usr/bin/env bash
# The code's shape, kept: no import circle but those in .ci/circles-allowed (circles.py, every
# crate), no module of conclib-redis naming items through its crate root's re-exports
# (root_imports.py), no type's inherent impls over more than 3 files of a crate
# (impl_spread.py). Text measures: about 2 s of CPU in all.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
crates=$(ls -d conclib-*/ | tr -d /; echo . xtask python/testserver readme)
for crate in $crates; do
  [ -d "$crate/src" ] || continue
  while read -r line; do
    case "$line" in "no circles") continue ;; esac
    if ! grep -qxF "$crate: $line" .ci/circles-allowed; then
      echo "shape: import circle not allowed in $crate: $line"
      status=1
    fi
  done < <(python3 .ci/circles.py "$crate")
  if ! python3 .ci/impl_spread.py "$crate" 3; then status=1; fi
done
if ! python3 .ci/root_imports.py conclib-redis; then
  echo "shape: conclib-redis names items through its crate root (use their module paths)"
  status=1
fi
exit $status
