#!/usr/bin/python3
"""assemble.py OUT - the pairs of the real-data experiment (called by
assemble.sh, which installs the sources).

Every image is normalised once into OUT/img/: composited on white (the
clip art is transparent, and clipdex drops alpha as PIL's convert("RGB")
does, which would leave black backgrounds), padded to a square on white
(so the model's centre crop keeps the whole drawing), resized to 96x96
bicubic.  SVGs (openmoji, some stamps) are rendered by rsvg-convert.

Written under OUT (paths in the TSVs are relative to the TSV file):
  train.tsv, heldout.tsv       openclipart + openmoji pairs, path<TAB>caption;
                               held out: 1 in 10 by hash of the item (an
                               openclipart drawing's _01/_02 variants together)
  zs-openclipart.tsv           held-out openclipart images, path<TAB>category
  zs-openmoji.tsv              held-out openmoji images, path<TAB>group
  zs/<set>/<label>/<image>     the same as labelled folders (symlinks)
  tux-lit-train.tsv            Tux Paint stamps, one half by hash: LiT training
  tux-heldout.tsv              the other half: the out-of-domain test
  zs-tux.tsv                   tux-heldout's images, path<TAB>folder category
  labels-<set>.txt             each zero-shot set's classes, one a line
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from multiprocessing import Pool

from PIL import Image

SIDE = 96
MAX_PIXELS = 16_000_000
OUT = os.path.abspath(sys.argv[1])
CLIPART = "/usr/share/openclipart/png"
TUX = "/usr/share/tuxpaint/stamps"
MOJI = os.path.join(OUT, "src/openmoji/package")


def bucket(key, n):
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % n


def words(s):
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", s)).strip()


def normalise(job):
    src, dst = job
    if os.path.exists(dst):
        return dst, True
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = dst + ".tmp.png"
    try:
        if src.endswith(".svg"):
            r = subprocess.run(["rsvg-convert", "-w", str(SIDE), "-h", str(SIDE), "-a", "-o", tmp, src],
                               capture_output=True, timeout=60)
            if r.returncode != 0:
                raise ValueError(r.stderr.decode(errors="replace").strip()[:200])
            im = Image.open(tmp)
        else:
            im = Image.open(src)
            # a few clip-art PNGs are posters of 100+ megapixels: minutes
            # and gigabytes for a 96-pixel thumbnail
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise ValueError("%dx%d: over %d pixels" % (im.size[0], im.size[1], MAX_PIXELS))
        im.load()
        im = im.convert("RGBA")
        w, h = im.size
        s = max(w, h)
        canvas = Image.new("RGBA", (s, s), (255, 255, 255, 255))
        canvas.alpha_composite(im, ((s - w) // 2, (s - h) // 2))
        canvas.convert("RGB").resize((SIDE, SIDE), Image.BICUBIC).save(tmp, "PNG")
        os.replace(tmp, dst)
        return dst, True
    except Exception as e:  # a bad source file: reported and left out
        print(f"assemble: {src}: {e} (skipped)", file=sys.stderr)
        if os.path.exists(tmp):
            os.unlink(tmp)
        return dst, False


def clipart_items():
    items = []
    for root, _, files in os.walk(CLIPART):
        for f in sorted(files):
            if not f.endswith(".png"):
                continue
            rel = os.path.relpath(os.path.join(root, f), CLIPART)
            parts = rel.split("/")
            stem = re.sub(r"_\d+$", "", parts[-1][:-4])
            folders = [p for p in parts[:-1] if p not in ("unsorted", "special")]
            caption = ", ".join([words(stem)] + [words(p) for p in reversed(folders)])
            top = parts[0]
            label = None if top in ("unsorted", "special") or len(parts) == 1 else words(top)
            key = "openclipart/" + "/".join(parts[:-1] + [stem])
            items.append(dict(src=os.path.join(root, f), img="img/openclipart/" + rel, caption=caption,
                              label=label, key=key))
    return items


def moji_items():
    data = json.load(open(os.path.join(MOJI, "data/openmoji.json")))
    zs_groups = {"smileys-emotion", "people-body", "animals-nature", "food-drink", "travel-places",
                 "activities", "objects", "symbols", "flags"}
    items = []
    for d in data:
        if d.get("skintone"):  # the skin-tone variants repeat their base emoji
            continue
        svg = os.path.join(MOJI, "color/svg", d["hexcode"] + ".svg")
        if not os.path.exists(svg):
            continue
        tags = [t.strip() for t in (d.get("tags") or d.get("openmoji_tags") or "").split(",") if t.strip()]
        caption = ", ".join([d["annotation"], words(d["subgroups"]), words(d["group"])] + tags[:4])
        label = words(d["group"]) if d["group"] in zs_groups else None
        items.append(dict(src=svg, img="img/openmoji/%s.png" % d["hexcode"], caption=caption, label=label,
                          key="openmoji/" + d["hexcode"]))
    return items


def tux_items():
    items, seen = [], set()
    for root, _, files in os.walk(TUX):
        for f in sorted(files):
            stem, ext = os.path.splitext(f)
            if ext not in (".png", ".svg") or (root, stem) in seen:
                continue
            # a stamp in both formats: the PNG (the bitmap Tux Paint shows)
            if ext == ".svg" and os.path.exists(os.path.join(root, stem + ".png")):
                continue
            txt = os.path.join(root, stem + ".txt")
            if not os.path.exists(txt):
                continue
            with open(txt, encoding="utf-8", errors="replace") as t:
                desc = t.readline().strip()
            if not desc or "=" in desc.split(" ")[0]:
                continue
            seen.add((root, stem))
            rel = os.path.relpath(os.path.join(root, stem), TUX)
            items.append(dict(src=os.path.join(root, f), img="img/tuxpaint/%s.png" % rel, caption=desc,
                              label=words(rel.split("/")[0]), key="tuxpaint/" + rel))
    return items


def write_tsv(name, rows):
    tmp = os.path.join(OUT, name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for a, b in rows:
            f.write("%s\t%s\n" % (a, b.replace("\t", " ").replace("\n", " ")))
    os.replace(tmp, os.path.join(OUT, name))
    print("assemble: %-22s %5d lines" % (name, len(rows)))


def zs_set(name, items):
    rows = [(it["img"], it["label"]) for it in items if it["label"]]
    write_tsv("zs-%s.tsv" % name, rows)
    labels = sorted({r[1] for r in rows})
    with open(os.path.join(OUT, "labels-%s.txt" % name), "w") as f:
        f.write("".join(l + "\n" for l in labels))
    for img, label in rows:
        link = os.path.join(OUT, "zs", name, label, img.replace("/", "_"))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.join(OUT, img), link)


def main():
    clip, moji, tux = clipart_items(), moji_items(), tux_items()
    everything = clip + moji + tux
    with Pool(2) as pool:
        ok = dict(pool.map(normalise, [(it["src"], os.path.join(OUT, it["img"])) for it in everything],
                           chunksize=32))
    keep = lambda items: [it for it in items if ok[os.path.join(OUT, it["img"])]]
    clip, moji, tux = keep(clip), keep(moji), keep(tux)
    train = [it for it in clip + moji if bucket(it["key"], 10) != 0]
    held = [it for it in clip + moji if bucket(it["key"], 10) == 0]
    write_tsv("train.tsv", [(it["img"], it["caption"]) for it in train])
    write_tsv("heldout.tsv", [(it["img"], it["caption"]) for it in held])
    zs_set("openclipart", [it for it in held if it["key"].startswith("openclipart/")])
    zs_set("openmoji", [it for it in held if it["key"].startswith("openmoji/")])
    tux_train = [it for it in tux if bucket(it["key"], 2) == 0]
    tux_held = [it for it in tux if bucket(it["key"], 2) == 1]
    write_tsv("tux-lit-train.tsv", [(it["img"], it["caption"]) for it in tux_train])
    write_tsv("tux-heldout.tsv", [(it["img"], it["caption"]) for it in tux_held])
    zs_set("tux", tux_held)


main()
