#!/usr/bin/python3
"""65-index-vectors.t - the index holds the right vector for every file.

A library of visibly different pictures (different colours, shapes and
sizes; JPEG and PNG; one with an EXIF rotation) is indexed by
`clipdex index` (clipdexd --once, batches of several images) and by a
running clipdexd (batch = 8).  Then, for every file:

  - the vector stored in clipdex.db equals `clipdex embed --preprocess
    fast` of that file, within float16 storage error (half an ulp of
    float16, element by element), and is closer to that file's embedding
    than to any other file's;
  - it is also nearest to that file's embedding by the independent
    PyTorch reference (tests/ref/clip_ref.py, exact preprocessing), among
    all the library's files;
  - a resized, recompressed copy that is not in the index finds the file
    first, through `clipdex similar` and `clipdex search --image`.

The stored vectors are read from the database directly (sqlite3, read
only), not through clipdex.  A vector stored for the wrong file (a batch
off by one) fails every one of these checks.
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "ref"))
sys.path.insert(0, HERE)
import query_fixture as qf  # noqa: E402
import clip_ref  # noqa: E402
import daemonlib  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-65-")
lib = os.path.realpath(os.path.join(tmp, "lib"))
copies = os.path.join(tmp, "copies")
os.makedirs(copies)

# ---- the library: 14 pictures, each with its own colours and layout
files = []
for i in range(14):
    im = qf.scene(360 - 12 * i, 240 + 9 * i, 7000 + 31 * i)
    sub = os.path.join(lib, "d%d" % (i % 3))
    os.makedirs(sub, exist_ok=True)
    if i == 5:
        # shown upright after the EXIF rotation (6: turn 90 degrees clockwise)
        p = os.path.join(sub, "pic%02d-rot.jpg" % i)
        im.save(p, quality=90, exif=qf.exif(orientation=6))
    elif i % 2:
        p = os.path.join(sub, "pic%02d.png" % i)
        im.save(p)
    else:
        p = os.path.join(sub, "pic%02d.jpg" % i)
        im.save(p, quality=90)
    files.append(p)
    # the copy the searches start from: what the viewer sees, smaller
    shown = Image.open(p)
    shown = ImageOps.exif_transpose(shown).convert("RGB")
    c = os.path.join(copies, "copy%02d.jpg" % i)
    shown.resize((shown.width * 3 // 4, shown.height * 3 // 4), Image.LANCZOS).save(c, quality=85)


def stored_vectors(data):
    """{path: float16 vector as float64} for the indexed files, read from
    the database."""
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "clipdex.db"), uri=True)
    try:
        rows = con.execute("SELECT f.path, v.data FROM files f JOIN vectors v ON v.id = f.vector_id "
                           "WHERE f.state = 0").fetchall()
    finally:
        con.close()
    return {os.fsdecode(p) if isinstance(p, bytes) else p: np.frombuffer(d, "<f2").astype(np.float64)
            for p, d in rows}


def embed_fast(paths):
    args = [qf.CLIPDEX, "embed", "--model", qf.TINY, "--preprocess", "fast", "--format", "json"]
    for p in paths:
        args += ["--image", p]
    p = qf.sanitizer_check(subprocess.run(args, capture_output=True, env=qf.clean_env()), "clipdex embed")
    if p.returncode != 0:
        T.diag(p.stderr.decode(errors="replace"))
        return {}
    return {r["input"]: np.array(r["embedding"], np.float64) for r in qf.jsonl(p)}


emb = embed_fast(files)
T.ok(len(emb) == len(files), "clipdex embed --preprocess fast: every file (%d)" % len(emb))
E = np.array([emb[f] for f in files])
cos = E @ E.T
off = cos[~np.eye(len(files), dtype=bool)]
T.ok(off.max() < 0.995, "the pictures are distinct to the model (largest cosine between two: %.4f)" % off.max())

# The reference reads pixels as stored (as transformers does); clipdex
# shows the picture upright first: give the reference the upright pixels.
ref = clip_ref.CLIPRef(qf.TINY)
upright = []
for f in files:
    if "-rot" in f:
        u = os.path.join(tmp, "upright.png")
        ImageOps.exif_transpose(Image.open(f)).convert("RGB").save(u)
        f = u
    upright.append(f)
R = np.array([ref.embed_image(f).double().numpy() for f in upright])


def check_store(data, how):
    vec = stored_vectors(data)
    T.ok(sorted(vec) == sorted(files), "%s: every file indexed, nothing else (%d)" % (how, len(vec)))
    worst, wrong, nearest_bad, ref_bad = 0.0, [], [], []
    for i, f in enumerate(files):
        v = vec.get(f)
        if v is None:
            wrong.append(f)
            continue
        e = emb[f]
        # float16 keeps 11 significant bits: half an ulp is |x| * 2^-11
        # at most; 2^-25 covers values rounded to float16 subnormals.
        bound = np.maximum(np.abs(e) * 2.0 ** -11, 2.0 ** -25) + 1e-7
        err = np.abs(v - e)
        worst = max(worst, float(np.max(err / bound)))
        if np.any(err > bound):
            wrong.append(os.path.basename(f))
        if int(np.argmax(E @ v)) != i:
            nearest_bad.append(os.path.basename(f))
        if int(np.argmax(R @ v)) != i:
            ref_bad.append(os.path.basename(f))
    T.ok(not wrong, "%s: stored vector = clipdex embed --preprocess fast within float16 rounding "
         "(worst %.2f of half an ulp)" % (how, worst))
    if wrong:
        T.diag("differ: %s" % " ".join(wrong))
    T.ok(not nearest_bad, "%s: each stored vector is nearest to its own file's embedding" % how)
    if nearest_bad:
        T.diag("nearest to another file: %s" % " ".join(nearest_bad))
    T.ok(not ref_bad, "%s: ... and nearest to its own file by the PyTorch reference" % how)
    if ref_bad:
        T.diag("nearest to another file by the reference: %s" % " ".join(ref_bad))
    sim_bad, img_bad = [], []
    for i, f in enumerate(files):
        c = os.path.join(copies, "copy%02d.jpg" % i)
        p = qf.run("similar", "--format", "paths", "-n", "1", c, data=data)
        if p.returncode != 0 or p.stdout.decode().strip() != f:
            sim_bad.append("%s -> %s" % (os.path.basename(c), p.stdout.decode().strip() or p.stderr.decode().strip()))
        p = qf.run("search", "--format", "paths", "-n", "1", "--image", c, data=data)
        if p.returncode != 0 or p.stdout.decode().strip() != f:
            img_bad.append("%s -> %s" % (os.path.basename(c), p.stdout.decode().strip() or p.stderr.decode().strip()))
    T.ok(not sim_bad, "%s: clipdex similar COPY finds its file first, for all %d" % (how, len(files)))
    for x in sim_bad:
        T.diag(x)
    T.ok(not img_bad, "%s: clipdex search --image COPY finds its file first, for all %d" % (how, len(files)))
    for x in img_bad:
        T.diag(x)
    # an indexed file by path: itself first (its stored vector)
    p = qf.run("search", "--format", "json", "-n", "1", "--image", files[3], data=data)
    r = qf.jsonl(p)
    T.ok(p.returncode == 0 and r and r[0]["path"] == files[3] and abs(r[0]["score"] - 1) < 2e-3,
         "%s: search --image of an indexed file: itself first, score 1" % how)


# ---- one-shot indexing
D1 = os.path.join(tmp, "data-once")
p = qf.sanitizer_check(subprocess.run([qf.CLIPDEX, "index", "--data", D1, "--model", qf.TINY, lib],
                                      capture_output=True, env=qf.clean_env()), "clipdex index")
T.ok(p.returncode == 0, "clipdex index: exit 0")
if p.returncode:
    T.diag(p.stderr.decode(errors="replace")[-2000:])
check_store(D1, "clipdex index")

# ---- the daemon: scan at start, then files arriving while it watches
tmpd = os.path.join(tmp, "daemon")
os.makedirs(tmpd)
lib2 = os.path.join(tmpd, "lib")
os.makedirs(lib2)
first = files[:7]
for f in first:
    dst = os.path.join(lib2, os.path.relpath(f, lib))
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(f, dst)
dmn = daemonlib.Daemon(tmpd, [lib2])  # batch = 8
try:
    dmn.start()
    want = lambda n: lambda: len(daemonlib.Store(dmn.data).ok_paths()) >= n  # noqa: E731
    T.ok(daemonlib.wait_for(want(len(first))), "clipdexd: the initial scan indexed %d files" % len(first))
    for f in files[7:]:
        dst = os.path.join(lib2, os.path.relpath(f, lib))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        tmpf = dst + ".part"
        shutil.copy2(f, tmpf)
        os.rename(tmpf, dst)
    T.ok(daemonlib.wait_for(want(len(files))), "clipdexd: the files added while watching are indexed")
finally:
    dmn.stop()
# the daemon's library is a copy under another root: map the paths
moved = {os.path.join(lib2, os.path.relpath(f, lib)): f for f in files}
vec2 = stored_vectors(dmn.data)
worst, wrong = 0.0, []
for p2, f in moved.items():
    v = vec2.get(p2)
    if v is None or int(np.argmax(E @ v)) != files.index(f):
        wrong.append(os.path.basename(p2))
        continue
    bound = np.maximum(np.abs(emb[f]) * 2.0 ** -11, 2.0 ** -25) + 1e-7
    if np.any(np.abs(v - emb[f]) > bound):
        wrong.append(os.path.basename(p2))
T.ok(len(vec2) == len(files) and not wrong,
     "clipdexd: every stored vector = its file's embedding within float16 rounding (%d files)" % len(vec2))
if wrong:
    T.diag("wrong: %s" % " ".join(wrong))

shutil.rmtree(tmp)
sys.exit(T.done())
