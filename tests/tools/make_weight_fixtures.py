#!/usr/bin/python3
"""make_weight_fixtures.py - checkpoint fixtures for tests/unit/test_weights.c.

usage: make_weight_fixtures.py OUTDIR

Writes small model directories in the three layouts core/engine/weights.c reads,
plus hostile ones, and the values the C test must find:

  OUTDIR/good/NAME/...           loadable checkpoints
  OUTDIR/good/NAME/expected.json {tensor: {"shape": [...], "values": [...]}}
                                 float32 values computed by numpy/torch
                                 (float32 -> Python float is exact)
  OUTDIR/hostile/NAME/...        broken or malicious checkpoints
  OUTDIR/manifest.json           what each directory must produce
  OUTDIR/f16_all.bin             all 65536 half bit patterns -> float32 (numpy)
  OUTDIR/bf16_all.bin            all 65536 bfloat16 patterns -> float32 (torch)

safetensors files are written here by hand (struct + json) and pickles for
the hostile torch files are assembled opcode by opcode, so nothing depends
on the C code under test.  Loading these files must never execute anything:
the "evil" pickles would only run harmless commands (`true`) even under a
real unpickler.
"""
import io
import json
import os
import shutil
import struct
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import torch

ST_DTYPE = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
            np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}


# ---------------------------------------------------------------- helpers

def raw_bytes(t):
    """(dtype name, little-endian bytes) of a numpy array or torch tensor."""
    if isinstance(t, torch.Tensor):
        if t.dtype == torch.bfloat16:
            return "BF16", t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
        t = t.numpy()
    a = np.ascontiguousarray(t)
    return ST_DTYPE[a.dtype], a.astype(a.dtype.newbyteorder("<")).tobytes()


def as_f32(t):
    if isinstance(t, torch.Tensor):
        return t.float().numpy()
    return np.asarray(t).astype(np.float32)


def safetensors_bytes(tensors, metadata=None, order=None, pad_to=8):
    """Serialise {name: array/tensor} in the safetensors layout.  order
    gives the data order (default: insertion order)."""
    header, blobs, off = {}, [], 0
    for name in (order or list(tensors)):
        dt, b = raw_bytes(tensors[name])
        shape = list(tensors[name].shape)
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata is not None:
        header["__metadata__"] = metadata
    return header_and_data(header, b"".join(blobs), pad_to)


