#!/usr/bin/python3
"""gen_siglip.py - write a random-weight SigLIP or SigLIP 2 (fixed
resolution) model directory in the layout google/siglip-* and
google/siglip2-* publish on the Hub, for tests and benchmarks.

  config.json                model_type "siglip", text_config / vision_config
  model.safetensors          transformers' SiglipModel state_dict names
  spiece.model               SigLIP: a SentencePiece unigram model
  tokenizer.model            SigLIP 2: a Gemma-like SentencePiece BPE model
                             with byte fallback
  tokenizer_config.json, special_tokens_map.json, preprocessor_config.json

The tokenizers are trained here with Debian's spm_train on a small
multilingual text, with the published special-token layouts: SigLIP's
spiece.model is T5-like (<pad> 0, </s> 1, <unk> 2; pad_token "</s>"),
Gemma's has <pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4.  The vocabularies
are small (the real ones have 32000 and 256000 pieces); config.json's
vocab_size is the trained size.

usage: gen_siglip.py OUTDIR --family siglip|siglip2 [--preset tiny|odd|base2l|b16|so400m]
                     [--dtype F32|F16|BF16] [--seed N] [--sparse-config]
                     [--tokenizer-from DIR] [--ln-eps X]

--sparse-config writes config.json as the first SigLIP checkpoints did,
with only the sizes (hidden_act, layer_norm_eps, max_position_embeddings
then come from the SiglipTextConfig / SiglipVisionConfig defaults).
--tokenizer-from copies the tokenizer files of another generated model
instead of training (the same tokenizer for several models).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_model import write_safetensors  # noqa: E402

PRESETS = {
    # width 64, 2 layers, 64x64 images of 16x16 patches: fast tests.
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4),
                 vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, image_size=64, patch_size=16)),
    # sizes that are no multiple of anything: patch 14 (a 588-wide patch
    # product), head width 18, mlp 269, 3 text layers and 1 vision layer.
    "odd": dict(text=dict(hidden_size=72, intermediate_size=269, num_hidden_layers=3,
                          num_attention_heads=4),
                vision=dict(hidden_size=72, intermediate_size=269, num_hidden_layers=1,
                            num_attention_heads=4, image_size=76, patch_size=14)),
    # ViT-B/16 widths at 224, 2 layers (the real-width test variant).
    "base2l": dict(text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=2,
                             num_attention_heads=12),
                   vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=2,
                               num_attention_heads=12, image_size=224, patch_size=16)),
    # google/siglip2-base-patch16-224 sizes (benchmark)
    "b16": dict(text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12),
                vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, image_size=224, patch_size=16)),
    # google/siglip2-so400m-patch14-384 sizes (benchmark)
    "so400m": dict(text=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                             num_attention_heads=16),
                   vision=dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                               num_attention_heads=16, image_size=384, patch_size=14)),
}

# Text the tokenizers are trained on: several scripts, upper and lower case.
CORPUS = """a photo of a dog on the beach at sunset
A PHOTO OF A CAT sleeping on a red sofa
two children playing football in the park, 2019
the quick brown fox jumps over the lazy dog
mountains covered with snow under a blue sky
a bowl of fresh fruit: apples, oranges and bananas!
the old town at night with lights reflected in the river
hello world, this is a test of the tokenizer (with punctuation).
фотография собаки на пляже на закате
кошка спит на красном диване
горы покрытые снегом под голубым небом
صورة كلب على الشاطئ عند غروب الشمس
قطة نائمة على أريكة حمراء
जंगल में एक बाघ की तस्वीर
सूर्यास्त के समय समुद्र तट पर एक कुत्ता
海辺で夕日を見ている犬の写真
赤いソファで眠っている猫
雪に覆われた山と青い空
日落时海滩上的一只狗
一只猫睡在红色的沙发上
바닷가에서 노을을 보는 강아지 사진
Ελληνικά: ένας σκύλος στην παραλία
numbers 0123456789 and symbols # $ % & @
""".strip().split("\n")


def train_tokenizer(outdir, family, tmp):
    text = os.path.join(tmp, "corpus.txt")
    with open(text, "w", encoding="utf-8") as f:
        for i in range(40):  # repeat with variations so the trainer has counts
            for line in CORPUS:
                f.write(line + "\n")
                f.write(line.lower() + " " + str(i) + "\n")
    prefix = os.path.join(tmp, "m")
    common = ["--input=" + text, "--model_prefix=" + prefix, "--num_threads=1",
              "--character_coverage=1.0", "--random_seed=7", "--minloglevel=2"]
    if family == "siglip":
        args = common + ["--model_type=unigram", "--vocab_size=700", "--hard_vocab_limit=false",
                         "--pad_id=0", "--eos_id=1", "--unk_id=2", "--bos_id=-1",
                         "--pad_piece=<pad>", "--eos_piece=</s>", "--unk_piece=<unk>"]
        name = "spiece.model"
    else:
        args = common + ["--model_type=bpe", "--vocab_size=900", "--hard_vocab_limit=false",
                         "--byte_fallback=true", "--split_digits=true",
                         "--normalization_rule_name=identity", "--add_dummy_prefix=false",
                         "--remove_extra_whitespaces=false", "--allow_whitespace_only_pieces=true",
                         "--pad_id=0", "--eos_id=1", "--bos_id=2", "--unk_id=3",
                         "--pad_piece=<pad>", "--eos_piece=<eos>", "--bos_piece=<bos>",
                         "--unk_piece=<unk>", "--user_defined_symbols=<mask>"]
        name = "tokenizer.model"
    subprocess.check_call(["spm_train"] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.copy(prefix + ".model", os.path.join(outdir, name))


def vocab_size(outdir, family):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor()
    sp.Load(os.path.join(outdir, "spiece.model" if family == "siglip" else "tokenizer.model"))
    return sp.GetPieceSize()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def tok_files(outdir, family):
    def added(content):
        return {"content": content, "lstrip": True, "normalized": False, "rstrip": True,
                "single_word": False, "special": True}
    if family == "siglip":
        write_json(os.path.join(outdir, "tokenizer_config.json"), {
            "added_tokens_decoder": {"1": added("</s>"), "2": added("<unk>")},
            "additional_special_tokens": [], "clean_up_tokenization_spaces": True,
            "do_lower_case": True, "eos_token": "</s>", "model_input_names": ["input_ids"],
            "model_max_length": 64, "pad_token": "</s>", "processor_class": "SiglipProcessor",
            "sp_model_kwargs": {}, "tokenizer_class": "SiglipTokenizer", "unk_token": "<unk>"})
        write_json(os.path.join(outdir, "special_tokens_map.json"), {
            "eos_token": added("</s>"), "pad_token": added("</s>"), "unk_token": added("<unk>")})
    else:
        def gadded(content):
            return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                    "single_word": False, "special": True}
        write_json(os.path.join(outdir, "tokenizer_config.json"), {
            "add_bos_token": False, "add_eos_token": True,
            "added_tokens_decoder": {str(i): gadded(c) for i, c in
                                     enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])},
            "bos_token": "<bos>",
            "clean_up_tokenization_spaces": False, "eos_token": "<eos>",
            "model_max_length": 64, "pad_token": "<pad>", "padding_side": "right",
            "processor_class": "SiglipProcessor", "sp_model_kwargs": {},
            "spaces_between_special_tokens": False, "tokenizer_class": "GemmaTokenizer",
            "unk_token": "<unk>", "use_default_system_prompt": False})
        write_json(os.path.join(outdir, "special_tokens_map.json"), {
            "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"})


def make_tensors(p, V, rng):
    t = OrderedDict()

    def lin(name, out_f, in_f):
        t[name + ".weight"] = rng.standard_normal((out_f, in_f), dtype=np.float32) / np.sqrt(in_f)
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
    C, T = tc["hidden_size"], 64
    t["text_model.embeddings.token_embedding.weight"] = rng.standard_normal((V, C), dtype=np.float32) * 0.5
    t["text_model.embeddings.position_embedding.weight"] = rng.standard_normal((T, C), dtype=np.float32) * 0.5
    layers("text_model", C, tc["intermediate_size"], tc["num_hidden_layers"])
    ln("text_model.final_layer_norm", C)
    lin("text_model.head", C, C)

    Cv, S, P, Fv = vc["hidden_size"], vc["image_size"], vc["patch_size"], vc["intermediate_size"]
    N = (S // P) ** 2
    t["vision_model.embeddings.patch_embedding.weight"] = (
        rng.standard_normal((Cv, 3, P, P), dtype=np.float32) / np.sqrt(3 * P * P))
    t["vision_model.embeddings.patch_embedding.bias"] = rng.standard_normal(Cv, dtype=np.float32) * 0.1
    t["vision_model.embeddings.position_embedding.weight"] = rng.standard_normal((N, Cv), dtype=np.float32) * 0.5
    layers("vision_model", Cv, Fv, vc["num_hidden_layers"])
    ln("vision_model.post_layernorm", Cv)
    t["vision_model.head.probe"] = rng.standard_normal((1, 1, Cv), dtype=np.float32)
    t["vision_model.head.attention.in_proj_weight"] = (
        rng.standard_normal((3 * Cv, Cv), dtype=np.float32) / np.sqrt(Cv))
    t["vision_model.head.attention.in_proj_bias"] = rng.standard_normal(3 * Cv, dtype=np.float32) * 0.1
    lin("vision_model.head.attention.out_proj", Cv, Cv)
    ln("vision_model.head.layernorm", Cv)
    lin("vision_model.head.mlp.fc1", Fv, Cv)
    lin("vision_model.head.mlp.fc2", Cv, Fv)
    # SigLIP's initial values: t' = log 10, b = -10
    t["logit_scale"] = np.array([np.log(10.0)], dtype=np.float32)
    t["logit_bias"] = np.array([-10.0], dtype=np.float32)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--family", choices=["siglip", "siglip2"], required=True)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sparse-config", action="store_true")
    ap.add_argument("--tokenizer-from")
    ap.add_argument("--ln-eps", type=float, default=1e-6)
    a = ap.parse_args()

    os.makedirs(a.outdir, exist_ok=True)
    fam = a.family
    if a.tokenizer_from:
        for f in ("spiece.model", "tokenizer.model"):
            if os.path.exists(os.path.join(a.tokenizer_from, f)):
                shutil.copy(os.path.join(a.tokenizer_from, f), a.outdir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            train_tokenizer(a.outdir, fam, tmp)
    tok_files(a.outdir, fam)
    V = vocab_size(a.outdir, fam)
    p = PRESETS[a.preset]
    tc = dict(p["text"], vocab_size=V, model_type="siglip_text_model")
    vc = dict(p["vision"], model_type="siglip_vision_model")
    if not a.sparse_config:
        for c in (tc, vc):
            c.update(hidden_act="gelu_pytorch_tanh", layer_norm_eps=a.ln_eps)
        tc.update(max_position_embeddings=64, projection_size=tc["hidden_size"])
        vc.update(num_channels=3)
    write_json(os.path.join(a.outdir, "config.json"), {
        "architectures": ["SiglipModel"], "initializer_factor": 1.0, "model_type": "siglip",
        "text_config": tc, "torch_dtype": "float32", "transformers_version": "4.47.0.dev0",
        "vision_config": vc})
    S = p["vision"]["image_size"]
    write_json(os.path.join(a.outdir, "preprocessor_config.json"), {
        "do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
        "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor",
        "resample": 3 if fam == "siglip" else 2, "rescale_factor": 0.00392156862745098,
        "size": {"height": S, "width": S}})
    rng = np.random.default_rng(a.seed)
    write_safetensors(os.path.join(a.outdir, "model.safetensors"), make_tensors(p, V, rng), a.dtype)


if __name__ == "__main__":
    main()
