#!/usr/bin/python3
"""openclip_ref.py - an independent PyTorch reference for OpenCLIP models.

Written from open_clip's sources (src/open_clip/model.py CLIP.encode_image /
encode_text, transformer.py VisionTransformer, TextTransformer,
ResidualAttentionBlock, text_global_pool; tokenizer.py SimpleTokenizer;
transform.py image_transform with is_train=False; factory.py for the config
defaults), not from clipdex's C code:

  - the tokenizer reads open_clip's own vocabulary format, the gzipped
    bpe_simple_vocab_16e6.txt.gz (clipdex reads vocab.json / merges.txt),
    with special tokens <start_of_text> / <end_of_text>; cleaning is
    basic_clean + whitespace_clean + lower() minus ftfy (not installed
    here: the test texts are ones ftfy leaves alone);
  - attention goes through torch's own nn.functional.multi_head_attention_forward
    with the fused in_proj_weight, as nn.MultiheadAttention runs it, over the
    whole context_length sequence padded with 0 under open_clip's float
    causal mask, pooled at text.argmax(-1);
  - preprocessing is Pillow plus torchvision's steps written out here
    (torchvision is not installed): Resize (Pillow resize in the image's
    own mode), CenterCrop with int(round((h - S) / 2.0)), ResizeKeepRatio
    and CenterCropOrPad for resize_mode "longest", convert("RGB") last,
    ToTensor (uint8 / 255 in float32), Normalize.

As a command: openclip_ref.py MODEL_DIR [--text T]... [--image P]...
[--tokens T]... prints one JSON line per input, like `clipdex embed
--format json` (--tokens prints the ids).
"""
import argparse
import gzip
import html
import json
import math
import os
import sys
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_ref import _read_safetensors  # noqa: E402  (a plain safetensors reader)

torch.set_grad_enabled(False)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# ---------------------------------------------------------------- tokenizer


def bytes_to_unicode():
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


def _is_letter(ch):
    return unicodedata.category(ch)[0] == "L"


def _is_number(ch):
    return unicodedata.category(ch)[0] == "N"


