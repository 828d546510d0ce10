"""The peer of type1_throughput: the Type I attack and the class transition in PyTorch.

The same models, read by name from the same fixtures/weights/*.safetensors files: the
supervised VAE (encoder, decoder with its two bilinear resizes in TF1's legacy
convention, latent classifier f2, discriminator D), the attacked classifier f1 = GapCnn
and the oracle. The same attack (crates/vae-attack): Adam on the latent code z only
(lr 5e-3, betas 0.9 / 0.999, eps 1e-8, bias corrections at the batch's step count),
the paper's adaptive k per pair, and the early stop asked of f1 and the oracle at
every iterate (f2 alone for the transition). The same work per iteration: stopped
pairs leave the batch, pairs whose k is 0 skip the backward through the decoder and
f1, the transition never decodes (--whole-batch: every pair through everything,
stopped pairs masked out of the step, as the Rust attack did before commit b24ffaf;
the arithmetic is the same). The same 90 pairs: the first fixture test image of each
class towards its 9 other classes, f1's prediction of the clean image as the label to
keep. The trajectory records and frames of the Rust attack are not reproduced, only
the math.

    python3 bench/type1_peer.py [--iters N] [--reps R] [--type1 | --transition]
                                [--channels-last] [--whole-batch]
    python3 bench/type1_peer.py --check DUMP [--channels-last] [--whole-batch]

Prints the same lines as type1_throughput (pair-iterations per second: the
iterations every pair ran, summed, over the wall time of the attack), best and median
of R timed runs (default 3) after a 2-iteration warm-up. --check DUMP takes the JSON
of `type1_throughput --dump DUMP`: it compares the models' outputs on the same images
and codes (max abs diff < 1e-4), then runs both attacks at the dump's iteration count
and compares every pair's iterations, success and classes (must be equal) and its
final z (max abs diff reported); it prints PASS or FAIL and exits 1 on FAIL.

Eager, f32, 2 threads unless TORCH_NUM_THREADS says otherwise, flush-to-zero on;
NCHW unless --channels-last (the convolutions' weights and inputs channels-last, as a
PyTorch expert runs convolutions on a CPU); the lines end in the options used.
Needs `pip install torch` (the weights are read by a small reader here, no other
package); not part of the tests.
"""

import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
WEIGHTS = os.path.join(ROOT, "fixtures", "weights")
FIXTURES = os.environ.get("MNIST_FIXTURES_DIR", os.path.join(ROOT, "fixtures", "mnist-mini"))

LR, BETA1, BETA2, EPS = 5e-3, 0.9, 0.999, 1e-8
DIS_WEIGHT = 0.01
K_LR, K_J1, K_MARGIN, K_MAX = 1e-4, 1e-3, 0.01, 1e-3
DIM_Z = 32