def header_and_data(header, data, pad_to=8):
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad_to:
        h += b" " * (-len(h) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def raw_header(text, data=b""):
    """A file with exactly this header text (no padding), then data."""
    return struct.pack("<Q", len(text)) + text + data


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def json_float(x):
    """JSON has no inf/nan: those are written as strings."""
    x = float(x)
    return x if np.isfinite(x) else str(x)


def write_expected(d, tensors):
    exp = {}
    for name, t in tensors.items():
        a = as_f32(t)
        exp[name] = {"shape": list(a.shape), "values": [json_float(x) for x in a.reshape(-1)]}
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(exp, f)


def torch_zip(entries, prefix="archive"):
    """A torch-layout zip: entries maps names below PREFIX/ to bytes."""
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(prefix + "/" + name, data)
    return bio.getvalue()


# pickle opcodes, assembled by hand for the hostile pickles
def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def global_(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tensor_pickle(name, storage_cls="FloatStorage", key="0", numel=6, offset=0,
                  size=(2, 3), stride=(3, 1), legacy=False, view=b"N"):
    """The opcodes torch.save writes for {name: tensor}, protocol 2.  The
    legacy format's persistent id has a sixth item, view metadata (None)."""
    def ints(xs):
        return b"(" + b"".join(b"J" + struct.pack("<i", x) for x in xs) + b"t"
    return (b"\x80\x02" + global_("collections", "OrderedDict") + b")R"
            + b"(" + binunicode(name)
            + global_("torch._utils", "_rebuild_tensor_v2")
            + b"((" + binunicode("storage") + global_("torch", storage_cls)
            + binunicode(key) + binunicode("cpu") + b"J" + struct.pack("<i", numel)
            + (view if legacy else b"") + b"tQ"
            + b"J" + struct.pack("<i", offset) + ints(size) + ints(stride) + b"\x89"
            + global_("collections", "OrderedDict") + b")R" + b"tR"
            + b"u.")


# torch's legacy format (before 1.6): five pickles, then the storages
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950a86a20f9469cfc6c).to_bytes(10, "little") + b"."


def legacy_bin(state_pkl, keys, storages, little_endian=True, protocol=1001, magic=LEGACY_MAGIC):
    """A legacy torch.save file, assembled by hand: storages is a list of
    (numel written in the header, raw bytes), in the keys' order."""
    info = (b"\x80\x02}(" + binunicode("protocol_version") + b"M" + struct.pack("<H", 1001)
            + binunicode("little_endian") + (b"\x88" if little_endian else b"\x89")
            + binunicode("type_sizes") + b"}(" + binunicode("short") + b"K\x02"
            + binunicode("int") + b"K\x04" + binunicode("long") + b"K\x04" + b"uu.")
    key_list = b"\x80\x02](" + b"".join(binunicode(k) for k in keys) + b"e."
    data = b"".join(struct.pack("<q", n) + raw for n, raw in storages)
    return (magic + b"\x80\x02M" + struct.pack("<H", protocol) + b"." + info + state_pkl
            + key_list + data)


# ---------------------------------------------------------------- good

def good_fixtures(root):
    g = torch.Generator().manual_seed(1234)
    rnd = lambda *s: torch.randn(*s, generator=g)
    out = {}

    # 1. F32, with a scalar (logit_scale is 0-d in CLIPModel), an I64
    #    position_ids buffer and metadata, which must all be handled.
    d = os.path.join(root, "st_f32")
    t = OrderedDict()
    t["text_model.embeddings.token_embedding.weight"] = rnd(10, 4).numpy()
    t["text_model.final_layer_norm.bias"] = rnd(4).numpy()
    t["logit_scale"] = np.array(2.6592, dtype=np.float32)
    t["text_model.embeddings.position_ids"] = np.arange(7, dtype=np.int64)[None, :]
    t["empty"] = np.zeros((0, 3), dtype=np.float32)
    write(os.path.join(d, "model.safetensors"),
          safetensors_bytes(t, metadata={"format": "pt"}))
    write_expected(d, OrderedDict((k, v) for k, v in t.items() if v.dtype != np.int64))
    out["st_f32"] = {"dtype": "F32", "count": 4,
                     "unsupported": ["text_model.embeddings.position_ids"]}

    # 2. F16 with special values; the data order puts a 3-element F16 first
    #    so the F32 tensor after it is misaligned (copy path), and a 1-byte
    #    U8 tensor makes the next F16 tensor start at an odd offset.
    d = os.path.join(root, "st_f16")
    special = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1035e-05, 5.96e-08, 3.0e-07,
                        np.inf, -np.inf, 0.33325], dtype=np.float16)
    t = OrderedDict()
    t["a.f16"] = rnd(3).numpy().astype(np.float16)
    t["b.f32_misaligned"] = rnd(2, 5).numpy()
    t["c.u8"] = np.array([7], dtype=np.uint8)
    t["d.f16_odd_offset"] = special
    t["e.f16_matrix"] = rnd(6, 5).numpy().astype(np.float16)
    write(os.path.join(d, "model.safetensors"), safetensors_bytes(t))
    write_expected(d, OrderedDict((k, v) for k, v in t.items() if v.dtype != np.uint8))
    out["st_f16"] = {"dtype": "F16", "count": 4, "unsupported": ["c.u8"]}

    # 3. BF16 (converted by torch for the expected values), written in an
    #    order different from the header's.
    d = os.path.join(root, "st_bf16")
    t = OrderedDict()
    t["w1"] = rnd(3, 4).to(torch.bfloat16)
    t["w2"] = torch.tensor([0.0, -0.0, 1.0, 3.0e38, -1e-39, float("inf"), 1.0 / 3.0]).to(
        torch.bfloat16)
    t["w3"] = rnd(2, 2, 2).to(torch.bfloat16)
    write(os.path.join(d, "model.safetensors"), safetensors_bytes(t, order=["w3", "w1", "w2"]))
    write_expected(d, t)
    out["st_bf16"] = {"dtype": "BF16", "count": 3, "unsupported": []}

    # 4. Sharded: two shards and an index.
    d = os.path.join(root, "sharded")
    s1 = OrderedDict([("vision_model.a", rnd(4, 3).numpy()), ("vision_model.b", rnd(5).numpy())])
    s2 = OrderedDict([("text_model.c", rnd(2, 2).numpy().astype(np.float16)),
                      ("text_model.position_ids", np.arange(3, dtype=np.int64))])
    write(os.path.join(d, "model-00001-of-00002.safetensors"), safetensors_bytes(s1))
    write(os.path.join(d, "model-00002-of-00002.safetensors"), safetensors_bytes(s2))
    wm = {k: "model-00001-of-00002.safetensors" for k in s1}
    wm.update({k: "model-00002-of-00002.safetensors" for k in s2})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 123}, "weight_map": wm}, f)
    write_expected(d, OrderedDict(list(s1.items()) + [("text_model.c", s2["text_model.c"])]))
    out["sharded"] = {"dtype": "F32", "count": 3, "unsupported": ["text_model.position_ids"]}

    # 5. pytorch_model.bin through torch.save, as transformers writes it:
    #    a state dict (with _metadata), views into larger storages (torch
    #    saves the whole storage, so storage offsets are non-zero), a
    #    storage shared by two tensors, F16/BF16 and an int64 buffer.
    d = os.path.join(root, "bin")
    os.makedirs(d, exist_ok=True)
    big = rnd(10, 4)
    half = rnd(20).half()
    sd = OrderedDict()
    sd["linear.weight"] = rnd(3, 2)
    sd["linear.bias"] = rnd(3)
    sd["slice_rows"] = big[3:5]                  # offset 12, contiguous
    sd["slice_rows_again"] = big[7:8]            # same storage, offset 28
    sd["half_slice"] = half[5:12]                # F16, offset 5
    sd["half_full"] = rnd(4, 3).half()
    sd["bf16"] = rnd(2, 3).to(torch.bfloat16)
    sd["scalar"] = torch.tensor(4.6052)
    sd["column_view"] = big[:, 1]                # stride 4: refused on request
    sd["position_ids"] = torch.arange(77).unsqueeze(0)
    sd["unit_dims"] = rnd(1, 4, 1)
    sd._metadata = OrderedDict([("", {"version": 1}), ("linear", {"version": 1})])
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    write_expected(d, OrderedDict((k, v) for k, v in sd.items()
                                  if k not in ("column_view", "position_ids")))
    out["bin"] = {"dtype": "F32", "count": 10, "unsupported": ["column_view", "position_ids"]}

    # 5b. The same state dict in torch's legacy format (PyTorch < 1.6;
    #     older Hub uploads), written by torch itself.
    d = os.path.join(root, "bin_legacy")
    os.makedirs(d, exist_ok=True)
    torch.save(sd, os.path.join(d, "pytorch_model.bin"), _use_new_zipfile_serialization=False)
    write_expected(d, OrderedDict((k, v) for k, v in sd.items()
                                  if k not in ("column_view", "position_ids")))
    out["bin_legacy"] = {"dtype": "F32", "count": 10, "unsupported": ["column_view", "position_ids"]}

    # 5c. A legacy file assembled by hand (the exact layout; the unit test
    #     sweeps its truncations and byte flips).
    d = os.path.join(root, "bin_legacy_handmade")
    lv = np.arange(6, dtype=np.float32) * 0.25 + 1.0
    write(os.path.join(d, "pytorch_model.bin"),
          legacy_bin(tensor_pickle("w", key="94", legacy=True), ["94"], [(6, lv.tobytes())]))
    write_expected(d, {"w": lv.reshape(2, 3)})
    out["bin_legacy_handmade"] = {"dtype": "F32", "count": 1, "unsupported": []}

    # 6. The same pytorch_model.bin layout, hand-assembled (torch-style
    #    prefix other than "archive"), to pin down the exact opcodes.
    d = os.path.join(root, "bin_handmade")
    vals = np.arange(6, dtype=np.float32) * 0.5 - 1.0
    write(os.path.join(d, "pytorch_model.bin"),
          torch_zip({"data.pkl": tensor_pickle("w"), "data/0": vals.tobytes(), "version": b"3\n"},
                    prefix="pytorch_model"))
    write_expected(d, {"w": vals.reshape(2, 3)})
    out["bin_handmade"] = {"dtype": "F32", "count": 1, "unsupported": []}

    # 7. All three layouts present: model.safetensors must win.
    d = os.path.join(root, "prefer_st")
    t = OrderedDict([("x", np.array([1.5, 2.5], dtype=np.float32))])
    write(os.path.join(d, "model.safetensors"), safetensors_bytes(t))
    write(os.path.join(d, "pytorch_model.bin"), b"not a zip")
    write(os.path.join(d, "model.safetensors.index.json"), b"{")
    write_expected(d, t)
    out["prefer_st"] = {"dtype": "F32", "count": 1, "unsupported": []}
    return out


