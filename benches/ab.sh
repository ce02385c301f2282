#!/usr/bin/env bash
# Side-by-side A/B of the core suite: the conclib rows of a git revision (A, default: main's
# parent chain base given as $1) against the work tree (B), alternated in one session so
# that both see the same machine. Peers are not built (--no-default-features).
#
#   bash benches/ab.sh <rev> [rounds] [scenarios]
#   bash benches/ab.sh 84ce587 3 tell,ask,spawn,fanin
set -euo pipefail
rev=${1:?usage: bash benches/ab.sh <rev> [rounds] [scenarios]}
rounds=${2:-3}
scenarios=${3:-tell,ask,spawn,fanin}
top=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'git -C "$top" worktree remove --force "$tmp/a" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$top" worktree add -q --detach "$tmp/a" "$rev"
# A's build reuses B's target dir for the dependencies (same versions).
(cd "$tmp/a/benches" && CARGO_TARGET_DIR="$top/benches/target/ab-a" cargo build -q --release --no-default-features)
(cd "$top/benches" && cargo build -q --release --no-default-features)
cp "$top/benches/target/ab-a/release/conclib-benches" "$tmp/bench-a"
cp "$top/benches/target/release/conclib-benches" "$tmp/bench-b"
echo "| round | build | tell msg/s | ask p50 | ask mean | spawn/s | RSS/actor | stop/s | fan-in msg/s |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
  for side in a b; do
    label=$([ "$side" = a ] && echo "$rev" || echo "work tree")
    row=$("$tmp/bench-$side" --runs 3 --frameworks tokio-bounded,conclib-bounded --scenarios "$scenarios" \
      | grep '^| conclib-bounded' | cut -d'|' -f6,7,9,10,11,12,13)
    echo "| $round | $label |$row|"
  done
done
