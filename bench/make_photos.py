#!/usr/bin/env python3
"""make_photos.py OUTDIR CORPUS - large test photos for bench/run-image.sh.

The corpus has only a couple of photos over 8 megapixels, so a few are
made here from its real photos: upscaled with Lanczos to phone/camera
sizes (12 and 24 MP), with mild per-pixel noise so they compress like
sensor data rather than like smooth upscales, saved as JPEG quality 90
with 4:2:0 chroma (what cameras write).  jpeg/gdk-pixbuf/large.jpg is a
decompression bomb, not a photo, and is not used.  Deterministic; files
that exist are kept.
"""
import os
import sys

import numpy as np
from PIL import Image

SOURCES = [  # (corpus photo, output name, width, height)
    ("exif/orientation/recurser/Landscape_1.jpg", "landscape_12mp.jpg", 4240, 2832),
    ("exif/ianare/jpg/tests/45-gps_ifd.jpg", "racing_12mp.jpg", 4608, 2592),
    ("exif/ianare/jpg/corrupted.jpg", "camera_24mp.jpg", 6000, 4000),
    ("exif/orientation/recurser/Portrait_1.jpg", "portrait_24mp.jpg", 4000, 6000),
]


def main():
    out, corpus = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    for src, name, w, h in SOURCES:
        dst = os.path.join(out, name)
        if os.path.exists(dst):
            continue
        with Image.open(os.path.join(corpus, src)) as im:
            big = im.convert("RGB").resize((w, h), Image.LANCZOS)
        a = np.asarray(big).astype(np.int16)
        a = a + rng.normal(0, 3.0, a.shape).astype(np.int16)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(
            dst + ".tmp.jpg", quality=90, subsampling=2)
        os.replace(dst + ".tmp.jpg", dst)
        print("made %s (%dx%d, %.1f MP)" % (dst, w, h, w * h / 1e6), file=sys.stderr)


if __name__ == "__main__":
    main()
