#!/usr/bin/python3
"""83-train-store.t - LiT from the index (clipdex train --lock image
--from-store) and the store recognising an unchanged image tower
(schema/005_tower_identity.sql, cdx_model_vision_key).

Oracles:
- The store's vectors are read straight from SQLite here (files.path ->
  vectors.data, float16 little-endian), not through clipdex.
- Training: tests/ref/train_ref.py (float64 PyTorch autograd and
  torch.optim.AdamW) with those vectors as the image embeddings: the loss
  of every step within 1e-5 and the text tensors within 1e-4 of their
  change; the image tower bit-identical to the input's.
- Search with the tuned model M': the ranking and scores recomputed here
  with numpy as cosines between the stored vectors and M''s text vector
  from `clipdex embed --model M'`; nothing re-embedded (the vectors table
  byte-identical before and after, one model row), also when the indexer
  runs with M'.
- A model whose image tower differs (M' trained on with --lock text) is
  another vector space: search refuses it, the indexer embeds every image
  again into a second row.
"""
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ref"))
import query_fixture as qf  # noqa: E402
import train_ref  # noqa: E402

T = qf.Tap()
tmp = os.path.realpath(tempfile.mkdtemp(prefix="cdx-83-"))
MODELS = os.path.join(qf.ROOT, "build", "testdata", "models")
tiny = os.path.join(MODELS, "tiny")
store = os.path.join(tmp, "store")
ENV = {"CLIPDEX_DATA": store, "CLIPDEX_PRECISION": "f32"}

# 12 pictures, coloured shapes, each captioned; one more picture outside
# the indexed folder
rng = np.random.default_rng(83)
lib = os.path.join(tmp, "lib")
os.makedirs(lib)
colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 220),
           "yellow": (230, 220, 30), "purple": (140, 30, 160), "orange": (240, 140, 20)}
lines = []
for i, (cn, c) in enumerate((cn, c) for cn, c in colours.items() for _ in (0, 1)):
    shape = ("circle", "square")[i % 2]
    im = Image.new("RGB", (224, 224), tuple(int(v) for v in rng.integers(0, 60, 3)))
    x0, y0 = (int(v) for v in rng.integers(20, 80, 2))
    d = ImageDraw.Draw(im)
    (d.ellipse if shape == "circle" else d.rectangle)([x0, y0, x0 + 110, y0 + 110], fill=c)
    im.save(os.path.join(lib, "%02d.png" % i))
    lines.append("lib/%02d.png\ta %s %s" % (i, cn, shape))
os.makedirs(os.path.join(tmp, "elsewhere"))
Image.new("RGB", (224, 224), (9, 9, 9)).save(os.path.join(tmp, "elsewhere", "x.png"))
lines.insert(5, "elsewhere/x.png\tnot indexed")
pairs = os.path.join(tmp, "pairs.tsv")
open(pairs, "w").write("\n".join(lines) + "\n")


def clipdex(*args, model=None, env=None):
    e = dict(ENV)
    e.update(env or {})
    return qf.run(*args, model=model, env=e)


def db_rows(sql):
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(store, "clipdex.db"), uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def stored_vectors():
    """{path: unit vector} of the files' vectors, decoded here."""
    out = {}
    for path, data in db_rows("SELECT f.path, v.data FROM files f JOIN vectors v ON v.id = f.vector_id"):
        v = np.frombuffer(data, "<f2").astype(np.float64)
        out[path.decode() if isinstance(path, bytes) else path] = v
    return out


def vectors_table():
    return db_rows("SELECT id, model_id, hash, data FROM vectors ORDER BY id")


def st_tensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
        base = 8 + n
        data = f.read()
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        b, e = v["data_offsets"]
        dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}.get(v["dtype"])
        if dt is None:
            continue
        out[k] = np.frombuffer(data[b:e], dt).reshape(v["shape"])
    return out, h, base


# ---------------------------------------------------------------- index with M
p = clipdex("index", "--model", tiny, lib)
T.ok(p.returncode == 0, "clipdex index --model tiny: 12 pictures")
vec = stored_vectors()
T.ok(len(vec) == 12, "the store holds 12 vectors")

# ---------------------------------------------------------------- refusals
out = os.path.join(tmp, "lit")
p = clipdex("train", "--data", pairs, "--out", out, "--from-store", "--steps", "1", "--batch", "4", model=tiny)
T.ok(p.returncode == 2 and b"--lock image" in p.stderr, "--from-store without --lock image: usage error")
p = clipdex("train", "--data", pairs, "--out", out, "--lock", "image", "--from-store", "--steps", "1",
            "--batch", "4", model=os.path.join(MODELS, "tiny-gelu"))
