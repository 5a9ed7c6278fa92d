#!/usr/bin/python3
"""openclip_train_ref.py - an independent PyTorch reference for training
OpenCLIP checkpoints with `clipdex train`.

Built on openclip_ref.py's model (written from open_clip's model.py and
transformer.py: fused in_proj through torch's own
F.multi_head_attention_forward, x @ proj projections, argmax pooling)
with the checkpoint's tensors as leaf tensors under open_clip's own names,
open_clip's ClipLoss (symmetric cross-entropy over exp(logit_scale)
I T^T), autograd, torch.optim.AdamW itself and open_clip's clamp of
logit_scale to [0, ln 100] after every step.  float64 by default.

clipdex trains the fused in_proj as three parameters NAME:q/k/v and the
projections transposed (NAME:T); split_grads() maps this reference's
gradients to those names for the comparison.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openclip_ref  # noqa: E402

torch.set_grad_enabled(True)
F = torch.nn.functional


class Model(openclip_ref.OpenCLIPRef):
    def __init__(self, model_dir, dtype=torch.float64):
        super().__init__(model_dir)
        self.dtype = dtype
        self.w = {k: v.to(dtype).clone().requires_grad_(True)
                  for k, v in self.w.items() if v.is_floating_point()}
        self.names = list(self.w)

    def tower_of(self, name):
        if name.startswith("visual."):
            return "vision"
        if name == "logit_scale":
            return "shared"
        return "text"

    def trainable(self, lock=None, unlock_last=0):
        out = []
        for n in self.names:
            t = self.tower_of(n)
            if t == lock:
                continue
            if unlock_last and t != "shared":
                L = (self.vc if t == "vision" else self.tc).get("layers", 12)
                if ".resblocks." in n:
                    if int(n.split(".resblocks.")[1].split(".")[0]) < L - unlock_last:
                        continue
                elif n.split(".")[-2 if n.endswith((".weight", ".bias")) else -1] in (
                        "token_embedding", "positional_embedding", "class_embedding", "conv1", "ln_pre"):
                    continue
            out.append(n)
        return out

    def encode_text(self, ids):
        # openclip_ref's, with the causal mask in the model's dtype
        T = self.tc.get("context_length", 77)
        heads, layers = self.tc.get("heads", 8), self.tc.get("layers", 12)
        w, x_ = self.w, self.tx
        text = torch.zeros(1, T, dtype=torch.long)
        text[0, :len(ids)] = torch.tensor(ids)
        x = w[x_ + "token_embedding.weight"][text] + w[x_ + "positional_embedding"]
        mask = torch.empty(T, T, dtype=self.dtype).fill_(float("-inf")).triu_(1)
        for i in range(layers):
            x = self._resblock(x, "%stransformer.resblocks.%d." % (x_, i), heads, mask)
        C = x.shape[-1]
        x = F.layer_norm(x, (C,), w[x_ + "ln_final.weight"], w[x_ + "ln_final.bias"], 1e-5)
        pooled = x[torch.arange(1), text.argmax(dim=-1)]
        return (pooled @ w[x_ + "text_projection"])[0]

    def loss(self, pix, seqs):
        I = F.normalize(self.encode_image(pix), dim=-1)
        T = F.normalize(torch.stack([self.encode_text(s) for s in seqs]), dim=-1)
        logits = self.w["logit_scale"].reshape(()).exp() * I @ T.T
        labels = torch.arange(len(seqs))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def split_grads(g):
    """open_clip names -> clipdex's parameter names (in_proj split in three
    row blocks, projections transposed)."""
    out = {}
    for n, v in g.items():
        if n.endswith(("attn.in_proj_weight", "attn.in_proj_bias")):
            for i, c in enumerate("qkv"):
                out["%s:%s" % (n, c)] = v[i * v.shape[0] // 3:(i + 1) * v.shape[0] // 3]
        elif n == "visual.proj" or n.endswith("text_projection"):
            out[n + ":T"] = v.T
        else:
            out[n] = v
    return out


def grads(model_dir, pix, seqs, lock=None, unlock_last=0):
    m = Model(model_dir)
    pix = torch.from_numpy(np.asarray(pix, np.float64))
    names = m.trainable(lock, unlock_last)
    loss = m.loss(pix, seqs)
    gs = torch.autograd.grad(loss, [m.w[n] for n in names], allow_unused=True)
    return loss.item(), {n: (g if g is not None else torch.zeros_like(m.w[n])).detach().numpy()
                         for n, g in zip(names, gs)}


def lr_at(lr, warmup, schedule, total, step):
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) * lr


def train(model_dir, pairs_file, steps, batch, lr=5e-4, weight_decay=0.2, warmup=0,
          schedule="cosine", lock=None, unlock_last=0, dtype="f64"):
    m = Model(model_dir, torch.float64 if dtype == "f64" else torch.float32)
    base = os.path.dirname(os.path.abspath(pairs_file))
    pairs = []
    with open(pairs_file, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or "\t" not in line:
                continue
            path, cap = line.split("\t", 1)
            try:
                pix = openclip_ref.preprocess(os.path.join(base, path), m.pre, m.image_size())
            except Exception:
                continue
            pairs.append((pix, m.tokens(cap)))
    names = m.trainable(lock, unlock_last)
    decay = [m.w[n] for n in names if m.w[n].ndim >= 2]
    no_decay = [m.w[n] for n in names if m.w[n].ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98), eps=1e-6)
    N, B = len(pairs), batch
    losses = []
    for step in range(steps):
        bt = [pairs[(step * B + i) % N] for i in range(B)]
        pix = torch.stack([b[0] for b in bt]).to(m.dtype)
        for g in opt.param_groups:
            g["lr"] = lr_at(lr, warmup, schedule, steps, step)
        opt.zero_grad()
        loss = m.loss(pix, [b[1] for b in bt])
        loss.backward()
        opt.step()
        with torch.no_grad():
            m.w["logit_scale"].clamp_(0, math.log(100))
        losses.append(loss.item())
    return losses, {n: m.w[n].detach().to(torch.float64).numpy() for n in m.names}
