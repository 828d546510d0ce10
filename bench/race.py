"""Races fastconv against PyTorch on this machine: alternates the two programs.

A shared machine's speed drifts within minutes, so one run of each says little.
This runs `step_throughput` and `peer_pytorch.py` in turn, PAIRS times, and prints
each path's median rate per program over the pairs and the median of the per-pair
ratios (fastconv / PyTorch), with the matmul line (the same 2048 x 2048 product in
both) as the machine's scale.

    cargo build --release -p models --example step_throughput
    python3 bench/race.py [PAIRS] [N] [--baseline OTHER_STEP_THROUGHPUT]

N is the repetitions per run (default 15), PAIRS the number of alternations
(default 6). The peer times each path in three PyTorch f32 settings (NCHW eager,
channels-last eager, `torch.compile`; see peer_pytorch.py): a column per setting, and
the ratio against the best of them in each pair (the strongest PyTorch setting for
that path, named in the last column by the setting best in most pairs). With --baseline, a `step_throughput` built from another commit joins
the rotation and a last column gives this build's rate over it (a refactor's
before/after, interleaved). Needs `pip install torch`; not part of the tests.

    cargo build --release -p vae-attack --example type1_throughput -p models --example step_throughput
    python3 bench/race.py --type1 [--iters I] [--no-records] [PAIRS] [N]

races the Type I attack instead: `type1_throughput` (the Rust attack and class
transition on the harness's batch of 90 pairs, I iterations at most, default 500)
against `type1_peer.py` (the same attack in PyTorch), NCHW and channels-last, N timed
runs each (default 1), PAIRS alternations of the three (default 3), in
pair-iterations per second, with the ratio Rust / PyTorch for each layout; each
program's slot ends with its matmul line (`step_throughput 5 matmul`,
`peer_pytorch.py 5 matmul`). At 500 iterations one round takes several minutes.
--no-records runs the Rust attack without its trajectory records and frames, which the
peer never keeps (they are most of the Rust transition's time).
"""

import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "target", "release", "examples")
RUST = os.path.join(EXAMPLES, "step_throughput")
TYPE1 = os.path.join(EXAMPLES, "type1_throughput")
LINE = re.compile(r"^(.*?)\s+best\s+(\d+) .*median\s+(\d+)")


def rates(*cmds):
    """The (best, median) of every line the commands print, by path."""
    found = {}
    for cmd in cmds:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            m = LINE.match(line)
            if m:
                found[m.group(1).strip()] = (int(m.group(2)), int(m.group(3)))
    return found


def take_option(args, name):
    """Removes `name VALUE` from args and returns VALUE (None when absent)."""
    if name not in args:
        return None
    i = args.index(name)
    if i + 1 >= len(args):
        sys.exit(f"{name} needs a value")
    value = args[i + 1]
    del args[i : i + 2]
    return value


def alternate(programs, pairs):
    """Runs every program once per pair, in turn (reversed every other pair)."""
    runs = {name: [] for name in programs}
    for i in range(pairs):
        order = list(programs) if i % 2 == 0 else list(reversed(programs))
        for name in order:
            runs[name].append(rates(*programs[name]))
        print(f"pair {i + 1}/{pairs} done", file=sys.stderr, flush=True)
    return runs


