"""CLEVER against a reference: ART's `clever_t` on the bundled GapCnn, image by image.

Loads the GapCnn weights (safetensors, by name) into bench/peer_pytorch.py's PyTorch
GapCnn, wraps it in ART's PyTorchClassifier (logits out, clip_values (0, 1), so the
sampled points are clipped to the pixel box as ours are), reads the first N test
images of an MNIST directory (IDX, byte / 255 as the Rust loader does; the default is
the bundled fixtures, which `cargo xtask clever` reads by default: their test images
0-499 include MNIST test images 0-9 unchanged) and runs

    art.metrics.clever_t(classifier, x, runner_up, nb_batches, batch_size, radius, norm)

for L2 and Linf, once per seed (`np.random.seed(seed)` before each call: ART draws
from NumPy's global generator), with ART's own defaults for the rest (c_init 1.0,
pool_factor 10). The runner-up is the class with the second largest logit at x0, as
`--target runner-up` picks it. Radii default to ours (`cargo xtask clever`: 5 for L2,
0.5 for Linf).

For each image it prints ART's median over the seeds with [min, max] and, given
`--ours DIR` holding `cargo xtask clever --json` files named `<index>_<norm>.json`
(norm `2` or `inf`), our score beside it. The JSON (`--json F`) holds every score and,
per call, the 50 batch maxima ART fitted and the (shape, loc, scale) it got, caught by
wrapping the `weibull_min` ART calls (ART's code is not changed).

    python3 bench/clever_reference.py [--data-dir DIR] [--n 10] [--seeds 0 1 2]
        [--nb 50 --ns 64] [--radius-l2 5 --radius-linf 0.5] [--ours DIR] [--json F]

Not part of the tests; needs `pip install torch numpy scipy safetensors
adversarial-robustness-toolbox`.
"""

import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_pytorch import GapCnn  # noqa: E402

import art  # noqa: E402
import art.metrics.metrics as art_metrics  # noqa: E402
from art.estimators.classification import PyTorchClassifier  # noqa: E402


def read_idx(path):
    """An unsigned-byte IDX file (gzipped or not) as a numpy array of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def load_test(data_dir, n):
    """The first n test images (N x 1 x 28 x 28, float32 byte / 255) and labels."""
    find = lambda stem: next(
        (p for p in (os.path.join(data_dir, stem + ".gz"), os.path.join(data_dir, stem)) if os.path.exists(p)),
        None,
    ) or sys.exit(f"{data_dir}: no {stem}(.gz)")
    images = read_idx(find("t10k-images-idx3-ubyte"))[:n]
    labels = read_idx(find("t10k-labels-idx1-ubyte"))[:n]
    return (images.astype(np.float32) / np.float32(255.0))[:, None], labels.astype(np.int64)


def load_model(path):
    """A GapCnn with the checkpoint's conv1..conv5 and fc, matched by name."""
    renamed = {}
    for key, value in load_file(path).items():
        layer, _, kind = key.partition(".")
        if layer.startswith("conv") and layer[4:].isdigit():
            layer = f"convs.{int(layer[4:]) - 1}"
        renamed[f"{layer}.{kind}"] = torch.from_numpy(value.copy())
    model = GapCnn()
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        sys.exit(f"{path}: missing {missing}, unexpected {unexpected}")
    return model.eval()


