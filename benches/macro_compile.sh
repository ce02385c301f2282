#!/usr/bin/env bash
# What the method-call API costs at compile time: a 20-handler actor written in the
# message-struct form (20 `#[message]` structs, `fn h(&mut self, M(n): M)`) against the same
# actor in the method-call form (`fn h(&mut self, n: u64)`, messages generated), built with
# the work tree's macros; and the message-struct form built with the macros of a revision
# before the method-call API (`$1`, default d84d7aa^). Each crate is built (`cargo check`,
# dependencies already built) `rounds` times, alternated; the median is reported.
#
#   bash benches/macro_compile.sh [rev] [rounds]
set -euo pipefail
rev=${1:-d84d7aa^}
rounds=${2:-7}
top=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'git -C "$top" worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git -C "$top" worktree add -q --detach "$tmp/old" "$rev"

struct_form() {
  echo 'use conclib::{actor, message};'
  for i in $(seq 1 20); do echo "#[message(response = u64)] pub struct M$i(pub u64);"; done
  echo '#[actor] pub struct Big { total: u64 }'
  echo '#[actor] impl Big {'
  for i in $(seq 1 20); do echo "  #[handle] pub fn h$i(&mut self, M$i(n): M$i) -> u64 { self.total += n * $i; self.total }"; done
  echo '}'
}
method_form() {
  echo 'use conclib::actor;'
  echo '#[actor] pub struct Big { total: u64 }'
  echo '#[actor] impl Big {'
  for i in $(seq 1 20); do echo "  #[handle] pub fn h$i(&mut self, n: u64) -> u64 { self.total += n * $i; self.total }"; done
  echo '}'
}
make_crate() { # dir conclib-path source-fn
  mkdir -p "$1/src"
  printf '[package]\nname = "big"\nversion = "0.0.0"\nedition = "2024"\n[dependencies]\nconclib = { path = "%s" }\n[workspace]\n' "$2" >"$1/Cargo.toml"
  "$3" >"$1/src/lib.rs"
}
make_crate "$tmp/old-struct" "$tmp/old" struct_form
make_crate "$tmp/new-struct" "$top" struct_form
make_crate "$tmp/new-method" "$top" method_form
for c in old-struct new-struct new-method; do
  (cd "$tmp/$c" && CARGO_TARGET_DIR="$tmp/target-$c" cargo check -q 2>/dev/null)
done
declare -A times
for r in $(seq 1 "$rounds"); do
  for c in old-struct new-struct new-method; do
    touch "$tmp/$c/src/lib.rs"
    start=$(date +%s%N)
    (cd "$tmp/$c" && CARGO_TARGET_DIR="$tmp/target-$c" cargo check -q 2>/dev/null)
    end=$(date +%s%N)
    times[$c]+="$(( (end - start) / 1000000 )) "
  done
done
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
old=$(median "${times[old-struct]}"); news=$(median "${times[new-struct]}"); newm=$(median "${times[new-method]}")
echo "check times (ms): old-struct: ${times[old-struct]}| new-struct: ${times[new-struct]}| new-method: ${times[new-method]}"
echo "RESULT old_struct_ms=$old new_struct_ms=$news new_method_ms=$newm method_vs_old_struct=$(awk "BEGIN{printf \"%.2f\", $newm/$old}") method_vs_new_struct=$(awk "BEGIN{printf \"%.2f\", $newm/$news}")"
