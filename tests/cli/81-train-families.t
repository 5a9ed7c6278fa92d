#!/usr/bin/python3
"""81-train-families.t - `clipdex train` on SigLIP and SigLIP 2 against PyTorch.

Oracle: tests/ref/siglip_train_ref.py, built on siglip_ref.py's model
(written from transformers' modeling_siglip.py) with the checkpoint's
tensors as leaf tensors, the pooling head through torch's own
F.multi_head_attention_forward, SiglipModel's sigmoid loss (trainable
logit_scale and logit_bias, no clamp), autograd in float64 and
torch.optim.AdamW itself.

1. Gradients.  siglip-tiny (no attention mask: every padded position
   runs) and siglip2-tiny (Gemma tokenizer, the mask reaches the model):
   one batch of 4 random images and 4 captions; tests/tools/grad_dump
   writes clipdex's gradient of every trainable tensor, each within 1e-4
   relative of autograd (key biases: exact zero, as 80-train.t says), in
   full training, --lock image, --lock text, --unlock-last 1 and
   --sub-batch 1 / 3 (gradient caching: the direct path's gradients
   within 1e-5); exactly the trainable tensors are there; the training
   forward equals cdx_model_encode_* within 1e-6.
2. Training.  20 steps of `clipdex train --order file` against 20 steps of
   torch.optim.AdamW: the loss of every step within 1e-5 (relative), every
   trained tensor within 1e-4 of its change (or 1.5 x PyTorch's own
   float32 error, as 80-train.t), a locked tower bit-identical; the output
   holds exactly the input's tensor names in float32 and the input's
   other files, loads in `clipdex model` (same family) and `clipdex
   embed`, which agrees with siglip_ref on the trained weights.
3. OpenCLIP (oc-tiny; oc-tiny-qg, oc-tiny-custom for gradients;
   oc-tiny-bin) the same way against tests/ref/openclip_train_ref.py
   (built on openclip_ref.py: open_clip's names, fused in_proj through
   F.multi_head_attention_forward, ClipLoss, the [0, ln 100] clamp), the
   output in open_clip's layout and the input's weight format (a .bin read
   back by torch.load(weights_only=True)).
4. --until then --resume bit-identical (SigLIP 2, OpenCLIP .bin).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ref"))
import query_fixture as qf  # noqa: E402
import clip_ref  # noqa: E402
import siglip_ref  # noqa: E402
import siglip_train_ref  # noqa: E402
import openclip_ref  # noqa: E402
import openclip_train_ref  # noqa: E402

torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a loaded machine
T = qf.Tap()
ROOT = qf.ROOT
MODELS = os.path.join(ROOT, "build", "testdata", "models")
GRAD_DUMP = os.path.join(ROOT, qf.BUILD, "tests", "tools", "grad_dump")
tmp = tempfile.mkdtemp(prefix="cdx-81-")


def rel(a, b):
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / nb if nb > 0 else (0.0 if np.linalg.norm(a) == 0 else np.inf)


# ---------------------------------------------------------------- 1. gradients

MODES = [("full", [], None, 0), ("--lock image", ["--lock", "image"], "vision", 0),
         ("--lock text", ["--lock", "text"], "text", 0), ("--unlock-last 1", ["--unlock-last", "1"], None, 1),
         ("full --sub-batch 1", ["--sub-batch", "1"], None, 0),
         ("--lock image --sub-batch 3", ["--lock", "image", "--sub-batch", "3"], "vision", 0)]
caps = ["a photo of a cat", "a red car on the road", "two dogs", "sunset over the sea, with clouds"]
GRADS = [("siglip-tiny", siglip_train_ref, MODES), ("siglip2-tiny", siglip_train_ref, MODES),
         # (gradient caching is family-independent code: SigLIP's runs cover it)
         ("oc-tiny", openclip_train_ref, MODES[:4]), ("oc-tiny-qg", openclip_train_ref, MODES[:1]),
         ("oc-tiny-custom", openclip_train_ref, MODES[:2])]


def names_of(ref, names):
    """The reference's tensor names as clipdex's parameters name them."""
    if ref is openclip_train_ref:
        return set(openclip_train_ref.split_grads({n: np.zeros((3, 3)) for n in names}))
    return set(names)


for model, ref, modes in GRADS:
    mdir = os.path.join(MODELS, model)
    ref_model = ref.Model(mdir)
    oc = ref is openclip_train_ref
    S = ref_model.image_size() if oc else ref_model.vc["image_size"]
    rng = np.random.default_rng(81)
    pix = rng.standard_normal((4, 3, S, S)).astype("<f4")
    pix_path = os.path.join(tmp, "pix.f32")
    pix.tofile(pix_path)
    seqs = [ref_model.tokens(c) if oc else ref_model.tok(c) for c in caps]
    ids_path = os.path.join(tmp, "ids.txt")
    with open(ids_path, "w") as f:
        for s in seqs:
            f.write(" ".join(map(str, s)) + "\n")
    ref_loss, gref = ref.grads(mdir, pix, seqs)
    if oc:
        gref = openclip_train_ref.split_grads(gref)
    total = np.sqrt(sum((g ** 2).sum() for g in gref.values()))
    direct = {}
    for label, args, lock, unlock in modes:
        out = os.path.join(tmp, "g-%s.st" % model)
        p = subprocess.run([GRAD_DUMP, mdir, pix_path, ids_path, out] + args, capture_output=True, text=True)
        if not T.ok(p.returncode == 0, "%s %s: grad_dump runs" % (model, label)):
            T.diag(p.stdout + p.stderr)
            continue
        info = dict(l.split() for l in p.stdout.splitlines())
        T.ok(float(info["embed_maxdiff"]) <= 1e-6, "%s %s: training forward equals cdx_model_encode_* (max diff %s)"
             % (model, label, info["embed_maxdiff"]))
        T.ok(abs(float(info["loss"]) - ref_loss) <= 1e-5 * abs(ref_loss),
             "%s %s: loss %s (reference %.9g)" % (model, label, info["loss"], ref_loss))
        g = clip_ref._read_safetensors(out)
        want = names_of(ref, ref_model.trainable(lock, unlock))
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
            direct[(lock, unlock)] = g
        elif (lock, unlock) in direct:
            d = direct[(lock, unlock)]
            e = max(rel(g[k].numpy(), d[k].numpy()) for k in g if np.linalg.norm(gref[k]) > 1e-9 * total)
            T.ok(e <= 1e-5, "%s %s: gradient caching gives the direct path's gradients (max rel %.2g)"
                 % (model, label, e))
    if model == "siglip-tiny":
        # the bias and temperature get their own gradient (not a by-product
        # of the towers): both learn with the towers locked either way
        T.ok(abs(gref["logit_bias"][0]) > 1e-3 and abs(gref["logit_scale"][0]) > 1e-6,
             "siglip-tiny: logit_bias and logit_scale have non-zero reference gradients (%.3g, %.3g)"
             % (gref["logit_bias"][0], gref["logit_scale"][0]))

# ---------------------------------------------------------------- 2. training

def make_pairs(name, size):
    """8 images of size x size (the model's: no resize, no crop on either
    side) with their captions."""
    data = os.path.join(tmp, name)
    os.makedirs(os.path.join(data, "img"))
    rng = np.random.default_rng(181)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
    lines = []
    for i, (cn, c) in enumerate((cn, c) for cn, c in colours.items() for _ in (0, 1)):
        shape = ("circle", "square")[i % 2]
        im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
        x0, y0 = (int(v) * size // 64 for v in rng.integers(4, 20, 2))
        s = int(rng.integers(20, 40)) * size // 64
        d = ImageDraw.Draw(im)
        (d.ellipse if shape == "circle" else d.rectangle)([x0, y0, x0 + s, y0 + s], fill=c)
        im.save(os.path.join(data, "img", "%02d.png" % i))
        lines.append("img/%02d.png\ta %s %s" % (i, cn, shape))
    pairs = os.path.join(data, "pairs.tsv")
    with open(pairs, "w") as f:
        f.write("\n".join(lines) + "\n")
    return data, pairs


SETS = {64: make_pairs("data64", 64), 224: make_pairs("data224", 224)}
RUNS = [
    ("siglip-tiny", [], dict(lr=1e-3, warmup=3, schedule="cosine", weight_decay=0.2), None, 0),
    ("siglip2-tiny", ["--lock", "image"], dict(lr=1e-3, warmup=2, schedule="constant", weight_decay=0.1),
     "vision", 0),
    ("siglip-tiny", ["--lock", "text", "--unlock-last", "1", "--sub-batch", "2"],
     dict(lr=2e-3, warmup=0, schedule="cosine", weight_decay=0.05), "text", 1),
    ("oc-tiny", [], dict(lr=1e-3, warmup=3, schedule="cosine", weight_decay=0.2), None, 0),
    # open_clip_pytorch_model.bin in, the same format out (torch.load reads it)
    ("oc-tiny-bin", ["--lock", "text"], dict(lr=1e-3, warmup=2, schedule="cosine", weight_decay=0.2), "text", 0),
]
for k, (model, args, hp, lock, unlock) in enumerate(RUNS):
    mdir = os.path.join(MODELS, model)
    oc = model.startswith("oc-")
    ref = openclip_train_ref if oc else siglip_train_ref
    wfile = "open_clip_pytorch_model.bin" if model.endswith("-bin") else \
        "open_clip_model.safetensors" if oc else "model.safetensors"
    data, pairs = SETS[224 if oc else 64]
    label = "%s %s" % (model, " ".join(args) or "full")
    out = os.path.join(tmp, "out-%d" % k)
    log = out + ".log"
    p = qf.run("train", "--data", pairs, "--out", out, "--order", "file", "--batch", "4", "--steps", "20",
               "--lr", str(hp["lr"]), "--warmup", str(hp["warmup"]), "--schedule", hp["schedule"],
               "--weight-decay", str(hp["weight_decay"]), "--log", log, *args, model=mdir)
    if not T.ok(p.returncode == 0, "%s: clipdex train runs" % label):
        T.diag(p.stderr.decode())
        continue
    losses = [float(l.split("\t")[2]) for l in open(log).read().splitlines()]
    rl, w64 = ref.train(mdir, pairs, 20, 4, lock=lock, unlock_last=unlock, **hp)
    w32 = None  # PyTorch's own float32 run, made only when a tensor needs the allowance
    dl = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(losses, rl)) if len(losses) == 20 else 1
    T.ok(len(losses) == 20 and dl <= 1e-5, "%s: the loss of all 20 steps matches AdamW in PyTorch (max diff %.2g)"
         % (label, dl))
    if not oc:  # (the random tiny OpenCLIP barely moves in 20 steps at this rate)
        T.ok(rl[-1] < rl[0], "%s: the reference loss falls (%.4f -> %.4f)" % (label, rl[0], rl[-1]))
    if wfile.endswith(".bin"):  # PyTorch's own reader is the oracle of the format
        def read(d):
            return torch.load(os.path.join(d, wfile), map_location="cpu", weights_only=True)
    else:
        def read(d):
            return clip_ref._read_safetensors(os.path.join(d, wfile))
    w0 = read(mdir)
    wo = read(out) if os.path.exists(os.path.join(out, wfile)) else {}
    T.ok(set(wo) == {k for k, v in w0.items() if v.is_floating_point()},
         "%s: the output's %s holds exactly the input's tensor names" % (label, wfile))
    T.ok(wo and all(v.dtype == torch.float32 and v.shape == w0[n].shape for n, v in wo.items()),
         "%s: every tensor float32, in the input's shape" % label)
    want_files = {f for f in os.listdir(mdir) if not f.startswith(".")} | {"train_state.json", "train_state.safetensors"}
    T.ok(set(os.listdir(out)) == want_files, "%s: config, tokenizer and processor files copied (%s)"
         % (label, sorted(set(os.listdir(out)) ^ want_files) or "all"))
    if not wo:
        continue
    trainable = set(ref.Model(mdir).trainable(lock, unlock))
    bad, worst, frozen_ok, n_frozen = [], (0.0, ""), True, 0
    for name in sorted(w64):
        a = wo[name].numpy().astype(np.float64)
        b, a0 = w64[name], w0[name].numpy().astype(np.float64)
        if name not in trainable:
            n_frozen += 1
            if not np.array_equal(wo[name].numpy().view(np.uint32), w0[name].numpy().astype(np.float32).view(np.uint32)):
                frozen_ok = False
                bad.append("%s: frozen but changed" % name)
            continue
        change = np.linalg.norm(b - a0)
        if change <= 1e-9:
            if np.linalg.norm(a - a0) != 0:
                bad.append("%s: moved %g, exactly it does not" % (name, np.linalg.norm(a - a0)))
            continue
        e, tol = np.linalg.norm(a - b) / change, 1e-4
        if e > tol:
            if w32 is None:
                _, w32 = ref.train(mdir, pairs, 20, 4, lock=lock, unlock_last=unlock, dtype="f32", **hp)
            tol = max(tol, 1.5 * np.linalg.norm(w32[name] - b) / change)
        if e > worst[0]:
            worst = (e, name)
        if e > tol:
            bad.append("%s: %.3g of the change (tolerance %.3g)" % (name, e, tol))
    T.ok(not bad, "%s: final weights match PyTorch's (worst %.2g of the change, %s)" % (label, worst[0], worst[1]))
    for b in bad[:5]:
        T.diag(b)
    if lock:
        T.ok(frozen_ok and n_frozen > 0, "%s: the %d frozen tensors are bit-identical to the input" % (label, n_frozen))
    if not lock and not oc:
        T.ok(abs(wo["logit_bias"].numpy()[0] - w0["logit_bias"].numpy()[0]) > 1e-4,
             "%s: logit_bias learned (%.5f -> %.5f)" % (label, w0["logit_bias"].numpy()[0], wo["logit_bias"].numpy()[0]))
    p = qf.run("model", model=out)
    fam = "openclip" if oc else "siglip2" if model.startswith("siglip2") else "siglip"
    T.ok(p.returncode == 0 and ("family: %s\n" % fam) in p.stdout.decode(),
         "%s: clipdex model loads the output (family %s)" % (label, fam))
    img = os.path.join(data, "img", "00.png")
    p = qf.run("embed", "--preprocess", "exact", "--precision", "f32", "--raw", "--text", "a red circle",
               "--image", img, model=out)
    ok = p.returncode == 0
    if ok:
        got = [np.array(r["embedding"]) for r in qf.jsonl(p)]
        with torch.no_grad():  # the training references turned autograd on
            if oc:
                r = openclip_ref.OpenCLIPRef(out)
            else:
                r = siglip_ref.SiglipRef(out)
            want = [r.embed_text("a red circle", False).numpy(), r.embed_image(img, False).numpy()]
        dd = max(np.abs(g - w).max() for g, w in zip(got, want))
        ok = dd < 1e-4
        T.diag("embed on the trained model: max diff %.2g from the reference" % dd)
    else:
        T.diag(p.stderr.decode())
    T.ok(ok, "%s: clipdex embed loads the trained model and agrees with the reference" % label)

# --until, then --resume: bit-identical to the run never stopped, in each
# family's own files (a SigLIP 2 directory; an OpenCLIP .bin)
for model, size in (("siglip2-tiny", 64), ("oc-tiny-bin", 224)):
    mdir = os.path.join(MODELS, model)
    common = ["--data", SETS[size][1], "--steps", "6", "--batch", "4", "--seed", "3", "--lr", "1e-3",
              "--warmup", "2", "--sub-batch", "2"]
    ra, rb = os.path.join(tmp, "whole-" + model), os.path.join(tmp, "parts-" + model)
    p1 = qf.run("train", "--out", ra, *common, model=mdir)
    p2 = qf.run("train", "--out", rb, "--until", "4", *common, model=mdir)
    p3 = qf.run("train", "--resume", "--out", rb, model=None)
    files = sorted(os.listdir(ra)) if p1.returncode == 0 else []
    same = p1.returncode == 0 and p2.returncode == 0 and p3.returncode == 0 and files == sorted(os.listdir(rb)) and all(
        open(os.path.join(ra, f), "rb").read() == open(os.path.join(rb, f), "rb").read() for f in files)
    T.ok(same, "%s: --until 4 then --resume: every file bit-identical to the uninterrupted run" % model)
    if not same:
        T.diag((p1.stderr + p2.stderr + p3.stdout + p3.stderr).decode())

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
