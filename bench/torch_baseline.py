#!/usr/bin/python3
"""torch_baseline.py MODEL --threads N --reps R - the PyTorch baseline for
bench/run-engine.sh: the reference model of tests/ref/clip_ref.py run in
inference mode, eager, float32.  Prints "key value" lines: img_s_bN
(median images/s at batch N), text_ms_10 (unpadded 10-token query) and
text_ms_10_padded (padded to 77, as transformers runs it), peak_rss_mb."""
import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import clip_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16"],
                    help="bf16: every weight and the input pixels cast to torch.bfloat16 "
                         "(oneDNN kernels), as a user of torch would run it")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = clip_ref.CLIPRef(a.model)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    if dt != torch.float32:
        m.w = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in m.w.items()}
    S = m.cfg["vision_config"].get("image_size", 224)
    with torch.inference_mode():
        for bs in (1, 8, 16):
            x = torch.randn(bs, 3, S, S).to(dt)
            m.encode_pixels(x)
            ts = []
            for _ in range(a.reps):
                t = time.perf_counter()
                m.encode_pixels(x)
                ts.append(bs / (time.perf_counter() - t))
            print("img_s_b%d %.2f" % (bs, statistics.median(ts)))
        ids = [49406] + [320 + 7 * i for i in range(1, 9)] + [49407]
        for key, pad in (("text_ms_10", None), ("text_ms_10_padded", 77)):
            m.encode_ids(ids, pad_to=pad)
            ts = []
            for _ in range(31):
                t = time.perf_counter()
                m.encode_ids(ids, pad_to=pad)
                ts.append((time.perf_counter() - t) * 1e3)
            print("%s %.2f" % (key, statistics.median(ts)))
    print("peak_rss_mb %.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


if __name__ == "__main__":
    main()
