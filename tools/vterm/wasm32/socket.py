# The `socket` module vhw.wire uses, for the 32-bit WebAssembly port, which
# has none: its one stream socket is the descriptor tools/vterm/wasm32/run.mjs
# was given, already connected to the device models, written and read through
# _vhwjs by buffer address (the port passes no bytes to JavaScript otherwise).
import uctypes

import _vhwjs

AF_UNIX = 1
SOCK_STREAM = 1


class socket:
    def __init__(self, *args):
        pass

    def connect(self, address):
        pass  # connected by the host before the port started

    def write(self, buf):
        n = len(buf)
        if n:
            _vhwjs.tx(uctypes.addressof(buf), n)
        return n

    def readinto(self, buf, n=-1):
        if n < 0:
            n = len(buf)
        if n:
            _vhwjs.rx(uctypes.addressof(buf), n)
        return n

    def read(self, n):
        b = bytearray(n)
        self.readinto(b, n)
        return b
