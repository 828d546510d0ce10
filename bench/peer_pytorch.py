"""The peer we race: GapCnn's three hot paths in PyTorch, timed like step_throughput.

Same network (conv3x3 1->32, 32->32, max-pool 2, 32->64, 64->64, max-pool 2, 64->128,
ReLU after each conv, global average pooling, linear 128->10), same batches (training
128 with Adam, input gradient 250, inference 1000), same inputs (uniform [0, 1)), same
report: best and median of N timed repetitions after one warm-up, then a 2048 x 2048
f32 matmul in GFLOP/s as the machine's scale.

    python3 bench/peer_pytorch.py [N] [PATH] [--settings S,...]

PATH is training, gradient, inference or matmul. Each of the first three runs in each
of PyTorch's f32 settings named by --settings (default all three): `nchw` (eager,
the default memory format), `channels-last` (eager, weights and inputs in
`torch.channels_last`) and `compile` (`torch.compile` of the NCHW model, its
compilation in the untimed warm-up step); each line ends with its setting in
brackets, e.g. `inference, batch 1000 [compile]`, and `race.py` takes the best
setting per path. Threads: 2 unless
TORCH_NUM_THREADS says otherwise. Flush-to-zero is on, as in the Rust binaries
(docs/PERFORMANCE: without it PyTorch's Adam and convolutions slow down 5-20x here).
This script is not part of the tests; it needs `pip install torch`.
"""

import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class GapCnn(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [1, 32, 32, 64, 64, 128]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:])
        )
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i in (1, 3):
                x = F.max_pool2d(x, 2)
        return self.fc(x.mean(dim=(2, 3)))


def report(name, work, unit, reps, step):
    step()
    secs = []
    for _ in range(reps):
        start = time.perf_counter()
        step()
        secs.append(time.perf_counter() - start)
    secs.sort()
    best, median = work / secs[0], work / secs[reps // 2]
    print(f"{name:28} best {best:7.0f} {unit:8}   median {median:7.0f} {unit}", flush=True)


SETTINGS = ("nchw", "channels-last", "compile")


def main():
    args = sys.argv[1:]
    settings = list(SETTINGS)
    if "--settings" in args:
        i = args.index("--settings")
        if i + 1 >= len(args):
            sys.exit("--settings needs a value, e.g. nchw,compile")
        settings = args[i + 1].split(",")
        del args[i : i + 2]
        bad = [s for s in settings if s not in SETTINGS]
        if bad or not settings:
            sys.exit(f"--settings: {', '.join(bad) or 'none given'}; known: {', '.join(SETTINGS)}")
    reps = max(int(args[0]) if len(args) > 0 else 30, 1)
    only = args[1] if len(args) > 1 else None
    paths = ("training", "gradient", "inference", "matmul")
    if only is not None and only not in paths:
        sys.exit(f"PATH is training, gradient, inference or matmul, got {only}")
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "2")))
    torch.set_flush_denormal(True)
    if only != "matmul":
        for setting in settings:
            run_paths(setting, reps, only)
    if only is None or only == "matmul":
        gen = torch.Generator().manual_seed(0)
        n = 2048
        a, b = torch.rand(n, n, generator=gen) * 2 - 1, torch.rand(n, n, generator=gen) * 2 - 1
        report("matmul 2048 x 2048, f32", 2 * n**3 / 1e9, "GFLOP/s", (reps + 1) // 2, lambda: a @ b)


def run_paths(setting, reps, only):
    """GapCnn's three paths (or `only` one) in one PyTorch setting, the same weights and
    inputs in every setting."""
    runs = lambda p: only is None or only == p
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if setting == "channels-last" else torch.contiguous_format
    inputs = lambda n: torch.rand(n, 1, 28, 28, generator=gen).contiguous(memory_format=fmt)
    labels = lambda n: torch.arange(n) % 10
    tag = f" [{setting}]"

    torch.manual_seed(0)
    model = GapCnn().to(memory_format=fmt)
    net = torch.compile(model) if setting == "compile" else model
    if runs("training"):
        adam = torch.optim.Adam(model.parameters())
        x, y = inputs(128), labels(128)

        def train():
            adam.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            adam.step()

        report("training step, batch 128" + tag, 128, "images/s", reps, train)

    for p in model.parameters():
        p.requires_grad_(False)
    if runs("gradient"):
        x, y = inputs(250).requires_grad_(True), labels(250)

        def gradient():
            x.grad = None
            F.cross_entropy(net(x), y).backward()

        report("input gradient, batch 250" + tag, 250, "images/s", reps, gradient)

    if runs("inference"):
        x = inputs(1000)

        def inference():
            with torch.no_grad():
                net(x)

        report("inference, batch 1000" + tag, 1000, "images/s", (reps + 1) // 2, inference)


if __name__ == "__main__":
    main()