def type1_race(args):
    """Type I attack and class transition: the Rust example against the PyTorch peer."""
    iters = take_option(args, "--iters") or "500"
    no_records = ["--no-records"] if "--no-records" in args else []
    if no_records:
        args.remove("--no-records")
    pairs = int(args[0]) if len(args) > 0 else 3
    reps = args[1] if len(args) > 1 else "1"
    for path in (TYPE1, RUST):
        if not os.path.exists(path):
            sys.exit(
                f"{path} is missing: cargo build --release -p vae-attack --example"
                " type1_throughput -p models --example step_throughput"
            )
    matmul_reps = "5"
    peer = [sys.executable, os.path.join(HERE, "type1_peer.py"), "--iters", iters, "--reps", reps]
    matmul = [sys.executable, os.path.join(HERE, "peer_pytorch.py"), matmul_reps, "matmul"]
    programs = {
        "rust": [
            [TYPE1, "--iters", iters, "--reps", reps] + no_records,
            [RUST, matmul_reps, "matmul"],
        ],
        "pytorch": [peer, matmul],
        "pytorch-cl": [peer + ["--channels-last"], matmul],
    }
    runs = alternate(programs, pairs)
    print(
        f"{'path (median over pairs)':30} {'rust':>9} {'pytorch':>9} {'ratio':>6}"
        f" {'torch-cl':>9} {'ratio':>6}"
    )
    for path in runs["rust"][0]:
        ours = [r[path][1] for r in runs["rust"]]
        line = f"{path:30} {statistics.median(ours):9.0f}"
        for peer_name in ("pytorch", "pytorch-cl"):
            if not all(path in r for r in runs[peer_name]):
                line += f" {'-':>9} {'-':>6}"
                continue
            rate = [r[path][1] for r in runs[peer_name]]
            ratio = statistics.median(a / b for a, b in zip(ours, rate))
            line += f" {statistics.median(rate):9.0f} {ratio:6.2f}"
        print(line)


def main():
    args = sys.argv[1:]
    if "--type1" in args:
        args.remove("--type1")
        type1_race(args)
        return
    baseline = take_option(args, "--baseline")
    if baseline is not None and not os.path.exists(baseline):
        sys.exit(f"--baseline {baseline}: no such file")
    pairs = int(args[0]) if len(args) > 0 else 6
    reps = args[1] if len(args) > 1 else "15"
    if not os.path.exists(RUST):
        sys.exit(f"{RUST} is missing: cargo build --release -p models --example step_throughput")
    programs = {
        "fastconv": [[RUST, reps]],
        "pytorch": [[sys.executable, os.path.join(HERE, "peer_pytorch.py"), reps]],
    }
    if baseline:
        programs["baseline"] = [[baseline, reps]]
    runs = alternate(programs, pairs)
    paths = list(runs["fastconv"][0])
    settings = ("nchw", "channels-last", "compile")
    extra = f" {'baseline':>9} {'vs base':>7}" if baseline else ""
    print(
        f"{'path (median over pairs)':28} {'fastconv':>9} {'nchw':>9} {'ch-last':>9}"
        f" {'compile':>9} {'vs best':>7} {'best':>13}{extra}"
    )
    for path in paths:
        ours = [r[path][1] for r in runs["fastconv"]]
        # Per pair, each setting's median (the matmul line has no setting).
        by_setting = {
            s: [r.get(f"{path} [{s}]", (0, 0))[1] for r in runs["pytorch"]] for s in settings
        }
        if path in runs["pytorch"][0]:
            by_setting = {"-": [r[path][1] for r in runs["pytorch"]]}
        best = [max(rates) for rates in zip(*by_setting.values())]
        if min(best) <= 0:
            sys.exit(f"the peer printed no rate for {path!r}")
        winners = [max(by_setting, key=lambda s: by_setting[s][i]) for i in range(len(best))]
        winner = max(set(winners), key=winners.count)
        ratio = statistics.median(a / b for a, b in zip(ours, best))
        cols = "".join(
            f" {statistics.median(by_setting[s]):9.0f}" if s in by_setting else f" {'-':>9}"
            for s in settings
        )
        if "-" in by_setting:
            cols = f" {statistics.median(by_setting['-']):9.0f}" + f" {'-':>9}" * 2
        line = f"{path:28} {statistics.median(ours):9.0f}{cols} {ratio:7.2f} {winner:>13}"
        if baseline and all(path in r for r in runs["baseline"]):
            base = [r[path][1] for r in runs["baseline"]]
            vs = statistics.median(a / b for a, b in zip(ours, base))
            line += f" {statistics.median(base):9.0f} {vs:7.2f}"
        print(line)


if __name__ == "__main__":
    main()
