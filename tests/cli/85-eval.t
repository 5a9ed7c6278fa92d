#!/usr/bin/python3
"""85-eval.t - `clipdex eval`: zero-shot classification and image-text
retrieval, against an independent oracle.

Oracle: the figures are recomputed here from embeddings clipdex's eval
code never touches, by the rules man/clipdex.1 documents (class = the
renormalised mean of its prompts' normalised embeddings; rank = 1 + the
candidates scoring strictly higher than the best relevant one; distinct
images and distinct captions for retrieval).  For CLIP the embeddings come
from the PyTorch reference (tests/ref/clip_ref.py, its own tokenizer and
preprocessing); for SigLIP and OpenCLIP from `clipdex embed` (the engine's
vectors, but accuracies and recalls computed here).  The reference's
vectors differ from the engine's in the last float bits, so a decision
closer than EPS counts as either outcome: the oracle gives a range and the
command's count must fall in it (the test data keeps the ranges narrow,
and the test says how wide they were).

Known by construction: with labels equal to the captions and the single
template "{}", the zero-shot top-1 and top-5 counts equal image->text
hits at 1 and 5; a data set whose images all share one caption has recall
1 both ways; top-5 of 5 classes or fewer and recall@10 over 10 or fewer
candidates are 1.  Bad images are skipped with one line and counted;
usage errors exit 2.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ref"))
import query_fixture as qf  # noqa: E402
import clip_ref  # noqa: E402

T = qf.Tap()
MODELS = os.path.join(qf.ROOT, "build", "testdata", "models")
EPS = 1e-5   # engine and reference vectors differ by ~2e-7 per entry (10-embed.t)
TEMPLATES = ["a photo of {}.", "a close-up photo of {}.", "a blurry photo of {}.", "a dark photo of {}.",
             "a bright photo of {}.", "a cropped photo of {}.", "a low resolution photo of {}.",
             "a picture showing {}.", "an image of {}.", "a snapshot of {}."]   # moderate's, query/labels.c
tmp = tempfile.mkdtemp(prefix="cdx-85-")

# ---------------------------------------------------------------- data

CLASSES = ["red_apple", "blue sky", "green field", "night", "snow", "a dog", "traffic"]
cls_dir = os.path.join(tmp, "classes")
cls_items = []   # (path, label)
seed = 0
for c in CLASSES:
    os.makedirs(os.path.join(cls_dir, c))
    for i in range(3):
        p = os.path.join(cls_dir, c, "%d.png" % i)
        qf.scene(40 + 4 * i, 36, 100 + seed).save(p)
        seed += 1
        cls_items.append((p, c))
open(os.path.join(cls_dir, "snow", "broken.jpg"), "wb").write(b"\xff\xd8\xff\xe0 not really a jpeg")

CAPTIONS = ["a red scene", "a red scene", "waves of green", "blue blocks on grey", "a noisy picture",
            "stripes", "a bright square", "two colours", "a dark corner", "something else entirely",
            "a photo of nothing", "the last one"]
pairs_tsv = os.path.join(tmp, "pairs.tsv")
pair_items = []
os.makedirs(os.path.join(tmp, "p"))
for i, cap in enumerate(CAPTIONS):
    p = os.path.join(tmp, "p", "%02d.png" % i)
    qf.scene(44, 44, 200 + i).save(p)
    pair_items.append((p, cap))
pair_items.append((pair_items[3][0], "an image listed twice"))    # one image, two captions
open(os.path.join(tmp, "p", "bad.png"), "wb").write(b"\x89PNG\r\n\x1a\n truncated")
with open(pairs_tsv, "w") as f:
    for p, cap in pair_items:
        f.write("%s\t%s\n" % (os.path.relpath(p, tmp), cap))
    f.write("p/bad.png\ta caption whose image is broken\n")


# ---------------------------------------------------------------- oracle

def rank_range(scores, best, relevant):
    """1 + the other candidates strictly above best, as (surely, possibly)."""
    other = np.ones(len(scores), bool)
    other[list(relevant)] = False
    return 1 + int(np.sum(scores[other] > best + EPS)), 1 + int(np.sum(scores[other] > best - EPS))


def oracle_classify(embed_text, embed_image, items, templates):
    labels = sorted({l for _, l in items})
    cls = []
    for l in labels:
        e = np.mean([embed_text(t.replace("{}", l.replace("_", " "))) for t in templates], axis=0)
        cls.append(e / np.linalg.norm(e))
    cls = np.array(cls)
    r = {"top1": [0, 0], "top5": [0, 0], "per": {l: [0, [0, 0]] for l in labels}, "confused": {}}
    for path, l in items:
        s = cls @ embed_image(path)
        y = labels.index(l)
        lo, hi = rank_range(s, s[y], [y])
        r["top1"][0] += hi == 1
        r["top1"][1] += lo == 1
        r["top5"][0] += hi <= 5
        r["top5"][1] += lo <= 5
        r["per"][l][0] += 1
        r["per"][l][1][0] += hi == 1
        r["per"][l][1][1] += lo == 1
        order = np.argsort(-s)
        if lo > 1 and s[order[0]] - s[order[1]] > EPS:   # a sure mistake with a sure winner
            r["confused"].setdefault(l, []).append(labels[order[0]])
    return r


def oracle_retrieve(embed_text, embed_image, items):
    imgs = sorted({p for p, _ in items})
    caps = sorted({c for _, c in items})
    I = np.array([embed_image(p) for p in imgs])
    C = np.array([embed_text(c) for c in caps])
    S = I @ C.T
    rel = {(imgs.index(p), caps.index(c)) for p, c in items}
    out = {}
    for name, M, nq in (("image_to_text", S, len(imgs)), ("text_to_image", S.T, len(caps))):
        hits = {k: [0, 0] for k in (1, 5, 10)}
        for q in range(nq):
            r = [j for j in range(M.shape[1]) if ((q, j) if name == "image_to_text" else (j, q)) in rel]
            best = max(M[q, j] for j in r)
            lo, hi = rank_range(M[q], best, r)
            for k in hits:
                hits[k][0] += hi <= k
                hits[k][1] += lo <= k
        out[name] = hits
    return out, len(imgs), len(caps)


def ref_embedders(model):
    ref = clip_ref.CLIPRef(model)
    return (lambda t: ref.embed_text(t).double().numpy(),
            lambda p: ref.embed_image(p).double().numpy())


def engine_embedders(model, texts, images):
    """clipdex embed's vectors (one call), looked up by input."""
    args = ["embed", "--precision", "f32", "--preprocess", "exact"]
    for t in texts:
        args += ["--text", t]
    for p in images:
        args += ["--image", p]
    p = qf.run(*args, model=model)
    vec = {("text" if r["type"] == "text" else "image", r["input"]): np.array(r["embedding"], np.float64)
           for r in qf.jsonl(p)}
    return lambda t: vec[("text", t)], lambda q: vec[("image", q)]


