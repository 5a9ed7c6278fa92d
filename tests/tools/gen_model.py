#!/usr/bin/python3
"""gen_model.py - write a random-weight CLIP model directory in the exact
Hugging Face layout (config.json, weights, vocab.json, merges.txt,
preprocessor_config.json), for tests and benchmarks.

Weights are written the way the Hub ships them: model.safetensors (written
here by hand: 8-byte header length, JSON header, raw little-endian data),
sharded safetensors with model.safetensors.index.json, or pytorch_model.bin
through torch.save.  Tensor names are transformers' CLIPModel state_dict
keys.  Nothing here is imported from the C code under test.

usage: gen_model.py OUTDIR [--preset tiny|vitb32] [--act quick_gelu|gelu]
                    [--dtype F32|F16|BF16] [--format safetensors|sharded|bin|bin-legacy]
                    [--seed N] [--vocab-dir DIR] [--ln-eps X] [--vision-act ACT]
                    [--outliers]
                    [--set text.KEY=N|vision.KEY=N|projection_dim=N ...]

--ln-eps and --set vary the config the loader must honour (layer-norm
epsilon, hidden sizes, heads, layers, patch and image sizes, projection
width, context length); the preprocessor config follows image_size.
--outliers gives CLIP-like outlier channels (the reduced precision tests).
"""
import argparse
import json
import os
import shutil
import struct
from collections import OrderedDict

import numpy as np

PRESETS = {
    # width 64, 2 layers: fast enough for many test runs.
    "tiny": dict(projection_dim=32,
                 text=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=4, max_position_embeddings=77,
                           vocab_size=49408),
                 vision=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=4, image_size=224, patch_size=32)),
    # openai/clip-vit-base-patch32 dimensions.
    "vitb32": dict(projection_dim=512,
                   text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                             num_attention_heads=8, max_position_embeddings=77,
                             vocab_size=49408),
                   vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, image_size=224, patch_size=32)),
}


