"""FGSM against a reference: torchattacks' FGSM on the bundled GapCnn, image by image.

Loads the GapCnn weights (safetensors, by name) into bench/peer_pytorch.py's PyTorch
GapCnn, reads the first N test images of an MNIST directory (IDX, gzipped or not,
byte / 255 as the Rust loader does), runs torchattacks.FGSM(eps) batch by batch and
prints clean and robust accuracy and success rate as `cargo xtask attack` counts them
(robust accuracy: adversarial prediction == true label, over all N images).

    python3 bench/fgsm_reference.py --data-dir DIR [--n 1000] [--eps 0.3]
        [--batch-size 100] [--ours F.csv ...] [--json FILE]

Beside torchattacks it runs FGSM written out with one ingredient changed at a time
(sum instead of mean reduction, f1's clean prediction instead of the true label, zero
gradients signed +1, float64, the cross-entropy formula of candle_nn's log_softmax, a
cross-entropy whose float32 gradient has no cancellation, max-pool ties resolved to
the last maximum instead of the first), and prints the gradient statistics that tell
the candidates apart: exactly-zero gradient entries, the error of float32
d CE / d z_label, sign disagreements with the float64 gradient, tied max-pool windows.

Each `--ours F.csv` (from `cargo xtask attack --attack fgsm --per-image F.csv`, or
from the `fgsm_paths` example of the attacks crate) is compared image by image with
torchattacks and with the float64 FGSM.

Not part of the tests; needs `pip install torch torchattacks numpy safetensors`.
"""

import argparse
import csv
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchattacks
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_pytorch import GapCnn  # noqa: E402