def within(v, rng):
    return rng[0] <= v <= rng[1]


def evaluate(model, *args):
    p = qf.run("eval", "--precision", "f32", "--format", "json", *args, model=model)
    try:
        return p, json.loads(p.stdout)
    except ValueError:
        return p, {}


def check(fam, model, embed_text, embed_image, templates, targs):
    p, r = evaluate(model, "--classes", cls_dir, "--pairs", pairs_tsv, *targs)
    if not T.ok(p.returncode == 0 and "classification" in r and "retrieval" in r, "%s: eval runs" % fam):
        T.diag(p.stderr.decode())
        return
    c, rr = r["classification"], r["retrieval"]
    err = p.stderr.decode()
    T.ok(err.count("(skipped)") == 2 and "broken.jpg" in err and "bad.png" in err and c["skipped"] == 1
         and rr["skipped"] == 1, "%s: the two bad images: one line each, counted" % fam)
    oc = oracle_classify(embed_text, embed_image, cls_items, templates)
    width = oc["top1"][1] - oc["top1"][0] + oc["top5"][1] - oc["top5"][0]
    T.ok(c["images"] == len(cls_items) and c["classes"] == len(CLASSES) and c["templates"] == len(templates)
         and abs(c["chance_top1"] - 1 / 7) < 1e-6 and abs(c["chance_top5"] - 5 / 7) < 1e-6,
         "%s: 21 images, 7 classes, %d templates, chance 1/7 and 5/7" % (fam, len(templates)))
    T.ok(within(c["top1"], oc["top1"]) and within(c["top5"], oc["top5"]) and width <= 2,
         "%s: top-1 %d, top-5 %d of 21 as the oracle (%s, %s; near-ties widen by %d)"
         % (fam, c["top1"], c["top5"], oc["top1"], oc["top5"], width))
    per_ok = True
    for pc in c["per_class"]:
        o = oc["per"][pc["label"]]
        per_ok &= pc["images"] == o[0] and within(pc["top1"], o[1])
        sure = oc["confused"].get(pc["label"], [])
        if sure and len(sure) == o[0] - o[1][1]:   # every mistake of the class is sure
            counts = {k: sure.count(k) for k in sure}
            top = max(counts.values())
            per_ok &= pc["most_confused"] == min(k for k, v in counts.items() if v == top) \
                and pc["confused_count"] == top
        if o[1][0] == o[0]:
            per_ok &= pc["most_confused"] is None
    T.ok(per_ok and [pc["label"] for pc in c["per_class"]] == sorted(CLASSES),
         "%s: per class: images, top-1 and the most confused class as the oracle" % fam)
    good = [(p_, c_) for p_, c_ in pair_items]
    orr, ni, nc = oracle_retrieve(embed_text, embed_image, good)
    T.ok(rr["pairs"] == len(good) and rr["images"] == ni == 12 and rr["captions"] == nc == 12,
         "%s: retrieval over 12 distinct images and 12 distinct captions (13 pairs)" % fam)
    ok = True
    for d in ("image_to_text", "text_to_image"):
        for k in (1, 5, 10):
            ok &= within(rr[d]["hits_at_%d" % k], orr[d][k]) and orr[d][k][1] - orr[d][k][0] <= 1
    T.ok(ok, "%s: recall@1/5/10 both ways as the oracle (i2t %s, t2i %s)"
         % (fam, [rr["image_to_text"]["hits_at_%d" % k] for k in (1, 5, 10)],
            [rr["text_to_image"]["hits_at_%d" % k] for k in (1, 5, 10)]))


