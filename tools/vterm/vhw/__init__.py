# vhw: the vterm's hardware, offered to firmware/boards/vterm.py the way a port
# offers `machine`. Device models live in this package's modules; this file is
# the vterm's system part: its ROM (what a board's firmware does before
# boot.py) and its reset line.
# ROM: tools/vterm/launch.py (a few lines compiled from source at each start)
# has put this package on the path and calls start(); from here on the code
# runs in place from the ROMFS: the flash image is mounted at / (as a board
# mounts its filesystem partition), then boot.py and main.py run from flash.
# When main.py returns (Ctrl-C) the unix port's REPL takes over because the
# vterm starts us with -i.
# Reset: the line goes to the vterm process through its control FIFO.
# The device models (oled, keys, nfc, cards, modem, net, scanner) run in the
# vterm process, under CPython: this file imports nothing there is not in both.
import os
import sys

CTRL = None  # the vterm's control FIFO, opened by start()


def reset():
    # Ask the vterm to pull the reset line: it kills and restarts this process
    # on the same flash image. Without a vterm (plain unix port) just exit.
    if CTRL is not None:
        CTRL.write(b"reset\n")
        import time

        time.sleep(5)  # the vterm ends us meanwhile
    raise SystemExit(0)


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


def _mount():
    global CTRL
    import vfs

    # Host paths vanish when / becomes the flash: open them now.
    ctrl = os.getenv("ROAMPOS_CTRL")
    CTRL = open(ctrl, "wb") if ctrl else None  # the reset line
    hw = os.getenv("ROAMPOS_HW")  # the buses to the device models (vhw.wire)
    if hw:
        import gc

        gc.collect()
        m = gc.mem_alloc()
        from vhw import wire

        wire.connect(hw, os.getenv("ROAMPOS_HWMEM"))
        gc.collect()
        wire.cost = gc.mem_alloc() - m  # the simulation's share (board.heap_models)
    f = open(os.getenv("ROAMPOS_FLASH"), "r+b")
    f.seek(0, 2)
    bdev = _FileFlash(f, 4096, f.tell() // 4096)
    vfs.umount("/")
    vfs.mount(vfs.VfsLfs2(bdev), "/")
    os.chdir("/")
    # As on a board with a ROMFS (MicroPython >= 1.25): what is written to the
    # filesystem ("" and /lib: mpremote, mip) overrides the ROM. .frozen:
    # asyncio etc.; /vterm: the device models when there is no ROMFS.
    sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib", "/vterm"]


def _run(path):
    try:
        f = open(path)
    except OSError:
        return
    try:
        with f:
            code = compile(f.read(), path, "exec")  # the source text is not kept
        exec(code, {"__name__": "__main__", "__file__": path})
    except Exception as e:  # as on a board: report, then go on to main.py / the REPL
        sys.print_exception(e)


def start():
    _mount()
    _run("/boot.py")
    if not os.getenv("ROAMPOS_NO_MAIN"):
        _run("/main.py")