def make_tensors(p, rng):
    """Random weights scaled so activations stay O(1) (std = fan_in^-1/2),
    which keeps every layer's contribution visible in the output."""
    t = OrderedDict()

    def lin(name, out_f, in_f, bias=True):
        t[name + ".weight"] = rng.standard_normal((out_f, in_f), dtype=np.float32) / np.sqrt(in_f)
        if bias:
            t[name + ".bias"] = rng.standard_normal(out_f, dtype=np.float32) * 0.1

    def ln(name, c):
        t[name + ".weight"] = 1.0 + rng.standard_normal(c, dtype=np.float32) * 0.1
        t[name + ".bias"] = rng.standard_normal(c, dtype=np.float32) * 0.1

    def layers(prefix, c, f, n):
        for i in range(n):
            lp = "%s.encoder.layers.%d" % (prefix, i)
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                lin(lp + ".self_attn." + proj, c, c)
            ln(lp + ".layer_norm1", c)
            lin(lp + ".mlp.fc1", f, c)
            lin(lp + ".mlp.fc2", c, f)
            ln(lp + ".layer_norm2", c)

    tc, vc = p["text"], p["vision"]
    C, T, V = tc["hidden_size"], tc["max_position_embeddings"], tc["vocab_size"]
    t["text_model.embeddings.token_embedding.weight"] = rng.standard_normal((V, C), dtype=np.float32) * 0.5
    t["text_model.embeddings.position_embedding.weight"] = rng.standard_normal((T, C), dtype=np.float32) * 0.5
    t["text_model.embeddings.position_ids"] = np.arange(T, dtype=np.int64)[None, :]
    layers("text_model", C, tc["intermediate_size"], tc["num_hidden_layers"])
    ln("text_model.final_layer_norm", C)

    Cv, S, P = vc["hidden_size"], vc["image_size"], vc["patch_size"]
    N = (S // P) ** 2 + 1
    t["vision_model.embeddings.class_embedding"] = rng.standard_normal(Cv, dtype=np.float32) * 0.5
    t["vision_model.embeddings.patch_embedding.weight"] = (
        rng.standard_normal((Cv, 3, P, P), dtype=np.float32) / np.sqrt(3 * P * P))
    t["vision_model.embeddings.position_embedding.weight"] = rng.standard_normal((N, Cv), dtype=np.float32) * 0.5
    t["vision_model.embeddings.position_ids"] = np.arange(N, dtype=np.int64)[None, :]
    ln("vision_model.pre_layrnorm", Cv)
    layers("vision_model", Cv, vc["intermediate_size"], vc["num_hidden_layers"])
    ln("vision_model.post_layernorm", Cv)

    E = p["projection_dim"]
    lin("visual_projection", E, Cv, bias=False)
    lin("text_projection", E, C, bias=False)
    t["logit_scale"] = np.array(np.log(1 / 0.07), dtype=np.float32)
    return t


def add_outliers(t, p, rng, n_channels=6):
    """Make a few channels of each tower's layer-norm outputs 20-50x larger
    than the rest, the way real CLIP checkpoints have them: the layer norm
    gain (and bias) of each chosen channel is multiplied by f in every
    block, and the matching input column of the products that read that
    norm (q/k/v after layer_norm1, fc1 after layer_norm2) is divided by
    f times a random factor in [0.5, 2], so the model stays well-scaled
    without being an exact inverse that smoothing could undo for free.
    The same channels in every block, as in real checkpoints."""
    for prefix, cfg in (("text_model", p["text"]), ("vision_model", p["vision"])):
        c = cfg["hidden_size"]
        chans = rng.choice(c, size=n_channels, replace=False)
        f = rng.uniform(20, 50, n_channels).astype(np.float32)
        for i in range(cfg["num_hidden_layers"]):
            lp = "%s.encoder.layers.%d" % (prefix, i)
            for ln, consumers in (("layer_norm1", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
                                  ("layer_norm2", ("mlp.fc1",))):
                t[lp + "." + ln + ".weight"][chans] *= f
                t[lp + "." + ln + ".bias"][chans] *= f
                for name in consumers:
                    u = rng.uniform(0.5, 2.0, n_channels).astype(np.float32)
                    t[lp + "." + name + ".weight"][:, chans] /= f * u
    return t


def to_storage(a, dtype):
    """numpy array -> (safetensors dtype name, raw little-endian bytes)."""
    if a.dtype == np.int64:
        return "I64", a.astype("<i8").tobytes()
    if dtype == "F32":
        return "F32", a.astype("<f4").tobytes()
    if dtype == "F16":
        return "F16", a.astype("<f2").tobytes()
    if dtype == "BF16":
        # Round to nearest even, as torch's .to(torch.bfloat16) does.
        u = a.astype("<f4").view("<u4").astype(np.uint64)
        u = ((u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)).astype("<u2")
        return "BF16", u.tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, dtype):
    header, blobs, off = OrderedDict(), [], 0
    for name, a in tensors.items():
        dt, raw = to_storage(a, dtype)
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # keep data 8-byte aligned, as safetensors does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_sharded(outdir, tensors, dtype, n_shards=2):
    names = list(tensors)
    per = (len(names) + n_shards - 1) // n_shards
    weight_map = {}
    total = 0
    for s in range(n_shards):
        fname = "model-%05d-of-%05d.safetensors" % (s + 1, n_shards)
        part = OrderedDict((n, tensors[n]) for n in names[s * per:(s + 1) * per])
        write_safetensors(os.path.join(outdir, fname), part, dtype)
        for n, a in part.items():
            weight_map[n] = fname
            total += a.nbytes
    with open(os.path.join(outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def write_bin(path, tensors, dtype, legacy=False):
    import torch
    tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    sd = OrderedDict()
    for n, a in tensors.items():
        x = torch.from_numpy(a.copy())  # keeps 0-d tensors 0-d (ascontiguousarray would not)
        sd[n] = x if a.dtype == np.int64 else x.to(tdt)
    # legacy: the format of PyTorch before 1.6, still on older Hub uploads
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--act", default="quick_gelu", choices=["quick_gelu", "gelu"])
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--format", default="safetensors",
                    choices=["safetensors", "sharded", "bin", "bin-legacy"])
    ap.add_argument("--seed", type=int, default=1)
    # the CLIP vocabulary the repository carries (data/clip)
    ap.add_argument("--vocab-dir", default=os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "data", "clip"))
    ap.add_argument("--vision-act", choices=["quick_gelu", "gelu"], help="the vision tower's (default: --act)")
    ap.add_argument("--ln-eps", type=float, default=1e-5)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=N")
    ap.add_argument("--outliers", action="store_true",
                    help="amplify a few layer-norm output channels 20-50x (see add_outliers)")
    a = ap.parse_args()

    p = json.loads(json.dumps(PRESETS[a.preset]))
    for kv in a.set:
        k, v = kv.split("=", 1)
        if "." in k:
            sec, k = k.split(".", 1)
            p[sec][k] = int(v)
        else:
            p[k] = int(v)
    rng = np.random.default_rng(a.seed)
    tensors = make_tensors(p, rng)
    if a.outliers:
        tensors = add_outliers(tensors, p, rng)
    os.makedirs(a.outdir, exist_ok=True)

    text_cfg = dict(p["text"], hidden_act=a.act, layer_norm_eps=a.ln_eps, model_type="clip_text_model",
                    bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
    vision_cfg = dict(p["vision"], hidden_act=a.vision_act or a.act, layer_norm_eps=a.ln_eps, num_channels=3,
                      model_type="clip_vision_model")
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip",
        "projection_dim": p["projection_dim"], "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0, "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[a.dtype],
        "text_config": text_cfg, "vision_config": vision_cfg,
    }
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    S = p["vision"]["image_size"]
    pre = {"crop_size": {"height": S, "width": S}, "do_center_crop": True, "do_convert_rgb": True,
           "do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": [0.48145466, 0.4578275, 0.40821073],
           "image_processor_type": "CLIPImageProcessor",
           "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
           "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": S}}
    with open(os.path.join(a.outdir, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=2)
    for fn in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(a.vocab_dir, fn), os.path.join(a.outdir, fn))

    if a.format == "safetensors":
        write_safetensors(os.path.join(a.outdir, "model.safetensors"), tensors, a.dtype)
    elif a.format == "sharded":
        write_sharded(a.outdir, tensors, a.dtype)
    else:
        write_bin(os.path.join(a.outdir, "pytorch_model.bin"), tensors, a.dtype,
                  legacy=a.format == "bin-legacy")


if __name__ == "__main__":
    main()