# CLIP: the PyTorch reference's embeddings
tiny = os.path.join(MODELS, "tiny")
et, ei = ref_embedders(tiny)
check("clip", tiny, et, ei, TEMPLATES, [])
tfile = os.path.join(tmp, "templates.txt")
open(tfile, "w").write("# two templates\n{}\n\na drawing of {}, colourful\n")
check("clip --templates", tiny, et, ei, ["{}", "a drawing of {}, colourful"], ["--templates", tfile])

# SigLIP and OpenCLIP: clipdex embed's vectors, metrics computed here
for fam, name in (("siglip", "siglip-tiny"), ("openclip", "oc-tiny")):
    d = os.path.join(MODELS, name)
    texts = sorted({c for _, c in pair_items} |
                   {t.replace("{}", l.replace("_", " ")) for l in CLASSES for t in ["a photo of {}."]})
    et2, ei2 = engine_embedders(d, texts, [p for p, _ in cls_items] + sorted({p for p, _ in pair_items}))
    check(fam, d, et2, ei2, ["a photo of {}."], ["--template", "a photo of {}."])

# ---------------------------------------------------------------- by construction

# labels = captions, template "{}": classification == image->text retrieval
lab_tsv = os.path.join(tmp, "labels-as-captions.tsv")
with open(lab_tsv, "w") as f:
    for p, cap in pair_items[:12]:
        f.write("%s\t%s\n" % (p, cap))
