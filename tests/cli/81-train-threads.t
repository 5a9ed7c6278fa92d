#!/usr/bin/python3
"""81-train-threads.t - the same inputs and seed give bit-identical
weights with 1 or 2 compute threads (issue 15), and the same embeddings.

The products are split across the compute threads in column blocks whose
width depends on the matrix size only (core/engine/linear.c,
core/train/grad_kernels.c); before that, 1 and 2 threads differed in the
last bit because OpenBLAS sums a column in an order that depends on the
width of the call.  The tiny test models are too narrow to be split at
all, so this test generates a wider one (256 wide, 2 layers per tower)
where every product is split into several blocks and the image tower's
products go to sgemm (more than 64 rows).

Oracle: the bytes of the run with CLIPDEX_THREADS=1.  That is clipdex
against itself, but the property under test is exactly that equality
(the gradient and AdamW values are checked against PyTorch in 80-train.t).
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-81-")
mid = os.path.join(tmp, "mid")
subprocess.check_call([sys.executable, os.path.join(os.path.dirname(HERE), "tools", "gen_model.py"), mid,
                       "--seed", "31", "--set", "vision.hidden_size=256", "--set", "vision.intermediate_size=1024",
                       "--set", "vision.num_attention_heads=4", "--set", "text.hidden_size=256",
                       "--set", "text.intermediate_size=1024", "--set", "text.num_attention_heads=4",
                       "--set", "projection_dim=128", "--set", "vision.num_hidden_layers=2",
                       "--set", "text.num_hidden_layers=2"], stdout=subprocess.DEVNULL)

rng = np.random.default_rng(5)
os.makedirs(os.path.join(tmp, "img"))
lines = []
for i, cn in enumerate(["red", "green", "blue", "yellow", "purple", "orange"] * 2):
    im = Image.new("RGB", (224, 224), tuple(int(v) for v in rng.integers(0, 60, 3)))
    x0, y0 = (int(v) for v in rng.integers(20, 80, 2))
    d = ImageDraw.Draw(im)
    (d.ellipse if i % 2 else d.rectangle)([x0, y0, x0 + 100, y0 + 100], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    im.save(os.path.join(tmp, "img", "%02d.png" % i))
    lines.append("img/%02d.png\ta %s %s" % (i, cn, ("square", "circle")[i % 2]))
pairs = os.path.join(tmp, "pairs.tsv")
open(pairs, "w").write("\n".join(lines) + "\n")

RUNS = [("full", []), ("--sub-batch 4", ["--sub-batch", "4"])]
for label, extra in RUNS:
    got = []
    for th in ("1", "2"):
        out = os.path.join(tmp, "out-%s" % th)
        p = qf.run("train", "--data", pairs, "--out", out, "--batch", "12", "--steps", "2", "--lr", "1e-3",
                   "--seed", "4", *extra, model=mid, env={"CLIPDEX_THREADS": th})
        if p.returncode != 0:
            T.diag(p.stderr.decode())
        got.append([open(os.path.join(out, f), "rb").read() if p.returncode == 0 else b""
                    for f in ("model.safetensors", "train_state.safetensors")])
    T.ok(got[0][0] and got[0] == got[1],
         "%s: 2 steps with 1 and 2 threads give byte-identical weights and AdamW moments" % label)

imgs = [os.path.join(tmp, "img", "%02d.png" % i) for i in range(12)]
emb = []
for th in ("1", "2"):
    args = ["embed", "--raw", "--precision", "f32", "--format", "json", "--text", "a red square",
            "--text", "a long caption of " + "many words " * 20]
    for f in imgs:
        args += ["--image", f]
    p = qf.run(*args, model=mid, env={"CLIPDEX_THREADS": th})
    emb.append(p.stdout if p.returncode == 0 else None)
T.ok(emb[0] and emb[0] == emb[1], "clipdex embed: 12 images and 2 texts, identical output with 1 and 2 threads")

p = qf.run("embed", "--text", "x", model=mid, env={"CLIPDEX_THREADS": "0"})
T.ok(p.returncode == 2 and b"CLIPDEX_THREADS" in p.stderr, "CLIPDEX_THREADS=0: usage error naming it")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
