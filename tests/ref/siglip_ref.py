#!/usr/bin/python3
"""siglip_ref.py - an independent PyTorch reference for clipdex's SigLIP and
SigLIP 2 (fixed resolution) support.

Written from transformers' sources as read (modeling_siglip.py,
image_processing_siglip.py, tokenization_siglip.py, the Gemma tokenizer
and Siglip2Tokenizer of transformers PR #43101), not from clipdex's C
code:

- tokenizers: python3-sentencepiece is the SentencePiece oracle.  SigLIP:
  the SiglipTokenizer steps in Python (the model proto's add_dummy_prefix
  cleared through protobuf's MergeFrom, "\u2581" prefix, lower case of the
  non-special text as PreTrainedTokenizer.tokenize does it, the split at
  the special tokens with their lstrip/rstrip, canonicalize_text, the
  "<unk>" prefix trick, eos, truncation, padding to max_length).  SigLIP 2:
  the added tokens of tokenizer_config.json split out of the raw text,
  lower case per character (tokenizers' Lowercase), the Gemma model, the
  bos/eos of tokenizer_config.json, truncation, padding.
- images: Pillow (convert("RGB"), resize to the fixed size with the
  config's resample), rescale in float64 then float32, normalise.
- model: plain torch ops, torch.nn.MultiheadAttention for the pooling
  head as transformers uses it, gelu(approximate="tanh").
- attention mask: passed when tokenizer_config.json's model_input_names
  lists attention_mask (Gemma's tokenizer does by default), as the
  processor's output reaches the model in the published usage; added as
  (1 - mask) * finfo(float32).min, transformers' _prepare_4d_attention_mask.

As a command: siglip_ref.py MODEL_DIR [--text T]... [--image P]... [--raw]
prints one JSON line per input like `clipdex embed --format json`;
--ids prints the processor's input_ids instead; --score IMAGE scores every
--text against it with the sigmoid.
"""
import argparse
import json
import os
import re
import string
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clip_ref import _read_safetensors  # noqa: E402  (a plain safetensors reader)

torch.set_grad_enabled(False)
SPIECE_UNDERLINE = "\u2581"


def _tok_str(v, default):
    if isinstance(v, dict):
        return v.get("content", default)
    return v if isinstance(v, str) else default


class SiglipTokenizerRef:
    def __init__(self, model_dir, context):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb
        cfg_path = os.path.join(model_dir, "tokenizer_config.json")
        cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
        self.context = context
        self.lower = cfg.get("do_lower_case", True)
        self.eos = _tok_str(cfg.get("eos_token"), "</s>")
        self.unk = _tok_str(cfg.get("unk_token"), "<unk>")
        self.pad = _tok_str(cfg.get("pad_token"), "</s>")
        self.masks = "attention_mask" in cfg.get("model_input_names", ["input_ids"])
        # get_spm_processor: add_dummy_prefix cleared by MergeFrom
        with open(os.path.join(model_dir, "spiece.model"), "rb") as f:
            model = pb.ModelProto.FromString(f.read())
        ns = pb.NormalizerSpec()
        ns.add_dummy_prefix = False
        model.normalizer_spec.MergeFrom(ns)
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(model.SerializeToString())
        self.special = [self.eos, self.unk, self.pad]
        self.ids = {s: self.sp.piece_to_id(s) for s in self.special}
        self.pad_id = self.ids[self.pad]
        self.unk_len = len(self.sp.encode(self.unk))

    def _canonicalize(self, text):
        text = text.translate(str.maketrans("", "", string.punctuation))
        text = re.sub(r"\s+", " ", text)
        return text.strip()

    def _tokenize(self, text):
        text = self._canonicalize(text)
        tokens = self.sp.encode(self.unk + text, out_type=str)
        return tokens[self.unk_len:] if len(tokens) >= self.unk_len else tokens

    def tokenize(self, text):
        text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
        esc = [re.escape(s) for s in sorted(set(self.special), key=len, reverse=True)]
        if self.lower:
            pattern = r"(" + r"|".join(esc) + r")|" + r"(.+?)"
            text = re.sub(pattern, lambda m: m.groups()[0] or m.groups()[1].lower(), text,
                          flags=re.DOTALL)
        parts = re.split("(" + "|".join(esc) + ")", text)
        for i, p in enumerate(parts):
            if p in self.special:  # AddedToken(lstrip=True, rstrip=True)
                if i + 1 < len(parts) and parts[i + 1]:
                    parts[i + 1] = parts[i + 1].lstrip()
                if i > 0 and parts[i - 1]:
                    parts[i - 1] = parts[i - 1].rstrip()
        tokens = []
        for p in parts:
            if not p:
                continue
            tokens += [p] if p in self.special else self._tokenize(p)
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and tokens[1] in self.special:
            tokens = tokens[1:]
        return tokens

    def __call__(self, text):
        ids = [self.ids[t] if t in self.special else self.sp.piece_to_id(t)
               for t in self.tokenize(text)]
        ids = ids[:self.context - 1]  # truncation=True: room for the eos
        if not (ids and ids[-1] == self.ids[self.eos]):
            ids = ids + [self.ids[self.eos]]
        return ids + [self.pad_id] * (self.context - len(ids))


