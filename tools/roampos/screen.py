"""`roampos screen`: save what a terminal's display shows as a PNG.

Asks the console for `screen raw` (the 128x64 1-bit image, MONO_VLSB bytes
in hex) and writes it scaled up, white pixels on black like the OLED.
"""
import argparse
import binascii
import sys

import serial
from PIL import Image

from roampos.console_client import Console

__all__ = ["add_arguments", "run", "image_from_raw", "save"]


def image_from_raw(raw: dict, scale: int = 4) -> Image.Image:
    """A PIL image from a `screen raw` reply (MONO_VLSB: one byte = 8 rows of a column)."""
    w, h = int(raw["w"]), int(raw["h"])
    if raw.get("format") != "MONO_VLSB":
        raise ValueError("unsupported screen format %r" % raw.get("format"))
    data = binascii.unhexlify(raw["hex"])
    if len(data) != w * h // 8:
        raise ValueError("screen data is %d bytes, expected %d" % (len(data), w * h // 8))
    img = Image.new("1", (w, h), 0)
    px = img.load()
    for page in range(h // 8):
        for x in range(w):
            b = data[page * w + x]
            for bit in range(8):
                if b >> bit & 1:
                    px[x, page * 8 + bit] = 1
    return img.resize((w * scale, h * scale), Image.NEAREST) if scale > 1 else img


def save(port: str, out: str, scale: int = 4) -> dict:
    con = Console(port)
    try:
        r = con.command("screen raw")
        if not r.ok or not isinstance(r.data, dict):
            raise SystemExit("%s: screen raw failed: %s" % (port, r.raw[:200]))
        image_from_raw(r.data, scale).save(out)
        return r.data
    finally:
        con.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="the terminal's serial port (or a vterm's pty)")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--scale", type=int, default=4, help="pixel size in the PNG (default 4)")


def run(args: argparse.Namespace) -> int:
    from roampos.console_client import ExpectTimeout
    try:
        save(args.port, args.output, args.scale)
    except serial.SerialException as e:
        print("screen: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("screen: %s: %s" % (e.filename or args.port, e.strerror or e), file=sys.stderr)
        return 1
    except ExpectTimeout:
        print("screen: %s did not answer `screen raw` (not the RoamPOS console, or stopped at the"
              " REPL: reset it)" % args.port, file=sys.stderr)
        return 1
    print("%s: screen of %s saved" % (args.output, args.port))
    return 0
