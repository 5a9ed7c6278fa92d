#!/usr/bin/python3
"""query_baseline.py MODEL VECTORS.npy QUERY [-n K] - the Python baseline of
bench/run-query.sh: the same job as `clipdex search QUERY -n K` done the
straightforward way with python3-torch and numpy, timed from process start
to exit by the caller.

It loads only the text tower (the safetensors tensors text_model.* and
text_projection, memory-mapped, no copy), tokenizes and encodes with the
reference model of tests/ref/clip_ref.py, and takes the top K of a numpy
dot product over the stored vectors (memory-mapped .npy, float32), printing
"score path" lines as clipdex's table does."""
import argparse
import json
import os
import struct
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import clip_ref  # noqa: E402

DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def text_weights(model_dir):
    """The text tower's tensors, memory-mapped from model.safetensors."""
    path = os.path.join(model_dir, "model.safetensors")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    w = {}
    for name, e in header.items():
        if name == "__metadata__" or not name.startswith("text_") or e["dtype"] not in ("F32", "F16"):
            continue
        b, en = e["data_offsets"]
        a = mm[8 + n + b:8 + n + en].view(DT[e["dtype"]]).reshape(e["shape"])
        w[name] = torch.from_numpy(a if a.dtype == np.float32 else a.astype(np.float32))
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("vectors")
    ap.add_argument("query")
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    m = clip_ref.CLIPRef.__new__(clip_ref.CLIPRef)
    with open(os.path.join(a.model, "config.json")) as f:
        m.cfg = json.load(f)
    m.w = text_weights(a.model)
    m.tok = clip_ref.Tokenizer(os.path.join(a.model, "vocab.json"), os.path.join(a.model, "merges.txt"))
    with torch.inference_mode():
        q = m.embed_text(a.query).numpy()
    v = np.load(a.vectors, mmap_mode="r")
    s = v @ q
    top = np.argpartition(-s, a.n)[:a.n]
    top = top[np.argsort(-s[top])]
    for i in top:
        print("%.4f  /bench/photos/%03d/IMG_%07d.jpg" % (s[i], i // 1000, i))


if __name__ == "__main__":
    main()