class GemmaTokenizerRef:
    def __init__(self, model_dir, context):
        import sentencepiece as spm
        cfg_path = os.path.join(model_dir, "tokenizer_config.json")
        cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else None
        c = cfg or {}
        self.context = context
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(os.path.join(model_dir, "tokenizer.model"))
        self.add_bos = c.get("add_bos_token", True if cfg is not None else False)
        self.add_eos = c.get("add_eos_token", False if cfg is not None else True)
        self.bos = self.sp.piece_to_id(_tok_str(c.get("bos_token"), "<bos>"))
        self.eos = self.sp.piece_to_id(_tok_str(c.get("eos_token"), "<eos>"))
        self.pad_id = self.sp.piece_to_id(_tok_str(c.get("pad_token"), "<pad>"))
        self.left = c.get("padding_side", "right") == "left"
        self.masks = "attention_mask" in c.get("model_input_names", ["input_ids", "attention_mask"])
        # the fast tokenizer's added vocabulary: matched in the raw text first
        self.added = {v["content"]: int(k) for k, v in c.get("added_tokens_decoder", {}).items()}

    def __call__(self, text):
        parts = [text]
        if self.added:
            alt = "|".join(re.escape(a) for a in sorted(self.added, key=len, reverse=True))
            parts = re.split("(" + alt + ")", text)
        ids = []
        for p in parts:
            if p in self.added:
                ids.append(self.added[p])
            elif p:
                ids += self.sp.encode("".join(ch.lower() for ch in p))  # per character, as Lowercase
        room = self.context - int(self.add_bos) - int(self.add_eos)
        ids = ([self.bos] if self.add_bos else []) + ids[:room] + ([self.eos] if self.add_eos else [])
        pad = [self.pad_id] * (self.context - len(ids))
        return pad + ids if self.left else ids + pad


