#!/usr/bin/python3
"""make_testdata.py - generate the models and images the tests use, once.

OUT/models/NAME   random-weight HF CLIP directories (tests/tools/gen_model.py)
OUT/models/siglip*  SigLIP / SigLIP 2 directories (tests/tools/gen_siglip.py)
OUT/images/*      test images written with Pillow: JPEG 4:2:0 / 4:4:4 /
                  progressive, PNG gray / palette / RGBA / 16-bit, odd sizes

Everything is deterministic; a stamp file holding the generator sources'
hash makes reruns free until the generators change.
"""
import argparse
import hashlib
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = {
    "tiny": [],
    "tiny-gelu": ["--act", "gelu", "--seed", "2"],
    "tiny-f16": ["--dtype", "F16", "--seed", "3"],
    "tiny-bf16": ["--dtype", "BF16", "--seed", "4"],
    "tiny-sharded": ["--format", "sharded", "--seed", "5"],
    "tiny-bin": ["--format", "bin", "--seed", "6"],
    "tiny-bin-f16": ["--format", "bin", "--dtype", "F16", "--seed", "7"],
    "tiny-bin-legacy": ["--format", "bin-legacy", "--seed", "9"],
    "vitb32": ["--preset", "vitb32", "--seed", "8"],
    # config variations the loader must honour (10-embed.t checks each
    # against the reference): layer-norm epsilon, and every size.
    "tiny-eps6": ["--ln-eps", "1e-6", "--seed", "9"],
    "tiny-eps12": ["--ln-eps", "1e-12", "--seed", "10"],
    "tiny-eps2": ["--ln-eps", "1e-2", "--seed", "11"],
    "tiny-shapes": ["--seed", "12", "--act", "gelu", "--vision-act", "quick_gelu",
                    "--set", "text.hidden_size=48", "--set", "text.num_attention_heads=3",
                    "--set", "text.intermediate_size=96", "--set", "text.num_hidden_layers=3",
                    "--set", "text.max_position_embeddings=40",
                    "--set", "vision.hidden_size=80", "--set", "vision.num_attention_heads=5",
                    "--set", "vision.intermediate_size=144", "--set", "vision.num_hidden_layers=1",
                    "--set", "vision.image_size=96", "--set", "vision.patch_size=16",
                    "--set", "projection_dim=24"],
    # ViT-B/32 sizes with CLIP-like outlier channels (reduced precision tests)
    "vitb32-outlier": ["--preset", "vitb32", "--seed", "9", "--outliers"],
}

# ---- SigLIP / SigLIP 2 (tests/tools/gen_siglip.py; 15-siglip.t) ----
# In order: the later ones reuse the first model's trained tokenizer.
# siglip-tiny's config.json lists only sizes (SiglipTextConfig /
# SiglipVisionConfig defaults for the rest), as the first checkpoints do.
SIGLIP_MODELS = [
    ("siglip-tiny", ["--family", "siglip", "--sparse-config", "--seed", "21"]),
    ("siglip-tiny-f16", ["--family", "siglip", "--dtype", "F16", "--seed", "22",
                         "--tokenizer-from", "siglip-tiny"]),
    ("siglip-tiny-bf16", ["--family", "siglip", "--dtype", "BF16", "--seed", "23",
                          "--tokenizer-from", "siglip-tiny"]),
    ("siglip-base2l", ["--family", "siglip", "--preset", "base2l", "--seed", "24",
                       "--tokenizer-from", "siglip-tiny"]),
    ("siglip2-tiny", ["--family", "siglip2", "--seed", "25"]),
    ("siglip2-tiny-f16", ["--family", "siglip2", "--dtype", "F16", "--seed", "26",
                          "--tokenizer-from", "siglip2-tiny"]),
    ("siglip2-tiny-bf16", ["--family", "siglip2", "--dtype", "BF16", "--seed", "27",
                           "--tokenizer-from", "siglip2-tiny"]),
    ("siglip2-base2l", ["--family", "siglip2", "--preset", "base2l", "--dtype", "BF16",
                        "--seed", "28", "--tokenizer-from", "siglip2-tiny"]),
    # odd sizes, patch 14 over 76 pixels (5 patches a side, 6 pixels unseen,
    # as SO400M/14 at 384), layer-norm eps 1e-2 (a 100x wrong eps shows)
    ("siglip2-odd", ["--family", "siglip2", "--preset", "odd", "--ln-eps", "1e-2", "--seed", "29",
                     "--tokenizer-from", "siglip2-tiny"]),
]


def make_siglip(out, only):
    h = hashlib.sha256()
    for f in ("gen_siglip.py", "gen_model.py"):
        with open(os.path.join(HERE, f), "rb") as fh:
            h.update(fh.read())
    stamp_val = h.hexdigest()
    for name, args in SIGLIP_MODELS:
        if only and name not in only:
            continue
        d = os.path.join(out, "models", name)
        stamp = os.path.join(d, ".stamp")
        if os.path.exists(stamp) and open(stamp).read() == stamp_val:
            continue
        print("testdata: generating model %s" % name, file=sys.stderr)
        args = [os.path.join(out, "models", a) if i and args[i - 1] == "--tokenizer-from" else a
                for i, a in enumerate(args)]
        subprocess.check_call([sys.executable, os.path.join(HERE, "gen_siglip.py"), d] + args)
        with open(stamp, "w") as f:
            f.write(stamp_val)


