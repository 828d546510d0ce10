#!/usr/bin/env bash
# Runs every command README.md documents in its ```sh blocks, in its fastest honest form
# (a few images, a few iterations, one epoch), and checks each --json file against the
# table the command printed and against what the numbers must satisfy. Then checks that
# every subcommand and flag of README's command lines was exercised here, so a documented
# command cannot go missing unnoticed.
#
# Data: the data-reading commands use $MNIST_DIR when set and the bundled fixtures'
# directory otherwise; train and the Type I panel always use the fixtures (one epoch on
# 60,000 images, or the panel's kNN judge and class means over them, take minutes).
# Not run here: `reproduce`, `merge`, `compare` (.ci/run runs them), `data --hub` (needs the network),
# `data --data-dir <Fashion-MNIST>` unless /usr/share/datasets/fashion-mnist exists.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$SECONDS
cargo build --release -p xtask --quiet
X=target/release/xtask
FIX=fixtures/mnist-mini
DATA="${MNIST_DIR:-$FIX}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
: >"$T/invocations"

# run NAME ARGS...: runs the xtask with ARGS, its stdout in $T/NAME.out; stops on failure.
run() {
  local name=$1
  shift
  printf '%s\n' "$*" >>"$T/invocations"
  local t0=$SECONDS
  if ! "$X" "$@" >"$T/$name.out" 2>"$T/$name.err"; then
    echo "FAILED: cargo xtask $*" >&2
    cat "$T/$name.out" "$T/$name.err" >&2
    exit 1
  fi
  echo "ok ($((SECONDS - t0)) s): cargo xtask $*"
}

# fails NAME EXPECTED ARGS...: the command must fail, with EXPECTED in its message.
fails() {
  local name=$1 expected=$2
  shift 2
  printf '%s\n' "$*" >>"$T/invocations"
  if "$X" "$@" >"$T/$name.out" 2>"$T/$name.err"; then
    echo "expected a failure: cargo xtask $*" >&2
    exit 1
  fi
  if ! grep -qF "$expected" "$T/$name.err" || grep -q "panicked" "$T/$name.err"; then
    echo "cargo xtask $* failed without saying '$expected':" >&2
    cat "$T/$name.err" >&2
    exit 1
  fi
  echo "ok (refused as expected: $expected): cargo xtask $*"
}

# Data sources.
run data_dir data --data-dir "$DATA" --json "$T/data_dir.json"
run data_fix data --fixtures --json "$T/data_fix.json"
if [ -d /usr/share/datasets/fashion-mnist ]; then
  run data_fashion data --data-dir /usr/share/datasets/fashion-mnist
fi

# Training: one epoch on the fixtures, then one more with --resume; every model.
for m in gapcnn mlp oracle svae; do
  run "train_$m" train --model "$m" --data-dir "$FIX" --epochs 1 --out "$T/w/$m.safetensors"
done
run train_resume train --model gapcnn --data-dir "$FIX" --epochs 2 --out "$T/w/gapcnn.safetensors" --resume
# Its held-out PGD check takes 1,000 training images by default: more than the fixtures'
# 500 (refused, naming the count), so the fixture run holds out 100.
fails train_robust "holds out 1000 images" \
  train --model robust-oracle --data-dir "$FIX" --epochs 1 --out "$T/w/robust-oracle.safetensors"
run train_robust_small train --model robust-oracle --data-dir "$FIX" --epochs 1 --pgd-check-images 100 \
  --out "$T/w/robust-oracle.safetensors"
for m in gapcnn mlp oracle; do
  run "eval_trained_$m" eval --model "$m" --weights "$T/w/$m.safetensors" --data-dir "$FIX" --json "$T/eval_trained_$m.json"
done

run eval eval --model gapcnn --weights fixtures/weights/gapcnn.safetensors --data-dir "$DATA" --json "$T/eval.json"
run attack attack --attack pgd-linf --eps 0.3 --n 20 --data-dir "$DATA" --skip 10 \
  --per-image "$T/attack.csv" --json "$T/attack.json"
run type1_paper type1 --mode paper --n 1 --iters 20 --data-dir "$FIX" --f1 gapcnn \
  --json "$T/type1_paper.json" --grid "$T/grid_paper.png"
