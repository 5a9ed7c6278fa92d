#!/usr/bin/python3
"""86-train-init.t - `clipdex train --init random` (core/train/train_init.c).

Oracles, independent of clipdex:
- the tensor names and shapes of a transformers CLIPModel: the tiny test
  model's model.safetensors, written by transformers' save_pretrained;
- transformers' CLIPPreTrainedModel._init_weights, restated below from its
  documentation and source (std per tensor, biases 0, layer norms 1/0,
  logit_scale = logit_scale_init_value);
- tests/ref/clip_ref.py, the independent PyTorch CLIP, for the embeddings.

The initial weights are read from a run with --lr 0: AdamW then changes
nothing (the decay factor 1 - lr wd is 1, the step is 0 x m/(sqrt v + eps)).

1. Every tensor the checkpoint has, and only those, with its shape, F32.
2. Each tensor's distribution: normal tensors' mean within 5 standard
   errors of 0, their standard deviation within 5 standard errors of the
   documented std (SE of a std ~ std / sqrt(2n)), the fraction within one
   std near 0.683 (a normal, not a uniform); zeros, ones and logit_scale
   exact.  The config's initializer_factor and initializer_range are read
   (the test sets them away from their defaults).
3. Seeds: the same seed gives the same bytes, another seed other values
   in every random tensor.
4. The output loads: `clipdex embed` agrees with clip_ref on it; the
   experiment's own config (experiments/real-data/tiny-clip, image 64,
   patch 8, text context 32) initialises and embeds too.
5. Errors: --init with a bad value, --init with --resume, a failed run
   leaves no output and no init directory, a bad initializer_factor is
   one line naming config.json.
"""
import glob
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ref"))
import query_fixture as qf  # noqa: E402
import clip_ref  # noqa: E402

T = qf.Tap()
ROOT = qf.ROOT
TINY = os.path.join(ROOT, "build", "testdata", "models", "tiny")
tmp = tempfile.mkdtemp(prefix="cdx-86-")


def st_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def train(*args):
    return qf.sanitizer_check(subprocess.run([qf.CLIPDEX, "train"] + list(args), capture_output=True,
                                             env=qf.clean_env()), "train " + " ".join(args))


# a config directory: the tiny model's config (factor and vision range
# changed), tokenizer and processor, no weights
cfg_dir = os.path.join(tmp, "cfg")
os.makedirs(cfg_dir)
for f in ("vocab.json", "merges.txt", "preprocessor_config.json"):
    shutil.copy(os.path.join(TINY, f), cfg_dir)
cfg = json.load(open(os.path.join(TINY, "config.json")))
cfg["initializer_factor"] = 1.5
cfg["vision_config"]["initializer_range"] = 0.03
cfg["logit_scale_init_value"] = 2.5
json.dump(cfg, open(os.path.join(cfg_dir, "config.json"), "w"))

rng = np.random.default_rng(81)
data = os.path.join(tmp, "pairs")
os.makedirs(data)
with open(os.path.join(data, "pairs.tsv"), "w") as f:
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8)).save(
            os.path.join(data, "%d.png" % i))
        f.write("%d.png\tpicture number %d\n" % (i, i))
pairs = os.path.join(data, "pairs.tsv")


def init(out, seed, model=cfg_dir):
    return train("--init", "random", "--model", model, "--data", pairs, "--out", out, "--lr", "0",
                 "--steps", "1", "--batch", "2", "--seed", str(seed))


out = os.path.join(tmp, "o7")
p = init(out, 7)
T.ok(p.returncode == 0, "--init random --lr 0: runs")
if p.returncode:
    T.diag(p.stderr.decode())
T.ok(not glob.glob(out + ".init-*"), "the initial model directory is removed at the end")

# ---------------------------------------------------------------- 1. names and shapes
ref_h = {k: v for k, v in st_header(os.path.join(TINY, "model.safetensors")).items() if v["dtype"] != "I64"}
h = st_header(os.path.join(out, "model.safetensors"))
T.ok(set(h) == set(ref_h), "exactly the tensors of a transformers CLIPModel (%d; missing %s, extra %s)"
     % (len(ref_h), sorted(set(ref_h) - set(h))[:3], sorted(set(h) - set(ref_h))[:3]))
T.ok(all(h[k]["shape"] == ref_h[k]["shape"] for k in set(h) & set(ref_h)), "with transformers' shapes")
T.ok(all(v["dtype"] == "F32" for v in h.values()), "all float32")
for f in ("config.json", "vocab.json", "merges.txt", "preprocessor_config.json"):
    T.ok(open(os.path.join(out, f), "rb").read() == open(os.path.join(cfg_dir, f), "rb").read(),
         "%s copied from the config directory" % f)

# ---------------------------------------------------------------- 2. distributions
W = clip_ref._read_safetensors(os.path.join(out, "model.safetensors"))
fac = 1.5


def expected(name):
    """(kind, value): transformers' _init_weights for this tensor."""
    if name == "logit_scale":
        return "const", 2.5
    tower = "text_config" if name.startswith("text") else "vision_config"
    C = cfg[tower]["hidden_size"]
    L = cfg[tower]["num_hidden_layers"]
    rng_ = cfg[tower].get("initializer_range", 0.02)
    in_std = C ** -0.5 * (2 * L) ** -0.5 * fac
    if name.endswith(".bias") or name.endswith("_layrnorm.bias") or name.endswith("layernorm.bias"):
        return "const", 0.0
    if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
        return "const", 1.0
    if name.endswith("token_embedding.weight") or name == "text_model.embeddings.position_embedding.weight":
        return "normal", 0.02 * fac
    if name.endswith("class_embedding"):
        return "normal", C ** -0.5 * fac
    if name.endswith("patch_embedding.weight") or name == "vision_model.embeddings.position_embedding.weight":
        return "normal", rng_ * fac
    if any(name.endswith("%s_proj.weight" % k) for k in "qkv"):
        return "normal", in_std
    if name.endswith("out_proj.weight"):
        return "normal", C ** -0.5 * fac
    if name.endswith("fc1.weight"):
        return "normal", (2 * C) ** -0.5 * fac
    if name.endswith("fc2.weight"):
        return "normal", in_std
    if name in ("text_projection.weight", "visual_projection.weight"):
        return "normal", C ** -0.5 * fac
    raise KeyError(name)