class SimpleTokenizer:
    """open_clip's SimpleTokenizer (clean="lower", no reduction)."""
    SPECIALS = ("<start_of_text>", "<end_of_text>")

    def __init__(self, bpe_gz=os.path.join(REPO, "data", "clip", "bpe_simple_vocab_16e6.txt.gz")):
        merges = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
        merges = merges[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += list(self.SPECIALS)
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.sot = self.encoder["<start_of_text>"]
        self.eot = self.encoder["<end_of_text>"]

    def _findall(self, text):
        """The pattern special | 's|'t|'re|'ve|'m|'ll|'d | \\p{L}+ | \\p{N} |
        [^\\s\\p{L}\\p{N}]+ (IGNORECASE; the text is lower case already),
        first alternative that matches at each position."""
        out, i, n = [], 0, len(text)
        lits = self.SPECIALS + ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
        while i < n:
            c = text[i]
            hit = next((l for l in lits if text.startswith(l, i)), None)
            if hit:
                out.append(hit)
                i += len(hit)
                continue
            if _is_letter(c):
                j = i
                while j < n and _is_letter(text[j]):
                    j += 1
            elif _is_number(c):
                j = i + 1
            elif c.isspace():
                i += 1
                continue
            else:
                j = i
                while j < n and not text[j].isspace() and not _is_letter(text[j]) and not _is_number(text[j]):
                    j += 1
            out.append(text[i:j])
            i = j
        return out

    def _bpe(self, token):
        if token in self.SPECIALS:
            return [token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[k], word[k + 1]) for k in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            new, k = [], 0
            while k < len(word):
                if k < len(word) - 1 and (word[k], word[k + 1]) == best:
                    new.append(word[k] + word[k + 1])
                    k += 2
                else:
                    new.append(word[k])
                    k += 1
            word = tuple(new)
        return list(word)

    @staticmethod
    def clean(text):
        # basic_clean (ftfy.fix_text: identity on the test texts, NFC
        # included), html.unescape twice, strip; whitespace_clean; lower
        text = unicodedata.normalize("NFC", text)
        text = html.unescape(html.unescape(text)).strip()
        return " ".join(text.split()).strip().lower()

    def encode(self, text):
        ids = []
        for tok in self._findall(self.clean(text)):
            if tok in self.SPECIALS:
                ids.append(self.encoder[tok])
                continue
            u = "".join(self.b2u[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[p] for p in self._bpe(u))
        return ids

    def __call__(self, text, context_length):
        tokens = [self.sot] + self.encode(text) + [self.eot]
        if len(tokens) > context_length:
            tokens = tokens[:context_length]
            tokens[-1] = self.eot
        return tokens


# ---------------------------------------------------------------- images


def _pil_round(x):
    return int(round(x))  # Python's round(): half to even


def resize(im, size_hw, interp):
    """torchvision F.resize on a PIL image: Image.resize((w, h), interp) in
    the image's own mode (Pillow itself picks NEAREST for P and 1, and
    resizes LA / RGBA premultiplied)."""
    h, w = size_hw
    return im.resize((w, h), interp)


def shortest_size(w, h, s):
    # torchvision _compute_resized_output_size with size=[s]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = s, int(s * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def center_crop_or_pad(im, s, fill):
    """torchvision center_crop (and open_clip's center_crop_or_pad): pad when
    smaller, then crop at int(round((size - s) / 2.0))."""
    from PIL import Image
    w, h = im.size
    if s > w or s > h:
        pl = (s - w) // 2 if s > w else 0
        pt = (s - h) // 2 if s > h else 0
        pr = (s - w + 1) // 2 if s > w else 0
        pb = (s - h + 1) // 2 if s > h else 0
        # F.pad on a PIL image, constant mode: a new image of the padded
        # size filled with `fill`, the old one pasted at (pl, pt); P images
        # keep their palette
        nw, nh = w + pl + pr, h + pt + pb
        if im.mode == "P":
            out = Image.new("P", (nw, nh), fill)
            out.putpalette(im.getpalette())
        else:
            out = Image.new(im.mode, (nw, nh), fill if im.mode in ("L", "1", "I", "F") else
                            (fill,) * len(im.getbands()))
        out.paste(im, (pl, pt))
        im = out
        w, h = im.size
        if w == s and h == s:
            return im
    top = _pil_round((h - s) / 2.0)
    left = _pil_round((w - s) / 2.0)
    return im.crop((left, top, left + s, top + s))


def preprocess(path, pre, image_size):
    """open_clip's eval transform.  Returns (3,S,S) float32."""
    from PIL import Image
    im = Image.open(path)
    im.load()
    interp = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[pre.get("interpolation") or "bicubic"]
    mode = pre.get("resize_mode") or "shortest"
    s = image_size
    w, h = im.size
    if mode == "shortest":
        nh, nw = shortest_size(w, h, s)
        if (nw, nh) != (w, h):
            im = resize(im, (nh, nw), interp)
        im = center_crop_or_pad(im, s, 0)
    elif mode == "squash":
        if (w, h) != (s, s):
            im = resize(im, (s, s), interp)
    else:  # longest: ResizeKeepRatio(longest=1) then CenterCropOrPad
        ratio_h, ratio_w = h / s, w / s
        ratio = max(ratio_h, ratio_w) * 1.0 + min(ratio_h, ratio_w) * (1.0 - 1.0)
        nh, nw = [_pil_round(x * 1.0 / ratio) for x in (h, w)]
        if (nw, nh) != (w, h):
            im = resize(im, (nh, nw), interp)
        im = center_crop_or_pad(im, s, pre.get("fill_color", 0) or 0)
    im = im.convert("RGB")
    a = np.asarray(im).astype(np.float32) / np.float32(255)  # ToTensor
    mean = np.array(pre.get("mean") or OPENAI_MEAN, dtype=np.float32)
    std = np.array(pre.get("std") or OPENAI_STD, dtype=np.float32)
    a = (a - mean) / std
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


# ---------------------------------------------------------------- model


def load_state_dict(model_dir):
    p = os.path.join(model_dir, "open_clip_model.safetensors")
    if os.path.exists(p):
        return _read_safetensors(p)
    sd = torch.load(os.path.join(model_dir, "open_clip_pytorch_model.bin"), map_location="cpu")
    return {k: v.float() for k, v in sd.items()}


class OpenCLIPRef:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "open_clip_config.json")) as f:
            cfg = json.load(f)
        self.mc = cfg["model_cfg"]
        self.pre = cfg.get("preprocess_cfg", {})
        self.vc = self.mc.get("vision_cfg", {})
        self.tc = self.mc.get("text_cfg", {})
        self.tx = "text." if self.mc.get("custom_text") else ""
        self.w = load_state_dict(model_dir)
        self.tok = SimpleTokenizer()

    def _act(self, x):
        if self.mc.get("quick_gelu", False):
            return x * torch.sigmoid(1.702 * x)  # QuickGELU
        return F.gelu(x)  # nn.GELU()

    def _resblock(self, x, p, heads, attn_mask):
        """ResidualAttentionBlock, batch-first x (B, L, C)."""
        w = self.w
        C = x.shape[-1]
        h = F.layer_norm(x, (C,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
        hs = h.transpose(0, 1)  # (L, B, C) for the functional MHA
        o, _ = F.multi_head_attention_forward(
            hs, hs, hs, C, heads, w[p + "attn.in_proj_weight"], w[p + "attn.in_proj_bias"],
            None, None, False, 0.0, w[p + "attn.out_proj.weight"], w[p + "attn.out_proj.bias"],
            training=False, need_weights=False, attn_mask=attn_mask)
        x = x + o.transpose(0, 1)
        h = F.layer_norm(x, (C,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
        h = self._act(F.linear(h, w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"]))
        return x + F.linear(h, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"])

    def encode_text(self, ids):
        """CLIP.encode_text on one token list padded to context_length."""
        T = self.tc.get("context_length", 77)
        heads, layers = self.tc.get("heads", 8), self.tc.get("layers", 12)
        w, x_ = self.w, self.tx
        text = torch.zeros(1, T, dtype=torch.long)
        text[0, :len(ids)] = torch.tensor(ids)
        x = w[x_ + "token_embedding.weight"][text] + w[x_ + "positional_embedding"]
        mask = torch.empty(T, T).fill_(float("-inf")).triu_(1)  # build_causal_mask
        for i in range(layers):
            x = self._resblock(x, "%stransformer.resblocks.%d." % (x_, i), heads, mask)
        C = x.shape[-1]
        x = F.layer_norm(x, (C,), w[x_ + "ln_final.weight"], w[x_ + "ln_final.bias"], 1e-5)
        pooled = x[torch.arange(1), text.argmax(dim=-1)]
        return (pooled @ w[x_ + "text_projection"])[0]

    def encode_image(self, pix):
        """VisionTransformer.forward, pix (B,3,S,S)."""
        w = self.w
        P = self.vc.get("patch_size", 16)
        P = P[0] if isinstance(P, list) else P
        width = self.vc.get("width", 768)
        heads = width // self.vc.get("head_width", 64)
        x = F.conv2d(pix, w["visual.conv1.weight"], stride=P)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = w["visual.class_embedding"].expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + w["visual.positional_embedding"]
        C = x.shape[-1]
        x = F.layer_norm(x, (C,), w["visual.ln_pre.weight"], w["visual.ln_pre.bias"], 1e-5)
        for i in range(self.vc.get("layers", 12)):
            x = self._resblock(x, "visual.transformer.resblocks.%d." % i, heads, None)
        x = F.layer_norm(x, (C,), w["visual.ln_post.weight"], w["visual.ln_post.bias"], 1e-5)
        return x[:, 0] @ w["visual.proj"]

    def image_size(self):
        s = self.vc.get("image_size", 224)
        return s[0] if isinstance(s, list) else s

    def tokens(self, text):
        return self.tok(text, self.tc.get("context_length", 77))

    def embed_text(self, text, normalize=True):
        e = self.encode_text(self.tokens(text))
        return e / e.norm() if normalize else e

    def embed_image(self, path, normalize=True):
        pix = preprocess(path, self.pre, self.image_size())
        e = self.encode_image(pix[None])[0]
        return e / e.norm() if normalize else e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("--image", action="append", default=[])
    ap.add_argument("--tokens", action="append", default=[])
    ap.add_argument("--pixels", action="append", default=[], help="print the (3,S,S) tensor")
    ap.add_argument("--raw", action="store_true")
    a = ap.parse_args()
    m = OpenCLIPRef(a.model)
    for t in a.tokens:
        print(json.dumps({"input": t, "ids": m.tokens(t)}))
    for t in a.text:
        e = m.embed_text(t, not a.raw)
        print(json.dumps({"type": "text", "input": t, "embedding": [float(v) for v in e]}))
    for p in a.image:
        e = m.embed_image(p, not a.raw)
        print(json.dumps({"type": "image", "input": p, "embedding": [float(v) for v in e]}))
    for p in a.pixels:
        t = preprocess(p, m.pre, m.image_size())
        print(json.dumps({"input": p, "pixels": t.flatten().tolist()}))


if __name__ == "__main__":
    main()
