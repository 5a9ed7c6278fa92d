#!/usr/bin/python3
"""11-model-errors.t - broken model directories fail with one clear line.

Each case copies the tiny test model, breaks one thing, and runs
`clipdex embed` (and `clipdex model`): the exit status must be 3 (a
runtime error, never a signal), stderr one line naming the file and, where
one is at fault, the tensor.  Under `make asan-check` the same runs use
the sanitizer build, so a memory error fails the test too.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CLIPDEX_BUILD", "build")
CLIPDEX = os.path.join(ROOT, BUILD, "bin", "clipdex")
TINY = os.path.join(ROOT, "build", "testdata", "models", "tiny")
TINY_BIN = os.path.join(ROOT, "build", "testdata", "models", "tiny-bin")
IMG = os.path.join(ROOT, "build", "testdata", "images", "photo420.jpg")

n = failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    failed += not cond
    print("%sok %d - %s" % ("" if cond else "not ", n, msg), flush=True)


def copy_model(src, tmp, name):
    d = os.path.join(tmp, name)
    shutil.copytree(src, d)
    return d


def expect_error(name, d, *needles, args=("--text", "a dog", "--image", IMG)):
    p = subprocess.run([CLIPDEX, "embed", "--model", d] + list(args), capture_output=True)
    err = p.stderr.decode(errors="replace")
    lines = [l for l in err.splitlines() if l.strip()]
    good = p.returncode == 3 and len(lines) == 1 and all(x in err for x in needles) and not p.stdout
    ok(good, "%s: exit %d, one line naming %s" % (name, p.returncode, ", ".join(needles)))
    if not good:
        print("# stderr: %r" % err[:400])


def rewrite_header(path, fn):
    with open(path, "rb") as f:
        data = f.read()
    (hl,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hl])
    fn(header)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data[8 + hl:])


def main():
    tmp = tempfile.mkdtemp(prefix="cdx-model-errors-")
    try:
        d = copy_model(TINY, tmp, "no-config")
        os.remove(os.path.join(d, "config.json"))
        expect_error("missing config.json", d, "config.json")

        d = copy_model(TINY, tmp, "bad-config")
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write("{not json")
        expect_error("config.json not JSON", d, "config.json")

        d = copy_model(TINY, tmp, "bad-act")
        cfg = json.load(open(os.path.join(d, "config.json")))
        cfg["vision_config"]["hidden_act"] = "relu"
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        expect_error("unknown hidden_act", d, "config.json", "hidden_act", "relu")

        d = copy_model(TINY, tmp, "wrong-width")
        cfg = json.load(open(os.path.join(d, "config.json")))
        cfg["text_config"]["hidden_size"] = 128
        json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
        expect_error("config/weights shape mismatch", d, "model.safetensors", "text_model.")

        d = copy_model(TINY, tmp, "no-weights")
        os.remove(os.path.join(d, "model.safetensors"))
        expect_error("no weights", d, "model.safetensors", "pytorch_model.bin")

        d = copy_model(TINY, tmp, "truncated")
        p = os.path.join(d, "model.safetensors")
        os.truncate(p, os.path.getsize(p) // 2)
        expect_error("truncated safetensors", d, "model.safetensors")

        d = copy_model(TINY, tmp, "missing-tensor")
        rewrite_header(os.path.join(d, "model.safetensors"),
                       lambda h: h.pop("vision_model.post_layernorm.weight"))
        expect_error("missing tensor", d, "model.safetensors", "vision_model.post_layernorm.weight")

        d = copy_model(TINY, tmp, "offset-past-end")
        rewrite_header(os.path.join(d, "model.safetensors"),
                       lambda h: h["logit_scale"].update(data_offsets=[10 ** 12, 10 ** 12 + 4]))
        expect_error("offsets past the end", d, "model.safetensors", "logit_scale")

        d = copy_model(TINY, tmp, "bad-dtype")
        rewrite_header(os.path.join(d, "model.safetensors"),
                       lambda h: h["logit_scale"].update(dtype="I32"))
        expect_error("unsupported dtype", d, "model.safetensors", "logit_scale")

        d = copy_model(TINY, tmp, "no-vocab")
        os.remove(os.path.join(d, "vocab.json"))
        expect_error("missing vocab.json", d, "vocab.json")

        # A pytorch_model.bin whose pickle calls os.system: refused, nothing runs.
        d = copy_model(TINY_BIN, tmp, "evil-pickle")
        marker = os.path.join(tmp, "pwned")
        evil = (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len("touch " + marker)) +
                ("touch " + marker).encode() + b"\x85R.")
        with zipfile.ZipFile(os.path.join(d, "pytorch_model.bin"), "w") as z:
            z.writestr("archive/data.pkl", evil)
            z.writestr("archive/version", "3\n")
        expect_error("pickle calling os.system", d, "pytorch_model.bin", "os")
        ok(not os.path.exists(marker), "the malicious pickle executed nothing")

        # `clipdex model` reports the same way.
        p = subprocess.run([CLIPDEX, "model", "--model", os.path.join(tmp, "bad-act")], capture_output=True)
        ok(p.returncode == 3 and b"relu" in p.stderr, "clipdex model: bad model is exit 3 with the reason")
        p = subprocess.run([CLIPDEX, "model", "--model", TINY], capture_output=True)
        out = p.stdout.decode()
        ok(p.returncode == 0 and "quick_gelu" in out and "F32" in out and "parameters:" in out,
           "clipdex model summarises a good model")
        # No model at all: a usage error that says how to get one.
        env = dict(os.environ)
        env.pop("CLIPDEX_MODEL", None)
        env["XDG_CONFIG_HOME"] = os.path.join(tmp, "no-config-here")
        p = subprocess.run([CLIPDEX, "embed", "--text", "x"], capture_output=True, env=env)
        ok(p.returncode == 2 and b"get-model" in p.stderr, "no model: exit 2 and how to get one")
        # The configured default: [model] dir in clipdex.conf.
        cfg = os.path.join(tmp, "xdg", "clipdex")
        os.makedirs(cfg)
        with open(os.path.join(cfg, "clipdex.conf"), "w") as f:
            f.write("[model]\ndir = %s\n" % TINY)
        env["XDG_CONFIG_HOME"] = os.path.join(tmp, "xdg")
        p = subprocess.run([CLIPDEX, "tokenize", "a photo of a dog"], capture_output=True, env=env)
        ok(p.returncode == 0 and b"[49406,320,1125,539,320,1929,49407]" in p.stdout,
           "without --model or CLIPDEX_MODEL the model comes from clipdex.conf")
    finally:
        shutil.rmtree(tmp)
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