run type1_constrained type1 --mode constrained --start mu --n 1 --iters 20 --data-dir "$FIX" \
  --skip-paper --json "$T/type1_constrained.json" --grid "$T/grid_constrained.png"
run transition type1 --transition --n 1 --iters 20 --data-dir "$DATA" --json "$T/transition.json"
run strips type1 --index 0 --targets 0..9 --out "$T/S" --iters 30 --frame-every 10 \
  --no-early-stop --study-map --data-dir "$DATA" --json "$T/strips.json"
run strips_stop type1 --index 0 --targets 2,3 --out "$T/S2" --iters 60 --json "$T/strips_stop.json"
run cam cam --index 0 --out "$T/cam.png" --data-dir "$DATA" --json "$T/cam.json"
run explain explain --method all --index 0 --out "$T/explain.png" --data-dir "$DATA" --json "$T/explain.json"
run explain_oracle explain --method grad-cam --index 0 --model oracle --class 7 --json "$T/explain_oracle.json" --out "$T/explain_oracle.png"
fails explain_mlp "does not run on" explain --method cam --index 0 --model mlp --out "$T/x.png"
run clever clever --index 0 --norm 2 --nb 10 --ns 8 --data-dir "$DATA" --json "$T/clever.json"
run clever_ru clever --index 0 --norm inf --nb 10 --ns 8 --radius 0.3 --target runner-up \
  --model gapcnn --json "$T/clever_ru.json"
run clever_class clever --index 0 --norm 1 --nb 10 --ns 8 --target 3 --json "$T/clever_class.json"
fails clever_own "is the class f1 gives" clever --index 0 --norm 2 --target 7
fails clever_range "out of range" clever --index 100000 --norm 2
run certify certify --index 0 --norm 2 --model mlp --eps 0.2 --data-dir "$DATA" --json "$T/certify.json"
run certify_ibp certify --index 0 --norm inf --method ibp --model mlp --json "$T/certify_ibp.json"
run certify_crown certify --index 0 --norm inf --method crown --model mlp --json "$T/certify_crown.json"
run certify_gap certify --index 0 --norm inf --method crown-ibp --model gapcnn --json "$T/certify_gap.json"
run certify_many certify --n 12 --batch-size 5 --norm inf --model mlp --eps 0.02 \
  --per-image "$T/certify_many.csv" --json "$T/certify_many.json"
run explain_many explain --method grad-cam --n 12 --batch-size 5 --per-image "$T/explain_many.csv" \
  --out "$T/explain_many" --json "$T/explain_many.json"
for k in 0 1; do
  run certify_shard$k certify --n 12 --batch-size 5 --norm inf --model mlp --eps 0.02 \
    --shard $k/2 --per-image "$T/certify_shard$k.csv" --json "$T/certify_shard$k.json"
  run explain_shard$k explain --method grad-cam --n 10 --skip 2 --batch-size 3 --shard $k/2 \
    --per-image "$T/explain_shard$k.csv" --json "$T/explain_shard$k.json"
done

python3 - "$T" "$DATA" <<'PY'
import csv, json, os, re, sys

T, data = sys.argv[1], sys.argv[2]
full = os.path.abspath(data) != os.path.abspath("fixtures/mnist-mini")
problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


def load(name):
    return json.load(open(os.path.join(T, name + ".json")))


def out(name):
    return open(os.path.join(T, name + ".out")).read()


def cell(text, metric):
    """The value of a `| metric | value |` row."""
    m = re.search(r"^\| " + re.escape(metric) + r" +\| (.*) \|$", text, re.M)
    return m.group(1) if m else None


def close(a, b, tol):
    return a is not None and b is not None and abs(float(a) - float(b)) <= tol


# data: the printed counts are the JSON's, and add up.
for name, n_test in [("data_dir", 10000 if full else 500), ("data_fix", 500)]:
    j, text = load(name), out(name)
    for split in ["train", "test"]:
        row = [l for l in text.splitlines() if l.startswith(split + " ")]
        printed = [int(v) for v in row[0].split()[1:]] if row else []
        check(printed == j[split]["per_class"] + [j[split]["total"]], f"{name}: {split} row {printed}")
        check(sum(j[split]["per_class"]) == j[split]["total"], f"{name}: {split} counts")
    check(j["test"]["total"] == n_test, f"{name}: {j['test']['total']} test images")

