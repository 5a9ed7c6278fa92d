#!/usr/bin/python3
"""siglip_torch.py - PyTorch running tests/ref/siglip_ref.py (the SigLIP
reference the tests compare with) on one tower, for bench/run-siglip.sh:
images/s at a batch size, or ms per text query, median of REPS.

usage: siglip_torch.py MODEL_DIR images|text [--batch N] [--reps R] [--threads T]
                       [--dtype f32|bf16]

Only the tower's tensors are read from model.safetensors (an SO400M file
holds both towers: reading one keeps the process near 2 GB).  Prints
"key value" lines like bench/engine_bench.
"""
import argparse
import json
import os
import resource
import statistics
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import siglip_ref  # noqa: E402


def read_tower(path, keep):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, e in header.items():
            if name == "__metadata__" or not any(name.startswith(k) for k in keep):
                continue
            b, en = e["data_offsets"]
            f.seek(base + b)
            raw = f.read(en - b)
            if e["dtype"] == "F32":
                a = np.frombuffer(raw, "<f4").copy()
            elif e["dtype"] == "F16":
                a = np.frombuffer(raw, "<f2").astype(np.float32)
            else:
                a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            out[name] = torch.from_numpy(a.reshape(e["shape"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("mode", choices=["images", "text"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    ref = siglip_ref.SiglipRef.__new__(siglip_ref.SiglipRef)
    # the config and tokenizer as SiglipRef reads them, the weights of one tower
    orig = siglip_ref._read_safetensors
    siglip_ref._read_safetensors = lambda p: {}
    siglip_ref.SiglipRef.__init__(ref, a.model)
    siglip_ref._read_safetensors = orig
    prefix = "vision_model." if a.mode == "images" else "text_model."
    ref.w = read_tower(os.path.join(a.model, "model.safetensors"), [prefix, "logit_"])
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    ref.w = {k: v.to(dt) for k, v in ref.w.items()}
    print("open_ms %.1f" % ((time.time() - t0) * 1e3))
    times = []
    if a.mode == "images":
        S = ref.vc["image_size"]
        pix = (torch.rand(a.batch, 3, S, S) * 4 - 2).to(dt)
        with torch.no_grad():
            ref.encode_pixels(pix)  # warm-up
            for _ in range(a.reps):
                s = time.time()
                ref.encode_pixels(pix)
                times.append(a.batch / (time.time() - s))
        print("images_per_s_median %.2f" % statistics.median(times))
    else:
        ids = ref.tok("a photo of a dog on the beach at sunset")
        with torch.no_grad():
            ref.encode_ids(ids)
            for _ in range(a.reps):
                s = time.time()
                ref.encode_ids(ids)
                times.append((time.time() - s) * 1e3)
        print("text_ms_median %.2f" % statistics.median(times))
    print("peak_rss_mb %.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


if __name__ == "__main__":
    main()