class RecordingWeibull:
    """Stands in for scipy's weibull_min inside art.metrics.metrics: forwards every
    call and keeps what `fit` was given and returned."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def fit(self, data, *args, **kwargs):
        result = self.inner.fit(data, *args, **kwargs)
        self.calls.append({"maxima": (-np.asarray(data, dtype=np.float64)).tolist(), "fit": [float(v) for v in result]})
        return result

    def __getattr__(self, name):
        return getattr(self.inner, name)


def read_ours(ours_dir, index, norm):
    path = os.path.join(ours_dir, f"{index}_{norm}.json") if ours_dir else None
    return json.load(open(path))["score"] if path and os.path.exists(path) else None


def table_row(r, ours):
    med, lo, hi = r["art_median"], r["art_min"], r["art_max"]
    spread = (hi - lo) / 2 / med if med > 0 else float("nan")
    ratio = f"{ours / med:.3f}" if ours is not None and med > 0 else "-"
    return (
        f"| {r['index']} | {r['label']} | {r['class']} | {r['runner_up']} | L{r['norm']} | "
        f"{'-' if ours is None else f'{ours:.4f}'} | {med:.4f} [{lo:.4f}, {hi:.4f}] | +-{100 * spread:.1f} % | {ratio} |"
    )


HEADER = (
    "| image | label | class | runner-up | norm | ours | ART median [min, max] | ART spread | ours / ART |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def print_table(rows, ours_dir):
    print(HEADER)
    for r in rows:
        print(table_row(r, read_ours(ours_dir, r["index"], r["norm"])))


def explain(rows, ours_dir):
    """Splits ours / ART (of L, the inverse of the scores' ratio) into where the largest
    sampled gradient norm differs (ART: a pool of pool_factor x batch_size points,
    ours: nb x ns fresh points) and how far each fit puts L above its largest maximum.
    Needs our JSON's batch_maxima."""
    print()
    print("L = margin / score. ART's per seed: L_art, its largest fitted maximum m_art; ours: L, m.")
    print("| image | norm | m_art (median) | L_art / m_art (median) | m | L / m | m / m_art | L / L_art |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        path = os.path.join(ours_dir, f"{r['index']}_{r['norm']}.json")
        if not os.path.exists(path):
            continue
        cls = json.load(open(path))["classes"][0]
        if "batch_maxima" not in cls:
            continue
        m = max(cls["batch_maxima"])
        m_art = np.median([max(run["maxima"]) for run in r["runs"]])
        ratio_art = np.median([-run["weibull_min_fit"][1] / max(run["maxima"]) for run in r["runs"]])
        l_art = r["margin"] / r["art_median"]
        print(
            f"| {r['index']} | L{r['norm']} | {m_art:.4g} | {ratio_art:.3f} | {m:.4g} | "
            f"{cls['lipschitz'] / m:.3f} | {m / m_art:.3f} | {cls['lipschitz'] / l_art:.3f} |"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="fixtures/mnist-mini")
    ap.add_argument("--weights", default="fixtures/weights/gapcnn.safetensors")
    ap.add_argument("--n", type=int, default=10, help="test images 0..n-1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--nb", type=int, default=50, help="nb_batches")
    ap.add_argument("--ns", type=int, default=64, help="batch_size")
    ap.add_argument("--pool-factor", type=int, default=10, help="ART's pool_factor (its default 10)")
    ap.add_argument("--radius-l2", type=float, default=5.0)
    ap.add_argument("--radius-linf", type=float, default=0.5)
    ap.add_argument("--ours", help="directory of `cargo xtask clever --json` files <index>_<norm>.json")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--from", dest="from_json", help="print the tables of an earlier --json run instead of running ART")
    args = ap.parse_args()
    if args.from_json:
        rows = json.load(open(args.from_json))["rows"]
        print_table(rows, args.ours)
        if args.ours:
            explain(rows, args.ours)
        return
    torch.set_num_threads(args.threads)

    x, labels = load_test(args.data_dir, args.n)
    model = load_model(args.weights)
    classifier = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    recorder = RecordingWeibull(art_metrics.weibull_min)
    art_metrics.weibull_min = recorder
    norms = [("2", 2, args.radius_l2), ("inf", np.inf, args.radius_linf)]

    print(
        f"ART {art.__version__} clever_t, runner-up target, nb_batches {args.nb}, batch_size {args.ns}, "
        f"pool_factor {args.pool_factor}, c_init 1.0, radius L2 {args.radius_l2} Linf {args.radius_linf}, "
        f"seeds {args.seeds}"
    )
    print(HEADER)
    rows = []
    start = time.time()
    for i in range(len(x)):
        logits = classifier.predict(x[i : i + 1])[0]
        order = np.argsort(-logits)
        c, j = int(order[0]), int(order[1])
        for name, norm, radius in norms:
            runs = []
            for seed in args.seeds:
                np.random.seed(seed)
                score = art_metrics.clever_t(classifier, x[i], j, args.nb, args.ns, radius, norm, pool_factor=args.pool_factor)
                call = recorder.calls[-1]
                runs.append({"seed": seed, "score": float(score), "weibull_min_fit": call["fit"], "maxima": call["maxima"]})
            scores = np.array([r["score"] for r in runs])
            med, lo, hi = float(np.median(scores)), float(scores.min()), float(scores.max())
            ours = read_ours(args.ours, i, name)
            rows.append(
                {
                    "index": i,
                    "label": int(labels[i]),
                    "class": c,
                    "runner_up": j,
                    "margin": float(logits[c] - logits[j]),
                    "norm": name,
                    "radius": radius,
                    "art_median": med,
                    "art_min": lo,
                    "art_max": hi,
                    "ours": ours,
                    "runs": runs,
                }
            )
            print(table_row(rows[-1], ours), flush=True)
    print(f"{time.time() - start:.0f} s")
    if args.ours:
        explain(rows, args.ours)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json",)}
        out = {"art_version": art.__version__, "c_init": 1.0, "settings": settings, "rows": rows}
        with open(args.json + ".tmp", "w") as f:
            json.dump(out, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