# ---- OpenCLIP (tests/tools/gen_openclip.py; 14-openclip.t): the published
# layout, tiny and real-width (ViT-B-32 widths, 2 layers), gelu and
# quick_gelu, F32/F16/BF16, both weight files, the three resize modes,
# custom_text.  Stamped with gen_openclip.py's hash too.
OPENCLIP_MODELS = {
    "oc-tiny": [],
    "oc-tiny-qg": ["--quick-gelu", "--seed", "2"],
    "oc-tiny-f16": ["--dtype", "F16", "--seed", "3"],
    "oc-tiny-bf16": ["--dtype", "BF16", "--seed", "4"],
    "oc-tiny-bin": ["--format", "bin", "--quick-gelu", "--seed", "5"],
    "oc-tiny-bin-bf16": ["--format", "bin", "--dtype", "BF16", "--seed", "6"],
    "oc-tiny-longest": ["--resize-mode", "longest", "--seed", "7",
                        "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"],
    "oc-tiny-squash": ["--resize-mode", "squash", "--seed", "8",
                       "--vision-cfg", "image_size=[96, 96]", "--vision-cfg", "patch_size=16"],
    "oc-tiny-custom": ["--custom-text", "--seed", "9", "--text-cfg", "context_length=40",
                       "--vision-cfg", "mlp_ratio=2.5"],
    "oc-b32": ["--preset", "b32-2l", "--seed", "10"],
    "oc-b32-bin": ["--preset", "b32-2l", "--format", "bin", "--quick-gelu", "--seed", "11"],
}


def smooth_image(w, h, seed):
    """A photo-like image: smooth gradients plus some texture and edges, so
    resampling and chroma subsampling matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 6, 2).tolist() + [rng.uniform(0, 6)]
        img[..., c] = 128 + 90 * np.sin(x / max(w, 1) * fx * 6.28 + ph) * np.cos(y / max(h, 1) * fy * 6.28)
    img += rng.normal(0, 12, img.shape)
    img[h // 3: h // 2, w // 4: w // 2] = rng.uniform(0, 255, 3)  # a sharp-edged block
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images(out):
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    a = smooth_image(640, 480, 1)
    Image.fromarray(a).save(os.path.join(out, "photo420.jpg"), quality=90, subsampling=2)
    Image.fromarray(a).save(os.path.join(out, "photo444.jpg"), quality=95, subsampling=0)
    Image.fromarray(smooth_image(500, 375, 2)).save(os.path.join(out, "progressive.jpg"),
                                                    quality=85, progressive=True)
    Image.fromarray(smooth_image(301, 201, 3)).save(os.path.join(out, "odd301x201.png"))
    Image.fromarray(smooth_image(225, 224, 4)).save(os.path.join(out, "odd225x224.png"))
    Image.fromarray(smooth_image(1000, 333, 5)).save(os.path.join(out, "wide1000x333.jpg"), quality=92)
    Image.fromarray(smooth_image(3, 3, 6)).save(os.path.join(out, "tiny3x3.png"))
    Image.fromarray(smooth_image(200, 260, 7)).convert("L").save(os.path.join(out, "gray.png"))
    Image.fromarray(smooth_image(260, 200, 8)).convert("P", palette=Image.ADAPTIVE, colors=64).save(
        os.path.join(out, "palette.png"))
    rgba = np.dstack([smooth_image(240, 240, 9), smooth_image(240, 240, 10)[..., 0]])
    Image.fromarray(rgba, "RGBA").save(os.path.join(out, "rgba.png"))
    Image.fromarray(smooth_image(300, 300, 11)).convert("L").save(os.path.join(out, "gray.jpg"), quality=90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", help="comma-separated model names")
    a = ap.parse_args()
    h = hashlib.sha256()
    for f in ("gen_model.py", "make_testdata.py"):
        with open(os.path.join(HERE, f), "rb") as fh:
            h.update(fh.read())
    stamp_val = h.hexdigest()
    names = a.only.split(",") if a.only else list(MODELS)
    make_siglip(a.out, names if a.only else None)
    for name in names:
        if name not in MODELS:
            continue
        d = os.path.join(a.out, "models", name)
        stamp = os.path.join(d, ".stamp")
        if os.path.exists(stamp) and open(stamp).read() == stamp_val:
            continue
        print("testdata: generating model %s" % name, file=sys.stderr)
        subprocess.check_call([sys.executable, os.path.join(HERE, "gen_model.py"), d] + MODELS[name])
        with open(stamp, "w") as f:
            f.write(stamp_val)
    # OpenCLIP models
    h2 = hashlib.sha256(stamp_val.encode())
    with open(os.path.join(HERE, "gen_openclip.py"), "rb") as fh:
        h2.update(fh.read())
    oc_stamp = h2.hexdigest()
    for name in (a.only.split(",") if a.only else list(OPENCLIP_MODELS)):
        if name not in OPENCLIP_MODELS:
            continue
        d = os.path.join(a.out, "models", name)
        stamp = os.path.join(d, ".stamp")
        if os.path.exists(stamp) and open(stamp).read() == oc_stamp:
            continue
        print("testdata: generating model %s" % name, file=sys.stderr)
        subprocess.check_call([sys.executable, os.path.join(HERE, "gen_openclip.py"), d] +
                              OPENCLIP_MODELS[name])
        with open(stamp, "w") as f:
            f.write(oc_stamp)
    istamp = os.path.join(a.out, "images", ".stamp")
    if not (os.path.exists(istamp) and open(istamp).read() == stamp_val):
        make_images(os.path.join(a.out, "images"))
        with open(istamp, "w") as f:
            f.write(stamp_val)


if __name__ == "__main__":
    main()