def read_safetensors(path):
    """name -> f32 tensor, from the file's JSON header and raw little-endian data."""
    with open(path, "rb") as f:
        raw = f.read()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        data = np.frombuffer(raw, dtype="<f4", count=(end - start) // 4, offset=8 + size + start)
        out[name] = torch.from_numpy(data.copy()).reshape(info["shape"])
    return out


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    (magic,) = struct.unpack(">I", raw[:4])
    dims = struct.unpack(">" + "I" * (magic & 0xFF), raw[4 : 4 + 4 * (magic & 0xFF)])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def bilinear_matrix(inp, out):
    """As models::layers::bilinear_matrix: output i samples input i * inp / out (TF1's
    legacy resize: align_corners false, no half-pixel centres), the next index clamped."""
    m = np.zeros((out, inp), dtype=np.float32)
    scale = inp / out
    for i in range(out):
        src = i * scale
        lo = min(int(np.floor(src)), inp - 1)
        hi = min(lo + 1, inp - 1)
        frac = np.float32(src - lo)
        m[i, lo] += np.float32(1.0) - frac
        m[i, hi] += frac
    return torch.from_numpy(m)


class Models:
    """The three models as functions of their weights. With channels_last, every
    convolution's weight and input are in PyTorch's channels-last memory format (the
    values, shapes and results are the same; oneDNN's kernels differ)."""

    def __init__(self, channels_last=False):
        self.svae = read_safetensors(os.path.join(WEIGHTS, "svae.safetensors"))
        self.gapcnn = read_safetensors(os.path.join(WEIGHTS, "gapcnn.safetensors"))
        self.oracle_w = read_safetensors(os.path.join(WEIGHTS, "oracle.safetensors"))
        self.up14 = (bilinear_matrix(7, 14), bilinear_matrix(7, 14))
        self.up28 = (bilinear_matrix(14, 28), bilinear_matrix(14, 28))
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        for w in (self.svae, self.gapcnn, self.oracle_w):
            for name, p in w.items():
                p.requires_grad_(False)
                if p.dim() == 4:
                    w[name] = p.contiguous(memory_format=self.format)

    def _conv(self, w, name, x, stride=1, padding=1):
        x = x.contiguous(memory_format=self.format)
        return F.conv2d(x, w[name + ".weight"], w[name + ".bias"], stride=stride, padding=padding)

    def _dense(self, w, name, x):
        return F.linear(x, w[name + ".weight"], w[name + ".bias"])

    def _stack(self, prefix, layers, x):
        for i in range(1, layers + 1):
            x = self._dense(self.svae, f"{prefix}.fc{i}", x)
            if i < layers:
                x = F.elu(x)
        return x

    @staticmethod
    def _resize(rows_cols, x):
        rows, cols = rows_cols
        return rows @ x @ cols.t()

    def encode_mu(self, binary):
        w, h = self.svae, binary
        for i, stride in zip(range(1, 5), (1, 2, 1, 2)):
            h = F.elu(self._conv(w, f"encoder.conv{i}", h, stride=stride))
        h = torch.tanh(self._dense(w, "encoder.fc1", h.flatten(1)))
        return self._dense(w, "encoder.fc2", h)[:, :DIM_Z]

    def decode(self, z):
        w = self.svae
        h = F.elu(self._dense(w, "decoder.fc1", z))
        h = F.elu(self._dense(w, "decoder.fc2", h)).reshape(-1, 64, 7, 7)
        h = self._resize(self.up14, h)
        h = F.elu(self._conv(w, "decoder.conv1", h))
        h = F.elu(self._conv(w, "decoder.conv2", h))
        h = self._resize(self.up28, h)
        h = F.elu(self._conv(w, "decoder.conv3", h))
        return torch.sigmoid(self._conv(w, "decoder.conv4", h))

    def f2(self, z):
        return self._stack("latent_classifier", 3, z)

    def discriminate(self, z):
        return self._stack("discriminator", 4, z)

    def f1(self, x):
        w = self.gapcnn
        for i in range(1, 6):
            x = F.relu(self._conv(w, f"conv{i}", x))
            if i in (2, 4):
                x = F.max_pool2d(x, 2)
        return self._dense(w, "fc", x.mean(dim=(2, 3)))

    def oracle(self, x):
        w = self.oracle_w
        x = F.max_pool2d(F.relu(self._conv(w, "conv1", x, padding=2)), 2)
        x = F.max_pool2d(F.relu(self._conv(w, "conv2", x, padding=2)), 2)
        return self._dense(w, "fc2", F.relu(self._dense(w, "fc1", x.flatten(1))))


def softplus(x):
    """As models::layers::softplus: relu(x) + log(1 + exp(-|x|))."""
    return F.relu(x) + torch.log(torch.exp(-x.abs()) + 1.0)


def latent_terms(models, z, targets, type1):
    """J2 + dis_weight * l_dis + norm_weight * ||z||, and J2 and f2's logits."""
    f2_logits = models.f2(z)
    j2 = F.cross_entropy(f2_logits, targets, reduction="none")
    l_dis = softplus(-models.discriminate(z)).squeeze(1)
    z_norm = z.square().sum(-1).sqrt()
    norm_weight = 1e-4 if type1 else 5e-4
    return j2 + l_dis * DIS_WEIGHT + z_norm * norm_weight, j2, f2_logits


def objective(models, z, targets, keep, k, type1):
    """vae_attack::latent_objective for the paper's objective (type1) or the transition."""
    total, j2, f2_logits = latent_terms(models, z, targets, type1)
    images = models.decode(z)
    j1 = f1_logits = None
    if type1:
        f1_logits = models.f1(images)
        j1 = F.cross_entropy(f1_logits, keep, reduction="none")
        total = total + j1 * k
    return total, j2, j1, f1_logits, f2_logits, images


def pairs():
    """The harness's batch: the first fixture test image of each class, towards its 9
    other classes, and the images as f32 in [0, 1] and as the SVAE's binarised input."""
    images = read_idx(os.path.join(FIXTURES, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(FIXTURES, "t10k-labels-idx1-ubyte.gz"))
    chosen = [int(np.flatnonzero(labels == c)[0]) for c in range(10)]
    chosen.sort()
    index, targets = [], []
    for i in chosen:
        for t in range(10):
            if t != labels[i]:
                index.append(i)
                targets.append(t)
    pixels = images[index].astype(np.uint8)
    x = torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    binary = torch.from_numpy((pixels > 127).astype(np.float32)).reshape(-1, 1, 28, 28)
    return chosen, index, targets, x, binary


def attack(models, binary, targets, keep, iters, type1, whole_batch=False):
    """The latent optimisation of crates/vae-attack's `run` with Stop::Oracle: returns
    per pair (iterations, success, f1_pred, oracle_pred, f2_pred) and the final z.

    As the Rust attack computes it: stopped pairs leave the batch, and a pair whose k is
    0 (k starts at 0 and often stays there) has G(z) and f1 evaluated on a detached code,
    so no backward runs through the decoder and f1 (its gradient there is 0 * dJ1/dz);
    the transition, judged by f2 alone, never decodes. With whole_batch, every pair's
    objective is computed and differentiated through G and f1 at every iteration and
    stopped pairs are masked out of the step (the Rust attack before commit b24ffaf);
    the arithmetic is the same either way."""
    n = binary.shape[0]
    t = torch.tensor(targets, dtype=torch.long)
    y = torch.tensor(keep, dtype=torch.long)
    with torch.no_grad():
        z = models.encode_mu(binary)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    k = np.zeros(n)
    active = np.ones(n, dtype=bool)
    iterations = np.full(n, iters)
    for it in range(iters + 1):
        running = np.flatnonzero(active)
        if whole_batch:
            groups = [(np.arange(n), True)]
        elif type1:
            weighted = k[running] != 0
            groups = [(running[weighted], True), (running[~weighted], False)]
        else:
            groups = [(running, False)]
        parts = []
        for rows, through_images in groups:
            if len(rows) == 0:
                continue
            index = torch.from_numpy(rows)
            zv = z[index].requires_grad_(True)
            if through_images:
                k_t = torch.from_numpy(k[rows].astype(np.float32))
                total, j2, j1, f1_logits, f2_logits, images = objective(
                    models, zv, t[index], y[index], k_t, type1
                )
            else:
                total, j2, f2_logits = latent_terms(models, zv, t[index], type1)
                j1 = f1_logits = images = None
                if type1:
                    with torch.no_grad():
                        images = models.decode(zv.detach())
                        f1_logits = models.f1(images)
                        j1 = F.cross_entropy(f1_logits, y[index], reduction="none")
            parts.append((rows, index, zv, total, j2, j1, f1_logits, f2_logits, images))
        rows = np.concatenate([p[0] for p in parts])
        cat = lambda i: torch.cat([p[i] for p in parts]).detach()
        with torch.no_grad():
            if type1:
                oracle_pred = models.oracle(cat(8)).argmax(1)
                success = (cat(6).argmax(1) == y[rows]) & (oracle_pred == t[rows])
            else:
                success = cat(7).argmax(1) == t[rows]
        last = it == iters
        stops = active[rows] & (last | success.numpy())
        iterations[rows[stops]] = it
        active[rows[stops]] = False
        if not active.any():
            break
        step = it + 1
        for rows_g, index, zv, total, *_ in parts:
            keep_rows = torch.from_numpy(active[rows_g])
            if not keep_rows.any():
                continue
            (g,) = torch.autograd.grad(total.sum(), zv)
            with torch.no_grad():
                mg = m[index] * BETA1 + g * (1.0 - BETA1)
                vg = v[index] * BETA2 + g.square() * (1.0 - BETA2)
                update = (mg * (1.0 / (1.0 - BETA1**step))) / (
                    (vg * (1.0 / (1.0 - BETA2**step))).sqrt() + EPS
                )
                moved = index[keep_rows]
                z[moved] = (zv - update * LR)[keep_rows]
                m[moved], v[moved] = mg[keep_rows], vg[keep_rows]
        if type1:
            j1n, j2n = np.zeros(n), np.zeros(n)
            j1n[rows] = cat(5).numpy()
            j2n[rows] = cat(4).numpy()
            delta = K_J1 * j1n - j2n + np.maximum(j1n - K_MARGIN, 0.0)
            k = np.where(active, np.clip(k + K_LR * delta, 0.0, K_MAX), k)
    # Judge the final codes.
    with torch.no_grad():
        f2_pred = models.f2(z).argmax(1)
        images = models.decode(z)
        if type1:
            f1_pred = models.f1(images).argmax(1)
            oracle_pred = models.oracle(images).argmax(1)
            success = (f1_pred == y) & (oracle_pred == t)
        else:
            f1_pred = oracle_pred = None
            success = f2_pred == t
    out = []
    for i in range(n):
        out.append(
            {
                "iterations": int(iterations[i]),
                "success": bool(success[i]),
                "f1_pred": None if f1_pred is None else int(f1_pred[i]),
                "oracle_pred": None if oracle_pred is None else int(oracle_pred[i]),
                "f2_pred": int(f2_pred[i]),
            }
        )
    return out, z


def race(name, reps, warm_up, run, note=""):
    warm_up()
    secs, result = [], None
    for _ in range(reps):
        start = time.perf_counter()
        result = run()
        secs.append(time.perf_counter() - start)
    work = sum(p["iterations"] for p in result[0])
    secs.sort()
    median = secs[reps // 2]
    print(
        f"{name:28} best {work / secs[0]:7.0f} pair-it/s   median {work / median:7.0f} pair-it/s"
        f"   {work} pair-iterations, wall {median:.2f} s (best {secs[0]:.2f} s){note}",
        flush=True,
    )
    return result


def max_diff(a, b):
    a = torch.as_tensor(np.asarray(a, dtype=np.float32))
    b = torch.as_tensor(np.asarray(b, dtype=np.float32)).reshape(a.shape)
    return float((a - b).abs().max()), float(b.abs().max())


def check(models, dump_path, whole_batch):
    with open(dump_path) as f:
        dump = json.load(f)
    chosen, index, targets, x, binary = pairs()
    ok = True

    def verdict(label, diff, scale, limit):
        nonlocal ok
        good = diff < limit
        ok &= good
        print(f"  {label:36} max abs diff {diff:.2e} (scale {scale:.2e})  {'ok' if good else 'FAIL'}")

    if dump["pairs"]["image"] != index or dump["pairs"]["target"] != targets:
        print("FAIL: the dump's pairs are not this script's pairs")
        sys.exit(1)
    keep = dump["pairs"]["keep"]
    d = dump["models"]
    print("models on the same images and codes:")
    with torch.no_grad():
        pixels = torch.stack([x[index.index(i)] for i in d["images"]])
        bins = torch.stack([binary[index.index(i)] for i in d["images"]])
        mu = torch.tensor(d["mu"], dtype=torch.float32)
        decoded = torch.tensor(d["decoded"], dtype=torch.float32).reshape(-1, 1, 28, 28)
        verdict("encoder mu(x)", *max_diff(models.encode_mu(bins), d["mu"]), 1e-4)
        verdict("decoder G(z), z = the dump's mu", *max_diff(models.decode(mu), d["decoded"]), 1e-4)
        verdict("f1 logits on x", *max_diff(models.f1(pixels), d["f1_logits_x"]), 1e-4)
        verdict("oracle logits on x", *max_diff(models.oracle(pixels), d["oracle_logits_x"]), 1e-4)
        verdict("f1 logits on the dump's G(z)", *max_diff(models.f1(decoded), d["f1_logits_decoded"]), 1e-4)
        verdict(
            "oracle logits on the dump's G(z)",
            *max_diff(models.oracle(decoded), d["oracle_logits_decoded"]),
            1e-4,
        )
        verdict("f2 logits on the dump's mu", *max_diff(models.f2(mu), d["f2_logits"]), 1e-4)
        verdict("D logit on the dump's mu", *max_diff(models.discriminate(mu), d["d_logits"]), 1e-4)
    t = torch.tensor(targets, dtype=torch.long)
    y = torch.tensor(keep, dtype=torch.long)
    z0 = torch.stack([mu[d["images"].index(i)] for i in index])
    k = torch.full((len(index),), 1e-3)
    for label, type1 in (("type1", True), ("transition", False)):
        zv = z0.clone().requires_grad_(True)
        total = objective(models, zv, t, y, k, type1)[0]
        (g,) = torch.autograd.grad(total.sum(), zv)
        verdict(f"gradient of the {label} objective", *max_diff(g, d[f"grad_{label}"]), 1e-4)

    iters = dump["iters"]
    for label, type1 in (("type1", True), ("transition", False)):
        if label not in dump:
            continue
        print(f"{label}, {len(index)} pairs, {iters} iterations:")
        start = time.perf_counter()
        ours, z = attack(models, binary, targets, keep, iters, type1, whole_batch)
        secs = time.perf_counter() - start
        theirs = dump[label]
        fields = ("iterations", "success", "f1_pred", "oracle_pred", "f2_pred")
        differ = [i for i in range(len(ours)) if any(ours[i][f] != theirs[i][f] for f in fields)]
        for i in differ[:10]:
            rust = {f: theirs[i][f] for f in fields}
            print(f"  pair {i} (image {index[i]} -> {targets[i]}): rust {rust}, torch {ours[i]}")
        zdiff, zscale = max_diff(z, [p["z"] for p in theirs])
        its = [p["iterations"] for p in ours]
        print(
            f"  {len(ours) - len(differ)}/{len(ours)} pairs equal in iterations, success and classes;"
            f" successes rust {sum(p['success'] for p in theirs)}, torch {sum(p['success'] for p in ours)};"
            f" pair-iterations {sum(its)} (median stop {int(np.median(its))});"
            f" final z max abs diff {zdiff:.2e} (|z| up to {zscale:.2f}); {secs:.1f} s"
        )
        ok &= not differ
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


def main():
    args = sys.argv[1:]
    value = lambda name, default: args[args.index(name) + 1] if name in args else default
    iters = int(value("--iters", "500"))
    reps = max(int(value("--reps", "3")), 1)
    dump = value("--check", None)
    only_type1, only_transition = "--type1" in args, "--transition" in args
    channels_last = "--channels-last" in args
    whole_batch = "--whole-batch" in args
    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "2")))
    torch.set_flush_denormal(True)
    models = Models(channels_last)
    if dump is not None:
        check(models, dump, whole_batch)
        return
    chosen, index, targets, x, binary = pairs()
    with torch.no_grad():
        keep = models.f1(x).argmax(1).tolist()
    n = len(index)
    kinds = [("type1", True), ("transition", False)]
    if only_type1 or only_transition:
        kinds = [k for k in kinds if (k[1] and only_type1) or (not k[1] and only_transition)]
    for label, type1 in kinds:
        race(
            f"{label} ({n} pairs, {iters} it)",
            reps,
            lambda: attack(models, binary, targets, keep, 2, type1, whole_batch),
            lambda: attack(models, binary, targets, keep, iters, type1, whole_batch),
            (", channels-last" if channels_last else "") + (", whole batch" if whole_batch else ""),
        )


if __name__ == "__main__":
    main()
