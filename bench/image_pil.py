#!/usr/bin/env python3
"""image_pil.py - the Pillow baseline of bench/run-image.sh: decode and
preprocess each file the way transformers' CLIPImageProcessor does with
Pillow (open, convert("RGB"), resize the short side to 224 with BICUBIC,
center crop 224x224, rescale and normalise to a float32 (3,224,224)
array), median of REPS runs, single-threaded.

    image_pil.py [-r REPS] FILE...     prints "path<TAB>ms" per file
                                       ("-" when Pillow cannot open it)
"""
import sys
import time
import warnings

import numpy as np
from PIL import Image

warnings.simplefilter("ignore")
Image.MAX_IMAGE_PIXELS = None
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def preprocess(path, size=224):
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            nw, nh = size, int(size * h / w)
        else:
            nw, nh = int(size * w / h), size
        im = im.resize((nw, nh), resample=Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        a = np.asarray(im.crop((left, top, left + size, top + size)))
    x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def main():
    args = sys.argv[1:]
    reps = 5
    if len(args) >= 2 and args[0] == "-r":
        reps = int(args[1])
        args = args[2:]
    for p in args:
        times = []
        try:
            for _ in range(reps):
                t0 = time.perf_counter()
                preprocess(p)
                times.append((time.perf_counter() - t0) * 1e3)
            print("%s\t%.2f" % (p, float(np.median(times))), flush=True)
        except Exception:
            print("%s\t-" % p, flush=True)


if __name__ == "__main__":
    main()
