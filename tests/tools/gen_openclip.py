#!/usr/bin/python3
"""gen_openclip.py - write a random-weight OpenCLIP model directory in the
layout LAION, DataComp and DFN publish on the Hub: open_clip_config.json
({"model_cfg": ..., "preprocess_cfg": ...}) and open_clip_model.safetensors
or open_clip_pytorch_model.bin, with open_clip's state_dict names (model.py
CLIP, transformer.py VisionTransformer / ResidualAttentionBlock):

  visual.conv1.weight (W,3,P,P)  visual.class_embedding (W)
  visual.positional_embedding (G*G+1, W)  visual.ln_pre.{weight,bias}
  visual.transformer.resblocks.I.{ln_1, attn.in_proj_weight (3W,W),
      attn.in_proj_bias (3W), attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}
  visual.ln_post.{weight,bias}  visual.proj (W, E)
  token_embedding.weight (V, Wt)  positional_embedding (T, Wt)
  transformer.resblocks.I.*  ln_final.{weight,bias}  text_projection (Wt, E)
  logit_scale ([])

No tokenizer files: open_clip uses its bundled vocabulary whatever the
repository carries (--with-hf-files adds a config.json and the HF CLIP
weights too, as LAION's repositories have both layouts).

usage: gen_openclip.py OUTDIR [--preset tiny|b32-2l] [--quick-gelu]
        [--dtype F32|F16|BF16] [--format safetensors|bin] [--seed N]
        [--resize-mode shortest|longest|squash] [--image-size N] [--patch-size N]
        [--mean a,b,c --std a,b,c] [--model-cfg KEY=JSON ...]
        [--vision-cfg KEY=JSON ...] [--text-cfg KEY=JSON ...] [--custom-text]
"""
import argparse
import json
import os
import sys
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model import write_bin, write_safetensors  # noqa: E402  (the repo's own writers)

PRESETS = {
    # open_clip key names; small enough for many test runs
    "tiny": dict(embed_dim=32,
                 vision_cfg=dict(image_size=224, layers=2, width=64, head_width=16, patch_size=32),
                 text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2)),
    # ViT-B-32 widths (laion/CLIP-ViT-B-32-laion2B-s34B-b79K) with 2 layers per tower
    "b32-2l": dict(embed_dim=512,
                   vision_cfg=dict(image_size=224, layers=2, width=768, patch_size=32),
                   text_cfg=dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=2)),
}


def make_tensors(mc, rng, text_prefix=""):
    t = OrderedDict()

    def lin(name, out_f, in_f):
        t[name + ".weight"] = rng.standard_normal((out_f, in_f), dtype=np.float32) / np.sqrt(in_f)
        t[name + ".bias"] = rng.standard_normal(out_f, dtype=np.float32) * 0.1

    def ln(name, c):
        t[name + ".weight"] = 1.0 + rng.standard_normal(c, dtype=np.float32) * 0.1
        t[name + ".bias"] = rng.standard_normal(c, dtype=np.float32) * 0.1

    def blocks(prefix, w, mlp_ratio, n):
        f = int(w * mlp_ratio)
        for i in range(n):
            bp = "%stransformer.resblocks.%d" % (prefix, i)
            ln(bp + ".ln_1", w)
            t[bp + ".attn.in_proj_weight"] = rng.standard_normal((3 * w, w), dtype=np.float32) / np.sqrt(w)
            t[bp + ".attn.in_proj_bias"] = rng.standard_normal(3 * w, dtype=np.float32) * 0.1
            lin(bp + ".attn.out_proj", w, w)
            ln(bp + ".ln_2", w)
            lin(bp + ".mlp.c_fc", f, w)
            lin(bp + ".mlp.c_proj", w, f)

    vc, tc, E = mc["vision_cfg"], mc["text_cfg"], mc["embed_dim"]
    W, P, S = vc["width"], vc.get("patch_size", 16), vc.get("image_size", 224)
    S = S[0] if isinstance(S, list) else S  # to_2tuple: square only here
    P = P[0] if isinstance(P, list) else P
    G = S // P
    t["visual.class_embedding"] = rng.standard_normal(W, dtype=np.float32) * 0.5
    t["visual.positional_embedding"] = rng.standard_normal((G * G + 1, W), dtype=np.float32) * 0.5
    t["visual.proj"] = rng.standard_normal((W, E), dtype=np.float32) / np.sqrt(W)
    t["visual.conv1.weight"] = rng.standard_normal((W, 3, P, P), dtype=np.float32) / np.sqrt(3 * P * P)
    ln("visual.ln_pre", W)
    blocks("visual.", W, vc.get("mlp_ratio", 4.0), vc.get("layers", 12))
    ln("visual.ln_post", W)

    Wt, T, V = tc.get("width", 512), tc.get("context_length", 77), tc.get("vocab_size", 49408)
    x = text_prefix
    t[x + "positional_embedding"] = rng.standard_normal((T, Wt), dtype=np.float32) * 0.5
    t[x + "text_projection"] = rng.standard_normal((Wt, E), dtype=np.float32) / np.sqrt(Wt)
    t[x + "token_embedding.weight"] = rng.standard_normal((V, Wt), dtype=np.float32) * 0.5
    blocks(x, Wt, tc.get("mlp_ratio", 4.0), tc.get("layers", 12))
    ln(x + "ln_final", Wt)
    t["logit_scale"] = np.array(np.log(1 / 0.07), dtype=np.float32)
    return t


def kv(items):
    out = {}
    for s in items:
        k, v = s.split("=", 1)
        out[k] = json.loads(v)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--quick-gelu", action="store_true")
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--format", default="safetensors", choices=["safetensors", "bin"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resize-mode", choices=["shortest", "longest", "squash"])
    ap.add_argument("--mean")
    ap.add_argument("--std")
    ap.add_argument("--custom-text", action="store_true")
    ap.add_argument("--model-cfg", action="append", default=[])
    ap.add_argument("--vision-cfg", action="append", default=[])
    ap.add_argument("--text-cfg", action="append", default=[])
    a = ap.parse_args()

    p = PRESETS[a.preset]
    mc = OrderedDict(embed_dim=p["embed_dim"])
    if a.quick_gelu:
        mc["quick_gelu"] = True
    mc["vision_cfg"] = dict(p["vision_cfg"], **kv(a.vision_cfg))
    mc["text_cfg"] = dict(p["text_cfg"], **kv(a.text_cfg))
    if a.custom_text:
        mc["custom_text"] = True
    mc.update(kv(a.model_cfg))
    pp = OrderedDict()
    if a.mean:
        pp["mean"] = [float(x) for x in a.mean.split(",")]
    if a.std:
        pp["std"] = [float(x) for x in a.std.split(",")]
    pp["interpolation"] = "bicubic"
    if a.resize_mode:
        pp["resize_mode"] = a.resize_mode

    os.makedirs(a.outdir, exist_ok=True)
    with open(os.path.join(a.outdir, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": mc, "preprocess_cfg": pp}, f, indent=2)
    rng = np.random.default_rng(a.seed)
    t = make_tensors(mc, rng, "text." if a.custom_text else "")
    if a.format == "safetensors":
        write_safetensors(os.path.join(a.outdir, "open_clip_model.safetensors"), t, a.dtype)
    else:
        write_bin(os.path.join(a.outdir, "open_clip_pytorch_model.bin"), t, a.dtype)


if __name__ == "__main__":
    main()
