#!/usr/bin/env python3
"""ref_preprocess.py - an independent Python reference for clipdex's image
layer (core/image/image.c, core/image/resample.c, core/image/preprocess.c), and the test
fixtures that exercise it.

The reference is written with PIL and numpy only, from transformers'
documented CLIPImageProcessor behaviour (transformers itself is not
installed here).  Step by step, as CLIPImageProcessor.preprocess does it:

  1. convert_to_rgb: PIL Image.convert("RGB") (nothing if already RGB)
  2. to numpy, (H, W, 3) uint8, channels last
  3. resize: shortest edge -> size, long edge -> int(size * long / short)
     (or exactly {"height","width"}), with PIL.Image.resize(BICUBIC,
     reducing_gap=None)
  4. center_crop: top = (h - crop_h) // 2, left = (w - crop_w) // 2; an
     image smaller than the crop is zero-padded first (uint8 zeros)
  5. rescale: (x.astype(float64) * rescale_factor).astype(float32)
  6. normalize: (x - float32(mean)) / float32(std) in float32
  7. channels first: (3, H, W)

One deliberate difference from plain Pillow, mirrored from clipdex: a
16-bit greyscale PNG opens in Pillow as mode "I" and convert("RGB") clips
it (everything above 255 becomes white); clipdex keeps the high byte of
each sample, and so does load_rgb() here.

Subcommands:
  gen DIR                       write synthetic test images into DIR
  resample-fixtures DIR         inputs + Pillow BICUBIC outputs for the
                                test_resample unit test (DIR/cases.txt)
  expect --list L --out DIR [--config NAME=PATH|NAME=-]...
        for the images listed in L (one path per line), write
        DIR/<i>.rgb (or DIR/<i>.err with Pillow's error) and
        DIR/<i>.<NAME>.f32 for each config ("-" = processor defaults)
  compare --list L --exp DIR --got DIR [--config NAME]... [--known FILE] [--root DIR]
        compare with what tests/unit/preprocess_dump wrote in DIR
        (<i>.rgb, <i>.<NAME>.f32, <i>.rc, <i>.stderr) and print one
        result line per image: "ok DETAIL" or "not ok DETAIL"
        (tests/cli/20-preprocess.t numbers them into TAP)
"""
import argparse
import json
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
BICUBIC = 3
TENSOR_TOL = 1e-6
# The reference resizes the whole image before cropping, as transformers
# does; corpus oddities like a 1x10000 strip would become 224x2240000
# (500 MP, seconds and gigabytes).  Tensors whose full resize exceeds this
# are not computed; the RGB comparison still runs, and test_resample
# covers windowed resizes of extreme aspect ratios.
MAX_REF_RESIZE_PIXELS = 20_000_000

# --------------------------------------------------------------------------
# Decoding (Pillow) and the CLIPImageProcessor reference
# --------------------------------------------------------------------------


def load_rgb(path):
    """(H, W, 3) uint8 as Image.open(path).convert("RGB"), except 16-bit
    grey PNG, which keeps the high byte (see the module docstring)."""
    with Image.open(path) as im:
        if im.format == "PNG" and im.mode in ("I", "I;16", "I;16B"):
            a = (np.asarray(im).astype(np.int64) >> 8).astype(np.uint8)
            return np.repeat(a[:, :, None], 3, axis=2)
        return np.asarray(im.convert("RGB"))


