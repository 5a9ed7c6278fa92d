#!/usr/bin/python3
"""train_ref.py - an independent PyTorch reference for `clipdex train`.

Written from the CLIP paper's training objective and transformers'
CLIPModel as documented (not from clipdex's C code): the two towers in
plain torch ops over the checkpoint's tensors (weights, tokenizer and
image preprocessing from clip_ref.py), autograd for the gradients, and
torch.optim.AdamW itself for the optimiser.  Runs in float64 by default,
so it gives the exact gradient a float32 implementation is measured
against.

  train_ref.py grads MODEL PIXELS IDS OUT.npz [--lock image|text] [--unlock-last N]
      the gradient of the loss for one batch (PIXELS: raw float32
      (n,3,S,S); IDS: one line of token ids per caption, padded after the
      end-of-text token); prints the loss, writes every trainable
      parameter's gradient
  train_ref.py train MODEL PAIRS OUT.npz --steps K --batch B --lr LR ...
      K steps of AdamW on PAIRS (path<TAB>caption) with batches as
      `clipdex train --order file` takes them; prints one "step loss" line
      per step and writes the final weights
"""
import argparse
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_ref  # noqa: E402  (weights reader, tokenizer, preprocessing)

torch.set_grad_enabled(True)
F = torch.nn.functional


