#!/usr/bin/python3
"""80-train.t - `clipdex train` (core/train/) against PyTorch.

Oracle: tests/ref/train_ref.py, an independent PyTorch reference written
from the CLIP objective and transformers' CLIPModel (towers in torch ops,
autograd, torch.optim.AdamW itself), run in float64 so it gives the exact
gradient and the exact training trajectory.

1. Gradients.  For the tiny models (quick_gelu and gelu), one batch of 4
   random images and 4 captions padded after their end-of-text token:
   tests/tools/grad_dump writes clipdex's gradient of the loss for every
   trainable parameter; each tensor must satisfy
   ||g - g_ref|| / ||g_ref|| <= 1e-4, in full fine-tuning, --lock image,
   --lock text and --unlock-last 1, and exactly the trainable tensors
   must be there; also through gradient caching (--sub-batch 1 and 3:
   the embeddings first, the loss over the whole batch, then
   backpropagation a sub-batch at a time), which must give the direct
   path's gradients within 1e-5.  (The attention key bias has an exact gradient of zero:
   it shifts a whole row of scores, which softmax cancels; there
   ||g - g_ref|| must be below 1e-9 of the whole gradient's norm.)
   grad_dump also checks the training forward's embeddings against the
   inference engine's (cdx_model_encode_*): within 1e-6.
2. Training.  20 steps of `clipdex train --order file` against 20 steps of
   torch.optim.AdamW with the same data, order and hyperparameters: the
   loss at every step within 1e-5 (relative), and per tensor
   ||w - w_ref|| <= tol ||w_ref - w_0|| with tol = 1e-4, or 1.5 x the
   error of PyTorch's own float32 run where float32 alone cannot do
   better (float32 weights hold the result only to their last bit: the
   weight decay of 3 million untouched token-embedding entries, or a
   temperature of 2.66 moved by 0.003).  The frozen tower's tensors are
   bit-identical to the input's; the output has exactly the input's
   tensor names, all F32, and loads in `clipdex embed`, which must agree
   with the reference's embedding of the trained weights.
3. The command: bad and missing images skipped with one line each and
   counted, usage errors, shuffle order reproducible from its seed,
   a re-run replacing the output directory atomically, a directory that is
   not a model refused; --until then --resume ending bit-identical (weights
   and AdamW moments) to the run that was never stopped.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ref"))
import query_fixture as qf  # noqa: E402
import clip_ref  # noqa: E402
import train_ref  # noqa: E402

T = qf.Tap()
ROOT = qf.ROOT
MODELS = os.path.join(ROOT, "build", "testdata", "models")
GRAD_DUMP = os.path.join(ROOT, qf.BUILD, "tests", "tools", "grad_dump")
tmp = tempfile.mkdtemp(prefix="cdx-80-")


def st_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def rel(a, b):
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / nb if nb > 0 else (0.0 if np.linalg.norm(a) == 0 else np.inf)


# ---------------------------------------------------------------- 1. gradients

tok = clip_ref.Tokenizer(os.path.join(MODELS, "tiny", "vocab.json"), os.path.join(MODELS, "tiny", "merges.txt"))
rng = np.random.default_rng(80)
n = 4
pix = rng.standard_normal((n, 3, 224, 224)).astype("<f4")
pix_path = os.path.join(tmp, "pix.f32")
pix.tofile(pix_path)
caps = ["a photo of a cat", "a red car on the road", "two dogs", "sunset over the sea, with clouds"]
L = max(len(tok.encode(c)) for c in caps) + 2
seqs = [tok.encode(c) + [0] * (L - len(tok.encode(c))) for c in caps]
ids_path = os.path.join(tmp, "ids.txt")
with open(ids_path, "w") as f:
    for s in seqs:
        f.write(" ".join(map(str, s)) + "\n")

MODES = [("full", [], None, 0), ("--lock image", ["--lock", "image"], "vision", 0),
         ("--lock text", ["--lock", "text"], "text", 0), ("--unlock-last 1", ["--unlock-last", "1"], None, 1)]
# gradient caching: the same gradient backpropagated a sub-batch at a time
CACHED = [("full --sub-batch 1", ["--sub-batch", "1"], None, 0),
          ("--lock image --sub-batch 3", ["--lock", "image", "--sub-batch", "3"], "vision", 0)]
direct = {}
for model in ("tiny", "tiny-gelu"):
    mdir = os.path.join(MODELS, model)
    ref_loss, gref = train_ref.grads(mdir, pix, seqs)  # every parameter; modes take subsets
    total = np.sqrt(sum((g ** 2).sum() for g in gref.values()))
    ref_model = train_ref.Model(mdir)
    for label, args, lock, unlock in MODES + (CACHED if model == "tiny" else []):
        out = os.path.join(tmp, "g-%s.st" % model)
        p = subprocess.run([GRAD_DUMP, mdir, pix_path, ids_path, out] + args, capture_output=True, text=True)
        if not T.ok(p.returncode == 0, "%s %s: grad_dump runs (forward = engine within 1e-6)" % (model, label)):
            T.diag(p.stdout + p.stderr)
            continue
        info = dict(l.split() for l in p.stdout.splitlines())
        T.ok(float(info["embed_maxdiff"]) <= 1e-6, "%s %s: training forward equals cdx_model_encode_* (max diff %s)"
             % (model, label, info["embed_maxdiff"]))
        T.ok(abs(float(info["loss"]) - ref_loss) <= 1e-5 * abs(ref_loss),
             "%s %s: loss %s (reference %.9g)" % (model, label, info["loss"], ref_loss))
        g = clip_ref._read_safetensors(out)
        want = set(ref_model.trainable(lock, unlock))
        T.ok(set(g) == want, "%s %s: gradients of exactly the %d trainable tensors (got %d)"
             % (model, label, len(want), len(g)))
        worst, worst_name, bad = 0.0, "", []
        for name in sorted(want & set(g)):
            a = g[name].numpy().astype(np.float64).reshape(gref[name].shape)
            b = gref[name]
            if np.linalg.norm(b) <= 1e-9 * total:  # an exact zero (key bias)
                if np.linalg.norm(a - b) > 1e-9 * total:
                    bad.append("%s: %g (exact gradient zero)" % (name, np.linalg.norm(a - b) / total))
                continue
            r = rel(a, b)
            if r > worst:
                worst, worst_name = r, name
            if r > 1e-4:
                bad.append("%s: %.3g" % (name, r))
        T.ok(not bad, "%s %s: every gradient within 1e-4 relative of autograd (worst %.2g, %s)"
             % (model, label, worst, worst_name))
        for b in bad[:5]:
            T.diag(b)
        if "--sub-batch" not in args:
            direct[(model, lock, unlock)] = g
        elif (model, lock, unlock) in direct:
            d = direct[(model, lock, unlock)]
            e = max(rel(g[k].numpy(), d[k].numpy()) for k in g if np.linalg.norm(gref[k]) > 1e-9 * total)
            T.ok(e <= 1e-5, "%s %s: gradient caching gives the direct path's gradients (max rel %.2g)"
                 % (model, label, e))

# ---------------------------------------------------------------- 2. training

data = os.path.join(tmp, "data")
os.makedirs(os.path.join(data, "img"))
colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "purple": (140, 30, 160), "orange": (240, 140, 20)}
lines = []
for i, (cn, c) in enumerate((cn, c) for cn, c in colours.items() for _ in (0, 1)):
    shape = ("circle", "square")[i % 2]
    # 224x224: the exact preprocessing is then crop-free and resize-free
    # in both implementations, so both see the same pixels
    im = Image.new("RGB", (224, 224), tuple(int(v) for v in rng.integers(0, 60, 3)))
    x0, y0 = (int(v) for v in rng.integers(20, 80, 2))
    s = int(rng.integers(80, 130))
    d = ImageDraw.Draw(im)
    (d.ellipse if shape == "circle" else d.rectangle)([x0, y0, x0 + s, y0 + s], fill=c)
    im.save(os.path.join(data, "img", "%02d.png" % i))
    lines.append("img/%02d.png\ta %s %s" % (i, cn, shape))
with open(os.path.join(data, "img", "bad.png"), "wb") as f:
    f.write(b"not a png")
lines.insert(3, "img/bad.png\ta broken file")
lines.insert(5, "img/missing.png\ta missing file")
lines.insert(7, "no tab on this line")
pairs = os.path.join(data, "pairs.tsv")
with open(pairs, "w") as f:
    f.write("\n".join(lines) + "\n")

RUNS = [
    ("tiny", [], dict(lr=1e-3, warmup=3, schedule="cosine", weight_decay=0.2), None, 0),
    ("tiny-gelu", ["--lock", "image"], dict(lr=1e-3, warmup=3, schedule="constant", weight_decay=0.1), "vision", 0),
    ("tiny", ["--lock", "text", "--unlock-last", "1"], dict(lr=2e-3, warmup=0, schedule="cosine", weight_decay=0.05),
     "text", 1),
]
first_out = None
for model, args, hp, lock, unlock in RUNS:
    mdir = os.path.join(MODELS, model)
    label = "%s %s" % (model, " ".join(args) or "full")
    out = os.path.join(tmp, "out-%d" % len(os.listdir(tmp)))
    log = out + ".log"
    p = qf.run("train", "--data", pairs, "--out", out, "--order", "file", "--batch", "4", "--steps", "20",
               "--lr", str(hp["lr"]), "--warmup", str(hp["warmup"]), "--schedule", hp["schedule"],
               "--weight-decay", str(hp["weight_decay"]), "--log", log, *args, model=mdir)
    err = p.stderr.decode()
    if not T.ok(p.returncode == 0, "%s: clipdex train runs" % label):
        T.diag(err)
        continue
    if first_out is None:
        first_out = out
        T.ok(err.count("(skipped)") == 3 and "12 pairs (3 skipped)" in err,
             "bad, missing and malformed lines: one line each, counted")
        T.diag(err)
    losses = [float(l.split("\t")[2]) for l in open(log).read().splitlines()]
    rl, w64 = train_ref.train(mdir, pairs, 20, 4, lock=lock, unlock_last=unlock, **hp)
    _, w32 = train_ref.train(mdir, pairs, 20, 4, lock=lock, unlock_last=unlock, dtype="f32", **hp)
    dl = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(losses, rl)) if len(losses) == 20 else 1
    T.ok(len(losses) == 20 and dl <= 1e-5, "%s: the loss of all 20 steps matches AdamW in PyTorch (max diff %.2g)"
         % (label, dl))
    w0 = clip_ref.load_weights(mdir)
    wo = clip_ref._read_safetensors(os.path.join(out, "model.safetensors"))
    T.ok(set(wo) == {k for k, v in w0.items() if v.is_floating_point()},
         "%s: the output holds exactly the input's tensor names" % label)
    T.ok(all(e["dtype"] == "F32" for e in st_header(os.path.join(out, "model.safetensors")).values()),
         "%s: every tensor float32" % label)
    bad, worst, frozen_ok, n_frozen = [], (0.0, ""), True, 0
    ref_model = train_ref.Model(mdir)
    trainable = set(ref_model.trainable(lock, unlock))
    for name in sorted(w64):
        a = wo[name].numpy().astype(np.float64)
        b, b32, a0 = w64[name], w32[name], w0[name].numpy().astype(np.float64)
        if name not in trainable:
            n_frozen += 1
            if not np.array_equal(wo[name].numpy().view(np.uint32), w0[name].numpy().astype(np.float32).view(np.uint32)):
                frozen_ok = False
                bad.append("%s: frozen but changed" % name)
            continue
        change = np.linalg.norm(b - a0)
        if change <= 1e-9:  # exact gradient zero, no decay: must not move
            if np.linalg.norm(a - a0) != 0:
                bad.append("%s: moved %g, exactly it does not" % (name, np.linalg.norm(a - a0)))
            continue
        e, e32 = np.linalg.norm(a - b) / change, np.linalg.norm(b32 - b) / change
        tol = max(1e-4, 1.5 * e32)
        if e > worst[0]:
            worst = (e, name)
        if e > tol:
            bad.append("%s: %.3g of the change (tolerance %.3g)" % (name, e, tol))
    T.ok(not bad, "%s: final weights match PyTorch's (worst %.2g of the change, %s)" % (label, worst[0], worst[1]))
    for b in bad[:5]:
        T.diag(b)
    if lock:
        T.ok(frozen_ok and n_frozen > 0, "%s: the %d frozen tensors are bit-identical to the input" % (label, n_frozen))
    # the result is a model every command loads: embed agrees with the
    # reference run on the trained weights
    img = os.path.join(data, "img", "00.png")
    p = qf.run("embed", "--preprocess", "exact", "--raw", "--text", "a red circle", "--image", img, model=out)
    ok = p.returncode == 0
    if ok:
        got = [np.array(r["embedding"]) for r in qf.jsonl(p)]
        ref = clip_ref.CLIPRef(out)
        want = [ref.embed_text("a red circle", False).numpy(), ref.embed_image(img, False).numpy()]
        dd = max(np.abs(g - w).max() for g, w in zip(got, want))
        ok = dd < 1e-4
        T.diag("embed on the trained model: max diff %.2g from clip_ref" % dd)
    T.ok(ok, "%s: clipdex embed loads the trained model and agrees with the reference" % label)

# ---------------------------------------------------------------- 3. the command

tiny = os.path.join(MODELS, "tiny")
p = qf.run("train", "--out", os.path.join(tmp, "x"), model=tiny)
T.ok(p.returncode == 2 and b"--data" in p.stderr, "no --data: usage error")
p = qf.run("train", "--data", pairs, "--out", os.path.join(tmp, "x"), "--order", "random", model=tiny)
T.ok(p.returncode == 2 and b"--order" in p.stderr, "bad --order: usage error")
p = qf.run("train", "--data", pairs, "--out", os.path.join(tmp, "x"), "--batch", "64", model=tiny)
T.ok(p.returncode == 2 and b"larger than" in p.stderr, "a batch larger than the data: usage error")
p = qf.run("train", "--data", os.path.join(tmp, "nope.tsv"), "--out", os.path.join(tmp, "x"), model=tiny)
T.ok(p.returncode == 3 and b"nope.tsv" in p.stderr, "missing PAIRS: runtime error naming it")
notmodel = os.path.join(tmp, "notmodel")
os.makedirs(notmodel)
open(os.path.join(notmodel, "keep.txt"), "w").write("mine")
p = qf.run("train", "--data", pairs, "--out", notmodel, "--steps", "1", "--batch", "4", model=tiny)
T.ok(p.returncode == 3 and os.path.exists(os.path.join(notmodel, "keep.txt")),
     "an --out directory that is not a model is refused and left alone")

sh = []
for seed in ("7", "7", "8"):
    o = os.path.join(tmp, "shuf")
    p = qf.run("train", "--data", pairs, "--out", o, "--steps", "3", "--batch", "4", "--seed", seed,
               "--lr", "1e-3", model=tiny)
    T.ok(p.returncode == 0, "shuffle seed %s: runs, replacing the previous output" % seed)
    sh.append(open(os.path.join(o, "model.safetensors"), "rb").read() if p.returncode == 0 else b"")
T.ok(sh[0] == sh[1] and sh[0], "--order shuffle: the same seed gives bit-identical weights")
T.ok(sh[0] != sh[2], "--order shuffle: another seed gives other weights")
T.ok(not [e for e in os.listdir(tmp) if ".tmp-" in e], "no temporary directories left behind")
T.ok(sorted(os.listdir(os.path.join(tmp, "shuf"))) == sorted(os.listdir(first_out or tiny)),
     "the output directory holds config, tokenizer, processor and weights files")

# --until, then --resume: bit-identical to the run that was never stopped
common = ["--data", pairs, "--steps", "6", "--batch", "4", "--seed", "3", "--lr", "1e-3", "--warmup", "2",
          "--sub-batch", "2"]
ra, rb = os.path.join(tmp, "whole"), os.path.join(tmp, "parts")
p1 = qf.run("train", "--out", ra, *common, model=tiny)
p2 = qf.run("train", "--out", rb, "--until", "4", *common, model=tiny)
st = json.load(open(os.path.join(rb, "train_state.json"))) if p2.returncode == 0 else {}
T.ok(p1.returncode == 0 and p2.returncode == 0 and st.get("step") == 4 and b"--resume" in p2.stdout,
     "--until 4: stops with a checkpoint at step 4")
p3 = qf.run("train", "--resume", "--out", rb, model=None)
same = p3.returncode == 0 and all(
    open(os.path.join(ra, f), "rb").read() == open(os.path.join(rb, f), "rb").read()
    for f in ("model.safetensors", "train_state.safetensors"))
T.ok(same, "--resume: weights and AdamW moments bit-identical to the uninterrupted run")
if not same:
    T.diag((p3.stdout + p3.stderr).decode())
p4 = qf.run("train", "--resume", "--out", rb, "--lr", "1", model=None)
T.ok(p4.returncode == 2, "--resume with a training option: usage error")
p5 = qf.run("train", "--resume", "--out", rb, model=None)
T.ok(p5.returncode == 3 and b"complete" in p5.stderr, "--resume of a finished run: refused")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
