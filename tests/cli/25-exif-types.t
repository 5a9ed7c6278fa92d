#!/usr/bin/python3
"""25-exif-types.t - EXIF Orientation stored with any integer type
(BYTE, SHORT, LONG, SBYTE, SSHORT, SLONG), in both byte orders, in a
JPEG: clipdex reads the value Pillow reads (the oracle; a Panasonic
DMC-GF1 writes SLONG 6, which clipdex once reported as 1, so the photo
was indexed lying on its side).  The EXIF blocks are built here with
struct, not by clipdex or Pillow."""
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import query_fixture as qf  # noqa: E402
from PIL import Image  # noqa: E402

TYPES = {1: ("BYTE", "B"), 3: ("SHORT", "H"), 4: ("LONG", "I"), 6: ("SBYTE", "b"), 8: ("SSHORT", "h"),
         9: ("SLONG", "i")}


def exif_block(bo, typ, value):
    """Exif\\0\\0 + TIFF header + IFD0 with one Orientation entry."""
    e = "<" if bo == "II" else ">"
    fmt = TYPES[typ][1]
    val = struct.pack(e + fmt, value).ljust(4, b"\0")
    tiff = (bo.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1) +
            struct.pack(e + "HHI", 0x0112, typ, 1) + val + struct.pack(e + "I", 0))
    return b"Exif\0\0" + tiff


def jpeg_with_exif(block):
    buf = io.BytesIO()
    qf.scene(64, 48, 7).save(buf, "JPEG", quality=90)
    j = buf.getvalue()
    app1 = b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block
    return j[:2] + app1 + j[2:]


T = qf.Tap()
tmp = tempfile.mkdtemp(prefix="cdx-25-")
for bo in ("II", "MM"):
    for typ, (name, _) in TYPES.items():
        path = os.path.join(tmp, "o6-%s-%s.jpg" % (name, bo))
        with open(path, "wb") as f:
            f.write(jpeg_with_exif(exif_block(bo, typ, 6)))
        pil = Image.open(path).getexif().get(0x0112)
        if isinstance(pil, bytes):   # Pillow gives a BYTE entry as its raw bytes
            pil = pil[0] if len(pil) == 1 else pil
        p = subprocess.run([qf.CLIPDEX, "info", "--format", "json", path], capture_output=True,
                           env=qf.clean_env())
        qf.sanitizer_check(p, "info " + path)
        got = json.loads(p.stdout)["orientation"] if p.returncode == 0 else None
        T.ok(pil == 6 and got == pil, "Orientation as %s (%s): Pillow %s, clipdex %s" % (name, bo, pil, got))
subprocess.run(["rm", "-rf", tmp])
sys.exit(T.done())