bad = []
checked = 0
for name, t in sorted(W.items()):
    a = t.numpy().astype(np.float64).ravel()
    kind, v = expected(name)
    if kind == "const":
        if not np.all(a == np.float32(v)):
            bad.append("%s: not all %g" % (name, v))
        continue
    n = a.size
    mean, std = a.mean(), a.std()
    within = np.mean(np.abs(a) <= v)
    checked += 1
    if abs(mean) > 5 * v / math.sqrt(n):
        bad.append("%s: mean %.3g (std %.3g, n %d)" % (name, mean, v, n))
    if abs(std - v) > 5 * v / math.sqrt(2 * n):
        bad.append("%s: std %.5g, documented %.5g (n %d)" % (name, std, v, n))
    if n >= 4096 and abs(within - 0.6827) > 5 * math.sqrt(0.6827 * 0.3173 / n):
        bad.append("%s: %.4f within one std, a normal has 0.6827" % (name, within))
T.ok(not bad, "every tensor drawn as transformers initialises it (%d random tensors, %d constant)"
     % (checked, len(W) - checked))
for b in bad[:8]:
    T.diag(b)

# ---------------------------------------------------------------- 3. seeds
out_b = os.path.join(tmp, "o7b")
out_8 = os.path.join(tmp, "o8")
T.ok(init(out_b, 7).returncode == 0 and init(out_8, 8).returncode == 0, "two more runs (seeds 7 and 8)")
st_a = open(os.path.join(out, "model.safetensors"), "rb").read()
T.ok(st_a == open(os.path.join(out_b, "model.safetensors"), "rb").read(), "the same seed: the same bytes")
W8 = clip_ref._read_safetensors(os.path.join(out_8, "model.safetensors"))
same = [k for k in W if expected(k)[0] == "normal" and np.array_equal(W[k].numpy(), W8[k].numpy())]
T.ok(not same, "another seed: every random tensor differs (%s)" % same[:3])

# ---------------------------------------------------------------- 4. loads and embeds


def embed_agrees(model_dir, image, label):
    p = subprocess.run([qf.CLIPDEX, "embed", "--model", model_dir, "--format", "json", "--precision", "f32",
                        "--preprocess", "exact", "--text", "a red square",
                        "--image", image], capture_output=True, env=qf.clean_env())
    if not T.ok(p.returncode == 0, "%s: clipdex embed loads it" % label):
        T.diag(p.stderr.decode())
        return
    rows = [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]
    ref = clip_ref.CLIPRef(model_dir)
    want = [ref.embed_text("a red square").numpy(), ref.embed_image(image).numpy()]
    got = [np.array(r["embedding"], dtype=np.float64) for r in rows]
    err = max(np.abs(g - w).max() for g, w in zip(got, want))
    T.ok(len(got) == 2 and err <= 1e-4, "%s: its text and image embeddings match clip_ref (max diff %.2g)"
         % (label, err))


embed_agrees(out, os.path.join(data, "1.png"), "the tiny config")

exp_cfg = os.path.join(tmp, "exp-cfg")
os.makedirs(exp_cfg)
for f in ("config.json", "preprocessor_config.json"):
    shutil.copy(os.path.join(ROOT, "experiments", "real-data", "tiny-clip", f), exp_cfg)
for f in ("vocab.json", "merges.txt"):
    shutil.copy(os.path.join(TINY, f), exp_cfg)
exp_out = os.path.join(tmp, "exp")
p = init(exp_out, 1, model=exp_cfg)
T.ok(p.returncode == 0, "the experiment's config (experiments/real-data/tiny-clip) initialises")
if p.returncode == 0:
    embed_agrees(exp_out, os.path.join(data, "2.png"), "the experiment's config")

# ---------------------------------------------------------------- 5. errors
p = train("--init", "zeros", "--model", cfg_dir, "--data", pairs, "--out", os.path.join(tmp, "e1"))
T.ok(p.returncode == 2 and b"--init must be pretrained or random" in p.stderr, "--init zeros: usage error")
p = train("--resume", "--init", "random", "--out", out)
T.ok(p.returncode == 2 and b"--resume" in p.stderr, "--init with --resume: usage error")
e2 = os.path.join(tmp, "e2")
p = train("--init", "random", "--model", cfg_dir, "--data", os.path.join(tmp, "nope.tsv"), "--out", e2)
T.ok(p.returncode in (1, 3) and not os.path.exists(e2) and not glob.glob(e2 + ".init-*"),
     "a run that fails (missing data) leaves no output and no init directory")
cfg["initializer_factor"] = -1
bad_cfg = os.path.join(tmp, "badcfg")
shutil.copytree(cfg_dir, bad_cfg)
json.dump(cfg, open(os.path.join(bad_cfg, "config.json"), "w"))
p = train("--init", "random", "--model", bad_cfg, "--data", pairs, "--out", os.path.join(tmp, "e3"))
lines = p.stderr.decode().strip().splitlines()
T.ok(p.returncode in (1, 3) and len(lines) == 1 and "config.json" in lines[0] and "initializer_factor" in lines[0],
     "initializer_factor -1: one line naming config.json (%s)" % lines[:1])

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
