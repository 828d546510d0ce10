"""Races fastconv against PyTorch on this machine: alternates the two programs.

A shared machine's speed drifts within minutes, so one run of each says little.
This runs `step_throughput` and `peer_pytorch.py` in turn, PAIRS times, and prints
each path's median rate per program over the pairs and the median of the per-pair
ratios (fastconv / PyTorch), with the matmul line (the same 2048 x 2048 product in
both) as the machine's scale.

    cargo build --release -p models --example step_throughput
    python3 bench/race.py [PAIRS] [N] [--baseline OTHER_STEP_THROUGHPUT]

N is the repetitions per run (default 15), PAIRS the number of alternations
(default 6). With --baseline, a `step_throughput` built from another commit joins
the rotation and a last column gives this build's rate over it (a refactor's
before/after, interleaved). Needs `pip install torch`; not part of the tests.
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
    args = sys.argv[1:]
    baseline = None
    if "--baseline" in args:
        i = args.index("--baseline")
        if i + 1 >= len(args):
            sys.exit("--baseline needs the path of another step_throughput")
        baseline = args[i + 1]
        del args[i : i + 2]
        if not os.path.exists(baseline):
            sys.exit(f"--baseline {baseline}: no such file")
    pairs = int(args[0]) if len(args) > 0 else 6
    reps = args[1] if len(args) > 1 else "15"
    if not os.path.exists(RUST):
        sys.exit(f"{RUST} is missing: cargo build --release -p models --example step_throughput")
    programs = {
        "fastconv": [RUST, reps],
        "pytorch": [sys.executable, os.path.join(HERE, "peer_pytorch.py"), reps],
    }
    if baseline:
        programs["baseline"] = [baseline, reps]
    runs = {name: [] for name in programs}
    for i in range(pairs):
        order = list(programs) if i % 2 == 0 else list(reversed(programs))
        for name in order:
            runs[name].append(rates(programs[name]))
        print(f"pair {i + 1}/{pairs} done", file=sys.stderr, flush=True)
    paths = list(runs["fastconv"][0])
    extra = f" {'baseline':>9} {'vs base':>7}" if baseline else ""
    print(f"{'path (median over pairs)':28} {'fastconv':>9} {'pytorch':>9} {'ratio':>6}{extra}")
    for path in paths:
        ours = [r[path][1] for r in runs["fastconv"]]
        peer = [r[path][1] for r in runs["pytorch"]]
        ratio = statistics.median(a / b for a, b in zip(ours, peer))
        line = f"{path:28} {statistics.median(ours):9.0f} {statistics.median(peer):9.0f} {ratio:6.2f}"
        if baseline and all(path in r for r in runs["baseline"]):
            base = [r[path][1] for r in runs["baseline"]]
            vs = statistics.median(a / b for a, b in zip(ours, base))
            line += f" {statistics.median(base):9.0f} {vs:7.2f}"
        print(line)


if __name__ == "__main__":
    main()
