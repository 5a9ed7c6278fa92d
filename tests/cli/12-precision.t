#!/usr/bin/python3
"""12-precision.t - reduced precision (bf16, int8) against float32.

Oracle: the independent PyTorch float32 reference (tests/ref/clip_ref.py),
not clipdex's own float32 output.  Per embedding (L2-normalised), over the
test images and texts, on the ViT-B/32-sized random model and its
"outlier" variant (tests/tools/gen_model.py --outliers: a few layer-norm
output channels 20-50x larger than the rest, as in real CLIP checkpoints):
  bf16: cosine >= 0.999 for every embedding;
  int8: median cosine >= 0.99 and minimum >= 0.98.
Retrieval over a store-sized set (tests/tools/precision_agree: 10000
synthetic images and 100 text queries on the tiny model, exact top-10 in
double): the top-10 at reduced precision overlaps float32's by >= 0.9
(bf16) and >= 0.8 (int8) on average, and moderation decisions with the
presets' thresholds agree on >= 98% of images.  (A random-weight model
flags nothing at those thresholds, so the tool also prints agreement at
thresholds that flag 5% per label; shown, not asserted: near-uniform
label probabilities make it a test of the random model, not of the
arithmetic.)
Every CPU dispatch level (CLIPDEX_ISA caps the level seen) runs the unit
test of the kernels against their scalar twin, meets the same bars on the
outlier model, and `clipdex model` says which precision auto picks there.
Prints TAP.
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import clip_ref  # noqa: E402

BUILD = os.environ.get("CLIPDEX_BUILD", "build")
CLIPDEX = os.path.join(ROOT, BUILD, "bin", "clipdex")
UNIT = os.path.join(ROOT, BUILD, "tests", "test_qlinear")
UNIT_SMALL = os.path.join(ROOT, BUILD, "tests", "test_qsmall")
AGREE = os.path.join(ROOT, BUILD, "tests", "tools", "precision_agree")
TESTDATA = os.path.join(ROOT, "build", "testdata")
IMAGES = os.path.join(TESTDATA, "images")

TEXTS = [
    "a photo of a dog", "kids on a red sled in the snow", "receipt",
    "Sunset over water, with boats and a pier, and some more words to make this longer",
    "café crème brûlée — naïve 日本の猫", "a cat <|endoftext|> and a dog",
    "I'm sure they'll say it's 42 degrees", "a screenshot of a spreadsheet",
    "two people hiking on a mountain ridge at dawn", "birthday cake with candles",
    "a blurry photo of a car at night", "whiteboard with handwritten notes",
]
IMAGE_FILES = ["photo420.jpg", "photo444.jpg", "progressive.jpg", "gray.png", "palette.png",
               "rgba.png", "odd301x201.png", "odd225x224.png", "wide1000x333.jpg", "tiny3x3.png",
               "gray.jpg"]
LEVELS = ["scalar", "avx2", "avx2_vnni", "avx512", "avx512_vnni", "avx512_bf16"]

n = 0
failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print("%sok %d - %s" % ("" if cond else "not ", n, msg), flush=True)
    return cond


def run(args, env_extra=None):
    env = dict(os.environ)
    env.pop("CLIPDEX_PRECISION", None)
    env.pop("CLIPDEX_ISA", None)
    env.update(env_extra or {})
    return subprocess.run(args, capture_output=True, env=env)


def embed(model, precision, texts, images, isa=None):
    args = [CLIPDEX, "embed", "--model", model, "--format", "json", "--precision", precision]
    for t in texts:
        args += ["--text", t]
    for i in images:
        args += ["--image", i]
    p = run(args, {"CLIPDEX_ISA": isa} if isa else None)
    if p.returncode != 0:
        print("# clipdex failed (%d): %s" % (p.returncode, p.stderr.decode(errors="replace").strip()))
        return None
    return np.array([json.loads(l)["embedding"] for l in p.stdout.decode().splitlines()])


def cosines(got, want):
    return [float(g @ w / (np.linalg.norm(g) * np.linalg.norm(w))) for g, w in zip(got, want)]


def bars(label, precision, cos):
    c = np.array(cos)
    if precision == "bf16":
        ok(c.min() >= 0.999, "%s bf16: every cosine to float32 >= 0.999 (min %.5f, median %.5f, n %d)"
           % (label, c.min(), np.median(c), len(c)))
    else:
        ok(np.median(c) >= 0.99 and c.min() >= 0.98,
           "%s int8: median cosine >= 0.99 and min >= 0.98 (median %.5f, min %.5f, n %d)"
           % (label, np.median(c), c.min(), len(c)))


def reference(model, texts, images):
    ref = clip_ref.CLIPRef(model)
    return np.array([ref.embed_text(t).double().numpy() for t in texts] +
                    [ref.embed_image(p).double().numpy() for p in images])


def store_precision():
    """Switching precision re-embeds nothing; each vector records its
    precision and `clipdex status` reports both."""
    import shutil
    import tempfile
    tmp = tempfile.mkdtemp(prefix="cdx-prec-")
    try:
        lib, data = os.path.join(tmp, "lib"), os.path.join(tmp, "data")
        os.makedirs(lib)
        for f in IMAGE_FILES[:3]:
            shutil.copy(os.path.join(IMAGES, f), lib)
        env = {"CLIPDEX_MODEL": os.path.join(TESTDATA, "models", "tiny"), "XDG_CONFIG_HOME": tmp}
        p = run([CLIPDEX, "index", "--data", data, "--precision", "int8", lib], env)
        ok(p.returncode == 0 and b"model precision int8" in p.stderr, "index --precision int8 runs int8")
        shutil.copy(os.path.join(IMAGES, IMAGE_FILES[3]), lib)
        p = run([CLIPDEX, "index", "--data", data, "--precision", "bf16", lib], env)
        err = p.stderr.decode(errors="replace")
        ok(p.returncode == 0 and "1 embedded" in err and "3 unchanged" in err,
           "switching to bf16 embeds only the new file (%s)"
           % next((l for l in err.splitlines() if "indexed in" in l), "no summary"))
        st = run([CLIPDEX, "status", "--data", data], env).stdout.decode()
        ok("vectors by:  bf16 1, int8 3" in st and "precision:   bf16" in st,
           "status: the precision that runs and vectors by precision (%s)"
           % "; ".join(l for l in st.splitlines() if "precision" in l or "vectors by" in l))
        ck = run([CLIPDEX, "check", "--data", data], env).stdout.decode()
        ok("vectors by precision: bf16 1, int8 3" in ck,
           "check: the model's vectors by precision (%s)"
           % "; ".join(l for l in ck.splitlines() if "precision" in l))
        js = json.loads(run([CLIPDEX, "status", "--data", data, "--format", "json"], env).stdout.decode())
        ok(js.get("vectors_by_precision") == {"unrecorded": 0, "f32": 0, "bf16": 1, "int8": 3},
           "status --format json: vectors_by_precision")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def detected_level():
    p = run([UNIT])
    for line in p.stdout.decode().splitlines():
        if line.startswith("# CPU level"):
            return line.split("detected ")[1].rstrip(")")
    return "scalar"


def main():
    images = [os.path.join(IMAGES, f) for f in IMAGE_FILES]
    for name in ("vitb32", "vitb32-outlier"):
        d = os.path.join(TESTDATA, "models", name)
        want = reference(d, TEXTS, images)
        f32 = embed(d, "f32", TEXTS, images)
        if ok(f32 is not None, "%s f32 runs" % name):
            ok(min(cosines(f32, want)) >= 0.99999, "%s f32 still matches the reference" % name)
        for prec in ("bf16", "int8"):
            got = embed(d, prec, TEXTS, images)
            if ok(got is not None and len(got) == len(want), "%s %s: one embedding per input" % (name, prec)):
                bars(name, prec, cosines(got, want))
        if name == "vitb32-outlier":
            sub_t, sub_i = TEXTS[:3], images[:3]
            sub_want = np.concatenate([want[:3], want[len(TEXTS):len(TEXTS) + 3]])

    # Every dispatch level: kernels vs scalar twin, bars on the outlier
    # model, and what auto picks.
    top = detected_level()
    expect_auto = {"scalar": "f32", "avx2": "f32", "avx2_vnni": "int8", "avx512": "f32",
                   "avx512_vnni": "int8", "avx512_bf16": "bf16"}
    d = os.path.join(TESTDATA, "models", "vitb32-outlier")
    for lvl in LEVELS:
        if LEVELS.index(lvl) > LEVELS.index(top) or (lvl == "avx2_vnni" and top != "avx2_vnni"
                                                     and LEVELS.index(top) < LEVELS.index("avx512_vnni")):
            print("ok %d - # SKIP %s is above this CPU (%s)" % (n + 1, lvl, top))
            globals()["n"] += 1
            continue
        p = run([UNIT], {"CLIPDEX_ISA": lvl})
        out = p.stdout.decode()
        ok(p.returncode == 0 and "# CPU level %s" % lvl in out,
           "CLIPDEX_ISA=%s: kernels match their scalar twin (test_qlinear, %d checks)"
           % (lvl, out.count("\nok ") + out.startswith("ok ")))
        p = run([UNIT_SMALL], {"CLIPDEX_ISA": lvl})
        out = p.stdout.decode()
        ok(p.returncode == 0 and "# CPU level %s" % lvl in out,
           "CLIPDEX_ISA=%s: the few-row int8 kernel matches the integer product (test_qsmall, %s)"
           % (lvl, out.splitlines()[0].split("qsmall kernel: ")[-1] if out else "no output"))
        m = run([CLIPDEX, "model", "--model", d], {"CLIPDEX_ISA": lvl}).stdout.decode()
        line = [l for l in m.splitlines() if l.startswith("precision:")]
        ok(line and line[0].startswith("precision: %s (auto" % expect_auto[lvl]),
           "CLIPDEX_ISA=%s: clipdex model says auto runs %s (%s)" % (lvl, expect_auto[lvl],
                                                                   line[0] if line else "no line"))
        # The whole model only where the path differs from the next level
        # up (scalar: the same float32 emulation as avx2; avx512_vnni: the
        # same int8 kernels as native, and bf16 is covered by avx512).
        for prec in () if lvl in ("scalar", "avx512_vnni") else ("bf16", "int8"):
            got = embed(d, prec, sub_t, sub_i, isa=lvl)
            if ok(got is not None, "CLIPDEX_ISA=%s %s runs" % (lvl, prec)):
                bars("outlier CLIPDEX_ISA=%s" % lvl, prec, cosines(got, sub_want))

    tiny = os.path.join(TESTDATA, "models", "tiny")
    for prec, bar in (("bf16", 0.9), ("int8", 0.8)):
        p = run([AGREE, tiny, "10000", prec])
        kv = dict(l.split(" ", 1) for l in p.stdout.decode().splitlines() if " " in l)
        if not ok(p.returncode == 0 and "top10_overlap" in kv, "precision_agree %s runs" % prec):
            print("# " + p.stderr.decode(errors="replace"))
            continue
        print("# %s: %s" % (prec, ", ".join("%s %s" % x for x in sorted(kv.items()))))
        ok(float(kv["top10_overlap"]) >= bar, "%s: mean top-10 overlap with float32 %s >= %.1f over %s images"
           % (prec, kv["top10_overlap"], bar, kv["images"]))
        ok(float(kv["moderation_agree"]) >= 0.98, "%s: moderation decisions agree on %s >= 0.98 of images"
           % (prec, kv["moderation_agree"]))

    store_precision()

    bad = run([CLIPDEX, "embed", "--model", d, "--precision", "fp8", "--text", "x"])
    ok(bad.returncode == 2 and b"--precision must be auto, f32, bf16 or int8, not 'fp8'" in bad.stderr,
       "a bad --precision is a usage error naming the value")

    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