T.ok(p.returncode == 3 and b"no vectors of model" in p.stderr,
     "--from-store with a model the store has no vectors of: runtime error saying so")
p = clipdex("train", "--data", pairs, "--out", out, "--lock", "image", "--from-store", "--steps", "1",
            "--batch", "4", model=tiny, env={"CLIPDEX_DATA": os.path.join(tmp, "nostore")})
T.ok(p.returncode == 3 and b"nostore" in p.stderr, "--from-store with no store: runtime error naming it")
T.ok(not os.path.exists(out), "and no output written")

# ---------------------------------------------------------------- train M' from the store
HP = dict(lr=1e-3, warmup=3, schedule="constant", weight_decay=0.1)
log = os.path.join(tmp, "lit.log")
p = clipdex("train", "--data", pairs, "--out", out, "--lock", "image", "--from-store", "--order", "file",
            "--batch", "4", "--steps", "10", "--lr", str(HP["lr"]), "--warmup", str(HP["warmup"]),
            "--schedule", HP["schedule"], "--weight-decay", str(HP["weight_decay"]), "--log", log, model=tiny)
err = p.stderr.decode()
T.ok(p.returncode == 0, "train --lock image --from-store runs")
T.ok(err.count("(skipped)") == 1 and "x.png: no vector for this model" in err and "12 pairs (1 skipped)" in err,
     "the picture that is not in the store: one line, counted")
if p.returncode != 0:
    T.diag(err)
losses = [float(l.split("\t")[2]) for l in open(log).read().splitlines()] if p.returncode == 0 else []
rl, w64 = train_ref.train(tiny, pairs, 10, 4, lock="vision", image_emb=vec, **HP)
dl = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(losses, rl)) if len(losses) == 10 else 1
T.ok(dl <= 1e-5, "the loss of all 10 steps matches PyTorch's AdamW on the stored vectors (max diff %.2g)" % dl)
_, w32 = train_ref.train(tiny, pairs, 10, 4, lock="vision", image_emb=vec, dtype="f32", **HP)
got, _, _ = st_tensors(os.path.join(out, "model.safetensors")) if p.returncode == 0 else ({}, 0, 0)
w0, _, _ = st_tensors(os.path.join(tiny, "model.safetensors"))
bad, worst = [], (0.0, "")
for name in sorted(got):
    if name.startswith(("vision_model.", "visual_projection.")):
        continue
    a, b, a0 = got[name].astype(np.float64), w64[name], w0[name].astype(np.float64)
    change = np.linalg.norm(b - a0)
    if change <= 1e-9:  # an exact gradient of zero, no decay: must not move
        if np.linalg.norm(a - a0) != 0:
            bad.append("%s: moved, exactly it does not" % name)
        continue
    # as 80-train.t: 1e-4 of the change, or 1.5 x PyTorch's own float32 error
    e, e32 = np.linalg.norm(a - b) / change, np.linalg.norm(w32[name] - b) / change
    worst = max(worst, (e, name))
    if e > max(1e-4, 1.5 * e32):
        bad.append("%s: %.3g of the change" % (name, e))
T.ok(got and not bad, "the text tensors match PyTorch (worst %.2g of the change, %s)" % worst)
for b in bad[:5]:
    T.diag(b)
T.ok(got and all(np.array_equal(got[k], w0[k]) for k in got if k.startswith(("vision_model.", "visual_projection."))),
     "the image tower and its projection are bit-identical to the input's")

# the path itself: the image embeddings given as float32 (the inference
# engine's, which the training forward equals exactly) give the same loss
# and gradients to the bit as the pixels (tests/tools/grad_dump)
gd = os.path.join(qf.ROOT, qf.BUILD, "tests", "tools", "grad_dump")
pix = rng.standard_normal((4, 3, 224, 224)).astype("<f4")
pix.tofile(os.path.join(tmp, "pix.f32"))
with open(os.path.join(tmp, "ids.txt"), "w") as f:
    f.write("49406 320 1674 49407\n49406 320 736 2101 49407 0 0\n49406 1237 49407\n49406 320 49407 0\n")
for extra in ([], ["--sub-batch", "3"]):
    r = subprocess.run([gd, tiny, os.path.join(tmp, "pix.f32"), os.path.join(tmp, "ids.txt"),
                        os.path.join(tmp, "g.safetensors"), "--lock", "image"] + extra, capture_output=True, text=True)
    T.ok(r.returncode == 0 and "from_embeddings_identical 1" in r.stdout,
         "--lock image %s: float32 image embeddings instead of pixels give bit-identical loss and gradients"
         % " ".join(extra))
    if r.returncode != 0:
        T.diag(r.stderr)