# eval: accuracy in [0, 1], as printed; the bundled GapCnn is a good classifier.
for name in ["eval", "eval_trained_gapcnn", "eval_trained_mlp", "eval_trained_oracle"]:
    j, text = load(name), out(name)
    acc = j["metrics"]["test_accuracy"]
    check(0.0 <= acc <= 1.0, f"{name}: accuracy {acc}")
    m = re.search(r"^test accuracy ([0-9.]+)$", text, re.M)
    check(m is not None and close(m.group(1), acc, 5e-5), f"{name}: printed accuracy vs {acc}")
    right = acc * j["test_images"]
    check(abs(right - round(right)) < 1e-6, f"{name}: accuracy is not a count over {j['test_images']}")
check(load("eval")["metrics"]["test_accuracy"] > 0.95, "eval: the bundled GapCnn below 95 %")

# attack: table = JSON, counts consistent with the per-image CSV, PGD stays in its ball.
j, text = load("attack"), out("attack")
for metric, key in [("clean accuracy", "clean_accuracy"), ("robust accuracy", "robust_accuracy")]:
    v = cell(text, metric)
    check(v is not None and close(v.rstrip("%"), 100 * j[key], 5e-3), f"attack: {metric} {v} vs {j[key]}")
v = cell(text, "success rate") or ""
check(f"({j['successes']} of {j['attackable']} attackable)" in v, f"attack: success rate row {v}")
rows = open(os.path.join(T, "attack.csv")).read().splitlines()[1:]
check(len(rows) == j["images"] == 20, f"attack: {len(rows)} CSV rows, {j['images']} images")
check(rows and rows[0].split(",")[0] == "10", "attack: --skip 10 does not start at image 10")
check(sum(r.split(",")[5] == "true" for r in rows) == j["successes"], "attack: CSV successes")
check(j["mean_linf"] is None or j["mean_linf"] <= 0.3 + 1e-6, f"attack: Linf {j['mean_linf']} > eps")
check(j["success_rate"] >= 0.9, f"attack: PGD-40 succeeds on {j['success_rate']}")

# type1 panel: each mode's printed counts are the JSON's; consensus within success.
for name, modes in [("type1_paper", 2), ("type1_constrained", 1)]:
    j, text = load(name), out(name)
    check(len(j["modes"]) == modes, f"{name}: {len(j['modes'])} modes")
    printed_pairs = [int(v) for v in re.findall(r"^\| pairs +\| (\d+) \|$", text, re.M)]
    printed_consensus = re.findall(r"^\| consensus \(f1 keeps, both oracles say t\) +\| (.*) \|$", text, re.M)
    check(printed_pairs == [m["pairs"] for m in j["modes"]], f"{name}: pairs {printed_pairs}")
    for m, shown in zip(j["modes"], printed_consensus):
        c = m["consensus"]
        check(shown.endswith(f"({c['count']} of {c['of']})"), f"{name}: consensus {shown}")
        check(c["count"] <= m["success"]["count"], f"{name}: consensus above success")
        check(m["pairs"] == 9 * (j["images"] - j["images_left_out"]), f"{name}: pairs")
    check(os.path.isfile(os.path.join(T, "grid_" + name.split("_")[1] + ".png")), f"{name}: no grid")

# transition.
j, text = load("transition"), out("transition")
check(j["pairs"] == 9 * j["images"] == 9, f"transition: {j['pairs']} pairs")
v = cell(text, "success (f2 says t)") or ""
check(v.endswith(f"({j['successes']} of {j['pairs']})"), f"transition: success row {v}")
check(sum(s for s, _ in j["by_target"]) == j["successes"], "transition: per-target successes")

