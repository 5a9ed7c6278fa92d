#!/usr/bin/python3
"""87-train-crop.t - `clipdex train --augment crop` (core/train/augment.c).

Oracles, independent of clipdex:
- torchvision's RandomResizedCrop.get_params, as open_clip's training
  transform uses it (scale (0.9, 1.0), ratio (3/4, 4/3)), restated here as
  rules a box must satisfy (area fraction and aspect ratio reachable by
  the draws after rounding, inside the image) and, when no draw fits, its
  exact centred fallback box;
- Pillow: img.crop(box).resize((S, S), BICUBIC), /255, the model's
  mean and std: the pixels torchvision's resized_crop, ToTensor and
  Normalize give on a PIL image.

1. Boxes (tests/tools/crop_dump box): valid for many images and draws; the
   fallback exact for an image too wide for any draw; reproducible;
   different across epochs and across pairs; not symmetric in (epoch, pair).
2. Pixels (crop_dump pixels): Pillow's within 1e-5.
3. The command: --augment crop twice gives the same weights; --augment none
   gives exactly the default run's (the inference preprocessing); crop
   trains on other pixels than none; --until then --resume with crop ends
   bit-identical (weights and moments) to the uninterrupted run; gradient
   caching (--sub-batch) sees the same crops (with --lr 0, the direct
   path's losses); --augment with a bad value, or crop with --from-store,
   is a usage error.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
ROOT = qf.ROOT
TINY = os.path.join(ROOT, "build", "testdata", "models", "tiny")
CROP_DUMP = os.path.join(ROOT, qf.BUILD, "tests", "tools", "crop_dump")
tmp = tempfile.mkdtemp(prefix="cdx-87-")
RMIN, RMAX, SMIN, SMAX = 3 / 4, 4 / 3, 0.9, 1.0


def box(seed, epoch, pair, W, H):
    p = subprocess.run([CROP_DUMP, "box", str(seed), str(epoch), str(pair), str(W), str(H)],
                       capture_output=True, text=True, check=True)
    return tuple(int(v) for v in p.stdout.split())


def boxes(args):
    """Many boxes in one process would be faster; a few hundred runs are
    cheap enough and keep the tool trivial."""
    return [box(*a) for a in args]


def fallback(W, H):
    """torchvision's centred fallback (Python's round: half to even)."""
    r = W / H
    if r < RMIN:
        w, h = W, int(round(W / RMIN))
    elif r > RMAX:
        w, h = int(round(H * RMAX)), H
    else:
        w, h = W, H
    return ((W - w) // 2, (H - h) // 2, w, h)


def drawable(W, H, b):
    """Could a draw of get_params (area fraction in [0.9, 1], log-uniform
    ratio in [3/4, 4/3], sides rounded) give box b at its position?"""
    x, y, w, h = b
    if not (0 < w <= W and 0 < h <= H and 0 <= x <= W - w and 0 <= y <= H - h):
        return False
    A = W * H
    # w = round(sqrt(A s r)), h = round(sqrt(A s / r)): w h in [A s] up to rounding, w/h ~ r
    lo_area, hi_area = (w - 0.5) * (h - 0.5), (w + 0.5) * (h + 0.5)
    lo_r, hi_r = (w - 0.5) / (h + 0.5), (w + 0.5) / (h - 0.5)
    return lo_area <= A * SMAX and hi_area >= A * SMIN and lo_r <= RMAX and hi_r >= RMIN


# ---------------------------------------------------------------- 1. boxes
sizes = [(96, 96), (200, 120), (120, 200), (640, 480), (33, 31), (1, 1), (2, 3)]
args = [(5, e, p, W, H) for (W, H) in sizes for e in range(4) for p in range(10)]
got = boxes(args)
bad = [(a, b) for a, b in zip(args, got) if not (drawable(a[3], a[4], b) or b == fallback(a[3], a[4]))]
T.ok(not bad, "%d boxes: each one a draw of get_params (area 0.9-1, ratio 3/4-4/3, inside) or its fallback %s"
     % (len(got), bad[:2]))
n_draw = sum(1 for a, b in zip(args, got) if drawable(a[3], a[4], b) and b != fallback(a[3], a[4]))
T.ok(n_draw >= len(got) * 0.3, "many are random draws, not the fallback (%d of %d)" % (n_draw, len(got)))


def many(seed, W, H, n):
    p = subprocess.run([CROP_DUMP, "box", str(seed), "0", "0", str(W), str(H), str(n)], capture_output=True,
                       text=True, check=True)
    return [tuple(int(v) for v in l.split()) for l in p.stdout.splitlines()]


def simulate(W, H, n, rnd):
    """get_params restated with Python's random: the distribution's oracle."""
    out = []
    for _ in range(n):
        A = W * H
        for _ in range(10):
            s = rnd.uniform(SMIN, SMAX)
            r = math.exp(rnd.uniform(math.log(RMIN), math.log(RMAX)))
            w, h = int(round(math.sqrt(A * s * r))), int(round(math.sqrt(A * s / r)))
            if 0 < w <= W and 0 < h <= H:
                out.append((rnd.randint(0, W - w), rnd.randint(0, H - h), w, h))
                break
        else:
            out.append(fallback(W, H))
    return out


import random  # noqa: E402
rnd = random.Random(82)
N = 4000
for W, H in ((96, 96), (640, 480), (200, 120)):
    a, b = many(11, W, H, N), simulate(W, H, N, rnd)
    fa, fb = (sum(1 for t in v if t == fallback(W, H)) / N for v in (a, b))
    se = math.sqrt(max(fb * (1 - fb), 1 / N) / N) * math.sqrt(2)
    stats = []
    for k, name in ((2, "width"), (3, "height"), (0, "x")):
        va, vb = np.array([t[k] for t in a], float), np.array([t[k] for t in b], float)
        sek = math.sqrt((va.var() + vb.var()) / N) + 1e-9
        stats.append((name, va.mean(), vb.mean(), abs(va.mean() - vb.mean()) / sek))
    T.ok(abs(fa - fb) <= 5 * se and all(z <= 5 for *_, z in stats),
         "%dx%d, %d draws: fallback rate %.3f (get_params %.3f), mean width/height/x as get_params's (%s)"
         % (W, H, N, fa, fb, ", ".join("%s %.2f/%.2f" % s[:3] for s in stats)))
wide = boxes([(5, e, 0, 300, 50) for e in range(5)])
T.ok(all(b == (116, 0, 67, 50) for b in wide), "300x50 (no draw fits): the centred fallback 67x50 at 116 %s"
     % wide[:2])
tall = boxes([(5, e, 0, 41, 400) for e in range(3)])
T.ok(all(b == fallback(41, 400) for b in tall), "41x400: the fallback %s" % (fallback(41, 400),))
T.ok(boxes(args[:20]) == got[:20], "reproducible: the same (seed, epoch, pair) gives the same box")
sq = [(5, e, p, 640, 480) for p in range(20) for e in range(2)]
b_sq = boxes(sq)
changed = sum(1 for i in range(0, len(b_sq), 2) if b_sq[i] != b_sq[i + 1])
T.ok(changed >= 18, "another epoch, another box (%d of 20 pairs)" % changed)
b_96 = many(5, 96, 96, 20)
T.ok(len(set(b_96)) >= 15, "other pairs, other boxes (%d distinct of 20 at 96x96)" % len(set(b_96)))
swap = sum(1 for e, p in [(1, 2), (3, 7), (0, 5), (4, 9), (2, 6)] if box(5, e, p, 640, 480) != box(5, p, e, 640, 480))
T.ok(swap == 5, "(epoch, pair) and (pair, epoch) draw different boxes (%d of 5)" % swap)
T.ok(box(5, 0, 0, 640, 480) != box(6, 0, 0, 640, 480) or box(5, 0, 1, 640, 480) != box(6, 0, 1, 640, 480),
     "another seed, other boxes")
xs = [b[0] for b in b_sq]
T.ok(min(xs) <= 8 and max(xs) >= 16, "positions spread over the free range (x %d..%d)" % (min(xs), max(xs)))

# ---------------------------------------------------------------- 2. pixels
pre = json.load(open(os.path.join(TINY, "preprocessor_config.json")))
mean = np.array(pre["image_mean"], dtype=np.float64)[:, None, None]
std = np.array(pre["image_std"], dtype=np.float64)[:, None, None]
rng = np.random.default_rng(82)
worst = 0.0
ok_all = True
for i, (W, H) in enumerate([(150, 110), (90, 160), (64, 64)]):
    # smooth content with edges: bicubic differences would show
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([(xx * 255 // W), (yy * 255 // H), rng.integers(0, 256, (H, W))], -1).astype(np.uint8)
    path = os.path.join(tmp, "p%d.png" % i)
    Image.fromarray(img).save(path)
    out = os.path.join(tmp, "p%d.f32" % i)
    for S, epoch in ((224, 0), (48, 3)):
        p = subprocess.run([CROP_DUMP, "pixels", os.path.join(TINY, "preprocessor_config.json"), path, str(S), "9",
                            str(epoch), str(i), out], capture_output=True, text=True)
        if not T.ok(p.returncode == 0, "crop_dump pixels %dx%d -> %d" % (W, H, S)):
            T.diag(p.stderr)
            ok_all = False
            continue
        x, y, w, h = (int(v) for v in p.stdout.split())
        ref = Image.open(path).convert("RGB").crop((x, y, x + w, y + h)).resize((S, S), Image.BICUBIC)
        ref = (np.asarray(ref, dtype=np.float64).transpose(2, 0, 1) / 255.0 - mean) / std
        got_px = np.fromfile(out, dtype="<f4").reshape(3, S, S)
        d = float(np.abs(got_px - ref).max())
        worst = max(worst, d)
        ok_all &= d <= 1e-5 and (x, y, w, h) == box(9, epoch, i, W, H)
T.ok(ok_all, "the crop's pixels are Pillow's crop + bicubic resize + normalise (max diff %.2g)" % worst)

# ---------------------------------------------------------------- 3. the command
data = os.path.join(tmp, "pairs")
os.makedirs(data)
with open(os.path.join(data, "pairs.tsv"), "w") as f:
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (60 + 10 * i, 80, 3), dtype=np.uint8)).save(
            os.path.join(data, "%d.png" % i))
        f.write("%d.png\tpicture %d of six\n" % (i, i))
pairs = os.path.join(data, "pairs.tsv")


def train(out, *extra):
    p = qf.sanitizer_check(subprocess.run(
        [qf.CLIPDEX, "train", "--model", TINY, "--data", pairs, "--out", out, "--batch", "3", "--steps", "4",
         "--lr", "1e-3", "--seed", "4"] + list(extra), capture_output=True, env=qf.clean_env()), "train")
    if p.returncode:
        T.diag(p.stderr.decode())
    return p


def weights(out, f="model.safetensors"):
    with open(os.path.join(out, f), "rb") as fh:
        return fh.read()


o_c1, o_c2, o_none, o_def = (os.path.join(tmp, n) for n in ("c1", "c2", "none", "def"))
T.ok(all(train(o, *a).returncode == 0 for o, a in ((o_c1, ["--augment", "crop"]), (o_c2, ["--augment", "crop"]),
                                                  (o_none, ["--augment", "none"]), (o_def, []))),
     "four runs: crop twice, none, the default")
T.ok(weights(o_c1) == weights(o_c2), "--augment crop: the same seed gives the same weights")
T.ok(weights(o_none) == weights(o_def), "--augment none is the default run, bit for bit")
T.ok(weights(o_c1) != weights(o_none), "--augment crop trains on other pixels than none")
st = json.load(open(os.path.join(o_c1, "train_state.json")))
T.ok(st.get("settings", {}).get("augment") == "crop", "the training state records augment crop")

o_r = os.path.join(tmp, "r")
p1 = train(o_r, "--augment", "crop", "--until", "2")
p2 = qf.sanitizer_check(subprocess.run([qf.CLIPDEX, "train", "--resume", "--out", o_r], capture_output=True,
                                       env=qf.clean_env()), "resume")
T.ok(p1.returncode == 0 and p2.returncode == 0, "--until 2, then --resume")
T.ok(weights(o_r) == weights(o_c1) and weights(o_r, "train_state.safetensors") == weights(o_c1, "train_state.safetensors"),
     "resumed with crop: weights and AdamW moments bit-identical to the uninterrupted run")

# gradient caching takes its pixels a sub-batch at a time: the same crops.
# With --lr 0 the weights never move, so every step's loss must agree with
# the direct path's (to float32 rounding) and differ from uncropped pixels'.
def losses(out, *extra):
    log = out + ".log"
    p = train(out, "--lr", "0", "--log", log, *extra)
    return [float(l.split("\t")[2]) for l in open(log)] if p.returncode == 0 else []


l_direct = losses(os.path.join(tmp, "l1"), "--augment", "crop")
l_sub = losses(os.path.join(tmp, "l2"), "--augment", "crop", "--sub-batch", "1")
l_none = losses(os.path.join(tmp, "l3"), "--sub-batch", "1")
T.ok(len(l_direct) == 4 and len(l_sub) == 4 and all(abs(a - b) <= 1e-5 * abs(a) for a, b in zip(l_direct, l_sub)),
     "--augment crop --sub-batch 1: the direct path's losses (%s vs %s)" % (l_sub[:2], l_direct[:2]))
T.ok(len(l_none) == 4 and any(abs(a - b) > 1e-4 * abs(a) for a, b in zip(l_none, l_sub)),
     "and not the uncropped pixels' losses (%s)" % l_none[:2])
p = train(os.path.join(tmp, "bad2"), "--augment", "crop", "--lock", "image", "--from-store")
T.ok(p.returncode == 2 and b"--augment crop needs the images" in p.stderr, "--augment crop --from-store: usage error")

p = train(os.path.join(tmp, "bad"), "--augment", "flip")
T.ok(p.returncode == 2 and b"--augment must be none or crop" in p.stderr, "--augment flip: usage error")

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
