#!/usr/bin/python3
"""train_torch.py MODEL PAIRS BATCH STEPS THREADS - the PyTorch side of
bench/run-train.sh: the reference CLIP (tests/ref/train_ref.py) trained in
float32 with torch.optim.AdamW on the same pairs, batch and thread count
as clipdex train.  Prints the seconds of each step after the first (the
first is warm-up), like clipdex's --log."""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import clip_ref  # noqa: E402
import train_ref  # noqa: E402

model, pairs_file, B, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
m = train_ref.Model(model, torch.float32)
base = os.path.dirname(os.path.abspath(pairs_file))
pairs = []
for line in open(pairs_file, encoding="utf-8"):
    path, cap = line.rstrip("\n").split("\t", 1)
    pairs.append((clip_ref.preprocess(os.path.join(base, path), m.pre), m.tok.encode(cap)))
names = m.trainable()
opt = torch.optim.AdamW([{"params": [m.p[n] for n in names if m.p[n].ndim >= 2], "weight_decay": 0.2},
                         {"params": [m.p[n] for n in names if m.p[n].ndim < 2], "weight_decay": 0.0}],
                        lr=1e-5, betas=(0.9, 0.98), eps=1e-6)
t0 = None
for step in range(steps):
    bt = [pairs[(step * B + i) % len(pairs)] for i in range(B)]
    pix = torch.stack([b[0] for b in bt])
    L = max(len(b[1]) for b in bt)
    seqs = [b[1] + [0] * (L - len(b[1])) for b in bt]
    if step == 1:
        t0 = time.perf_counter()
    opt.zero_grad()
    loss = m.loss(pix, seqs)
    loss.backward()
    opt.step()
el = time.perf_counter() - t0
print("%.3f" % (el / (steps - 1)))
