# The vterm's ROM: what a board's firmware does before boot.py. Runs inside
# the MicroPython unix port: mounts the littlefs2 flash image at / (as a board
# mounts its filesystem partition), the ROMFS image of the compiled code at
# /rom (as a board with a ROMFS partition does: code runs in place, not from
# the heap), or without a ROMFS the device models (package vhw) at /vterm, then
# runs boot.py and main.py from flash. When main.py returns (Ctrl-C), the
# unix port's REPL takes over because the vterm starts us with -i.
import os
import sys
import vfs


class _FileFlash:
    # Block device over the image file: the interface vfs.VfsLfs2 expects
    # (readblocks/writeblocks with offset, ioctl 4 count, 5 size, 6 erase).
    def __init__(self, f, block_size, count):
        self.f = f
        self.bs = block_size
        self.n = count

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=None):
        self.f.seek(block * self.bs + (off or 0))
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:  # erase: littlefs only needs it to succeed
            return 0
        return None


def _boot():
    image = os.getenv("ROAMPOS_FLASH")
    vhw = os.getenv("ROAMPOS_VHW")
    rom = os.getenv("ROAMPOS_ROM")  # "address:size" mapped by roampos.vterm.mp
    ctrl = os.getenv("ROAMPOS_CTRL")
    # Host paths vanish when / becomes the flash: open the reset line now.
    ctrl = open(ctrl, "wb") if ctrl else None
    f = open(image, "r+b")
    f.seek(0, 2)
    size = f.tell()
    bdev = _FileFlash(f, 4096, size // 4096)
    vfs.umount("/")
    vfs.mount(vfs.VfsLfs2(bdev), "/")
    if rom:
        import uctypes

        addr, size = rom.split(":")
        vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(addr), int(size))), "/rom")
        del uctypes
    if vhw:
        vfs.mount(vfs.VfsPosix(vhw), "/vterm")
    os.chdir("/")
    # As on a board with a ROMFS (MicroPython >= 1.25): what is written to the
    # filesystem ("" and /lib: mpremote, mip) overrides the ROM. .frozen:
    # asyncio etc.; /vterm: the device models when they are not in the ROM.
    sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib", "/vterm"]
    import vhw

    vhw.CTRL = ctrl
    run_main = not os.getenv("ROAMPOS_NO_MAIN")
    return run_main


def _run(path):
    try:
        f = open(path)
    except OSError:
        return
    with f:
        src = f.read()
    try:
        exec(src, {"__name__": "__main__", "__file__": path})
    except Exception as e:  # as on a board: report, then go on to main.py / the REPL
        sys.print_exception(e)


_main = _boot()
_run("/boot.py")
if _main:
    _run("/main.py")
del _main, _boot, _run, _FileFlash
