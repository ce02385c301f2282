#!/usr/bin/env bash
# Builds every fuzz target with nightly (libFuzzer through libfuzzer-sys, AddressSanitizer)
# and runs each for SECONDS (default 60) on a copy of its seed corpus. Prints one line
# `RESULT target=... secs=... execs=... status=...` per target; exits non-zero if any
# target found a crash (its input is left in fuzz/artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#   fuzz/run.sh min TARGET CRASH-FILE   # minimises a crash into fuzz/regressions/TARGET/
#
# FUZZ_SKIP_KNOWN=1: skip a target with an input in known-crashes/<target>/ (a crash known
# and not yet fixed; CI sets it, so that only a new crash fails it).
# FUZZ_TARGET_DIR: where to build (default fuzz/target); CI keeps it outside its fresh clone
# so that a run rebuilds only what changed.
#
# It drives libfuzzer-sys with the flags `cargo fuzz build` would pass, so cargo-fuzz need
# not be installed (`cargo +nightly fuzz run <target>` works too, where it is).
set -euo pipefail
cd "$(dirname "$0")"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
if ! rustc +"$toolchain" -V >/dev/null 2>&1; then
    echo "fuzz/run.sh: no $toolchain toolchain (rustup toolchain install $toolchain): not fuzzing" >&2
    exit 2
fi
minimise=""
if [ "${1:-}" = min ]; then
    [ $# -eq 3 ] || { echo "usage: fuzz/run.sh min TARGET CRASH-FILE" >&2; exit 2; }
    minimise="$(cd "$(dirname "$3")" && pwd)/$(basename "$3")"
    set -- 0 "$2"
fi
secs="${1:-60}"
shift || true
triple="$(rustc +"$toolchain" -vV | sed -n 's/^host: //p')"
all_targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^conclib-fuzz$')
targets="${*:-$all_targets}"

# What `cargo fuzz build` passes (cargo-fuzz 0.12, its defaults: ASan, debug assertions).
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
--cfg fuzzing -Zsanitizer=address -Cdebug-assertions -Coverflow-checks"
export RUSTDOCFLAGS="$RUSTFLAGS"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
bin_dir="$CARGO_TARGET_DIR/$triple/release"
# `--target`: build scripts and proc macros are built without the sanitizer.
start=$(date +%s)
bins=()
for t in $targets; do bins+=(--bin "$t"); done
cargo +"$toolchain" build --release --target "$triple" "${bins[@]}"
echo "BUILD secs=$(( $(date +%s) - start ))"

if [ -n "$minimise" ]; then
    t="$targets"
    mkdir -p "regressions/$t"
    out="regressions/$t/$(basename "$minimise")"
    "$bin_dir/$t" -minimize_crash=1 -max_total_time=60 \
        -exact_artifact_path="$out" "$minimise" || true
    [ -s "$out" ] || cp "$minimise" "$out"
    echo "kept $out ($(wc -c <"$out") bytes): the replay tests (cargo test) now run it"
    exit 0
fi

failed=0
for t in $targets; do
    if [ -n "${FUZZ_SKIP_KNOWN:-}" ] && [ -n "$(ls -A "known-crashes/$t" 2>/dev/null)" ]; then
        echo "RESULT target=$t secs=0 execs=0 status=skipped (known crash: fuzz/known-crashes/$t/)"
        continue
    fi
    corpus="work/corpus/$t"
    mkdir -p "$corpus" "artifacts/$t"
    # The seeds and the regressions start the run; what it finds stays out of the repo.
    cp corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    cp regressions/"$t"/* "$corpus"/ 2>/dev/null || true
    log="work/$t.log"
    status=ok
    "$bin_dir/$t" "$corpus" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || status=crash
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    echo "RESULT target=$t secs=${took:-$secs} execs=${execs:-0} status=$status"
    if [ "$status" != ok ]; then
        failed=1
        grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
    fi
done
exit "$failed"