# type1 --index: 9 strips + the combined PNG; every iteration ran; frames every 10.
j, text = load("strips"), out("strips")
names = sorted(os.listdir(os.path.join(T, "S")))
want = sorted([f"type1_7_to_{t}.png" for t in range(10) if t != 7] + ["type1_7_combined.png"])
check(names == want, f"strips: files {names}")
check([t["target"] for t in j["targets"]] == [t for t in range(10) if t != 7], "strips: targets")
for t in j["targets"]:
    check(t["stop_iteration"] == 30, f"strips: target {t['target']} stopped at {t['stop_iteration']}")
    check([f["iteration"] for f in t["frames"]] == [0, 10, 20, 30], f"strips: frames of {t['target']}")
    check(t["success"] == (t["f1_class"] == 7 and t["oracle"] == t["target"]), f"strips: success of {t['target']}")
    row = re.search(rf"^\| {t['target']} \| (\d+) \| (\d) \| ([0-9.]+) \| (\d) \| (yes|no) \|", text, re.M)
    check(row is not None and int(row.group(1)) == t["stop_iteration"] and int(row.group(2)) == t["f1_class"]
          and close(row.group(3), t["f1_probability"], 5e-5) and int(row.group(4)) == t["oracle"]
          and (row.group(5) == "yes") == t["success"], f"strips: table row of {t['target']}")
check(f"success: {j['successes']} of 9 targets" in text, "strips: success line")
j = load("strips_stop")
for t in j["targets"]:
    # Stopped early only on the oracle's verdict (with f1 keeping 7).
    check(t["stop_iteration"] == 60 or t["success"], f"strips_stop: {t}")
    check(t["frames"][-1]["iteration"] == t["stop_iteration"], "strips_stop: the last frame is the stop")

# cam.
j, text = load("cam"), out("cam")
check(j["label"] == 7 and len(j["maps"]) == 2, f"cam: {j}")
for m in j["maps"]:
    check(f"{m['method']}: class {m['class']}, P={m['probability']:.3f}" in text, f"cam: {m['method']} line")
check(os.path.isfile(os.path.join(T, "cam.png")), "cam: no PNG")
# explain: every method on GapCnn explains the 7; HiResCAM's sum is Grad-CAM's (GAP head),
# and Integrated Gradients' sum is close to it (completeness: logit(x) - logit(0)).
j, text = load("explain"), out("explain")
names = [m["method"] for m in j["maps"]]
check(len(names) == 10 and names[0] == "cam" and names[-1] == "occlusion", f"explain: {names}")
by = {m["method"]: m for m in j["maps"]}
check(all(m["class"] == 7 and m["status"] == "informative" for m in j["maps"]), f"explain: {j}")
check(abs(by["hires-cam"]["total"] - by["grad-cam"]["total"]) < 1e-3, "explain: HiResCAM != Grad-CAM on a GAP head")
for m in j["maps"]:
    check(f"| {m['method']} | " in text, f"explain: no table row for {m['method']}")
check(os.path.isfile(os.path.join(T, "explain.png")), "explain: no PNG")
j = load("explain_oracle")
check(j["model"] == "oracle" and [m["method"] for m in j["maps"]] == ["grad-cam"], f"explain oracle: {j}")

# clever: each class's score is min(g / L, R); the score is their minimum, as printed.
for name, n_classes, radius in [("clever", 9, 5.0), ("clever_ru", 1, 0.3), ("clever_class", 1, 5.0)]:
    j, text = load(name), out(name)
    cls = j["classes"]
    check(len(cls) == n_classes and j["radius"] == radius, f"{name}: {len(cls)} classes, R {j['radius']}")
    for c in cls:
        check(abs(c["score"] - min(c["margin"] / c["lipschitz"], radius)) <= 1e-9 * max(1.0, c["score"]), f"{name}: class {c}")
        check(c["margin"] > 0, f"{name}: margin {c['margin']}")
    check(j["score"] == min(c["score"] for c in cls), f"{name}: score not the minimum")
    check(j["gradient_evaluations"] == j["nb"] * j["ns"] * n_classes, f"{name}: gradients")
    v = cell(text, "CLEVER score") or ""
    check(close(v.split()[0] if v else None, j["score"], 5e-6), f"{name}: printed score {v}")
check(load("clever_class")["classes"][0]["class"] == 3, "clever_class: not class 3")

# certify: the radius is certified and the next bisection point is not; the verdict at
# --eps is every margin bound > 0; CROWN is never looser than IBP.
for name in ["certify", "certify_ibp", "certify_crown", "certify_gap"]:
    j, text = load(name), out(name)
    check(0 <= j["radius"] < j["not_certified"], f"{name}: radius {j['radius']} vs {j['not_certified']}")
    check(all(m["lower"] > 0 for m in j["margins_at_radius"]), f"{name}: a margin bound <= 0 at the radius")
    check(f"{j['radius']:.7f}" in text, f"{name}: printed radius")