p, r = evaluate(tiny, "--classes", lab_tsv, "--pairs", lab_tsv, "--template", "{}")
c, rr = r.get("classification", {}), r.get("retrieval", {})
T.ok(p.returncode == 0 and c.get("top1") == rr["image_to_text"]["hits_at_1"]
     and c.get("top5") == rr["image_to_text"]["hits_at_5"] and c.get("classes") == 11,
     "labels = captions, template {}: top-1/top-5 == image->text hits@1/@5 (%s/%s)"
     % (c.get("top1"), c.get("top5")))
# one caption shared by every image (duplicated images among them)
one = os.path.join(tmp, "one-caption.tsv")
with open(one, "w") as f:
    for p_, _ in pair_items[:6]:
        f.write("%s\tthe same words\n" % p_)
    shutil.copy(pair_items[0][0], os.path.join(tmp, "p", "copy.png"))
    f.write("p/copy.png\tthe same words\n")
p, r = evaluate(tiny, "--pairs", one)
rr = r.get("retrieval", {})
T.ok(p.returncode == 0 and rr.get("images") == 7 and rr.get("captions") == 1
     and rr["image_to_text"]["recall_at_1"] == 1 and rr["text_to_image"]["recall_at_1"] == 1,
     "a caption shared by every image: one text, recall@1 = 1 both ways")
# <= 5 classes: top-5 = 1; <= 10 candidates: recall@10 = 1
small = os.path.join(tmp, "small.tsv")
with open(small, "w") as f:
    for (p_, _), l in zip(cls_items[:10], ["a", "b", "c", "d", "e"] * 2):
        f.write("%s\t%s\n" % (p_, l))
p, r = evaluate(tiny, "--classes", small, "--pairs", small)
c, rr = r.get("classification", {}), r.get("retrieval", {})
T.ok(p.returncode == 0 and c.get("top5_accuracy") == 1 and c.get("chance_top5") == 1
     and rr["image_to_text"]["recall_at_10"] == 1 and rr["text_to_image"]["recall_at_10"] == 1,
     "5 classes: top-5 = 1 = chance; 10 images, 5 captions: recall@10 = 1")

# ---------------------------------------------------------------- the text format, precision, errors

p = qf.run("eval", "--classes", cls_dir, "--pairs", pairs_tsv, "--precision", "bf16", model=tiny)
out = p.stdout.decode()
T.ok(p.returncode == 0 and "bf16" in out and "top-1 accuracy" in out and "chance 14.29%" in out
     and "image->text  R@1" in out and "text->image  R@1" in out and "most confused" in out,
     "text format, --precision bf16")
T.diag(out)
for args, what in ((["--pairs", pairs_tsv, "--format", "xml"], "bad --format"),
                   ([], "nothing to evaluate"),
                   (["--classes", cls_dir, "--template", "no hole"], "a template without {}"),
                   (["--pairs", pairs_tsv, "--template", "{}"], "--template without --classes"),
                   (["--classes", cls_dir, "--precision", "f8"], "bad --precision")):
    p = qf.run("eval", *args, model=tiny)
    T.ok(p.returncode == 2, "%s: usage error" % what)
p = qf.run("eval", "--pairs", os.path.join(tmp, "nope.tsv"), model=tiny)
T.ok(p.returncode == 3 and b"nope.tsv" in p.stderr, "missing PAIRS: runtime error naming it")
one_cls = os.path.join(tmp, "one-class")
os.makedirs(os.path.join(one_cls, "only"))
shutil.copy(cls_items[0][0], os.path.join(one_cls, "only", "x.png"))
p = qf.run("eval", "--classes", one_cls, model=tiny)
T.ok(p.returncode == 3 and b"at least 2" in p.stderr, "one class: refused with the reason")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