def preprocess(path, pre, size):
    from PIL import Image
    im = Image.open(path).convert("RGB")
    s = pre.get("size", {"height": size, "width": size})
    h, w = s["height"], s["width"]
    if im.size != (w, h):
        im = im.resize((w, h), resample=Image.BILINEAR if pre.get("resample", 3) == 2 else Image.BICUBIC)
    a = np.asarray(im)
    a = (a.astype(np.float64) * pre.get("rescale_factor", 1 / 255)).astype(np.float32)
    a = (a - np.array(pre.get("image_mean", [0.5] * 3), dtype=np.float32)) / \
        np.array(pre.get("image_std", [0.5] * 3), dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


class SiglipRef:
    def __init__(self, model_dir):
        self.dir = model_dir
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.tc = dict(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=64,
                            hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
                       **cfg.get("text_config", {}))
        self.vc = dict(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, image_size=224, patch_size=16,
                            hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
                       **cfg.get("vision_config", {}))
        pp = os.path.join(model_dir, "preprocessor_config.json")
        self.pre = json.load(open(pp)) if os.path.exists(pp) else {}
        self.w = {k: torch.from_numpy(np.array(v)) for k, v in
                  _read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
        T = self.tc["max_position_embeddings"]
        if os.path.exists(os.path.join(model_dir, "spiece.model")):
            self.family, self.tok = "siglip", SiglipTokenizerRef(model_dir, T)
        else:
            self.family, self.tok = "siglip2", GemmaTokenizerRef(model_dir, T)

    @staticmethod
    def _act(x, name):
        if name in ("gelu_pytorch_tanh", "gelu_new"):
            return torch.nn.functional.gelu(x, approximate="tanh")
        if name == "gelu":
            return torch.nn.functional.gelu(x)
        if name == "quick_gelu":
            return x * torch.sigmoid(1.702 * x)
        raise ValueError(name)

    def _block(self, x, p, c, mask):
        w, F = self.w, torch.nn.functional
        B, T, C = x.shape
        H = c["num_attention_heads"]
        D = C // H
        eps = c["layer_norm_eps"]
        h = F.layer_norm(x, (C,), w[p + ".layer_norm1.weight"], w[p + ".layer_norm1.bias"], eps)
        q = F.linear(h, w[p + ".self_attn.q_proj.weight"], w[p + ".self_attn.q_proj.bias"])
        k = F.linear(h, w[p + ".self_attn.k_proj.weight"], w[p + ".self_attn.k_proj.bias"])
        v = F.linear(h, w[p + ".self_attn.v_proj.weight"], w[p + ".self_attn.v_proj.bias"])
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) * D ** -0.5
        if mask is not None:
            att = att + mask
        att = att.softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(o, w[p + ".self_attn.out_proj.weight"], w[p + ".self_attn.out_proj.bias"])
        h = F.layer_norm(x, (C,), w[p + ".layer_norm2.weight"], w[p + ".layer_norm2.bias"], eps)
        h = self._act(F.linear(h, w[p + ".mlp.fc1.weight"], w[p + ".mlp.fc1.bias"]), c["hidden_act"])
        return x + F.linear(h, w[p + ".mlp.fc2.weight"], w[p + ".mlp.fc2.bias"])

    def encode_ids(self, ids):
        w, F, c = self.w, torch.nn.functional, self.tc
        t = torch.tensor([ids])
        x = w["text_model.embeddings.token_embedding.weight"][t] + \
            w["text_model.embeddings.position_embedding.weight"][: len(ids)][None]
        mask = None
        if self.tok.masks:
            m = (t != self.tok.pad_id).to(torch.float32)  # (1,T)
            mask = ((1.0 - m) * torch.finfo(torch.float32).min)[:, None, None, :]
        for i in range(c["num_hidden_layers"]):
            x = self._block(x, "text_model.encoder.layers.%d" % i, c, mask)
        C = x.shape[-1]
        x = F.layer_norm(x, (C,), w["text_model.final_layer_norm.weight"],
                         w["text_model.final_layer_norm.bias"], c["layer_norm_eps"])
        return F.linear(x[0, -1], w["text_model.head.weight"], w["text_model.head.bias"])

    def encode_pixels(self, pix):
        w, F, c = self.w, torch.nn.functional, self.vc
        x = F.conv2d(pix, w["vision_model.embeddings.patch_embedding.weight"],
                     w["vision_model.embeddings.patch_embedding.bias"], stride=c["patch_size"])
        B, C = x.shape[:2]
        x = x.flatten(2).transpose(1, 2) + w["vision_model.embeddings.position_embedding.weight"][None]
        for i in range(c["num_hidden_layers"]):
            x = self._block(x, "vision_model.encoder.layers.%d" % i, c, None)
        eps = c["layer_norm_eps"]
        x = F.layer_norm(x, (C,), w["vision_model.post_layernorm.weight"],
                         w["vision_model.post_layernorm.bias"], eps)
        # SiglipMultiheadAttentionPoolingHead
        mha = torch.nn.MultiheadAttention(C, c["num_attention_heads"], batch_first=True)
        mha.in_proj_weight.copy_(w["vision_model.head.attention.in_proj_weight"])
        mha.in_proj_bias.copy_(w["vision_model.head.attention.in_proj_bias"])
        mha.out_proj.weight.copy_(w["vision_model.head.attention.out_proj.weight"])
        mha.out_proj.bias.copy_(w["vision_model.head.attention.out_proj.bias"])
        mha.eval()
        probe = w["vision_model.head.probe"].repeat(B, 1, 1)
        h = mha(probe, x, x)[0]
        r = h
        h = F.layer_norm(h, (C,), w["vision_model.head.layernorm.weight"],
                         w["vision_model.head.layernorm.bias"], eps)
        h = self._act(F.linear(h, w["vision_model.head.mlp.fc1.weight"], w["vision_model.head.mlp.fc1.bias"]),
                      c["hidden_act"])
        h = r + F.linear(h, w["vision_model.head.mlp.fc2.weight"], w["vision_model.head.mlp.fc2.bias"])
        return h[:, 0]

    def embed_text(self, text, normalize=True):
        e = self.encode_ids(self.tok(text))
        return e / e.norm() if normalize else e

    def embed_image(self, path, normalize=True):
        e = self.encode_pixels(preprocess(path, self.pre, self.vc["image_size"])[None])[0]
        return e / e.norm() if normalize else e

    def probs(self, image, texts):
        """SiglipModel's logits_per_image through a sigmoid: each text on its own."""
        i = self.embed_image(image)
        t = torch.stack([self.embed_text(x) for x in texts])
        logits = (t @ i) * self.w["logit_scale"].exp() + self.w["logit_bias"]
        return torch.sigmoid(logits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("--image", action="append", default=[])
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--ids", action="store_true")
    ap.add_argument("--score")
    a = ap.parse_args()
    m = SiglipRef(a.model)
    if a.ids:
        for t in a.text:
            print(json.dumps({"text": t, "ids": m.tok(t)}, ensure_ascii=False))
        return
    if a.score:
        for t, p in zip(a.text, m.probs(a.score, a.text)):
            print(json.dumps({"text": t, "prob": float(p)}, ensure_ascii=False))
        return
    for t in a.text:
        e = m.embed_text(t, not a.raw)
        print(json.dumps({"type": "text", "input": t, "embedding": [float(v) for v in e]}))
    for p in a.image:
        e = m.embed_image(p, not a.raw)
        print(json.dumps({"type": "image", "input": p, "embedding": [float(v) for v in e]}))


if __name__ == "__main__":
    main()
