#!/usr/bin/python3
"""clip_ref.py - an independent PyTorch reference for clipdex's engine.

Written from the CLIP architecture (Radford et al. 2021, OpenAI's clip
package and transformers' CLIPModel as documented), not from clipdex's C
code: its own safetensors reader, its own BPE tokenizer, its own
CLIPImageProcessor-style preprocessing with Pillow, and the two towers in
plain torch ops.  Tests compare the C engine's output against it.

As a command: clip_ref.py MODEL_DIR [--text T]... [--image P]... prints one
JSON line per input like `clipdex embed --format json`.
"""
import argparse
import gzip
import html
import json
import math
import os
import struct
import sys
import unicodedata

import numpy as np
import torch

torch.set_grad_enabled(False)

# ---------------------------------------------------------------- weights


def _read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        raw = data[base + b:base + en]
        shape = e["shape"]
        dt = e["dtype"]
        if dt == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float32)
        elif dt == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        elif dt == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "I64":
            a = np.frombuffer(raw, "<i8")
        else:
            raise ValueError("dtype " + dt)
        out[name] = torch.from_numpy(a.reshape(shape).copy())
    return out


def load_weights(model_dir):
    p = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(p):
        return _read_safetensors(p)
    p = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(p):
        with open(p) as f:
            wm = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            out.update(_read_safetensors(os.path.join(model_dir, shard)))
        return out
    sd = torch.load(os.path.join(model_dir, "pytorch_model.bin"), map_location="cpu")
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


# ---------------------------------------------------------------- tokenizer
# CLIP's byte-level BPE (the algorithm of OpenAI's simple_tokenizer), minus
# ftfy: the test texts are chosen so that ftfy would not change them.


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _cat(ch):
    return unicodedata.category(ch)


def _pretokenize(text):
    """The CLIP pattern: specials | contractions | letters+ | one number |
    runs of other non-space chars.  Written as a scanner (no `regex`)."""
    out, i, n = [], 0, len(text)
    contractions = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        matched = False
        for sp in ("<|startoftext|>", "<|endoftext|>"):
            if text.startswith(sp, i):
                out.append(sp)
                i += len(sp)
                matched = True
                break
        if matched:
            continue
        for ct in contractions:
            if text.startswith(ct, i):
                out.append(ct)
                i += len(ct)
                matched = True
                break
        if matched:
            continue
        if _cat(c).startswith("L"):
            j = i
            while j < n and _cat(text[j]).startswith("L"):
                j += 1
        elif _cat(c).startswith("N"):
            j = i + 1
        else:
            j = i
            while j < n and not text[j].isspace() and not _cat(text[j])[0] in "LN":
                j += 1
        out.append(text[i:j])
        i = j
    return out


