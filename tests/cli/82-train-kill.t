#!/usr/bin/python3
"""82-train-kill.t - `clipdex train` killed with SIGKILL in the middle of
a save (issue 15: "a SIGKILL at any moment loses at most the work since
the last checkpoint"), and the removal of what such a kill leaves.

The kill lands at a chosen point of a save without any timing: the test
hook CLIPDEX_TEST_SAVE_STOP=WHERE:N (core/train/train_stale.c) makes
clipdex stop itself (SIGSTOP) there, the test sees it stopped
(waitpid WUNTRACED) and sends SIGKILL.  Points: "before" (OUT.tmp-PID
complete, not renamed) and "swapped" (the new model in OUT, the old one
in OUT.tmp-PID, not yet removed).

Checked: OUT is always a complete model, the old one or the new one
(bytes compared with uninterrupted runs); OUT.tmp-PID is left behind and
the next run with the same --out removes it, and only it: a directory
whose PID is alive and older than the directory, another output's, a
name that is not ours, or one holding a sub-directory stay; a directory
whose PID was reused by a younger process goes.  --resume after a kill
in a checkpoint ends byte-identical to the run that was never killed.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
import query_fixture as qf  # noqa: E402

T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-82-")
tiny = os.path.join(qf.ROOT, "build", "testdata", "models", "tiny")

rng = np.random.default_rng(8)
os.makedirs(os.path.join(tmp, "img"))
lines = []
for i in range(8):
    im = Image.new("RGB", (224, 224), tuple(int(v) for v in rng.integers(0, 60, 3)))
    d = ImageDraw.Draw(im)
    d.ellipse([40, 40, 160, 160], fill=tuple(int(v) for v in rng.integers(60, 255, 3)))
    im.save(os.path.join(tmp, "img", "%d.png" % i))
    lines.append("img/%d.png\tcaption number %d" % (i, i))
pairs = os.path.join(tmp, "pairs.tsv")
open(pairs, "w").write("\n".join(lines) + "\n")
FILES = ("model.safetensors", "train_state.safetensors", "train_state.json", "config.json")


def snap(d):
    return {f: open(os.path.join(d, f), "rb").read() for f in FILES if os.path.exists(os.path.join(d, f))}


def train(out, *args, env=None):
    return qf.run("train", "--data", pairs, "--out", out, "--batch", "4", "--lr", "1e-3", *args, model=tiny,
                  env=env)


def train_killed(out, where, *args):
    """Run train stopping at WHERE, SIGKILL it there; returns (pid, stopped)."""
    cmd = [qf.CLIPDEX, "train", "--model", tiny, "--data", pairs, "--out", out, "--batch", "4", "--lr", "1e-3"]
    e = qf.clean_env()
    e["CLIPDEX_TEST_SAVE_STOP"] = where
    p = subprocess.Popen(cmd + list(args), env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status = os.waitpid(p.pid, os.WUNTRACED)
    stopped = os.WIFSTOPPED(status)
    if stopped:
        os.kill(p.pid, signal.SIGKILL)
        os.waitpid(p.pid, 0)
    p.returncode = 0  # reaped by hand
    return p.pid, stopped


out = os.path.join(tmp, "out")
ref_old, ref_new = os.path.join(tmp, "ref-old"), os.path.join(tmp, "ref-new")
T.ok(train(ref_old, "--steps", "2", "--seed", "1").returncode == 0 and
     train(ref_new, "--steps", "2", "--seed", "2").returncode == 0, "uninterrupted reference runs")
old, new = snap(ref_old), snap(ref_new)
T.ok(old["model.safetensors"] != new["model.safetensors"], "the two references differ")

# a kill before the rename: the old model stays, OUT.tmp-PID is left
train(out, "--steps", "2", "--seed", "1")
pid1, st1 = train_killed(out, "before:1", "--steps", "2", "--seed", "2")
t1 = "%s.tmp-%d" % (out, pid1)
T.ok(st1 and os.path.isdir(t1) and snap(t1) == new, "killed before the rename: OUT.tmp-PID holds the new model")
T.ok(snap(out) == old, "killed before the rename: OUT is the old model, complete")
p = qf.run("embed", "--raw", "--text", "a caption", model=out)
T.ok(p.returncode == 0, "the old model still loads")

# a kill after the swap: the new model is in place, the old one left over
pid2, st2 = train_killed(out, "swapped:1", "--steps", "2", "--seed", "2")
t2 = "%s.tmp-%d" % (out, pid2)
T.ok(st2 and snap(out) == new, "killed after the swap: OUT is the new model, complete")
T.ok(os.path.isdir(t2) and snap(t2) == old, "killed after the swap: OUT.tmp-PID holds the old model")
T.ok(not os.path.exists(t1), "the second run removed the directory the first kill left")

# directories that must stay, and one whose PID a younger process reuses
me = "%s.tmp-%d" % (out, os.getpid())  # alive, and older than the directory
os.makedirs(me)
open(os.path.join(me, "model.safetensors"), "w").write("a save in progress")
keep = [me, out + ".tmp-abc", os.path.join(tmp, "other.tmp-%d" % pid1), out + ".tmp-0"]
for k in keep[1:]:
    os.makedirs(k)
withsub = "%s.tmp-%d" % (out, pid1 + 100000)
os.makedirs(os.path.join(withsub, "sub"))
keep.append(withsub)
reused = os.path.join(tmp, "reused")
os.makedirs(reused)
open(os.path.join(reused, "model.safetensors"), "w").write("x")
past = time.time() - 100
os.utime(reused, (past, past))
sleeper = subprocess.Popen(["sleep", "600"])  # started after the directory last changed
reused_name = "%s.tmp-%d" % (out, sleeper.pid)
os.rename(reused, reused_name)
os.utime(reused_name, (past, past))

p = train(out, "--steps", "2", "--seed", "1")
err = p.stderr.decode()
T.ok(p.returncode == 0 and "removed 2 temporary directories" in err, "the next run with the same --out: "
     "removes 2 directories and says so")
if p.returncode != 0 or "removed 2" not in err:
    T.diag(err)
T.ok(not os.path.exists(t2), "the one left by the kill after the swap is gone")
T.ok(not os.path.exists(reused_name), "the one whose PID a younger process reuses is gone")
T.ok(all(os.path.isdir(k) for k in keep), "kept: a live older process's, another output's, names not ours, "
     "one holding a sub-directory")
T.ok(snap(out) == old, "and the run wrote its model")
sleeper.kill()
sleeper.wait()

# --resume after a kill in a checkpoint ends as the run that was never killed
common = ["--steps", "6", "--save-every", "2", "--seed", "3", "--warmup", "1"]
whole = os.path.join(tmp, "whole")
T.ok(train(whole, *common).returncode == 0, "uninterrupted run of 6 steps, checkpoints every 2")
for where in ("before:2", "swapped:2"):
    o = os.path.join(tmp, "resume-" + where.replace(":", ""))
    pid, st = train_killed(o, where, *common)
    ts = snap(o)
    step = 2 if where.startswith("before") else 4
    T.ok(st and json.loads(ts.get("train_state.json", b"{}")).get("step") == step,
         "killed in the 2nd checkpoint (%s): OUT holds the checkpoint of step %d" % (where, step))
    p = qf.run("train", "--resume", "--out", o, model=None)
    T.ok(p.returncode == 0 and "removed 1 temporary directory" in p.stderr.decode(),
         "%s: --resume runs, removing the left-over directory" % where)
    T.ok(snap(o) == snap(whole), "%s: weights and AdamW moments byte-identical to the uninterrupted run" % where)

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(T.done())