# ---------------------------------------------------------------- hostile

def hostile_fixtures(root):
    """Each entry: files to write, the status cdx_weights_open must return
    (or, with "request", the status of cdx_weights_f32 on that tensor), the
    file its message must name and the tensor it must name, if any."""
    H = []

    def add(name, files, status, file, tensor=None, request=None, says=None):
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        for fn, data in files.items():
            write(os.path.join(d, fn), data)
        H.append({"dir": name, "status": status, "file": file, "tensor": tensor,
                  "request": request, "says": says})

    ok_t = OrderedDict([("a", np.arange(6, dtype=np.float32).reshape(2, 3)),
                        ("b", np.arange(4, dtype=np.float16))])
    good = safetensors_bytes(ok_t)
    ST = "model.safetensors"

    # truncations at several points
    add("st_empty", {ST: b""}, "FORMAT", ST, says="truncated")
    add("st_cut_4", {ST: good[:4]}, "FORMAT", ST, says="truncated")
    add("st_cut_8", {ST: good[:8]}, "FORMAT", ST, says="truncated")
    add("st_cut_header", {ST: good[:20]}, "FORMAT", ST, says="truncated")
    add("st_cut_data", {ST: good[:-3]}, "FORMAT", ST, tensor="b")
    # header length: past the end, absurd, zero
    add("st_hlen_past_end", {ST: struct.pack("<Q", 1 << 20) + good[8:]}, "FORMAT", ST)
    add("st_hlen_huge", {ST: struct.pack("<Q", (1 << 64) - 1) + good[8:]}, "FORMAT", ST)
    add("st_hlen_zero", {ST: struct.pack("<Q", 0) + good[8:]}, "FORMAT", ST)
    # bad JSON / wrong JSON types
    add("st_bad_json", {ST: raw_header(b'{"a": {"dtype": ')}, "FORMAT", ST, says="JSON")
    add("st_json_garbage", {ST: raw_header(b'{"a":]}x', b"\0" * 8)}, "FORMAT", ST)
    add("st_json_array", {ST: raw_header(b"[1,2,3] ")}, "FORMAT", ST)
    add("st_json_trailing", {ST: raw_header(b"{}  xyz ")}, "FORMAT", ST)
    add("st_nested_deep", {ST: raw_header(b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}")},
        "FORMAT", ST)

    def hdr(entries, data=b"\0" * 24):
        return header_and_data(entries, data)
    add("st_offsets_past_end",
        {ST: hdr({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [8, 32]}})},
        "FORMAT", ST, tensor="a")
    add("st_offsets_reversed",
        {ST: hdr({"a": {"dtype": "F32", "shape": [0], "data_offsets": [16, 8]}})},
        "FORMAT", ST, tensor="a")
    add("st_size_mismatch",
        {ST: hdr({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})},
        "FORMAT", ST, tensor="a")
    add("st_shape_overflow",
        {ST: hdr({"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40, 1 << 20],
                        "data_offsets": [0, 0]}})},
        "FORMAT", ST, tensor="a")
    add("st_shape_negative",
        {ST: hdr({"a": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}})},
        "FORMAT", ST, tensor="a")
    add("st_shape_float",
        {ST: hdr({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 6]}})},
        "FORMAT", ST, tensor="a")
    add("st_overlap",
        {ST: hdr({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})},
        "FORMAT", ST, tensor="b")
    add("st_unknown_dtype",
        {ST: hdr({"a": {"dtype": "F17", "shape": [2], "data_offsets": [0, 8]}})},
        "FORMAT", ST, tensor="a")
    add("st_missing_dtype",
        {ST: hdr({"a": {"shape": [2], "data_offsets": [0, 8]}})}, "FORMAT", ST, tensor="a")
    add("st_missing_offsets",
        {ST: hdr({"a": {"dtype": "F32", "shape": [2]}})}, "FORMAT", ST, tensor="a")
    add("st_entry_not_object", {ST: hdr({"a": 5})}, "FORMAT", ST, tensor="a")
    add("st_duplicate_name",
        {ST: raw_header(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                        b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8)},
        "FORMAT", ST, tensor="a")
    # well-formed, but the request is refused
    add("st_unsupported_dtype_requested",
        {ST: safetensors_bytes(OrderedDict([("ids", np.arange(3, dtype=np.int64)),
                                            ("x", np.ones(2, dtype=np.float32))]))},
        "UNSUPPORTED", ST, tensor="ids", request="ids", says="I64")

    # sharded
    IDX = "model.safetensors.index.json"
    shard = safetensors_bytes(OrderedDict([("a", np.ones(2, dtype=np.float32))]))

    def index(wm):
        return json.dumps({"weight_map": wm}).encode()
    add("idx_bad_json", {IDX: b'{"weight_map": '}, "FORMAT", IDX)
    add("idx_no_map", {IDX: b'{"metadata": {}}'}, "FORMAT", IDX)
    add("idx_traversal", {IDX: index({"a": "../model.safetensors"})}, "FORMAT", IDX, tensor="a")
    add("idx_subdir", {IDX: index({"a": "sub/model.safetensors"})}, "FORMAT", IDX, tensor="a")
    add("idx_missing_shard", {IDX: index({"a": "model-00001-of-00001.safetensors"})},
        "MODEL", IDX, says="model-00001-of-00001.safetensors")
    add("idx_tensor_not_in_shard",
        {IDX: index({"a": "s1.safetensors", "zz": "s1.safetensors"}), "s1.safetensors": shard},
        "FORMAT", IDX, tensor="zz")
    add("idx_wrong_shard",
        {IDX: index({"a": "s2.safetensors", "b": "s1.safetensors"}), "s1.safetensors": shard,
         "s2.safetensors": safetensors_bytes(OrderedDict([("b", np.ones(1, dtype=np.float32))]))},
        "FORMAT", IDX, tensor="a")
    add("idx_duplicate_across_shards",
        {IDX: index({"a": "s1.safetensors", "b": "s2.safetensors"}), "s1.safetensors": shard,
         "s2.safetensors": safetensors_bytes(OrderedDict([("a", np.ones(2, dtype=np.float32)),
                                                          ("b", np.ones(1, dtype=np.float32))]))},
        "FORMAT", "s2.safetensors", tensor="a")
    add("idx_bad_shard", {IDX: index({"a": "s1.safetensors"}), "s1.safetensors": shard[:30]},
        "FORMAT", "s1.safetensors")

    # pytorch_model.bin
    BIN = "pytorch_model.bin"
    vals = np.arange(6, dtype=np.float32).tobytes()

    def tz(pkl, data=vals, extra=None):
        e = {"data.pkl": pkl, "data/0": data, "version": b"3\n"}
        e.update(extra or {})
        return torch_zip(e)
    good_pkl = tensor_pickle("w")
    # evil pickles: what a malicious checkpoint does to run code on load
    add("pkl_os_system",
        {BIN: tz(b"\x80\x02" + global_("os", "system") + binunicode("true") + b"\x85R.")},
        "FORMAT", BIN, says="os.system")
    add("pkl_builtins_eval",
        {BIN: tz(b"\x80\x02" + global_("builtins", "eval") + binunicode("1") + b"\x85R.")},
        "FORMAT", BIN, says="builtins.eval")
    add("pkl_stack_global_eval",
        {BIN: tz(b"\x80\x04" + b"\x8c\x08builtins\x8c\x04eval\x93" + binunicode("1") + b"\x85R.")},
        "FORMAT", BIN, says="builtins.eval")
    # the evil call hidden inside an otherwise valid state dict
    add("pkl_nested_system",
        {BIN: tz(good_pkl[:-2] + binunicode("x") + global_("posix", "system")
                 + binunicode("true") + b"\x85Ru.")},
        "FORMAT", BIN, says="posix.system")
    add("pkl_reduce_storage",
        {BIN: tz(b"\x80\x02" + global_("torch", "FloatStorage") + b")R.")}, "FORMAT", BIN)
    add("pkl_unknown_opcode", {BIN: tz(b"\x80\x02}\xff.")}, "FORMAT", BIN, says="0xff")
    add("pkl_inst_opcode", {BIN: tz(b"\x80\x02(ios\nsystem\n.")}, "FORMAT", BIN)
    add("pkl_no_stop", {BIN: tz(good_pkl[:-1])}, "FORMAT", BIN, says="truncated")
    add("pkl_cut_string", {BIN: tz(b"\x80\x02X\xff\x00\x00\x00abc")}, "FORMAT", BIN)
    add("pkl_underflow", {BIN: tz(b"\x80\x02s.")}, "FORMAT", BIN, says="underflow")
    add("pkl_tuple_no_mark", {BIN: tz(b"\x80\x02K\x01t.")}, "FORMAT", BIN)
    add("pkl_mark_isolation", {BIN: tz(b"\x80\x02}K\x01(K\x02s.")}, "FORMAT", BIN)
    add("pkl_memo_unset", {BIN: tz(b"\x80\x02h\x05.")}, "FORMAT", BIN, says="memo")
    add("pkl_memo_huge", {BIN: tz(b"\x80\x02}r\xff\xff\xff\x7f.")}, "FORMAT", BIN, says="memo")
    add("pkl_deep_marks", {BIN: tz(b"\x80\x02" + b"(" * 100000 + b".")}, "FORMAT", BIN,
        says="nesting")
    add("pkl_not_dict", {BIN: tz(b"\x80\x02].")}, "FORMAT", BIN)
    add("pkl_value_not_tensor", {BIN: tz(b"\x80\x02}X\x01\x00\x00\x00aK\x01s.")}, "FORMAT", BIN,
        tensor="a")
    add("pkl_missing_storage", {BIN: tz(tensor_pickle("w", key="7"))}, "FORMAT", BIN,
        tensor="w")
    add("pkl_bad_storage_key", {BIN: tz(tensor_pickle("w", key="../0"))}, "FORMAT", BIN,
        tensor="w")
    add("pkl_storage_too_small", {BIN: tz(tensor_pickle("w", numel=100))}, "FORMAT", BIN,
        tensor="w")
    add("pkl_view_past_storage", {BIN: tz(tensor_pickle("w", offset=3))}, "FORMAT", BIN,
        tensor="w")
    add("pkl_negative_offset", {BIN: tz(tensor_pickle("w", offset=-1))}, "FORMAT", BIN,
        tensor="w")
    add("pkl_huge_shape",
        {BIN: tz(tensor_pickle("w", size=(1 << 30, 1 << 30, 1 << 30), stride=(0, 0, 0)))},
        "FORMAT", BIN, tensor="w")
    add("pkl_long_storage_requested",
        {BIN: tz(tensor_pickle("w", storage_cls="LongStorage", numel=6),
                 data=np.arange(6, dtype=np.int64).tobytes())},
        "UNSUPPORTED", BIN, tensor="w", request="w", says="I64")
    add("pkl_strided_requested",
        {BIN: tz(tensor_pickle("w", size=(3, 2), stride=(1, 3)))},
        "UNSUPPORTED", BIN, tensor="w", request="w", says="contiguous")
    add("pkl_two_data_pkl", {BIN: _two_pkl_zip(good_pkl, vals)}, "FORMAT", BIN,
        says="data.pkl")
    add("pkl_no_data_pkl", {BIN: torch_zip({"data/0": vals})}, "FORMAT", BIN, says="data.pkl")
    full = tz(good_pkl)
    add("bin_truncated_zip", {BIN: full[:len(full) // 2]}, "FORMAT", BIN)
    add("bin_truncated_end", {BIN: full[:-10]}, "FORMAT", BIN)
    add("bin_empty", {BIN: b""}, "FORMAT", BIN)
    add("bin_legacy_pickle", {BIN: b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02}q\x00."},
        "FORMAT", BIN)
    add("bin_corrupt_storage",
        {BIN: _corrupt_crc(tz(good_pkl))}, "FORMAT", BIN, tensor="w", request="w")

    # the legacy format: the same restricted unpickler, and its own layout
    lpkl = tensor_pickle("w", key="5", legacy=True)
    lgood = [(6, vals)]
    add("legacy_os_system",
        {BIN: legacy_bin(b"\x80\x02" + global_("os", "system") + binunicode("true") + b"\x85R.",
                         ["5"], lgood)}, "FORMAT", BIN, says="os.system")
    add("legacy_nested_system",
        {BIN: legacy_bin(lpkl[:-2] + binunicode("x") + global_("posix", "system")
                         + binunicode("true") + b"\x85Ru.", ["5"], lgood)},
        "FORMAT", BIN, says="posix.system")
    add("legacy_evil_sysinfo",
        {BIN: LEGACY_MAGIC + b"\x80\x02M\xe9\x03." + b"\x80\x02" + global_("os", "system")
         + binunicode("true") + b"\x85R."}, "FORMAT", BIN, says="os.system")
    lkeys = b"\x80\x02](" + binunicode("5") + b"e."
    add("legacy_evil_keys",
        {BIN: legacy_bin(lpkl, ["5"], lgood).replace(
            lkeys, b"\x80\x02" + global_("builtins", "eval") + binunicode("1") + b"\x85R.")},
        "FORMAT", BIN, says="builtins.eval")
    add("legacy_protocol", {BIN: legacy_bin(lpkl, ["5"], lgood, protocol=1000)}, "FORMAT", BIN,
        says="protocol version")
    add("legacy_big_endian", {BIN: legacy_bin(lpkl, ["5"], lgood, little_endian=False)},
        "UNSUPPORTED", BIN, says="big-endian")
    add("legacy_five_item_pid", {BIN: legacy_bin(tensor_pickle("w", key="5"), ["5"], lgood)},
        "FORMAT", BIN, says="persistent id")
    add("legacy_view_metadata",
        {BIN: legacy_bin(tensor_pickle("w", key="5", legacy=True,
                                       view=b"(" + binunicode("5") + b"K\x00K\x06t"), ["5"], lgood)},
        "FORMAT", BIN, says="view")
    add("legacy_truncated_data", {BIN: legacy_bin(lpkl, ["5"], lgood)[:-5]}, "FORMAT", BIN,
        says="truncated")
    add("legacy_no_storages", {BIN: legacy_bin(lpkl, ["5"], lgood)[:-(8 + 24)]}, "FORMAT", BIN)
    add("legacy_trailing", {BIN: legacy_bin(lpkl, ["5"], lgood) + b"\0" * 4}, "FORMAT", BIN,
        says="after the last storage")
    add("legacy_numel_mismatch", {BIN: legacy_bin(lpkl, ["5"], [(7, vals + b"\0" * 4)])},
        "FORMAT", BIN, says="elements")
    add("legacy_numel_huge", {BIN: legacy_bin(tensor_pickle("w", key="5", legacy=True, numel=(1 << 31) - 1),
                                              ["5"], [((1 << 31) - 1, vals)])},
        "FORMAT", BIN, says="truncated")
    add("legacy_unknown_key", {BIN: legacy_bin(lpkl, ["6"], lgood)}, "FORMAT", BIN, says="6")
    add("legacy_key_twice", {BIN: legacy_bin(lpkl, ["5", "5"], lgood * 2)}, "FORMAT", BIN,
        says="twice")
    add("legacy_key_missing", {BIN: legacy_bin(lpkl, [], [])}, "FORMAT", BIN, tensor="w")
    add("legacy_view_past_storage",
        {BIN: legacy_bin(tensor_pickle("w", key="5", legacy=True, offset=3), ["5"], lgood)},
        "FORMAT", BIN, tensor="w")
    add("legacy_keys_not_list",
        {BIN: legacy_bin(lpkl, ["5"], lgood).replace(lkeys, b"\x80\x02}.")},
        "FORMAT", BIN, says="key list")
    add("legacy_magic_only", {BIN: LEGACY_MAGIC}, "FORMAT", BIN, says="truncated")

    # directory level
    add("no_weights", {"config.json": b"{}"}, "MODEL", "", says="no model.safetensors")
    H.append({"dir": "does_not_exist", "status": "IO", "file": "", "tensor": None,
              "request": None, "says": None})
    return H


def _two_pkl_zip(pkl, vals):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a/data.pkl", pkl)
        z.writestr("b/data.pkl", pkl)
        z.writestr("a/data/0", vals)
    return bio.getvalue()


def _corrupt_crc(zbytes):
    """Flip bytes inside the stored data of PREFIX/data/0 so only the CRC
    check (on a full read) can notice."""
    info = zipfile.ZipFile(io.BytesIO(zbytes)).getinfo("archive/data/0")
    # Find the data by its known contents (simpler than parsing the local
    # header, whose extra field may differ from the central directory's).
    pos = zbytes.find(np.arange(6, dtype=np.float32).tobytes(), info.header_offset)
    assert pos >= 0
    b = bytearray(zbytes)
    b[pos + 4] ^= 0xFF
    return bytes(b)


# ---------------------------------------------------------------- main

def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_weight_fixtures.py OUTDIR")
    out = sys.argv[1]
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    good = good_fixtures(os.path.join(tmp, "good"))
    hostile = hostile_fixtures(os.path.join(tmp, "hostile"))

    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    with np.errstate(all="ignore"):
        bits.view(np.float16).astype("<f4").tofile(os.path.join(tmp, "f16_all.bin"))
    torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16).float().numpy() \
        .astype("<f4").tofile(os.path.join(tmp, "bf16_all.bin"))

    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump({"good": good, "hostile": hostile}, f, indent=1)
    # Replace the output in one step so a concurrent reader never sees a
    # half-written fixture tree.
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


if __name__ == "__main__":
    main()