class Tokenizer:
    def __init__(self, vocab_json, merges_txt):
        with open(vocab_json, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(merges_txt, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(l.split()) for l in lines[1:] if l.strip()]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.b2u = _bytes_to_unicode()
        self.sot = self.encoder["<|startoftext|>"]
        self.eot = self.encoder["<|endoftext|>"]

    def _bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    new.append(word[i] + word[i + 1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return word

    def encode(self, text, context_length=77):
        text = html.unescape(html.unescape(text)).strip()
        text = unicodedata.normalize("NFC", text)
        text = " ".join(text.split()).lower()
        ids = []
        for tok in _pretokenize(text):
            if tok in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.encoder[tok])
                continue
            u = "".join(self.b2u[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[p] for p in self._bpe(u))
        ids = [self.sot] + ids + [self.eot]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = self.eot
        return ids


# ---------------------------------------------------------------- images


def preprocess(path, pre):
    """CLIPImageProcessor as transformers applies it: RGB, shortest edge to
    `size` (other side truncated), Pillow BICUBIC, center crop, rescale,
    normalise.  Returns a (3,H,W) float32 tensor."""
    from PIL import Image
    im = Image.open(path)
    im = im.convert("RGB")
    size = pre["size"]["shortest_edge"] if isinstance(pre["size"], dict) else pre["size"]
    crop = pre["crop_size"]
    ch, cw = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    nw, nh = (size, new_long) if w <= h else (new_long, size)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample=Image.BICUBIC)
    a = np.asarray(im)
    top, left = (nh - ch) // 2, (nw - cw) // 2
    a = a[top:top + ch, left:left + cw]
    a = (a.astype(np.float64) * pre["rescale_factor"]).astype(np.float32)
    mean = np.array(pre["image_mean"], dtype=np.float32)
    std = np.array(pre["image_std"], dtype=np.float32)
    a = (a - mean) / std
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


# ---------------------------------------------------------------- model


class CLIPRef:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        with open(os.path.join(model_dir, "preprocessor_config.json")) as f:
            self.pre = json.load(f)
        self.w = load_weights(model_dir)
        self.tok = Tokenizer(os.path.join(model_dir, "vocab.json"), os.path.join(model_dir, "merges.txt"))

    def _act(self, x, name):
        if name == "quick_gelu":
            return x * torch.sigmoid(1.702 * x)
        if name == "gelu":
            return torch.nn.functional.gelu(x)
        raise ValueError(name)

    def _block(self, x, p, heads, act, eps, causal):
        w = self.w
        B, T, C = x.shape
        D = C // heads
        h = torch.nn.functional.layer_norm(x, (C,), w[p + ".layer_norm1.weight"], w[p + ".layer_norm1.bias"], eps)
        q = torch.nn.functional.linear(h, w[p + ".self_attn.q_proj.weight"], w[p + ".self_attn.q_proj.bias"]) * D ** -0.5
        k = torch.nn.functional.linear(h, w[p + ".self_attn.k_proj.weight"], w[p + ".self_attn.k_proj.bias"])
        v = torch.nn.functional.linear(h, w[p + ".self_attn.v_proj.weight"], w[p + ".self_attn.v_proj.bias"])
        q, k, v = (t.view(B, T, heads, D).transpose(1, 2) for t in (q, k, v))
        att = q @ k.transpose(-1, -2)
        if causal:
            mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
            att = att.masked_fill(mask, float("-inf"))
        att = att.softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + torch.nn.functional.linear(o, w[p + ".self_attn.out_proj.weight"], w[p + ".self_attn.out_proj.bias"])
        h = torch.nn.functional.layer_norm(x, (C,), w[p + ".layer_norm2.weight"], w[p + ".layer_norm2.bias"], eps)
        h = self._act(torch.nn.functional.linear(h, w[p + ".mlp.fc1.weight"], w[p + ".mlp.fc1.bias"]), act)
        return x + torch.nn.functional.linear(h, w[p + ".mlp.fc2.weight"], w[p + ".mlp.fc2.bias"])

    def encode_ids(self, ids, pad_to=None):
        """Text embedding (unnormalised projection).  pad_to runs the
        sequence padded as the reference implementations do (the result must
        not change: attention is causal)."""
        c = self.cfg["text_config"]
        w = self.w
        T = len(ids)
        seq = list(ids) + [0] * ((pad_to or T) - T)
        t = torch.tensor([seq])
        x = w["text_model.embeddings.token_embedding.weight"][t] + \
            w["text_model.embeddings.position_embedding.weight"][: len(seq)][None]
        for i in range(c["num_hidden_layers"]):
            x = self._block(x, "text_model.encoder.layers.%d" % i, c["num_attention_heads"],
                            c["hidden_act"], c.get("layer_norm_eps", 1e-5), True)
        C = x.shape[-1]
        x = torch.nn.functional.layer_norm(x, (C,), w["text_model.final_layer_norm.weight"],
                                           w["text_model.final_layer_norm.bias"], c.get("layer_norm_eps", 1e-5))
        pos = ids.index(self.tok.eot)  # first end-of-text token
        return (x[0, pos] @ w["text_projection.weight"].T)

    def encode_pixels(self, pix):
        """pix (B,3,S,S) -> (B,E) unnormalised."""
        c = self.cfg["vision_config"]
        w = self.w
        P = c["patch_size"]
        x = torch.nn.functional.conv2d(pix, w["vision_model.embeddings.patch_embedding.weight"], stride=P)
        B, C = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)
        cls = w["vision_model.embeddings.class_embedding"].expand(B, 1, C)
        x = torch.cat([cls, x], 1) + w["vision_model.embeddings.position_embedding.weight"][None]
        eps = c.get("layer_norm_eps", 1e-5)
        x = torch.nn.functional.layer_norm(x, (C,), w["vision_model.pre_layrnorm.weight"],
                                           w["vision_model.pre_layrnorm.bias"], eps)
        for i in range(c["num_hidden_layers"]):
            x = self._block(x, "vision_model.encoder.layers.%d" % i, c["num_attention_heads"],
                            c["hidden_act"], eps, False)
        x = torch.nn.functional.layer_norm(x[:, 0], (C,), w["vision_model.post_layernorm.weight"],
                                           w["vision_model.post_layernorm.bias"], eps)
        return x @ w["visual_projection.weight"].T

    def embed_text(self, text, normalize=True):
        e = self.encode_ids(self.tok.encode(text, self.cfg["text_config"]["max_position_embeddings"]))
        return e / e.norm() if normalize else e

    def embed_image(self, path, normalize=True):
        e = self.encode_pixels(preprocess(path, self.pre)[None])[0]
        return e / e.norm() if normalize else e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("--image", action="append", default=[])
    ap.add_argument("--raw", action="store_true")
    a = ap.parse_args()
    m = CLIPRef(a.model)
    for t in a.text:
        e = m.embed_text(t, not a.raw)
        print(json.dumps({"type": "text", "input": t, "embedding": [float(v) for v in e]}))
    for p in a.image:
        e = m.embed_image(p, not a.raw)
        print(json.dumps({"type": "image", "input": p, "embedding": [float(v) for v in e]}))


if __name__ == "__main__":
    main()