j = load("certify")
check(j["certified_at_eps"] == all(m["lower"] > 0 for m in j["margins_at_eps"]), "certify: verdict at eps")
check(j["certified_at_eps"] == (j["radius"] >= 0.2) or j["not_certified"] > 0.2 > j["radius"], "certify: radius vs eps")
check(load("certify_crown")["radius"] >= load("certify_ibp")["radius"], "certify: CROWN looser than IBP")
# certify --n: image 0's row is the one-image run's; the table's rates are its rows'.
j = load("certify_many")
rows = list(csv.DictReader(open(os.path.join(T, "certify_many.csv"))))
check(len(rows) == j["images"] == 12, "certify --n: one row per image")
check(float(rows[0]["radius"]) == load("certify_crown")["radius"], "certify --n: image 0 as alone")
check(j["certified_at_eps"] == sum(r["certified_at_eps"] == "true" for r in rows), "certify --n: verified count")
check(abs(j["mean_radius"] - sum(float(r["radius"]) for r in rows) / 12) < 1e-12, "certify --n: mean radius")
j = load("explain_many")
rows = list(csv.DictReader(open(os.path.join(T, "explain_many.csv"))))
check(len(rows) == j["images"] == 12 and len(os.listdir(os.path.join(T, "explain_many"))) == 12, "explain --n: rows and strips")
check(j["methods"][0]["informative"] == sum(r["status"] == "informative" for r in rows), "explain --n: informative count")
# --shard: the two shards' rows, in index order, are the whole run's (explain --skip 2:
# the whole run's rows from image 2 on). explain's shards run batches of 3 where the whole
# run ran batches of 5, and the engine picks kernels by batch size, so its two float
# columns agree to 1e-5, the others exactly; certify's shards keep the whole run's batches.
def rows_of(path):
    with open(path) as f:
        return list(csv.DictReader(f))
def shard_rows(name):
    out = rows_of(os.path.join(T, f"{name}_shard0.csv")) + rows_of(os.path.join(T, f"{name}_shard1.csv"))
    return sorted(out, key=lambda r: int(r["index"]))
check(shard_rows("certify") == rows_of(os.path.join(T, "certify_many.csv")), "certify --shard: rows of the whole run")
whole = [r for r in rows_of(os.path.join(T, "explain_many.csv")) if int(r["index"]) >= 2]
sharded = shard_rows("explain")
floats = ("probability", "total")
close = lambda a, b: abs(float(a) - float(b)) <= 1e-5 * max(1.0, abs(float(b)))
check(len(sharded) == len(whole)
      and all({k: v for k, v in a.items() if k not in floats} == {k: v for k, v in b.items() if k not in floats}
              and all(close(a[k], b[k]) for k in floats) for a, b in zip(sharded, whole)),
      "explain --shard --skip: rows of the whole run")

# Every subcommand and flag of README's command lines was run here (reproduce, merge and
# compare: .ci/run, which runs docs/SCALE.md's shards; data --hub and --revision: the
# network).
def form(words):
    sub = words[0]
    if sub == "type1" and "--index" in words:
        return "type1 --index"
    if sub == "type1" and "--transition" in words:
        return "type1 --transition"
    return sub


used = {}
for line in open(os.path.join(T, "invocations")):
    words = line.split()
    used.setdefault(form(words), set()).update(w for w in words if w.startswith("--"))
readme = open("README.md").read()
blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
skip = {"reproduce": None, "data": {"--hub", "--revision"}}
for line in lines:
    line = line.split("#")[0]
    m = re.match(r"\s*cargo xtask (\S+)(.*)", line)
    if not m:
        continue
    words = [m.group(1)] + m.group(2).split()
    f = form(words)
    if f in ("reproduce", "merge", "compare"):
        continue
    flags = set(re.findall(r"--[a-z][a-z0-9-]*", m.group(2))) - skip.get(f, set())
    missing = flags - used.get(f, set())
    check(f in used and not missing, f"README's `cargo xtask {f}` not run here with {sorted(missing) or 'any flags'}")

if problems:
    sys.exit("readme commands:\n  " + "\n  ".join(problems))
print(f"README commands: {len(used)} command forms run, every JSON matches its table")
PY
echo "readme_commands.sh: $((SECONDS - start)) s"