def get_size_dict(size, default_to_square):
    """transformers.image_processing_utils.get_size_dict, the cases a JSON
    config can express."""
    if isinstance(size, dict):
        return size
    if isinstance(size, bool):
        raise ValueError("bad size %r" % (size,))
    if isinstance(size, int):
        return {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": size[0], "width": size[1]}
    raise ValueError("bad size %r" % (size,))


def processor_from_json(d):
    """CLIPImageProcessor.__init__ with the keys of preprocessor_config.json."""
    def opt(key, default):
        return d[key] if key in d else default
    size = opt("size", None)
    crop = opt("crop_size", None)
    mean = opt("image_mean", None)
    std = opt("image_std", None)
    return {
        "do_resize": opt("do_resize", True),
        "size": get_size_dict(size if size is not None else {"shortest_edge": 224}, False),
        "resample": opt("resample", BICUBIC),
        "do_center_crop": opt("do_center_crop", True),
        "crop_size": get_size_dict(crop if crop is not None else {"height": 224, "width": 224}, True),
        "do_rescale": opt("do_rescale", True),
        "rescale_factor": opt("rescale_factor", 1 / 255),
        "do_normalize": opt("do_normalize", True),
        "image_mean": mean if mean is not None else OPENAI_CLIP_MEAN,
        "image_std": std if std is not None else OPENAI_CLIP_STD,
    }


def resize_output_size(h, w, size):
    """(height, width) after CLIPImageProcessor.resize."""
    if "shortest_edge" in size:
        s = size["shortest_edge"]
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = s, int(s * long / short)
        return (new_long, new_short) if w <= h else (new_short, new_long)
    return size["height"], size["width"]


def center_crop(img, crop_h, crop_w):
    """transformers.image_transforms.center_crop on an (H, W, C) array."""
    h, w = img.shape[:2]
    top = (h - crop_h) // 2
    left = (w - crop_w) // 2
    if top >= 0 and left >= 0 and top + crop_h <= h and left + crop_w <= w:
        return img[top:top + crop_h, left:left + crop_w]
    new_h, new_w = max(crop_h, h), max(crop_w, w)
    padded = np.zeros((new_h, new_w) + img.shape[2:], dtype=img.dtype)
    top_pad = -(-(new_h - h) // 2)  # ceil
    left_pad = -(-(new_w - w) // 2)
    padded[top_pad:top_pad + h, left_pad:left_pad + w] = img
    top += top_pad
    left += left_pad
    return padded[max(0, top):min(new_h, top + crop_h), max(0, left):min(new_w, left + crop_w)]


def clip_preprocess(rgb, p):
    """rgb: (H, W, 3) uint8 -> (3, H', W') float32."""
    img = rgb
    if p["do_resize"]:
        if p["resample"] != BICUBIC:
            raise ValueError("only BICUBIC is mirrored")
        oh, ow = resize_output_size(img.shape[0], img.shape[1], p["size"])
        img = np.asarray(Image.fromarray(img).resize((ow, oh), resample=BICUBIC))
    if p["do_center_crop"]:
        img = center_crop(img, p["crop_size"]["height"], p["crop_size"]["width"])
    if p["do_rescale"]:
        img = (img.astype(np.float64) * p["rescale_factor"]).astype(np.float32)
    if p["do_normalize"]:
        if not np.issubdtype(img.dtype, np.floating):
            img = img.astype(np.float32)
        mean, std = p["image_mean"], p["image_std"]
        if not isinstance(mean, (list, tuple)):
            mean = [mean] * 3
        if not isinstance(std, (list, tuple)):
            std = [std] * 3
        img = (img - np.array(mean, dtype=img.dtype)) / np.array(std, dtype=img.dtype)
    return np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32)


# --------------------------------------------------------------------------
# Synthetic images
# --------------------------------------------------------------------------


def scene(w, h, seed):
    """A test picture with what resampling and chroma subsampling care
    about: smooth gradients, fine stripes, a hard-edged saturated box and
    noise.  (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin(x * 0.7) * np.cos(y * 0.3)
    img = np.stack([r, g, b], axis=2) + rng.normal(0, 12, (h, w, 3))
    x0, x1, y0, y1 = w // 4, max(w // 2, w // 4 + 1), h // 3, max(2 * h // 3, h // 3 + 1)
    img[y0:y1, x0:x1] = [255, 0, 40]
    img[y0:y1, x0:x0 + max(1, w // 40)] = [0, 0, 0]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data +
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, depth, ctype, plte=None, trns=None, interlace=False, gama=None):
    """Hand-made PNG writer for what PIL cannot save: 16-bit colour,
    1/2/4-bit grey, short palettes, Adam7.  samples: (H, W, channels)
    integers in [0, 2**depth)."""
    h, w = samples.shape[:2]

    def rows(a):
        out = bytearray()
        for row in a:
            flat = row.reshape(-1).astype(np.int64)
            if depth == 16:
                data = flat.astype(">u2").tobytes()
            elif depth == 8:
                data = flat.astype(np.uint8).tobytes()
            else:
                per = 8 // depth
                flat = np.concatenate([flat, np.zeros((-len(flat)) % per, np.int64)]).reshape(-1, per)
                shifts = np.array([8 - depth * (i + 1) for i in range(per)])
                data = (flat << shifts).sum(axis=1).astype(np.uint8).tobytes()
            out += b"\x00" + data
        return bytes(out)

    if interlace:
        raw = b"".join(rows(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in ADAM7
                       if samples[y0::dy, x0::dx].size)
    else:
        raw = rows(samples)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if gama is not None:
        out += png_chunk(b"gAMA", struct.pack(">I", gama))
    if plte is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(raw, 9))
    out += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(out)


def cmd_gen(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(20240)
    n = 0

    def path(name):
        nonlocal n
        n += 1
        return os.path.join(outdir, name)

    # JPEG through PIL (libjpeg): chroma subsamplings, progressive, odd sizes
    for w, h in [(301, 201), (225, 224), (224, 225), (1000, 333), (3, 3), (1, 1), (17, 999), (640, 480)]:
        img = Image.fromarray(scene(w, h, w * 7 + h))
        img.save(path("j420_%dx%d.jpg" % (w, h)), quality=90, subsampling=2)
        if w * h < 400000:
            img.save(path("j444_%dx%d.jpg" % (w, h)), quality=95, subsampling=0)
    s = Image.fromarray(scene(301, 201, 5))
    s.save(path("j422_301x201.jpg"), quality=85, subsampling=1)
    s.save(path("jprog420_301x201.jpg"), quality=80, subsampling=2, progressive=True)
    Image.fromarray(scene(1000, 333, 6)).save(path("jprog444_1000x333.jpg"), quality=92,
                                              subsampling=0, progressive=True, optimize=True)
    s.convert("L").save(path("jgray_301x201.jpg"), quality=90)
    Image.fromarray(scene(3, 3, 8)).convert("L").save(path("jgray_3x3.jpg"))
    Image.fromarray(np.concatenate([scene(64, 48, 9), rng.integers(0, 256, (48, 64, 1), np.uint8)],
                                   axis=2), "CMYK").save(path("jcmyk_64x48.jpg"), quality=90)

    # PNG through PIL
    s = scene(301, 201, 10)
    Image.fromarray(s).save(path("p_rgb_301x201.png"))
    Image.fromarray(scene(225, 224, 11)).convert("L").save(path("p_gray_225x224.png"))
    Image.fromarray(scene(1000, 333, 12)).quantize(200).save(path("p_pal_1000x333.png"))
    rgba = np.concatenate([s, rng.integers(0, 256, (201, 301, 1), np.uint8)], axis=2)
    rgba[:10, :10, 3] = 0  # fully transparent corner: colour must still show
    Image.fromarray(rgba, "RGBA").save(path("p_rgba_301x201.png"))
    Image.fromarray(np.stack([scene(33, 17, 13)[:, :, 0], rng.integers(0, 256, (17, 33), np.uint8)],
                             axis=2), "LA").save(path("p_la_33x17.png"))
    Image.fromarray(scene(37, 23, 14)).convert("1").save(path("p_1bit_37x23.png"))
    g16 = (scene(301, 201, 15)[:, :, 1].astype(np.uint16) * 257 + rng.integers(0, 256, (201, 301))
           ).astype(np.uint16)
    Image.fromarray(g16, "I;16").save(path("p_gray16_301x201.png"))
    Image.fromarray(scene(3, 3, 16)).save(path("p_rgb_3x3.png"))
    Image.fromarray(s).convert("P", palette=Image.ADAPTIVE, colors=16).save(
        path("p_pal16_301x201.png"), transparency=3)

    # PNG by hand: 16-bit colour, sub-byte depths, short palette, Adam7, tRNS, gAMA
    def noise16(h, w, c):
        return rng.integers(0, 65536, (h, w, c))
    write_png(path("c_rgb16_301x201.png"), scene(301, 201, 17).astype(np.int64) * 257 +
              rng.integers(0, 256, (201, 301, 3)), 16, 2)
    write_png(path("c_rgba16_31x17.png"), noise16(17, 31, 4), 16, 6)
    write_png(path("c_la16_19x7.png"), noise16(7, 19, 2), 16, 4)
    for d in (1, 2, 4):
        write_png(path("c_gray%d_21x13.png" % d), rng.integers(0, 1 << d, (13, 21, 1)), d, 0)
        plte = rng.integers(0, 256, ((1 << d), 3))
        write_png(path("c_pal%d_23x11.png" % d), rng.integers(0, 1 << d, (11, 23, 1)), d, 3, plte=plte)
    # PLTE with 4 entries but indexes up to 255: Pillow shows grey i there
    write_png(path("c_palshort_40x30.png"), rng.integers(0, 256, (30, 40, 1)), 8, 3,
              plte=rng.integers(0, 256, (4, 3)))
    write_png(path("c_i_rgb8_33x29.png"), scene(33, 29, 18), 8, 2, interlace=True)
    write_png(path("c_i_gray1_9x7.png"), rng.integers(0, 2, (7, 9, 1)), 1, 0, interlace=True)
    write_png(path("c_i_pal4_17x11.png"), rng.integers(0, 16, (11, 17, 1)), 4, 3, interlace=True,
              plte=rng.integers(0, 256, (16, 3)))
    write_png(path("c_i_rgba16_13x9.png"), noise16(9, 13, 4), 16, 6, interlace=True)
    write_png(path("c_i_gray16_301x201.png"), noise16(201, 301, 1), 16, 0, interlace=True)
    write_png(path("c_rgb_trns_gama_45x31.png"), scene(45, 31, 19), 8, 2,
              trns=struct.pack(">HHH", 255, 0, 40), gama=10000)
    write_png(path("c_pal_trns_20x20.png"), rng.integers(0, 8, (20, 20, 1)), 8, 3,
              plte=rng.integers(0, 256, (8, 3)), trns=bytes([0, 128, 255]))
    print("wrote %d images to %s" % (n, outdir))


# --------------------------------------------------------------------------
# Fixtures for tests/unit/test_resample.c
# --------------------------------------------------------------------------

RESAMPLE_CASES = [
    # name, source w, h, destination w, h
    ("up_3x3_224", 3, 3, 224, 224),
    ("up_10x7_33x50", 10, 7, 33, 50),
    ("up_1x1_5x5", 1, 1, 5, 5),
    ("down_301x201_336x224", 301, 201, 336, 224),
    ("down_1000x333_672x224", 1000, 333, 672, 224),
    ("down_5x5_1x1", 5, 5, 1, 1),
    ("down_2000x3_7x3", 2000, 3, 7, 3),
    ("down_640x480_298x224", 640, 480, 298, 224),
    ("mixed_100x50_40x80", 100, 50, 40, 80),
    ("col_1x100_1x10", 1, 100, 1, 10),
    ("row_100x1_224x2", 100, 1, 224, 2),
    ("row_1x1_1x7", 1, 1, 1, 7),
    ("samew_100x50_100x30", 100, 50, 100, 30),
    ("sameh_100x50_40x50", 100, 50, 40, 50),
    ("same_31x17", 31, 17, 31, 17),
    ("odd_225x224_224x224", 225, 224, 224, 224),
    ("edges_64x64_224x224", 64, 64, 224, 224),
    # extreme aspect: shortest edge 224 of a 2x150 strip (the windowed path)
    ("strip_2x150_224x16800", 2, 150, 224, 16800),
]


def cmd_resample_fixtures(outdir):
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(7)
    with open(os.path.join(outdir, "cases.txt"), "w") as idx:
        for name, sw, sh, dw, dh in RESAMPLE_CASES:
            if name.startswith("edges"):
                # hard 0/255 checkerboard: maximal overshoot, exercises clipping
                a = ((np.indices((sh, sw)).sum(axis=0) // 3) % 2 * 255).astype(np.uint8)
                a = np.repeat(a[:, :, None], 3, axis=2)
                a[:, :, 1] = 255 - a[:, :, 1]
            else:
                a = rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8)
            out = np.asarray(Image.fromarray(a).resize((dw, dh), resample=BICUBIC))
            a.tofile(os.path.join(outdir, name + ".in"))
            out.tofile(os.path.join(outdir, name + ".out"))
            idx.write("%s %d %d %d %d\n" % (name, sw, sh, dw, dh))


# --------------------------------------------------------------------------
# expect / compare
# --------------------------------------------------------------------------


def parse_configs(specs):
    out = []
    for spec in specs or ["default=-"]:
        name, _, path = spec.partition("=")
        d = {} if path in ("", "-") else json.load(open(path))
        out.append((name, processor_from_json(d)))
    return out


def read_list(path):
    with open(path, "rb") as f:
        return [os.fsdecode(line.rstrip(b"\n")) for line in f if line.strip()]


def cmd_expect(args):
    os.makedirs(args.out, exist_ok=True)
    configs = parse_configs(args.config)
    for i, img_path in enumerate(read_list(args.list)):
        base = os.path.join(args.out, str(i))
        try:
            rgb = load_rgb(img_path)
        except Exception as e:  # Pillow refuses the file: record why
            with open(base + ".err", "w") as f:
                f.write("%s: %s\n" % (type(e).__name__, str(e).replace("\n", " ")))
            continue
        rgb.tofile(base + ".rgb")
        with open(base + ".shape", "w") as f:
            f.write("%d %d\n" % (rgb.shape[1], rgb.shape[0]))
        for name, p in configs:
            if p["do_resize"]:
                oh, ow = resize_output_size(rgb.shape[0], rgb.shape[1], p["size"])
                if oh * ow > MAX_REF_RESIZE_PIXELS:
                    with open("%s.%s.skip" % (base, name), "w") as f:
                        f.write("%s resize to %dx%d" % (name, ow, oh))
                    continue
            clip_preprocess(rgb, p).tofile("%s.%s.f32" % (base, name))


def read_text(path, default=""):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return default


def load_known(path):
    """Lines "refuse<TAB>BASENAME<TAB>REASON" (clipdex rejects what Pillow
    decodes) or "decode<TAB>BASENAME<TAB>REASON" (the other way round):
    deliberate differences.  Returns {(kind, basename): reason}."""
    known = {}
    if path:
        for line in read_text(path).splitlines():
            if line and not line.startswith("#"):
                kind, name, reason = (line.split("\t", 2) + ["", ""])[:3]
                known[(kind, name)] = reason
    return known


def cmd_compare(args):
    names = args.config or ["default"]
    known = load_known(args.known)
    n_images = n_tensors = n_known = n_skipped = 0
    worst = 0.0
    for i, img_path in enumerate(read_list(args.list)):
        exp = os.path.join(args.exp, str(i))
        got = os.path.join(args.got, str(i))
        label = os.path.relpath(img_path, args.root) if args.root else img_path
        rc = read_text(got + ".rc", "missing").strip()
        err = read_text(got + ".stderr").rstrip("\n")
        pil_err = read_text(exp + ".err").strip()
        if rc not in ("0", "1"):
            print("not ok %s: driver exit status %s (crash?) %s" % (label, rc, err[:200]))
            continue
        if rc == "1" and ("\n" in err or not err):
            print("not ok %s: error output is not exactly one line: %r" % (label, err[:300]))
            continue
        base = os.path.basename(img_path)
        if pil_err:
            if rc == "1":
                print("ok %s: both refuse (clipdex: %s | Pillow: %s)" % (label, err, pil_err))
            elif ("decode", base) in known:
                n_known += 1
                print("ok %s: decoded on purpose (%s); Pillow: %s" %
                      (label, known[("decode", base)], pil_err))
            else:
                print("not ok %s: Pillow refuses (%s) but clipdex decoded it" % (label, pil_err))
            continue
        if rc == "1":
            if ("refuse", base) in known:
                n_known += 1
                print("ok %s: refused on purpose (%s): %s" % (label, known[("refuse", base)], err))
            else:
                print("not ok %s: clipdex refuses what Pillow decodes: %s" % (label, err))
            continue
        exp_rgb = np.fromfile(exp + ".rgb", np.uint8)
        got_rgb = np.fromfile(got + ".rgb", np.uint8) if os.path.exists(got + ".rgb") else None
        if got_rgb is None or got_rgb.shape != exp_rgb.shape:
            print("not ok %s: RGB size differs (%s vs Pillow %s)" %
                  (label, None if got_rgb is None else got_rgb.size, exp_rgb.size))
            continue
        if not np.array_equal(got_rgb, exp_rgb):
            d = np.abs(got_rgb.astype(int) - exp_rgb.astype(int))
            print("not ok %s: RGB differs from Pillow at %d bytes, max %d, first at byte %d" %
                  (label, int((d > 0).sum()), int(d.max()), int(np.argmax(d > 0))))
            continue
        n_images += 1
        problems, diffs = [], []
        for name in names:
            skip = read_text("%s.%s.skip" % (exp, name))
            if skip:
                n_skipped += 1
                diffs.append("%s not compared (%s)" % (name, skip))
                continue
            e = np.fromfile("%s.%s.f32" % (exp, name), np.float32)
            gp = "%s.%s.f32" % (got, name)
            g = np.fromfile(gp, np.float32) if os.path.exists(gp) else None
            if g is None or g.shape != e.shape:
                problems.append("%s: tensor size %s vs %s" % (name, None if g is None else g.size, e.size))
                continue
            md = float(np.abs(g.astype(np.float64) - e).max())
            worst = max(worst, md)
            n_tensors += 1
            diffs.append("%s %.1e" % (name, md))
            if not md <= TENSOR_TOL:
                problems.append("%s: max |diff| %.3g > %g" % (name, md, TENSOR_TOL))
        if problems:
            print("not ok %s: RGB identical but %s" % (label, "; ".join(problems)))
        else:
            print("ok %s: RGB identical to Pillow, tensors max |diff| %s" % (label, ", ".join(diffs)))
    print("# summary: %d images with pixels identical to Pillow; %d tensors compared, max |diff| "
          "%.3g; %d tensors skipped (huge resize); %d deliberate differences" %
          (n_images, n_tensors, worst, n_skipped, n_known))


def main():
    # Pillow warns about odd files (bytes tRNS, malformed MPO); the test
    # output is TAP, so keep stderr for real errors.
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    r = sub.add_parser("resample-fixtures")
    r.add_argument("dir")
    e = sub.add_parser("expect")
    e.add_argument("--list", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--config", action="append")
    c = sub.add_parser("compare")
    c.add_argument("--list", required=True)
    c.add_argument("--exp", required=True)
    c.add_argument("--got", required=True)
    c.add_argument("--config", action="append")
    c.add_argument("--known")
    c.add_argument("--root", help="print image paths relative to this directory")
    a = ap.parse_args()
    if a.cmd == "gen":
        cmd_gen(a.dir)
    elif a.cmd == "resample-fixtures":
        cmd_resample_fixtures(a.dir)
    elif a.cmd == "expect":
        cmd_expect(a)
    else:
        cmd_compare(a)


if __name__ == "__main__":
    sys.exit(main())
