#!/usr/bin/env bash
# Side-by-side A/B of the core suite: the conclib rows of a git revision (A) against the
# work tree (B), alternated in one session so that both see the same machine. Peers are not
# built (--no-default-features).
#
#   bash benches/ab.sh <rev> [rounds] [scenarios] [frameworks]
#   bash benches/ab.sh 84ce587 3 tell,ask,spawn,fanin
#   bash benches/ab.sh HEAD 3 tell,ask,fanin conclib-bounded,conclib-metrics
#
# Every row of `frameworks` (conclib-bounded, conclib-unbounded, conclib-metrics) is printed
# with its ratio to raw tokio's row of the same run (tokio-bounded or tokio-unbounded, run
# alongside). A's binary is kept in benches/target/ab-a/<rev's commit> and reused.
set -euo pipefail
rev=${1:?usage: bash benches/ab.sh <rev> [rounds] [scenarios] [frameworks]}
rounds=${2:-3}
scenarios=${3:-tell,ask,spawn,fanin}
frameworks=${4:-conclib-bounded}
top=$(git rev-parse --show-toplevel)
commit=$(git -C "$top" rev-parse --short "$rev")
tmp=$(mktemp -d)
cache="$top/benches/target/ab-a/bin-$commit"
trap 'git -C "$top" worktree remove --force "$tmp/a" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
if [ ! -x "$cache" ]; then
  git -C "$top" worktree add -q --detach "$tmp/a" "$commit"
  # A has a target dir of its own (its conclib crates differ from B's); it persists under
  # benches/target/ab-a, so a later A/B against any revision rebuilds only conclib's crates.
  (cd "$tmp/a/benches" && CARGO_TARGET_DIR="$top/benches/target/ab-a" cargo build -q --release --no-default-features)
  cp "$top/benches/target/ab-a/release/conclib-benches" "$cache"
fi
(cd "$top/benches" && cargo build -q --release --no-default-features)
cp "$cache" "$tmp/bench-a"
cp "$top/benches/target/release/conclib-benches" "$tmp/bench-b"
raw=tokio-bounded
case ",$frameworks," in *,conclib-unbounded,*) raw=tokio-bounded,tokio-unbounded ;; esac
# The table's columns for the scenarios asked for (the suite prints only those).
header=$("$tmp/bench-b" --runs 1 --quick --frameworks tokio-bounded --scenarios "$scenarios" --no-redis 2>/dev/null \
  | grep '^| framework' | cut -d'|' -f6-)
echo "| round | build | framework |$header"
echo "|---|---|---|$(echo "$header" | sed 's/[^|]*|/---:|/g')"
for round in $(seq 1 "$rounds"); do
  for side in a b; do
    label=$([ "$side" = a ] && echo "$commit" || echo "work tree")
    "$tmp/bench-$side" --runs 3 --frameworks "$raw,$frameworks" --scenarios "$scenarios" --no-redis 2>/dev/null \
      | grep '^| conclib' | while IFS= read -r line; do
        fw=$(echo "$line" | cut -d'|' -f2 | tr -d ' ')
        echo "| $round | $label | $fw |$(echo "$line" | cut -d'|' -f6-)"
      done
  done
done