def block_names(prefix, i):
    p = "%s.encoder.layers.%d." % (prefix, i)
    return [p + s for s in (
        "layer_norm1.weight", "layer_norm1.bias", "self_attn.q_proj.weight", "self_attn.q_proj.bias",
        "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
        "self_attn.v_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "layer_norm2.weight", "layer_norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias")]


class Model:
    """CLIPModel's parameters as leaf tensors, and its two towers."""

    def __init__(self, model_dir, dtype=torch.float64):
        import json
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        w = clip_ref.load_weights(model_dir)
        self.tok = clip_ref.Tokenizer(os.path.join(model_dir, "vocab.json"),
                                      os.path.join(model_dir, "merges.txt"))
        with open(os.path.join(model_dir, "preprocessor_config.json")) as f:
            self.pre = json.load(f)
        self.dtype = dtype
        self.p = {k: v.to(dtype).clone().requires_grad_(True)
                  for k, v in w.items() if v.is_floating_point()}
        self.names = list(self.p)

    # -- groups, as the issue defines the modes
    def tower_of(self, name):
        if name.startswith("text_model.") or name == "text_projection.weight":
            return "text"
        if name.startswith("vision_model.") or name == "visual_projection.weight":
            return "vision"
        return "shared"

    def trainable(self, lock=None, unlock_last=0):
        out = []
        for n in self.names:
            t = self.tower_of(n)
            if t == lock or n.endswith("position_ids"):
                continue
            if unlock_last and t != "shared":
                L = self.cfg[t + "_config"]["num_hidden_layers"]
                if ".encoder.layers." in n:
                    if int(n.split(".encoder.layers.")[1].split(".")[0]) < L - unlock_last:
                        continue
                elif ".embeddings." in n or "pre_layrnorm" in n:
                    continue
            out.append(n)
        return out

    def _block(self, x, pre, heads, act, eps, causal):
        p = self.p
        B, T, C = x.shape
        D = C // heads
        h = F.layer_norm(x, (C,), p[pre + "layer_norm1.weight"], p[pre + "layer_norm1.bias"], eps)
        q = F.linear(h, p[pre + "self_attn.q_proj.weight"], p[pre + "self_attn.q_proj.bias"]) * D ** -0.5
        k = F.linear(h, p[pre + "self_attn.k_proj.weight"], p[pre + "self_attn.k_proj.bias"])
        v = F.linear(h, p[pre + "self_attn.v_proj.weight"], p[pre + "self_attn.v_proj.bias"])
        q, k, v = (t.reshape(B, T, heads, D).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2)
        if causal:
            s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(o, p[pre + "self_attn.out_proj.weight"], p[pre + "self_attn.out_proj.bias"])
        h = F.layer_norm(x, (C,), p[pre + "layer_norm2.weight"], p[pre + "layer_norm2.bias"], eps)
        u = F.linear(h, p[pre + "mlp.fc1.weight"], p[pre + "mlp.fc1.bias"])
        a = u * torch.sigmoid(1.702 * u) if act == "quick_gelu" else F.gelu(u)
        return x + F.linear(a, p[pre + "mlp.fc2.weight"], p[pre + "mlp.fc2.bias"])

    def text(self, seqs):
        """seqs: lists of ids, padded to one length; pooled at the first
        end-of-text token of each (causal attention: the padding after it
        cannot matter)."""
        c = self.cfg["text_config"]
        p = self.p
        ids = torch.tensor(seqs)
        T = ids.shape[1]
        x = p["text_model.embeddings.token_embedding.weight"][ids] + \
            p["text_model.embeddings.position_embedding.weight"][:T][None]
        eps = c.get("layer_norm_eps", 1e-5)
        for i in range(c["num_hidden_layers"]):
            x = self._block(x, "text_model.encoder.layers.%d." % i, c["num_attention_heads"],
                            c.get("hidden_act", "quick_gelu"), eps, True)
        x = F.layer_norm(x, (x.shape[-1],), p["text_model.final_layer_norm.weight"],
                         p["text_model.final_layer_norm.bias"], eps)
        pool = [s.index(self.tok.eot) for s in seqs]
        x = x[torch.arange(len(seqs)), torch.tensor(pool)]
        return x @ p["text_projection.weight"].T

    def vision(self, pix):
        c = self.cfg["vision_config"]
        p = self.p
        P = c["patch_size"]
        x = F.conv2d(pix, p["vision_model.embeddings.patch_embedding.weight"], stride=P)
        B, C = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([p["vision_model.embeddings.class_embedding"].expand(B, 1, C), x], 1) + \
            p["vision_model.embeddings.position_embedding.weight"][None]
        eps = c.get("layer_norm_eps", 1e-5)
        x = F.layer_norm(x, (C,), p["vision_model.pre_layrnorm.weight"], p["vision_model.pre_layrnorm.bias"], eps)
        for i in range(c["num_hidden_layers"]):
            x = self._block(x, "vision_model.encoder.layers.%d." % i, c["num_attention_heads"],
                            c.get("hidden_act", "quick_gelu"), eps, False)
        x = F.layer_norm(x[:, 0], (C,), p["vision_model.post_layernorm.weight"],
                         p["vision_model.post_layernorm.bias"], eps)
        return x @ p["visual_projection.weight"].T

    def loss(self, pix, seqs, img_emb=None):
        """CLIP's symmetric cross-entropy (Radford et al. 2021, fig. 3).
        img_emb: the image embeddings given (LiT from an index), else the
        image tower's output for pix."""
        I = F.normalize(self.vision(pix) if img_emb is None else img_emb, dim=-1)
        T = F.normalize(self.text(seqs), dim=-1)
        logits = self.p["logit_scale"].reshape(()).exp() * I @ T.T
        labels = torch.arange(len(seqs))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def read_ids(path):
    with open(path) as f:
        return [[int(t) for t in line.split()] for line in f if line.strip()]


def grads(model_dir, pix, seqs, lock=None, unlock_last=0):
    """The loss of one batch and d loss / d parameter for the trainable
    ones (float64).  pix: float32 array (n,3,S,S); seqs: padded id lists."""
    m = Model(model_dir)
    pix = torch.from_numpy(np.asarray(pix, np.float64))
    names = m.trainable(lock, unlock_last)
    loss = m.loss(pix, seqs)
    gs = torch.autograd.grad(loss, [m.p[n] for n in names], allow_unused=True)
    return loss.item(), {n: (g if g is not None else torch.zeros_like(m.p[n])).detach().numpy()
                         for n, g in zip(names, gs)}


def lr_at(lr, warmup, schedule, total, step):
    """open_clip's schedule: warm-up, then cosine or constant."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    e, es = step - warmup, total - warmup
    return 0.5 * (1 + math.cos(math.pi * e / es)) * lr


def train(model_dir, pairs_file, steps, batch, lr=5e-4, weight_decay=0.2, warmup=0,
          schedule="cosine", lock=None, unlock_last=0, dtype="f64", image_emb=None):
    """steps of torch.optim.AdamW on the pairs, batch k = pairs kB..kB+B-1
    (wrapping).  Returns the losses and the final weights (numpy).
    image_emb: {absolute image path: embedding} used instead of the image
    tower (pairs whose image has none are skipped), as LiT from an index."""
    m = Model(model_dir, torch.float64 if dtype == "f64" else torch.float32)
    base = os.path.dirname(os.path.abspath(pairs_file))
    pairs = []
    with open(pairs_file, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or "\t" not in line:
                continue
            path, cap = line.split("\t", 1)
            if image_emb is not None:
                e = image_emb.get(os.path.realpath(os.path.join(base, path)))
                if e is None:
                    continue
                pix = torch.tensor(np.asarray(e, np.float64))
            else:
                try:
                    pix = clip_ref.preprocess(os.path.join(base, path), m.pre)
                except Exception:
                    continue  # bad or missing: skipped, as clipdex does
            pairs.append((pix, m.tok.encode(cap, m.cfg["text_config"]["max_position_embeddings"])))
    names = m.trainable(lock, unlock_last)
    # weight decay only on tensors of 2 or more dimensions (open_clip's rule)
    decay = [m.p[n] for n in names if m.p[n].ndim >= 2]
    no_decay = [m.p[n] for n in names if m.p[n].ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    N, B = len(pairs), batch
    losses = []
    for step in range(steps):
        bt = [pairs[(step * B + i) % N] for i in range(B)]
        pix = torch.stack([b[0] for b in bt]).to(m.dtype)
        L = max(len(b[1]) for b in bt)
        seqs = [b[1] + [0] * (L - len(b[1])) for b in bt]
        for g in opt.param_groups:
            g["lr"] = lr_at(lr, warmup, schedule, steps, step)
        opt.zero_grad()
        loss = m.loss(pix, seqs) if image_emb is None else m.loss(None, seqs, pix)
        loss.backward()
        opt.step()
        with torch.no_grad():
            m.p["logit_scale"].clamp_(0, math.log(100))
        losses.append(loss.item())
    return losses, {n: m.p[n].detach().to(torch.float64).numpy() for n in m.names}


def cmd_grads(a):
    S = json_cfg(a.model)["vision_config"]["image_size"]
    pix = np.fromfile(a.pixels, "<f4").reshape(-1, 3, S, S)
    loss, g = grads(a.model, pix, read_ids(a.ids), a.lock, a.unlock_last)
    np.savez(a.out, **g)
    print("loss %.12g" % loss)


def cmd_train(a):
    losses, w = train(a.model, a.pairs, a.steps, a.batch, a.lr, a.weight_decay, a.warmup,
                      a.schedule, a.lock, a.unlock_last, a.dtype)
    for i, l in enumerate(losses):
        print("%d %.12g" % (i, l))
    np.savez(a.out, **w)


def json_cfg(model_dir):
    import json
    with open(os.path.join(model_dir, "config.json")) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grads")
    g.add_argument("model")
    g.add_argument("pixels")
    g.add_argument("ids")
    g.add_argument("out")
    t = sub.add_parser("train")
    t.add_argument("model")
    t.add_argument("pairs")
    t.add_argument("out")
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--batch", type=int, required=True)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--weight-decay", type=float, default=0.2)
    t.add_argument("--warmup", type=int, default=0)
    t.add_argument("--schedule", default="cosine", choices=["cosine", "constant"])
    t.add_argument("--dtype", default="f64", choices=["f32", "f64"])
    for p in (g, t):
        p.add_argument("--lock", choices=["image", "text"])
        p.add_argument("--unlock-last", type=int, default=0)
    a = ap.parse_args()
    if getattr(a, "lock", None) == "image":
        a.lock = "vision"
    (cmd_grads if a.cmd == "grads" else cmd_train)(a)


if __name__ == "__main__":
    main()
