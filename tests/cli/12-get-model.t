#!/usr/bin/python3
"""12-get-model.t - scripts/get-model against a local HTTP server on
127.0.0.1 (HF_ENDPOINT) serving generated model directories laid out as
the Hub serves them (REPO/resolve/main/FILE): a single model.safetensors,
a sharded checkpoint (model.safetensors.index.json and the shards it
names), pytorch_model.bin only, and an index naming a shard outside the
directory.  The downloaded files must be byte-identical to the served
ones, and clipdex must embed the same text from both directories.  SigLIP
and SigLIP 2 layouts: spiece.model or Gemma's tokenizer.model with
tokenizer_config.json and special_tokens_map.json, no vocab.json."""
import filecmp
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
MODELS = os.path.join(qf.ROOT, "build", "testdata", "models")
GET = os.path.join(qf.ROOT, "scripts", "get-model")
tmp = tempfile.mkdtemp(prefix="cdx-12-")
srv_root = os.path.join(tmp, "srv")
log = []


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        log.append(self.path)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=srv_root))
threading.Thread(target=srv.serve_forever, daemon=True).start()
endpoint = "http://127.0.0.1:%d" % srv.server_address[1]


def publish(repo, src, drop=()):
    d = os.path.join(srv_root, repo, "resolve", "main")
    shutil.copytree(src, d, ignore=shutil.ignore_patterns(".*", *drop))   # not make_testdata's .stamp
    return d


def get(repo, out):
    env = dict(qf.clean_env(), HF_ENDPOINT=endpoint)
    p = subprocess.run(["sh", GET, repo, out], capture_output=True, env=env)
    # curl's progress meter is noise here; keep get-model's own lines
    p.stderr = b"\n".join(l for l in p.stderr.splitlines() if b"get-model" in l)
    return p


def same_files(a, b):
    names = sorted(os.listdir(a))
    return names == sorted(os.listdir(b)) and all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), False)
                                                  for n in names)


def embed(model):
    p = qf.run("embed", "--text", "a red car", model=model)
    return p.stdout if p.returncode == 0 else None


cases = [("t/single", "tiny", ()), ("t/sharded", "tiny-sharded", ()), ("t/bin", "tiny-bin", ())]
# SigLIP (spiece.model) and SigLIP 2 (tokenizer.model) layouts
cases += [("google/siglip-t", "siglip-tiny", ()), ("google/siglip2-t", "siglip2-tiny", ())]
for repo, name, drop in cases:
    src = publish(repo, os.path.join(MODELS, name), drop)
    out = os.path.join(tmp, "got-" + name)
    p = get(repo, out)
    T.ok(p.returncode == 0, "%s: get-model exits 0 (%s)" % (name, p.stderr.decode(errors="replace")[-300:]))
    T.ok(same_files(src, out), "%s: the served files, byte for byte: %s" % (name, sorted(os.listdir(out))))
    e = embed(out)
    T.ok(e is not None and e == embed(src), "%s: clipdex embeds the same text from the download" % name)

# OpenCLIP repositories: open_clip_config.json and one weights file; a
# repository with both layouts gets the OpenCLIP one, or with --format clip
# the transformers one.
def get_fmt(fmt, repo, out):
    env = dict(qf.clean_env(), HF_ENDPOINT=endpoint)
    return subprocess.run(["sh", GET, "--format", fmt, repo, out], capture_output=True, env=env)


for repo, name in (("oc/st", "oc-tiny"), ("oc/bin", "oc-tiny-bin")):
    src = publish(repo, os.path.join(MODELS, name))
    out = os.path.join(tmp, "got-" + name)
    p = get(repo, out)
    T.ok(p.returncode == 0 and same_files(src, out),
         "%s: get-model fetches the OpenCLIP files: %s" % (name, sorted(os.listdir(out)) if os.path.isdir(out) else p.stderr))
    e = embed(out)
    T.ok(e is not None and e == embed(src), "%s: clipdex embeds the same text from the download" % name)
both = os.path.join(srv_root, "oc", "both", "resolve", "main")
publish("oc/both", os.path.join(MODELS, "tiny"))
for f in os.listdir(os.path.join(MODELS, "oc-tiny")):
    if not f.startswith("."):
        shutil.copy(os.path.join(MODELS, "oc-tiny", f), both)
out = os.path.join(tmp, "got-both")
p = get("oc/both", out)
T.ok(p.returncode == 0 and sorted(os.listdir(out)) == ["open_clip_config.json", "open_clip_model.safetensors"],
     "both layouts: the OpenCLIP files by default")
out = os.path.join(tmp, "got-both-clip")
p = get_fmt("clip", "oc/both", out)
T.ok(p.returncode == 0 and "config.json" in os.listdir(out) and "open_clip_config.json" not in os.listdir(out),
     "both layouts, --format clip: the transformers files")
p = get_fmt("openclip", "t/single", os.path.join(tmp, "got-not-oc"))
T.ok(p.returncode != 0 and b"open_clip_config.json" in p.stderr, "--format openclip on a CLIP repository fails clearly")

# An index that names a shard outside the directory is refused.
evil = publish("t/evil", os.path.join(MODELS, "tiny-sharded"))
with open(os.path.join(evil, "model.safetensors.index.json"), "w") as f:
    f.write('{"metadata": {}, "weight_map": {"a.weight": "../../x.safetensors"}}\n')
p = get("t/evil", os.path.join(tmp, "got-evil"))
T.ok(p.returncode != 0 and b"refusing shard name" in p.stderr and not os.path.exists(os.path.join(tmp, "x.safetensors")),
     "a shard name with a slash is refused: %s" % p.stderr.decode(errors="replace").strip()[-200:])
# A repository with no weights at all fails.
publish("t/none", os.path.join(MODELS, "tiny"), drop=("*.safetensors",))
p = get("t/none", os.path.join(tmp, "got-none"))
T.ok(p.returncode != 0, "no weights file: get-model fails (exit %d)" % p.returncode)
srv.shutdown()
shutil.rmtree(tmp)
sys.exit(T.done())
