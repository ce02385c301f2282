#!/usr/bin/env python3
"""Alternated A/B of two builds of `core_ab` (see core_ab.rs): each round runs every
scenario once with each binary, the order swapped every round; prints, per figure, the
medians of A and B and the median of the per-round ratios B/A (a rate above 1: B faster; a
latency or size above 1: B slower).

Usage: core_ab.py BIN_A BIN_B [ROUNDS] [SCENARIOS...]
"""
import statistics
import subprocess
import sys


def run(binary, scenario):
    out = subprocess.run([binary, scenario], capture_output=True, text=True, timeout=300).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:]) if k != "scenario"}


def main():
    a, b = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    scenarios = sys.argv[4:] or ["tell", "ask", "spawn", "fanin", "ring", "metrics_tell", "dyn_ask"]
    seen = {}
    for r in range(rounds):
        for s in scenarios:
            order = [(0, a), (1, b)] if r % 2 == 0 else [(1, b), (0, a)]
            got = {}
            for i, binary in order:
                got[i] = run(binary, s)
            for key in got[0]:
                seen.setdefault((s, key), []).append((got[0][key], got[1][key]))
    for (s, key), pairs in seen.items():
        ma = statistics.median(p[0] for p in pairs)
        mb = statistics.median(p[1] for p in pairs)
        ratio = statistics.median(p[1] / p[0] for p in pairs if p[0])
        print(f"RESULT ab scenario={s} figure={key} a={ma:.0f} b={mb:.0f} b_over_a={ratio:.3f} rounds={len(pairs)}")


if __name__ == "__main__":
    main()
