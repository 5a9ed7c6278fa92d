#!/usr/bin/python3
"""14-openclip.t - OpenCLIP checkpoints against the independent reference.

tests/ref/openclip_ref.py is written from open_clip's sources (model.py,
transformer.py, tokenizer.py, transform.py), with its own tokenizer on
open_clip's gzipped vocabulary, torch's multi-head attention over the fused
in_proj_weight, and Pillow for the image steps.  Here:

  - token ids: model_tokens (the C tokenizer opened for OpenCLIP) against
    the reference's SimpleTokenizer, on texts in many scripts, upper case,
    longer than the context, with literal <|endoftext|> (ordinary text
    for open_clip) and <start_of_text> / <end_of_text> (special);
  - the preprocessed tensor: model_input_dump (cdx_model_image_input, the
    path indexing takes) against the reference's open_clip eval
    transform, element for element (<= 1e-6), on corpus images in every
    Pillow mode the decoders report (P, 1, L, LA, RGB, RGBA from PNG,
    GIF, WebP, TIFF, JPEG), for resize modes shortest, longest, squash;
  - embeddings: `clipdex embed` against the reference, cosine >= 0.99999
    and max abs difference <= 2e-4 per L2-normalised embedding (1e-5 on
    the tiny models), for every variant: tiny and real-width (ViT-B-32
    widths, 2 layers), gelu and quick_gelu, F32/F16/BF16 safetensors,
    open_clip_pytorch_model.bin (F32, BF16), custom_text, the three resize
    modes;
  - the format choice: a directory with both layouts is OpenCLIP, its
    config.json given as --model is CLIP;
  - hostile and unsupported files: one line naming the file (and key);
  - `clipdex model` shows the family's preprocessing and tokenizer;
  - precision: bf16 and int8 run the same blocks (cosine to f32 >= 0.999, 0.99).
Prints TAP.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import openclip_ref as R  # noqa: E402

BUILD = os.environ.get("CLIPDEX_BUILD", "build")
CLIPDEX = os.path.join(ROOT, BUILD, "bin", "clipdex")
DUMP = os.path.join(ROOT, BUILD, "tests", "tools", "model_input_dump")
TOKENS = os.path.join(ROOT, BUILD, "tests", "tools", "model_tokens")
MODELS = os.path.join(ROOT, "build", "testdata", "models")
IMAGES = os.path.join(ROOT, "build", "testdata", "images")
CORPUS = os.path.normpath(os.path.join(ROOT, "..", "shared", "corpus"))

TEXTS = [
    "a photo of a dog",
    "A PHOTO OF A DOG ON THE BEACH",
    "日本の猫と富士山の写真",          # CJK
    "قطة سوداء على الأريكة",            # Arabic
    "собака бежит по снегу",           # Cyrillic
    "नदी के किनारे एक हाथी",             # Devanagari
    "한국어 문장 그리고 中文句子",
    "café crème brûlée — naïve Ελληνικά 🐶🎉",
    "a cat <|endoftext|> and a dog",   # ordinary text for open_clip
    "a cat <end_of_text> and <start_of_text> a dog",  # open_clip's specials
    "I'm sure they'll say it's 42 degrees &amp; sunny",
    "Sunset over water, with boats and a pier... and some more words to make this longer: " * 4,
    " ".join(["Wort%d" % i for i in range(90)]),  # far over 77 tokens: truncated
]

# Corpus images, one or more per Pillow mode the decoders report.
CORPUS_IMAGES = [
    "png/pngsuite/basn3p08.png", "png/pngsuite/basn3p01.png", "png/pngsuite/tbbn3p08.png",  # P
    "png/pngsuite/basn0g01.png",   # 1
    "png/pngsuite/basn0g08.png",   # L
    "png/pngsuite/basn4a08.png",   # LA
    "png/pngsuite/basn6a08.png", "png/pngsuite/basi6a08.png",  # RGBA
    "png/pngsuite/basn2c08.png",   # RGB
    "png/pngsuite/s09n3p02.png",   # odd size, palette
    "formats/webp/libwebp-test-data/lossy_alpha1.webp",   # WebP RGBA
    "formats/webp/pillow/transparent.webp",
    "formats/tiff/libtiff/palette-1c-8b.tiff",           # TIFF P
    "formats/tiff/gdk-pixbuf/dpi.tiff",                   # TIFF RGBA
]
GEN_IMAGES = ["photo420.jpg", "progressive.jpg", "gray.png", "palette.png", "rgba.png",
              "odd301x201.png", "odd225x224.png", "wide1000x333.jpg", "tiny3x3.png"]

n = failed = 0
warnings.filterwarnings("ignore")  # Pillow's palette-transparency notes


class quiet_stderr:
    """libtiff inside Pillow prints notes about odd tags on fd 2."""

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *a):
        os.dup2(self.saved, 2)
        os.close(self.saved)


def ok(cond, msg):
    global n, failed
    n += 1
    failed += not cond
    print("%sok %d - %s" % ("" if cond else "not ", n, msg), flush=True)
    return cond


def corpus_images():
    return [os.path.join(CORPUS, p) for p in CORPUS_IMAGES if os.path.exists(os.path.join(CORPUS, p))]


def gen_images():
    return [os.path.join(IMAGES, p) for p in GEN_IMAGES]


def embed(model, texts, images, extra=()):
    args = [CLIPDEX, "embed", "--model", model, "--format", "json", "--preprocess", "exact"] + list(extra)
    for t in texts:
        args += ["--text", t]
    for i in images:
        args += ["--image", i]
    p = subprocess.run(args, capture_output=True)
    if p.returncode != 0:
        print("# clipdex failed (%d): %s" % (p.returncode, p.stderr.decode(errors="replace").strip()))
        return None
    return [np.array(json.loads(l)["embedding"], dtype=np.float64) for l in p.stdout.decode().splitlines()]


def close(g, w, tol):
    w = np.asarray(w, dtype=np.float64)
    cos = float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w)))
    mad = float(np.abs(g - w).max())
    return cos >= 0.99999 and mad <= tol, cos, mad


# ---------------------------------------------------------------- tokens

def test_tokens():
    ref = R.SimpleTokenizer()
    p = subprocess.run([TOKENS, os.path.join(MODELS, "oc-tiny")] + TEXTS, capture_output=True)
    if not ok(p.returncode == 0, "model_tokens runs"):
        print("# %s" % p.stderr.decode(errors="replace"))
        return
    got = [json.loads(l) for l in p.stdout.decode().splitlines()]
    for t, g in zip(TEXTS, got):
        want = ref(t, 77)
        if not ok(g == want, "tokens: %.40r" % t):
            print("# got  %s\n# want %s" % (g, want))
    # the specials: <|endoftext|> is text, <end_of_text> is 49407
    ok(49407 not in got[8][1:-1] and got[9].count(49407) == 2 and 49406 in got[9][1:],
       "open_clip's special tokens, not CLIP's")
    ok(len(got[-1]) == 77 and got[-1][-1] == 49407, "truncated to 77 with the end token last")
    # `clipdex tokenize` opens the same tokenizer for an OpenCLIP directory
    p = subprocess.run([CLIPDEX, "tokenize", "--model", os.path.join(MODELS, "oc-tiny"), TEXTS[8]],
                       capture_output=True)
    ok(p.returncode == 0 and json.loads(p.stdout.decode())["ids"] == ref(TEXTS[8], 77),
       "clipdex tokenize: open_clip's tokenizer for an OpenCLIP directory")
    # custom context length (oc-tiny-custom: 40)
    p = subprocess.run([TOKENS, os.path.join(MODELS, "oc-tiny-custom"), TEXTS[-1]], capture_output=True)
    g = json.loads(p.stdout.decode())
    ok(g == ref(TEXTS[-1], 40), "truncated at context_length 40")


# ---------------------------------------------------------------- pixels

def all_corpus_images():
    out = []
    for sub in ("png/pngsuite", "formats/gif", "formats/webp/libwebp-test-data", "formats/tiff/libtiff",
                "formats/webp/pillow"):
        d = os.path.join(CORPUS, sub)
        if not os.path.isdir(d):
            continue
        for root, _, files in os.walk(d):
            for f in sorted(files):
                p = os.path.join(root, f)
                # 16-bit grey (Pillow mode I, clipped to 255 by open_clip's
                # convert) and the PngSuite x* files (corrupt) are excluded:
                # see man/clipdex.1, OpenCLIP, for the 16-bit grey deviation
                if f.startswith("x") or "g16" in f or f.endswith((".txt", ".md")):
                    continue
                out.append(p)
    return out


def ref_pixels(path, cfg, s):
    """(Pillow mode, the reference tensor), or None where there is nothing
    to compare with."""
    from PIL import Image
    try:
        im = Image.open(path)
        if im.mode in ("I", "I;16", "I;16B", "F", "CMYK"):
            return None  # the documented deviations (16-bit grey, CMYK)
        w, h = im.size
        if max(w, h) > 12 * min(w, h) or w * h > 4e6:
            return None  # Pillow would resize it to gigabytes (clipdex computes the crop only)
        return im.mode, R.preprocess(path, cfg.get("preprocess_cfg", {}), s).numpy()
    except Exception:
        return None  # Pillow cannot read it


def test_pixels(model, images, label):
    tmp = tempfile.mkdtemp(prefix="cdx-oc-px-")
    try:
        cfg = json.load(open(os.path.join(model, "open_clip_config.json")))
        s = cfg["model_cfg"]["vision_cfg"]["image_size"]
        s = s[0] if isinstance(s, list) else s
        out = os.path.join(tmp, "px.bin")
        p = subprocess.run([DUMP, model, out] + images, capture_output=True)
        if not ok(p.returncode == 0, "%s: model_input_dump runs" % label):
            print("# %s" % p.stderr.decode(errors="replace"))
            return
        data = np.memmap(out, dtype=np.float32, mode="r").reshape(-1, 3, s, s) if os.path.getsize(out) else []
        k = bad = compared = 0
        modes = set()
        for line in p.stdout.decode().splitlines():
            st, path = line.split(" ", 1)
            if st != "ok":
                continue
            c = data[k]
            k += 1
            with quiet_stderr():
                got = ref_pixels(path, cfg, s)
            if got is None:
                continue
            mode, r = got
            compared += 1
            modes.add(mode)
            d = float(np.abs(c - r).max())
            if d > 1e-6:
                bad += 1
                if bad <= 5:
                    print("# %s: %s (mode %s) differs by %.3g" % (label, path, mode, d))
        ok(bad == 0 and compared >= min(20, len(images) // 2),
           "%s: %d images (modes %s) preprocess exactly as open_clip (%d differ)"
           % (label, compared, ",".join(sorted(modes)), bad))
    finally:
        shutil.rmtree(tmp)


# ---------------------------------------------------------------- embeddings

def test_embeddings(name, tol, images):
    model = os.path.join(MODELS, name)
    ref = R.OpenCLIPRef(model)
    got = embed(model, TEXTS, images, ("--precision", "f32"))
    if not ok(got is not None and len(got) == len(TEXTS) + len(images), "%s: clipdex embed runs" % name):
        return
    worst_cos, worst_mad, bad = 1.0, 0.0, []
    for i, t in enumerate(TEXTS):
        good, cos, mad = close(got[i], ref.embed_text(t).numpy(), tol)
        worst_cos, worst_mad = min(worst_cos, cos), max(worst_mad, mad)
        if not good:
            bad.append("text %.30r cos %.7f mad %.2g" % (t, cos, mad))
    for j, im in enumerate(images):
        good, cos, mad = close(got[len(TEXTS) + j], ref.embed_image(im).numpy(), tol)
        worst_cos, worst_mad = min(worst_cos, cos), max(worst_mad, mad)
        if not good:
            bad.append("image %s cos %.7f mad %.2g" % (os.path.basename(im), cos, mad))
    ok(not bad, "%s: %d texts, %d images agree with the reference (worst cosine %.8f, max abs %.2g)"
       % (name, len(TEXTS), len(images), worst_cos, worst_mad))
    for b in bad[:6]:
        print("# " + b)


# ---------------------------------------------------------------- formats

def link_dir(dst, *srcs):
    os.makedirs(dst)
    for s in srcs:
        for f in os.listdir(s):
            if not f.startswith(".") and not os.path.exists(os.path.join(dst, f)):
                os.symlink(os.path.join(s, f), os.path.join(dst, f))


def model_lines(arg):
    p = subprocess.run([CLIPDEX, "model", "--model", arg, "--precision", "f32"], capture_output=True)
    return p.returncode, p.stdout.decode(), p.stderr.decode(errors="replace")


def test_format_choice(tmp):
    both = os.path.join(tmp, "both")
    link_dir(both, os.path.join(MODELS, "oc-tiny"), os.path.join(MODELS, "tiny"))
    rc, out, err = model_lines(both)
    ok(rc == 0 and "open_clip_model.safetensors" in out and "preprocess order (open_clip)" in out,
       "a directory with both layouts opens as OpenCLIP")
    rc, out, err = model_lines(os.path.join(both, "config.json"))
    ok(rc == 0 and "/model.safetensors" in out and "open_clip" not in out,
       "DIR/config.json picks the transformers layout")
    rc, out, err = model_lines(os.path.join(both, "open_clip_config.json"))
    ok(rc == 0 and "open_clip_model.safetensors" in out, "DIR/open_clip_config.json picks OpenCLIP")
    # the embeddings follow the choice
    g1 = embed(both, ["a dog"], [])
    g2 = embed(os.path.join(both, "config.json"), ["a dog"], [])
    w1 = R.OpenCLIPRef(os.path.join(MODELS, "oc-tiny")).embed_text("a dog").numpy()
    ok(g1 is not None and close(g1[0], w1, 1e-5)[0], "both layouts: embeds with the open_clip weights")
    ok(g2 is not None and g2[0].shape[0] == 32 and not close(g2[0], w1, 1e-2)[0],
       "config.json given: embeds with the transformers weights")


def test_model_output():
    rc, out, err = model_lines(os.path.join(MODELS, "oc-tiny-longest"))
    ok(rc == 0 and "resize longest" in out and "mean [0.5, 0.5, 0.5]" in out and "fill 0" in out
       and "<start_of_text>" in out and "open_clip_model.safetensors (F32)" in out,
       "clipdex model shows OpenCLIP's preprocessing, tokenizer and weights")
    rc, out, err = model_lines(os.path.join(MODELS, "oc-tiny-bin-bf16"))
    ok(rc == 0 and "open_clip_pytorch_model.bin (BF16)" in out, "clipdex model: the .bin weights")


# ---------------------------------------------------------------- hostile

def expect_error(name, d, *needles):
    p = subprocess.run([CLIPDEX, "embed", "--model", d, "--text", "a dog", "--image",
                        os.path.join(IMAGES, "photo420.jpg")], capture_output=True)
    err = p.stderr.decode(errors="replace")
    lines = [l for l in err.splitlines() if l.strip()]
    good = p.returncode == 3 and len(lines) == 1 and all(x in err for x in needles) and not p.stdout
    ok(good, "%s: exit %d, one line naming %s" % (name, p.returncode, ", ".join(needles)))
    if not good:
        print("# stderr: %r" % err[:400])


def copy_model(src, tmp, name):
    d = os.path.join(tmp, name)
    shutil.copytree(os.path.join(MODELS, src), d)
    return d


def edit_config(d, fn):
    p = os.path.join(d, "open_clip_config.json")
    cfg = json.load(open(p))
    fn(cfg)
    json.dump(cfg, open(p, "w"))


def test_hostile(tmp):
    cfgf = "open_clip_config.json"
    d = copy_model("oc-tiny", tmp, "not-json")
    open(os.path.join(d, cfgf), "w").write("{not json")
    expect_error("config not JSON", d, cfgf)

    d = copy_model("oc-tiny", tmp, "no-weights")
    os.remove(os.path.join(d, "open_clip_model.safetensors"))
    expect_error("no weights", d, "open_clip_model.safetensors", "open_clip_pytorch_model.bin")

    d = copy_model("oc-tiny", tmp, "no-model-cfg")
    edit_config(d, lambda c: c.pop("model_cfg"))
    expect_error("no model_cfg", d, cfgf, "model_cfg")

    unsupported = [
        ("timm tower", lambda c: c["model_cfg"]["vision_cfg"].update(timm_model_name="convnext_base"),
         "timm_model_name", "unsupported tower"),
        ("ModifiedResNet", lambda c: c["model_cfg"]["vision_cfg"].update(layers=[3, 4, 6, 3]),
         "layers", "unsupported tower"),
        ("layer scale", lambda c: c["model_cfg"]["vision_cfg"].update(ls_init_value=1e-5),
         "ls_init_value", "unsupported"),
        ("attentional pool", lambda c: c["model_cfg"]["vision_cfg"].update(attentional_pool=True),
         "attentional_pool", "unsupported"),
        ("no_ln_pre", lambda c: c["model_cfg"]["vision_cfg"].update(no_ln_pre=True), "no_ln_pre", "unsupported"),
        ("avg pooling", lambda c: c["model_cfg"]["vision_cfg"].update(pool_type="avg"), "pool_type", "unsupported"),
        ("HF tokenizer", lambda c: c["model_cfg"]["text_cfg"].update(hf_tokenizer_name="xlm-roberta-base"),
         "hf_tokenizer_name", "unsupported"),
        ("HF text tower", lambda c: c["model_cfg"]["text_cfg"].update(hf_model_name="roberta-base"),
         "hf_model_name", "unsupported"),
        ("text proj bias", lambda c: c["model_cfg"]["text_cfg"].update(proj_bias=True), "proj_bias", "unsupported"),
        ("eos pooling", lambda c: c["model_cfg"]["text_cfg"].update(pool_type="eos"), "pool_type", "unsupported"),
        ("non-square", lambda c: c["model_cfg"]["vision_cfg"].update(image_size=[224, 256]),
         "image_size", "unsupported"),
        ("logit bias", lambda c: c["model_cfg"].update(init_logit_bias=-10), "init_logit_bias", "unsupported"),
        ("CoCa", lambda c: c["model_cfg"].update(multimodal_cfg={"width": 512}), "multimodal_cfg", "unsupported"),
        ("bilinear", lambda c: c["preprocess_cfg"].update(interpolation="bilinear"), "interpolation", "unsupported"),
        ("resize mode", lambda c: c["preprocess_cfg"].update(resize_mode="crop"), "resize_mode", "unsupported"),
    ]
    for i, (name, fn, key, word) in enumerate(unsupported):
        d = copy_model("oc-tiny", tmp, "unsup%d" % i)
        edit_config(d, fn)
        expect_error("unsupported: " + name, d, cfgf, key, word)

    d = copy_model("oc-tiny", tmp, "wrong-width")
    edit_config(d, lambda c: c["model_cfg"]["text_cfg"].update(width=128))
    expect_error("config/weights shape mismatch", d, "open_clip_model.safetensors", "token_embedding.weight")

    d = copy_model("oc-tiny", tmp, "wrong-heads")
    edit_config(d, lambda c: c["model_cfg"]["vision_cfg"].update(head_width=128))
    expect_error("width not split by head_width", d, cfgf, "head_width")

    d = copy_model("oc-tiny", tmp, "truncated")
    p = os.path.join(d, "open_clip_model.safetensors")
    os.truncate(p, os.path.getsize(p) // 2)
    expect_error("truncated safetensors", d, "open_clip_model.safetensors")

    d = copy_model("oc-tiny-bin", tmp, "evil-pickle")
    marker = os.path.join(tmp, "pwned")
    evil = (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len("touch " + marker)) +
            ("touch " + marker).encode() + b"\x85R.")
    with zipfile.ZipFile(os.path.join(d, "open_clip_pytorch_model.bin"), "w") as z:
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/version", "3\n")
    expect_error("pickle calling os.system", d, "open_clip_pytorch_model.bin", "os")
    ok(not os.path.exists(marker), "the malicious pickle executed nothing")

    # the vocabulary clipdex carries: a corrupt copy named by CLIPDEX_CLIP_VOCAB
    vd = os.path.join(tmp, "data", "clip")
    os.makedirs(vd)
    open(os.path.join(vd, "vocab.json"), "w").write("{broken")
    shutil.copy(os.path.join(ROOT, "data", "clip", "merges.txt"), vd)
    p = subprocess.run([CLIPDEX, "embed", "--model", os.path.join(MODELS, "oc-tiny"), "--text", "a dog"],
                       capture_output=True, env=dict(os.environ, CLIPDEX_CLIP_VOCAB=vd))
    err = p.stderr.decode(errors="replace").strip()
    ok(p.returncode == 3 and "\n" not in err and "vocab.json" in err, "a corrupt vocabulary: one line naming it")


# ---------------------------------------------------------------- precision

def test_precision():
    model = os.path.join(MODELS, "oc-b32")
    imgs = gen_images()[:4]
    base = embed(model, TEXTS[:5], imgs, ("--precision", "f32"))
    for prec in ("bf16", "int8"):
        got = embed(model, TEXTS[:5], imgs, ("--precision", prec))
        if got is None or base is None:
            ok(False, "%s: runs" % prec)
            continue
        worst = min(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in zip(got, base))
        bar = 0.999 if prec == "bf16" else 0.99  # 12-precision.t's bars
        ok(worst >= bar, "OpenCLIP at %s: cosine to f32 >= %g (worst %.5f)" % (prec, bar, worst))


def main():
    test_tokens()
    pix = all_corpus_images()
    test_pixels(os.path.join(MODELS, "oc-tiny"), pix + gen_images(), "shortest")
    test_pixels(os.path.join(MODELS, "oc-tiny-longest"), pix[::3] + gen_images(), "longest")
    test_pixels(os.path.join(MODELS, "oc-tiny-squash"), pix[1::3] + gen_images(), "squash")
    imgs = gen_images() + corpus_images()
    for name in ("oc-tiny", "oc-tiny-qg", "oc-tiny-f16", "oc-tiny-bf16", "oc-tiny-bin",
                 "oc-tiny-bin-bf16", "oc-tiny-longest", "oc-tiny-squash", "oc-tiny-custom"):
        test_embeddings(name, 1e-5, imgs)
    for name in ("oc-b32", "oc-b32-bin"):
        test_embeddings(name, 2e-4, imgs[:8])
    tmp = tempfile.mkdtemp(prefix="cdx-openclip-")
    try:
        test_format_choice(tmp)
        test_model_output()
        test_hostile(tmp)
    finally:
        shutil.rmtree(tmp)
    test_precision()
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
