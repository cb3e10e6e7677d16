# The 32-bit port's boot ROM (tools/vterm/wasm32/run.mjs runs it): what
# tools/vterm/launch.py and vhw.start() do on the unix port, for
# MicroPython's WebAssembly port. It mounts the ROMFS at /rom and the
# flash's files at / (the port has no littlefs: its own filesystem stands in
# for the partition), connects the buses, then runs boot.py and main.py.
# Two things this port does differently are settled here, before the
# firmware runs, and their heap is reported on a PORT line so that the
# firmware's own share can be told apart:
# - os, time, io, binascii and collections are Python modules in this port
#   (C on a board, no heap there): imported first and reported as "stdlib";
# - its asyncio runs on the JavaScript event loop: it has no run() and no
#   new_event_loop(), so run() becomes create_task() (the event loop is
#   already running) and new_event_loop() does nothing. Its import is
#   reported as "asyncio" and stays in the firmware's share, as a board's
#   frozen asyncio would.
import gc
import sys
import uctypes
import vfs

import _vhwjs

vfs.mount(vfs.VfsRom(uctypes.bytearray_at(_vhwjs.rom, _vhwjs.romsize)), "/rom")
vfs.umount("/")
vfs.mount(vfs.VfsPosix("/flash"), "/")
vfs.mount(vfs.VfsPosix("/wasm"), "/wasm")  # the socket module for vhw.wire
sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib", "/wasm"]
gc.collect()
_a = gc.mem_alloc()
for _n in ("os", "time", "io", "binascii", "collections"):
    __import__(_n)
gc.collect()
_b = gc.mem_alloc()
import asyncio  # noqa: E402

asyncio.run = asyncio.create_task
asyncio.new_event_loop = lambda: None
gc.collect()
_c = gc.mem_alloc()
import vhw  # noqa: E402  (the vterm's system part: in the firmware's share, as on the unix port)

gc.collect()
_d = gc.mem_alloc()
from vhw import wire  # noqa: E402

wire.connect("", "%d:%d" % (_vhwjs.page, _vhwjs.pagesize))
gc.collect()
wire.cost = gc.mem_alloc() - _d  # the simulated buses' share (board.heap_models)
print('PORT {"stdlib": %d, "asyncio": %d, "pointer_bytes": %d}' % (
    _b - _a, _c - _b, 4 if sys.maxsize < 1 << 32 else 8))
del _a, _b, _c, _d, _n
for _p in ("/boot.py", "/main.py"):
    with open(_p) as _f:
        exec(compile(_f.read(), _p, "exec"), {"__name__": "__main__"})
del _p, _f  # main.py has returned (its task runs next, on the event loop): keep nothing
