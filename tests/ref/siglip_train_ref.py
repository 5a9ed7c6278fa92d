#!/usr/bin/python3
"""siglip_train_ref.py - an independent PyTorch reference for training SigLIP
and SigLIP 2 with `clipdex train`.

Built on siglip_ref.py's model (written from transformers'
modeling_siglip.py, not from clipdex's C code) with the checkpoint's
tensors made leaf tensors, the pooling head through torch's own
F.multi_head_attention_forward, autograd for the gradients and
torch.optim.AdamW itself.  The loss is SiglipModel's with return_loss
(transformers, after big_vision): logits_per_text = exp(t) T I^T + b,
labels +1 on the diagonal and -1 elsewhere, loss = mean over the text rows
of -sum log sigmoid(label x logit).  No clamp of t or b (transformers
and big_vision have none).  float64 by default.
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import siglip_ref  # noqa: E402

torch.set_grad_enabled(True)
F = torch.nn.functional


class Model(siglip_ref.SiglipRef):
    def __init__(self, model_dir, dtype=torch.float64):
        super().__init__(model_dir)
        self.dtype = dtype
        self.w = {k: v.to(dtype).clone().requires_grad_(True)
                  for k, v in self.w.items() if v.is_floating_point()}
        self.names = list(self.w)

    def tower_of(self, name):
        if name.startswith("text_model."):
            return "text"
        if name.startswith("vision_model."):
            return "vision"
        return "shared"

    def trainable(self, lock=None, unlock_last=0):
        out = []
        for n in self.names:
            t = self.tower_of(n)
            if t == lock or n.endswith("position_ids"):
                continue
            if unlock_last and t != "shared":
                L = (self.tc if t == "text" else self.vc)["num_hidden_layers"]
                if ".encoder.layers." in n:
                    if int(n.split(".encoder.layers.")[1].split(".")[0]) < L - unlock_last:
                        continue
                elif ".embeddings." in n:
                    continue
            out.append(n)
        return out

    def text(self, seqs):
        return torch.stack([self.encode_ids(s) for s in seqs])

    def vision(self, pix):
        w, c = self.w, self.vc
        x = F.conv2d(pix, w["vision_model.embeddings.patch_embedding.weight"],
                     w["vision_model.embeddings.patch_embedding.bias"], stride=c["patch_size"])
        B, C = x.shape[:2]
        x = x.flatten(2).transpose(1, 2) + w["vision_model.embeddings.position_embedding.weight"][None]
        for i in range(c["num_hidden_layers"]):
            x = self._block(x, "vision_model.encoder.layers.%d" % i, c, None)
        eps = c["layer_norm_eps"]
        x = F.layer_norm(x, (C,), w["vision_model.post_layernorm.weight"],
                         w["vision_model.post_layernorm.bias"], eps)
        # SiglipMultiheadAttentionPoolingHead: nn.MultiheadAttention's own
        # function, (L, N, E) layout
        probe = w["vision_model.head.probe"].expand(B, 1, C)
        h, _ = F.multi_head_attention_forward(
            probe.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), C, c["num_attention_heads"],
            w["vision_model.head.attention.in_proj_weight"], w["vision_model.head.attention.in_proj_bias"],
            None, None, False, 0.0, w["vision_model.head.attention.out_proj.weight"],
            w["vision_model.head.attention.out_proj.bias"], training=False, need_weights=False)
        h = h.transpose(0, 1)
        r = h
        h = F.layer_norm(h, (C,), w["vision_model.head.layernorm.weight"], w["vision_model.head.layernorm.bias"], eps)
        h = self._act(F.linear(h, w["vision_model.head.mlp.fc1.weight"], w["vision_model.head.mlp.fc1.bias"]),
                      c["hidden_act"])
        h = r + F.linear(h, w["vision_model.head.mlp.fc2.weight"], w["vision_model.head.mlp.fc2.bias"])
        return h[:, 0]

    def loss(self, pix, seqs):
        I = F.normalize(self.vision(pix), dim=-1)
        T = F.normalize(self.text(seqs), dim=-1)
        logits = T @ I.T * self.w["logit_scale"].reshape(()).exp() + self.w["logit_bias"].reshape(())
        n = len(seqs)
        labels = 2 * torch.eye(n, dtype=logits.dtype) - 1
        return -F.logsigmoid(labels * logits).sum(-1).mean()


def grads(model_dir, pix, seqs, lock=None, unlock_last=0):
    """The loss of one batch and its gradient for every trainable tensor."""
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
    """steps of torch.optim.AdamW, batch k = pairs kB..kB+B-1 (wrapping),
    as `clipdex train --order file`.  Returns the losses and final weights."""
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
                pix = siglip_ref.preprocess(os.path.join(base, path), m.pre, m.vc["image_size"])
            except Exception:
                continue
            pairs.append((pix, m.tok(cap)))
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
        losses.append(loss.item())
    return losses, {n: m.w[n].detach().to(torch.float64).numpy() for n in m.names}
