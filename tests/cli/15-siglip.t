#!/usr/bin/python3
"""15-siglip.t - SigLIP and SigLIP 2 (fixed resolution) against the
independent reference (tests/ref/siglip_ref.py: PyTorch from transformers'
sources as read, python3-sentencepiece as the tokenizer oracle, Pillow).

- embeddings: every generated variant (tiny and ViT-B/16-wide 2-layer;
  F32 / F16 / BF16 weights; SigLIP's sparse config.json that relies on the
  SiglipTextConfig / SiglipVisionConfig defaults), `clipdex embed
  --precision f32` vs the reference (and odd sizes: patch 14, head width
  18, mlp 269, 3 and 1 layers, layer-norm eps 1e-2): cosine >= 0.99999 and max abs
  difference <= 2e-4 per normalised embedding, for texts in CJK, Arabic,
  Cyrillic, Devanagari, Greek, upper case, punctuation, literal special
  tokens and texts over the 64-token context; images from the shared
  corpus (palette, RGBA, grey, 16-bit colour, JPEG) and the generated ones
  (odd sizes: resized to the square without a crop, bicubic for SigLIP,
  bilinear for SigLIP 2).
- tokenizer: `clipdex tokenize` ids = the reference processor's input_ids
  (padded to 64), many edge cases.
- moderate: the stored vectors scored with sigmoid(exp(logit_scale) * cos
  + logit_bias) per label, computed here from the reference.
- clipdex model: family, tokenizer, scoring, preprocessing.
- hostile directories: one clear line naming the file, no crash.
- precision: bf16 and int8 agree with f32 (smoke).
Prints TAP.
"""
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
import query_fixture as qf  # noqa: E402
import siglip_ref  # noqa: E402

T = qf.Tap()
CLIPDEX = qf.CLIPDEX
MODELS = os.path.join(ROOT, "build", "testdata", "models")
IMAGES = os.path.join(ROOT, "build", "testdata", "images")
CORPUS = os.path.join(qf.SHARED, "corpus")
COS, ABS = 0.99999, 2e-4

TEXTS = [
    "a photo of a dog",
    "A PHOTO OF A CAT ON A RED SOFA",
    "海辺で夕日を見ている犬の写真",
    "一只猫睡在红色的沙发上",
    "صورة كلب على الشاطئ عند غروب الشمس",
    "фотография собаки на пляже на закате",
    "सूर्यास्त के समय समुद्र तट पर एक कुत्ता",
    "ΟΔΟΣ στην παραλία, İstanbul",
    "Hello, World!!! (punctuation) -- and   extra\twhitespace  ",
    "a dog </s> and <unk> a cat",
    " ".join("word%d" % i for i in range(80)),  # far over 64 tokens
    "",
]
IMGS = [os.path.join(CORPUS, "png", "pngsuite", f) for f in
        ("basn3p08.png", "basn6a08.png", "basn0g08.png", "basn2c16.png", "basi4a08.png")]
IMGS += [os.path.join(CORPUS, "jpeg", "pillow", "hopper.jpg")]
IMGS += [os.path.join(IMAGES, f) for f in ("photo420.jpg", "odd301x201.png", "wide1000x333.jpg", "tiny3x3.png")]


def run(*args, env=None):
    return qf.sanitizer_check(subprocess.run([CLIPDEX] + list(args), capture_output=True, env=env or qf.clean_env()),
                              " ".join(args))


def embed(model, texts, images, extra=("--precision", "f32")):
    args = ["embed", "--model", model, "--format", "json", "--preprocess", "exact"] + list(extra)
    for t in texts:
        args += ["--text", t]
    for i in images:
        args += ["--image", i]
    p = run(*args)
    if p.returncode != 0:
        T.diag("clipdex embed failed: %s" % p.stderr.decode(errors="replace").strip())
        return None
    return [np.array(json.loads(l)["embedding"], dtype=np.float64) for l in p.stdout.decode().splitlines()]


def agree(got, want):
    want = np.asarray(want, dtype=np.float64)
    cos = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
    return cos, float(np.abs(got - want).max())


# ---------------------------------------------------------------- embeddings
VARIANTS = [("siglip-tiny", TEXTS, IMGS), ("siglip-tiny-f16", TEXTS[:6], IMGS[:4]),
            ("siglip-tiny-bf16", TEXTS[:6], IMGS[:4]), ("siglip-base2l", TEXTS[1:4] + TEXTS[10:11], IMGS[:2]),
            ("siglip2-tiny", TEXTS, IMGS), ("siglip2-tiny-f16", TEXTS[:6], IMGS[:4]),
            ("siglip2-tiny-bf16", TEXTS[:6], IMGS[:4]), ("siglip2-base2l", TEXTS[1:4] + TEXTS[10:11], IMGS[2:4]),
            ("siglip2-odd", TEXTS[:3] + TEXTS[10:11], IMGS[:4])]
