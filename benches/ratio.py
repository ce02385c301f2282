#!/usr/bin/env python3
"""The median of run-by-run ratios between two rows of the core suite, over many rounds.

On this project's shared 2-core machines one run of a row moves by 20% or more from the
next (docs/bench-log.md), so a target stated as a ratio ("tell with metrics on at least 0.7x
metrics off", "ring at least 1.0x raw tokio") is judged here by the median of many
ratios, each taken from two runs side by side. Each round runs the denominator's row, then
the numerator's, for every binary given in turn (A/B: the binaries alternate within each
round). Peers need not be built (`cargo build --release --no-default-features` in
`benches/`).

    python3 benches/ratio.py <rounds> <scenario> <key> <numerator> <denominator> [binary...]
        [-- argument...]

    # metrics on against metrics off, tell rate, 40 rounds, the work tree's build:
    python3 benches/ratio.py 40 tell rate conclib-metrics conclib-bounded
    # bounded ask p99 against raw tokio's, two builds alternated:
    python3 benches/ratio.py 20 ask p99_ns conclib-bounded tokio-bounded /tmp/a /tmp/b

Arguments after `--` go to every run (`-- --ring-actors 10000`: the ring's size).
`key` is a field of the suite's `BENCH-RESULT` line (`rate`, `p50_ns`, `p99_ns`, ...).
Prints, per binary: the median ratio, its quartiles and range, and each row's median.
Last line: `RESULT binary=.. median=.. q1=.. q3=..` for each binary.
"""

import re
import statistics
import subprocess
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "target" / "release" / "conclib-benches"


def run(binary: str, framework: str, scenario: str, key: str, extra: list[str]) -> float:
    out = subprocess.run(
        [binary, "--framework", framework, "--scenario", scenario, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    found = re.search(rf"BENCH-RESULT \S+ \S+ .*?\b{re.escape(key)}=([0-9.e+-]+)", out)
    if not found:
        sys.exit(f"{binary} --framework {framework} --scenario {scenario}: no {key} in {out!r}")
    return float(found.group(1))


def main() -> None:
    args = sys.argv[1:]
    extra: list[str] = []
    if "--" in args:
        extra = args[args.index("--") + 1 :]
        args = args[: args.index("--")]
    if len(args) < 5:
        sys.exit(__doc__)
    rounds, scenario, key, numerator, denominator = args[:5]
    binaries = args[5:] or [str(DEFAULT)]
    pairs: dict[str, list[tuple[float, float]]] = {b: [] for b in binaries}
    for _ in range(int(rounds)):
        for binary in binaries:
            den = run(binary, denominator, scenario, key, extra)
            num = run(binary, numerator, scenario, key, extra)
            pairs[binary].append((num, den))
    results = []
    for binary, seen in pairs.items():
        ratios = sorted(num / den for num, den in seen)
        n = len(ratios)
        q1, q3 = ratios[n // 4], ratios[(3 * n) // 4]
        median = statistics.median(ratios)
        print(
            f"{binary}: {numerator} / {denominator}, {scenario} {key}, {n} rounds: "
            f"median {median:.3f} (quartiles {q1:.3f}-{q3:.3f}, range "
            f"{ratios[0]:.3f}-{ratios[-1]:.3f}); {numerator} median "
            f"{statistics.median(x for x, _ in seen):.4g}, {denominator} median "
            f"{statistics.median(y for _, y in seen):.4g}"
        )
        results.append(f"binary={binary} median={median:.3f} q1={q1:.3f} q3={q3:.3f}")
    print("RESULT " + " ".join(results))


if __name__ == "__main__":
    main()
