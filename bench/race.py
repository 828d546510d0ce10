"""Races fastconv against PyTorch on this machine: alternates the two programs.

A shared machine's speed drifts within minutes, so one run of each says little.
This runs `step_throughput` and `peer_pytorch.py` in turn, PAIRS times, and prints
each path's median rate per program over the pairs and the median of the per-pair
ratios (fastconv / PyTorch), with the matmul line (the same 2048 x 2048 product in
both) as the machine's scale.

    cargo build --release -p models --example step_throughput
    python3 bench/race.py [PAIRS] [N]

N is the repetitions per run (default 15), PAIRS the number of alternations
(default 6). Needs `pip install torch`; not part of the tests.
"""

import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RUST = os.path.join(HERE, "..", "target", "release", "examples", "step_throughput")
LINE = re.compile(r"^(.*?)\s+best\s+(\d+) .*median\s+(\d+)")


def rates(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            found[m.group(1).strip()] = (int(m.group(2)), int(m.group(3)))
    return found


def main():
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    reps = sys.argv[2] if len(sys.argv) > 2 else "15"
    if not os.path.exists(RUST):
        sys.exit(f"{RUST} is missing: cargo build --release -p models --example step_throughput")
    programs = {
        "fastconv": [RUST, reps],
        "pytorch": [sys.executable, os.path.join(HERE, "peer_pytorch.py"), reps],
    }
    runs = {name: [] for name in programs}
    for i in range(pairs):
        order = list(programs) if i % 2 == 0 else list(reversed(programs))
        for name in order:
            runs[name].append(rates(programs[name]))
        print(f"pair {i + 1}/{pairs} done", file=sys.stderr, flush=True)
    paths = list(runs["fastconv"][0])
    print(f"{'path (median over pairs)':28} {'fastconv':>9} {'pytorch':>9} {'ratio':>6}")
    for path in paths:
        ours = [r[path][1] for r in runs["fastconv"]]
        peer = [r[path][1] for r in runs["pytorch"]]
        ratio = statistics.median(a / b for a, b in zip(ours, peer))
        print(f"{path:28} {statistics.median(ours):9.0f} {statistics.median(peer):9.0f} {ratio:6.2f}")


if __name__ == "__main__":
    main()