# ---------------------------------------------------------------- search with M'
before = vectors_table()
q = "a red circle"
p = clipdex("search", "--model", out, "--format", "json", "-n", "12", q)
T.ok(p.returncode == 0, "clipdex search --model M' (the tuned model) searches the index")
if p.returncode != 0:
    T.diag(p.stderr.decode())
hits = qf.jsonl(p) if p.returncode == 0 else []
T.ok(vectors_table() == before and len(db_rows("SELECT id FROM models")) == 1,
     "nothing was embedded: the vectors table is byte-identical, one model row")
pe = clipdex("embed", "--raw", "--format", "json", "--text", q, model=out)
tv = np.array(qf.jsonl(pe)[0]["embedding"], np.float64) if pe.returncode == 0 else np.zeros(32)
tv /= np.linalg.norm(tv) or 1
scores = {path: float(v @ tv) for path, v in vec.items()}
order = sorted(scores, key=lambda k: -scores[k])
got_order = [h.get("path") for h in hits]
T.ok(len(hits) == 12 and all(abs(h["score"] - scores[h["path"]]) <= 2e-3 for h in hits),
     "scores are the cosines of M''s text vector with the stored vectors (numpy)")
# ties within float16 rounding may swap: compare the order by score
T.ok(got_order and all(scores[a] >= scores[b] - 2e-3 for a, b in zip(got_order, got_order[1:])) and
     abs(scores[got_order[0]] - scores[order[0]]) <= 2e-3, "ranked by M''s text tower")
p0 = clipdex("embed", "--raw", "--format", "json", "--text", q, model=tiny)
t0 = np.array(qf.jsonl(p0)[0]["embedding"]) if p0.returncode == 0 else tv
T.ok(not np.allclose(t0 / np.linalg.norm(t0), tv, atol=1e-4), "(M''s text tower differs from M's)")

# the indexer with M': no re-embedding either
p = clipdex("index", "--model", out, lib)
T.ok(p.returncode == 0 and b"0 embedded" in p.stderr and vectors_table() == before,
     "clipdex index --model M': 0 embedded, the vectors untouched")
if b"0 embedded" not in p.stderr:
    T.diag(p.stderr.decode()[-2000:])
st = clipdex("status")
T.ok(st.returncode == 0 and b"shared by:   1 other model with the same image tower" in st.stdout,
     "clipdex status: the vector space is shared by 1 other model")
stj = clipdex("status", "--format", "json")
T.ok(stj.returncode == 0 and json.loads(stj.stdout)["model"].get("shared_by") == 1, "status --format json: shared_by 1")

# ---------------------------------------------------------------- a store from before schema 5
con = sqlite3.connect(os.path.join(store, "clipdex.db"))
con.execute("UPDATE models SET vision_key = NULL")
con.execute("DELETE FROM model_keys")
con.commit()
con.close()
p = clipdex("search", "--model", out, q)
T.ok(p.returncode == 3, "no vision key recorded yet (a migrated store): M' is not recognised by a search")
p = clipdex("index", "--model", tiny, lib)
p2 = clipdex("search", "--model", out, q)
T.ok(p.returncode == 0 and b"0 embedded" in p.stderr and p2.returncode == 0,
     "once the indexer has run with M (recording its image tower), M' searches its vectors")

# ---------------------------------------------------------------- a changed image tower
# M' trained one step further with its text tower locked: the image tower
# moves (by AdamW's first step, ~lr on every entry), the text tower not
changed = os.path.join(tmp, "changed")
p = clipdex("train", "--data", pairs, "--out", changed, "--lock", "text", "--steps", "1", "--batch", "4",
            "--lr", "1e-3", model=out)
wc, _, _ = st_tensors(os.path.join(changed, "model.safetensors")) if p.returncode == 0 else ({}, 0, 0)
T.ok(p.returncode == 0 and not np.array_equal(wc["vision_model.post_layernorm.bias"],
                                              got["vision_model.post_layernorm.bias"]) and
     np.array_equal(wc["text_projection.weight"], got["text_projection.weight"]),
     "M'' = M' trained with --lock text: another image tower, the same text tower")
p = clipdex("search", "--model", changed, q)
T.ok(p.returncode == 3 and b"no vectors of model" in p.stderr,
     "M'' (a changed image tower): another vector space, search refuses it")
p = clipdex("index", "--model", changed, lib)
rows = db_rows("SELECT m.id, count(v.id) FROM models m LEFT JOIN vectors v ON v.model_id = m.id GROUP BY m.id")
T.ok(p.returncode == 0 and b"12 embedded" in p.stderr and len(rows) == 2 and rows[1][1] == 12,
     "the indexer embeds every picture again for it, into a second vector space")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