for name, texts, images in VARIANTS:
    d = os.path.join(MODELS, name)
    ref = siglip_ref.SiglipRef(d)
    got = embed(d, texts, images)
    if got is None or len(got) != len(texts) + len(images):
        T.ok(False, "%s: clipdex embed gives every embedding" % name)
        continue
    worst_c, worst_a, worst_in = 1.0, 0.0, ""
    for g, src in zip(got, [("t", t) for t in texts] + [("i", i) for i in images]):
        w = ref.embed_text(src[1]) if src[0] == "t" else ref.embed_image(src[1])
        c, a = agree(g, w.numpy())
        if c < worst_c or a > worst_a:
            worst_in = src[1][:30]
        worst_c, worst_a = min(worst_c, c), max(worst_a, a)
    T.ok(worst_c >= COS and worst_a <= ABS,
         "%s (%s): %d texts, %d images vs the reference: worst cosine %.8f, max abs %.1e (%r)"
         % (name, ref.family, len(texts), len(images), worst_c, worst_a, worst_in))

# ---------------------------------------------------------------- resize
# Pillow's BILINEAR (and BICUBIC), bit for bit: the tensor of a fixed-size
# resize without a crop equals Pillow's, value for value (one pixel off by
# one would be 2/255 off here).
DUMP = os.path.join(ROOT, qf.BUILD, "tests", "preprocess_dump")
from PIL import Image  # noqa: E402
worst = {}
for rs in (2, 3):
    for (w, h) in ((64, 64), (224, 224), (300, 97), (5, 700)):
        cfg = os.path.join(tempfile.gettempdir(), "cdx-15-pre-%d.json" % os.getpid())
        with open(cfg, "w") as f:
            json.dump({"do_resize": True, "do_center_crop": False, "size": {"height": h, "width": w},
                       "resample": rs, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}, f)
        for img in IMGS:
            out = cfg + ".bin"
            p = subprocess.run([DUMP, "-c", cfg, "-t", out, img], capture_output=True)
            if p.returncode != 0:
                worst[(rs, w, h, img)] = 9
                continue
            got = np.fromfile(out, dtype=np.float32).reshape(3, h, w)
            im = Image.open(img).convert("RGB")
            if im.size != (w, h):
                im = im.resize((w, h), resample=Image.BILINEAR if rs == 2 else Image.BICUBIC)
            want = ((np.asarray(im).astype(np.float64) / 255).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
            worst[(rs, w, h, os.path.basename(img))] = float(np.abs(got - want.transpose(2, 0, 1)).max())
            os.remove(out)
        os.remove(cfg)
for rs, name in ((2, "BILINEAR"), (3, "BICUBIC")):
    bad = {k: v for k, v in worst.items() if k[0] == rs and v > 1e-6}
    T.ok(not bad and len([k for k in worst if k[0] == rs]) == 4 * len(IMGS),
         "resize to a fixed size without a crop = Pillow's %s, value for value (%d images x 4 sizes, up "
         "and down)%s" % (name, len(IMGS), " differ: %r" % list(bad.items())[:3] if bad else ""))

# ---------------------------------------------------------------- tokenizer
TOK_TEXTS = TEXTS + ["</s>", "</s> starts", "ends </s>", "<unk>", "\u2581word \u2581", "...!!!", "   ",
                     "MiXeD CaSe ÀÉÎ ß", "tab\tnew\nline", "12345 67.89", "🐶🎉 emoji", "x" * 300,
                     "don't stop-believing", "<pad> <eos> <bos>", "a<eos>b <EOS> <mask><mask>x",
                     "<eos>", "<bo<eos>s>"]
for name in ("siglip-tiny", "siglip2-tiny"):
    d = os.path.join(MODELS, name)
    ref = siglip_ref.SiglipRef(d)
    p = run("tokenize", "--model", d, *TOK_TEXTS)
    rows = [json.loads(l) for l in p.stdout.decode().splitlines()]
    bad = [t for t, r in zip(TOK_TEXTS, rows) if r["ids"] != ref.tok(t)]
    T.ok(p.returncode == 0 and len(rows) == len(TOK_TEXTS) and not bad,
         "%s: tokenize = the reference processor's input_ids for %d texts%s"
         % (name, len(TOK_TEXTS), " (differ: %r)" % bad[:3] if bad else ""))
    T.ok(all(len(r["ids"]) == 64 for r in rows), "%s: ids padded to the context, 64" % name)

# SigLIP 2's published tokenizer_config.json: eos last, no bos, <pad> = 0.
ids = json.loads(run("tokenize", "--model", os.path.join(MODELS, "siglip2-tiny"), "hi").stdout)["ids"]
T.ok(ids[ids.index(1) + 1:] == [0] * (63 - ids.index(1)) and 2 not in ids,
     "siglip2: <eos> (1) after the text, <pad> (0) after it, no <bos> (2)")
ids = json.loads(run("tokenize", "--model", os.path.join(MODELS, "siglip-tiny"), "hi").stdout)["ids"]
T.ok(ids.count(1) == 64 - ids.index(1), "siglip: </s> (1) after the text and as the padding")

# ---------------------------------------------------------------- clipdex model
for name, fam, tok, rs in (("siglip-tiny", "siglip", "SiglipTokenizer", "bicubic"),
                           ("siglip2-tiny", "siglip2", "Gemma", "bilinear")):
    out = run("model", "--model", os.path.join(MODELS, name)).stdout.decode()
    T.ok("family: %s\n" % fam in out and tok in out and "scoring: sigmoid(10.0000 * cosine -10.0000)" in out
         and "resize to 64x64 (%s, no crop)" % rs in out and "eps 1e-06" in out and "gelu_pytorch_tanh" in out,
         "clipdex model %s: family, tokenizer, scoring, preprocessing, config defaults" % name)

# ---------------------------------------------------------------- moderate
tmp = tempfile.mkdtemp(prefix="cdx-15-")
lib, data = os.path.join(tmp, "lib"), os.path.join(tmp, "data")
os.makedirs(lib)
for i, src in enumerate(IMGS[:6]):
    shutil.copy(src, os.path.join(lib, "%d-%s" % (i, os.path.basename(src))))
M2 = os.path.join(MODELS, "siglip2-tiny")
p = qf.index(lib, data, model=M2)
T.ok(p.returncode == 0, "clipdex index with a SigLIP 2 model")
LABELS = [("a dog", True, 0.0, ["a photo of a dog", "A PUPPY"]),
          ("a cat", True, 0.0, ["a photo of a cat"]),
          ("a beach", False, None, ["a beach at sunset"])]
lf = os.path.join(tmp, "labels.txt")
with open(lf, "w") as f:
    for n_, fl, th, pr in LABELS:
        f.write("%s | %s | %s | %s\n" % (n_, "yes" if fl else "no", "" if th is None else th, "; ".join(pr)))
ref = siglip_ref.SiglipRef(M2)
scale, bias = math.exp(float(ref.w["logit_scale"][0])), float(ref.w["logit_bias"][0])
labvec = []
for n_, fl, th, pr in LABELS:
    e = sum(ref.embed_text(x).double().numpy() for x in pr)
    labvec.append(e / np.linalg.norm(e))
con = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "clipdex.db"), uri=True)
stored = {os.fsdecode(pth) if isinstance(pth, bytes) else pth: np.frombuffer(v, "<f2").astype(np.float64)
          for pth, v in con.execute("SELECT f.path, v.data FROM files f JOIN vectors v ON v.id = f.vector_id "
                                    "WHERE f.state = 0")}
