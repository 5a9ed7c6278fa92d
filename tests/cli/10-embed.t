#!/usr/bin/python3
"""10-embed.t - the C engine against the independent PyTorch reference.

For every generated model variant (quick_gelu and gelu, F32/F16/BF16,
safetensors, sharded, pytorch_model.bin (zip and legacy), the real ViT-B/32 sizes, and
config variations the loader must honour: layer-norm epsilon 1e-6, 1e-12
and 1e-2, other hidden sizes, heads, layers, patch and image sizes,
projection width and context length, a different activation per tower),
`clipdex embed` must agree with tests/ref/clip_ref.py: cosine >= 0.99999
and max abs difference <= 1e-5 per L2-normalised embedding, for texts
(short, long, over 77 tokens, unicode, literal <|endoftext|>) and images
(JPEG 4:2:0 / 4:4:4 / progressive, PNG gray / palette / RGBA, odd sizes).
Prints TAP.

The tolerance is a few times what is achieved (about 1.2e-6 on the tiny
models, a few 1e-6 on the ViT-B/32 sizes): a layer-norm epsilon 10x off
moves the tiny model's embeddings by more than that, and a looser bound
would let it through.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import clip_ref  # noqa: E402

BUILD = os.environ.get("CLIPDEX_BUILD", "build")
CLIPDEX = os.path.join(ROOT, BUILD, "bin", "clipdex")
TESTDATA = os.path.join(ROOT, "build", "testdata")
IMAGES = os.path.join(TESTDATA, "images")

TEXTS = [
    "a photo of a dog",
    "kids on a red sled in the snow",
    "receipt",
    "Sunset over water, with boats and a pier... and some more words to make this longer than usual: "
    "the quick brown fox jumps over the lazy dog while the band plays on the beach at night.",
    " ".join(["word%d" % i for i in range(60)]),  # far over 77 tokens: truncated
    "café crème brûlée — naïve 日本の猫 Ελληνικά привет 🐶🎉",
    "a cat <|endoftext|> and a dog",
    "I'm sure they'll say it's 42 degrees",
]
IMAGE_FILES = ["photo420.jpg", "photo444.jpg", "progressive.jpg", "gray.png", "palette.png",
               "rgba.png", "odd301x201.png", "odd225x224.png", "wide1000x333.jpg", "tiny3x3.png",
               "gray.jpg"]

n = 0
failed = 0
TOL = 1e-5


def ok(cond, msg):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%sok %d - %s" % ("" if cond else "not ", n, msg), flush=True)
    return cond


def run_embed(model, texts, images, extra=()):
    args = [CLIPDEX, "embed", "--model", model, "--format", "json"] + list(extra)
    for t in texts:
        args += ["--text", t]
    for i in images:
        args += ["--image", i]
    p = subprocess.run(args, capture_output=True)
    if p.returncode != 0:
        print("# clipdex failed (%d): %s" % (p.returncode, p.stderr.decode(errors="replace").strip()))
        return None
    return [json.loads(l) for l in p.stdout.decode().splitlines()]


def compare(name, got, want, raw=False):
    g = np.array(got, dtype=np.float64)
    w = want.double().numpy()
    cos = float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w)))
    mad = float(np.max(np.abs(g - w)))
    tol = TOL * (np.linalg.norm(w) if raw else 1.0)
    return ok(cos >= 0.99999 and mad <= tol, "%s: cos %.7f, max abs diff %.2e" % (name, cos, mad))


def check_model(name, texts, images):
    d = os.path.join(TESTDATA, "models", name)
    ref = clip_ref.CLIPRef(d)
    img_paths = [os.path.join(IMAGES, f) for f in images]
    out = run_embed(d, texts, img_paths)
    if not ok(out is not None and len(out) == len(texts) + len(images),
              "%s: clipdex embed printed one line per input" % name):
        return
    for rec, t in zip(out[:len(texts)], texts):
        ok(rec["type"] == "text" and rec["input"] == t, "%s: text record echoes its input" % name)
        compare("%s text %r" % (name, t[:40]), rec["embedding"], ref.embed_text(t))
    for rec, p in zip(out[len(texts):], img_paths):
        ok(rec["type"] == "image" and rec["input"] == p, "%s: image record echoes its path" % name)
        compare("%s image %s" % (name, os.path.basename(p)), rec["embedding"], ref.embed_image(p))
    return ref


def main():
    # Unpadded running is the same as the reference's padding to 77.
    tiny = os.path.join(TESTDATA, "models", "tiny")
    ref = clip_ref.CLIPRef(tiny)
    ids = ref.tok.encode("a photo of a dog")
    a, b = ref.encode_ids(ids), ref.encode_ids(ids, pad_to=77)
    ok(float((a - b).abs().max()) < 1e-5, "reference: unpadded text equals padded-to-77 text")

    check_model("tiny", TEXTS, IMAGE_FILES)
    check_model("tiny-gelu", TEXTS[:3], IMAGE_FILES[:3])
    for v in ("tiny-f16", "tiny-bf16", "tiny-sharded", "tiny-bin", "tiny-bin-f16", "tiny-bin-legacy"):
        check_model(v, TEXTS[:2] + TEXTS[6:7], IMAGE_FILES[:2])
    for v in ("tiny-eps6", "tiny-eps12", "tiny-eps2"):
        check_model(v, TEXTS[:2], IMAGE_FILES[:2])
    # other sizes everywhere; the context is 40 tokens, so the long texts
    # are cut at 40 (the reference reads max_position_embeddings too)
    check_model("tiny-shapes", TEXTS[:1] + TEXTS[3:5], IMAGE_FILES[:2] + ["tiny3x3.png", "wide1000x333.jpg"])
    check_model("vitb32", TEXTS[:2] + TEXTS[4:6], IMAGE_FILES[:3] + ["tiny3x3.png"])

    # --raw: the projection before normalisation.
    out = run_embed(tiny, [TEXTS[0]], [os.path.join(IMAGES, "photo420.jpg")], ["--raw"])
    if ok(out is not None and len(out) == 2, "--raw prints both records"):
        compare("raw text", out[0]["embedding"], ref.embed_text(TEXTS[0], normalize=False), raw=True)
        compare("raw image", out[1]["embedding"],
                ref.embed_image(os.path.join(IMAGES, "photo420.jpg"), normalize=False), raw=True)
        ok(abs(np.linalg.norm(out[0]["embedding"]) - 1.0) > 1e-3, "--raw is not normalised")

    # Batching must not change results: one image alone vs among others.
    p = os.path.join(IMAGES, "photo444.jpg")
    one = run_embed(tiny, [], [p])
    many = run_embed(tiny, [], [os.path.join(IMAGES, f) for f in IMAGE_FILES] * 2)
    if ok(one is not None and many is not None, "batched and single runs succeed"):
        g = np.array(one[0]["embedding"])
        h = np.array(many[1]["embedding"])
        ok(np.max(np.abs(g - h)) < 1e-5, "an image's embedding does not depend on its batch")

    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
