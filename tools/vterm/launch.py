# The vterm's boot ROM, first stage, run by the unix port as its script.
# Kept to a few lines because the port compiles it into the heap and it stays
# there while the firmware runs: it maps the ROMFS image of the compiled code
# at /rom (as a board with a ROMFS partition does: code runs in place), or
# without a ROMFS the compiled device models (package vhw) at /vterm, and
# hands over to vhw.start(), which mounts the flash and runs boot.py and main.py.
import os
import sys
import vfs

_rom = os.getenv("ROAMPOS_ROM")  # "address:size" mapped by roampos.vterm.mp
if _rom:
    import uctypes

    _a, _n = _rom.split(":")
    vfs.mount(vfs.VfsRom(uctypes.bytearray_at(int(_a), int(_n))), "/rom")
    sys.path[:] = ["/rom"]
    del uctypes, _a, _n
else:
    vfs.mount(vfs.VfsPosix(os.getenv("ROAMPOS_VHW")), "/vterm")
    sys.path[:] = ["/vterm"]
del _rom
import vhw  # noqa: E402

vhw.start()