con.close()
p = qf.run("moderate", "--labels", lf, "--threshold", "0", "--format", "json", data=data, model=M2)
rows = qf.jsonl(p)
err = max((abs(r["score"] - 1 / (1 + math.exp(-(scale * float(labvec[[l[0] for l in LABELS].index(r["label"])]
                                                                 @ stored[r["path"]]) + bias))))
           for r in rows), default=1)
T.ok(p.returncode == 0 and len(rows) == 2 * len(stored) and err < 1e-5,
     "moderate: sigmoid(exp(logit_scale) * cos + logit_bias) per label, as the reference "
     "(%d rows, max err %.1e)" % (len(rows), err))
# A label's probability does not depend on the others (no softmax).
lf1 = os.path.join(tmp, "one.txt")
with open(lf1, "w") as f:
    f.write("a dog | yes | 0 | a photo of a dog; A PUPPY\n")
r1 = {r["path"]: r["score"] for r in qf.jsonl(qf.run("moderate", "--labels", lf1, "--threshold", "0",
                                                       "--format", "json", data=data, model=M2))
      if r["label"] == "a dog"}
r3 = {r["path"]: r["score"] for r in rows if r["label"] == "a dog"}
T.ok(r1 and all(abs(r1[k] - r3[k]) < 1e-6 for k in r1), "moderate: a label scores the same alone and in a set")
# search works on the SigLIP store
p = qf.run("search", "a photo of a dog", "--format", "json", data=data, model=M2)
T.ok(p.returncode == 0 and len(qf.jsonl(p)) > 0, "search over a SigLIP 2 store")