def read_idx(path):
    """An unsigned-byte IDX file (gzipped or not) as a numpy array of its shape."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as e:
        sys.exit(f"{path}: {e}")
    if len(data) < 4:
        sys.exit(f"{path}: too short for an IDX header")
    zero, dtype, rank = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        sys.exit(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    if len(data) < 4 + 4 * rank:
        sys.exit(f"{path}: header cut short")
    dims = struct.unpack(f">{rank}I", data[4 : 4 + 4 * rank])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != int(np.prod(dims)):
        sys.exit(f"{path}: the header says {dims}, the body holds {body.size} bytes")
    return body.reshape(dims)


def find(data_dir, stem):
    for name in (f"{stem}.gz", stem):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    sys.exit(f"{data_dir}: neither {stem}.gz nor {stem}")


def load_test(data_dir, n):
    """The first n test images (N x 1 x 28 x 28, float32 byte / 255) and labels."""
    images = read_idx(find(data_dir, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, "t10k-labels-idx1-ubyte"))
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        sys.exit(f"{data_dir}: test images {images.shape} do not match labels {labels.shape}")
    n = min(n, images.shape[0])
    x = torch.from_numpy(images[:n].astype(np.float32) / np.float32(255.0))
    return x.unsqueeze(1), torch.from_numpy(labels[:n].astype(np.int64))


class TiesLast(GapCnn):
    """peer_pytorch's GapCnn whose max-pool sends each window's gradient to its last
    maximum (the pool of the flipped maps, flipped back) instead of its first: the
    same values forward, a different but equally valid gradient where a window ties."""

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i in (1, 3):
                x = F.max_pool2d(x.flip(2, 3), 2).flip(2, 3)
        return self.fc(x.mean(dim=(2, 3)))


def load_model(path, cls=GapCnn):
    """A GapCnn with the checkpoint's conv1..conv5 and fc, matched by name."""
    try:
        tensors = load_file(path)
    except Exception as e:  # safetensors raises several kinds
        sys.exit(f"{path}: {e}")
    renamed = {}
    for key, value in tensors.items():
        layer, _, kind = key.partition(".")
        if layer.startswith("conv") and layer[4:].isdigit():
            layer = f"convs.{int(layer[4:]) - 1}"
        renamed[f"{layer}.{kind}"] = torch.from_numpy(value.copy())
    model = cls()
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if missing or unexpected:
        sys.exit(f"{path}: missing {missing}, unexpected {unexpected} (not a GapCnn checkpoint?)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def ce_exact_gradient(logits, classes):
    """Per-example cross-entropy whose float32 gradient has no cancellation: with
    t = z - z_y and M = max(t) >= 0 (detached), CE = M + log(exp(-M) + sum_{j != y}
    exp(t_j - M)). The true class's term is a constant, so d CE / d z_y comes out as
    -sum_{j != y} p_j, a sum of small positive numbers, never as 1 - p_y rounded."""
    t = logits - logits.gather(1, classes[:, None])
    m = t.max(1, keepdim=True).values.detach()
    others = torch.ones_like(t).scatter(1, classes[:, None], 0.0)
    s = (torch.exp(t - m) * others).sum(1, keepdim=True) + torch.exp(-m)
    return (m + s.log()).squeeze(1)


def ce_candle_formula(logits, classes):
    """The project's cross-entropy (attacks::cross_entropy_per_example): the label's
    entry of candle_nn::ops::log_softmax, whose formula keeps the max in the graph."""
    m = logits.amax(1, keepdim=True)
    diff = logits - m
    return -(diff - diff.exp().sum(1, keepdim=True).log()).gather(1, classes[:, None]).squeeze(1)


def ce_torch(logits, classes):
    return F.cross_entropy(logits, classes, reduction="none")


def input_gradient(model, x, classes, loss_fn=ce_torch, reduction="mean"):
    x = x.clone().detach().requires_grad_(True)
    per = loss_fn(model(x), classes)
    (g,) = torch.autograd.grad(per.mean() if reduction == "mean" else per.sum(), x)
    return g.detach()


def fgsm(model, x, y, eps, loss_fn=ce_torch, reduction="mean", label="true", zero_sign=0.0):
    """FGSM written out, so that one ingredient at a time can differ from torchattacks'."""
    with torch.no_grad():
        classes = y if label == "true" else model(x).argmax(1)
    g = input_gradient(model, x, classes, loss_fn, reduction)
    s = g.sign()
    if zero_sign != 0.0:
        s = torch.where(g == 0, torch.full_like(s, zero_sign), s)
    return (x + eps * s).clamp(0, 1)


def batched(fn, n, batch_size):
    return torch.cat([fn(slice(i, min(i + batch_size, n))) for i in range(0, n, batch_size)])


def pool_ties(model, x):
    """Per image: max-pool windows (both pools) whose maximum is positive and attained
    more than once, exactly, in the float32 forward."""
    ties = torch.zeros(len(x), dtype=torch.long)
    with torch.no_grad():
        h = x
        for i, conv in enumerate(model.convs):
            h = F.relu(conv(h))
            if i in (1, 3):
                n, c, hh, ww = h.shape
                win = h.reshape(n, c, hh // 2, 2, ww // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(n, -1, 4)
                top = win.max(2, keepdim=True).values
                ties += (((win == top).sum(2) > 1) & (top.squeeze(2) > 0)).sum(1)
                h = F.max_pool2d(h, 2)
    return ties


def summary(name, x, y, clean, adv, preds):
    right = clean == y
    success = right & (preds != y)
    delta = (adv - x).flatten(1).double()
    return {
        "name": name,
        "clean_accuracy": right.double().mean().item(),
        "robust_accuracy": (preds == y).double().mean().item(),
        "successes": int(success.sum()),
        "attackable": int(right.sum()),
        "l0": (delta.abs() > 1e-4).sum(1).tolist(),
        "l2": delta.norm(dim=1).tolist(),
        "adversarial_prediction": preds.tolist(),
    }


def read_ours(path, y):
    rows = {}
    try:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                rows[int(r["index"])] = (int(r["label"]), int(r["adversarial_prediction"]), int(r["l0"]))
    except OSError as e:
        sys.exit(f"{path}: {e}")
    except (KeyError, ValueError, TypeError) as e:
        sys.exit(f"{path}: {e!r}: expected the columns of `cargo xtask attack --per-image`")
    missing = [i for i in range(len(y)) if i not in rows]
    if missing:
        sys.exit(f"{path}: no rows for test images {missing[:5]} (run it with the same --n)")
    labels = torch.tensor([rows[i][0] for i in range(len(y))])
    if not torch.equal(labels, y):
        sys.exit(f"{path}: its labels are not those of the first {len(y)} test images")
    return torch.tensor([rows[i][1] for i in range(len(y))]), torch.tensor([rows[i][2] for i in range(len(y))])


def pct(v):
    return f"{100 * v:.2f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("MNIST_DIR"), help="MNIST IDX directory (default $MNIST_DIR)")
    ap.add_argument("--weights", default="fixtures/weights/gapcnn.safetensors")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--ours", action="append", default=[], help="a --per-image CSV of ours (repeatable)")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_NUM_THREADS", "2")))
    args = ap.parse_args()
    if not args.data_dir:
        sys.exit("--data-dir (or $MNIST_DIR) is required")
    if args.n < 1 or args.batch_size < 1:
        sys.exit("--n and --batch-size must be at least 1")
    if not 0 <= args.eps < float("inf"):
        sys.exit(f"--eps must be finite and >= 0, got {args.eps}")
    torch.set_num_threads(args.threads)

    model = load_model(args.weights)
    model64 = load_model(args.weights).double()
    x, y = load_test(args.data_dir, args.n)
    n, bs = len(y), args.batch_size
    with torch.no_grad():
        clean = model(x).argmax(1)
    print(f"FGSM eps {args.eps} on the first {n} test images of {args.data_dir} ({args.weights}), "
          f"batches of {bs}; torch {torch.__version__}, torchattacks {torchattacks.__version__}")

    def judged(adv):  # every variant is judged by the same float32 model
        with torch.no_grad():
            return batched(lambda s: model(adv[s].float()).argmax(1), n, bs)

    atk = torchattacks.FGSM(model, eps=args.eps)
    adv = batched(lambda s: atk(x[s], y[s]), n, bs)
    results = [summary("torchattacks.FGSM", x, y, clean, adv, judged(adv))]
    variants = [
        ("written out: mean CE, true label", model, {}),
        ("sum reduction", model, {"reduction": "sum"}),
        ("f1's clean prediction as the label", model, {"label": "predicted"}),
        ("zero gradients signed +1", model, {"zero_sign": 1.0}),
        ("float64 (exact)", model64, {"loss_fn": ce_exact_gradient}),
        ("float64, torch's cross_entropy", model64, {}),
        ("candle's log_softmax formula", model, {"loss_fn": ce_candle_formula}),
        ("cancellation-free cross-entropy", model, {"loss_fn": ce_exact_gradient}),
        ("float64, pool ties to the last max", load_model(args.weights, TiesLast).double(),
         {"loss_fn": ce_exact_gradient}),
    ]
    for name, m, kw in variants:
        dt = next(m.parameters()).dtype
        a = batched(lambda s: fgsm(m, x[s].to(dt), y[s], args.eps, **kw), n, bs)
        results.append(summary(name, x, y, clean, a, judged(a)))
    ref, exact = results[0], results[5]

    print()
    print("| FGSM | robust accuracy | success | images != torchattacks | != float64 (exact) |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        d_ref = sum(a != b for a, b in zip(r["adversarial_prediction"], ref["adversarial_prediction"]))
        d_ex = sum(a != b for a, b in zip(r["adversarial_prediction"], exact["adversarial_prediction"]))
        print(f"| {r['name']} | {pct(r['robust_accuracy'])} | {r['successes']} of {r['attackable']} | {d_ref} | {d_ex} |")

    # What tells the candidates apart.
    g32 = batched(lambda s: input_gradient(model, x[s], y[s]), n, bs).flatten(1)
    g_exact = batched(lambda s: input_gradient(model, x[s], y[s], ce_exact_gradient), n, bs).flatten(1)
    g64 = batched(lambda s: input_gradient(model64, x[s].double(), y[s], ce_exact_gradient), n, bs).flatten(1)
    flips32 = (g32.sign() != g64.sign()).sum(1)
    flips_exact = (g_exact.sign() != g64.sign()).sum(1)
    z32 = model(x).detach().requires_grad_(True)
    (gz,) = torch.autograd.grad(F.cross_entropy(z32, y, reduction="sum"), z32)
    with torch.no_grad():
        one_minus_p = 1 - torch.softmax(model64(x.double()), 1).gather(1, y[:, None]).squeeze(1)
    dzy = gz.gather(1, y[:, None]).squeeze(1).double()
    dzy_err = (dzy + one_minus_p).abs() / one_minus_p  # exact d CE / d z_y = -(1 - p_y)
    ties = pool_ties(model, x)
    part = [i for i in range(n) if ref["adversarial_prediction"][i] != exact["adversarial_prediction"][i]]
    print()
    print(f"gradient entries exactly 0: float32 {int((g32 == 0).sum())}, float64 {int((g64 == 0).sum())} "
          f"of {g32.numel()}")
    print(f"torch's float32 d CE / d z_label against float64: exactly 0 on {int((dzy == 0).sum())} images "
          f"(1 - p_label < 6e-8), off by > 10 % on {int((dzy_err > 0.1).sum())}, by > 1 % on {int((dzy_err > 0.01).sum())}")
    if part:
        errs = dzy_err[part]
        print(f"the {len(part)} images where torchattacks and float64 part: d CE / d z_label exactly 0 on "
              f"{int((dzy[part] == 0).sum())}, off by > 10 % on {int((errs > 0.1).sum())}, "
              f"by {float(errs.min()):.1%} at least")
    print(f"input-gradient signs unlike float64's: torch's float32 cross_entropy {int(flips32.sum())} in "
          f"{int((flips32 > 0).sum())} images; cancellation-free float32 {int(flips_exact.sum())} in "
          f"{int((flips_exact > 0).sum())} images")
    print(f"max-pool windows with a positive maximum attained twice or more (float32 forward): "
          f"{int(ties.sum())} in {int((ties > 0).sum())} of {n} images")

    report = {
        "n": n, "eps": args.eps, "variants": results,
        "zero_gradient_entries_f32": int((g32 == 0).sum()),
        "label_logit_gradient_zero": int((dzy == 0).sum()),
        "label_logit_gradient_off_10pct": int((dzy_err > 0.1).sum()),
        "sign_flips_torch_f32": int(flips32.sum()),
        "sign_flips_cancellation_free_f32": int(flips_exact.sum()),
        "tied_pool_windows": int(ties.sum()),
        "ours": [],
    }
    ref_pred = torch.tensor(ref["adversarial_prediction"])
    ex_pred = torch.tensor(exact["adversarial_prediction"])
    for path in args.ours:
        o_pred, o_l0 = read_ours(path, y)
        r_l0, e_l0 = torch.tensor(ref["l0"]), torch.tensor(exact["l0"])
        robust = (o_pred == y).double().mean().item()
        differ = (o_pred != ref_pred).nonzero().flatten().tolist()
        print()
        print(f"ours {path}: robust accuracy {pct(robust)} (torchattacks {pct(ref['robust_accuracy'])}, "
              f"float64 {pct(exact['robust_accuracy'])})")
        print(f"  adversarial prediction unlike torchattacks' on {len(differ)} images, unlike float64's on "
              f"{int((o_pred != ex_pred).sum())}; L0 unlike torchattacks' on {int((o_l0 != r_l0).sum())} "
              f"images, unlike float64's on {int((o_l0 != e_l0).sum())}")
        print("  | image | label | ours | torchattacks | float64 | torch d CE/d z_label error | tied pool windows | L0 ours / float64 |")
        print("  | --- | --- | --- | --- | --- | --- | --- | --- |")
        rows = []
        for i in differ:
            rows.append({"index": i, "label": int(y[i]), "ours": int(o_pred[i]), "torchattacks": int(ref_pred[i]),
                         "float64": int(ex_pred[i]), "label_logit_gradient_error": float(dzy_err[i]),
                         "tied_pool_windows": int(ties[i]), "l0_ours": int(o_l0[i]), "l0_float64": int(e_l0[i])})
            print(f"  | {i} | {int(y[i])} | {int(o_pred[i])} | {int(ref_pred[i])} | {int(ex_pred[i])} | "
                  f"{float(dzy_err[i]):.1%} | {int(ties[i])} | {int(o_l0[i])} / {int(e_l0[i])} |")
        report["ours"].append({"path": path, "robust_accuracy": robust, "differ_from_torchattacks": rows,
                               "differ_from_float64": int((o_pred != ex_pred).sum())})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