# ---------------------------------------------------------------- hostile files


def broken(src, name, edit):
    d = os.path.join(tmp, name)
    shutil.copytree(os.path.join(MODELS, src), d)
    edit(d)
    return d


def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def cfg_edit(fn):
    def e(d):
        p = os.path.join(d, "config.json")
        c = json.load(open(p))
        fn(c)
        json.dump(c, open(p, "w"))
    return e


def pre_edit(fn):
    def e(d):
        p = os.path.join(d, "preprocessor_config.json")
        c = json.load(open(p))
        fn(c)
        json.dump(c, open(p, "w"))
    return e


HOSTILE = [
    ("corrupt spiece.model", "siglip-tiny", lambda d: write(os.path.join(d, "spiece.model"), b"\x0a\xff\xff garbage" * 50),
     "spiece.model"),
    ("corrupt tokenizer.model", "siglip2-tiny", lambda d: write(os.path.join(d, "tokenizer.model"), b"\x08\x96\x01" + os.urandom(64)),
     "tokenizer.model"),
    ("missing spiece.model", "siglip-tiny", lambda d: os.remove(os.path.join(d, "spiece.model")), "spiece.model"),
    ("wrong text mlp width", "siglip-tiny", cfg_edit(lambda c: c["text_config"].update(intermediate_size=96)),
     "model.safetensors"),
    ("text and image widths differ", "siglip-tiny",
     cfg_edit(lambda c: c["text_config"].update(hidden_size=96, num_attention_heads=4)), "config.json"),
    ("wrong patch size", "siglip2-tiny", cfg_edit(lambda c: c["vision_config"].update(patch_size=8)), "model.safetensors"),
    ("NaFlex model_type", "siglip2-tiny", cfg_edit(lambda c: c.update(model_type="siglip2")), "NaFlex"),
    ("NaFlex processor", "siglip2-tiny", pre_edit(lambda c: c.update(max_num_patches=256)), "NaFlex"),
    ("unknown activation", "siglip-tiny", cfg_edit(lambda c: c["text_config"].update(hidden_act="swish")), "config.json"),
    ("resample 1", "siglip-tiny", pre_edit(lambda c: c.update(resample=1)), "preprocessor_config.json"),
    ("tokenizer bigger than vocab", "siglip-tiny", cfg_edit(lambda c: c["text_config"].update(vocab_size=100)),
     "spiece.model"),
    ("no logit_bias", "siglip-tiny", lambda d: strip_tensor(d, "logit_bias"), "logit_bias"),
    ("special token not in vocab", "siglip2-tiny",
     lambda d: json.dump(dict(json.load(open(os.path.join(d, "tokenizer_config.json"))), eos_token="<nope>"),
                         open(os.path.join(d, "tokenizer_config.json"), "w")), "<nope>"),
]


def strip_tensor(d, name):
    p = os.path.join(d, "model.safetensors")
    raw = open(p, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    h = json.loads(raw[8:8 + n])
    h.pop(name)
    hb = json.dumps(h).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    write(p, len(hb).to_bytes(8, "little") + hb + raw[8 + n:])


for what, src, edit, needle in HOSTILE:
    d = broken(src, what.replace(" ", "-"), edit)
    p = run("embed", "--model", d, "--text", "x", "--image", IMGS[0])
    err = p.stderr.decode(errors="replace").strip().splitlines()
    T.ok(p.returncode not in (0,) and p.returncode > 0 and len(err) == 1 and needle in err[0] and d in err[0],
         "%s: one line naming the file (%s)" % (what, err[0] if err else "no message"))

# ---------------------------------------------------------------- precision
for name in ("siglip-tiny", "siglip2-tiny"):
    d = os.path.join(MODELS, name)
    f32 = embed(d, TEXTS[:4], IMGS[:3])
    for prec in ("bf16", "int8"):
        got = embed(d, TEXTS[:4], IMGS[:3], ("--precision", prec))
        worst = min(agree(g, w)[0] for g, w in zip(got, f32)) if got else 0
        T.ok(worst > 0.99, "%s --precision %s agrees with f32 (worst cosine %.5f)" % (name, prec, worst))

shutil.rmtree(tmp, ignore_errors=True)
T.done()
